//! "A backup is a copy of the database file" (DESIGN.md §5): plain copies taken while changes
//! pour in are consistent and hold every acknowledged change; `flagstaff backup` makes a checked
//! copy while the server runs; a restore is stop, replace the file, start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use flagstaff::AppState;
use flagstaff::config::Settings;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};

use super::{ENV, FLAGS, Flagstaff, PROJECT, Prepared, bundle, client, command, flag_key, patch_state};

const CHANGES: usize = 1000;

/// The production state of every flag in a bundle, by key.
fn states(bundle: &Value) -> std::collections::HashMap<String, Value> {
    bundle["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| {
            (
                f["key"].as_str().unwrap().to_owned(),
                f["environments"][ENV].clone(),
            )
        })
        .collect()
}

fn integrity(path: &Path) -> String {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open the copy");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// Change `i` sets flag `i % FLAGS`'s targets to `change-i`.
fn change(i: usize) -> Value {
    json!({"targets": [{"variation": "on", "values": [format!("change-{i}")]}]})
}

#[actix_web::test]
async fn plain_copies_taken_during_a_thousand_changes_are_consistent_and_hold_every_acknowledged_one() {
    let prepared = Prepared::new().await;
    let server = Flagstaff::start(prepared.dir.path(), &[]);
    let http = client();
    let before = bundle(&http, &server.url, &prepared.server_key).await;
    let base_revision = before["revision"].as_u64().expect("revision");
    let base_versions: Vec<u64> = (0..FLAGS)
        .map(|j| {
            states(&before)[&flag_key(j)]["version"]
                .as_u64()
                .expect("version")
        })
        .collect();

    // A person copying the file again and again, the way people do: `cp`, nothing else.
    let acked = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let copies_dir = tempfile::tempdir().unwrap();
    let copier = {
        let (acked, done) = (acked.clone(), done.clone());
        let source = prepared.dir.path().join("flagstaff.db");
        let into = copies_dir.path().to_owned();
        std::thread::spawn(move || {
            let mut copies: Vec<(PathBuf, usize)> = Vec::new();
            while !done.load(Ordering::SeqCst) {
                // Everything acknowledged before the copy begins must be in it.
                let before_copy = acked.load(Ordering::SeqCst);
                let dest = into.join(format!("{:04}.db", copies.len()));
                let out = Command::new("cp")
                    .arg(&source)
                    .arg(&dest)
                    .output()
                    .expect("run cp");
                let stderr = String::from_utf8_lossy(&out.stderr);
                // GNU cp refuses (and copies nothing) when a publication renames a new file in
                // between its look at the name and its open: a refusal, never a torn copy. People
                // run it again; so does this copier.
                if !out.status.success() && stderr.contains("replaced while being copied") {
                    continue;
                }
                assert!(out.status.success(), "cp failed: {stderr}");
                copies.push((dest, before_copy));
                std::thread::sleep(Duration::from_millis(25));
            }
            copies
        })
    };

    for i in 0..CHANGES {
        let (status, body) = patch_state(&http, &server.url, &prepared.token, &flag_key(i), &change(i)).await;
        assert_eq!(status, 200, "change {i}: {body}");
        acked.store(i + 1, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    let copies = copier.join().expect("the copier");
    let during = copies.iter().filter(|(_, k)| *k > 0 && *k < CHANGES).count();
    assert!(
        during >= 20,
        "only {during} copies were taken during the changes: the race was not exercised"
    );

    for (n, (copy, k)) in copies.iter().enumerate() {
        assert_eq!(integrity(copy), "ok", "copy {n} (after {k} acknowledged changes)");
        // The copy, started as a data dir of its own.
        let data_dir = copies_dir.path().join(format!("dir-{n}"));
        std::fs::create_dir(&data_dir).unwrap();
        std::fs::rename(copy, data_dir.join("flagstaff.db")).unwrap();
        let state = AppState::open(Settings::with_data_dir(&data_dir))
            .unwrap_or_else(|e| panic!("copy {n} (after {k} changes) does not start: {e}"));
        let snapshot = state
            .snapshots
            .find(PROJECT, ENV)
            .expect("the environment's snapshot");
        assert!(
            snapshot.revision >= base_revision + *k as u64,
            "copy {n}: revision {} but {k} changes were acknowledged after revision {base_revision}",
            snapshot.revision
        );
        let bundle: Value = serde_json::from_slice(&snapshot.bundle).unwrap();
        let got = states(&bundle);
        for j in 0..FLAGS {
            // Changes j, j + FLAGS, j + 2·FLAGS … touched flag j; those below k were acknowledged.
            let count = if *k > j { (*k - 1 - j) / FLAGS + 1 } else { 0 };
            let state = &got[&flag_key(j)];
            let version = state["version"].as_u64().unwrap();
            let expected = base_versions[j] + count as u64;
            assert!(
                version >= expected,
                "copy {n}, flag {j}: version {version} < {expected} after {k} acknowledged changes"
            );
            if version == expected && count > 0 {
                let last = format!("change-{}", j + FLAGS * (count - 1));
                assert_eq!(
                    state["targets"][0]["values"][0],
                    json!(last),
                    "copy {n}, flag {j}"
                );
            }
        }
        drop(snapshot);
        drop(state);
        std::fs::remove_dir_all(&data_dir).unwrap();
    }
}

#[actix_web::test]
async fn flagstaff_backup_while_running_then_restore_by_replacing_the_file() {
    let prepared = Prepared::new().await;
    let data = prepared.dir.path();
    let mut server = Flagstaff::start(data, &[]);
    let http = client();
    let off = json!({"enabled": false});
    assert_eq!(
        patch_state(&http, &server.url, &prepared.token, "f00", &off)
            .await
            .0,
        200
    );

    let out_dir = tempfile::tempdir().unwrap();
    let backup = out_dir.path().join("backup.db");
    let out = command(data)
        .args(["backup", backup.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(integrity(&backup), "ok");
    // `flagstaff backup -` writes the same database to standard output.
    let out = command(data).args(["backup", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let streamed = out_dir.path().join("streamed.db");
    std::fs::write(&streamed, &out.stdout).unwrap();
    assert_eq!(integrity(&streamed), "ok");
    assert_eq!(out.stdout, std::fs::read(&backup).unwrap());

    // A change after the backup…
    assert_eq!(
        patch_state(&http, &server.url, &prepared.token, "f01", &off)
            .await
            .0,
        200
    );
    let (status, _) = server.terminate();
    assert!(status.success());
    // The stop wrote the token's last use to the operational database (never published).
    let last_uses = || -> i64 {
        let ops = Connection::open_with_flags(
            data.join("work").join("flagstaff.operational.db"),
            OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        ops.query_row("SELECT count(*) FROM token_last_used", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(last_uses(), 1);

    // …is gone after a restore: stop, replace the file, start.
    std::fs::copy(&backup, data.join("flagstaff.db")).unwrap();
    // (No flush during the test: what the operational database holds is what the start left.)
    let server = Flagstaff::start(data, &[("FLAGSTAFF_EVENTS_FLUSH_SECS", "3600")]);
    let ready = http.get(format!("{}/readyz", server.url)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let got = states(&bundle(&http, &server.url, &prepared.server_key).await);
    assert_eq!(
        got["f00"]["enabled"],
        json!(false),
        "the change made before the backup is there"
    );
    assert_eq!(
        got["f01"]["enabled"],
        json!(true),
        "the change made after the backup is not"
    );
    let api = http
        .get(format!(
            "{}/api/v1/projects/{PROJECT}/flags/f01/environments/{ENV}",
            server.url
        ))
        .bearer_auth(&prepared.token)
        .send()
        .await
        .unwrap();
    let api: Value = api.json().await.unwrap();
    assert_eq!(api["enabled"], json!(true), "{api}");
    // A restore from flagstaff.db alone starts the operational database empty.
    assert_eq!(
        last_uses(),
        0,
        "the operational database of the later history is gone"
    );
}

#[test]
fn a_backup_of_a_data_dir_without_a_database_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out = command(&missing)
        .args(["backup", dir.path().join("b.db").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing-here"), "{stderr}");
    assert!(!dir.path().join("b.db").exists());
}
