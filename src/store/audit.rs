//! The audit log: who changed what, when, with the JSON before and after.

use rusqlite::{Connection, params};
use serde_json::Value;

use super::{Result, now_ms};

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Option<i64>,
    /// An email for people; `cli` for the command line.
    pub name: String,
}

impl Actor {
    pub fn user(id: i64, email: &str) -> Actor {
        Actor { user_id: Some(id), name: email.to_owned() }
    }

    pub fn cli() -> Actor {
        Actor { user_id: None, name: "cli".to_owned() }
    }
}

/// What was changed. `project`/`environment` are keys; `kind` is e.g. `flag`, `flag_state`,
/// `segment`, `project`, `environment`, `api_key`, `user`, `import`.
#[derive(Debug, Clone, Copy)]
pub struct Entity<'a> {
    pub kind: &'a str,
    pub key: Option<&'a str>,
    pub project: Option<&'a str>,
    pub environment: Option<&'a str>,
}

/// Records one change in the same transaction as the change itself.
pub fn record(
    conn: &Connection,
    actor: &Actor,
    action: &str,
    entity: Entity<'_>,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO audit_log (at, actor_user_id, actor, action, project_key, environment_key, entity_kind, entity_key, before, after)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        now_ms(),
        actor.user_id,
        actor.name,
        action,
        entity.project,
        entity.environment,
        entity.kind,
        entity.key,
        before.map(Value::to_string),
        after.map(Value::to_string),
    ])?;
    Ok(conn.last_insert_rowid())
}
