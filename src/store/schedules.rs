//! Scheduled changes (DESIGN.md §9): a patch of one flag's state in one environment, applied at
//! a set time by the server's applier (`crate::scheduler`).
//!
//! A patch is validated when it is scheduled (by applying it to the current state and rolling
//! back) and again when it is due. Applying is one write transaction that first *claims* the
//! schedule (`pending` → `applied`, only if still pending) and then applies the patch through
//! [`flags::patch_state`], the same code path as `PATCH …/environments/{env}`: two processes on
//! one data dir serialise on the writer lock, so the second finds nothing pending and does
//! nothing. A patch that no longer validates marks the schedule `failed` with why, in the same
//! transaction, and leaves the flag untouched.

use flagstaff_eval::model::{Document, ScheduledChange};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::audit::{self, Actor, Entity};
use super::environments::{self, Environment};
use super::flags::{self, StatePatch};
use super::projects::{self, ProjectHead};
use super::{Changes, Result, StoreError, now_ms};

/// How many applied, failed or cancelled schedules a listing shows after the pending ones.
pub const RECENT: u32 = 20;

/// How far in the past a new schedule's time may be (clocks differ a little): older is a 400,
/// most likely a time zone mistake.
pub const PAST_TOLERANCE_MS: i64 = 60_000;

/// What `POST …/schedules` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    /// RFC 3339, any offset; stored in UTC.
    pub at: String,
    /// Any subset of the environment state, as `PATCH …/environments/{env}` takes it.
    pub patch: Value,
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    pub id: i64,
    pub flag: String,
    pub environment: String,
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    pub patch: Value,
    pub created_by: String,
    pub created_at: String,
    /// `pending`, `applied`, `failed` or `cancelled`.
    pub status: String,
    /// When it was applied, failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_at: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The state's version it produced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `at` in Unix milliseconds (for pages that show it in the reader's time zone).
    #[serde(skip)]
    pub at_ms: i64,
}

/// What applying one schedule did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Another process (or an earlier call) claimed it first, or it was cancelled.
    NotPending,
    /// Applied; the state's version after it.
    Done { version: u64 },
    /// Refused; the flag is untouched.
    Failed { error: String },
}

/// Parses RFC 3339 into Unix ms; a 400 naming `path` otherwise.
pub fn parse_at(text: &str, path: &str) -> Result<i64> {
    let parsed =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| {
            StoreError::bad_request(
                format!("{path} must be an RFC 3339 time such as 2027-01-31T09:00:00Z, not {text:?} ({e})"),
                Some(path),
            )
        })?;
    Ok((parsed.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Parses a patch; a 400 naming the field (`patch.rules[0].serve`) otherwise.
pub fn parse_patch(patch: &Value, path: &str) -> Result<StatePatch> {
    if !patch.is_object() {
        return Err(StoreError::bad_request(
            format!("{path} must be an object with any of the state's fields"),
            Some(path),
        ));
    }
    serde_path_to_error::deserialize::<_, StatePatch>(patch).map_err(|e| {
        // Every field of a patch is optional: serde never reports one missing.
        let field = e.path().to_string();
        let message = e.inner().to_string();
        let full = if field == "." {
            path.to_owned()
        } else {
            format!("{path}.{field}")
        };
        StoreError::bad_request(format!("{full}: {message}"), Some(&full))
    })
}

/// Applies `patch` to the flag's state inside a savepoint and rolls it back: the errors it
/// would meet now, with paths under `path` (`patch.rules[0].clauses[1].op`).
fn dry_run(
    tx: &Connection,
    head: &ProjectHead,
    flag: &str,
    env: &str,
    patch: StatePatch,
    path: &str,
) -> Result<()> {
    tx.execute_batch("SAVEPOINT schedule_check")?;
    let outcome = flags::patch_state(tx, &Actor::cli(), &head.key, flag, env, patch, None);
    tx.execute_batch("ROLLBACK TO schedule_check; RELEASE schedule_check")?;
    match outcome {
        Ok(_) => Ok(()),
        Err(StoreError::Invalid(errors)) => {
            let first = errors.first();
            let at = |p: &str| -> String {
                if p.is_empty() {
                    path.to_owned()
                } else if p.starts_with("flags[")
                    || p.starts_with("segments[")
                    || p.starts_with("environments[")
                {
                    p.to_owned()
                } else {
                    format!("{path}.{p}")
                }
            };
            let message = errors
                .iter()
                .map(|e| format!("{}: {}", at(&e.path), e.message))
                .collect::<Vec<_>>()
                .join("; ");
            Err(StoreError::bad_request(
                message,
                Some(&at(first.map_or("", |e| e.path.as_str()))),
            ))
        }
        Err(e) => Err(e),
    }
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Schedule, String)> {
    let at: i64 = r.get(3)?;
    let patch: String = r.get(4)?;
    Ok((
        Schedule {
            id: r.get(0)?,
            flag: r.get(1)?,
            environment: r.get(2)?,
            at: audit::rfc3339(at),
            patch: Value::Null,
            created_by: r.get(5)?,
            created_at: audit::rfc3339(r.get(6)?),
            status: r.get(7)?,
            done_at: r.get::<_, Option<i64>>(8)?.map(audit::rfc3339),
            error: r.get(9)?,
            version: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
            at_ms: at,
        },
        patch,
    ))
}

const SELECT: &str =
    "SELECT s.id, f.key, e.key, s.at, s.patch, s.created_by, s.created_at, s.status, s.done_at,
        s.error, s.version
   FROM schedules s JOIN flags f ON f.id = s.flag_id JOIN environments e ON e.id = s.environment_id";

fn collect(stmt: &mut rusqlite::CachedStatement<'_>, params: impl rusqlite::Params) -> Result<Vec<Schedule>> {
    let rows = stmt
        .query_map(params, from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(mut s, patch)| {
            s.patch = serde_json::from_str(&patch)?;
            Ok(s)
        })
        .collect()
}

/// One flag's schedules in one environment: the pending ones by time, then the [`RECENT`]
/// latest applied, failed or cancelled ones, newest first.
pub fn list(conn: &Connection, project: &str, flag: &str, env: &str) -> Result<Vec<Schedule>> {
    let head = projects::head(conn, project)?;
    let row = flags::row(conn, head.id, flag)?.ok_or_else(|| {
        StoreError::not_found(
            super::Resource::Flag,
            format!("flag {flag:?} in project {project:?}"),
        )
    })?;
    let env = environments::in_project(conn, &head, env)?;
    let mut pending = conn.prepare_cached(&format!(
        "{SELECT} WHERE s.flag_id = ?1 AND s.environment_id = ?2 AND s.status = 'pending' ORDER BY s.at, s.id"
    ))?;
    let mut list = collect(&mut pending, params![row.id, env.id])?;
    let mut done = conn.prepare_cached(&format!(
        "{SELECT} WHERE s.flag_id = ?1 AND s.environment_id = ?2 AND s.status <> 'pending'
         ORDER BY s.done_at DESC, s.id DESC LIMIT ?3"
    ))?;
    list.extend(collect(&mut done, params![row.id, env.id, RECENT])?);
    Ok(list)
}

/// A project's pending schedules, by time (for export).
pub fn pending_in(conn: &Connection, project_id: i64) -> Result<Vec<Schedule>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE f.project_id = ?1 AND s.status = 'pending' ORDER BY s.at, s.id, f.key, e.key"
    ))?;
    collect(&mut stmt, [project_id])
}

fn one(conn: &Connection, id: i64) -> Result<Schedule> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE s.id = ?1"))?;
    collect(&mut stmt, [id])?
        .pop()
        .ok_or_else(|| StoreError::not_found(super::Resource::Schedule, format!("schedule {id}")))
}

fn entity<'a>(project: &'a str, flag: &'a str, env: &'a str) -> Entity<'a> {
    Entity {
        kind: "schedule",
        key: Some(flag),
        project: Some(project),
        environment: Some(env),
    }
}

fn insert(
    tx: &Connection,
    flag_id: i64,
    env: &Environment,
    at: i64,
    patch: &Value,
    created_by: &str,
    created_by_user_id: Option<i64>,
) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO schedules (flag_id, environment_id, at, patch, created_by, created_by_user_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        flag_id,
        env.id,
        at,
        patch.to_string(),
        created_by,
        created_by_user_id,
        now_ms()
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Schedules a patch. 400 (naming the field) when the time or the patch is wrong, or when the
/// patch would not apply now.
pub fn create(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    flag: &str,
    env: &str,
    new: NewSchedule,
) -> Result<(Schedule, Changes)> {
    let head = projects::head(tx, project)?;
    let row = flags::row(tx, head.id, flag)?.ok_or_else(|| {
        StoreError::not_found(
            super::Resource::Flag,
            format!("flag {flag:?} in project {project:?}"),
        )
    })?;
    let environment = environments::in_project(tx, &head, env)?;
    let at = parse_at(&new.at, "at")?;
    if at < now_ms() - PAST_TOLERANCE_MS {
        return Err(StoreError::bad_request(
            format!(
                "at ({}) is in the past: a scheduled change needs a time to come",
                new.at
            ),
            Some("at"),
        ));
    }
    let patch = parse_patch(&new.patch, "patch")?;
    dry_run(tx, &head, flag, env, patch, "patch")?;
    let id = insert(
        tx,
        row.id,
        &environment,
        at,
        &new.patch,
        &actor.name,
        actor.user_id,
    )?;
    let schedule = one(tx, id)?;
    audit::record(
        tx,
        actor,
        "schedule",
        entity(project, flag, env),
        None,
        Some(&serde_json::to_value(&schedule)?),
    )?;
    // Nothing served changes until it is applied.
    Ok((schedule, Changes::default()))
}

/// Cancels a pending schedule. 404 if it is not this flag's in this environment, 409 if it is
/// no longer pending.
pub fn cancel(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    flag: &str,
    env: &str,
    id: i64,
) -> Result<(Schedule, Changes)> {
    let head = projects::head(tx, project)?;
    let gone = || {
        StoreError::not_found(
            super::Resource::Schedule,
            format!("schedule {id} of flag {flag:?} in {env:?}"),
        )
    };
    let before = match one(tx, id) {
        Ok(s) => s,
        Err(StoreError::NotFound { .. }) => return Err(gone()),
        Err(e) => return Err(e),
    };
    // Its flag must be this project's (keys repeat across projects).
    let ours = flags::row(tx, head.id, flag)?.is_some_and(|row| {
        tx.query_row("SELECT flag_id FROM schedules WHERE id = ?1", [id], |r| {
            r.get::<_, i64>(0)
        })
        .is_ok_and(|flag_id| flag_id == row.id)
    });
    if before.flag != flag || before.environment != env || !ours {
        return Err(gone());
    }
    if before.status != "pending" {
        return Err(StoreError::conflict(format!(
            "schedule {id} is {} and can no longer be cancelled",
            before.status
        )));
    }
    tx.prepare_cached("UPDATE schedules SET status = 'cancelled', done_at = ?2 WHERE id = ?1")?
        .execute(params![id, now_ms()])?;
    let after = one(tx, id)?;
    audit::record(
        tx,
        actor,
        "cancel",
        entity(project, flag, env),
        Some(&serde_json::to_value(&before)?),
        Some(&serde_json::to_value(&after)?),
    )?;
    Ok((after, Changes::default()))
}

/// The time of the next pending schedule, if any (Unix ms).
pub fn next_due(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT min(at) FROM schedules WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?)
}

/// The pending schedules due at `now`, in time order.
pub fn due(conn: &Connection, now: i64) -> Result<Vec<i64>> {
    let mut stmt = conn
        .prepare_cached("SELECT id FROM schedules WHERE status = 'pending' AND at <= ?1 ORDER BY at, id")?;
    Ok(stmt
        .query_map([now], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?)
}

/// Claims and applies one schedule, in the caller's write transaction. The audit entry's actor
/// is `schedule (<author>)`, with the author's user id.
pub fn apply(tx: &Connection, id: i64) -> Result<(Applied, Changes)> {
    let now = now_ms();
    let claimed = tx
        .prepare_cached(
            "UPDATE schedules SET status = 'applied', done_at = ?2 WHERE id = ?1 AND status = 'pending'
             RETURNING created_by, created_by_user_id, patch",
        )?
        .query_row(params![id, now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .optional()?;
    let Some((author, author_id, patch)) = claimed else {
        return Ok((Applied::NotPending, Changes::default()));
    };
    let schedule = one(tx, id)?;
    let project: String = tx.query_row(
        "SELECT p.key FROM schedules s JOIN flags f ON f.id = s.flag_id JOIN projects p ON p.id = f.project_id
         WHERE s.id = ?1",
        [id],
        |r| r.get(0),
    )?;
    let actor = Actor {
        user_id: author_id,
        name: format!("schedule ({author})"),
    };
    let outcome = serde_json::from_str::<Value>(&patch)
        .map_err(StoreError::from)
        .and_then(|value| parse_patch(&value, "patch"))
        .and_then(|patch| {
            tx.execute_batch("SAVEPOINT schedule_apply")?;
            let applied = flags::patch_state(
                tx,
                &actor,
                &project,
                &schedule.flag,
                &schedule.environment,
                patch,
                None,
            );
            match &applied {
                Ok(_) => tx.execute_batch("RELEASE schedule_apply")?,
                Err(_) => tx.execute_batch("ROLLBACK TO schedule_apply; RELEASE schedule_apply")?,
            }
            applied
        });
    match outcome {
        Ok((state, changes)) => {
            let version = state.version.unwrap_or(0);
            tx.prepare_cached("UPDATE schedules SET version = ?2 WHERE id = ?1")?
                .execute(params![id, version as i64])?;
            Ok((Applied::Done { version }, changes))
        }
        Err(e @ (StoreError::Sqlite(_) | StoreError::Io { .. } | StoreError::Unusable(_))) => Err(e),
        Err(e) => {
            let error = match &e {
                StoreError::Invalid(errors) => errors
                    .iter()
                    .map(|e| {
                        if e.path.is_empty() {
                            e.message.clone()
                        } else {
                            format!("{}: {}", e.path, e.message)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            };
            tx.prepare_cached("UPDATE schedules SET status = 'failed', error = ?2 WHERE id = ?1")?
                .execute(params![id, error])?;
            let failed = one(tx, id)?;
            audit::record(
                tx,
                &actor,
                "schedule_failed",
                entity(&project, &schedule.flag, &schedule.environment),
                Some(&serde_json::to_value(&schedule)?),
                Some(&serde_json::to_value(&failed)?),
            )?;
            Ok((Applied::Failed { error }, Changes::default()))
        }
    }
}

/// The document's form of a project's pending schedules.
pub fn export(conn: &Connection, project_id: i64) -> Result<Vec<ScheduledChange>> {
    Ok(pending_in(conn, project_id)?
        .into_iter()
        .map(|s| ScheduledChange {
            flag: s.flag,
            environment: s.environment,
            at: s.at,
            patch: s.patch,
            created_by: s.created_by,
        })
        .collect())
}

/// Checks what can be checked of a document's schedules before anything is written: times,
/// patches' shapes, and that the flags and environments they name will exist.
pub fn check_document(doc: &Document, would: &Document) -> Result<()> {
    for (i, s) in doc.schedules.iter().enumerate() {
        let path = format!("schedules[{i}]");
        parse_at(&s.at, &format!("{path}.at"))?;
        parse_patch(&s.patch, &format!("{path}.patch"))?;
        if !would.flags.iter().any(|f| f.key == s.flag) {
            return Err(StoreError::bad_request(
                format!("{path}.flag: no flag {:?} in the project", s.flag),
                Some(&format!("{path}.flag")),
            ));
        }
        if !would.environments.iter().any(|e| e.key == s.environment) {
            return Err(StoreError::bad_request(
                format!(
                    "{path}.environment: no environment {:?} in the project",
                    s.environment
                ),
                Some(&format!("{path}.environment")),
            ));
        }
    }
    Ok(())
}

/// Imports a document's schedules (after its flags): each one not already pending with the
/// same flag, environment, time and patch is added, after a dry run of its patch. Returns the
/// flag keys of those added.
pub fn import(tx: &Connection, actor: &Actor, head: &ProjectHead, doc: &Document) -> Result<Vec<String>> {
    let mut added = Vec::new();
    for (i, s) in doc.schedules.iter().enumerate() {
        let path = format!("schedules[{i}]");
        let at = parse_at(&s.at, &format!("{path}.at"))?;
        let patch = parse_patch(&s.patch, &format!("{path}.patch"))?;
        let row = flags::row(tx, head.id, &s.flag)?.ok_or_else(|| {
            StoreError::bad_request(format!("no flag {:?}", s.flag), Some(&format!("{path}.flag")))
        })?;
        let env = environments::in_project(tx, head, &s.environment)?;
        let exists = tx
            .prepare_cached(
                "SELECT 1 FROM schedules WHERE flag_id = ?1 AND environment_id = ?2 AND at = ?3 AND patch = ?4
                 AND status = 'pending'",
            )?
            .exists(params![row.id, env.id, at, s.patch.to_string()])?;
        if exists {
            continue;
        }
        dry_run(tx, head, &s.flag, &s.environment, patch, &format!("{path}.patch"))?;
        let created_by = if s.created_by.is_empty() {
            actor.name.as_str()
        } else {
            s.created_by.as_str()
        };
        let id = insert(tx, row.id, &env, at, &s.patch, created_by, None)?;
        let schedule = one(tx, id)?;
        audit::record(
            tx,
            actor,
            "import",
            entity(&head.key, &s.flag, &s.environment),
            None,
            Some(&serde_json::to_value(&schedule)?),
        )?;
        added.push(s.flag.clone());
    }
    Ok(added)
}
