//! Webhooks of a project (configuration, published) and their delivery state (operational).
//!
//! A webhook's definition — URL, events, environments, format, enabled, secret — is in
//! `flagstaff.db` with the rest of the configuration, so a restore brings it back. Its position
//! in the audit log and its attempts are in the operational database: delivering writes only
//! there. After a restore from `flagstaff.db` alone the operational database starts empty, so
//! each webhook starts again after its `since_audit_id` (the audit entry of its creation):
//! events since then still in the audit log are delivered again — at-least-once, never fewer.
//!
//! The secret is kept as it is (signatures need it), is returned only by [`create_audited`] and
//! [`rotate_secret_audited`], and never reaches the audit log.

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;

use super::audit::{self, Actor, AuditEntry, Entity};
use super::{Result, StoreError, environments, now_ms, projects};
use crate::webhooks::{Filter, Format};

/// A webhook as admins see it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    pub id: i64,
    pub project: String,
    pub url: String,
    pub events: Vec<String>,
    /// `null`: every environment.
    pub environments: Option<Vec<String>>,
    pub format: Format,
    pub enabled: bool,
    /// Why delivery disabled it (after failing for the whole retry window).
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When its attempts started failing with no success since (Unix ms), if they are.
    pub failing_since: Option<i64>,
}

impl Webhook {
    pub fn filter(&self) -> Filter {
        Filter {
            events: self.events.clone(),
            environments: self.environments.clone(),
        }
    }
}

/// A webhook's settings, already checked for shape (the URL is an absolute http(s) URL, each
/// event pattern is known); the store checks the environments exist.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub events: Vec<String>,
    pub environments: Option<Vec<String>>,
    pub format: Format,
    pub enabled: bool,
}

/// Which fields a change sets.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub environments: Option<Option<Vec<String>>>,
    pub format: Option<Format>,
    pub enabled: Option<bool>,
}

const COLUMNS: &str = "w.id, p.key, w.url, w.events, w.environments, w.format, w.enabled, w.disabled_reason,
    w.created_at, w.updated_at, (SELECT failing_since FROM webhook_positions WHERE webhook_id = w.id)";

fn from_row(r: &rusqlite::Row<'_>) -> Result<Webhook> {
    let events: String = r.get(3)?;
    let environments: Option<String> = r.get(4)?;
    let format: String = r.get(5)?;
    Ok(Webhook {
        id: r.get(0)?,
        project: r.get(1)?,
        url: r.get(2)?,
        events: serde_json::from_str(&events)?,
        environments: environments.map(|e| serde_json::from_str(&e)).transpose()?,
        format: Format::parse(&format).unwrap_or(Format::Json),
        enabled: r.get(6)?,
        disabled_reason: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        failing_since: r.get(10)?,
    })
}

/// The webhooks of a project, oldest first.
pub fn list(conn: &Connection, project: &str) -> Result<Vec<Webhook>> {
    let head = projects::head(conn, project)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhooks w JOIN projects p ON p.id = w.project_id
         WHERE w.project_id = ?1 ORDER BY w.id"
    ))?;
    let mut rows = stmt.query([head.id])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(from_row(row)?);
    }
    Ok(out)
}

/// One webhook of a project; 404 if there is none.
pub fn get(conn: &Connection, project: &str, id: i64) -> Result<Webhook> {
    let head = projects::head(conn, project)?;
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhooks w JOIN projects p ON p.id = w.project_id
         WHERE w.project_id = ?1 AND w.id = ?2"
    ))?
    .query_row(params![head.id, id], |r| Ok(from_row(r)))
    .optional()?
    .transpose()?
    .ok_or_else(|| StoreError::not_found(super::Resource::Webhook, format!("webhook {id}")))
}

/// Every environment named must exist in the project (400 naming `environments[i]`).
fn check_environments(conn: &Connection, project_id: i64, envs: Option<&[String]>) -> Result<()> {
    for (i, env) in envs.unwrap_or_default().iter().enumerate() {
        if environments::find(conn, project_id, env)?.is_none() {
            return Err(StoreError::bad_request(
                format!("environment {env:?} is not an environment of this project"),
                Some(&format!("environments[{i}]")),
            ));
        }
    }
    Ok(())
}

/// What the audit log keeps of a webhook: never its secret.
fn audit_json(w: &Webhook) -> serde_json::Value {
    serde_json::json!({"id": w.id, "url": w.url, "events": w.events, "environments": w.environments,
        "format": w.format, "enabled": w.enabled})
}

fn entity<'a>(id: &'a str, project: &'a str) -> Entity<'a> {
    Entity {
        kind: "webhook",
        key: Some(id),
        project: Some(project),
        environment: None,
    }
}

/// Creates a webhook with its audit row; returns it and its secret (`secret`, or a new one).
pub fn create_audited(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    settings: Settings,
    secret: Option<String>,
) -> Result<(Webhook, String)> {
    let head = projects::head(tx, project)?;
    check_environments(tx, head.id, settings.environments.as_deref())?;
    let secret = secret.unwrap_or_else(crate::webhooks::generate_secret);
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO webhooks (project_id, url, events, environments, format, enabled, secret,
           since_audit_id, created_at, created_by, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?9)",
    )?
    .execute(params![
        head.id,
        settings.url,
        serde_json::to_string(&settings.events)?,
        settings
            .environments
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?,
        settings.format.as_str(),
        settings.enabled,
        secret,
        0,
        now,
        actor.user_id,
    ])?;
    let id = tx.last_insert_rowid();
    let created = get(tx, project, id)?;
    let key = id.to_string();
    let audit_id = audit::record(
        tx,
        actor,
        "create",
        entity(&key, project),
        None,
        Some(&audit_json(&created)),
    )?;
    // Its events are the changes after its own creation.
    tx.prepare_cached("UPDATE webhooks SET since_audit_id = ?2 WHERE id = ?1")?
        .execute(params![id, audit_id])?;
    Ok((created, secret))
}

/// Changes a webhook's settings with its audit row. Enabling it clears why it was disabled.
pub fn update_audited(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    id: i64,
    change: Change,
) -> Result<Webhook> {
    let before = get(tx, project, id)?;
    let head = projects::head(tx, project)?;
    if let Some(envs) = &change.environments {
        check_environments(tx, head.id, envs.as_deref())?;
    }
    let url = change.url.unwrap_or_else(|| before.url.clone());
    let events = change.events.unwrap_or_else(|| before.events.clone());
    let envs = change.environments.unwrap_or_else(|| before.environments.clone());
    let format = change.format.unwrap_or(before.format);
    let enabled = change.enabled.unwrap_or(before.enabled);
    if (&url, &events, &envs, format, enabled)
        == (
            &before.url,
            &before.events,
            &before.environments,
            before.format,
            before.enabled,
        )
    {
        return Ok(before);
    }
    tx.prepare_cached(
        "UPDATE webhooks SET url = ?2, events = ?3, environments = ?4, format = ?5, enabled = ?6,
           disabled_reason = CASE WHEN ?6 THEN NULL ELSE disabled_reason END, updated_at = ?7
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        url,
        serde_json::to_string(&events)?,
        envs.as_ref().map(serde_json::to_string).transpose()?,
        format.as_str(),
        enabled,
        now_ms()
    ])?;
    let after = get(tx, project, id)?;
    let key = id.to_string();
    audit::record(
        tx,
        actor,
        "update",
        entity(&key, project),
        Some(&audit_json(&before)),
        Some(&audit_json(&after)),
    )?;
    Ok(after)
}

/// Replaces a webhook's secret (`secret`, or a new one) with its audit row (without either
/// secret); returns the new one.
pub fn rotate_secret_audited(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    id: i64,
    secret: Option<String>,
) -> Result<String> {
    let webhook = get(tx, project, id)?;
    let secret = secret.unwrap_or_else(crate::webhooks::generate_secret);
    tx.prepare_cached("UPDATE webhooks SET secret = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, secret, now_ms()])?;
    let json = audit_json(&webhook);
    let key = id.to_string();
    audit::record(
        tx,
        actor,
        "rotate_secret",
        entity(&key, project),
        Some(&json),
        Some(&json),
    )?;
    Ok(secret)
}

/// Deletes a webhook with its audit row. (Its operational rows are left to be pruned.)
pub fn delete_audited(tx: &Connection, actor: &Actor, project: &str, id: i64) -> Result<()> {
    let before = get(tx, project, id)?;
    tx.prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
        .execute([id])?;
    let key = id.to_string();
    audit::record(
        tx,
        actor,
        "delete",
        entity(&key, project),
        Some(&audit_json(&before)),
        None,
    )?;
    Ok(())
}

/// Disables a webhook that failed for the whole retry window, saying why (audited, by
/// "webhook delivery"). Nothing happens if it was changed or deleted meanwhile.
pub fn disable_for_failures(tx: &Connection, id: i64, reason: &str) -> Result<()> {
    let project: Option<String> = tx
        .query_row(
            "SELECT p.key FROM webhooks w JOIN projects p ON p.id = w.project_id WHERE w.id = ?1 AND w.enabled",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(project) = project else {
        return Ok(());
    };
    let before = get(tx, &project, id)?;
    tx.prepare_cached(
        "UPDATE webhooks SET enabled = 0, disabled_reason = ?2, updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, reason, now_ms()])?;
    let after = get(tx, &project, id)?;
    let actor = Actor {
        user_id: None,
        name: "webhook delivery".to_owned(),
    };
    let key = id.to_string();
    audit::record(
        tx,
        &actor,
        "update",
        entity(&key, &project),
        Some(&audit_json(&before)),
        Some(&audit_json(&after)),
    )?;
    Ok(())
}

// ── Delivery state (the operational database) ──────────────────────────────────────────────

/// An enabled webhook as the deliverer needs it: settings, secret, position and retry state.
#[derive(Debug, Clone)]
pub struct Target {
    pub webhook: Webhook,
    pub secret: String,
    /// The last audit entry it is done with.
    pub position: i64,
    /// The entry being retried, its first failure, failed attempts, and when to try again.
    pub retry: Option<Retry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub audit_id: i64,
    pub since: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
}

/// Every enabled webhook, with its delivery state.
pub fn targets(conn: &Connection) -> Result<Vec<Target>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, w.secret, coalesce(pos.audit_id, w.since_audit_id), pos.retry_audit_id,
           pos.retry_since, pos.retries, pos.next_attempt_at
         FROM webhooks w JOIN projects p ON p.id = w.project_id
         LEFT JOIN webhook_positions pos ON pos.webhook_id = w.id
         WHERE w.enabled ORDER BY w.id"
    ))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let retry = match (r.get::<_, Option<i64>>(13)?, r.get::<_, Option<i64>>(14)?) {
            (Some(audit_id), Some(since)) => Some(Retry {
                audit_id,
                since,
                attempts: r.get::<_, Option<i64>>(15)?.unwrap_or(0),
                next_attempt_at: r.get::<_, Option<i64>>(16)?.unwrap_or(0),
            }),
            _ => None,
        };
        out.push(Target {
            webhook: from_row(r)?,
            secret: r.get(11)?,
            position: r.get(12)?,
            retry,
        });
    }
    Ok(out)
}

/// The secret of a webhook of a project (for the test event).
pub fn secret(conn: &Connection, project: &str, id: i64) -> Result<String> {
    get(conn, project, id)?;
    Ok(conn.query_row("SELECT secret FROM webhooks WHERE id = ?1", [id], |r| r.get(0))?)
}

/// Audit entries of `project` after `after`, oldest first, at most `limit`.
pub fn entries_after(conn: &Connection, project: &str, after: i64, limit: u32) -> Result<Vec<AuditEntry>> {
    audit::after(conn, project, after, limit)
}

/// One attempt, as recorded and shown on the webhook's page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub id: i64,
    pub audit_id: Option<i64>,
    pub event_id: String,
    pub event_type: String,
    /// Unix ms.
    pub at: i64,
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response: Option<String>,
    /// `delivered`, `retrying`, `failed` (given up), or `test`.
    pub outcome: String,
}

/// Attempts kept per webhook (older ones are deleted as new ones are recorded).
pub const ATTEMPTS_KEPT: i64 = 500;

/// Records an attempt (in an operational transaction).
pub fn record_attempt(ops: &Connection, webhook_id: i64, a: &Attempt) -> Result<()> {
    ops.prepare_cached(
        "INSERT INTO webhook_attempts (webhook_id, audit_id, event_id, event_type, at, status,
           latency_ms, error, response, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        webhook_id,
        a.audit_id,
        a.event_id,
        a.event_type,
        a.at,
        a.status,
        a.latency_ms,
        a.error,
        a.response,
        a.outcome
    ])?;
    ops.prepare_cached(
        "DELETE FROM webhook_attempts WHERE webhook_id = ?1 AND id <= (SELECT id FROM webhook_attempts
           WHERE webhook_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?
    .execute(params![webhook_id, ATTEMPTS_KEPT])?;
    Ok(())
}

/// Moves a webhook's position to `audit_id` (done with it) and clears its retry state; a
/// delivery (`succeeded`) also ends its failing streak.
pub fn advance(ops: &Connection, webhook_id: i64, audit_id: i64, succeeded: bool) -> Result<()> {
    ops.prepare_cached(
        "INSERT INTO webhook_positions (webhook_id, audit_id) VALUES (?1, ?2)
         ON CONFLICT (webhook_id) DO UPDATE SET audit_id = max(audit_id, excluded.audit_id),
           retry_audit_id = NULL, retry_since = NULL, retries = 0, next_attempt_at = NULL,
           failing_since = CASE WHEN ?3 THEN NULL ELSE failing_since END",
    )?
    .execute(params![webhook_id, audit_id, succeeded])?;
    Ok(())
}

/// Records that the entry after `position` failed and is to be tried again at `next_attempt_at`.
pub fn retry_later(ops: &Connection, webhook_id: i64, position: i64, retry: Retry) -> Result<()> {
    ops.prepare_cached(
        "INSERT INTO webhook_positions (webhook_id, audit_id, retry_audit_id, retry_since, retries,
           next_attempt_at, failing_since) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?4)
         ON CONFLICT (webhook_id) DO UPDATE SET audit_id = max(audit_id, excluded.audit_id),
           retry_audit_id = excluded.retry_audit_id, retry_since = excluded.retry_since,
           retries = excluded.retries, next_attempt_at = excluded.next_attempt_at,
           failing_since = coalesce(failing_since, excluded.failing_since)",
    )?
    .execute(params![
        webhook_id,
        position,
        retry.audit_id,
        retry.since,
        retry.attempts,
        retry.next_attempt_at
    ])?;
    Ok(())
}

/// The newest attempts of a webhook of a project, newest first.
pub fn attempts(conn: &Connection, project: &str, id: i64, limit: u32) -> Result<Vec<Attempt>> {
    get(conn, project, id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, audit_id, event_id, event_type, at, status, latency_ms, error, response, outcome
         FROM webhook_attempts WHERE webhook_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![id, limit], |r| {
            Ok(Attempt {
                id: r.get(0)?,
                audit_id: r.get(1)?,
                event_id: r.get(2)?,
                event_type: r.get(3)?,
                at: r.get(4)?,
                status: r.get(5)?,
                latency_ms: r.get(6)?,
                error: r.get(7)?,
                response: r.get(8)?,
                outcome: r.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Deletes the operational rows of webhooks that no longer exist (`alive`: the ids that do).
pub fn forget_the_gone(ops: &Connection, alive: &[i64]) -> Result<usize> {
    let list = alive.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let mut n = ops.execute(
        &format!("DELETE FROM webhook_positions WHERE webhook_id NOT IN ({list})"),
        [],
    )?;
    n += ops.execute(
        &format!("DELETE FROM webhook_attempts WHERE webhook_id NOT IN ({list})"),
        [],
    )?;
    Ok(n)
}

/// The ids of every webhook.
pub fn all_ids(conn: &Connection) -> Result<Vec<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM webhooks")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?)
}

/// The SQL condition an audit entry's `id` must meet to be pruned: every enabled webhook is done
/// with it (so retention never deletes an event not yet delivered; disabled webhooks do not hold
/// entries back), and it is not the newest entry (ids would start again from 1 in an empty log,
/// behind every position).
pub const PRUNABLE: &str = "id < (SELECT max(id) FROM audit_entries) AND id <= coalesce(
    (SELECT min(coalesce(pos.audit_id, w.since_audit_id)) FROM webhooks w
       LEFT JOIN webhook_positions pos ON pos.webhook_id = w.id WHERE w.enabled),
    9223372036854775807)";
