//! Segments: sets of contexts shared by a project's environments. A change of a segment
//! changes what every environment of the project serves.

use flagstaff_eval::model::{Clause, Op, Segment};
use rusqlite::{Connection, OptionalExtension, params};

use super::audit::{self, Actor, Entity};
use super::projects::{self, Focus, ProjectHead};
use super::{Changes, Result, StoreError, now_ms};

/// The stored segment `key` of a project (its id and definition), if any.
pub(crate) fn find(conn: &Connection, project_id: i64, key: &str) -> Result<Option<(i64, Segment)>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, definition FROM segments WHERE project_id = ?1 AND key = ?2")?;
    let found = stmt
        .query_row(params![project_id, key], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    found
        .map(|(id, json)| Ok((id, serde_json::from_str(&json)?)))
        .transpose()
}

fn existing(conn: &Connection, head: &ProjectHead, key: &str) -> Result<(i64, Segment)> {
    find(conn, head.id, key)?.ok_or_else(|| {
        StoreError::not_found(
            super::Resource::Segment,
            format!("segment {key:?} in project {:?}", head.key),
        )
    })
}

/// The project's segments by key.
pub fn list(conn: &Connection, project: &str) -> Result<Vec<Segment>> {
    let head = projects::head(conn, project)?;
    super::served::segments(conn, head.id)
}

/// One segment; 404 if the project or the segment does not exist.
pub fn get(conn: &Connection, project: &str, key: &str) -> Result<Segment> {
    let head = projects::head(conn, project)?;
    Ok(existing(conn, &head, key)?.1)
}

/// Writes a segment where it differs from what is stored; returns whether anything changed.
/// No validation, no audit: callers do both.
pub(crate) fn write(
    tx: &Connection,
    project_id: i64,
    current: Option<&(i64, Segment)>,
    segment: &Segment,
) -> Result<bool> {
    let json = serde_json::to_string(segment)?;
    match current {
        Some((_, stored)) if stored == segment => Ok(false),
        Some((id, _)) => {
            tx.prepare_cached(
                "UPDATE segments SET definition = ?2, version = version + 1, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, json, now_ms()])?;
            Ok(true)
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO segments (project_id, key, definition, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![project_id, segment.key, json, now_ms()])?;
            Ok(true)
        }
    }
}

fn check_segment(tx: &Connection, head: &ProjectHead, segment: &Segment) -> Result<()> {
    let mut doc = projects::document(tx, head)?;
    let index = projects::put_segment(&mut doc, segment.clone());
    projects::check(&doc, &Focus::Segment(index))
}

fn entity<'a>(project: &'a str, key: &'a str) -> Entity<'a> {
    Entity {
        kind: "segment",
        key: Some(key),
        project: Some(project),
        environment: None,
    }
}

/// Creates a segment. 409 if the key is taken.
pub fn create(tx: &Connection, actor: &Actor, project: &str, segment: Segment) -> Result<(Segment, Changes)> {
    let head = projects::head(tx, project)?;
    if find(tx, head.id, &segment.key)?.is_some() {
        return Err(StoreError::conflict(format!(
            "project {project:?} already has a segment with key {:?}",
            segment.key
        )));
    }
    check_segment(tx, &head, &segment)?;
    write(tx, head.id, None, &segment)?;
    let mut changes = Changes::default();
    changes.project(tx, head.id)?;
    audit::record(
        tx,
        actor,
        "create",
        entity(project, &segment.key),
        None,
        Some(&serde_json::to_value(&segment)?),
    )?;
    Ok((segment, changes))
}

/// Replaces a segment.
pub fn update(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    key: &str,
    segment: Segment,
) -> Result<(Segment, Changes)> {
    let head = projects::head(tx, project)?;
    let current = existing(tx, &head, key)?;
    if segment.key != key {
        return Err(StoreError::bad_request(
            format!(
                "a segment's key cannot change (the URL names {key:?}, the body {:?})",
                segment.key
            ),
            Some("key"),
        ));
    }
    check_segment(tx, &head, &segment)?;
    let mut changes = Changes::default();
    if write(tx, head.id, Some(&current), &segment)? {
        changes.project(tx, head.id)?;
        audit::record(
            tx,
            actor,
            "update",
            entity(project, key),
            Some(&serde_json::to_value(&current.1)?),
            Some(&serde_json::to_value(&segment)?),
        )?;
    }
    Ok((segment, changes))
}

/// Deletes a segment. 409 while a flag's rule uses it.
pub fn delete(tx: &Connection, actor: &Actor, project: &str, key: &str) -> Result<((), Changes)> {
    let head = projects::head(tx, project)?;
    let (id, before) = existing(tx, &head, key)?;
    let doc = projects::document(tx, &head)?;
    let uses = |clauses: &[Clause]| {
        clauses
            .iter()
            .any(|c| c.op == Op::InSegment && c.values.iter().any(|v| v.as_str() == Some(key)))
    };
    let mut dependents = Vec::new();
    for flag in &doc.flags {
        for (env, state) in &flag.environments {
            if state.rules.iter().any(|r| uses(&r.clauses)) {
                dependents.push(format!("{} ({env})", flag.key));
            }
        }
    }
    if !dependents.is_empty() {
        return Err(StoreError::conflict(format!(
            "segment {key:?} is used by the rules of flag {}; remove those clauses first",
            dependents.join(", ")
        )));
    }
    tx.prepare_cached("DELETE FROM segments WHERE id = ?1")?
        .execute([id])?;
    let mut changes = Changes::default();
    changes.project(tx, head.id)?;
    audit::record(
        tx,
        actor,
        "delete",
        entity(project, key),
        Some(&serde_json::to_value(&before)?),
        None,
    )?;
    Ok(((), changes))
}
