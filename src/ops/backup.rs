//! Consistent backups while the server runs: `flagstaff backup FILE` and the admin pages'
//! download.
//!
//! `flagstaff.db` is only ever replaced whole, by a rename, and each write publishes it before it
//! commits (see [`crate::store::published`]). So the current `flagstaff.db`, opened once and read
//! to the end, is a consistent database holding every change acknowledged before it was opened:
//! a backup is a copy of it, checked by SQLite before it is put in place.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::store::{Store, StoreError};

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Writes a consistent copy of the database to `dest`, holding every change committed before
/// the call. `dest` is replaced atomically if it exists (readable by its owner only: the
/// database holds password and key hashes). Blocking: call it off the async threads.
pub fn backup_to(store: &Store, dest: &Path) -> Result<Backup, StoreError> {
    backup_file(store.path(), dest)
}

/// [`backup_to`] from the published database file itself (`<data dir>/flagstaff.db`), without
/// opening the store: works whether a server runs or not, and on a read-only data dir.
pub fn backup_file(published: &Path, dest: &Path) -> Result<Backup, StoreError> {
    let mut source = open_published(published)?;
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .ok_or_else(|| StoreError::bad_request("the backup file needs a file name", None))?;
    let partial = dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| io_error(format!("cannot create {}", partial.display()), e))?;
        let bytes = std::io::copy(&mut source, &mut out).map_err(|e| {
            io_error(
                format!("cannot copy {} to {}", published.display(), partial.display()),
                e,
            )
        })?;
        out.sync_all()
            .map_err(|e| io_error(format!("cannot write {}", partial.display()), e))?;
        drop(out);
        check(&partial)?;
        std::fs::rename(&partial, dest).map_err(|e| {
            io_error(
                format!("cannot rename {} to {}", partial.display(), dest.display()),
                e,
            )
        })?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(format!("cannot flush the directory {}", dir.display()), e))?;
        Ok(Backup {
            path: dest.to_owned(),
            bytes,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Copies the published database to `out` (standard output for `flagstaff backup -`, or an HTTP
/// body) and returns the number of bytes.
pub fn backup_into(published: &Path, out: &mut impl Write) -> Result<u64, StoreError> {
    let mut source = open_published(published)?;
    let bytes = std::io::copy(&mut source, out).map_err(|e| io_error("cannot write the backup".into(), e))?;
    out.flush()
        .map_err(|e| io_error("cannot write the backup".into(), e))?;
    Ok(bytes)
}

/// `flagstaff backup FILE`: a checked copy of the data dir's database in FILE, or on standard
/// output for `-` (e.g. `docker exec flagstaff flagstaff backup - > flagstaff-backup.db`).
pub fn command(data_dir: &Path, file: &Path) -> Result<(), StoreError> {
    let published = crate::store::database_path(data_dir);
    if file == Path::new("-") {
        let bytes = backup_into(&published, &mut std::io::stdout().lock())?;
        tracing::info!(bytes, from = %published.display(), "backup written to standard output");
    } else {
        let backup = backup_file(&published, file)?;
        tracing::info!(bytes = backup.bytes, file = %backup.path.display(), "backup written and checked");
    }
    Ok(())
}

fn open_published(published: &Path) -> Result<File, StoreError> {
    // One open, one inode: a publication that lands meanwhile renames a new file over the name
    // and leaves this one as it is.
    File::open(published).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::not_found(
            crate::store::Resource::Database,
            format!("the database {} (is the data dir right?)", published.display()),
        ),
        _ => io_error(format!("cannot open {}", published.display()), e),
    })
}

/// Runs SQLite's `quick_check` on a backup file.
pub fn check(path: &Path) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(StoreError::Unusable(format!(
            "the backup {} fails SQLite's check: {verdict}",
            path.display()
        )))
    }
}

fn io_error(what: String, e: std::io::Error) -> StoreError {
    StoreError::io(what, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_a_checked_private_copy_and_a_missing_database_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let dest = dir.path().join("copies").join("b.db");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let backup = backup_to(&store, &dest).unwrap();
        assert_eq!(backup.bytes, std::fs::metadata(&dest).unwrap().len());
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let version: i64 = Connection::open(&dest)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert!(version >= 1, "the migrations are in the backup");

        let err = backup_file(&dir.path().join("nothing/flagstaff.db"), &dest)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nothing/flagstaff.db"), "{err}");
    }

    #[test]
    fn a_damaged_file_is_not_put_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("flagstaff.db");
        let mut bytes = b"SQLite format 3\0".to_vec();
        bytes.resize(8192, 0xAB);
        std::fs::write(&source, bytes).unwrap();
        let dest = dir.path().join("b.db");
        assert!(backup_file(&source, &dest).is_err());
        assert!(!dest.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
