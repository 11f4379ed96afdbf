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
        Actor {
            user_id: Some(id),
            name: email.to_owned(),
        }
    }

    pub fn cli() -> Actor {
        Actor {
            user_id: None,
            name: "cli".to_owned(),
        }
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

/// One row of the audit log as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    pub actor: String,
    pub actor_user_id: Option<i64>,
    pub action: String,
    pub project: Option<String>,
    pub environment: Option<String>,
    pub entity_kind: String,
    pub entity_key: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Which audit rows to list: every filter is optional; newest first, `before` is an exclusive
/// upper bound on the id (the previous page's last id).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    pub project: Option<&'a str>,
    /// Any of these kinds (none: every kind).
    pub entity_kinds: &'a [&'a str],
    pub entity_key: Option<&'a str>,
    pub before: Option<i64>,
    pub limit: u32,
}

const ENTRY_COLUMNS: &str = "id, at, actor, actor_user_id, action, project_key, environment_key, entity_kind, entity_key, before, after";

/// Rows of the audit log, newest first.
pub fn list(conn: &Connection, query: &AuditQuery<'_>) -> Result<Vec<AuditEntry>> {
    let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM audit_log WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, value: rusqlite::types::Value| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(project) = query.project {
        arg(&mut sql, " AND project_key = ?", project.to_owned().into());
    }
    if !query.entity_kinds.is_empty() {
        sql.push_str(" AND (0");
        for kind in query.entity_kinds {
            arg(&mut sql, " OR entity_kind = ?", (*kind).to_owned().into());
        }
        sql.push(')');
    }
    if let Some(key) = query.entity_key {
        arg(&mut sql, " AND entity_key = ?", key.to_owned().into());
    }
    if let Some(before) = query.before {
        arg(&mut sql, " AND id < ?", before.into());
    }
    arg(
        &mut sql,
        " ORDER BY id DESC LIMIT ?",
        i64::from(query.limit).into(),
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(entry_from_row(row)?);
    }
    Ok(out)
}

/// One row of the audit log, if it exists.
pub fn get(conn: &Connection, id: i64) -> Result<Option<AuditEntry>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM audit_log WHERE id = ?1"))?;
    let mut rows = stmt.query([id])?;
    rows.next()?.map(entry_from_row).transpose()
}

fn entry_from_row(r: &rusqlite::Row<'_>) -> Result<AuditEntry> {
    let before: Option<String> = r.get(9)?;
    let after: Option<String> = r.get(10)?;
    Ok(AuditEntry {
        id: r.get(0)?,
        at: rfc3339(r.get(1)?),
        actor: r.get(2)?,
        actor_user_id: r.get(3)?,
        action: r.get(4)?,
        project: r.get(5)?,
        environment: r.get(6)?,
        entity_kind: r.get(7)?,
        entity_key: r.get(8)?,
        before: before.map(|s| serde_json::from_str(&s)).transpose()?,
        after: after.map(|s| serde_json::from_str(&s)).transpose()?,
    })
}

/// Unix milliseconds as RFC 3339 (UTC, milliseconds).
fn rfc3339(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}
