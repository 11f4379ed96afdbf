//! SDK keys: generation, hashing, and the in-memory lookup by hash that the SDK, OFREP and
//! client paths use (no database on those paths).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use rand::RngCore as _;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::store::Result;
use crate::store::api_keys::{self, ActiveKey, KeyKind};

/// The visible prefix that tells a key's kind.
pub fn prefix(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Server => "fs_srv_",
        KeyKind::Client => "fs_cli_",
    }
}

/// Prefix of admin tokens (which authenticate `/api/v1`).
pub const ADMIN_TOKEN_PREFIX: &str = "fs_adm_";

/// A new random secret: `prefix` + 32 random bytes in base64url.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// SHA-256 of a secret. Keys are 256-bit random values, so a fast hash is enough: there is
/// nothing to brute-force.
pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Active SDK keys by hash, swapped atomically after each key change.
#[derive(Default)]
pub struct Keys {
    by_hash: ArcSwap<HashMap<[u8; 32], ActiveKey>>,
}

impl Keys {
    pub fn load(conn: &Connection) -> Result<Keys> {
        let keys = Keys::default();
        keys.reload(conn)?;
        Ok(keys)
    }

    /// Re-reads the active keys from the store.
    pub fn reload(&self, conn: &Connection) -> Result<()> {
        let map = api_keys::active(conn)?.into_iter().map(|k| (k.hash, k)).collect();
        self.by_hash.store(Arc::new(map));
        Ok(())
    }

    /// The active key with this secret, if any.
    pub fn find(&self, secret: &str) -> Option<ActiveKey> {
        self.by_hash.load().get(&hash(secret)).cloned()
    }

    /// Whether the key with this id is still active.
    pub fn is_active(&self, id: i64) -> bool {
        self.by_hash.load().values().any(|k| k.id == id)
    }
}
