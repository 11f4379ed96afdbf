//! SDK keys: generation, hashing, and the in-memory lookup by hash that the SDK, OFREP and
//! client paths use (no database on those paths).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use rand::RngCore as _;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::store::Result;
use crate::store::api_keys::{self, ActiveKey, KeyKind};
use crate::store::relay_keys::{self, ActiveRelayKey};

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

/// Active SDK keys by hash and by id, swapped atomically after each key change. Both lookups
/// are hash-map lookups: they run on every SDK request and in every stream's liveness check.
/// Relay keys (DESIGN.md §8) are held beside them; a relay fills the SDK keys from what its
/// primary sends ([`Keys::replace`]) and holds no relay key.
pub struct Keys {
    active: ArcSwap<Active>,
    /// Bumped on every reload: relay streams tell their relays of new and revoked keys.
    generation: tokio::sync::watch::Sender<u64>,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys {
            active: ArcSwap::default(),
            generation: tokio::sync::watch::channel(0).0,
        }
    }
}

#[derive(Default)]
struct Active {
    by_hash: HashMap<[u8; 32], ActiveKey>,
    ids: HashSet<i64>,
    relays: HashMap<[u8; 32], ActiveRelayKey>,
    relay_ids: HashSet<i64>,
}

impl Active {
    fn new(keys: Vec<ActiveKey>, relays: Vec<ActiveRelayKey>) -> Active {
        Active {
            ids: keys.iter().map(|k| k.id).collect(),
            by_hash: keys.into_iter().map(|k| (k.hash, k)).collect(),
            relay_ids: relays.iter().map(|k| k.id).collect(),
            relays: relays.into_iter().map(|k| (k.hash, k)).collect(),
        }
    }
}

impl Keys {
    pub fn load(conn: &Connection) -> Result<Keys> {
        let keys = Keys::default();
        keys.reload(conn)?;
        Ok(keys)
    }

    /// Re-reads the active keys from the store.
    pub fn reload(&self, conn: &Connection) -> Result<()> {
        let active = Active::new(api_keys::active(conn)?, relay_keys::active(conn)?);
        self.active.store(Arc::new(active));
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// Replaces the active SDK keys with `keys` (a relay, with what its primary sent). Returns
    /// whether they differ from those held before.
    pub fn replace(&self, keys: Vec<ActiveKey>) -> bool {
        let current = self.active.load();
        let same = current.by_hash.len() == keys.len()
            && keys.iter().all(|k| {
                current
                    .by_hash
                    .get(&k.hash)
                    .is_some_and(|c| c.id == k.id && c.environment_id == k.environment_id && c.kind == k.kind)
            });
        if same {
            return false;
        }
        self.active.store(Arc::new(Active::new(keys, Vec::new())));
        self.generation.send_modify(|g| *g += 1);
        true
    }

    /// The active SDK keys of these environments, by id.
    pub fn of_environments(&self, environments: &HashSet<i64>) -> Vec<ActiveKey> {
        let mut keys: Vec<ActiveKey> = self
            .active
            .load()
            .by_hash
            .values()
            .filter(|k| environments.contains(&k.environment_id))
            .cloned()
            .collect();
        keys.sort_by_key(|k| k.id);
        keys
    }

    /// The active relay key with this secret, if any.
    pub fn find_relay(&self, secret: &str) -> Option<ActiveRelayKey> {
        self.active.load().relays.get(&hash(secret)).copied()
    }

    /// Whether the relay key with this id is still active.
    pub fn is_relay_active(&self, id: i64) -> bool {
        self.active.load().relay_ids.contains(&id)
    }

    /// Changes each time the keys do (for streams that follow keys).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The active key with this secret, if any.
    pub fn find(&self, secret: &str) -> Option<ActiveKey> {
        self.active.load().by_hash.get(&hash(secret)).cloned()
    }

    /// Whether the key with this id is still active.
    pub fn is_active(&self, id: i64) -> bool {
        self.active.load().ids.contains(&id)
    }
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;
    use std::time::Instant;

    use super::*;

    fn keys(n: i64) -> Keys {
        let list = (1..=n)
            .map(|id| ActiveKey {
                id,
                hash: hash(&format!("fs_srv_{id}")),
                environment_id: 1,
                kind: KeyKind::Server,
            })
            .collect();
        let keys = Keys::default();
        keys.replace(list);
        keys
    }

    /// Seconds per lookup of the last key and of a missing one, many times over.
    fn per_lookup(keys: &Keys, last: i64) -> f64 {
        const ROUNDS: u32 = 2_000;
        let start = Instant::now();
        for _ in 0..ROUNDS {
            black_box(keys.is_active(black_box(last)));
            black_box(keys.is_active(black_box(-1)));
            black_box(keys.find(black_box("fs_srv_missing")));
        }
        start.elapsed().as_secs_f64() / f64::from(ROUNDS)
    }

    #[test]
    fn lookups_answer_by_id_and_by_secret() {
        let keys = keys(3);
        assert!(keys.is_active(2));
        assert!(!keys.is_active(4));
        assert_eq!(keys.find("fs_srv_3").map(|k| k.id), Some(3));
        assert!(keys.find("fs_srv_4").is_none());
    }

    /// A lookup among 50,000 keys costs about what it costs among 5 (a scan would cost 10,000
    /// times more): the ratio of two timings in one run, never a wall-clock threshold.
    #[test]
    fn lookups_do_not_grow_with_the_number_of_keys() {
        let (few, many) = (keys(5), keys(50_000));
        // Warm both up, then take the best of a few runs of each.
        let best = |keys: &Keys, last: i64| {
            (0..5)
                .map(|_| per_lookup(keys, last))
                .fold(f64::INFINITY, f64::min)
        };
        let small = best(&few, 5);
        let large = best(&many, 50_000);
        assert!(
            large < small * 50.0,
            "a lookup among 50,000 keys took {:.0}x one among 5",
            large / small
        );
    }
}
