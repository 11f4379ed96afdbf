//! Compare and promote environments (DESIGN.md §9): what differs between two environments'
//! states of every flag, and the copy of chosen flags' states from one to the other in one
//! transaction, audited per flag (action `promote`) and announced once.

use std::collections::BTreeMap;

use flagstaff_eval::model::FlagEnvState;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::audit::Actor;
use super::environments::{self, Environment};
use super::flags;
use super::projects;
use super::{Changes, Result, StoreError};

/// The parts of a state that can differ, in the order pages show them.
pub const PARTS: [&str; 6] = [
    "enabled",
    "off_variation",
    "prerequisites",
    "targets",
    "rules",
    "fallthrough",
];

/// Two environments side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub from: String,
    pub to: String,
    pub flags: Vec<FlagComparison>,
}

/// One flag in both environments.
#[derive(Debug, Clone, Serialize)]
pub struct FlagComparison {
    pub key: String,
    pub name: String,
    pub equal: bool,
    /// The parts that differ, from [`PARTS`].
    pub differences: Vec<&'static str>,
    /// Its state in `from` and in `to`, each with its version.
    pub from: FlagEnvState,
    pub to: FlagEnvState,
}

/// What `POST …/environments/{to}/promote` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    pub from: String,
    pub flags: Vec<String>,
    /// Each flag's version in the target when it was compared: 412 if it changed since.
    #[serde(default)]
    pub expect_versions: BTreeMap<String, u64>,
}

/// What a promotion did: each flag's new state in the target.
#[derive(Debug, Clone, Serialize)]
pub struct Promoted {
    pub from: String,
    pub to: String,
    pub flags: BTreeMap<String, FlagEnvState>,
}

/// The parts of `a` and `b` that differ.
pub fn differences(a: &FlagEnvState, b: &FlagEnvState) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.enabled != b.enabled {
        out.push(PARTS[0]);
    }
    if a.off_variation != b.off_variation {
        out.push(PARTS[1]);
    }
    if a.prerequisites != b.prerequisites {
        out.push(PARTS[2]);
    }
    if a.targets != b.targets {
        out.push(PARTS[3]);
    }
    if a.rules != b.rules {
        out.push(PARTS[4]);
    }
    if a.fallthrough != b.fallthrough {
        out.push(PARTS[5]);
    }
    out
}

/// Every flag (configs too) of the project in environments `from` and `to`, by key.
pub fn compare(conn: &Connection, project: &str, from: &str, to: &str) -> Result<Comparison> {
    let head = projects::head(conn, project)?;
    let a = environments::in_project(conn, &head, from)?;
    let b = environments::in_project(conn, &head, to)?;
    let envs = [a.clone(), b.clone()];
    let flags = flags::list(conn, project, &flags::FlagFilter::default())?;
    let mut out = Vec::new();
    for flag in flags {
        let state = |env: &Environment| {
            flag.environments.get(&env.key).cloned().unwrap_or(FlagEnvState {
                version: Some(0),
                ..FlagEnvState::default()
            })
        };
        let (sa, sb) = (state(&envs[0]), state(&envs[1]));
        let differences = differences(&sa, &sb);
        out.push(FlagComparison {
            key: flag.key.clone(),
            name: flag.name.clone(),
            equal: differences.is_empty(),
            differences,
            from: sa,
            to: sb,
        });
    }
    Ok(Comparison {
        from: a.key,
        to: b.key,
        flags: out,
    })
}

/// Copies the named flags' states from `promotion.from` to `to`. 400 (naming the field) for a
/// flag that does not exist or a state the target cannot have; 412 when a target version is
/// not the expected one. All or nothing.
pub fn promote(
    tx: &Connection,
    actor: &Actor,
    project: &str,
    to: &str,
    promotion: Promotion,
) -> Result<(Promoted, Changes)> {
    let head = projects::head(tx, project)?;
    let target = environments::in_project(tx, &head, to)?;
    let source = environments::find(tx, head.id, &promotion.from)?.ok_or_else(|| {
        StoreError::bad_request(
            format!("no environment {:?} in project {project:?}", promotion.from),
            Some("from"),
        )
    })?;
    if source.id == target.id {
        return Err(StoreError::bad_request(
            "from must be another environment than the one promoted to",
            Some("from"),
        ));
    }
    if promotion.flags.is_empty() {
        return Err(StoreError::bad_request(
            "name at least one flag to promote",
            Some("flags"),
        ));
    }
    for key in promotion.expect_versions.keys() {
        if !promotion.flags.contains(key) {
            return Err(StoreError::bad_request(
                format!("expect_versions names {key:?}, which is not in flags"),
                Some(&format!("expect_versions.{key}")),
            ));
        }
    }
    let mut promoted = BTreeMap::new();
    let mut changes = Changes::default();
    for (i, key) in promotion.flags.iter().enumerate() {
        let path = format!("flags[{i}]");
        let Some(row) = flags::row(tx, head.id, key)? else {
            return Err(StoreError::bad_request(
                format!("no flag {key:?} in project {project:?}"),
                Some(&path),
            ));
        };
        if promoted.contains_key(key) {
            return Err(StoreError::bad_request(
                format!("flag {key:?} is named twice"),
                Some(&path),
            ));
        }
        let state = flags::stored_state(tx, row.id, source.id)?;
        let expected = promotion.expect_versions.get(key).copied();
        let (after, changed) = flags::replace_state(
            tx, actor, "promote", &head, key, &target, state, expected,
        )
        .map_err(|e| match e {
            StoreError::Invalid(errors) => {
                let message = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                StoreError::bad_request(
                    format!(
                        "{key:?} cannot have its {from} state in {to}: {message}",
                        from = source.key
                    ),
                    Some(&path),
                )
            }
            other => other,
        })?;
        changes.merge(changed);
        promoted.insert(key.clone(), after);
    }
    Ok((
        Promoted {
            from: source.key,
            to: target.key,
            flags: promoted,
        },
        changes,
    ))
}
