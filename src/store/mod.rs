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
//!
//! Operational data (counts, last uses, sessions, failed sign-ins) lives in a second database
//! that is never published ([`operational`]): [`Store::operational`] writes it on its own writer
//! connection, without touching `flagstaff.db`; every live connection has it attached read-only,
//! so [`Store::read`] sees both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use include_dir::{Dir, include_dir};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, Transaction, TransactionBehavior};
use rusqlite_migration::Migrations;

pub mod admin_tokens;
pub mod api_keys;
pub mod audit;
pub mod environments;
pub mod flags;
mod group;
pub mod import;
pub mod insights;
pub mod operational;
pub mod projects;
pub mod promote;
pub mod published;
pub mod relay_keys;
pub mod sample;
pub mod schedules;
pub mod segments;
pub mod served;
pub mod sessions;
pub mod usage;
pub mod users;
pub mod webhooks;

/// The published schema's version before `0003-operational-split`: a data dir of that version has
/// its operational rows copied into the operational database before the migration drops them.
const SCHEMA_BEFORE_OPERATIONAL_SPLIT: i64 = 2;

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

/// What kind of thing was not found; the API's error code says it (`flag_not_found`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Project,
    Environment,
    Flag,
    Segment,
    Schedule,
    /// An SDK key (server or client).
    ApiKey,
    RelayKey,
    /// An admin token.
    Token,
    User,
    Webhook,
    AuditEntry,
    /// The published database file (a backup of a data dir that has none).
    Database,
}

/// Errors of the store. User mistakes have their own variants so the HTTP layer can answer 4xx.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `what` names the missing thing for a person (`flag "a" in project "shop"`).
    #[error("{what} not found")]
    NotFound { resource: Resource, what: String },
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
    /// A file operation failed; `context` says which and why it was needed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The data dir cannot be used as it is (the message says what to do).
    #[error("{0}")]
    Unusable(String),
}

impl StoreError {
    pub fn not_found(resource: Resource, what: impl Into<String>) -> Self {
        StoreError::NotFound {
            resource,
            what: what.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        StoreError::Conflict {
            message: message.into(),
        }
    }
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
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
    /// The group commit that committed it (see [`Store::write`]); 0 outside a group.
    pub group: u64,
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

    /// Adds what `other` changed.
    pub fn merge(&mut self, other: Changes) {
        for (id, change) in other.environments {
            let into = self.environments.entry(id).or_default();
            into.flags.extend(change.flags);
            into.full |= change.full;
        }
        self.removed_environments.extend(other.removed_environments);
        self.api_keys |= other.api_keys;
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
    /// `<data dir>/work/flagstaff.operational.db`.
    operational: PathBuf,
    writer: Mutex<Connection>,
    /// The operational database's one writer (taken after `writer` when both are needed).
    ops_writer: Mutex<Connection>,
    /// Writes waiting for the next group commit (see [`Store::write`]).
    queue: Mutex<Queue>,
    /// One per pooled reader: [`Store::read`] waits for one (as a task, holding no thread)
    /// rather than opening a connection per request in a burst.
    read_slots: tokio::sync::Semaphore,
    /// Publications made for writes by this handle, and the number of the last group.
    publications: std::sync::atomic::AtomicU64,
    groups: std::sync::atomic::AtomicU64,
    readers: Mutex<Vec<Connection>>,
    // Declared last so it is released after the connections are closed: the next opener may
    // then rebuild the live database (see `published`).
    _presence: published::Presence,
}

const READER_POOL: usize = 4;

#[derive(Default)]
struct Queue {
    jobs: Vec<Box<dyn group::Job>>,
    /// A committer is running: it takes the writer and commits what is queued, again and again,
    /// until it finds nothing queued (see [`Store::commit_queued`]).
    committing: bool,
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/flagstaff.db` and applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::io(format!("cannot create data dir {}", data_dir.display()), e))?;
        Self::open_file(&database_path(data_dir))
    }

    /// Opens a database file directly.
    ///
    /// `path` is the published file; the process works on a live copy in `work/` beside it,
    /// rebuilt from `path` when no other process has the database open (see [`published`]).
    pub fn open_file(path: &Path) -> Result<Store> {
        let files = published::Files::new(path);
        let operational_path = operational::path_beside(&files.live);
        let (opening, presence, first) = published::attach(&files)?;
        let mut writer = Connection::open(&files.live)?;
        configure(&writer)?;
        // After a crash of the machine the live database is rebuilt from the published file,
        // which every write flushes to disk: syncing the live one too would buy nothing.
        writer.pragma_update(None, "synchronous", "OFF")?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // Each publication reads every page through the writer (`serialize`): with the whole
        // database in its page cache (up to 256 MiB; SQLite's default is 2 MiB) that is a copy
        // from memory instead of a read and an allocation per page (BENCHMARKS.md, "A year of a
        // busy team").
        writer.pragma_update(None, "cache_size", -262_144)?;
        let schema = |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
        let before = schema(&writer)?;
        if first {
            operational::forget_if_foreign(
                &operational_path,
                operational::publication_of(&writer, "main")?.as_ref(),
            )?;
        }
        let ops_writer = operational::open(&operational_path)?;
        if before == SCHEMA_BEFORE_OPERATIONAL_SPLIT {
            operational::copy_from_published(&ops_writer, &files.live)?;
        }
        operational::attach_read_only(&writer, &operational_path)?;
        migrations().to_latest(&mut writer)?;
        if before == SCHEMA_BEFORE_OPERATIONAL_SPLIT {
            // The operational tables just left: give their pages back before the publication
            // below, which copies the whole file.
            writer.execute_batch("VACUUM main")?;
        }
        let store = Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                files,
                operational: operational_path,
                writer: Mutex::new(writer),
                ops_writer: Mutex::new(ops_writer),
                queue: Mutex::default(),
                read_slots: tokio::sync::Semaphore::new(READER_POOL),
                publications: std::sync::atomic::AtomicU64::default(),
                groups: std::sync::atomic::AtomicU64::default(),
                readers: Mutex::new(Vec::new()),
                _presence: presence,
            }),
        };
        {
            let mut writer = store.writer();
            if schema(&writer)? != before || !published::is_current(&store.inner.files) {
                let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let publication = store.publish(&tx)?;
                tx.commit()?;
                store.note_publication(publication.as_ref());
            }
        }
        drop(opening);
        Ok(store)
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
    /// transaction. After the commit and the publication, `after_commit` runs with the writer
    /// still held; it must not fail the write (the data is committed), so it returns nothing.
    ///
    /// Group commit: writes that arrive while a publication is in progress wait for it, then
    /// share the next one — one transaction, each write in its own savepoint (a write that fails
    /// is rolled back alone and answered with its error), one publication, one commit. Each is
    /// acknowledged only after a publication that contains it; a failed publication fails every
    /// write of its group. The hooks then run in commit order, each with the combined
    /// [`Changes`] of the group (whose [`Changes::group`] tells one group from the next): the
    /// database they read holds the whole group, so a snapshot is never rebuilt with half of it.
    ///
    /// A waiting write holds no thread: it is queued, and one committer on the blocking pool
    /// (started by the write that finds none running) commits groups until the queue is empty.
    /// A hundred writes at once cost one thread, not a hundred.
    pub async fn write<T, F, A>(&self, f: F, after_commit: A) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<(T, Changes)> + Send + 'static,
        A: FnOnce(&Connection, &Changes) + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = group::Pending::new(f, after_commit, group::Reply::Task(reply));
        let start = {
            let mut queue = lock(&self.inner.queue);
            queue.jobs.push(Box::new(job));
            !std::mem::replace(&mut queue.committing, true)
        };
        if start {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.commit_queued());
        }
        group::Outcome::received(answer.await.ok())
    }

    /// The committer of [`Store::write`]: commits what is queued, group after group, and stops
    /// when it finds the queue empty (saying so under the same lock, so a write queued after
    /// that starts a new committer).
    fn commit_queued(&self) {
        /// A committer that panics must not leave later writes waiting for it.
        struct Running<'a>(&'a Store, bool);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                if self.1 {
                    lock(&self.0.inner.queue).committing = false;
                }
            }
        }
        let mut running = Running(self, true);
        loop {
            let mut conn = self.writer();
            let queued = {
                let mut queue = lock(&self.inner.queue);
                if queue.jobs.is_empty() {
                    queue.committing = false;
                    running.1 = false;
                    return;
                }
                std::mem::take(&mut queue.jobs)
            };
            self.commit_group(&mut conn, queued);
        }
    }

    /// [`Store::write`] for callers already off the async threads (the command line, tests).
    pub fn write_blocking<T, F, A>(&self, f: F, after_commit: A) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<(T, Changes)> + Send + 'static,
        A: FnOnce(&Connection, &Changes) + Send + 'static,
    {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let job = group::Pending::new(f, after_commit, group::Reply::Thread(reply));
        lock(&self.inner.queue).jobs.push(Box::new(job));
        {
            // Whoever holds the writer next takes every write queued by then, this one included
            // (unless an earlier holder already took it and answered).
            let mut conn = self.writer();
            let queued = std::mem::take(&mut lock(&self.inner.queue).jobs);
            if !queued.is_empty() {
                self.commit_group(&mut conn, queued);
            }
        }
        group::Outcome::received(answer.recv().ok())
    }

    /// Commits a group of queued writes in one transaction and one publication.
    fn commit_group(&self, conn: &mut Connection, queued: Vec<Box<dyn group::Job>>) {
        let started = std::time::Instant::now();
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return group::fail_all(queued, StoreError::from(e)),
        };
        let changes_before = tx.total_changes();
        let mut kept: Vec<Box<dyn group::Job>> = Vec::with_capacity(queued.len());
        let mut all = Changes::default();
        for job in queued {
            if let Some((job, changes)) = group::run_in_savepoint(&tx, job) {
                all.merge(changes);
                kept.push(job);
            }
        }
        if kept.is_empty() {
            return; // every write failed and was answered; the transaction rolls back
        }
        // A group that changed no row (a write that found nothing to do) needs no publication:
        // the last one holds what it read.
        let unchanged = tx.total_changes() == changes_before;
        // Still holding the write lock, so publications follow commit order; a failed one rolls
        // the whole group back.
        let published = if unchanged {
            tx.commit().map(|()| None).map_err(StoreError::from)
        } else {
            self.publish(&tx)
                .and_then(|publication| Ok(tx.commit().map(|()| publication)?))
        };
        let publication = match published {
            Ok(publication) => publication,
            Err(e) => return group::fail_all(kept, e),
        };
        let metrics = crate::metrics::metrics();
        metrics.database_writes.observe(started.elapsed());
        metrics
            .database_changes
            .fetch_add(kept.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if !unchanged {
            self.inner
                .publications
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.note_publication(publication.as_ref());
        self.forget_removed_environments(&all);
        all.group = self
            .inner
            .groups
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        for job in kept {
            job.committed(conn, &all);
        }
    }

    /// How many times this handle published `flagstaff.db` for writes (not counting the start).
    pub fn publications(&self) -> u64 {
        self.inner.publications.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many writes wait for the writer (for tests of group commit).
    pub fn queued_writes(&self) -> usize {
        lock(&self.inner.queue).jobs.len()
    }

    /// Publishes the database as `tx` sees it (counting the publication in it); see
    /// [`published::publish`]. Returns the publication to note after the commit.
    fn publish(&self, tx: &Connection) -> Result<Option<operational::Publication>> {
        let publishing = std::time::Instant::now();
        let publication = tx
            .prepare_cached("UPDATE publication SET seq = seq + 1 WHERE id = 1 RETURNING instance, seq")?
            .query_row([], |r| {
                Ok(operational::Publication {
                    instance: r.get(0)?,
                    seq: r.get(1)?,
                })
            })
            .optional()?;
        published::publish(tx, &self.inner.files)?;
        crate::metrics::metrics()
            .database_publications
            .observe(publishing.elapsed());
        Ok(publication)
    }

    /// Tells the operational database which publication is the newest (after its commit).
    fn note_publication(&self, publication: Option<&operational::Publication>) {
        if let Some(publication) = publication
            && let Err(e) = operational::record_publication(&self.ops_writer(), publication)
        {
            tracing::warn!(error = %e, "noting the publication in the operational database failed");
        }
    }

    /// Drops the operational rows of environments a committed write deleted.
    fn forget_removed_environments(&self, changes: &Changes) {
        if !changes.removed_environments.is_empty()
            && let Err(e) = operational::forget_environments(
                &self.ops_writer(),
                changes.removed_environments.iter().copied(),
            )
        {
            tracing::warn!(error = %e, "forgetting deleted environments' counts failed");
        }
    }

    /// Runs `f` in a transaction of the operational database, off the async threads. It never
    /// publishes `flagstaff.db` and never waits for a publication.
    pub async fn operational<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        run_blocking(move || store.operational_blocking(f)).await
    }

    /// [`Store::operational`] for callers already off the async threads.
    pub fn operational_blocking<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.ops_writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Returns the operational database's free pages to the file system (after pruning).
    pub fn vacuum_operational(&self) {
        let conn = self.ops_writer();
        // The pragma frees one page per step: step it to the end (`execute_batch` steps once).
        let vacuumed = conn.prepare("PRAGMA incremental_vacuum").and_then(|mut stmt| {
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
            Ok(())
        });
        if let Err(e) = vacuumed {
            tracing::warn!(error = %e, "vacuuming the operational database failed");
        }
        checkpoint(&conn);
    }

    /// `VACUUM`s the live database and publishes it, so that `flagstaff.db` shrinks after
    /// pruning. Nothing it holds changes.
    pub fn vacuum_and_publish(&self) -> Result<()> {
        let mut conn = self.writer();
        conn.execute_batch("VACUUM main")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let publication = self.publish(&tx)?;
        tx.commit()?;
        self.inner
            .publications
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.note_publication(publication.as_ref());
        checkpoint(&conn);
        Ok(())
    }

    /// The operational database's file (in `work/`; never published, never in a backup).
    pub fn operational_path(&self) -> &Path {
        &self.inner.operational
    }

    /// Runs `f` with a read connection, off the async threads.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        // At most one blocking task per pooled connection: a burst of requests waits here
        // instead of opening (and parsing the schema of) a connection each.
        let _slot = self
            .inner
            .read_slots
            .acquire()
            .await
            .map_err(|_| StoreError::Unusable("the store is closed".into()))?;
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
                operational::attach_read_only(&conn, &self.inner.operational)?;
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
                .and_then(|tx| self.publish(&tx).map(|p| (tx, p)))
                .and_then(|(tx, p)| {
                    tx.commit()?;
                    self.note_publication(p.as_ref());
                    Ok(())
                })
        {
            tracing::error!(error = %e, "publishing flagstaff.db failed; the next write retries");
        }
        out
    }

    /// Folds the live database's WAL into its main file: at shutdown, so the work directory is
    /// left tidy. (`flagstaff.db` needs nothing: every write published it.)
    pub fn checkpoint(&self) {
        checkpoint(&self.writer());
        checkpoint(&self.ops_writer());
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        lock(&self.inner.writer)
    }

    fn ops_writer(&self) -> MutexGuard<'_, Connection> {
        lock(&self.inner.ops_writer)
    }
}

/// Runs blocking database work on tokio's blocking pool; a panic there is re-raised.
pub async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::io(
            "the database task was cancelled",
            std::io::Error::other(e),
        )),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves it usable: SQLite rolls back an unfinished
    // transaction when the `Transaction` is dropped during unwinding.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        .map_or(0, |d| d.as_millis() as i64)
}
