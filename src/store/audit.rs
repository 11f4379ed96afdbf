//! The audit log: who changed what, when, with the JSON before and after.
//!
//! Before and after are stored together, compressed ([`compress`]: zstd, with a dictionary of what
//! entries repeat, of the two JSON texts one after the other, so the after — mostly a repeat of
//! the before — costs a few bytes more).
//! Who, the action, the project, the environment, the kind and the key are stored as numbers
//! naming rows of `audit_names` (each word once; migration 0005); the `audit_log` view reads them
//! back as text. Old entries are deleted after `--audit-retention-days` (0, the default: kept for ever) by the
//! background task of `crate::retention`.

use std::io::Read as _;

use rusqlite::{Connection, params};
use serde_json::Value;

use super::{Result, StoreError, now_ms};

/// The stored form of a change: the byte [`FORMAT`] then the zstd frame, compressed with the
/// raw-content dictionary [`DICTIONARY`], of `before` `\n` `after` (a side absent: empty;
/// compact JSON has no raw newline).
pub fn compress(before: Option<&Value>, after: Option<&Value>) -> Vec<u8> {
    let text = format!(
        "{}\n{}",
        before.map(Value::to_string).unwrap_or_default(),
        after.map(Value::to_string).unwrap_or_default()
    );
    thread_local! {
        // Made once per thread: preparing the dictionary costs more than a small entry.
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            std::cell::RefCell::new(zstd::bulk::Compressor::with_dictionary(LEVEL, DICTIONARY.as_bytes()).ok());
    }
    let mut out = vec![FORMAT];
    let compressed = COMPRESSOR.with_borrow_mut(|c| match c {
        Some(c) => c.compress(text.as_bytes()),
        None => Err(std::io::Error::other("no compressor")),
    });
    match compressed {
        Ok(frame) => out.extend_from_slice(&frame),
        // Compressing into memory does not fail; were it to, the text is kept as it is.
        Err(_) => {
            out[0] = PLAIN;
            out.extend_from_slice(text.as_bytes());
        }
    }
    out
}

/// The first byte of a stored change: how the rest is stored.
const FORMAT: u8 = 1;
/// The rest is the text itself.
const PLAIN: u8 = 0;
/// zstd's level: from 9 up an entry is no smaller (44–46 bytes for a state change) and from 15
/// up it costs a hundred times more (60–200 µs against 3 µs per entry).
const LEVEL: i32 = 9;

/// What most audit entries repeat: JSON of flag states, flags and segments as the store writes
/// them (keys sorted, compact). zstd uses it as a raw-content dictionary, so a small entry costs
/// little more than what differs. **Never change it**: stored entries of [`FORMAT`] 1 need it
/// byte for byte; a better one is a new format byte.
const DICTIONARY: &str = concat!(
    r#"{"key":"","name":"","included":[],"excluded":[],"rules":[{"clauses":[{"attribute":"country","op":"in","values":["DE","FR"]}]}]}"#,
    r#"{"client_side":false,"description":"","environments":{"development":{"enabled":false,"fallthrough":{"variation":"off"},"off_variation":"off","prerequisites":[],"rules":[],"targets":[],"version":1},"production":{"enabled":true,"fallthrough":{"variation":"on"},"off_variation":"off","prerequisites":[],"rules":[],"targets":[],"version":1},"staging":{"enabled":true,"fallthrough":{"variation":"on"},"off_variation":"off","prerequisites":[],"rules":[],"targets":[],"version":1}},"key":"","kind":"flag","name":"","tags":[],"temporary":true,"type":"boolean","variations":[{"key":"on","value":true},{"key":"off","value":false}]}"#,
    r#"{"kind":"config","type":"string","variations":[{"key":"","value":""}]}{"type":"number"}{"type":"json"}"#,
    r#"{"enabled":false,"fallthrough":{"rollout":{"bucket_by":"targetingKey","variations":[{"variation":"on","weight":50000},{"variation":"off","weight":50000}]}},"off_variation":"off","prerequisites":[{"flag":"","variations":["on"]}],"rules":[{"clauses":[{"attribute":"email","op":"ends_with","values":["@example.com"]},{"op":"in_segment","values":["beta"]}],"id":"","serve":{"variation":"on"}}],"targets":[{"values":["user-1","user-2"],"variation":"on"}],"version":2}"#,
    r#""op":"not_in""op":"starts_with""op":"contains""op":"matches""op":"semver_gte""op":"semver_lt""op":"gt""op":"lt""op":"before""op":"after","negate":true"#,
    r#"{"enabled":true,"fallthrough":{"variation":"on"},"off_variation":"off","prerequisites":[],"rules":[],"targets":[],"version":1}"#,
    "\n",
    r#"{"enabled":false,"fallthrough":{"variation":"off"},"off_variation":"off","prerequisites":[],"rules":[],"targets":[],"version":2}"#,
);

/// Reads back what [`compress`] stored.
pub fn decompress(change: &[u8]) -> Result<(Option<Value>, Option<Value>)> {
    let unreadable = |e: std::io::Error| StoreError::io("an audit entry's stored change is unreadable", e);
    let text = match change.split_first() {
        Some((&FORMAT, frame)) => {
            let mut text = String::new();
            zstd::stream::read::Decoder::with_dictionary(frame, DICTIONARY.as_bytes())
                .and_then(|mut d| d.read_to_string(&mut text))
                .map_err(unreadable)?;
            text
        }
        Some((&PLAIN, text)) => String::from_utf8(text.to_vec())
            .map_err(|e| unreadable(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
        _ => {
            return Err(unreadable(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "unknown format",
            )));
        }
    };
    let (before, after) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    let side = |s: &str| -> Result<Option<Value>> {
        if s.is_empty() {
            Ok(None)
        } else {
            Ok(Some(serde_json::from_str(s)?))
        }
    };
    Ok((side(before)?, side(after)?))
}

/// Compacts up to `limit` entries written before compression (text `before`/`after`); returns
/// how many. Call in a write transaction.
pub fn compact_old_entries(conn: &Connection, limit: u32) -> Result<usize> {
    let rows: Vec<(i64, Option<String>, Option<String>)> = conn
        .prepare_cached(
            "SELECT id, before, after FROM audit_entries
             WHERE change IS NULL AND (before IS NOT NULL OR after IS NOT NULL) LIMIT ?1",
        )?
        .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = conn
        .prepare_cached("UPDATE audit_entries SET change = ?2, before = NULL, after = NULL WHERE id = ?1")?;
    for (id, before, after) in &rows {
        // Re-serialised compactly, as new entries are (and so never holding a raw newline).
        let parse = |s: &Option<String>| -> Result<Option<Value>> {
            Ok(s.as_deref().map(serde_json::from_str).transpose()?)
        };
        let change = compress(parse(before)?.as_ref(), parse(after)?.as_ref());
        update.execute(params![id, change])?;
    }
    Ok(rows.len())
}

/// Deletes the entries older than `before` (Unix ms), and the names no entry uses any more;
/// returns how many entries. Entries an enabled webhook has not delivered yet are kept (see
/// [`super::webhooks::PRUNABLE`]).
pub fn prune(conn: &Connection, before: i64) -> Result<usize> {
    let deleted = conn
        .prepare_cached(&format!(
            "DELETE FROM audit_entries WHERE at < ?1 AND {}",
            super::webhooks::PRUNABLE
        ))?
        .execute([before])?;
    if deleted > 0 {
        conn.prepare_cached(
            "DELETE FROM audit_names WHERE id NOT IN (
                 SELECT actor FROM audit_entries UNION SELECT action FROM audit_entries
                 UNION SELECT project FROM audit_entries WHERE project IS NOT NULL
                 UNION SELECT environment FROM audit_entries WHERE environment IS NOT NULL
                 UNION SELECT entity_kind FROM audit_entries
                 UNION SELECT entity_key FROM audit_entries WHERE entity_key IS NOT NULL)",
        )?
        .execute([])?;
    }
    Ok(deleted)
}

/// Whether any entry is older than `before`, or any is still uncompressed (so the retention task
/// writes — and publishes — only when it has something to do).
pub fn needs_upkeep(conn: &Connection, before: Option<i64>) -> Result<bool> {
    let old = match before {
        Some(before) => conn
            .prepare_cached(&format!(
                "SELECT 1 FROM audit_entries WHERE at < ?1 AND {} LIMIT 1",
                super::webhooks::PRUNABLE
            ))?
            .exists([before])?,
        None => false,
    };
    Ok(old
        || conn
            .prepare_cached(
                "SELECT 1 FROM audit_entries WHERE change IS NULL AND (before IS NOT NULL OR after IS NOT NULL) LIMIT 1",
            )?
            .exists([])?)
}

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
    let name = |n: Option<&str>| n.map(|n| name_id(conn, n)).transpose();
    conn.prepare_cached(
        "INSERT INTO audit_entries (at, actor_user_id, actor, action, project, environment, entity_kind, entity_key, change)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        now_ms(),
        actor.user_id,
        name_id(conn, &actor.name)?,
        name_id(conn, action)?,
        name(entity.project)?,
        name(entity.environment)?,
        name_id(conn, entity.kind)?,
        name(entity.key)?,
        compress(before, after),
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The id of `name` in `audit_names`, added when new.
fn name_id(conn: &Connection, name: &str) -> Result<i64> {
    let found = conn
        .prepare_cached("SELECT id FROM audit_names WHERE name = ?1")?
        .query_row([name], |r| r.get(0));
    match found {
        Ok(id) => Ok(id),
        Err(rusqlite::Error::QueryReturnedNoRows) => {
            conn.prepare_cached("INSERT INTO audit_names (name) VALUES (?1)")?
                .execute([name])?;
            Ok(conn.last_insert_rowid())
        }
        Err(e) => Err(e.into()),
    }
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

const ENTRY_COLUMNS: &str = "id, at, actor, actor_user_id, action, project_key, environment_key, entity_kind, entity_key, before, after, change";

/// Rows of the audit log, newest first.
pub fn list(conn: &Connection, query: &AuditQuery<'_>) -> Result<Vec<AuditEntry>> {
    // Filters on the entries' name ids (the names looked up once), the columns read through the
    // `audit_log` view.
    let mut sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM audit_log WHERE id IN (SELECT id FROM audit_entries WHERE 1 = 1"
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, value: rusqlite::types::Value| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(project) = query.project {
        arg(
            &mut sql,
            " AND project = (SELECT id FROM audit_names WHERE name = ?)",
            project.to_owned().into(),
        );
    }
    if !query.entity_kinds.is_empty() {
        sql.push_str(" AND (0");
        for kind in query.entity_kinds {
            arg(
                &mut sql,
                " OR entity_kind = (SELECT id FROM audit_names WHERE name = ?)",
                (*kind).to_owned().into(),
            );
        }
        sql.push(')');
    }
    if let Some(key) = query.entity_key {
        arg(
            &mut sql,
            " AND entity_key = (SELECT id FROM audit_names WHERE name = ?)",
            key.to_owned().into(),
        );
    }
    if let Some(before) = query.before {
        arg(&mut sql, " AND id < ?", before.into());
    }
    arg(
        &mut sql,
        " ORDER BY id DESC LIMIT ?) ORDER BY id DESC",
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

/// The entries of `project` after the entry `after`, oldest first, at most `limit` (the
/// webhooks' outbox).
pub fn after(conn: &Connection, project: &str, after: i64, limit: u32) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM audit_log WHERE id IN (
             SELECT id FROM audit_entries
             WHERE id > ?1 AND project = (SELECT id FROM audit_names WHERE name = ?2)
             ORDER BY id LIMIT ?3)
         ORDER BY id"
    ))?;
    let mut rows = stmt.query(params![after, project, limit])?;
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
    let change: Option<Vec<u8>> = r.get(11)?;
    let (before, after) = match change {
        Some(change) => decompress(&change)?,
        None => {
            let before: Option<String> = r.get(9)?;
            let after: Option<String> = r.get(10)?;
            (
                before.map(|s| serde_json::from_str(&s)).transpose()?,
                after.map(|s| serde_json::from_str(&s)).transpose()?,
            )
        }
    };
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
        before,
        after,
    })
}

/// Unix milliseconds as RFC 3339 (UTC, milliseconds).
pub(crate) fn rfc3339(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_is_stored_once_and_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let ops = dir.path().join("ops.db");
        crate::store::operational::open(&ops).unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrations().to_latest(&mut conn).unwrap();
        // The operational database, as live connections have it (webhooks' positions).
        conn.execute("ATTACH DATABASE ?1 AS ops", [ops.to_string_lossy()])
            .unwrap();
        let hostile = "a,b \"q\"\t<script>é";
        let actor = Actor::user(7, hostile);
        for (key, env) in [("k1", Some("production")), ("k2", None), ("k1", Some(hostile))] {
            let entity = Entity {
                kind: "flag_state",
                key: Some(key),
                project: Some("shop"),
                environment: env,
            };
            record(&conn, &actor, "update", entity, None, Some(&Value::Bool(true))).unwrap();
        }
        // hostile (actor and environment), update, flag_state, k1, k2, shop, production.
        let names: i64 = conn
            .query_row("SELECT count(*) FROM audit_names", [], |r| r.get(0))
            .unwrap();
        assert_eq!(names, 7);
        let listed = list(
            &conn,
            &AuditQuery {
                project: Some("shop"),
                entity_key: Some("k1"),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].actor, hostile);
        assert_eq!(listed[0].environment.as_deref(), Some(hostile));
        assert_eq!(listed[1].environment.as_deref(), Some("production"));
        assert_eq!(listed[0].entity_kind, "flag_state");
        assert_eq!(listed[0].after, Some(Value::Bool(true)));
        let none = list(
            &conn,
            &AuditQuery {
                entity_key: Some("no such key"),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .unwrap();
        assert!(none.is_empty());
        // Pruning deletes every entry but the newest (webhooks' positions need it), and the
        // names only the deleted ones used (k2 and production).
        assert_eq!(prune(&conn, i64::MAX).unwrap(), 2);
        let names: i64 = conn
            .query_row("SELECT count(*) FROM audit_names", [], |r| r.get(0))
            .unwrap();
        assert_eq!(names, 5);
    }

    #[test]
    fn a_change_reads_back_as_written_and_costs_less_than_its_text() {
        let before = serde_json::json!({"enabled": true, "targets": [{"variation": "on",
            "values": ["a,b", "\"quoted\"", "tab\there", "new\nline", "<script>", "é"]}], "version": 4});
        let mut after = before.clone();
        after["enabled"] = Value::Bool(false);
        after["version"] = 5.into();
        for (b, a) in [
            (Some(&before), Some(&after)),
            (None, Some(&after)),
            (Some(&before), None),
            (None, None),
            (Some(&Value::Null), Some(&Value::String(String::new()))),
        ] {
            let stored = compress(b, a);
            assert_eq!(decompress(&stored).unwrap(), (b.cloned(), a.cloned()));
        }
        let text = before.to_string().len() + after.to_string().len();
        let stored = compress(Some(&before), Some(&after)).len();
        assert!(stored * 2 < text, "{stored} bytes for {text} of text");
    }
}
