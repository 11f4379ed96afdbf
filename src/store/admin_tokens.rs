//! Admin tokens: they authenticate `/api/v1` with their user's role. Only a SHA-256 is stored.

use rusqlite::{Connection, OptionalExtension, params};

use super::users::{Role, User};
use super::{Result, now_ms};
use crate::keys;

/// Creates a token for a user and returns the secret (shown once, never stored).
pub fn create(conn: &Connection, user_id: i64, name: &str) -> Result<String> {
    let secret = keys::generate(keys::ADMIN_TOKEN_PREFIX);
    conn.execute(
        "INSERT INTO admin_tokens (user_id, name, token_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user_id, name, keys::hash(&secret).as_slice(), &secret[..12], now_ms()],
    )?;
    Ok(secret)
}

/// The user a token belongs to, if the token is known, not revoked, and its user not disabled.
pub fn authenticate(conn: &Connection, secret: &str) -> Result<Option<(i64, User)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.id, u.id, u.email, u.role, u.disabled FROM admin_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = ?1 AND t.revoked_at IS NULL AND u.disabled = 0",
    )?;
    let found = stmt
        .query_row([keys::hash(secret).as_slice()], |r| {
            let token_id: i64 = r.get(0)?;
            let user = User {
                id: r.get(1)?,
                email: r.get(2)?,
                role: Role::parse(&r.get::<_, String>(3)?).unwrap_or(Role::Viewer),
                disabled: r.get(4)?,
            };
            Ok((token_id, user))
        })
        .optional()?;
    Ok(found)
}
