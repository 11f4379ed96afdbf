//! A project's environments, in order. Each serves its own configuration (and has its own
//! revision and SDK keys); flags and segments are the project's.

use flagstaff_eval::model::EnvironmentInfo;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::audit::{self, Actor, Entity};
use super::projects::{self, Focus, ProjectHead};
use super::{Changes, Result, StoreError, now_ms};

/// An environment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Environment {
    #[serde(skip)]
    pub id: i64,
    pub key: String,
    pub name: String,
    /// Grows with every change of what this environment serves.
    pub revision: u64,
    /// Whether the admin pages ask before changing it (DESIGN.md §9).
    pub requires_confirmation: bool,
}

/// What an environment's `PUT` may change: its name and whether changes ask for a
/// confirmation (left out: unchanged). The key, if sent, must be the environment's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentUpdate {
    #[serde(default)]
    pub key: Option<String>,
    pub name: String,
    #[serde(default)]
    pub requires_confirmation: Option<bool>,
}

/// Whether an environment asks for a confirmation when neither its creator nor a document says:
/// `production` does, others do not.
pub fn default_confirmation(key: &str) -> bool {
    key == "production"
}

/// The document's form of an environment: `requires_confirmation` only when it is not the
/// default for its key (so documents without it export to the same bytes).
pub fn info(env: &Environment) -> EnvironmentInfo {
    EnvironmentInfo {
        key: env.key.clone(),
        name: env.name.clone(),
        requires_confirmation: (env.requires_confirmation != default_confirmation(&env.key))
            .then_some(env.requires_confirmation),
    }
}

/// What a document's environment asks for.
pub fn confirmation_of(info: &EnvironmentInfo) -> bool {
    info.requires_confirmation
        .unwrap_or_else(|| default_confirmation(&info.key))
}

const COLUMNS: &str = "id, key, name, revision, requires_confirmation";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Environment> {
    Ok(Environment {
        id: r.get(0)?,
        key: r.get(1)?,
        name: r.get(2)?,
        revision: r.get::<_, i64>(3)? as u64,
        requires_confirmation: r.get(4)?,
    })
}

/// A project's environments, in order.
pub fn list_in(conn: &Connection, project_id: i64) -> Result<Vec<Environment>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM environments WHERE project_id = ?1 ORDER BY position, id"
    ))?;
    let list = stmt
        .query_map([project_id], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(list)
}

/// The environments of the project with this key; 404 if there is no such project.
pub fn list(conn: &Connection, project: &str) -> Result<Vec<Environment>> {
    let head = projects::head(conn, project)?;
    list_in(conn, head.id)
}

/// The environment `key` of a project, if any.
pub fn find(conn: &Connection, project_id: i64, key: &str) -> Result<Option<Environment>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM environments WHERE project_id = ?1 AND key = ?2"
    ))?;
    Ok(stmt.query_row(params![project_id, key], from_row).optional()?)
}

/// The environment `key` of a project; 404 if there is none.
pub fn in_project(conn: &Connection, head: &ProjectHead, key: &str) -> Result<Environment> {
    find(conn, head.id, key)?.ok_or_else(|| {
        StoreError::not_found(
            super::Resource::Environment,
            format!("environment {key:?} in project {:?}", head.key),
        )
    })
}

/// One environment; 404 if the project or the environment does not exist.
pub fn get(conn: &Connection, project: &str, key: &str) -> Result<Environment> {
    let head = projects::head(conn, project)?;
    in_project(conn, &head, key)
}

/// Inserts an environment after the project's last one (no checks, no audit); returns its id.
pub(crate) fn insert(tx: &Connection, project_id: i64, info: &EnvironmentInfo) -> Result<i64> {
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO environments (project_id, key, name, position, created_at, updated_at, requires_confirmation)
         VALUES (?1, ?2, ?3, (SELECT coalesce(max(position), -1) + 1 FROM environments WHERE project_id = ?1), ?4, ?4, ?5)",
    )?
    .execute(params![project_id, info.key, info.name, now, confirmation_of(info)])?;
    Ok(tx.last_insert_rowid())
}

pub(crate) fn rename(
    tx: &Connection,
    environment_id: i64,
    name: &str,
    requires_confirmation: bool,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE environments SET name = ?2, requires_confirmation = ?3, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![environment_id, name, requires_confirmation, now_ms()])?;
    Ok(())
}

/// Adds an environment to a project. Every flag starts there in its default state.
pub fn create(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    info: EnvironmentInfo,
) -> Result<(Environment, Changes)> {
    let head = projects::head(tx, project)?;
    let mut doc = projects::document(tx, &head)?;
    let index = doc.environments.len();
    if doc.environments.iter().any(|e| e.key == info.key) {
        return Err(StoreError::conflict(format!(
            "project {project:?} already has an environment with key {:?}",
            info.key
        )));
    }
    doc.environments.push(info.clone());
    projects::check(&doc, &Focus::Environment(index))?;
    let id = insert(tx, head.id, &info)?;
    let mut changes = Changes::default();
    changes.environment(id);
    let env = Environment {
        id,
        requires_confirmation: confirmation_of(&info),
        key: info.key,
        name: info.name,
        revision: 0,
    };
    let entity = Entity {
        kind: "environment",
        key: Some(&env.key),
        project: Some(project),
        environment: Some(&env.key),
    };
    audit::record(
        tx,
        actor,
        "create",
        entity,
        None,
        Some(&serde_json::to_value(&env)?),
    )?;
    Ok((env, changes))
}

/// Renames an environment or changes whether it asks for a confirmation. Its key cannot change.
pub fn update(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    key: &str,
    update: EnvironmentUpdate,
) -> Result<(Environment, Changes)> {
    let head = projects::head(tx, project)?;
    let before = in_project(tx, &head, key)?;
    if let Some(body_key) = &update.key
        && body_key != key
    {
        return Err(StoreError::bad_request(
            format!("an environment's key cannot change (the URL names {key:?}, the body {body_key:?})"),
            Some("key"),
        ));
    }
    let requires_confirmation = update
        .requires_confirmation
        .unwrap_or(before.requires_confirmation);
    if before.name == update.name && before.requires_confirmation == requires_confirmation {
        return Ok((before, Changes::default()));
    }
    rename(tx, before.id, &update.name, requires_confirmation)?;
    let after = Environment {
        name: update.name,
        requires_confirmation,
        ..before.clone()
    };
    let entity = Entity {
        kind: "environment",
        key: Some(key),
        project: Some(project),
        environment: Some(key),
    };
    audit::record(
        tx,
        actor,
        "update",
        entity,
        Some(&serde_json::to_value(&before)?),
        Some(&serde_json::to_value(&after)?),
    )?;
    // Neither the name nor the confirmation is part of what the environment serves: no revision
    // to bump.
    Ok((after, Changes::default()))
}

/// Deletes an environment with its flag states and SDK keys.
pub fn delete(tx: &Connection, actor: &Actor, project: &str, key: &str) -> Result<((), Changes)> {
    let head = projects::head(tx, project)?;
    let env = in_project(tx, &head, key)?;
    tx.prepare_cached("DELETE FROM environments WHERE id = ?1")?
        .execute([env.id])?;
    let mut changes = Changes::default();
    changes.removed_environments.insert(env.id);
    changes.api_keys = true;
    let entity = Entity {
        kind: "environment",
        key: Some(key),
        project: Some(project),
        environment: Some(key),
    };
    audit::record(
        tx,
        actor,
        "delete",
        entity,
        Some(&serde_json::to_value(&env)?),
        None,
    )?;
    Ok(((), changes))
}
