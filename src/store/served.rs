//! What an environment serves, read back for snapshots: the project, the environment's
//! revision, the project's segments and every flag with this environment's state.

use flagstaff_eval::model::{Flag, FlagEnvState, ProjectInfo, Segment};
use rusqlite::{Connection, OptionalExtension, params};

use super::Result;

/// One environment's identity and current revision.
#[derive(Debug, Clone)]
pub struct EnvironmentHead {
    pub id: i64,
    pub project_id: i64,
    pub project: ProjectInfo,
    pub key: String,
    pub revision: u64,
}

/// Everything an environment serves.
#[derive(Debug, Clone)]
pub struct Served {
    pub head: EnvironmentHead,
    pub segments: Vec<Segment>,
    /// Sorted by key; each carries exactly one entry in `environments`: this one.
    pub flags: Vec<Flag>,
}

/// Every environment's id.
pub fn all_environment_ids(conn: &Connection) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM environments ORDER BY id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

/// The environment's head, or `None` if it no longer exists.
pub fn head(conn: &Connection, environment_id: i64) -> Result<Option<EnvironmentHead>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.id, e.project_id, p.key, p.name, e.key, e.revision
         FROM environments e JOIN projects p ON p.id = e.project_id WHERE e.id = ?1",
    )?;
    let head = stmt
        .query_row([environment_id], |r| {
            Ok(EnvironmentHead {
                id: r.get(0)?,
                project_id: r.get(1)?,
                project: ProjectInfo {
                    key: r.get(2)?,
                    name: r.get(3)?,
                },
                key: r.get(4)?,
                revision: r.get::<_, i64>(5)? as u64,
            })
        })
        .optional()?;
    Ok(head)
}

/// Everything the environment serves, or `None` if it no longer exists.
pub fn load(conn: &Connection, environment_id: i64) -> Result<Option<Served>> {
    let Some(head) = head(conn, environment_id)? else {
        return Ok(None);
    };
    let segments = segments(conn, head.project_id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT f.definition, s.state, s.version FROM flags f
         LEFT JOIN flag_states s ON s.flag_id = f.id AND s.environment_id = ?2
         WHERE f.project_id = ?1 ORDER BY f.key",
    )?;
    let mut rows = stmt.query(params![head.project_id, environment_id])?;
    let mut flags = Vec::new();
    while let Some(row) = rows.next()? {
        let definition: String = row.get(0)?;
        flags.push(flag_from_row(&head.key, &definition, row.get(1)?, row.get(2)?)?);
    }
    Ok(Some(Served {
        head,
        segments,
        flags,
    }))
}

/// One flag with this environment's state, or `None` if the flag no longer exists.
pub fn flag(conn: &Connection, head: &EnvironmentHead, flag_key: &str) -> Result<Option<Flag>> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.definition, s.state, s.version FROM flags f
         LEFT JOIN flag_states s ON s.flag_id = f.id AND s.environment_id = ?2
         WHERE f.project_id = ?1 AND f.key = ?3",
    )?;
    let row = stmt
        .query_row(params![head.project_id, head.id, flag_key], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })
        .optional()?;
    row.map(|(definition, state, version)| flag_from_row(&head.key, &definition, state, version))
        .transpose()
}

/// The project's segments, sorted by key.
pub fn segments(conn: &Connection, project_id: i64) -> Result<Vec<Segment>> {
    let mut stmt =
        conn.prepare_cached("SELECT definition FROM segments WHERE project_id = ?1 ORDER BY key")?;
    let mut rows = stmt.query([project_id])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let definition: String = row.get(0)?;
        out.push(serde_json::from_str(&definition)?);
    }
    Ok(out)
}

/// Builds a flag from its stored definition and (optional) state in one environment.
pub fn flag_from_row(
    environment_key: &str,
    definition: &str,
    state: Option<String>,
    version: Option<i64>,
) -> Result<Flag> {
    let mut flag: Flag = serde_json::from_str(definition)?;
    let mut env_state: FlagEnvState = match state {
        Some(json) => serde_json::from_str(&json)?,
        None => FlagEnvState::default(),
    };
    env_state.version = Some(version.unwrap_or(0) as u64);
    flag.environments.clear();
    flag.environments.insert(environment_key.to_owned(), env_state);
    Ok(flag)
}
