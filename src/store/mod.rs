//! The SQLite store (DESIGN.md §5): one file, one writer connection, a few readers, forward-only
//! migrations embedded in the binary. It knows nothing of HTTP.
//!
//! Every write runs in `BEGIN IMMEDIATE` on the one writer connection, inside `spawn_blocking`.
//! A write reports which environments it changed ([`Changes`]); the store bumps their revisions
//! in the same transaction, publishes the database as it will be after the commit to
//! `flagstaff.db` (see [`published`]: so that a plain copy of that one file is a backup), commits,
//! and then — still holding the writer — runs the caller's
//! `after_commit` hook, which is where snapshots are rebuilt. Holding the writer across the hook
//! makes snapshot swaps happen in commit order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use include_dir::{Dir, include_dir};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use rusqlite_migration::Migrations;

pub mod admin_tokens;
pub mod api_keys;
pub mod audit;
pub mod environments;
pub mod flags;
pub mod import;
pub mod insights;
pub mod projects;
pub mod published;
pub mod segments;
pub mod served;
pub mod sessions;
pub mod usage;
pub mod users;

static MIGRATIONS_DIR: Dir = include_dir!("$CARGO_MANIFEST_DIR/migrations");

/// The migrations embedded in the binary.
pub fn migrations() -> Migrations<'static> {
    Migrations::from_directory(&MIGRATIONS_DIR)
        .expect("migrations/ is embedded at build time and well formed")
}

/// The database file inside a data dir.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("flagstaff.db")
}

/// Errors of the store. User mistakes have their own variants so the HTTP layer can answer 4xx.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{message}")]
    Conflict { message: String },
    /// `If-Match` named a version that is no longer current.
    #[error("version {expected} is stale: the current version is {current}")]
    Stale { expected: u64, current: u64 },
    /// The change would make the project invalid; every problem is listed.
    #[error("the change is invalid")]
    Invalid(Vec<flagstaff_eval::ValidationError>),
    #[error("{message}")]
    BadRequest { message: String, path: Option<String> },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored JSON is unreadable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("database task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub fn not_found(what: impl Into<String>) -> Self {
        StoreError::NotFound { what: what.into() }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        StoreError::Conflict {
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>, path: Option<&str>) -> Self {
        StoreError::BadRequest {
            message: message.into(),
            path: path.map(str::to_owned),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a committed write changed, so snapshots and key lookups can follow.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    /// Environments whose served configuration changed.
    pub environments: BTreeMap<i64, EnvironmentChange>,
    /// Environments that no longer exist.
    pub removed_environments: BTreeSet<i64>,
    /// API keys were created or revoked.
    pub api_keys: bool,
}

#[derive(Debug, Default, Clone)]
pub struct EnvironmentChange {
    /// Flag keys whose definition or state changed (for an incremental rebuild).
    pub flags: BTreeSet<String>,
    /// Something beyond single flags changed (segments, project, a new environment): rebuild all.
    pub full: bool,
}

impl Changes {
    /// One flag changed in one environment.
    pub fn flag(&mut self, environment_id: i64, flag_key: &str) {
        self.environments
            .entry(environment_id)
            .or_default()
            .flags
            .insert(flag_key.to_owned());
    }

    /// One flag changed in every environment of its project (a definition change).
    pub fn flag_everywhere(&mut self, tx: &Connection, project_id: i64, flag_key: &str) -> Result<()> {
        for env in environment_ids(tx, project_id)? {
            self.flag(env, flag_key);
        }
        Ok(())
    }

    /// Everything in one environment changed.
    pub fn environment(&mut self, environment_id: i64) {
        self.environments.entry(environment_id).or_default().full = true;
    }

    /// Everything in every environment of a project changed (segments, import).
    pub fn project(&mut self, tx: &Connection, project_id: i64) -> Result<()> {
        for env in environment_ids(tx, project_id)? {
            self.environment(env);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.environments.is_empty() && self.removed_environments.is_empty() && !self.api_keys
    }
}

fn environment_ids(conn: &Connection, project_id: i64) -> Result<Vec<i64>> {
    let mut stmt =
        conn.prepare_cached("SELECT id FROM environments WHERE project_id = ?1 ORDER BY position")?;
    let ids = stmt
        .query_map([project_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

/// A handle on the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    files: published::Files,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    // Declared last so it is released after the connections are closed: the next opener may
    // then rebuild the live database (see `published`).
    _presence: published::Presence,
}

const READER_POOL: usize = 4;

impl Store {
    /// Opens (creating if needed) `<data_dir>/flagstaff.db` and applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Task(format!("cannot create data dir {}: {e}", data_dir.display())))?;
        Self::open_file(&database_path(data_dir))
    }

    /// Opens a database file directly.
    ///
    /// `path` is the published file; the process works on a live copy in `work/` beside it,
    /// rebuilt from `path` when no other process has the database open (see [`published`]).
    pub fn open_file(path: &Path) -> Result<Store> {
        let files = published::Files::new(path);
        let (opening, presence) = published::attach(&files)?;
        let mut writer = Connection::open(&files.live)?;
        configure(&writer)?;
        // After a crash of the machine the live database is rebuilt from the published file,
        // which every write flushes to disk: syncing the live one too would buy nothing.
        writer.pragma_update(None, "synchronous", "OFF")?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        let schema = |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
        let before = schema(&writer)?;
        migrations().to_latest(&mut writer)?;
        if schema(&writer)? != before || !published::is_current(&files) {
            let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
            published::publish(&tx, &files)?;
            tx.commit()?;
        }
        drop(opening);
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                files,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                _presence: presence,
            }),
        })
    }

    /// The live database this process works on (in `work/`; scratch, never a backup).
    pub fn live_path(&self) -> &Path {
        &self.inner.files.live
    }

    /// The database file's path (the published `flagstaff.db`).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the writer, off the async threads.
    ///
    /// The revisions of every environment in the returned [`Changes`] are bumped in the same
    /// transaction. After the commit and checkpoint, `after_commit` runs with the writer still
    /// held; it must not fail the write (the data is committed), so it returns nothing.
    pub async fn write<T, F, A>(&self, f: F, after_commit: A) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<(T, Changes)> + Send + 'static,
        A: FnOnce(&Connection, &Changes) + Send + 'static,
    {
        let store = self.clone();
        run_blocking(move || store.write_blocking(f, after_commit)).await
    }

    /// [`Store::write`] for callers already off the async threads (the command line, tests).
    pub fn write_blocking<T, F, A>(&self, f: F, after_commit: A) -> Result<T>
    where
        F: FnOnce(&Transaction) -> Result<(T, Changes)>,
        A: FnOnce(&Connection, &Changes),
    {
        let mut conn = self.writer();
        let started = std::time::Instant::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (out, changes) = f(&tx)?;
        bump_revisions(&tx, &changes)?;
        // Still holding the write lock, so publications follow commit order; a failed one rolls
        // the write back.
        let publishing = std::time::Instant::now();
        published::publish(&tx, &self.inner.files)?;
        crate::metrics::metrics()
            .database_publications
            .observe(publishing.elapsed());
        tx.commit()?;
        crate::metrics::metrics()
            .database_writes
            .observe(started.elapsed());
        after_commit(&conn, &changes);
        Ok(out)
    }

    /// Runs `f` with a read connection, off the async threads.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        run_blocking(move || store.read_blocking(f)).await
    }

    /// [`Store::read`] for callers already off the async threads.
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match lock(&self.inner.readers).pop() {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.inner.files.live,
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )?;
                configure(&conn)?;
                conn
            }
        };
        let out = f(&conn);
        let mut readers = lock(&self.inner.readers);
        if readers.len() < READER_POOL {
            readers.push(conn);
        }
        out
    }

    /// Exclusive use of the writer connection without a transaction (startup, backup,
    /// shutdown checkpoint). Blocking. Anything `f` changes is published when it returns
    /// (prefer [`Store::write`], where a failed publication rolls the change back).
    pub fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut conn = self.writer();
        let before = conn.total_changes();
        let out = f(&mut conn);
        if conn.total_changes() != before
            && let Err(e) = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::from)
                .and_then(|tx| published::publish(&tx, &self.inner.files).map(|()| tx))
                .and_then(|tx| Ok(tx.commit()?))
        {
            tracing::error!(error = %e, "publishing flagstaff.db failed; the next write retries");
        }
        out
    }

    /// Folds the live database's WAL into its main file: at shutdown, so the work directory is
    /// left tidy. (`flagstaff.db` needs nothing: every write published it.)
    pub fn checkpoint(&self) {
        checkpoint(&self.writer());
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        lock(&self.inner.writer)
    }
}

/// Runs blocking database work on tokio's blocking pool; a panic there is re-raised.
pub async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Task(e.to_string())),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves it usable: SQLite rolls back an unfinished
    // transaction when the `Transaction` is dropped during unwinding.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Copies the live database's WAL into its main file and empties the WAL.
pub fn checkpoint(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "WAL checkpoint failed; it will be retried after the next write");
    }
}

fn bump_revisions(tx: &Transaction, changes: &Changes) -> Result<()> {
    let mut stmt = tx.prepare_cached("UPDATE environments SET revision = revision + 1 WHERE id = ?1")?;
    for env in changes.environments.keys() {
        stmt.execute([env])?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
