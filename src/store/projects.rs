//! Projects: their environments, the whole project as a document (for export and for
//! validating a change before it is written), and the translation of validation errors' paths
//! from the would-be document to what the caller sent.

use std::collections::BTreeMap;

use flagstaff_eval::model::{
    Document, EnvironmentInfo, FORMAT_VERSION, Flag, FlagEnvState, ProjectInfo, Segment,
};
use flagstaff_eval::{ValidationError, validate_document};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::audit::{self, Actor, Entity};
use super::environments::{self, Environment};
use super::{Changes, Result, StoreError, now_ms};

/// The environments a new project gets when its creator names none.
pub const DEFAULT_ENVIRONMENTS: [(&str, &str); 3] = [
    ("development", "Development"),
    ("staging", "Staging"),
    ("production", "Production"),
];

/// A project's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectHead {
    pub id: i64,
    pub key: String,
    pub name: String,
}

/// A project as the API shows it: its key, name and environments in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    pub key: String,
    pub name: String,
    pub environments: Vec<Environment>,
}

/// What creates a project. Without `environments`, it gets [`DEFAULT_ENVIRONMENTS`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub key: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub environments: Option<Vec<EnvironmentInfo>>,
}

/// What a project's `PUT` may change: its name. The key, if sent, must be the project's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    #[serde(default)]
    pub key: Option<String>,
    pub name: String,
}

/// The project with this key; 404 if there is none.
pub fn head(conn: &Connection, key: &str) -> Result<ProjectHead> {
    find(conn, key)?
        .ok_or_else(|| StoreError::not_found(super::Resource::Project, format!("project {key:?}")))
}

/// The project with this key, if any.
pub fn find(conn: &Connection, key: &str) -> Result<Option<ProjectHead>> {
    let mut stmt = conn.prepare_cached("SELECT id, key, name FROM projects WHERE key = ?1")?;
    let head = stmt
        .query_row([key], |r| {
            Ok(ProjectHead {
                id: r.get(0)?,
                key: r.get(1)?,
                name: r.get(2)?,
            })
        })
        .optional()?;
    Ok(head)
}

/// Every project, by key.
pub fn list(conn: &Connection) -> Result<Vec<Project>> {
    let heads = {
        let mut stmt = conn.prepare_cached("SELECT id, key, name FROM projects ORDER BY key")?;
        stmt.query_map([], |r| {
            Ok(ProjectHead {
                id: r.get(0)?,
                key: r.get(1)?,
                name: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
    };
    heads.into_iter().map(|head| view(conn, head)).collect()
}

/// One project; 404 if there is none.
pub fn get(conn: &Connection, key: &str) -> Result<Project> {
    let head = head(conn, key)?;
    view(conn, head)
}

fn view(conn: &Connection, head: ProjectHead) -> Result<Project> {
    Ok(Project {
        environments: environments::list_in(conn, head.id)?,
        key: head.key,
        name: head.name,
    })
}

/// Creates a project with its environments. 409 if the key is taken.
pub fn create(tx: &Connection, actor: &Actor, new: NewProject) -> Result<(Project, Changes)> {
    let environments = match new.environments {
        Some(list) => list,
        None => DEFAULT_ENVIRONMENTS
            .iter()
            .map(|(key, name)| EnvironmentInfo {
                key: (*key).to_owned(),
                name: (*name).to_owned(),
                requires_confirmation: None,
            })
            .collect(),
    };
    let doc = Document {
        flagstaff: FORMAT_VERSION,
        project: ProjectInfo {
            key: new.key.clone(),
            name: new.name.clone(),
        },
        environments,
        segments: Vec::new(),
        flags: Vec::new(),
        schedules: Vec::new(),
    };
    check(&doc, &Focus::Project)?;
    if find(tx, &new.key)?.is_some() {
        return Err(StoreError::conflict(format!(
            "a project with key {:?} already exists",
            new.key
        )));
    }
    let head = insert(tx, &doc.project)?;
    let mut changes = Changes::default();
    for info in &doc.environments {
        let id = environments::insert(tx, head.id, info)?;
        changes.environment(id);
    }
    let project = view(tx, head)?;
    let after = serde_json::to_value(&project)?;
    let entity = Entity {
        kind: "project",
        key: Some(&project.key),
        project: Some(&project.key),
        environment: None,
    };
    audit::record(tx, actor, "create", entity, None, Some(&after))?;
    Ok((project, changes))
}

/// Inserts a project row (no environments, no audit).
pub(crate) fn insert(tx: &Connection, info: &ProjectInfo) -> Result<ProjectHead> {
    let now = now_ms();
    tx.prepare_cached("INSERT INTO projects (key, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)")?
        .execute(params![info.key, info.name, now])?;
    Ok(ProjectHead {
        id: tx.last_insert_rowid(),
        key: info.key.clone(),
        name: info.name.clone(),
    })
}

/// Renames a project. Its key cannot change.
pub fn update(
    tx: &Connection,
    actor: &Actor,
    key: &str,
    update: ProjectUpdate,
) -> Result<(Project, Changes)> {
    let head = head(tx, key)?;
    if let Some(body_key) = &update.key
        && body_key != key
    {
        return Err(StoreError::bad_request(
            format!("a project's key cannot change (the URL names {key:?}, the body {body_key:?})"),
            Some("key"),
        ));
    }
    let mut changes = Changes::default();
    let before = view(tx, head.clone())?;
    if head.name == update.name {
        return Ok((before, changes));
    }
    rename(tx, head.id, &update.name)?;
    // The bundle carries the project's name.
    changes.project(tx, head.id)?;
    let after = view(
        tx,
        ProjectHead {
            name: update.name,
            ..head
        },
    )?;
    let entity = Entity {
        kind: "project",
        key: Some(key),
        project: Some(key),
        environment: None,
    };
    audit::record(
        tx,
        actor,
        "update",
        entity,
        Some(&serde_json::to_value(&before)?),
        Some(&serde_json::to_value(&after)?),
    )?;
    Ok((after, changes))
}

pub(crate) fn rename(tx: &Connection, project_id: i64, name: &str) -> Result<()> {
    tx.prepare_cached("UPDATE projects SET name = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![project_id, name, now_ms()])?;
    Ok(())
}

/// Deletes a project with everything in it. The audit row keeps the whole project (its export)
/// as `before`, so nothing is lost for good.
pub fn delete(tx: &Connection, actor: &Actor, key: &str) -> Result<((), Changes)> {
    let head = head(tx, key)?;
    let before = export(tx, &head)?;
    let mut changes = Changes::default();
    for env in environments::list_in(tx, head.id)? {
        changes.removed_environments.insert(env.id);
    }
    // Its environments' SDK keys go with them.
    changes.api_keys = true;
    tx.prepare_cached("DELETE FROM projects WHERE id = ?1")?
        .execute([head.id])?;
    let entity = Entity {
        kind: "project",
        key: Some(key),
        project: Some(key),
        environment: None,
    };
    audit::record(
        tx,
        actor,
        "delete",
        entity,
        Some(&serde_json::to_value(&before)?),
        None,
    )?;
    Ok(((), changes))
}

/// The project as stored, as a document: environments in order, segments and flags by key,
/// each flag with the states stored for it (versions left out). The starting point of every
/// would-be document that a change is validated as.
pub fn document(conn: &Connection, head: &ProjectHead) -> Result<Document> {
    let environments = environments::list_in(conn, head.id)?
        .iter()
        .map(environments::info)
        .collect();
    let segments = super::served::segments(conn, head.id)?;
    let mut flags: Vec<Flag> = Vec::new();
    {
        let mut stmt =
            conn.prepare_cached("SELECT definition FROM flags WHERE project_id = ?1 ORDER BY key")?;
        let mut rows = stmt.query([head.id])?;
        while let Some(row) = rows.next()? {
            let definition: String = row.get(0)?;
            flags.push(serde_json::from_str(&definition)?);
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT f.key, e.key, s.state FROM flag_states s
         JOIN flags f ON f.id = s.flag_id JOIN environments e ON e.id = s.environment_id
         WHERE f.project_id = ?1",
    )?;
    let mut rows = stmt.query([head.id])?;
    let mut states: BTreeMap<String, BTreeMap<String, FlagEnvState>> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let state: String = row.get(2)?;
        states
            .entry(row.get(0)?)
            .or_default()
            .insert(row.get(1)?, serde_json::from_str(&state)?);
    }
    for flag in &mut flags {
        flag.environments = states.remove(&flag.key).unwrap_or_default();
    }
    Ok(Document {
        flagstaff: FORMAT_VERSION,
        project: ProjectInfo {
            key: head.key.clone(),
            name: head.name.clone(),
        },
        environments,
        segments,
        flags,
        schedules: Vec::new(),
    })
}

/// The project as a document for export: like [`document`], without the states that are the
/// default one (a flag that does not name an environment has exactly that state), so the same
/// data always exports to the same bytes.
pub fn export(conn: &Connection, head: &ProjectHead) -> Result<Document> {
    let mut doc = document(conn, head)?;
    let default = FlagEnvState::default();
    for flag in &mut doc.flags {
        flag.environments.retain(|_, state| *state != default);
    }
    doc.schedules = super::schedules::export(conn, head.id)?;
    Ok(doc)
}

/// The bytes of an export: pretty JSON with a final newline. With [`export`], the same data
/// always gives the same bytes, so export → import → export is byte-identical.
pub fn export_bytes(doc: &Document) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(doc)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Which part of a would-be document the caller sent, so errors name paths in what they sent.
#[derive(Debug, Clone)]
pub(crate) enum Focus {
    /// A project's body: `project.key` becomes `key`; `environments[i]` stays.
    Project,
    /// An environment's body: `environments[i]`.
    Environment(usize),
    /// A segment's body: `segments[i]`.
    Segment(usize),
    /// A flag's body: `flags[i]`.
    Flag(usize),
    /// A flag's state in one environment: `flags[i].environments.<env>`.
    FlagState(usize, String),
    /// An imported document whose parts come first in the would-be document: paths within
    /// them are the document's own.
    Import {
        environments: usize,
        segments: usize,
        flags: usize,
    },
}

/// Validates a would-be document; every error is reported with its path relative to what the
/// caller sent (parts they did not send are named by key, e.g. `flags["other"].rules[0]`).
pub(crate) fn check(doc: &Document, focus: &Focus) -> Result<()> {
    validate_document(doc).map_err(|errors| {
        StoreError::Invalid(
            errors
                .into_iter()
                .map(|e| ValidationError {
                    path: relocate(&e.path, doc, focus),
                    message: e.message,
                })
                .collect(),
        )
    })
}

/// Rewrites one path of the would-be document; see [`check`].
fn relocate(path: &str, doc: &Document, focus: &Focus) -> String {
    let strip = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?;
        if rest.is_empty() {
            Some(String::new())
        } else {
            rest.strip_prefix('.')
                .map(str::to_owned)
                .or_else(|| rest.starts_with('[').then(|| rest.to_owned()))
        }
    };
    let own = match focus {
        Focus::Project => strip("project"),
        Focus::Environment(i) => strip(&format!("environments[{i}]")),
        Focus::Segment(i) => strip(&format!("segments[{i}]")),
        Focus::Flag(i) => strip(&format!("flags[{i}]")),
        Focus::FlagState(i, env) => strip(&format!("flags[{i}].environments.{env}")),
        Focus::Import { .. } => None,
    };
    if let Some(own) = own {
        return own;
    }
    let Some((list, index, rest)) = split_index(path) else {
        return path.to_owned();
    };
    let sent = match (focus, list) {
        (Focus::Project, "environments") => usize::MAX,
        (Focus::Import { environments, .. }, "environments") => *environments,
        (Focus::Import { segments, .. }, "segments") => *segments,
        (Focus::Import { flags, .. }, "flags") => *flags,
        _ => 0,
    };
    if index < sent {
        return path.to_owned();
    }
    let key = match list {
        "environments" => doc.environments.get(index).map(|e| e.key.as_str()),
        "segments" => doc.segments.get(index).map(|s| s.key.as_str()),
        "flags" => doc.flags.get(index).map(|f| f.key.as_str()),
        _ => None,
    };
    match key {
        Some(key) => format!("{list}[{}]{rest}", serde_json::Value::from(key)),
        None => path.to_owned(),
    }
}

/// `flags[3].rules` → `("flags", 3, ".rules")`.
fn split_index(path: &str) -> Option<(&str, usize, &str)> {
    let (list, after) = path.split_once('[')?;
    let (index, rest) = after.split_once(']')?;
    Some((list, index.parse().ok()?, rest))
}

/// The index of a flag in a document, appending it if absent.
pub(crate) fn put_flag(doc: &mut Document, flag: Flag) -> usize {
    match doc.flags.iter().position(|f| f.key == flag.key) {
        Some(i) => {
            doc.flags[i] = flag;
            i
        }
        None => {
            doc.flags.push(flag);
            doc.flags.len() - 1
        }
    }
}

/// The index of a segment in a document, appending it if absent.
pub(crate) fn put_segment(doc: &mut Document, segment: Segment) -> usize {
    match doc.segments.iter().position(|s| s.key == segment.key) {
        Some(i) => {
            doc.segments[i] = segment;
            i
        }
        None => {
            doc.segments.push(segment);
            doc.segments.len() - 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        serde_json::from_value(serde_json::json!({
            "flagstaff": 1,
            "project": {"key": "p"},
            "environments": [{"key": "dev"}, {"key": "prod"}],
            "segments": [{"key": "beta"}],
            "flags": [
                {"key": "a", "type": "boolean", "variations": []},
                {"key": "b", "type": "boolean", "variations": []}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn paths_in_what_was_sent_are_relative_to_it() {
        let d = doc();
        assert_eq!(
            relocate("flags[1].variations[0].value", &d, &Focus::Flag(1)),
            "variations[0].value"
        );
        assert_eq!(relocate("flags[1]", &d, &Focus::Flag(1)), "");
        assert_eq!(
            relocate(
                "flags[1].environments.prod.rules[0].op",
                &d,
                &Focus::FlagState(1, "prod".into())
            ),
            "rules[0].op"
        );
        assert_eq!(
            relocate("segments[0].rules[2]", &d, &Focus::Segment(0)),
            "rules[2]"
        );
        assert_eq!(relocate("project.key", &d, &Focus::Project), "key");
        assert_eq!(
            relocate("environments[1].key", &d, &Focus::Project),
            "environments[1].key"
        );
    }

    #[test]
    fn other_parts_are_named_by_key() {
        let d = doc();
        assert_eq!(
            relocate(
                "flags[0].environments.prod.prerequisites[0].flag",
                &d,
                &Focus::Flag(1)
            ),
            "flags[\"a\"].environments.prod.prerequisites[0].flag"
        );
        assert_eq!(relocate("flags[10].key", &d, &Focus::Flag(1)), "flags[10].key");
        let import = Focus::Import {
            environments: 2,
            segments: 0,
            flags: 1,
        };
        assert_eq!(relocate("flags[0].key", &d, &import), "flags[0].key");
        assert_eq!(relocate("flags[1].key", &d, &import), "flags[\"b\"].key");
        assert_eq!(relocate("segments[0].key", &d, &import), "segments[\"beta\"].key");
        assert_eq!(relocate("flagstaff", &d, &import), "flagstaff");
    }
}
