//! The store itself: migrations, durability, revisions.

use flagstaff::store::{self, Changes};

use crate::helpers::TestApp;

#[test]
fn migrations_are_valid() {
    store::migrations()
        .validate()
        .expect("migrations apply cleanly to an empty database");
}

/// What users copy is `flagstaff.db` in the data dir, a file that needs no journal beside it
/// (its header says rollback journal, so a copy opens alone); what the process reads and writes
/// is the live database in `work/`, in WAL mode (one writer, readers that never wait).
#[test]
fn the_published_database_opens_alone_and_the_live_one_in_work_uses_wal() {
    let app = TestApp::new();
    let path = app.dir.path().join("flagstaff.db");
    let header = std::fs::read(&path).expect("flagstaff.db in the data dir");
    assert_eq!(&header[..16], b"SQLite format 3\0");
    assert_eq!(
        (header[18], header[19]),
        (1, 1),
        "the published file reads and writes with a rollback journal, not WAL"
    );
    let live = app
        .dir
        .path()
        .join(flagstaff::store::published::WORK_DIR)
        .join("flagstaff.db");
    assert!(live.exists(), "the live database is in work/");
    let mode: String = app
        .state
        .store
        .read_blocking(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(mode, "wal", "the live database");
}

#[test]
fn a_rolled_back_write_changes_nothing() {
    let app = TestApp::new();
    let err = app.state.write_blocking(|tx| -> store::Result<((), Changes)> {
        tx.execute(
            "INSERT INTO projects (key, name, created_at, updated_at) VALUES ('p', 'P', 0, 0)",
            [],
        )?;
        Err(store::StoreError::conflict("refused"))
    });
    assert!(err.is_err());
    let n: i64 = app
        .state
        .store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM projects", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(n, 0);
}
