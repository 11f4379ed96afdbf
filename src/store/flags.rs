//! Flags (and configs): their definitions, their state in each environment, their history
//! and the restore of an earlier version.
//!
//! A definition is stored as `model::Flag` without `environments`; a state as
//! `model::FlagEnvState` without `version` (a missing row is the default state, version 0).
//! Every change is validated as part of the whole would-be project before anything is written
//! (a change of one state, through only the part of the project it can affect: see
//! `check_state`), and writes exactly one audit row. Writing what is already stored is no
//! change at all: no version, revision or audit row.

use std::collections::{BTreeMap, BTreeSet};

use flagstaff_eval::ValidationError;
use flagstaff_eval::model::{
    Document, EnvironmentInfo, FORMAT_VERSION, Flag, FlagEnvState, FlagKind, Op, Prerequisite, ProjectInfo,
    Rule, Segment, Serve, Target,
};
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
    row(conn, head.id, key)?.ok_or_else(|| {
        StoreError::not_found(
            super::Resource::Flag,
            format!("flag {key:?} in project {:?}", head.key),
        )
    })
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

/// Sets a flag's whole state in one environment to `new` (its version ignored), audited with
/// `action` (`promote`). With `expected`, refuses (412) unless it is the current version.
#[allow(clippy::too_many_arguments)]
pub(crate) fn replace_state(
    tx: &Connection,
    actor: &Actor,
    action: &str,
    head: &ProjectHead,
    key: &str,
    env: &Environment,
    new: FlagEnvState,
    expected: Option<u64>,
) -> Result<(FlagEnvState, Changes)> {
    let row = existing(tx, head, key)?;
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
    let new = FlagEnvState { version: None, ..new };
    set_state(tx, actor, action, head, &row, env, current, new)
}

/// Validates `new` as the state of `row`'s flag in `env`, with errors as the caller sent it.
///
/// The stored project is valid (every change was validated as the whole would-be project), so
/// a change to one state can only break what that state reaches: its own fields against its
/// flag's definition, the segments its rules name, its prerequisites (their definitions) and —
/// when its prerequisites change — the prerequisite graph of that environment through this
/// flag. [`reduced_document`] holds exactly that; when the engine accepts it, the whole
/// would-be project is valid too. When it does not, the whole project is validated as before,
/// so a refusal's errors (and their paths) are exactly those of the whole project.
fn check_state(
    tx: &Connection,
    head: &ProjectHead,
    row: &FlagRow,
    env: &Environment,
    current: &FlagEnvState,
    new: &FlagEnvState,
) -> Result<()> {
    let reduced = reduced_document(tx, head, row, env, current, new)?;
    if flagstaff_eval::validate_document(&reduced).is_ok() {
        return Ok(());
    }
    check_state_fully(tx, head, row, env, new)
}

/// Validates the whole project with `new` as the state of `row`'s flag in `env`.
fn check_state_fully(
    tx: &Connection,
    head: &ProjectHead,
    row: &FlagRow,
    env: &Environment,
    new: &FlagEnvState,
) -> Result<()> {
    let mut doc = projects::document(tx, head)?;
    let index = doc
        .flags
        .iter()
        .position(|f| f.key == row.definition.key)
        .expect("the flag was read in this transaction, so the document has it");
    doc.flags[index].environments.insert(env.key.clone(), new.clone());
    projects::check(&doc, &Focus::FlagState(index, env.key.clone()))
}

/// The part of the would-be project that a new state of one flag in one environment can make
/// invalid: that environment; the segments the state's rules name; the flag with only that
/// state; the flags it names as prerequisites. When its prerequisites change, also every flag
/// of the environment's prerequisite graph reachable from it or reaching it (any new cycle, and
/// any chain made longer, goes through it), each with only its prerequisites among those flags.
/// A chain that does not go through the flag is unchanged, so within the limits already.
fn reduced_document(
    tx: &Connection,
    head: &ProjectHead,
    row: &FlagRow,
    env: &Environment,
    current: &FlagEnvState,
    new: &FlagEnvState,
) -> Result<Document> {
    let key = row.definition.key.as_str();
    let mut segment_keys: BTreeSet<&str> = BTreeSet::new();
    for rule in &new.rules {
        for clause in rule.clauses.iter().filter(|c| c.op == Op::InSegment) {
            segment_keys.extend(clause.values.iter().filter_map(|v| v.as_str()));
        }
    }
    let mut segments: Vec<Segment> = Vec::new();
    {
        let mut stmt =
            tx.prepare_cached("SELECT definition FROM segments WHERE project_id = ?1 AND key = ?2")?;
        for segment in segment_keys {
            let found: Option<String> = stmt
                .query_row(params![head.id, segment], |r| r.get(0))
                .optional()?;
            if let Some(definition) = found {
                segments.push(serde_json::from_str(&definition)?);
            }
        }
    }
    // The other flags to include, each with its prerequisites in this environment.
    let mut others: BTreeMap<String, Vec<Prerequisite>> = BTreeMap::new();
    if new.prerequisites == current.prerequisites {
        for prerequisite in &new.prerequisites {
            others.insert(prerequisite.flag.clone(), Vec::new());
        }
    } else {
        let mut graph = prerequisite_graph(tx, env.id)?;
        graph.insert(key.to_owned(), new.prerequisites.clone());
        let mut reverse: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, prerequisites) in &graph {
            for prerequisite in prerequisites {
                reverse.entry(&prerequisite.flag).or_default().push(from);
            }
        }
        let mut included: BTreeSet<&str> = BTreeSet::new();
        let mut todo: Vec<&str> = new.prerequisites.iter().map(|p| p.flag.as_str()).collect();
        while let Some(next) = todo.pop() {
            if next != key && included.insert(next) {
                todo.extend(graph.get(next).into_iter().flatten().map(|p| p.flag.as_str()));
            }
        }
        let mut todo: Vec<&str> = reverse.get(key).cloned().unwrap_or_default();
        while let Some(next) = todo.pop() {
            if next != key && included.insert(next) {
                todo.extend(reverse.get(next).into_iter().flatten().copied());
            }
        }
        for flag in &included {
            let prerequisites = graph
                .get(*flag)
                .into_iter()
                .flatten()
                .filter(|p| p.flag == key || included.contains(p.flag.as_str()))
                .cloned()
                .collect();
            others.insert((*flag).to_owned(), prerequisites);
        }
    }
    let mut flags = Vec::with_capacity(others.len() + 1);
    let mut flag = row.definition.clone();
    flag.environments = BTreeMap::from([(env.key.clone(), new.clone())]);
    flags.push(flag);
    if !others.is_empty() {
        let keys = serde_json::to_string(&others.keys().collect::<Vec<_>>())?;
        let mut stmt = tx.prepare_cached(
            "SELECT key, definition FROM flags
             WHERE project_id = ?1 AND key IN (SELECT value FROM json_each(?2))",
        )?;
        let mut rows = stmt.query(params![head.id, keys])?;
        while let Some(r) = rows.next()? {
            let other: String = r.get(0)?;
            let mut flag: Flag = serde_json::from_str(&r.get::<_, String>(1)?)?;
            let prerequisites = others.remove(&other).unwrap_or_default();
            if !prerequisites.is_empty() {
                let state = FlagEnvState {
                    prerequisites,
                    ..FlagEnvState::default()
                };
                flag.environments.insert(env.key.clone(), state);
            }
            flags.push(flag);
        }
    }
    Ok(Document {
        flagstaff: FORMAT_VERSION,
        project: ProjectInfo {
            key: head.key.clone(),
            name: head.name.clone(),
        },
        environments: vec![EnvironmentInfo {
            key: env.key.clone(),
            name: env.name.clone(),
            requires_confirmation: None,
        }],
        segments,
        flags,
        schedules: Vec::new(),
    })
}

/// Every flag's prerequisites in one environment (flags without any left out), read without
/// parsing the rest of the states.
fn prerequisite_graph(conn: &Connection, environment_id: i64) -> Result<BTreeMap<String, Vec<Prerequisite>>> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.key, json_extract(s.state, '$.prerequisites') FROM flag_states s
         JOIN flags f ON f.id = s.flag_id
         WHERE s.environment_id = ?1 AND json_array_length(s.state, '$.prerequisites') > 0",
    )?;
    let mut rows = stmt.query([environment_id])?;
    let mut graph = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let prerequisites: Vec<Prerequisite> = serde_json::from_str(&r.get::<_, String>(1)?)?;
        graph.insert(r.get(0)?, prerequisites);
    }
    Ok(graph)
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
    check_state(tx, head, row, env, &current, &new)?;
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
        return Err(StoreError::not_found(
            super::Resource::Flag,
            format!("flag {key:?} in project {project:?}"),
        ));
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
    let entry = audit::get(tx, audit_id)?.ok_or_else(|| {
        StoreError::not_found(super::Resource::AuditEntry, format!("audit entry {audit_id}"))
    })?;
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

#[cfg(test)]
mod tests {
    use flagstaff_eval::validate_document;
    use serde_json::{Value, json};

    use super::*;
    use crate::store::{import, migrations};

    /// A project whose production environment has a chain of prerequisites `c00 → … → c16`
    /// (16 deep: the most evaluation follows) and `b → a`.
    fn project() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let on_off = json!([{"key": "on", "value": true}, {"key": "off", "value": false}]);
        let mut flags = vec![
            json!({"key": "a", "type": "boolean", "variations": on_off}),
            json!({"key": "b", "type": "string",
                   "variations": [{"key": "x", "value": "x"}, {"key": "y", "value": "y"}],
                   "environments": {"production": {"prerequisites": [{"flag": "a", "variations": ["on"]}]}}}),
            json!({"key": "n", "type": "number", "variations": [{"key": "one", "value": 1}]}),
        ];
        for i in 0..=16 {
            let mut flag = json!({"key": format!("c{i:02}"), "type": "boolean", "variations": on_off});
            if i < 16 {
                flag["environments"] = json!({"production": {
                    "prerequisites": [{"flag": format!("c{:02}", i + 1), "variations": ["on"]}]}});
            }
            flags.push(flag);
        }
        let doc: Document = serde_json::from_value(json!({
            "flagstaff": 1,
            "project": {"key": "p"},
            "environments": [{"key": "development"}, {"key": "production"}],
            "segments": [{"key": "beta", "included": ["u1"]}],
            "flags": flags,
        }))
        .unwrap();
        let tx = conn.transaction().unwrap();
        import::import(&tx, &Actor::cli(), &doc, true).unwrap();
        tx.commit().unwrap();
        conn
    }

    struct Outcome {
        /// Whether the reduced document passed (the fast path).
        reduced_ok: bool,
        /// How many flags the reduced document held.
        reduced_flags: usize,
        /// The whole project's validation, as the API reported it before the fast path.
        full: Result<()>,
        /// What `patch_state` does now.
        patched: Result<(FlagEnvState, Changes)>,
    }

    fn outcome(conn: &mut Connection, flag: &str, patch: Value) -> Outcome {
        let tx = conn.transaction().unwrap();
        let head = projects::head(&tx, "p").unwrap();
        let row = existing(&tx, &head, flag).unwrap();
        let env = environments::in_project(&tx, &head, "production").unwrap();
        let current = stored_state(&tx, row.id, env.id).unwrap();
        let patch: StatePatch = serde_json::from_value(patch.clone()).unwrap();
        let new = patch.clone().apply(FlagEnvState {
            version: None,
            ..current.clone()
        });
        let reduced = reduced_document(&tx, &head, &row, &env, &current, &new).unwrap();
        let full = check_state_fully(&tx, &head, &row, &env, &new);
        let patched = patch_state(&tx, &Actor::cli(), "p", flag, "production", patch, None);
        Outcome {
            reduced_ok: validate_document(&reduced).is_ok(),
            reduced_flags: reduced.flags.len(),
            full,
            patched,
        }
    }

    fn errors(result: &Result<impl std::fmt::Debug>) -> Vec<ValidationError> {
        match result {
            Err(StoreError::Invalid(errors)) => errors.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn valid_state_changes_pass_on_the_reduced_document() {
        let mut conn = project();
        let rule = |clause: Value, variation: &str| json!({"rules": [{"clauses": [clause], "serve": {"variation": variation}}]});
        let cases: [(&str, Value, usize); 9] = [
            ("a", json!({"enabled": true}), 1),
            (
                "a",
                json!({"targets": [{"variation": "on", "values": ["u1", "u2"]}], "off_variation": "off"}),
                1,
            ),
            (
                "a",
                rule(json!({"op": "in_segment", "values": ["beta"]}), "on"),
                1,
            ),
            (
                "n",
                rule(json!({"attribute": "age", "op": "lt", "values": [18]}), "one"),
                1,
            ),
            // Unchanged prerequisites: only their flags' definitions are read.
            (
                "b",
                json!({"enabled": true, "fallthrough": {"rollout": {"variations": [
                {"variation": "x", "weight": 60000}, {"variation": "y", "weight": 40000}]}}}),
                2,
            ),
            // A new prerequisite: the graph through the flag (b depends on a).
            (
                "a",
                json!({"prerequisites": [{"flag": "n", "variations": ["one"]}]}),
                3,
            ),
            // Still 16 deep: c15 → a beside c15 → c16.
            (
                "c15",
                json!({"prerequisites": [{"flag": "c16", "variations": ["on"]}, {"flag": "a", "variations": ["off"]}]}),
                18,
            ),
            ("c00", json!({"prerequisites": []}), 1),
            // b → a → c02 → … → c16: b is 16 deep.
            (
                "a",
                json!({"prerequisites": [{"flag": "c02", "variations": ["on"]}]}),
                17,
            ),
        ];
        for (flag, patch, flags) in cases {
            let o = outcome(&mut conn, flag, patch.clone());
            assert!(o.full.is_ok(), "{flag} {patch}: {:?}", o.full);
            assert!(o.reduced_ok, "{flag} {patch}: the reduced document was refused");
            assert_eq!(o.reduced_flags, flags, "{flag} {patch}");
            assert!(o.patched.is_ok(), "{flag} {patch}: {:?}", o.patched.err());
        }
    }

    #[test]
    fn invalid_state_changes_are_refused_with_the_whole_projects_errors() {
        let mut conn = project();
        let cases: [(&str, Value, &str); 12] = [
            (
                "a",
                json!({"targets": [{"variation": "maybe", "values": ["u1"]}]}),
                "targets[0].variation",
            ),
            ("a", json!({"off_variation": "x"}), "off_variation"),
            (
                "a",
                json!({"rules": [{"clauses": [{"op": "in_segment", "values": ["gamma"]}], "serve": {"variation": "on"}}]}),
                "rules[0].clauses[0].values[0]",
            ),
            (
                "n",
                json!({"rules": [{"clauses": [{"attribute": "age", "op": "lt", "values": ["old"]}], "serve": {"variation": "one"}}]}),
                "rules[0].clauses[0].values[0]",
            ),
            (
                "b",
                json!({"fallthrough": {"rollout": {"variations": [{"variation": "x", "weight": 1}]}}}),
                "fallthrough.rollout.variations",
            ),
            (
                "a",
                json!({"prerequisites": [{"flag": "nope", "variations": ["on"]}]}),
                "prerequisites[0].flag",
            ),
            (
                "a",
                json!({"prerequisites": [{"flag": "b", "variations": ["on"]}]}),
                "prerequisites[0].variations[0]",
            ),
            (
                "a",
                json!({"prerequisites": [{"flag": "a", "variations": ["on"]}]}),
                "prerequisites[0].flag",
            ),
            // b → a already: a → b closes a cycle.
            (
                "a",
                json!({"prerequisites": [{"flag": "b", "variations": ["x"]}]}),
                "flags[\"b\"].environments.production.prerequisites[0].flag",
            ),
            // b → a → c01 → … → c16: b, which depends on the patched flag, is now 17 deep.
            (
                "a",
                json!({"prerequisites": [{"flag": "c01", "variations": ["on"]}]}),
                "flags[\"b\"].environments.production.prerequisites",
            ),
            // c00 → … → c16 → a: c00 is now 17 deep (reported at c00, which was not patched).
            (
                "c16",
                json!({"prerequisites": [{"flag": "a", "variations": ["on"]}]}),
                "flags[\"c00\"].environments.production.prerequisites",
            ),
            // a → c00 → … → c16: a is 17 deep.
            (
                "a",
                json!({"prerequisites": [{"flag": "c00", "variations": ["on"]}]}),
                "prerequisites",
            ),
        ];
        for (flag, patch, path) in cases {
            let o = outcome(&mut conn, flag, patch.clone());
            assert!(!o.reduced_ok, "{flag} {patch}: the reduced document was accepted");
            let full = errors(&o.full);
            assert!(full.iter().any(|e| e.path == path), "{flag} {patch}: {full:?}");
            assert_eq!(errors(&o.patched), full, "{flag} {patch}");
        }
    }
}
