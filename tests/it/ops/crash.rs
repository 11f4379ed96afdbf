//! Crash safety: `kill -9` in the middle of a burst of writes loses no change that was answered
//! with 2xx, and after the restart the revision and the bundle agree with the stored data. SDKs
//! report evaluations meanwhile (the operational database is written beside the publications):
//! the kill lands between the two databases' writes as it may, and the restart keeps the
//! operational database with everything it had committed.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};

use super::{ENV, FLAGS, Flagstaff, PROJECT, Prepared, bundle, client, flag_key, patch_state};

const WRITERS: usize = 8;

#[actix_web::test]
async fn after_kill_9_during_a_burst_every_acknowledged_change_is_there_and_the_bundle_agrees() {
    let prepared = Prepared::new().await;
    let mut server = Flagstaff::start(prepared.dir.path(), &[("FLAGSTAFF_EVENTS_FLUSH_SECS", "1")]);
    let http = client();

    // An SDK reporting evaluations throughout.
    let reporter = {
        let (http, url, key) = (http.clone(), server.url.clone(), prepared.server_key.clone());
        actix_web::rt::spawn(async move {
            loop {
                let now = flagstaff::store::now_ms();
                let batch = json!({"start": now - 1_000, "end": now,
                    "counts": [{"flag": flag_key(0), "variant": "on", "count": 1}]});
                match http
                    .post(format!("{url}/sdk/v1/events"))
                    .bearer_auth(&key)
                    .json(&batch)
                    .send()
                    .await
                {
                    Ok(res) => assert_eq!(res.status(), 202),
                    Err(_) => return,
                }
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let operational = prepared.dir.path().join("work").join("flagstaff.operational.db");
    let counted = || -> i64 {
        let ops = Connection::open_with_flags(&operational, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        ops.query_row("SELECT coalesce(sum(count), 0) FROM evaluation_counts", [], |r| {
            r.get(0)
        })
        .unwrap()
    };

    // flag → (version, value) of the last change answered with 2xx.
    let acked: Rc<RefCell<HashMap<String, (u64, String)>>> = Rc::default();
    let answered: Rc<Cell<usize>> = Rc::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (http, url, token) = (http.clone(), server.url.clone(), prepared.token.clone());
        let (acked, answered) = (acked.clone(), answered.clone());
        writers.push(actix_web::rt::spawn(async move {
            let mut n = 0;
            loop {
                // Each writer has its own flags, so its acknowledged versions only grow.
                let flag = flag_key(w + WRITERS * (n % (FLAGS / WRITERS)));
                let value = format!("w{w}-n{n}");
                let body = json!({"targets": [{"variation": "on", "values": [value]}]});
                let (status, reply) = patch_state(&http, &url, &token, &flag, &body).await;
                match status {
                    200 => {
                        let version = reply["version"].as_u64().expect("the new version");
                        acked.borrow_mut().insert(flag, (version, value));
                        answered.set(answered.get() + 1);
                    }
                    // The server is gone: the writer stops.
                    0 => return,
                    other => panic!("writer {w}: unexpected {other}: {reply}"),
                }
                n += 1;
            }
        }));
    }

    // Let the burst run, then pull the plug in the middle of it.
    let until = Instant::now() + Duration::from_secs(60);
    while answered.get() < 150 {
        assert!(Instant::now() < until, "the burst did not get going");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    while counted() == 0 {
        assert!(Instant::now() < until, "no evaluation counts were written");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let counted_before = counted();
    server.kill9();
    for writer in writers {
        writer.await.expect("writer");
    }
    reporter.await.expect("reporter");
    let acked = acked.borrow().clone();

    let server = Flagstaff::start(prepared.dir.path(), &[]);
    assert!(
        counted() >= counted_before,
        "the operational database kept its committed counts: {} < {counted_before}",
        counted()
    );
    let stored: HashMap<String, Value> = {
        let mut out = HashMap::new();
        for j in 0..FLAGS {
            let key = flag_key(j);
            let res = http
                .get(format!(
                    "{}/api/v1/projects/{PROJECT}/flags/{key}/environments/{ENV}",
                    server.url
                ))
                .bearer_auth(&prepared.token)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            out.insert(key, res.json().await.unwrap());
        }
        out
    };
    for (flag, (version, value)) in &acked {
        let state = &stored[flag];
        let now = state["version"].as_u64().unwrap();
        assert!(
            now >= *version,
            "{flag}: version {version} was acknowledged, {now} is stored"
        );
        if now == *version {
            assert_eq!(state["targets"][0]["values"][0], json!(value), "{flag}");
        }
    }

    // The bundle and its revision agree with what is stored.
    let bundle = bundle(&http, &server.url, &prepared.server_key).await;
    let db = Connection::open_with_flags(
        prepared.dir.path().join("flagstaff.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let revision: i64 = db
        .query_row("SELECT revision FROM environments WHERE key = ?1", [ENV], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(bundle["revision"].as_i64(), Some(revision));
    let flags = bundle["flags"].as_array().unwrap();
    assert_eq!(flags.len(), FLAGS);
    for flag in flags {
        let key = flag["key"].as_str().unwrap();
        let served = &flag["environments"][ENV];
        let state = &stored[key];
        for field in [
            "version",
            "enabled",
            "targets",
            "rules",
            "fallthrough",
            "off_variation",
        ] {
            assert_eq!(
                served[field], state[field],
                "{key}.{field}: bundle {served} vs stored {state}"
            );
        }
    }
}
