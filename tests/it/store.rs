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

// The operational database (DESIGN.md §5): counts, last uses, sessions and failed sign-ins live in
// `work/flagstaff.operational.db`, never published.

use flagstaff::config::Settings;
use flagstaff::store::{api_keys, sessions, usage};
use flagstaff::{AppState, keys};
use rusqlite::{Connection, OpenFlags, params};

/// The published database's `publication` count, read the way a person would: from the file.
fn publications(dir: &std::path::Path) -> i64 {
    let conn =
        Connection::open_with_flags(dir.join("flagstaff.db"), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row("SELECT seq FROM publication", [], |r| r.get(0))
        .unwrap()
}

fn tables(path: &std::path::Path) -> Vec<String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// A hostile email: quotes, a comma, a tab, unicode and markup.
const EMAIL: &str = "o'brien,\"x\"\t<script>é@example.test";

#[test]
fn a_data_dir_of_the_previous_version_is_migrated_in_place_keeping_sessions_counts_and_last_uses() {
    // The published file as today's main leaves it: its schema is migrations 0001 and 0002 (the
    // files main has, unchanged here), in rollback-journal form, with operational rows inside.
    let dir = tempfile::tempdir().unwrap();
    let now = flagstaff::store::now_ms();
    {
        let mut conn = Connection::open(dir.path().join("flagstaff.db")).unwrap();
        store::migrations().to_version(&mut conn, 2).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO users (id, email, password_hash, role, created_at, updated_at)
               VALUES (7, '{}', '!', 'admin', 1, 1);
             INSERT INTO projects (id, key, name, created_at, updated_at) VALUES (1, 'shop', 'Shop', 1, 1);
             INSERT INTO environments (id, project_id, key, name, position, created_at, updated_at)
               VALUES (3, 1, 'production', 'Production', 0, 1, 1);
             INSERT INTO api_keys (id, environment_id, kind, name, key_hash, prefix, created_at, last_used_at)
               VALUES (11, 3, 'server', 'k', x'00', 'fs_srv_', 1, {now});
             INSERT INTO admin_tokens (id, user_id, name, token_hash, prefix, created_at, last_used_at)
               VALUES (12, 7, 't', x'01', 'fs_adm_', 1, {now});
             INSERT INTO evaluation_counts VALUES (3, 'new-checkout', 'on, \"really\"', 3600, 42);
             INSERT INTO flag_last_evaluated VALUES (3, 'new-checkout', {now});
             INSERT INTO sign_in_failures (at, email, client) VALUES ({now}, 'x@example.test', '127.0.0.1');",
            EMAIL.replace('\'', "''"),
        ))
        .unwrap();
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at)
             VALUES (?1, 7, 'csrf', ?2, ?2, ?3)",
            params![keys::hash("cookie-secret").as_slice(), now, now + 86_400_000],
        )
        .unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }

    let state = AppState::open(Settings::with_data_dir(dir.path())).unwrap();
    let (session, counts, failures, key) = state
        .store
        .read_blocking(|conn| {
            Ok((
                sessions::authenticate(conn, "cookie-secret", 3_600_000)?,
                usage::counts(conn, 3, None, 0)?,
                sessions::recent_failures(conn, Some("x@example.test"), "127.0.0.1", 0)?,
                api_keys::list(conn, 3)?,
            ))
        })
        .unwrap();
    let session = session.expect("the session survived the upgrade");
    assert_eq!(session.user.email, EMAIL);
    assert_eq!(counts.len(), 1);
    assert_eq!(
        (counts[0].variant.as_str(), counts[0].count),
        ("on, \"really\"", 42)
    );
    assert_eq!(failures.0.len(), 1, "failed sign-ins are still counted");
    assert_eq!(key[0].last_used_at, Some(now));

    // The published file no longer holds any of it; the operational one does.
    let published = tables(&dir.path().join("flagstaff.db"));
    for gone in [
        "sessions",
        "sign_in_failures",
        "evaluation_counts",
        "flag_last_evaluated",
    ] {
        assert!(!published.contains(&gone.to_owned()), "{gone} in {published:?}");
    }
    assert!(published.contains(&"publication".to_owned()));
    let operational = tables(state.store.operational_path());
    for moved in [
        "sessions",
        "sign_in_failures",
        "evaluation_counts",
        "key_last_used",
        "token_last_used",
    ] {
        assert!(
            operational.contains(&moved.to_owned()),
            "{moved} in {operational:?}"
        );
    }

    // A second start copies nothing twice.
    drop(state);
    let state = AppState::open(Settings::with_data_dir(dir.path())).unwrap();
    let counts = state
        .store
        .read_blocking(|conn| usage::counts(conn, 3, None, 0))
        .unwrap();
    assert_eq!(counts[0].count, 42);
}

#[actix_web::test]
async fn operational_writes_never_publish_the_database() {
    let app = TestApp::new();
    let token = app.token(flagstaff::store::users::Role::Admin);
    let created = app
        .call(
            "POST",
            "/api/v1/import",
            Some(&token),
            Some(serde_json::json!({
                "flagstaff": 1,
                "project": {"key": "shop", "name": "Shop"},
                "environments": [{"key": "production", "name": "Production"}],
                "segments": [],
                "flags": [{"key": "a", "name": "A", "kind": "flag", "type": "boolean",
                    "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                    "environments": {"production": {"enabled": true, "fallthrough": {"variation": "on"}}}}]
            })),
        )
        .await;
    assert!(created.status.is_success(), "{}", created.body);
    let before = publications(app.dir.path());
    let inode = |dir: &std::path::Path| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join("flagstaff.db")).unwrap())
    };
    let file_before = inode(app.dir.path());

    let env = app
        .state
        .store
        .read_blocking(|c| Ok(c.query_row("SELECT id FROM environments", [], |r| r.get::<_, i64>(0))?))
        .unwrap();
    for _ in 0..5 {
        app.state.events.record(
            env,
            flagstaff::store::now_ms(),
            [flagstaff::events::Count {
                flag: "a",
                variant: "on",
                count: 3,
            }],
        );
        app.state.events.touch_token(1);
        let flushed = flagstaff::events::flush(&app.state).await.unwrap();
        assert_eq!(flushed.counts, 1);
    }
    let user = app
        .state
        .store
        .read_blocking(|c| Ok(c.query_row("SELECT id FROM users", [], |r| r.get::<_, i64>(0))?))
        .unwrap();
    let new = app
        .state
        .store
        .operational(move |tx| {
            sessions::record_failure(tx, EMAIL, "::1", 0, 0)?;
            sessions::create(tx, user, 60_000)
        })
        .await
        .unwrap();
    app.state
        .store
        .operational(move |tx| sessions::touch(tx, new.id))
        .await
        .unwrap();
    assert_eq!(publications(app.dir.path()), before, "nothing was published");
    assert_eq!(
        inode(app.dir.path()),
        file_before,
        "flagstaff.db is the same file"
    );
    let counts = app
        .state
        .store
        .read_blocking(move |c| usage::counts(c, env, Some("a"), 0))
        .unwrap();
    assert_eq!(counts.iter().map(|c| c.count).sum::<i64>(), 15);

    // A change of configuration is published, once.
    let toggled = app
        .call(
            "PATCH",
            "/api/v1/projects/shop/flags/a/environments/production",
            Some(&token),
            Some(serde_json::json!({"enabled": false})),
        )
        .await;
    assert!(toggled.status.is_success(), "{}", toggled.body);
    assert_eq!(publications(app.dir.path()), before + 1);
}

#[test]
fn a_restart_keeps_the_operational_database_and_a_restore_starts_it_empty() {
    let app = TestApp::new();
    let dir = app.dir.path().to_owned();
    let user = app
        .state
        .write_blocking(|tx| {
            Ok((
                flagstaff::store::users::insert(tx, EMAIL, flagstaff::store::users::Role::Viewer, "!")?.id,
                Changes::default(),
            ))
        })
        .unwrap();
    // One millisecond later than the user, whatever the clock's grain.
    std::thread::sleep(std::time::Duration::from_millis(2));
    let new = app
        .state
        .store
        .operational_blocking(|tx| sessions::create(tx, user, 3_600_000))
        .unwrap();
    let signed_in = |state: &AppState| {
        let token = new.token.clone();
        state
            .store
            .read_blocking(move |c| sessions::authenticate(c, &token, 3_600_000))
            .unwrap()
            .is_some()
    };
    assert!(signed_in(&app.state));
    let backup = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("flagstaff.db"), backup.path().join("flagstaff.db")).unwrap();

    // A restart (and a crash is a restart too) keeps everyone signed in.
    let app = app.restart();
    assert!(signed_in(&app.state));
    // A restore of the copy taken just now is the same history: still signed in.
    let TestApp { dir: tmp, state } = app;
    drop(state);
    std::fs::copy(backup.path().join("flagstaff.db"), dir.join("flagstaff.db")).unwrap();
    let state = AppState::open(Settings::with_data_dir(&dir)).unwrap();
    assert!(signed_in(&state));

    // After more changes, restoring the older copy is another history: everyone signs in again.
    state
        .write_blocking(|tx| {
            Ok((
                flagstaff::store::users::insert(
                    tx,
                    "later@example.test",
                    flagstaff::store::users::Role::Viewer,
                    "!",
                )?,
                Changes::default(),
            ))
        })
        .unwrap();
    drop(state);
    std::fs::copy(backup.path().join("flagstaff.db"), dir.join("flagstaff.db")).unwrap();
    let state = AppState::open(Settings::with_data_dir(&dir)).unwrap();
    assert!(
        !signed_in(&state),
        "the restored database starts with no sessions"
    );
    let users: i64 = state
        .store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(users, 1, "the restore is the copy");
    drop(tmp);
}

// Group commit (DESIGN.md §5): writes that arrive while a publication is in progress share the
// next one.

const GROUP: usize = 100;

/// A project `shop` with `GROUP` boolean flags (`f000`…), off in `production`.
fn project_with_flags(app: &TestApp) -> i64 {
    app.state
        .write_blocking(|tx| {
            let actor = flagstaff::store::audit::Actor::cli();
            let flags: Vec<serde_json::Value> = (0..GROUP)
                .map(|i| {
                    serde_json::json!({
                        "key": format!("f{i:03}"), "name": format!("Flag \"{i}\", <b>é</b>"),
                        "kind": "flag", "type": "boolean",
                        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
                        "environments": {"production": {"enabled": false, "fallthrough": {"variation": "on"}}}
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "flagstaff": 1,
                "project": {"key": "shop", "name": "Shop"},
                "environments": [{"key": "production", "name": "Production"}],
                "segments": [], "flags": flags
            });
            let doc = serde_json::from_value(doc)?;
            flagstaff::store::import::import(tx, &actor, &doc, true)
        })
        .unwrap();
    app.state
        .store
        .read_blocking(|c| Ok(c.query_row("SELECT id FROM environments", [], |r| r.get(0))?))
        .unwrap()
}

/// The write that toggles `flag` on in production; a flag that does not exist is refused (with
/// `NotFound`).
fn turn_on(
    flag: String,
) -> impl FnOnce(&rusqlite::Transaction) -> store::Result<(u64, Changes)> + Send + 'static {
    set_enabled(flag, true)
}

/// The write that turns `flag` on or off in production; returns its new version.
fn set_enabled(
    flag: String,
    on: bool,
) -> impl FnOnce(&rusqlite::Transaction) -> store::Result<(u64, Changes)> + Send + 'static {
    move |tx| {
        let patch = flagstaff::store::flags::StatePatch {
            enabled: Some(on),
            ..Default::default()
        };
        let (state, changes) = flagstaff::store::flags::patch_state(
            tx,
            &flagstaff::store::audit::Actor::cli(),
            "shop",
            &flag,
            "production",
            patch,
            None,
        )?;
        Ok((state.version.unwrap_or(0), changes))
    }
}

/// Toggles `flag` on from a thread of its own ([`AppState::write_blocking`]).
fn toggle(state: &AppState, flag: String) -> std::thread::JoinHandle<store::Result<u64>> {
    let state = state.clone();
    std::thread::spawn(move || state.write_blocking(turn_on(flag)))
}

/// Holds the writer (as a publication in progress does) until `n` writes are queued behind it;
/// returns once it holds it.
fn hold_writer_until_queued(state: &AppState, n: usize) -> std::thread::JoinHandle<()> {
    let (held, holding) = std::sync::mpsc::channel();
    let state = state.clone();
    let holder = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        state.store.with_writer(|_| {
            held.send(()).unwrap();
            while state.store.queued_writes() < n {
                assert!(std::time::Instant::now() < deadline, "the writes never queued");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
    });
    holding.recv().unwrap();
    holder
}

#[test]
fn a_hundred_concurrent_toggles_share_one_publication_and_a_failing_one_is_refused_alone() {
    let app = TestApp::new();
    let env = project_with_flags(&app);
    let revision_before = app.state.snapshots.get(env).unwrap().revision;
    let publications_before = app.state.store.publications();

    let holder = hold_writer_until_queued(&app.state, GROUP + 1);
    let toggles: Vec<_> = (0..GROUP)
        .map(|i| toggle(&app.state, format!("f{i:03}")))
        .collect();
    let missing = toggle(&app.state, "no-such-flag, \"<script>\"".to_owned());
    holder.join().unwrap();
    for t in toggles {
        assert_eq!(
            t.join().unwrap().unwrap(),
            2,
            "each toggle is acknowledged as version 2"
        );
    }
    let refused = missing.join().unwrap();
    assert!(
        matches!(refused, Err(store::StoreError::NotFound { .. })),
        "{refused:?}"
    );
    assert_eq!(
        app.state.store.publications() - publications_before,
        1,
        "{GROUP} writes queued behind one publication share the next one"
    );

    // Every toggle is in the published file, and the snapshot went straight to the group's end.
    let published = Connection::open_with_flags(
        app.dir.path().join("flagstaff.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let enabled: i64 = published
        .query_row(
            "SELECT count(*) FROM flag_states WHERE json_extract(state, '$.enabled') = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(enabled, GROUP as i64);
    let revision: i64 = published
        .query_row("SELECT revision FROM environments WHERE id = ?1", [env], |r| {
            r.get(0)
        })
        .unwrap();
    let revision = revision as u64;
    assert_eq!(
        revision,
        revision_before + GROUP as u64,
        "each write moves the revision"
    );
    let snapshot = app.state.snapshots.get(env).unwrap();
    assert_eq!(snapshot.revision, revision);
    let bundle: serde_json::Value = serde_json::from_slice(&snapshot.bundle).unwrap();
    let on = bundle["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["environments"]["production"]["enabled"] == true)
        .count();
    assert_eq!(on, GROUP);
}

/// The threads of this process (Linux).
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: in /proc/self/status")
}

/// The same from async handlers ([`AppState::write`], what the HTTP API calls): the writes wait
/// as tasks, one committer commits them, a write that panics is re-raised to its caller alone,
/// and the writes after it are committed by a new committer.
#[actix_web::test]
async fn a_hundred_concurrent_async_writes_share_one_publication_and_a_panic_stays_with_its_caller() {
    let app = TestApp::new();
    let env = project_with_flags(&app);
    let publications_before = app.state.store.publications();

    // Hold the writer (as a publication in progress does) until every write is queued.
    let (held, holding) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let state = app.state.clone();
    let holder = std::thread::spawn(move || {
        state.store.with_writer(|_| {
            held.send(()).unwrap();
            released.recv().unwrap();
        });
    });
    holding.recv().unwrap();
    let threads_before = threads();
    let write = |flag: String| {
        let state = app.state.clone();
        actix_web::rt::spawn(async move { state.write(turn_on(flag)).await })
    };
    let writes: Vec<_> = (0..GROUP).map(|i| write(format!("f{i:03}"))).collect();
    let missing = write("no-such-flag, \"<script>\"".to_owned());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while app.state.store.queued_writes() < GROUP + 1 {
        assert!(std::time::Instant::now() < deadline, "the writes never queued");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // A waiting write holds no thread: the hundred add one committer, not a hundred threads.
    let waiting_threads = threads().saturating_sub(threads_before);
    assert!(
        waiting_threads <= 4,
        "{GROUP} waiting writes added {waiting_threads} threads"
    );
    release.send(()).unwrap();
    for w in writes {
        assert!(
            matches!(w.await.unwrap(), Ok(2)),
            "each write is acknowledged as version 2"
        );
    }
    let refused = missing.await.unwrap();
    actix_web::rt::task::spawn_blocking(move || holder.join().unwrap())
        .await
        .unwrap();
    assert!(
        matches!(refused, Err(store::StoreError::NotFound { .. })),
        "{refused:?}"
    );
    assert_eq!(
        app.state.store.publications() - publications_before,
        1,
        "{GROUP} writes queued behind one publication share the next one"
    );
    assert_eq!(app.state.store.queued_writes(), 0);

    // A write that panics is re-raised to its caller, in its task; the others are unharmed, and
    // the store keeps committing.
    let state = app.state.clone();
    let panicked = actix_web::rt::spawn(async move {
        state
            .write(|_tx| -> store::Result<((), Changes)> { panic!("a bug in one write, \"<script>\"") })
            .await
    })
    .await;
    assert!(
        panicked.is_err_and(|e| e.is_panic()),
        "the panic reaches its caller"
    );
    let flipped = app
        .state
        .write(set_enabled("f001".to_owned(), false))
        .await
        .unwrap();
    assert_eq!(flipped, 3);
    assert_eq!(app.state.store.publications() - publications_before, 2);
    assert!(app.state.snapshots.get(env).is_some());
}

#[test]
fn a_failed_publication_acknowledges_none_of_its_group_and_changes_nothing() {
    let app = TestApp::new();
    let env = project_with_flags(&app);
    let revision_before = app.state.snapshots.get(env).unwrap().revision;
    // Something in the way of the publication's temporary file and of the spare it may reuse
    // instead (the file the previous publication replaced): neither can be written.
    let staging = app.dir.path().join(".flagstaff.db.publishing");
    std::fs::create_dir(&staging).unwrap();
    let spare = app.dir.path().join("work/flagstaff.db.spare");
    let _ = std::fs::remove_file(&spare);
    std::fs::create_dir(&spare).unwrap();

    let holder = hold_writer_until_queued(&app.state, 10);
    let toggles: Vec<_> = (0..10).map(|i| toggle(&app.state, format!("f{i:03}"))).collect();
    holder.join().unwrap();
    for t in toggles {
        let answer = t.join().unwrap();
        assert!(answer.is_err(), "acknowledged without a publication: {answer:?}");
    }
    let enabled = |state: &AppState| -> i64 {
        state
            .store
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM flag_states WHERE json_extract(state, '$.enabled') = 1",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    };
    assert_eq!(enabled(&app.state), 0, "the group was rolled back");
    assert_eq!(app.state.snapshots.get(env).unwrap().revision, revision_before);

    // Once the way is clear, the next write goes through: a new file while the spare's place is
    // still taken, and the spare again after.
    std::fs::remove_dir(&staging).unwrap();
    assert_eq!(toggle(&app.state, "f000".into()).join().unwrap().unwrap(), 2);
    assert_eq!(enabled(&app.state), 1);
    std::fs::remove_dir(&spare).unwrap();
    for flag in ["f001", "f002", "f003"] {
        toggle(&app.state, flag.into()).join().unwrap().unwrap();
    }
    assert_eq!(enabled(&app.state), 4);
    assert!(spare.is_file());
}

// Bounded history: retention and compaction (DESIGN.md §5).

#[test]
fn the_upkeep_prunes_old_history_rolls_counts_into_days_and_the_file_shrinks() {
    let app = TestApp::with_settings(|s| {
        s.serve.audit_retention_days = 30;
        s.serve.insights_retention_days = 90;
    });
    let env = project_with_flags(&app);
    let now = flagstaff::store::now_ms();
    let day = 86_400_000i64;
    // 3,000 entries of a year ago, with before and after of a realistic size and hostile text,
    // and 10 of yesterday; 200 written before compression (text columns, as older versions did).
    let state_json = |i: usize| {
        serde_json::json!({"enabled": i.is_multiple_of(2), "version": i, "targets": [{"variation": "on",
            "values": (0..20).map(|j| format!("user-{i}-{j}, \"q\"\t<script>é")).collect::<Vec<_>>()}],
            "fallthrough": {"variation": "off"}})
    };
    app.state
        .write_blocking(move |tx| {
            let actor = flagstaff::store::audit::Actor::cli();
            for i in 0..3_010usize {
                let entity = flagstaff::store::audit::Entity {
                    kind: "flag_state",
                    key: Some("f000"),
                    project: Some("shop"),
                    environment: Some("production"),
                };
                let id = flagstaff::store::audit::record(
                    tx,
                    &actor,
                    "update",
                    entity,
                    Some(&state_json(i)),
                    Some(&state_json(i + 1)),
                )?;
                let at = if i < 3_000 { now - 365 * day } else { now - day };
                tx.execute("UPDATE audit_entries SET at = ?2 WHERE id = ?1", params![id, at])?;
                if i >= 2_810 {
                    tx.execute(
                        "UPDATE audit_entries SET change = NULL, before = ?2, after = ?3 WHERE id = ?1",
                        params![id, state_json(i).to_string(), state_json(i + 1).to_string()],
                    )?;
                }
            }
            Ok(((), Changes::default()))
        })
        .unwrap();
    let hour = |ms: i64| ms.div_euclid(3_600_000) * 3_600;
    let counts: Vec<usage::HourlyCount> = [
        (now - 100 * day, 5),             // older than the retention: deleted
        (now - 10 * day, 7),              // older than a week: rolled into its day…
        (now - 10 * day + 3_600_000, 11), // …with the next hour (unless it is the next day)
        (now - 3_600_000, 13),            // recent: kept per hour
    ]
    .into_iter()
    .map(|(at, count)| usage::HourlyCount {
        environment_id: env,
        flag_key: "f000".into(),
        variant: "on, \"yes\"".into(),
        hour: hour(at),
        count,
    })
    .collect();
    let gone = usage::HourlyCount {
        environment_id: env + 1_000,
        ..counts[3].clone()
    };
    let mut stored = counts.clone();
    stored.push(gone);
    // Enough old rows that deleting them frees whole pages.
    stored.extend((0..3_000).map(|i| usage::HourlyCount {
        flag_key: format!("old-flag-{i}, \"<b>\""),
        ..counts[0].clone()
    }));
    app.state
        .store
        .operational_blocking(move |tx| usage::add_counts(tx, &stored))
        .unwrap();
    let size = || {
        std::fs::metadata(app.dir.path().join("flagstaff.db"))
            .unwrap()
            .len()
    };
    let size_before = size();
    let publications = app.state.store.publications();

    let done = flagstaff::retention::run(&app.state, now).unwrap();
    assert_eq!(done.audit_deleted, 3_000);
    assert_eq!(done.audit_compacted, 10, "the recent uncompressed ones");
    assert!(done.published);
    assert!(
        size() * 2 < size_before,
        "flagstaff.db shrank: {size_before} → {}",
        size()
    );

    let (entries, history) = app
        .state
        .store
        .read_blocking(|c| {
            let entries: i64 = c.query_row(
                "SELECT count(*) FROM audit_log WHERE at < ?1 OR change IS NULL",
                [now - 30 * day],
                |r| r.get(0),
            )?;
            let history = flagstaff::store::audit::list(
                c,
                &flagstaff::store::audit::AuditQuery {
                    project: Some("shop"),
                    entity_kinds: &["flag_state"],
                    entity_key: Some("f000"),
                    before: None,
                    limit: 20,
                },
            )?;
            Ok((entries, history))
        })
        .unwrap();
    assert_eq!(
        entries, 0,
        "nothing older than the retention, nothing uncompressed"
    );
    assert_eq!(history.len(), 10);
    for entry in &history {
        let i = entry.before.as_ref().unwrap()["version"].as_u64().unwrap() as usize;
        assert_eq!(
            entry.before,
            Some(state_json(i)),
            "compacted entries read back whole"
        );
        assert_eq!(entry.after, Some(state_json(i + 1)));
    }

    let kept = app
        .state
        .store
        .read_blocking(move |c| usage::counts(c, env, None, 0))
        .unwrap();
    let rolled_day = (now - 10 * day).div_euclid(day) * day / 1000;
    let mut expected: Vec<(i64, i64)> = if hour(now - 10 * day + 3_600_000) < rolled_day + 86_400 {
        vec![(rolled_day, 18)]
    } else {
        vec![(rolled_day, 7), (rolled_day + 86_400, 11)]
    };
    expected.push((hour(now - 3_600_000), 13));
    assert_eq!(
        kept.iter().map(|c| (c.hour, c.count)).collect::<Vec<_>>(),
        expected
    );
    let orphans: i64 = app
        .state
        .store
        .read_blocking(move |c| {
            Ok(c.query_row(
                "SELECT count(*) FROM evaluation_counts WHERE environment_id != ?1",
                [env],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(orphans, 0, "counts of an environment that is gone are forgotten");
    let ops = Connection::open_with_flags(
        app.state.store.operational_path(),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let free: i64 = ops.query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap();
    assert_eq!(free, 0, "the operational database gave its free pages back");
    drop(ops);

    // With nothing left to do, the next upkeep writes nothing and publishes nothing.
    let publications_after = app.state.store.publications();
    assert!(publications_after > publications);
    assert_eq!(
        flagstaff::retention::run(&app.state, now).unwrap(),
        flagstaff::retention::Upkeep::default()
    );
    assert_eq!(app.state.store.publications(), publications_after);
}

#[test]
fn a_crash_between_a_publication_and_its_note_in_the_operational_database_keeps_both() {
    let app = TestApp::new();
    let user = app
        .state
        .write_blocking(|tx| {
            Ok((
                flagstaff::store::users::insert(tx, EMAIL, flagstaff::store::users::Role::Editor, "!")?.id,
                Changes::default(),
            ))
        })
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let new = app
        .state
        .store
        .operational_blocking(|tx| sessions::create(tx, user, 3_600_000))
        .unwrap();
    let ops_path = app.state.store.operational_path().to_owned();
    app.state
        .write_blocking(|tx| {
            Ok((
                flagstaff::store::users::insert(
                    tx,
                    "second@example.test",
                    flagstaff::store::users::Role::Viewer,
                    "!",
                )?,
                Changes::default(),
            ))
        })
        .unwrap();
    let TestApp { dir, state } = app;
    drop(state);
    // The state a kill -9 leaves between the two writes: flagstaff.db published and committed, the
    // operational database not yet told (it saw the publication before).
    let ops = Connection::open(&ops_path).unwrap();
    let seen: i64 = ops
        .query_row("SELECT seq FROM published_seen", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, publications(dir.path()));
    ops.execute("UPDATE published_seen SET seq = seq - 1", [])
        .unwrap();
    drop(ops);

    let state = AppState::open(Settings::with_data_dir(dir.path())).unwrap();
    let token = new.token.clone();
    let session = state
        .store
        .read_blocking(move |c| sessions::authenticate(c, &token, 3_600_000))
        .unwrap();
    assert!(session.is_some(), "the operational database was kept");
    let users: i64 = state
        .store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(users, 2, "the acknowledged change is there");
}
