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
        return Err(StoreError::conflict(format!(
            "a user with email {email} already exists"
        )));
    }
    Ok(User {
        id: conn.last_insert_rowid(),
        email: email.to_owned(),
        role,
        disabled: false,
    })
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

/// A user as admins see it in the list (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserInfo {
    #[serde(flatten)]
    pub user: User,
    /// The password was set by an admin and must be changed at the next sign-in.
    pub must_change_password: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const INFO_COLUMNS: &str = "id, email, role, disabled, must_change_password, created_at, updated_at";

fn info_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserInfo> {
    Ok(UserInfo {
        user: user_from_row(r)?,
        must_change_password: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

/// Every user, by email.
pub fn list(conn: &Connection) -> Result<Vec<UserInfo>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {INFO_COLUMNS} FROM users ORDER BY email"))?;
    let users = stmt
        .query_map([], info_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(users)
}

/// The user with this id, if any.
pub fn info(conn: &Connection, id: i64) -> Result<Option<UserInfo>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {INFO_COLUMNS} FROM users WHERE id = ?1"))?;
    Ok(stmt.query_row([id], info_from_row).optional()?)
}

/// How many users exist.
pub fn count(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
}

/// How many admins are not disabled.
pub fn active_admins(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0",
        [],
        |r| r.get(0),
    )?)
}

/// Marks the user's password as temporary: it must be changed at the next sign-in.
pub fn require_password_change(conn: &Connection, id: i64) -> Result<()> {
    conn.execute(
        "UPDATE users SET must_change_password = 1, updated_at = ?2 WHERE id = ?1",
        params![id, now_ms()],
    )?;
    Ok(())
}

/// Changes a user's role and/or disabled flag (`None` keeps it). Returns the user as it is now.
pub fn update(conn: &Connection, id: i64, role: Option<Role>, disabled: Option<bool>) -> Result<UserInfo> {
    let n = conn.execute(
        "UPDATE users SET role = coalesce(?2, role), disabled = coalesce(?3, disabled), updated_at = ?4 WHERE id = ?1",
        params![id, role.map(Role::as_str), disabled, now_ms()],
    )?;
    if n == 0 {
        return Err(StoreError::not_found(super::Resource::User, format!("user {id}")));
    }
    info(conn, id)?.ok_or_else(|| StoreError::not_found(super::Resource::User, format!("user {id}")))
}

/// How the audit log names a user.
pub fn audit_entity(email: &str) -> super::audit::Entity<'_> {
    super::audit::Entity {
        kind: "user",
        key: Some(email),
        project: None,
        environment: None,
    }
}

/// Invites a person: creates the user with an already-hashed temporary password that must be
/// changed at the first sign-in, with its audit row. 409 if the email is taken.
pub fn invite(
    conn: &Connection,
    actor: &super::audit::Actor,
    email: &str,
    role: Role,
    password_hash: &str,
) -> Result<UserInfo> {
    let user = insert(conn, email, role, password_hash)?;
    require_password_change(conn, user.id)?;
    let created =
        info(conn, user.id)?.ok_or_else(|| StoreError::not_found(super::Resource::User, "the new user"))?;
    let after = serde_json::to_value(&created)?;
    super::audit::record(
        conn,
        actor,
        "create",
        audit_entity(&created.user.email),
        None,
        Some(&after),
    )?;
    Ok(created)
}

/// Changes a user's role and/or disabled flag, with an audit row when something changed.
/// 409 (and nothing changes) if no enabled admin would remain.
pub fn change(
    conn: &Connection,
    actor: &super::audit::Actor,
    id: i64,
    role: Option<Role>,
    disabled: Option<bool>,
) -> Result<UserInfo> {
    let before =
        info(conn, id)?.ok_or_else(|| StoreError::not_found(super::Resource::User, format!("user {id}")))?;
    let after = update(conn, id, role, disabled)?;
    if active_admins(conn)? == 0 {
        // The caller's transaction is rolled back by this error: nothing changes.
        return Err(StoreError::conflict(
            "this would leave no enabled admin; make another user admin first",
        ));
    }
    if after != before {
        super::audit::record(
            conn,
            actor,
            "update",
            audit_entity(&after.user.email),
            Some(&serde_json::to_value(&before)?),
            Some(&serde_json::to_value(&after)?),
        )?;
    }
    Ok(after)
}
