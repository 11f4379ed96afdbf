//! The store itself: migrations, durability, revisions.

use flagstaff::store::{self, Changes};

use crate::helpers::TestApp;

#[test]
fn migrations_are_valid() {
    store::migrations()
        .validate()
        .expect("migrations apply cleanly to an empty database");
}

#[test]
fn database_is_created_in_the_data_dir_in_wal_mode() {
    let app = TestApp::new();
    let path = app.dir.path().join("flagstaff.db");
    assert!(path.exists());
    let mode: String = app
        .state
        .store
        .read_blocking(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(mode, "wal");
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
