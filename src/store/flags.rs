//! Flags (and configs): their definitions, their state in each environment, their history
//! and the restore of an earlier version.
//!
//! A definition is stored as `model::Flag` without `environments`; a state as
//! `model::FlagEnvState` without `version` (a missing row is the default state, version 0).
//! Every change is validated as part of the whole would-be project before anything is written,
//! and writes exactly one audit row. Writing what is already stored is no change at all: no
//! version, revision or audit row.

use std::collections::BTreeMap;

use flagstaff_eval::ValidationError;
use flagstaff_eval::model::{Flag, FlagEnvState, FlagKind, Prerequisite, Rule, Serve, Target};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Deserializer};

use super::audit::{self, Actor, AuditEntry, AuditQuery, Entity};
use super::environments::{self, Environment};
use super::projects::{self, Focus, ProjectHead};
use super::{Changes, Result, StoreError, now_ms};

/// The audit kinds of a flag's history.
pub const HISTORY_KINDS: [&str; 2] = ["flag", "flag_state"];

/// A stored flag: its id and definition (no `environments`).
#[derive(Debug, Clone)]
pub(crate) struct FlagRow {
    pub id: i64,
    pub definition: Flag,
}

/// Which flags to list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagFilter {
    /// Only flags, or only configs.
    pub kind: Option<FlagKind>,
    /// Only flags with this tag.
    pub tag: Option<String>,
}

/// Any subset of a flag's state in one environment (`PATCH`). `null` resets `off_variation`
/// and `fallthrough` to their defaults. A `version` is accepted and ignored: the server assigns
/// versions (use `If-Match` to refuse a stale change).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePatch {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub off_variation: Option<Option<String>>,
    pub prerequisites: Option<Vec<Prerequisite>>,
    pub targets: Option<Vec<Target>>,
    pub rules: Option<Vec<Rule>>,
    #[serde(default, deserialize_with = "present")]
    pub fallthrough: Option<Option<Serve>>,
    pub version: Option<u64>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl StatePatch {
    fn apply(self, mut state: FlagEnvState) -> FlagEnvState {
        if let Some(enabled) = self.enabled {
            state.enabled = enabled;
        }
        if let Some(off) = self.off_variation {
            state.off_variation = off;
        }
        if let Some(prerequisites) = self.prerequisites {
            state.prerequisites = prerequisites;
        }
        if let Some(targets) = self.targets {
            state.targets = targets;
        }
        if let Some(rules) = self.rules {
            state.rules = rules;
        }
        if let Some(fallthrough) = self.fallthrough {
            state.fallthrough = fallthrough;
        }
        state
    }
}

pub(crate) fn row(conn: &Connection, project_id: i64, key: &str) -> Result<Option<FlagRow>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, definition FROM flags WHERE project_id = ?1 AND key = ?2")?;
    let found = stmt
        .query_row(params![project_id, key], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    found
        .map(|(id, definition)| {
            Ok(FlagRow {
                id,
                definition: serde_json::from_str(&definition)?,
            })
        })
        .transpose()
}

fn existing(conn: &Connection, head: &ProjectHead, key: &str) -> Result<FlagRow> {
    row(conn, head.id, key)?
        .ok_or_else(|| StoreError::not_found(format!("flag {key:?} in project {:?}", head.key)))
}

/// The stored state of a flag in an environment, with its version (the default state,
/// version 0, when none is stored).
pub(crate) fn stored_state(conn: &Connection, flag_id: i64, environment_id: i64) -> Result<FlagEnvState> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, version FROM flag_states WHERE flag_id = ?1 AND environment_id = ?2",
    )?;
    let found = stmt
        .query_row(params![flag_id, environment_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .optional()?;
    Ok(match found {
        Some((json, version)) => {
            let mut state: FlagEnvState = serde_json::from_str(&json)?;
            state.version = Some(version as u64);
            state
        }
        None => FlagEnvState {
            version: Some(0),
            ..FlagEnvState::default()
        },
    })
}

/// Writes a state (its `version` ignored) and returns the new version.
fn write_state(tx: &Connection, flag_id: i64, environment_id: i64, state: &FlagEnvState) -> Result<u64> {
    let json = serde_json::to_string(&FlagEnvState {
        version: None,
        ..state.clone()
    })?;
    let version: i64 = tx
        .prepare_cached(
            "INSERT INTO flag_states (flag_id, environment_id, state, version, updated_at) VALUES (?1, ?2, ?3, 1, ?4)
             ON CONFLICT (flag_id, environment_id)
             DO UPDATE SET state = excluded.state, version = version + 1, updated_at = excluded.updated_at
             RETURNING version",
        )?
        .query_row(params![flag_id, environment_id, json, now_ms()], |r| r.get(0))?;
    Ok(version as u64)
}

/// The flag with its state in every environment of the project, versions included.
pub(crate) fn full(conn: &Connection, envs: &[Environment], row: &FlagRow) -> Result<Flag> {
    let mut flag = row.definition.clone();
    flag.environments.clear();
    for env in envs {
        flag.environments
            .insert(env.key.clone(), stored_state(conn, row.id, env.id)?);
    }
    Ok(flag)
}

/// One flag with every environment's state; 404 if the project or flag does not exist.
pub fn get(conn: &Connection, project: &str, key: &str) -> Result<Flag> {
    let head = projects::head(conn, project)?;
    let row = existing(conn, &head, key)?;
    full(conn, &environments::list_in(conn, head.id)?, &row)
}

/// The project's flags by key, each with every environment's state.
pub fn list(conn: &Connection, project: &str, filter: &FlagFilter) -> Result<Vec<Flag>> {
    let head = projects::head(conn, project)?;
    let envs = environments::list_in(conn, head.id)?;
    let mut states: BTreeMap<(i64, i64), FlagEnvState> = BTreeMap::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT s.flag_id, s.environment_id, s.state, s.version FROM flag_states s
             JOIN flags f ON f.id = s.flag_id WHERE f.project_id = ?1",
        )?;
        let mut rows = stmt.query([head.id])?;
        while let Some(r) = rows.next()? {
            let mut state: FlagEnvState = serde_json::from_str(&r.get::<_, String>(2)?)?;
            state.version = Some(r.get::<_, i64>(3)? as u64);
            states.insert((r.get(0)?, r.get(1)?), state);
        }
    }
    let mut stmt =
        conn.prepare_cached("SELECT id, definition FROM flags WHERE project_id = ?1 ORDER BY key")?;
    let mut rows = stmt.query([head.id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let mut flag: Flag = serde_json::from_str(&r.get::<_, String>(1)?)?;
        if filter.kind.is_some_and(|kind| kind != flag.kind)
            || filter.tag.as_ref().is_some_and(|tag| !flag.tags.contains(tag))
        {
            continue;
        }
        flag.environments = envs
            .iter()
            .map(|env| {
                let state = states.remove(&(id, env.id)).unwrap_or_else(|| FlagEnvState {
                    version: Some(0),
                    ..FlagEnvState::default()
                });
                (env.key.clone(), state)
            })
            .collect();
        out.push(flag);
    }
    Ok(out)
}

/// Writes a flag's definition and the states it names (versions ignored) where they differ from
/// what is stored, noting what changed in `changes`. Returns whether anything changed. No
/// validation, no audit: callers do both.
pub(crate) fn write(
    tx: &Connection,
    project_id: i64,
    envs: &[Environment],
    existing: Option<&FlagRow>,
    flag: &Flag,
    changes: &mut Changes,
) -> Result<bool> {
    let definition = Flag {
        environments: BTreeMap::new(),
        ..flag.clone()
    };
    let now = now_ms();
    let mut changed = false;
    let flag_id = match existing {
        Some(row) => {
            if row.definition != definition {
                tx.prepare_cached(
                    "UPDATE flags SET definition = ?2, version = version + 1, updated_at = ?3 WHERE id = ?1",
                )?
                .execute(params![row.id, serde_json::to_string(&definition)?, now])?;
                changes.flag_everywhere(tx, project_id, &flag.key)?;
                changed = true;
            }
            row.id
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO flags (project_id, key, definition, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![project_id, flag.key, serde_json::to_string(&definition)?, now])?;
            changes.flag_everywhere(tx, project_id, &flag.key)?;
            changed = true;
            tx.last_insert_rowid()
        }
    };
    for (env_key, state) in &flag.environments {
        let Some(env) = envs.iter().find(|e| &e.key == env_key) else {
            // Validation refuses states of unknown environments; nothing to write for one.
            continue;
        };
        let state = FlagEnvState {
            version: None,
            ..state.clone()
        };
        let current = FlagEnvState {
            version: None,
            ..stored_state(tx, flag_id, env.id)?
        };
        if current != state {
            write_state(tx, flag_id, env.id, &state)?;
            changes.flag(env.id, &flag.key);
            changed = true;
        }
    }
    Ok(changed)
}

fn without_versions(mut flag: Flag) -> Flag {
    for state in flag.environments.values_mut() {
        state.version = None;
    }
    flag
}

/// Validates the project with `flag` in it (its stored states overlaid with those `flag`
/// names).
fn check_flag(tx: &Connection, head: &ProjectHead, flag: &Flag) -> Result<()> {
    let mut doc = projects::document(tx, head)?;
    let mut merged = flag.clone();
    if let Some(stored) = doc.flags.iter().find(|f| f.key == flag.key) {
        for (env, state) in &stored.environments {
            merged
                .environments
                .entry(env.clone())
                .or_insert_with(|| state.clone());
        }
    }
    let index = projects::put_flag(&mut doc, merged);
    projects::check(&doc, &Focus::Flag(index))
}

fn flag_entity<'a>(project: &'a str, key: &'a str) -> Entity<'a> {
    Entity {
        kind: "flag",
        key: Some(key),
        project: Some(project),
        environment: None,
    }
}

/// Creates a flag with the states it names. 409 if the key is taken.
pub fn create(tx: &Connection, actor: &Actor, project: &str, flag: Flag) -> Result<(Flag, Changes)> {
    let head = projects::head(tx, project)?;
    if row(tx, head.id, &flag.key)?.is_some() {
        return Err(StoreError::conflict(format!(
            "project {project:?} already has a flag with key {:?}",
            flag.key
        )));
    }
    let flag = without_versions(flag);
    check_flag(tx, &head, &flag)?;
    let envs = environments::list_in(tx, head.id)?;
    let mut changes = Changes::default();
    write(tx, head.id, &envs, None, &flag, &mut changes)?;
    let created = existing(tx, &head, &flag.key)?;
    let after = full(tx, &envs, &created)?;
    audit::record(
        tx,
        actor,
        "create",
        flag_entity(project, &flag.key),
        None,
        Some(&serde_json::to_value(&after)?),
    )?;
    Ok((after, changes))
}

/// Replaces a flag's definition and the states it names (states it does not name are kept).
pub fn update(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    key: &str,
    flag: Flag,
) -> Result<(Flag, Changes)> {
    let head = projects::head(tx, project)?;
    let current = existing(tx, &head, key)?;
    if flag.key != key {
        return Err(StoreError::bad_request(
            format!(
                "a flag's key cannot change (the URL names {key:?}, the body {:?})",
                flag.key
            ),
            Some("key"),
        ));
    }
    let flag = without_versions(flag);
    check_flag(tx, &head, &flag)?;
    save(tx, actor, "update", &head, Some(current), &flag)
}

/// Writes `flag` over what is stored (already validated) and audits it when anything changed.
fn save(
    tx: &Connection,
    actor: &Actor,
    action: &str,
    head: &ProjectHead,
    current: Option<FlagRow>,
    flag: &Flag,
) -> Result<(Flag, Changes)> {
    let envs = environments::list_in(tx, head.id)?;
    let before = current.as_ref().map(|row| full(tx, &envs, row)).transpose()?;
    let mut changes = Changes::default();
    let changed = write(tx, head.id, &envs, current.as_ref(), flag, &mut changes)?;
    let after = full(tx, &envs, &existing(tx, head, &flag.key)?)?;
    if changed {
        audit::record(
            tx,
            actor,
            action,
            flag_entity(&head.key, &flag.key),
            before.map(|b| serde_json::to_value(&b)).transpose()?.as_ref(),
            Some(&serde_json::to_value(&after)?),
        )?;
    }
    Ok((after, changes))
}

/// Deletes a flag with its states. 409 while another flag has it as a prerequisite.
pub fn delete(tx: &Connection, actor: &Actor, project: &str, key: &str) -> Result<((), Changes)> {
    let head = projects::head(tx, project)?;
    let row = existing(tx, &head, key)?;
    let doc = projects::document(tx, &head)?;
    let mut dependents = Vec::new();
    for flag in doc.flags.iter().filter(|f| f.key != key) {
        for (env, state) in &flag.environments {
            if state.prerequisites.iter().any(|p| p.flag == key) {
                dependents.push(format!("{} ({env})", flag.key));
            }
        }
    }
    if !dependents.is_empty() {
        return Err(StoreError::conflict(format!(
            "flag {key:?} is a prerequisite of {}; remove those prerequisites first",
            dependents.join(", ")
        )));
    }
    let envs = environments::list_in(tx, head.id)?;
    let before = full(tx, &envs, &row)?;
    let mut changes = Changes::default();
    changes.flag_everywhere(tx, head.id, key)?;
    tx.prepare_cached("DELETE FROM flags WHERE id = ?1")?
        .execute([row.id])?;
    audit::record(
        tx,
        actor,
        "delete",
        flag_entity(project, key),
        Some(&serde_json::to_value(&before)?),
        None,
    )?;
    Ok(((), changes))
}

/// A flag's state in one environment, with its version.
pub fn state(conn: &Connection, project: &str, key: &str, env: &str) -> Result<FlagEnvState> {
    let head = projects::head(conn, project)?;
    let row = existing(conn, &head, key)?;
    let env = environments::in_project(conn, &head, env)?;
    stored_state(conn, row.id, env.id)
}

/// Changes any subset of a flag's state in one environment; returns the new state with its
/// version. With `expected`, refuses (412) unless it is the current version.
pub fn patch_state(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    key: &str,
    env: &str,
    patch: StatePatch,
    expected: Option<u64>,
) -> Result<(FlagEnvState, Changes)> {
    let head = projects::head(tx, project)?;
    let row = existing(tx, &head, key)?;
    let env = environments::in_project(tx, &head, env)?;
    let current = stored_state(tx, row.id, env.id)?;
    let version = current.version.unwrap_or(0);
    if let Some(expected) = expected
        && expected != version
    {
        return Err(StoreError::Stale {
            expected,
            current: version,
        });
    }
    let new = patch.apply(FlagEnvState {
        version: None,
        ..current.clone()
    });
    set_state(tx, actor, "update", &head, &row, &env, current, new)
}

/// Validates and writes one state (when it differs from `current`), with its audit row.
#[allow(clippy::too_many_arguments)]
fn set_state(
    tx: &Connection,
    actor: &Actor,
    action: &str,
    head: &ProjectHead,
    row: &FlagRow,
    env: &Environment,
    current: FlagEnvState,
    new: FlagEnvState,
) -> Result<(FlagEnvState, Changes)> {
    let mut changes = Changes::default();
    if (FlagEnvState {
        version: None,
        ..current.clone()
    }) == new
    {
        return Ok((current, changes));
    }
    let mut doc = projects::document(tx, head)?;
    let index = doc
        .flags
        .iter()
        .position(|f| f.key == row.definition.key)
        .expect("the flag was read in this transaction, so the document has it");
    doc.flags[index].environments.insert(env.key.clone(), new.clone());
    projects::check(&doc, &Focus::FlagState(index, env.key.clone()))?;
    let version = write_state(tx, row.id, env.id, &new)?;
    changes.flag(env.id, &row.definition.key);
    let after = FlagEnvState {
        version: Some(version),
        ..new
    };
    let entity = Entity {
        kind: "flag_state",
        key: Some(&row.definition.key),
        project: Some(&head.key),
        environment: Some(&env.key),
    };
    audit::record(
        tx,
        actor,
        action,
        entity,
        Some(&serde_json::to_value(&current)?),
        Some(&serde_json::to_value(&after)?),
    )?;
    Ok((after, changes))
}

/// A flag's audit entries (definition and state changes), newest first. 404 if the project
/// does not exist, or neither the flag nor any history of it does.
pub fn history(
    conn: &Connection,
    project: &str,
    key: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditEntry>> {
    let head = projects::head(conn, project)?;
    let entries = audit::list(
        conn,
        &AuditQuery {
            project: Some(project),
            entity_kinds: &HISTORY_KINDS,
            entity_key: Some(key),
            before,
            limit,
        },
    )?;
    if entries.is_empty() && before.is_none() && row(conn, head.id, key)?.is_none() {
        return Err(StoreError::not_found(format!(
            "flag {key:?} in project {project:?}"
        )));
    }
    Ok(entries)
}

/// Restores a flag as it was after an audit entry of its history: a `flag` entry restores the
/// definition and the states it recorded (re-creating a deleted flag), a `flag_state` entry
/// that one state. The restore is itself audited (action `restore`). Returns the flag.
pub fn restore(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    key: &str,
    audit_id: i64,
) -> Result<(Flag, Changes)> {
    let head = projects::head(tx, project)?;
    let refuse = |message: String| StoreError::Invalid(vec![ValidationError::new("audit_id", message)]);
    let entry =
        audit::get(tx, audit_id)?.ok_or_else(|| StoreError::not_found(format!("audit entry {audit_id}")))?;
    if entry.project.as_deref() != Some(project)
        || entry.entity_key.as_deref() != Some(key)
        || !HISTORY_KINDS.contains(&entry.entity_kind.as_str())
    {
        return Err(refuse(format!(
            "audit entry {audit_id} is not in the history of flag {key:?} in project {project:?}"
        )));
    }
    let Some(after) = entry.after else {
        return Err(refuse(format!(
            "audit entry {audit_id} deleted the flag: there is nothing to restore after it; restore an earlier entry"
        )));
    };
    let unreadable = |e: serde_json::Error| refuse(format!("audit entry {audit_id} cannot be restored: {e}"));
    let envs = environments::list_in(tx, head.id)?;
    if entry.entity_kind == "flag" {
        let mut flag = without_versions(serde_json::from_value::<Flag>(after).map_err(unreadable)?);
        // Environments deleted since are left out; ones created since keep their state.
        flag.environments
            .retain(|env, _| envs.iter().any(|e| &e.key == env));
        check_flag(tx, &head, &flag)?;
        let current = row(tx, head.id, key)?;
        return save(tx, actor, "restore", &head, current, &flag);
    }
    let state = serde_json::from_value::<FlagEnvState>(after).map_err(unreadable)?;
    let env_key = entry.environment.unwrap_or_default();
    let Some(env) = envs.iter().find(|e| e.key == env_key) else {
        return Err(refuse(format!(
            "environment {env_key:?} of audit entry {audit_id} no longer exists"
        )));
    };
    let row = existing(tx, &head, key)?;
    let current = stored_state(tx, row.id, env.id)?;
    let (_, changes) = set_state(
        tx,
        actor,
        "restore",
        &head,
        &row,
        env,
        current,
        FlagEnvState {
            version: None,
            ..state
        },
    )?;
    Ok((full(tx, &envs, &row)?, changes))
}
