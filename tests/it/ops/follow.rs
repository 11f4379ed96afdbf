//! A running server follows changes that another process makes to its database: an import
//! from the command line reaches the bundle and an open stream without a restart.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::json;

use super::{ENV, Flagstaff, PROJECT, Prepared, bundle, client, command, document};

/// How long the server may take to notice (a hang guard: it checks every second).
const GUARD: Duration = Duration::from_secs(20);

#[actix_web::test]
async fn an_import_from_the_command_line_reaches_a_running_server() {
    let prepared = Prepared::new().await;
    let data = prepared.dir.path();
    let mut server = Flagstaff::start(data, &[]);
    let http = client();
    let before = bundle(&http, &server.url, &prepared.server_key).await;
    let revision = before["revision"].as_u64().expect("revision");

    let stream = http
        .get(format!("{}/sdk/v1/stream", server.url))
        .bearer_auth(&prepared.server_key)
        .header("Last-Event-ID", revision.to_string())
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    let mut events = stream.bytes_stream();

    let mut doc = document();
    doc["flags"].as_array_mut().unwrap().push(json!({
        "key": "from-the-cli", "name": "From the CLI", "kind": "flag", "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {ENV: {"enabled": true, "fallthrough": {"variation": "on"}}}
    }));
    let file = data.join("import.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = command(data)
        .arg("import")
        .arg(&file)
        .output()
        .expect("flagstaff import");
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The stream announces the new revision...
    let started = Instant::now();
    let mut seen = String::new();
    while !seen.contains("from-the-cli") {
        let chunk = tokio::time::timeout(GUARD, events.next())
            .await
            .expect("the stream announces the import")
            .expect("the stream stays open")
            .expect("stream bytes");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(started.elapsed() < GUARD);

    // ...and the bundle serves it.
    let after = bundle(&http, &server.url, &prepared.server_key).await;
    assert!(after["revision"].as_u64().unwrap() > revision);
    let flag = after["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "from-the-cli")
        .expect("the imported flag is served");
    assert_eq!(flag["environments"][ENV]["enabled"], true);
    assert_eq!(after["project"]["key"], PROJECT);
    server.terminate();
}
