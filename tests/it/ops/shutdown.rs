//! Graceful shutdown on SIGTERM: every SSE stream ends cleanly (so SDKs reconnect elsewhere), a
//! request in flight is finished, pending evaluation counts are written, the database is
//! checkpointed, and the process exits 0 — within five seconds with thousands of open streams.

use std::time::{Duration, Instant};

use actix_web::rt::net::TcpStream;
use futures_util::future::join_all;
use rusqlite::{Connection, OpenFlags};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{Flagstaff, PROJECT, Prepared, client, document};

/// Open streams while the server is told to stop. The machine allows 20,000 open files per
/// process; each side needs one per stream.
const STREAMS: usize = 2000;
/// The bound the issue sets on the whole shutdown.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);
/// A hang guard for reads in this test.
const READ_GUARD: Duration = Duration::from_secs(20);

/// Opens an SDK stream and reads until its first event (the current revision) arrived.
async fn open_stream(addr: &str, key: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /sdk/v1/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 2048];
    while !contains(&seen, b"\nid:") {
        let n = tokio::time::timeout(READ_GUARD, s.read(&mut chunk))
            .await
            .expect("first event")
            .unwrap();
        assert!(
            n > 0,
            "the stream closed before its first event: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    (s, seen)
}

/// Reads what is left until the server closes the connection.
async fn read_to_end(mut s: TcpStream, mut seen: Vec<u8>) -> Vec<u8> {
    tokio::time::timeout(READ_GUARD, s.read_to_end(&mut seen))
        .await
        .expect("the stream ends")
        .unwrap();
    seen
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[actix_web::test]
async fn sigterm_ends_two_thousand_streams_finishes_requests_keeps_counts_and_exits_within_five_seconds() {
    let prepared = Prepared::new().await;
    let data = prepared.dir.path();
    // Counts are written only by the shutdown's flush.
    let mut server = Flagstaff::start(data, &[("FLAGSTAFF_EVENTS_FLUSH_SECS", "3600")]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let http = client();

    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS / 100 {
        streams.extend(join_all((0..100).map(|_| open_stream(&addr, &prepared.server_key))).await);
    }
    let metrics = http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("flagstaff_open_streams "))
        .and_then(|v| v.parse().ok())
        .expect("the open-streams gauge");
    assert!(open >= STREAMS, "{open} streams open by the metrics");

    // Evaluation counts an SDK reported, waiting for a flush.
    let now = flagstaff::store::now_ms();
    let events = http
        .post(format!("{}/sdk/v1/events", server.url))
        .bearer_auth(&prepared.server_key)
        .json(&json!({"start": now - 1000, "end": now, "counts": [{"flag": "f00", "variant": "on", "count": 7}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 202);

    // A request in flight: half of an import's body is sent before the signal, half after.
    let mut doc = document();
    doc["flags"].as_array_mut().unwrap().push(json!({
        "key": "late-flag", "name": "Late", "kind": "flag", "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]
    }));
    let body = serde_json::to_vec(&doc).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut import = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/import HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        prepared.token,
        body.len()
    );
    import.write_all(head.as_bytes()).await.unwrap();
    import.write_all(first).await.unwrap();
    import.flush().await.unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;

    let signalled = Instant::now();
    server.signal("TERM");
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    import.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(READ_GUARD, import.read_to_end(&mut answer))
        .await
        .expect("the import is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the request in flight was finished: {answer}"
    );

    // Every stream ends with the chunked body's last chunk: a clean end, not a reset.
    let ended = join_all(streams.into_iter().map(|(s, seen)| read_to_end(s, seen))).await;
    let clean = ended.iter().filter(|b| b.ends_with(b"0\r\n\r\n")).count();
    assert_eq!(clean, STREAMS, "streams that ended cleanly");

    let status = server.wait(Duration::from_secs(30)).expect("flagstaff exits");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}: {:#?}", server.logs());
    assert!(
        took < SHUTDOWN_BOUND,
        "the shutdown took {took:?} with {STREAMS} streams"
    );
    let stopping = server.wait_for_log(|l| {
        l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutting down"))
    });
    assert!(
        stopping["fields"]["open_streams"].as_u64().unwrap() >= STREAMS as u64,
        "{stopping}"
    );
    server.wait_for_log(|l| l["fields"]["message"] == "stopped");

    // What the shutdown wrote is in the operational database (counts) and in flagstaff.db
    // (changes), and the live database's WAL is folded in.
    let db =
        Connection::open_with_flags(data.join("flagstaff.db"), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let ops = Connection::open_with_flags(
        data.join("work").join("flagstaff.operational.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let counted: i64 = ops
        .query_row(
            "SELECT coalesce(sum(count), 0) FROM evaluation_counts WHERE flag_key = 'f00' AND variant = 'on'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(counted, 7, "pending evaluation counts were written");
    let late: i64 = db
        .query_row(
            "SELECT count(*) FROM flags f JOIN projects p ON p.id = f.project_id WHERE p.key = ?1 AND f.key = 'late-flag'",
            [PROJECT],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(late, 1, "the import finished during the shutdown is kept");
    let wal = data.join("work").join("flagstaff.db-wal");
    assert_eq!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        0,
        "the WAL was checkpointed"
    );
}
