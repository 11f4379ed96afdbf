//! People who use the admin pages and the management API.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, StoreError, now_ms};

/// What a user may do. Ordered: each role can do what the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also changes flags, segments and configs.
    Editor,
    /// Also manages users, keys and projects.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A user as the rest of the application sees it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
}

/// Creates a user with an already-hashed password. 409 if the email is taken.
pub fn insert(conn: &Connection, email: &str, role: Role, password_hash: &str) -> Result<User> {
    let now = now_ms();
    let inserted = conn.execute(
        "INSERT INTO users (email, password_hash, role, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (email) DO NOTHING",
        params![email, password_hash, role.as_str(), now],
    )?;
    if inserted == 0 {
        return Err(StoreError::conflict(format!("a user with email {email} already exists")));
    }
    Ok(User { id: conn.last_insert_rowid(), email: email.to_owned(), role, disabled: false })
}

/// The user with this email, if any.
pub fn by_email(conn: &Connection, email: &str) -> Result<Option<User>> {
    let mut stmt = conn.prepare_cached("SELECT id, email, role, disabled FROM users WHERE email = ?1")?;
    Ok(stmt.query_row([email], user_from_row).optional()?)
}

/// Reads a user from a row of `id, email, role, disabled`.
pub fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(2)?;
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        disabled: r.get(3)?,
    })
}
