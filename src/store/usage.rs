//! What SDKs did: hourly evaluation counts per environment, flag and variant, when each flag
//! was last evaluated, and when each SDK key was last used. Written in one transaction of the
//! operational database ([`super::operational`]) per flush interval by `crate::events` (the
//! writers here take that transaction), read by the insights pages.

use rusqlite::{Connection, params};

use super::Result;

/// Evaluations of one variant of one flag in one environment during one hour.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HourlyCount {
    pub environment_id: i64,
    pub flag_key: String,
    pub variant: String,
    /// Unix seconds at the start of the hour.
    pub hour: i64,
    pub count: i64,
}

/// Adds counts to what is stored (creating the rows as needed). Totals saturate at `i64::MAX`
/// rather than fail. (Counts of an environment deleted meanwhile are dropped with it after its
/// deletion commits: `operational::forget_environments`.)
pub fn add_counts(conn: &Connection, counts: &[HourlyCount]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO evaluation_counts (environment_id, flag_key, variant, hour, count)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (environment_id, flag_key, variant, hour) DO UPDATE SET count =
           CASE WHEN count > 9223372036854775807 - excluded.count THEN 9223372036854775807
                ELSE count + excluded.count END",
    )?;
    for c in counts {
        stmt.execute(params![c.environment_id, c.flag_key, c.variant, c.hour, c.count])?;
    }
    Ok(())
}

/// Records when flags were last evaluated: `(environment id, flag key, Unix ms)`. A time older
/// than the stored one leaves it alone.
pub fn mark_evaluated(conn: &Connection, evaluated: &[(i64, String, i64)]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO flag_last_evaluated (environment_id, flag_key, at)
         VALUES (?1, ?2, ?3)
         ON CONFLICT (environment_id, flag_key) DO UPDATE SET at = max(at, excluded.at)",
    )?;
    for (environment_id, flag_key, at) in evaluated {
        stmt.execute(params![environment_id, flag_key, at])?;
    }
    Ok(())
}

/// Records when admin tokens were last used: `(token id, Unix ms)`.
pub fn mark_tokens_used(conn: &Connection, used: &[(i64, i64)]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO token_last_used (token_id, at) VALUES (?1, ?2)
         ON CONFLICT (token_id) DO UPDATE SET at = max(at, excluded.at)",
    )?;
    for (id, at) in used {
        stmt.execute(params![id, at])?;
    }
    Ok(())
}

/// Records when SDK keys were last used: `(key id, Unix ms)`.
pub fn mark_keys_used(conn: &Connection, used: &[(i64, i64)]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO key_last_used (key_id, at) VALUES (?1, ?2)
         ON CONFLICT (key_id) DO UPDATE SET at = max(at, excluded.at)",
    )?;
    for (id, at) in used {
        stmt.execute(params![id, at])?;
    }
    Ok(())
}

/// The hourly counts of an environment from `since_hour` (Unix seconds) on, optionally of one
/// flag, ordered by flag, hour and variant.
pub fn counts(
    conn: &Connection,
    environment_id: i64,
    flag_key: Option<&str>,
    since_hour: i64,
) -> Result<Vec<HourlyCount>> {
    let mut stmt = conn.prepare_cached(
        "SELECT environment_id, flag_key, variant, hour, count FROM evaluation_counts
         WHERE environment_id = ?1 AND hour >= ?2 AND (?3 IS NULL OR flag_key = ?3)
         ORDER BY flag_key, hour, variant",
    )?;
    let rows = stmt.query_map(params![environment_id, since_hour, flag_key], |r| {
        Ok(HourlyCount {
            environment_id: r.get(0)?,
            flag_key: r.get(1)?,
            variant: r.get(2)?,
            hour: r.get(3)?,
            count: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// When each flag of an environment was last evaluated (Unix ms), by flag key.
pub fn last_evaluated(conn: &Connection, environment_id: i64) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT flag_key, at FROM flag_last_evaluated WHERE environment_id = ?1 ORDER BY flag_key",
    )?;
    let rows = stmt.query_map([environment_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Folds the hourly counts of days before `before_hour` (Unix seconds, the start of a day) into
/// one row per day, whose `hour` is the start of the day. Returns how many hourly rows were
/// folded.
pub fn roll_up_days(conn: &Connection, before_hour: i64) -> Result<usize> {
    conn.prepare_cached(
        "INSERT INTO evaluation_counts (environment_id, flag_key, variant, hour, count)
         SELECT environment_id, flag_key, variant, hour - hour % 86400, sum(count) FROM evaluation_counts
         WHERE hour < ?1 AND hour % 86400 != 0
         GROUP BY environment_id, flag_key, variant, hour - hour % 86400
         ON CONFLICT (environment_id, flag_key, variant, hour) DO UPDATE SET count =
           CASE WHEN count > 9223372036854775807 - excluded.count THEN 9223372036854775807
                ELSE count + excluded.count END",
    )?
    .execute([before_hour])?;
    Ok(conn
        .prepare_cached("DELETE FROM evaluation_counts WHERE hour < ?1 AND hour % 86400 != 0")?
        .execute([before_hour])?)
}

/// Deletes the counts of hours (or days) before `before_hour` (Unix seconds).
pub fn prune_counts(conn: &Connection, before_hour: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM evaluation_counts WHERE hour < ?1")?
        .execute([before_hour])?)
}

/// The ids that exist in the published database, to forget the operational rows of the rest.
#[derive(Debug, Clone, Default)]
pub struct Alive {
    environments: String,
    keys: String,
    tokens: String,
    users: String,
}

impl Alive {
    /// Reads them (a connection of the live database).
    pub fn read(conn: &Connection) -> Result<Alive> {
        let ids = |sql: &str| -> Result<String> {
            Ok(conn
                .query_row(sql, [], |r| r.get::<_, Option<String>>(0))?
                .unwrap_or_else(|| "[]".into()))
        };
        Ok(Alive {
            environments: ids("SELECT json_group_array(id) FROM environments")?,
            keys: ids("SELECT json_group_array(id) FROM api_keys")?,
            tokens: ids("SELECT json_group_array(id) FROM admin_tokens")?,
            users: ids("SELECT json_group_array(id) FROM users")?,
        })
    }
}

/// Deletes what the operational database holds about environments, keys, tokens and users not
/// in `alive`; returns how many count rows went.
pub fn forget_the_gone(conn: &Connection, alive: &Alive) -> Result<usize> {
    let counts = conn.execute(
        "DELETE FROM evaluation_counts WHERE environment_id NOT IN (SELECT value FROM json_each(?1))",
        [&alive.environments],
    )?;
    conn.execute(
        "DELETE FROM flag_last_evaluated WHERE environment_id NOT IN (SELECT value FROM json_each(?1))",
        [&alive.environments],
    )?;
    conn.execute(
        "DELETE FROM key_last_used WHERE key_id NOT IN (SELECT value FROM json_each(?1))",
        [&alive.keys],
    )?;
    conn.execute(
        "DELETE FROM token_last_used WHERE token_id NOT IN (SELECT value FROM json_each(?1))",
        [&alive.tokens],
    )?;
    conn.execute(
        "DELETE FROM sessions WHERE user_id NOT IN (SELECT value FROM json_each(?1))",
        [&alive.users],
    )?;
    Ok(counts)
}
