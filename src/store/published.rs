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
    /// The file the last publication replaced, kept to be brought up to date and published next.
    spare: PathBuf,
    /// The second name of the published file while a publication replaces it.
    spare_next: PathBuf,
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
            spare: work_dir.join(format!("{name}.spare")),
            spare_next: work_dir.join(format!("{name}.spare-next")),
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
        if std::fs::metadata(&beside).is_ok_and(|m| m.len() > 0) {
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
/// path: a file flushed to disk, renamed over the published one, and the directory flushed.
/// Call it inside the write transaction, before the commit.
///
/// The file renamed into place is never one a reader may hold. It is either a new file (the
/// whole database written and flushed: O(size)) or the *spare*: the file the previous
/// publication replaced, kept under a second name in the work dir, brought up to date by
/// writing only the pages that differ and flushing those (O(change)). The spare is only reused
/// when the kernel grants a write lease on it, which it does only when no other open file
/// description (and no memory map) of that inode exists anywhere on the machine: a `cp` that
/// opened `flagstaff.db` before it was replaced, and still reads it, keeps the spare from being
/// touched, and that publication writes a new file instead. Once it is no longer published the
/// spare has no name but the one in the work dir, so nobody can start reading it between the
/// check and the writes except by opening the work dir's scratch files.
pub fn publish(conn: &Connection, files: &Files) -> Result<()> {
    // `serialize` reads every page through this connection, so it sees the open transaction.
    let image = conn.serialize(MAIN_DB)?;
    if image.len() <= FORMAT_VERSION_OFFSET + 1 {
        return Err(StoreError::Unusable("the database image is empty".into()));
    }
    // The published file is read on its own, never beside a WAL: say so in its header, so that
    // opening it (to read, or to restore it elsewhere) creates no `-wal` or `-shm` file.
    let mut first = image[..PAGE.min(image.len())].to_vec();
    first[FORMAT_VERSION_OFFSET] = ROLLBACK_JOURNAL;
    first[FORMAT_VERSION_OFFSET + 1] = ROLLBACK_JOURNAL;
    let (_, rest) = image.split_at(first.len());
    let mode = std::fs::metadata(&files.published).map_or(0o640, |m| m.permissions().mode() & 0o777);

    let written = match update_spare(files, mode, &first, rest) {
        Some(()) => &files.spare,
        None => {
            write_new(&files.staging, mode, &first, rest)?;
            &files.staging
        }
    };
    // The file being replaced becomes the next spare: a second name for it, made before the
    // rename takes the published name away. (Best effort: without it the next publication
    // writes a new file.)
    remove_if_present(&files.spare_next)?;
    let kept = std::fs::hard_link(&files.published, &files.spare_next).is_ok();
    std::fs::rename(written, &files.published).map_err(|e| {
        io_error(
            format!(
                "cannot rename {} to {}",
                written.display(),
                files.published.display()
            ),
            e,
        )
    })?;
    // The publication is made: what follows only prepares the next one, and never fails this one.
    if kept && std::fs::rename(&files.spare_next, &files.spare).is_err() {
        let _ = std::fs::remove_file(&files.spare_next);
    }
    sync_dir(&files.published)?;
    Ok(())
}

/// The unit in which a publication compares and rewrites the spare.
const PAGE: usize = 4096;

/// Writes the whole image to a new file at `path`, flushed.
fn write_new(path: &Path, mode: u32, first: &[u8], rest: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_error(format!("cannot create {}", path.display()), e))?;
    let written = file
        .write_all(first)
        .and_then(|()| file.write_all(rest))
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| file.sync_all());
    drop(file);
    written.map_err(|e| io_error(format!("cannot write {}", path.display()), e))
}

/// Brings the spare up to the image (`first` page then `rest`) and flushes it, when it exists,
/// has no other name and nobody has it open; `None` when it cannot be used (the caller writes a
/// new file). An error part way leaves only the spare changed, which is never published as it
/// is: the next publication compares it again.
fn update_spare(files: &Files, mode: u32, first: &[u8], rest: &[u8]) -> Option<()> {
    use std::os::unix::fs::{FileExt as _, MetadataExt as _};
    let spare = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&files.spare)
        .ok()?;
    let meta = spare.metadata().ok()?;
    let published = std::fs::metadata(&files.published).ok()?;
    // Only the work dir's name (a user's hard link to an old `flagstaff.db` is a copy to them),
    // and never the published file itself.
    if meta.nlink() != 1 || (meta.dev(), meta.ino()) == (published.dev(), published.ino()) {
        return None;
    }
    if !nobody_else_has_it_open(&spare) {
        return None;
    }
    let len = (first.len() + rest.len()) as u64;
    let page = |i: usize| -> &[u8] {
        match i {
            0 => first,
            _ => {
                let start = (i - 1) * PAGE;
                &rest[start..(start + PAGE).min(rest.len())]
            }
        }
    };
    let count = 1 + rest.len().div_ceil(PAGE);
    // Read in blocks of pages (one system call per block), compare page by page.
    const BLOCK: usize = 64;
    let mut old = vec![0u8; BLOCK * PAGE];
    for block in (0..count).step_by(BLOCK) {
        let offset = (block * PAGE) as u64;
        let have = meta.len().saturating_sub(offset).min(old.len() as u64) as usize;
        spare.read_exact_at(&mut old[..have], offset).ok()?;
        for i in block..(block + BLOCK).min(count) {
            let new = page(i);
            let at = (i - block) * PAGE;
            let same = at + new.len() <= have && old[at..at + new.len()] == *new;
            if !same {
                spare.write_all_at(new, (i * PAGE) as u64).ok()?;
            }
        }
    }
    if meta.len() != len {
        spare.set_len(len).ok()?;
    }
    // The mode of the file it replaces (which a user may have changed since).
    if meta.permissions().mode() & 0o777 != mode {
        spare
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .ok()?;
    }
    spare.sync_data().ok()?;
    Some(())
}

/// Whether the kernel grants a write lease on `file`: it does only when no other open file
/// description of the inode exists (in any process, of any user) and nobody has it mapped. The
/// lease is given back at once, so nobody opening the file later is kept waiting and no signal
/// is ever sent (a lease break would send SIGIO). On a file system without leases the answer is
/// no, and publications write new files as before.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn nobody_else_has_it_open(file: &File) -> bool {
    use std::os::fd::AsRawFd as _;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `file` for the duration of both calls, and
    // F_SETLEASE takes a plain integer argument; neither call touches memory.
    let granted = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_WRLCK) } == 0;
    if granted {
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
    }
    granted
}

/// Leases are Linux's: elsewhere every publication writes a new file.
#[cfg(not(target_os = "linux"))]
fn nobody_else_has_it_open(_file: &File) -> bool {
    false
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

    /// A live database of `rows` rows of `size` bytes, and a function publishing it with one
    /// more row.
    fn live_db(files: &Files) -> Connection {
        std::fs::create_dir_all(&files.work_dir).unwrap();
        let conn = Connection::open(&files.live).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE t (v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO t SELECT printf('%0500d', i) FROM n;",
        )
        .unwrap();
        conn
    }

    fn publish_one_more(conn: &mut Connection, files: &Files, value: &str) {
        let tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (?1)", [value]).unwrap();
        publish(&tx, files).unwrap();
        tx.commit().unwrap();
    }

    fn published_rows(files: &Files) -> (i64, String) {
        let copy = Connection::open(&files.published).unwrap();
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        copy.query_row(
            "SELECT count(*), max(rowid) || ':' || (SELECT v FROM t ORDER BY rowid DESC LIMIT 1) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn publications_reuse_the_replaced_file_when_nobody_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(&dir.path().join("flagstaff.db"));
        let mut conn = live_db(&files);
        let mut inodes = Vec::new();
        for i in 0..6 {
            publish_one_more(&mut conn, &files, &format!("change {i}"));
            assert_eq!(
                published_rows(&files),
                (2001 + i, format!("{}:change {i}", 2001 + i))
            );
            inodes.push(inode(&files.published));
        }
        // Two files take turns: each publication brings the one replaced before up to date.
        assert_eq!(inodes[2], inodes[0]);
        assert_eq!(inodes[3], inodes[1]);
        assert_eq!(inodes[5], inodes[3]);
        assert_ne!(inodes[1], inodes[0]);
        assert_eq!(std::fs::read(&files.published).unwrap()[18..20], [1, 1]);
        assert!(!files.staging.exists());
        assert!(!files.spare_next.exists());
    }

    #[test]
    fn a_copy_in_progress_is_never_written_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(&dir.path().join("flagstaff.db"));
        let mut conn = live_db(&files);
        publish_one_more(&mut conn, &files, "first");
        publish_one_more(&mut conn, &files, "second");
        // A reader opens the published file (as `cp` does) and reads slowly, across several
        // publications; another user keeps a hard link to it.
        let reader = File::open(&files.published).unwrap();
        let held = inode(&files.published);
        let before = std::fs::read(&files.published).unwrap();
        let linked = dir.path().join("hard-link.db");
        publish_one_more(&mut conn, &files, "third");
        std::fs::hard_link(&files.published, &linked).unwrap();
        let linked_before = std::fs::read(&linked).unwrap();
        for i in 0..4 {
            publish_one_more(&mut conn, &files, &format!("more {i}"));
            assert_ne!(inode(&files.published), held);
        }
        let mut during = Vec::new();
        std::io::Read::read_to_end(&mut &reader, &mut during).unwrap();
        assert!(during == before, "the file a reader holds is never changed");
        assert!(
            std::fs::read(&linked).unwrap() == linked_before,
            "nor one with another name"
        );
        assert_eq!(published_rows(&files), (2007, "2007:more 3".to_owned()));
        // Once the reader is done, publications reuse files again.
        drop(reader);
        publish_one_more(&mut conn, &files, "a");
        let a = inode(&files.published);
        publish_one_more(&mut conn, &files, "b");
        publish_one_more(&mut conn, &files, "c");
        assert_eq!(inode(&files.published), a);
        assert_eq!(published_rows(&files), (2010, "2010:c".to_owned()));
    }

    #[test]
    fn a_damaged_or_shorter_spare_is_rewritten_where_it_differs() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(&dir.path().join("flagstaff.db"));
        let mut conn = live_db(&files);
        publish_one_more(&mut conn, &files, "first");
        publish_one_more(&mut conn, &files, "second");
        // Left half written (a crash part way), or cut short, or longer than the database.
        let len = std::fs::metadata(&files.spare).unwrap().len() as usize;
        for damage in [vec![0xAB; len / 2], vec![7; 100], vec![1; len * 2]] {
            std::fs::write(&files.spare, &damage).unwrap();
            let spare = inode(&files.spare);
            publish_one_more(&mut conn, &files, "after damage");
            assert_eq!(inode(&files.published), spare, "the spare was used");
            let (n, _) = published_rows(&files);
            assert!(n > 2002);
        }
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
