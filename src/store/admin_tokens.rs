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

/// An admin token as listed to its owner (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    /// The visible start of the token.
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

fn info_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        created_at: r.get(3)?,
        last_used_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

/// A user's tokens, newest first.
pub fn list(conn: &Connection, user_id: i64) -> Result<Vec<TokenInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, prefix, created_at, (SELECT at FROM token_last_used
           WHERE token_id = admin_tokens.id AND at >= admin_tokens.created_at), revoked_at FROM admin_tokens
         WHERE user_id = ?1 ORDER BY id DESC",
    )?;
    let tokens = stmt
        .query_map([user_id], info_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(tokens)
}

/// One of a user's tokens.
pub fn info(conn: &Connection, user_id: i64, id: i64) -> Result<Option<TokenInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, prefix, created_at, (SELECT at FROM token_last_used
           WHERE token_id = admin_tokens.id AND at >= admin_tokens.created_at), revoked_at FROM admin_tokens
         WHERE user_id = ?1 AND id = ?2",
    )?;
    Ok(stmt.query_row(params![user_id, id], info_from_row).optional()?)
}

/// Revokes one of a user's tokens. Returns false if there is no such (unrevoked) token.
pub fn revoke(conn: &Connection, user_id: i64, id: i64) -> Result<bool> {
    let n = conn.execute(
        "UPDATE admin_tokens SET revoked_at = ?3 WHERE id = ?2 AND user_id = ?1 AND revoked_at IS NULL",
        params![user_id, id, now_ms()],
    )?;
    Ok(n == 1)
}
