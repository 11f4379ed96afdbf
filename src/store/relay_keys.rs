//! Relay keys (DESIGN.md §8): per project, created by admins, stored only as a SHA-256. A relay
//! key reads what a relay needs to serve every environment of its project (`GET /sdk/v1/relay`):
//! the bundles and the hashes of the active SDK keys, never a secret.

use rusqlite::Connection;

use super::Result;

/// The visible prefix of relay keys.
pub const PREFIX: &str = "fs_rly_";

/// A relay key that is not revoked, as the in-memory lookup needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveRelayKey {
    pub id: i64,
    pub hash: [u8; 32],
    pub project_id: i64,
}

/// Every relay key that is not revoked.
pub fn active(conn: &Connection) -> Result<Vec<ActiveRelayKey>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, key_hash, project_id FROM relay_keys WHERE revoked_at IS NULL")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let hash: Vec<u8> = row.get(1)?;
        let Ok(hash) = <[u8; 32]>::try_from(hash) else {
            continue;
        };
        out.push(ActiveRelayKey {
            id: row.get(0)?,
            hash,
            project_id: row.get(2)?,
        });
    }
    Ok(out)
}

/// A relay key as listed to admins (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RelayKeyInfo {
    pub id: i64,
    /// Always `relay`: the listing has the shape of SDK keys'.
    pub kind: &'static str,
    pub name: String,
    /// The visible start of the key.
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// The relay keys of a project (revoked ones too), newest first.
pub fn list(conn: &Connection, project_id: i64) -> Result<Vec<RelayKeyInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, prefix, created_at, revoked_at FROM relay_keys WHERE project_id = ?1 ORDER BY id DESC",
    )?;
    let keys = stmt
        .query_map([project_id], |row| {
            Ok(RelayKeyInfo {
                id: row.get(0)?,
                kind: "relay",
                name: row.get(1)?,
                prefix: row.get(2)?,
                created_at: row.get(3)?,
                revoked_at: row.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(keys)
}

/// A relay key just created: what admins see of it and its secret (shown once).
#[derive(Debug)]
pub struct Created {
    pub info: RelayKeyInfo,
    pub secret: String,
}

/// Creates a relay key for a project, with its audit row (never the secret). The caller's
/// write must report `Changes { api_keys: true, .. }`.
pub fn create_audited(
    conn: &Connection,
    actor: &super::audit::Actor,
    project: &str,
    name: &str,
) -> Result<Created> {
    let head = super::projects::head(conn, project)?;
    let secret = crate::keys::generate(PREFIX);
    conn.execute(
        "INSERT INTO relay_keys (project_id, name, key_hash, prefix, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        rusqlite::params![
            head.id,
            name,
            crate::keys::hash(&secret).as_slice(),
            &secret[..12],
            actor.user_id,
            super::now_ms()
        ],
    )?;
    let id = conn.last_insert_rowid();
    let info = list(conn, head.id)?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(|| super::StoreError::not_found(super::Resource::RelayKey, format!("relay key {id}")))?;
    let after = audit_json(&info);
    let id = id.to_string();
    super::audit::record(conn, actor, "create", entity(&id, project), None, Some(&after))?;
    Ok(Created { info, secret })
}

/// Revokes an active relay key of a project, with its audit row. 404 for an unknown or already
/// revoked key. The caller's write must report `Changes { api_keys: true, .. }`.
pub fn revoke_audited(conn: &Connection, actor: &super::audit::Actor, project: &str, id: i64) -> Result<()> {
    let head = super::projects::head(conn, project)?;
    let Some(before) = list(conn, head.id)?
        .into_iter()
        .find(|k| k.id == id && k.revoked_at.is_none())
    else {
        return Err(super::StoreError::not_found(
            super::Resource::RelayKey,
            format!("relay key {id} (or it is already revoked)"),
        ));
    };
    conn.execute(
        "UPDATE relay_keys SET revoked_at = ?3 WHERE id = ?1 AND project_id = ?2 AND revoked_at IS NULL",
        rusqlite::params![id, head.id, super::now_ms()],
    )?;
    let before = audit_json(&before);
    let id = id.to_string();
    super::audit::record(conn, actor, "revoke", entity(&id, project), Some(&before), None)?;
    Ok(())
}

/// What the audit log keeps of a relay key: never its secret or hash.
fn audit_json(info: &RelayKeyInfo) -> serde_json::Value {
    serde_json::json!({"id": info.id, "kind": "relay", "name": info.name, "prefix": info.prefix})
}

fn entity<'a>(id: &'a str, project: &'a str) -> super::audit::Entity<'a> {
    super::audit::Entity {
        kind: "relay_key",
        key: Some(id),
        project: Some(project),
        environment: None,
    }
}
