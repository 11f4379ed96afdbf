//! Import of a whole project document (DESIGN.md §2): creates or updates the project, upserting
//! environments, segments and flags by key. Nothing the document does not name is deleted.
//!
//! All or nothing: the would-be project (the document's parts first, so error paths are the
//! document's own, then what is stored and not in the document) is validated before anything
//! is written. Idempotent: what is already stored is not written again, so importing the same
//! document twice changes nothing the second time (no version, revision or audit row).
//!
//! For each flag of the document, its state in every environment the document lists is the one
//! it names or else the default state; its states in other stored environments are kept unless
//! it names them.

use flagstaff_eval::model::{Document, FlagEnvState};
use rusqlite::Connection;
use serde::Serialize;
use serde_json::json;

use super::audit::{self, Actor, Entity};
use super::environments;
use super::flags;
use super::projects::{self, Focus};
use super::segments;
use super::{Changes, Result, StoreError};

/// What an import changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// The project's key.
    pub project: String,
    /// Whether the import created the project.
    pub created: bool,
    /// Every created or updated part, in the document's order. Empty when nothing changed.
    pub changed: Vec<Changed>,
}

/// One created or updated part of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    /// `project`, `environment`, `segment`, `flag` or `schedule` (a flag's key).
    pub kind: &'static str,
    pub key: String,
    /// `create` or `update`.
    pub action: &'static str,
}

/// Whether importing `doc` would create or rename the project or any of its environments
/// (what only admins may do).
pub fn changes_structure(conn: &Connection, doc: &Document) -> Result<bool> {
    let Some(head) = projects::find(conn, &doc.project.key)? else {
        return Ok(true);
    };
    if head.name != doc.project.name {
        return Ok(true);
    }
    let stored = environments::list_in(conn, head.id)?;
    Ok(doc.environments.iter().any(|env| {
        !stored.iter().any(|s| {
            s.key == env.key
                && s.name == env.name
                && s.requires_confirmation == environments::confirmation_of(env)
        })
    }))
}

/// Imports `doc`. Unless `structure_allowed`, refuses (409) a document that would create or
/// rename the project or an environment (callers check [`changes_structure`] first to tell the
/// user which role that needs; this catches a change made in between).
pub fn import(
    tx: &Connection,
    actor: &Actor,
    doc: &Document,
    structure_allowed: bool,
) -> Result<(ImportReport, Changes)> {
    let existing = projects::find(tx, &doc.project.key)?;
    let created = existing.is_none();

    let mut would = doc.clone();
    if let Some(head) = &existing {
        let stored = projects::document(tx, head)?;
        for env in &stored.environments {
            if !doc.environments.iter().any(|e| e.key == env.key) {
                would.environments.push(env.clone());
            }
        }
        for segment in &stored.segments {
            if !doc.segments.iter().any(|s| s.key == segment.key) {
                would.segments.push(segment.clone());
            }
        }
        for flag in &mut would.flags {
            let Some(stored) = stored.flags.iter().find(|f| f.key == flag.key) else {
                continue;
            };
            for (env, state) in &stored.environments {
                if !doc.environments.iter().any(|e| &e.key == env) {
                    flag.environments
                        .entry(env.clone())
                        .or_insert_with(|| state.clone());
                }
            }
        }
        for flag in &stored.flags {
            if !doc.flags.iter().any(|f| f.key == flag.key) {
                would.flags.push(flag.clone());
            }
        }
    }
    projects::check(
        &would,
        &Focus::Import {
            environments: doc.environments.len(),
            segments: doc.segments.len(),
            flags: doc.flags.len(),
        },
    )?;
    super::schedules::check_document(doc, &would)?;
    if !structure_allowed && changes_structure(tx, doc)? {
        return Err(StoreError::conflict(
            "the project or its environments changed while importing; importing now would create or rename \
             them, which needs the admin role",
        ));
    }

    let project = doc.project.key.as_str();
    let mut changed = Vec::new();
    let mut note = |kind: &'static str, key: &str, created: bool| {
        changed.push(Changed {
            kind,
            key: key.to_owned(),
            action: if created { "create" } else { "update" },
        });
    };
    let mut changes = Changes::default();
    let project_entity = Entity {
        kind: "project",
        key: Some(project),
        project: Some(project),
        environment: None,
    };
    let head = match existing {
        None => {
            let head = projects::insert(tx, &doc.project)?;
            let after = json!({"key": head.key, "name": head.name});
            audit::record(tx, actor, "import", project_entity, None, Some(&after))?;
            note("project", project, true);
            head
        }
        Some(head) if head.name != doc.project.name => {
            projects::rename(tx, head.id, &doc.project.name)?;
            let before = json!({"key": head.key, "name": head.name});
            let after = json!({"key": head.key, "name": doc.project.name});
            audit::record(tx, actor, "import", project_entity, Some(&before), Some(&after))?;
            note("project", project, false);
            projects::ProjectHead {
                name: doc.project.name.clone(),
                ..head
            }
        }
        Some(head) => head,
    };

    for info in &doc.environments {
        let entity = Entity {
            kind: "environment",
            key: Some(&info.key),
            project: Some(project),
            environment: Some(&info.key),
        };
        match environments::find(tx, head.id, &info.key)? {
            None => {
                let id = environments::insert(tx, head.id, info)?;
                changes.environment(id);
                let after = json!({"key": info.key, "name": info.name, "revision": 0,
                                   "requires_confirmation": environments::confirmation_of(info)});
                audit::record(tx, actor, "import", entity, None, Some(&after))?;
                note("environment", &info.key, true);
            }
            Some(env)
                if env.name != info.name
                    || env.requires_confirmation != environments::confirmation_of(info) =>
            {
                let requires_confirmation = environments::confirmation_of(info);
                environments::rename(tx, env.id, &info.name, requires_confirmation)?;
                let before = serde_json::to_value(&env)?;
                let after = serde_json::to_value(environments::Environment {
                    name: info.name.clone(),
                    requires_confirmation,
                    ..env
                })?;
                audit::record(tx, actor, "import", entity, Some(&before), Some(&after))?;
                note("environment", &info.key, false);
            }
            Some(_) => {}
        }
    }
    let envs = environments::list_in(tx, head.id)?;

    for segment in &doc.segments {
        let current = segments::find(tx, head.id, &segment.key)?;
        if segments::write(tx, head.id, current.as_ref(), segment)? {
            let entity = Entity {
                kind: "segment",
                key: Some(&segment.key),
                project: Some(project),
                environment: None,
            };
            let before = current.map(|(_, s)| serde_json::to_value(s)).transpose()?;
            audit::record(
                tx,
                actor,
                "import",
                entity,
                before.as_ref(),
                Some(&serde_json::to_value(segment)?),
            )?;
            note("segment", &segment.key, before.is_none());
        }
    }

    for flag in &doc.flags {
        let mut flag = flag.clone();
        for env in &doc.environments {
            flag.environments
                .entry(env.key.clone())
                .or_insert_with(FlagEnvState::default);
        }
        let current = flags::row(tx, head.id, &flag.key)?;
        let before = current
            .as_ref()
            .map(|row| flags::full(tx, &envs, row))
            .transpose()?;
        if flags::write(tx, head.id, &envs, current.as_ref(), &flag, &mut changes)? {
            let row = flags::row(tx, head.id, &flag.key)?.expect("the flag was written in this transaction");
            let after = flags::full(tx, &envs, &row)?;
            let entity = Entity {
                kind: "flag",
                key: Some(&flag.key),
                project: Some(project),
                environment: None,
            };
            let before = before.map(|b| serde_json::to_value(&b)).transpose()?;
            audit::record(
                tx,
                actor,
                "import",
                entity,
                before.as_ref(),
                Some(&serde_json::to_value(&after)?),
            )?;
            note("flag", &flag.key, before.is_none());
        }
    }

    // Schedules change nothing served until they are applied.
    let scheduled = super::schedules::import(tx, actor, &head, doc)?;
    for flag in &scheduled {
        note("schedule", flag, true);
    }

    if changed.len() > scheduled.len() {
        changes.project(tx, head.id)?;
    }
    Ok((
        ImportReport {
            project: project.to_owned(),
            created,
            changed,
        },
        changes,
    ))
}
