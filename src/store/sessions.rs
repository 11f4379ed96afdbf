//! The admin pages' sign-in state: sessions (only a SHA-256 of the cookie's token is stored),
//! password checks and changes, failed sign-ins for throttling, and the one-time setup links
//! that create the first admin.
//!
//! Sessions and failed sign-ins live in the operational database: their writers ([`create`],
//! [`touch`], [`revoke`], [`revoke_all`], [`prune`], [`record_failure`], [`clear_failures`]) take
//! a transaction of [`crate::store::Store::operational`]; their readers take any connection of
//! [`crate::store::Store::read`]. Passwords and setup links are in the published database
//! ([`crate::store::Store::write`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::users::{Role, User};
use super::{Result, now_ms};
use crate::keys;

/// A user's credentials as the sign-in needs them.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    /// PHC string (argon2id); `!` when the user has no password.
    pub password_hash: String,
    pub must_change_password: bool,
}

/// The credentials of the user with this email (any case), if any.
pub fn credentials(conn: &Connection, email: &str) -> Result<Option<Credentials>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, email, role, disabled, password_hash, must_change_password FROM users WHERE email = ?1",
    )?;
    let found = stmt
        .query_row([email], |r| {
            Ok(Credentials {
                user: super::users::user_from_row(r)?,
                password_hash: r.get(4)?,
                must_change_password: r.get(5)?,
            })
        })
        .optional()?;
    Ok(found)
}

/// The password hash of a user, if the user exists.
pub fn password_hash(conn: &Connection, user_id: i64) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached("SELECT password_hash FROM users WHERE id = ?1")?;
    Ok(stmt.query_row([user_id], |r| r.get(0)).optional()?)
}

/// Sets a user's password (an argon2id PHC string) and clears the "must change" mark.
pub fn set_password(conn: &Connection, user_id: i64, password_hash: &str) -> Result<()> {
    conn.execute(
        "UPDATE users SET password_hash = ?2, must_change_password = 0, updated_at = ?3 WHERE id = ?1",
        params![user_id, password_hash, now_ms()],
    )?;
    Ok(())
}

/// A new session's secrets: the cookie's token and the CSRF token of its forms.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: i64,
    pub token: String,
    pub csrf_token: String,
}

/// Starts a session for a user that ends at the latest after `max_ms`.
pub fn create(conn: &Connection, user_id: i64, max_ms: i64) -> Result<NewSession> {
    let token = keys::generate("");
    let csrf_token = keys::generate("");
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
    )?
    .execute(params![
        keys::hash(&token).as_slice(),
        user_id,
        csrf_token,
        now,
        now.saturating_add(max_ms)
    ])?;
    Ok(NewSession {
        id: conn.last_insert_rowid(),
        token,
        csrf_token,
    })
}

/// A live session and its user.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    pub id: i64,
    pub user: User,
    pub csrf_token: String,
    pub must_change_password: bool,
    pub last_seen_at: i64,
}

/// The session of a cookie's token, if it is known, not revoked, within both its absolute and
/// idle expiry (`idle_ms` since it was last seen), and its user is not disabled. A session
/// older than its user is not its user's (the id was reused after a deletion).
pub fn authenticate(conn: &Connection, token: &str, idle_ms: i64) -> Result<Option<ActiveSession>> {
    let now = now_ms();
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, u.id, u.email, u.role, u.disabled, s.csrf_token, u.must_change_password, s.last_seen_at
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2 AND s.last_seen_at > ?3
           AND u.disabled = 0 AND u.created_at <= s.created_at",
    )?;
    let found = stmt
        .query_row(
            params![keys::hash(token).as_slice(), now, now.saturating_sub(idle_ms)],
            |r| {
                Ok(ActiveSession {
                    id: r.get(0)?,
                    user: User {
                        id: r.get(1)?,
                        email: r.get(2)?,
                        role: Role::parse(&r.get::<_, String>(3)?).unwrap_or(Role::Viewer),
                        disabled: r.get(4)?,
                    },
                    csrf_token: r.get(5)?,
                    must_change_password: r.get(6)?,
                    last_seen_at: r.get(7)?,
                })
            },
        )
        .optional()?;
    Ok(found)
}

/// Records that a session was just used (extends its idle expiry).
pub fn touch(conn: &Connection, id: i64) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1",
        params![id, now_ms()],
    )?;
    Ok(())
}

/// Ends one session.
pub fn revoke(conn: &Connection, id: i64) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now_ms()],
    )?;
    Ok(())
}

/// Ends every session of a user except `keep` (e.g. after a password change). Returns how many.
pub fn revoke_all(conn: &Connection, user_id: i64, keep: Option<i64>) -> Result<usize> {
    let n = conn.execute(
        "UPDATE sessions SET revoked_at = ?3 WHERE user_id = ?1 AND revoked_at IS NULL AND (?2 IS NULL OR id != ?2)",
        params![user_id, keep, now_ms()],
    )?;
    Ok(n)
}

/// A session as listed to its user.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// A user's live sessions, most recently used first.
pub fn list(conn: &Connection, user_id: i64, idle_ms: i64) -> Result<Vec<SessionInfo>> {
    let now = now_ms();
    let mut stmt = conn.prepare_cached(
        "SELECT id, created_at, last_seen_at, expires_at FROM sessions
         WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 AND last_seen_at > ?3
         ORDER BY last_seen_at DESC",
    )?;
    let rows = stmt.query_map(params![user_id, now, now.saturating_sub(idle_ms)], |r| {
        Ok(SessionInfo {
            id: r.get(0)?,
            created_at: r.get(1)?,
            last_seen_at: r.get(2)?,
            expires_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Deletes sessions that ended more than a day ago (kept that long to read in the database).
pub fn prune(conn: &Connection, idle_ms: i64) -> Result<usize> {
    let day = 86_400_000;
    let now = now_ms();
    let n = conn.execute(
        "DELETE FROM sessions WHERE expires_at < ?1 OR revoked_at < ?1 OR last_seen_at < ?2",
        params![now - day, now - day - idle_ms],
    )?;
    Ok(n)
}

/// The times of recent failures (since `since`): of this client on this email (none without an
/// email), and of this client on any email.
pub fn recent_failures(
    conn: &Connection,
    email: Option<&str>,
    client: &str,
    since: i64,
) -> Result<(Vec<i64>, Vec<i64>)> {
    let on_email = match email {
        Some(email) => {
            let mut stmt = conn.prepare_cached(
                "SELECT at FROM sign_in_failures WHERE email = ?1 AND client = ?2 AND at >= ?3",
            )?;
            let rows = stmt.query_map(params![email, client, since], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<i64>>>()?
        }
        None => Vec::new(),
    };
    let mut stmt = conn.prepare_cached("SELECT at FROM sign_in_failures WHERE client = ?1 AND at >= ?2")?;
    let rows = stmt.query_map(params![client, since], |r| r.get(0))?;
    Ok((on_email, rows.collect::<rusqlite::Result<Vec<i64>>>()?))
}

/// Records a failed sign-in at `at` and forgets failures older than `forget_before`.
pub fn record_failure(
    conn: &Connection,
    email: &str,
    client: &str,
    at: i64,
    forget_before: i64,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM sign_in_failures WHERE at < ?1")?
        .execute([forget_before])?;
    conn.prepare_cached("INSERT INTO sign_in_failures (at, email, client) VALUES (?1, ?2, ?3)")?
        .execute(params![at, email, client])?;
    Ok(())
}

/// Forgets a client's failed sign-ins on an account (after a successful one from there).
pub fn clear_failures(conn: &Connection, email: &str, client: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM sign_in_failures WHERE email = ?1 AND client = ?2")?
        .execute([email, client])?;
    Ok(())
}

/// Replaces any earlier setup link with a new one valid for `valid_ms`; returns its token.
pub fn new_setup_token(conn: &Connection, valid_ms: i64) -> Result<String> {
    let token = keys::generate("");
    let now = now_ms();
    conn.execute("DELETE FROM setup_tokens", [])?;
    conn.execute(
        "INSERT INTO setup_tokens (token_hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
        params![keys::hash(&token).as_slice(), now, now.saturating_add(valid_ms)],
    )?;
    Ok(token)
}

/// Whether a setup token is known, unused and not expired.
pub fn setup_token_valid(conn: &Connection, token: &str) -> Result<bool> {
    let mut stmt = conn.prepare_cached(
        "SELECT 1 FROM setup_tokens WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
    )?;
    Ok(stmt.exists(params![keys::hash(token).as_slice(), now_ms()])?)
}

/// Marks a setup token used. Returns false if it was not valid (unknown, used or expired).
pub fn use_setup_token(conn: &Connection, token: &str) -> Result<bool> {
    let n = conn.execute(
        "UPDATE setup_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
        params![keys::hash(token).as_slice(), now_ms()],
    )?;
    Ok(n == 1)
}
