//! What the insights pages read beyond the evaluation counts (`usage`): when each flag was
//! created, when its state last changed in each environment, and when it was last evaluated.

use std::collections::HashMap;

use rusqlite::Connection;

use super::Result;

/// The activity of one flag of a project.
#[derive(Debug, Clone, Default)]
pub struct FlagActivity {
    pub created_at: i64,
    /// When each environment's state last changed, by environment id (absent: never set).
    pub state_changed: HashMap<i64, i64>,
    /// When each environment last evaluated it, by environment id.
    pub evaluated: HashMap<i64, i64>,
}

impl FlagActivity {
    /// The last evaluation in any environment.
    pub fn last_evaluated(&self) -> Option<i64> {
        self.evaluated.values().copied().max()
    }
}

/// The activity of every flag of a project, by flag key.
pub fn activity(conn: &Connection, project_id: i64) -> Result<HashMap<String, FlagActivity>> {
    let mut out: HashMap<String, FlagActivity> = HashMap::new();
    let mut stmt = conn.prepare_cached("SELECT key, created_at FROM flags WHERE project_id = ?1")?;
    let mut rows = stmt.query([project_id])?;
    while let Some(r) = rows.next()? {
        out.insert(
            r.get(0)?,
            FlagActivity {
                created_at: r.get(1)?,
                ..FlagActivity::default()
            },
        );
    }
    let mut stmt = conn.prepare_cached(
        "SELECT f.key, s.environment_id, s.updated_at FROM flag_states s JOIN flags f ON f.id = s.flag_id
         WHERE f.project_id = ?1",
    )?;
    let mut rows = stmt.query([project_id])?;
    while let Some(r) = rows.next()? {
        if let Some(a) = out.get_mut(&r.get::<_, String>(0)?) {
            a.state_changed.insert(r.get(1)?, r.get(2)?);
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT l.flag_key, l.environment_id, l.at FROM flag_last_evaluated l
         JOIN environments e ON e.id = l.environment_id WHERE e.project_id = ?1",
    )?;
    let mut rows = stmt.query([project_id])?;
    while let Some(r) = rows.next()? {
        if let Some(a) = out.get_mut(&r.get::<_, String>(0)?) {
            a.evaluated.insert(r.get(1)?, r.get(2)?);
        }
    }
    Ok(out)
}
