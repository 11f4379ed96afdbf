//! `flagstaff.db` is never changed in place: it is *published*.
//!
//! The promise of DESIGN.md §5 is that a plain copy of `flagstaff.db`, taken at any moment while
//! the server runs, is a good backup. No SQLite journal mode can keep that promise for a file that
//! is written in place: a copy that reads the file while a checkpoint (WAL) or a commit (rollback
//! journal) writes its pages gets some old pages and some new ones. The stress test behind
//! docs/operations.md measured about one torn copy in ten under a steady stream of writes.
//!
//! So the process works on a *live* database in `<data dir>/work/` (WAL mode, one writer, many
//! readers, shared by every Flagstaff process of the data dir), and each write transaction, before
//! it commits, writes the whole database as it will be after the commit into a temporary file,
//! flushes it to disk and `rename(2)`s it over `flagstaff.db`. A copy opens one inode and reads
//! it to the end; a rename never changes an inode that a reader holds, so every copy is exactly
//! one committed state. Publishing before the commit, while holding the write lock, means that
//! a failed publication rolls the write back (nothing visible anywhere) and that publications
//! happen in commit order across processes.
//!
//! The live database is scratch: whenever a process opens the data dir and no other process has
//! it open, the live database is rebuilt from `flagstaff.db`. That is what makes "stop, replace
//! `flagstaff.db`, start" a restore, and what lets the live database skip `fsync` (after a power
//! loss every process is gone, so the next start rebuilds it from the durable published file).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, MAIN_DB};

use super::{Result, StoreError};

/// Name of the directory, inside the data dir, that holds the live database and its locks.
pub const WORK_DIR: &str = "work";

/// Bytes 18 and 19 of an SQLite file say which journal its readers use: 1 for a rollback
/// journal, 2 for WAL (https://sqlite.org/fileformat2.html#file_format_version_numbers).
const FORMAT_VERSION_OFFSET: usize = 18;
const ROLLBACK_JOURNAL: u8 = 1;

/// The files of one database.
#[derive(Debug, Clone)]
pub struct Files {
    /// The database users copy and restore: `<data dir>/flagstaff.db`.
    pub published: PathBuf,
    /// The live database the process reads and writes: `<data dir>/work/<name>`.
    pub live: PathBuf,
    work_dir: PathBuf,
    /// Where a publication is written before it is renamed over `published`.
    staging: PathBuf,
}

impl Files {
    /// The files that go with the published database `published`.
    pub fn new(published: &Path) -> Files {
        let dir = published.parent().map(Path::to_owned).unwrap_or_default();
        let name = published
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let work_dir = dir.join(WORK_DIR);
        Files {
            published: published.to_owned(),
            live: work_dir.join(&name),
            staging: dir.join(format!(".{name}.publishing")),
            work_dir,
        }
    }

    fn lock_file(&self, what: &str) -> Result<File> {
        let name = self
            .live
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = self.work_dir.join(format!("{name}.{what}.lock"));
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(format!("cannot open the lock file {}", path.display()), e))
    }
}

/// Held for as long as a process has the database open; the last one to let go makes the next
/// opener rebuild the live database from the published file.
#[derive(Debug)]
pub struct Presence {
    _file: File,
}

/// Held while a process opens the database (rebuild, migrations, first publication), so openers
/// take turns.
pub struct Opening {
    _file: File,
}

/// Takes the opening turn, rebuilds the live database from the published one when no other
/// process has it open, and registers this process as present. Keep the [`Opening`] until the
/// database is migrated and published, and the [`Presence`] for as long as it is open. The
/// `bool` says whether this process is the first (it rebuilt the live database).
pub fn attach(files: &Files) -> Result<(Opening, Presence, bool)> {
    std::fs::create_dir_all(&files.work_dir)
        .map_err(|e| io_error(format!("cannot create {}", files.work_dir.display()), e))?;
    let opening = files.lock_file("open")?;
    opening
        .lock()
        .map_err(|e| io_error("cannot take the opening lock".into(), e))?;
    let presence = files.lock_file("presence")?;
    let mut first = false;
    match presence.try_lock() {
        Ok(()) => {
            first = true;
            // Nobody else has the database open: whatever the live copy holds is left over from a
            // run that ended (cleanly or not). The published file is the database.
            rebuild(files)?;
            presence
                .unlock()
                .map_err(|e| io_error("cannot release the presence lock".into(), e))?;
        }
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(e)) => return Err(io_error("cannot take the presence lock".into(), e)),
    }
    // Nobody can take the presence lock exclusively between the unlock above and this: that
    // needs the opening lock, which this process holds.
    presence
        .lock_shared()
        .map_err(|e| io_error("cannot take the presence lock".into(), e))?;
    Ok((Opening { _file: opening }, Presence { _file: presence }, first))
}

/// Replaces the live database with a copy of the published one (or nothing, for a new data dir).
fn rebuild(files: &Files) -> Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        remove_if_present(&with_suffix(&files.live, suffix))?;
    }
    remove_if_present(&files.staging)?;
    for suffix in ["-wal", "-journal"] {
        let beside = with_suffix(&files.published, suffix);
        if std::fs::metadata(&beside).map(|m| m.len() > 0).unwrap_or(false) {
            return Err(StoreError::Unusable(format!(
                "{} lies beside {}: Flagstaff never writes one, so something else wrote to the database. \
                 Fold it in with `sqlite3 {} 'PRAGMA journal_mode=DELETE'` (or remove it to drop those \
                 writes) and start again",
                beside.display(),
                files.published.display(),
                files.published.display(),
            )));
        }
    }
    if !files.published.exists() {
        return Ok(());
    }
    // The published file is never written in place, so a plain copy of it is consistent.
    std::fs::copy(&files.published, &files.live).map_err(|e| {
        io_error(
            format!(
                "cannot copy {} to {}",
                files.published.display(),
                files.live.display()
            ),
            e,
        )
    })?;
    let conn = Connection::open(&files.live)?;
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(StoreError::Unusable(format!(
            "{} is damaged ({verdict}); restore it from a backup",
            files.published.display()
        )));
    }
    Ok(())
}

/// Writes the database as `conn` sees it — including its open transaction — to the published
/// path: a temporary file, flushed, renamed over the published one, and the directory flushed.
/// Call it inside the write transaction, before the commit.
pub fn publish(conn: &Connection, files: &Files) -> Result<()> {
    // `serialize` reads every page through this connection, so it sees the open transaction.
    let image = conn.serialize(MAIN_DB)?;
    if image.len() <= FORMAT_VERSION_OFFSET + 1 {
        return Err(StoreError::Unusable("the database image is empty".into()));
    }
    let mode = std::fs::metadata(&files.published)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o640);
    let mut staging = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&files.staging)
        .map_err(|e| io_error(format!("cannot create {}", files.staging.display()), e))?;
    // The published file is read on its own, never beside a WAL: say so in its header, so that
    // opening it (to read, or to restore it elsewhere) creates no `-wal` or `-shm` file.
    let (head, tail) = image.split_at(FORMAT_VERSION_OFFSET + 2);
    let mut header = head.to_vec();
    header[FORMAT_VERSION_OFFSET] = ROLLBACK_JOURNAL;
    header[FORMAT_VERSION_OFFSET + 1] = ROLLBACK_JOURNAL;
    let written = staging
        .write_all(&header)
        .and_then(|()| staging.write_all(tail))
        .and_then(|()| staging.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| staging.sync_all());
    drop(staging);
    written.map_err(|e| io_error(format!("cannot write {}", files.staging.display()), e))?;
    std::fs::rename(&files.staging, &files.published).map_err(|e| {
        io_error(
            format!(
                "cannot rename {} to {}",
                files.staging.display(),
                files.published.display()
            ),
            e,
        )
    })?;
    sync_dir(&files.published)?;
    Ok(())
}

/// Whether the published file exists and is in the form [`publish`] writes (a user may have
/// restored a file in WAL form, which a new publication normalises).
pub fn is_current(files: &Files) -> bool {
    let mut header = [0u8; FORMAT_VERSION_OFFSET + 2];
    File::open(&files.published)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
        .is_ok_and(|()| header[FORMAT_VERSION_OFFSET..] == [ROLLBACK_JOURNAL, ROLLBACK_JOURNAL])
}

/// Flushes the directory holding `path`, so that a rename in it survives a power loss.
fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(format!("cannot flush the directory {}", dir.display()), e))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(format!("cannot remove {}", path.display()), e)),
    }
}

fn io_error(what: String, e: std::io::Error) -> StoreError {
    StoreError::Unusable(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_database_and_its_locks_live_in_the_work_dir() {
        let files = Files::new(Path::new("/data/flagstaff.db"));
        assert_eq!(files.live, Path::new("/data/work/flagstaff.db"));
        assert_eq!(files.staging, Path::new("/data/.flagstaff.db.publishing"));
    }

    #[test]
    fn a_publication_is_a_rollback_journal_database_with_the_open_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(&dir.path().join("flagstaff.db"));
        std::fs::create_dir_all(&files.work_dir).unwrap();
        let mut conn = Connection::open(&files.live).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('committed');")
            .unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES ('in the transaction')", [])
            .unwrap();
        publish(&tx, &files).unwrap();
        drop(tx); // rolled back: the publication still holds what the transaction saw

        let bytes = std::fs::read(&files.published).unwrap();
        assert_eq!(bytes[18..20], [1, 1], "the header says rollback journal");
        let copy = Connection::open(&files.published).unwrap();
        let mode: String = copy.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete");
        let rows: Vec<String> = copy
            .prepare("SELECT v FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows, ["committed", "in the transaction"]);
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        assert!(!with_suffix(&files.published, "-wal").exists());
        assert!(!files.staging.exists());
    }

    #[test]
    fn the_first_opener_rebuilds_the_live_database_and_later_ones_share_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(&dir.path().join("flagstaff.db"));
        {
            let published = Connection::open(&files.published).unwrap();
            published
                .execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('restored');")
                .unwrap();
        }
        std::fs::create_dir_all(&files.work_dir).unwrap();
        std::fs::write(&files.live, b"left over from an earlier run").unwrap();

        let (opening, first, was_first) = attach(&files).unwrap();
        assert!(was_first);
        drop(opening);
        let live = Connection::open(&files.live).unwrap();
        let v: String = live.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "restored");
        live.execute("INSERT INTO t VALUES ('live only')", []).unwrap();

        // A second process (here: a second handle) joins without a rebuild.
        let (opening, second, was_first) = attach(&files).unwrap();
        assert!(!was_first);
        drop(opening);
        let n: i64 = live
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);

        // Once everyone has let go, the next opener starts again from the published file.
        drop((first, second, live));
        let (_opening, _presence, _) = attach(&files).unwrap();
        let live = Connection::open(&files.live).unwrap();
        let n: i64 = live
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_wal_beside_the_published_file_stops_the_start_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(&dir.path().join("flagstaff.db"));
        Connection::open(&files.published)
            .unwrap()
            .execute_batch("CREATE TABLE t (v TEXT)")
            .unwrap();
        std::fs::write(with_suffix(&files.published, "-wal"), b"frames").unwrap();
        let err = attach(&files).err().expect("refused").to_string();
        assert!(err.contains("flagstaff.db-wal"), "{err}");
    }
}
