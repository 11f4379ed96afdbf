//! Client benchmarks; figures in BENCHMARKS.md ("Rust SDK").
//!
//! `cargo bench -p flagstaff-sdk --bench client`
//!
//! Reads through a real [`Client`] (snapshot load, evaluation, counting), and the memory a
//! client holding 1,000 flags keeps. The client gets its bundle over HTTP from a loopback
//! socket that answers every request with the bundle, with streaming, polling and events off.

use std::alloc::System;
use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use flagstaff_sdk::{Client, Context};
use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn boolean(key: &str, state: Value) -> Value {
    json!({"key": key, "type": "boolean",
           "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
           "environments": {"production": state}})
}

fn clause(attribute: &str, op: &str, values: Value) -> Value {
    json!({"attribute": attribute, "op": op, "values": values})
}

/// A flag with five rules of three clauses; only the fifth matches the benchmark's context.
fn five_rules(key: &str) -> Value {
    let rules: Vec<Value> = (0..5)
        .map(|r| {
            let domain = if r == 4 { "@acme.com" } else { "@nowhere.test" };
            json!({"id": format!("rule-{r}"), "clauses": [
                clause("email", "ends_with", json!([domain])),
                clause("country", "in", json!(["de", "fr", "it"])),
                clause("seats", "gte", json!([10]))],
              "serve": {"variation": "on"}})
        })
        .collect();
    boolean(
        key,
        json!({"enabled": true, "rules": rules, "fallthrough": {"variation": "off"}}),
    )
}

/// A bundle of `n` flags shaped like a real environment: on/off flags (40%), targets and two
/// rules (20%), three-way rollouts (20%), segment rules behind a prerequisite (10%), configs
/// chosen by a semver rule (10%); five segments of 200 keys and a regex rule each.
fn bundle(n: usize) -> Vec<u8> {
    let mut flags = vec![
        five_rules("checkout"),
        boolean(
            "simple",
            json!({"enabled": true, "fallthrough": {"variation": "on"}}),
        ),
    ];
    for i in 0..n - flags.len() {
        let key = format!("flag-{i:04}");
        flags.push(match i % 10 {
            0..=3 => boolean(&key, json!({"enabled": i % 3 != 0, "fallthrough": {"variation": "on"}})),
            4 | 5 => boolean(&key, json!({"enabled": true,
                "targets": [{"variation": "on", "values": (0..20).map(|k| format!("user-{k}")).collect::<Vec<_>>()}],
                "rules": [
                    {"id": "staff", "clauses": [clause("email", "ends_with", json!(["@acme.com"])),
                                                clause("country", "in", json!(["fr", "de"]))], "serve": {"variation": "on"}},
                    {"id": "big", "clauses": [clause("seats", "gte", json!([100]))], "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}})),
            6 | 7 => json!({"key": key, "type": "string",
                "variations": [{"key": "control", "value": "control"}, {"key": "a", "value": "A"}, {"key": "b", "value": "B"}],
                "environments": {"production": {"enabled": true, "fallthrough": {"rollout": {"variations": [
                    {"variation": "control", "weight": 50000}, {"variation": "a", "weight": 25000},
                    {"variation": "b", "weight": 25000}]}}}}}),
            8 => boolean(&key, json!({"enabled": true,
                "prerequisites": [{"flag": format!("flag-{:04}", i - 8), "variations": ["on"]}],
                "rules": [{"id": "beta", "clauses": [{"op": "in_segment", "values": [format!("segment-{}", i % 5)]}],
                           "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}})),
            _ => json!({"key": key, "type": "json", "kind": "config",
                "variations": [{"key": "v1", "value": {"limit": 10, "theme": "light"}},
                               {"key": "v2", "value": {"limit": 50, "theme": "dark"}}],
                "environments": {"production": {"enabled": true,
                    "rules": [{"id": "new-apps", "clauses": [clause("app_version", "semver_gte", json!(["2.0.0"]))],
                               "serve": {"variation": "v2"}}],
                    "fallthrough": {"variation": "v1"}}}}),
        });
    }
    let segments: Vec<Value> = (0..5)
        .map(|s| {
            json!({"key": format!("segment-{s}"), "name": format!("Segment {s}"),
                   "included": (0..200).map(|k| format!("member-{s}-{k}")).collect::<Vec<_>>(),
                   "rules": [{"clauses": [clause("email", "matches", json!([format!("^team{s}-.*@acme\\.com$")]))]}]})
        })
        .collect();
    serde_json::to_vec(
        &json!({"flagstaff": 1, "project": {"key": "bench", "name": "Bench"}, "environment": "production",
                               "revision": 1, "segments": segments, "flags": flags}),
    )
    .expect("JSON")
}

/// Answers every HTTP request on a loopback port with `body` as the bundle; returns the URL.
async fn serve(body: Vec<u8>) -> String {
    let body = std::sync::Arc::new(body);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = std::sync::Arc::clone(&body);
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
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"bench\"\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    url
}

async fn client(url: &str) -> Client {
    Client::builder(url, "fs_srv_bench")
        .stream(false)
        .poll_interval(Duration::from_secs(24 * 3600))
        .send_events(false)
        .build()
        .await
        .expect("client")
}

fn context() -> Context {
    flagstaff_sdk::context(
        json!({"targetingKey": "user-4242", "email": "ada@acme.com", "country": "fr", "seats": 12}),
    )
}

/// Live bytes a client holding `flags` flags keeps, once built and the download dropped.
fn memory(runtime: &tokio::runtime::Runtime, flags: usize) {
    let body = bundle(flags);
    let size = body.len();
    let url = runtime.block_on(serve(body));
    // One client first, so that lazily initialised statics (TLS roots, thread locals) are not
    // counted as the client's; closed, so that its memory is freed before measuring.
    let warm_up = runtime.block_on(client(&url));
    runtime.block_on(warm_up.close());
    drop(warm_up);
    let region = Region::new(GLOBAL);
    let client = runtime.block_on(async {
        let client = client(&url).await;
        // Let the loopback server's connection task finish and free its buffers.
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
    });
    let change = region.change();
    let live = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
    println!(
        "memory: a client holding {} flags keeps {:.2} MiB ({live} bytes; the bundle is {:.2} MiB of JSON)",
        client.status().flags,
        live as f64 / (1024.0 * 1024.0),
        size as f64 / (1024.0 * 1024.0),
    );
    drop(client);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    memory(&runtime, 2);
    memory(&runtime, 1000);

    let url = runtime.block_on(serve(bundle(1000)));
    let client = runtime.block_on(client(&url));
    let ctx = context();
    assert!(
        client.bool_value("checkout", &ctx, false),
        "the fifth rule matches"
    );
    assert!(client.bool_value("simple", &ctx, false));

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("client");
    group.bench_function("bool_value/5_rules_3_clauses", |b| {
        b.iter(|| client.bool_value(black_box("checkout"), black_box(&ctx), false));
    });
    group.bench_function("bool_value/no_rules", |b| {
        b.iter(|| client.bool_value(black_box("simple"), black_box(&ctx), false));
    });
    group.bench_function("string_value/rollout", |b| {
        b.iter(|| client.string_value(black_box("flag-0006"), black_box(&ctx), "control"));
    });
    group.bench_function("evaluate/5_rules_3_clauses", |b| {
        b.iter(|| client.evaluate(black_box("checkout"), black_box(&ctx)));
    });
    group.finish();
    c.final_summary();
}
