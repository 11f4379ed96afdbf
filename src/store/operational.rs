//! The operational database: `<data dir>/work/flagstaff.operational.db`.
//!
//! Publishing `flagstaff.db` costs a copy of the whole file (see [`super::published`]), so the
//! published file holds only what a restore needs. What changes all the time and a restore can do
//! without lives here instead (DESIGN.md §5): evaluation counts and when each flag was last
//! evaluated, when keys and tokens were last used, sessions, failed sign-ins (and, later, webhook
//! delivery positions). Writing it never rewrites `flagstaff.db`; it is an ordinary WAL database
//! with its own writer connection and its own forward-only migrations (`migrations-operational/`),
//! shared by every Flagstaff process of the data dir, and kept from one run to the next.
//!
//! Every connection to the live database has it attached read-only as `ops`, so reads join
//! across the two (`sessions JOIN users`); the tables' names are unique across both databases,
//! so queries name them without the schema. Only [`super::Store::operational`] writes it.
//!
//! A restore from `flagstaff.db` alone starts it empty: the published database carries an
//! instance id and a publication count (its `publication` row), this one the newest pair it saw
//! (`published_seen`). When the first process opens the data dir and the published file is of
//! another instance or older than what was seen, the operational database belongs to another
//! history (its sessions could name users that are now someone else) and is deleted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use include_dir::{Dir, include_dir};
use rusqlite::{Connection, OptionalExtension, params};
use rusqlite_migration::Migrations;

use super::Result;

static MIGRATIONS_DIR: Dir = include_dir!("$CARGO_MANIFEST_DIR/migrations-operational");

/// The schema name the operational database is attached under on live connections.
pub const SCHEMA: &str = "ops";

/// The operational database's migrations, embedded in the binary.
pub fn migrations() -> Migrations<'static> {
    Migrations::from_directory(&MIGRATIONS_DIR)
        .expect("migrations-operational/ is embedded at build time and well formed")
}

/// The operational database that goes with the live database `live` (`work/x.db` →
/// `work/x.operational.db`).
pub fn path_beside(live: &Path) -> PathBuf {
    let stem = live
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    live.with_file_name(format!("{stem}.operational.db"))
}

/// A publication of `flagstaff.db`: which database, and its count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub instance: String,
    pub seq: i64,
}

/// The `publication` row of a database, if it has one (databases of earlier versions do not).
pub fn publication_of(conn: &Connection, schema: &str) -> Result<Option<Publication>> {
    let exists: bool = conn
        .prepare(&format!(
            "SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = 'publication'"
        ))?
        .exists([])?;
    if !exists {
        return Ok(None);
    }
    let row = conn
        .query_row(
            &format!("SELECT instance, seq FROM {schema}.publication WHERE id = 1"),
            [],
            |r| {
                Ok(Publication {
                    instance: r.get(0)?,
                    seq: r.get(1)?,
                })
            },
        )
        .optional()?;
    Ok(row)
}

/// Deletes the operational database when it does not belong to the published one `published`
/// (`None`: a new data dir, or a database of an earlier version). Call it only as the first
/// process of the data dir, before opening it. Returns whether it was deleted.
pub fn forget_if_foreign(path: &Path, published: Option<&Publication>) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let seen = {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let has_table: bool = conn
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'published_seen'")?
            .exists([])?;
        if has_table {
            conn.query_row("SELECT instance, seq FROM published_seen WHERE id = 1", [], |r| {
                Ok(Publication {
                    instance: r.get(0)?,
                    seq: r.get(1)?,
                })
            })
            .optional()?
        } else {
            None
        }
    };
    let Some(seen) = seen else {
        return Ok(false);
    };
    let belongs = published.is_some_and(|p| p.instance == seen.instance && p.seq >= seen.seq);
    if belongs {
        return Ok(false);
    }
    tracing::warn!(
        path = %path.display(),
        "flagstaff.db was restored (or replaced): the operational database (sessions, evaluation \
         counts, last uses) starts empty"
    );
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(super::StoreError::io(
                    format!("cannot remove {}", path.display()),
                    e,
                ));
            }
        }
    }
    Ok(true)
}

/// Opens (creating if needed) the operational database and applies its migrations.
pub fn open(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // Pages freed by pruning go back to the file system (`Store::vacuum_operational`). Takes
    // effect on a new database only, which is when it is needed.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Losing the last moments of it to a power cut is acceptable (a count, a last use, a
    // sign-in); a process crash loses nothing, the WAL is in the OS's hands.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    migrations().to_latest(&mut conn)?;
    Ok(conn)
}

/// Attaches the operational database read-only as [`SCHEMA`] (readers and the live writer: read
/// access only, so the writer's `BEGIN IMMEDIATE` never locks it).
pub fn attach_read_only(conn: &Connection, path: &Path) -> Result<()> {
    conn.execute(
        &format!("ATTACH DATABASE ?1 AS {SCHEMA}"),
        [format!("file:{}?mode=ro", uri_path(path))],
    )?;
    Ok(())
}

/// `path` as the path of a `file:` URI (https://sqlite.org/uri.html: `?`, `#` and `%` escaped).
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// Copies the operational rows of a published database of an earlier version (schema 2: before
/// `0003-operational-split`) into the operational database `ops`, so that an upgrade keeps
/// sessions, counts and last uses. Rows already there are kept (a retry after a crash adds
/// nothing twice).
pub fn copy_from_published(ops: &Connection, live: &Path) -> Result<()> {
    ops.execute(
        "ATTACH DATABASE ?1 AS old",
        [format!("file:{}?mode=ro", uri_path(live))],
    )?;
    let copied = ops.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT OR IGNORE INTO main.sessions
           (id, token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, revoked_at)
           SELECT id, token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, revoked_at
           FROM old.sessions;
         INSERT OR IGNORE INTO main.sign_in_failures (id, at, email, client)
           SELECT id, at, email, client FROM old.sign_in_failures;
         INSERT OR IGNORE INTO main.evaluation_counts (environment_id, flag_key, variant, hour, count)
           SELECT environment_id, flag_key, variant, hour, count FROM old.evaluation_counts;
         INSERT OR IGNORE INTO main.flag_last_evaluated (environment_id, flag_key, at)
           SELECT environment_id, flag_key, at FROM old.flag_last_evaluated;
         INSERT OR IGNORE INTO main.key_last_used (key_id, at)
           SELECT id, last_used_at FROM old.api_keys WHERE last_used_at IS NOT NULL;
         INSERT OR IGNORE INTO main.token_last_used (token_id, at)
           SELECT id, last_used_at FROM old.admin_tokens WHERE last_used_at IS NOT NULL;
         COMMIT;",
    );
    if copied.is_err() {
        let _ = ops.execute_batch("ROLLBACK");
    }
    ops.execute("DETACH DATABASE old", [])?;
    copied?;
    Ok(())
}

/// Notes a publication of `flagstaff.db` (after its commit).
pub fn record_publication(ops: &Connection, publication: &Publication) -> Result<()> {
    ops.prepare_cached(
        "INSERT INTO published_seen (id, instance, seq) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET
           seq = CASE WHEN instance = excluded.instance THEN max(seq, excluded.seq) ELSE excluded.seq END,
           instance = excluded.instance",
    )?
    .execute(params![publication.instance, publication.seq])?;
    Ok(())
}

/// Forgets what the operational database holds about environments that no longer exist.
pub fn forget_environments(ops: &Connection, ids: impl IntoIterator<Item = i64>) -> Result<()> {
    let mut counts = ops.prepare_cached("DELETE FROM evaluation_counts WHERE environment_id = ?1")?;
    let mut evaluated = ops.prepare_cached("DELETE FROM flag_last_evaluated WHERE environment_id = ?1")?;
    for id in ids {
        counts.execute([id])?;
        evaluated.execute([id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operational_database_sits_beside_the_live_one() {
        assert_eq!(
            path_beside(Path::new("/data/work/flagstaff.db")),
            Path::new("/data/work/flagstaff.operational.db")
        );
    }

    #[test]
    fn uri_paths_escape_what_a_uri_would_read_as_syntax() {
        assert_eq!(uri_path(Path::new("/a b/c?d#e%f")), "/a b/c%3fd%23e%25f");
    }

    #[test]
    fn migrations_are_valid() {
        migrations().validate().expect("operational migrations apply");
    }

    #[test]
    fn a_foreign_or_older_publication_forgets_the_operational_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.operational.db");
        let seen = Publication {
            instance: "a".into(),
            seq: 5,
        };
        let prepare = || {
            let conn = open(&path).unwrap();
            record_publication(&conn, &seen).unwrap();
            conn.execute("INSERT INTO key_last_used (key_id, at) VALUES (1, 2)", [])
                .unwrap();
        };
        prepare();
        let newer = Publication {
            seq: 6,
            ..seen.clone()
        };
        assert!(!forget_if_foreign(&path, Some(&seen)).unwrap());
        assert!(
            !forget_if_foreign(&path, Some(&newer)).unwrap(),
            "a crash before the note"
        );
        let older = Publication {
            seq: 4,
            ..seen.clone()
        };
        assert!(forget_if_foreign(&path, Some(&older)).unwrap());
        assert!(!path.exists());
        prepare();
        let other = Publication {
            instance: "b".into(),
            seq: 50,
        };
        assert!(forget_if_foreign(&path, Some(&other)).unwrap());
        prepare();
        assert!(forget_if_foreign(&path, None).unwrap());
    }
}
