//! The conformance corpus (eval/testdata/conformance.json) through the SDK's public API: a
//! client starts from each suite's bundle, served over a loopback socket as `GET
//! /sdk/v1/bundle`, and `Client::evaluate` must give every case's expected result.

use std::time::Duration;

use flagstaff_sdk::{Client, Evaluation};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CORPUS: &str = include_str!("../../../eval/testdata/conformance.json");

/// Serves `bundle` at every path (the client only asks for `/sdk/v1/bundle`: stream and events
/// are off) until the task is dropped; returns the base URL.
async fn serve_bundle(bundle: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let bundle = bundle.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"c1\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bundle.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&bundle).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, task)
}

fn actual(e: &Evaluation) -> Value {
    json!({
        "value": e.value,
        "variant": e.variant,
        "reason": e.reason.as_str(),
        "errorCode": e.error.map(|e| e.code()),
        "ruleId": e.rule_id,
        "prerequisite": e.prerequisite,
        "version": e.version,
    })
}

#[tokio::test]
async fn the_sdk_passes_every_case_of_the_conformance_corpus() {
    let corpus: Value = serde_json::from_str(CORPUS).expect("the corpus is JSON");
    let mut failures = Vec::new();
    let mut count = 0;
    for suite in corpus["suites"].as_array().expect("suites") {
        let name = suite["name"].as_str().expect("a suite name");
        let (url, server) = serve_bundle(serde_json::to_vec(&suite["bundle"]).expect("serialise")).await;
        let client = Client::builder(&url, "fs_srv_conformance")
            .stream(false)
            .send_events(false)
            .init_timeout(Duration::from_secs(10))
            .build()
            .await
            .unwrap_or_else(|e| panic!("suite {name}: {e}"));
        for case in suite["cases"].as_array().expect("cases") {
            count += 1;
            let flag = case["flag"].as_str().expect("a flag key");
            let ctx = flagstaff_sdk::context(case["context"].clone());
            let got = actual(&client.evaluate(flag, &ctx));
            for (field, expected) in case["expect"].as_object().expect("an expect object") {
                if got[field] != *expected {
                    failures.push(format!(
                        "{name} / {}: {field} is {} (expected {expected})",
                        case["name"], got[field]
                    ));
                }
            }
        }
        client.close().await;
        server.abort();
    }
    assert!(count >= 150, "only {count} cases");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
