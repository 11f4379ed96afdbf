//! `/healthz`, `/readyz` and `/metrics` through the real application; the request id every
//! answer carries.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use flagstaff::store::users::Role;
use futures_util::StreamExt as _;
use serde_json::json;

use super::{ENV, PROJECT, document};
use crate::helpers::{RealServer, TestApp};

/// The samples of a Prometheus text exposition, by series (`name{labels}`), checking the format
/// on the way: every family has `# HELP` and `# TYPE`, every sample is `series value`.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no # TYPE line");
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let reply = app.call("GET", "/metrics", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&String::from_utf8(reply.bytes).unwrap())
}

fn get(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[actix_web::test]
async fn health_readiness_and_the_shutdown_drain() {
    let app = TestApp::new();
    let token = app.token(Role::Admin);
    let imported = app
        .call("POST", "/api/v1/import", Some(&token), Some(document()))
        .await;
    assert!(imported.status.is_success());

    let live = app.call("GET", "/healthz", None, None).await;
    assert_eq!(
        (live.status, live.bytes.as_slice()),
        (StatusCode::OK, b"ok".as_slice())
    );
    let ready = app.call("GET", "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body, json!({"status": "ready", "environments": 1}));
    assert_eq!(ready.header("cache-control"), Some("no-store"));

    // A shutdown begins: not ready any more (a load balancer drains us), still alive.
    app.state.hub.close();
    let ready = app.call("GET", "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["status"], "shutting_down");
    assert_eq!(
        app.call("GET", "/healthz", None, None).await.status,
        StatusCode::OK
    );
}

#[actix_web::test]
async fn metrics_count_requests_durations_evaluations_writes_and_rebuilds() {
    let app = TestApp::new();
    let token = app.token(Role::Admin);
    let imported = app
        .call("POST", "/api/v1/import", Some(&token), Some(document()))
        .await;
    assert!(imported.status.is_success());
    let keys = format!("/api/v1/projects/{PROJECT}/environments/{ENV}/keys");
    let client = app
        .call(
            "POST",
            &keys,
            Some(&token),
            Some(json!({"kind": "client", "name": "m"})),
        )
        .await;
    let client_key = client.body["key"].as_str().unwrap().to_owned();
    let server = app
        .call(
            "POST",
            &keys,
            Some(&token),
            Some(json!({"kind": "server", "name": "m"})),
        )
        .await;
    let server_key = server.body["key"].as_str().unwrap().to_owned();

    // Counters are process-wide: compare before and after.
    let before = scrape(&app).await;
    let state_path = format!("/api/v1/projects/{PROJECT}/flags/f01/environments/{ENV}");
    let patched = app
        .call(
            "PATCH",
            &state_path,
            Some(&token),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(
        app.call("GET", "/no/such/page", None, None).await.status,
        StatusCode::NOT_FOUND
    );
    let evaluated = app
        .call(
            "POST",
            "/ofrep/v1/evaluate/flags/f02",
            Some(&client_key),
            Some(json!({"context": {"targetingKey": "u"}})),
        )
        .await;
    assert_eq!(evaluated.status, StatusCode::OK, "{}", evaluated.body);
    let now = flagstaff::store::now_ms();
    let reported = app
        .call(
            "POST",
            "/sdk/v1/events",
            Some(&server_key),
            Some(json!({"start": now - 10, "end": now, "counts": [{"flag": "f03", "variant": "on", "count": 5}]})),
        )
        .await;
    assert_eq!(reported.status, StatusCode::ACCEPTED, "{}", reported.body);
    let after = scrape(&app).await;

    let delta = |series: &str| get(&after, series) - get(&before, series);
    let patch_route = "/api/v1/projects/{project}/flags/{flag}/environments/{env}";
    assert_eq!(
        delta(&format!(
            "flagstaff_http_requests_total{{route=\"{patch_route}\",method=\"PATCH\",status=\"200\"}}"
        )),
        1.0
    );
    assert_eq!(
        delta("flagstaff_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        delta(&format!(
            "flagstaff_http_request_duration_seconds_count{{route=\"{patch_route}\"}}"
        )),
        1.0
    );
    assert_eq!(
        delta(&format!(
            "flagstaff_http_request_duration_seconds_bucket{{route=\"{patch_route}\",le=\"+Inf\"}}"
        )),
        1.0
    );
    assert!(
        delta(&format!(
            "flagstaff_http_request_duration_seconds_sum{{route=\"{patch_route}\"}}"
        )) > 0.0
    );
    assert_eq!(delta("flagstaff_evaluations_total{source=\"server\"}"), 1.0);
    assert_eq!(delta("flagstaff_evaluations_total{source=\"sdk\"}"), 5.0);
    assert!(delta("flagstaff_database_write_seconds_count") >= 1.0);
    assert!(delta("flagstaff_database_publish_seconds_count") >= 1.0);
    assert!(delta("flagstaff_snapshot_rebuild_seconds_count") >= 1.0);
    assert_eq!(get(&after, "flagstaff_environments"), 1.0);
    let size = std::fs::metadata(app.dir.path().join("flagstaff.db"))
        .unwrap()
        .len() as f64;
    assert_eq!(get(&after, "flagstaff_database_bytes"), size);

    // Every answer carries a request id, a new one each time.
    let a = app.call("GET", "/healthz", None, None).await;
    let b = app.call("GET", "/healthz", None, None).await;
    let (a, b) = (
        a.header("x-request-id").unwrap().to_owned(),
        b.header("x-request-id").unwrap().to_owned(),
    );
    assert_eq!(a.len(), 36, "{a}");
    assert_ne!(a, b);
}

#[actix_web::test]
async fn the_open_streams_gauge_follows_the_sse_connections() {
    let app = TestApp::new();
    let token = app.token(Role::Admin);
    assert!(
        app.call("POST", "/api/v1/import", Some(&token), Some(document()))
            .await
            .status
            .is_success()
    );
    let keys = format!("/api/v1/projects/{PROJECT}/environments/{ENV}/keys");
    let server = app
        .call(
            "POST",
            &keys,
            Some(&token),
            Some(json!({"kind": "server", "name": "m"})),
        )
        .await;
    let key = server.body["key"].as_str().unwrap().to_owned();
    let real = RealServer::start(&app.state);
    let http = super::client();
    let gauge = |text: String| parse(&text)["flagstaff_open_streams"];
    let metrics = format!("{}/metrics", real.url);

    let idle = gauge(http.get(&metrics).send().await.unwrap().text().await.unwrap());
    assert_eq!(idle, 0.0);
    let stream = http
        .get(format!("{}/sdk/v1/stream", real.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("id:") {
        seen.extend_from_slice(&body.next().await.expect("the first event").unwrap());
    }
    assert_eq!(
        gauge(http.get(&metrics).send().await.unwrap().text().await.unwrap()),
        1.0
    );
    real.stop().await;
}
