//! SDK keys (server and client), per environment. Only a SHA-256 of each key is stored.

use rusqlite::Connection;

use super::Result;

/// The kind of an SDK key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Reads the bundle and the stream, evaluates every flag. Secret.
    Server,
    /// Evaluates client-side flags only. Public by nature (ships in web pages).
    Client,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Server => "server",
            KeyKind::Client => "client",
        }
    }

    pub fn parse(s: &str) -> Option<KeyKind> {
        match s {
            "server" => Some(KeyKind::Server),
            "client" => Some(KeyKind::Client),
            _ => None,
        }
    }
}

/// A key that is not revoked, as the in-memory lookup needs it.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    pub id: i64,
    pub hash: [u8; 32],
    pub environment_id: i64,
    pub kind: KeyKind,
}

/// Every key that is not revoked.
pub fn active(conn: &Connection) -> Result<Vec<ActiveKey>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, key_hash, environment_id, kind FROM api_keys WHERE revoked_at IS NULL")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let hash: Vec<u8> = row.get(1)?;
        let kind: String = row.get(3)?;
        let (Ok(hash), Some(kind)) = (<[u8; 32]>::try_from(hash), KeyKind::parse(&kind)) else {
            continue;
        };
        out.push(ActiveKey {
            id: row.get(0)?,
            hash,
            environment_id: row.get(2)?,
            kind,
        });
    }
    Ok(out)
}

/// A key as listed to admins (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub id: i64,
    pub kind: KeyKind,
    pub name: String,
    /// The visible start of the key.
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Creates a key in an environment; returns its id and the secret (shown once, never stored).
pub fn create(
    conn: &Connection,
    environment_id: i64,
    kind: KeyKind,
    name: &str,
    created_by: Option<i64>,
) -> Result<(i64, String)> {
    let secret = crate::keys::generate(crate::keys::prefix(kind));
    conn.execute(
        "INSERT INTO api_keys (environment_id, kind, name, key_hash, prefix, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            environment_id,
            kind.as_str(),
            name,
            crate::keys::hash(&secret).as_slice(),
            &secret[..12],
            created_by,
            super::now_ms()
        ],
    )?;
    Ok((conn.last_insert_rowid(), secret))
}

/// Revokes a key of an environment. Returns false if there is no such (unrevoked) key.
pub fn revoke(conn: &Connection, environment_id: i64, id: i64) -> Result<bool> {
    let n = conn.execute(
        "UPDATE api_keys SET revoked_at = ?3 WHERE id = ?1 AND environment_id = ?2 AND revoked_at IS NULL",
        rusqlite::params![id, environment_id, super::now_ms()],
    )?;
    Ok(n == 1)
}

/// The keys of an environment (revoked ones too), newest first.
pub fn list(conn: &Connection, environment_id: i64) -> Result<Vec<KeyInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, name, prefix, created_at, (SELECT at FROM key_last_used
           WHERE key_id = api_keys.id AND at >= api_keys.created_at), revoked_at FROM api_keys
         WHERE environment_id = ?1 ORDER BY id DESC",
    )?;
    let mut rows = stmt.query([environment_id])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let kind: String = row.get(1)?;
        let Some(kind) = KeyKind::parse(&kind) else {
            continue;
        };
        out.push(KeyInfo {
            id: row.get(0)?,
            kind,
            name: row.get(2)?,
            prefix: row.get(3)?,
            created_at: row.get(4)?,
            last_used_at: row.get(5)?,
            revoked_at: row.get(6)?,
        });
    }
    Ok(out)
}

/// A key just created: what admins see of it, its secret (shown once), and its environment.
#[derive(Debug)]
pub struct Created {
    pub info: KeyInfo,
    pub secret: String,
    pub environment: super::environments::Environment,
}

/// Creates a key in an environment of a project, with its audit row (never the secret). The
/// caller's write must report `Changes { api_keys: true, .. }`.
pub fn create_audited(
    conn: &Connection,
    actor: &super::audit::Actor,
    project: &str,
    environment: &str,
    kind: KeyKind,
    name: &str,
) -> Result<Created> {
    let env = super::environments::get(conn, project, environment)?;
    let (id, secret) = create(conn, env.id, kind, name, actor.user_id)?;
    let info = list(conn, env.id)?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| super::StoreError::not_found(super::Resource::ApiKey, format!("key {id}")))?;
    let after = audit_json(&info);
    let id = id.to_string();
    super::audit::record(
        conn,
        actor,
        "create",
        entity(&id, project, environment),
        None,
        Some(&after),
    )?;
    Ok(Created {
        info,
        secret,
        environment: env,
    })
}

/// Revokes an active key of an environment of a project, with its audit row. 404 for an
/// unknown or already revoked key. The caller's write must report `Changes { api_keys: true, .. }`.
pub fn revoke_audited(
    conn: &Connection,
    actor: &super::audit::Actor,
    project: &str,
    environment: &str,
    id: i64,
) -> Result<()> {
    let env = super::environments::get(conn, project, environment)?;
    let Some(before) = list(conn, env.id)?
        .into_iter()
        .find(|k| k.id == id && k.revoked_at.is_none())
    else {
        return Err(super::StoreError::not_found(
            super::Resource::ApiKey,
            format!("key {id} (or it is already revoked)"),
        ));
    };
    revoke(conn, env.id, id)?;
    let before = audit_json(&before);
    let id = id.to_string();
    super::audit::record(
        conn,
        actor,
        "revoke",
        entity(&id, project, environment),
        Some(&before),
        None,
    )?;
    Ok(())
}

/// What the audit log keeps of a key: never its secret or hash.
fn audit_json(info: &KeyInfo) -> serde_json::Value {
    serde_json::json!({"id": info.id, "kind": info.kind.as_str(), "name": info.name, "prefix": info.prefix})
}

fn entity<'a>(id: &'a str, project: &'a str, environment: &'a str) -> super::audit::Entity<'a> {
    super::audit::Entity {
        kind: "api_key",
        key: Some(id),
        project: Some(project),
        environment: Some(environment),
    }
}
