//! Backend SDK delivery: server keys, the bundle (ETag, 304, gzip), the SSE stream (over a
//! real socket, read by a real SSE client), and evaluation counts.

use std::io::Read as _;
use std::time::Duration;

use eventsource_client::{Client as _, ClientBuilder, ReconnectOptions, SSE};
use flagstaff::store::usage;
use flagstaff::store::users::Role;
use flagstaff_eval::model::Bundle;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use serde_json::{Value, json};

use crate::helpers::{RealServer, TestApp};

/// One environment of the test project, with a server and a client key.
struct Env {
    id: i64,
    name: &'static str,
    server: String,
    server_id: i64,
    client: String,
}

/// Project `shop` with `staging` and `production`, two flags, and an admin token; made through
/// the management API.
struct Shop {
    admin: String,
    production: Env,
    staging: Env,
}

async fn shop(app: &TestApp) -> Shop {
    let admin = app.token(Role::Admin);
    let document = json!({
        "flagstaff": 1,
        "project": {"key": "shop", "name": "Shop"},
        "environments": [{"key": "staging", "name": "Staging"}, {"key": "production", "name": "Production"}],
        "segments": [{"key": "beta", "name": "Beta", "included": ["u-1"]}],
        "flags": [
            {"key": "new-checkout", "name": "New checkout", "kind": "flag", "type": "boolean",
             "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
             // Production serves `on` to a customer list: rules a client key must never see.
             "environments": {"production": {"enabled": true, "off_variation": "off",
                "rules": [{"id": "vip", "clauses": [{"attribute": "customer", "op": "in", "values": ["c-secret-1"]}],
                           "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}}}},
            {"key": "banner-text", "name": "Banner", "kind": "config", "type": "string",
             "variations": [{"key": "a", "value": "Hello"}, {"key": "b", "value": "Hi"}]}
        ]
    });
    let imported = app
        .call("POST", "/api/v1/import", Some(&admin), Some(document))
        .await;
    assert!(imported.status.is_success(), "import: {:?}", imported.body);
    let mut envs = Vec::new();
    for name in ["staging", "production"] {
        let keys = format!("/api/v1/projects/shop/environments/{name}/keys");
        let server = app
            .call(
                "POST",
                &keys,
                Some(&admin),
                Some(json!({"kind": "server", "name": "backend"})),
            )
            .await;
        assert_eq!(server.status, 201, "{:?}", server.body);
        let client = app
            .call(
                "POST",
                &keys,
                Some(&admin),
                Some(json!({"kind": "client", "name": "web"})),
            )
            .await;
        assert_eq!(client.status, 201, "{:?}", client.body);
        envs.push(Env {
            id: app
                .state
                .snapshots
                .find("shop", name)
                .expect("the environment is served")
                .environment_id,
            name,
            server: server.body["key"].as_str().unwrap().to_owned(),
            server_id: server.body["id"].as_i64().unwrap(),
            client: client.body["key"].as_str().unwrap().to_owned(),
        });
    }
    let production = envs.pop().unwrap();
    let staging = envs.pop().unwrap();
    Shop {
        admin,
        production,
        staging,
    }
}

/// Turns a flag on or off in one environment through the management API.
async fn toggle(app: &TestApp, shop: &Shop, env: &Env, flag: &str, enabled: bool) {
    let path = format!("/api/v1/projects/shop/flags/{flag}/environments/{}", env.name);
    let patched = app
        .call(
            "PATCH",
            &path,
            Some(&shop.admin),
            Some(json!({"enabled": enabled})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(patched.body["enabled"], enabled);
}

/// Revokes an environment's server key through the management API.
async fn revoke(app: &TestApp, shop: &Shop, env: &Env) {
    let path = format!(
        "/api/v1/projects/shop/environments/{}/keys/{}",
        env.name, env.server_id
    );
    let revoked = app.call("DELETE", &path, Some(&shop.admin), None).await;
    assert_eq!(revoked.status, 204, "{:?}", revoked.body);
}

fn revision(app: &TestApp, env: &Env) -> u64 {
    app.state.snapshots.get(env.id).expect("snapshot").revision
}

/// Generous bound on waiting for something that should happen within a second; it only keeps
/// a broken build from hanging the suite.
const PATIENCE: Duration = Duration::from_secs(30);

/// A stream read by `eventsource-client`, LaunchDarkly's SSE client, without reconnecting.
struct Stream {
    events: BoxStream<'static, eventsource_client::Result<SSE>>,
}

impl Stream {
    fn open(server: &RealServer, key: &str, last_event_id: Option<u64>) -> Stream {
        let transport = launchdarkly_sdk_transport::HyperTransport::builder()
            .disable_proxy()
            .build_http()
            .expect("HTTP transport");
        let mut builder = ClientBuilder::for_url(&format!("{}/sdk/v1/stream", server.url))
            .expect("URL")
            .header("Authorization", &format!("Bearer {key}"))
            .expect("header")
            .reconnect(ReconnectOptions::reconnect(false).build());
        if let Some(id) = last_event_id {
            builder = builder.last_event_id(id.to_string());
        }
        Stream {
            events: builder.build_with_transport(transport).stream(),
        }
    }

    /// The next event (comments and the connection notice skipped): its id and data.
    async fn next(&mut self) -> (u64, Value) {
        loop {
            let item = tokio::time::timeout(PATIENCE, self.events.next())
                .await
                .expect("an event arrives")
                .expect("the stream is open")
                .expect("the stream has no error");
            if let SSE::Event(event) = item {
                let id = event
                    .id
                    .as_deref()
                    .expect("every event has an id")
                    .parse()
                    .expect("numeric id");
                return (id, serde_json::from_str(&event.data).expect("JSON data"));
            }
        }
    }

    /// Whether an event arrives within `wait` (keep-alive comments do not count).
    async fn quiet_for(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(SSE::Event(event)))) => panic!("unexpected event {event:?}"),
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("the stream ended: {other:?}"),
            }
        }
    }

    /// Waits until the server ends the stream.
    async fn ended(&mut self) {
        loop {
            match tokio::time::timeout(PATIENCE, self.events.next())
                .await
                .expect("the stream ends")
            {
                None | Some(Err(_)) => return,
                Some(Ok(SSE::Event(event))) => panic!("unexpected event {event:?}"),
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Ends every stream (as a shutdown does) so that stopping the server need not wait for them.
async fn shut_down(app: &TestApp, server: RealServer) {
    app.state.hub.close();
    server.stop().await;
}

fn flag_keys(data: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = data["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    keys.sort_unstable();
    keys
}

#[actix_web::test]
async fn only_a_known_server_key_reads_the_bundle() {
    let app = TestApp::new();
    let shop = shop(&app).await;
    let get = |key: Option<String>, headers: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            app.request("GET", "/sdk/v1/bundle", key.as_deref(), None, &headers)
                .await
        }
    };
    let missing = get(None, vec![]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.body["error"]["code"], "unauthorized");
    assert_eq!(get(Some("fs_srv_not-a-key".into()), vec![]).await.status, 401);
    let admin = app.token(flagstaff::store::users::Role::Admin);
    assert_eq!(
        get(Some(admin), vec![]).await.status,
        401,
        "an admin token is not an SDK key"
    );
    let client = get(Some(shop.production.client.clone()), vec![]).await;
    assert_eq!(client.status, 403, "a client key never reads rules");
    assert_eq!(client.body["error"]["code"], "forbidden");
    assert!(!String::from_utf8_lossy(&client.bytes).contains("c-secret-1"));

    assert_eq!(
        get(Some(shop.production.server.clone()), vec![]).await.status,
        200
    );
    let by_header = get(None, vec![("X-API-Key", shop.production.server.clone())]).await;
    assert_eq!(by_header.status, 200);

    revoke(&app, &shop, &shop.production).await;
    assert_eq!(
        get(Some(shop.production.server.clone()), vec![]).await.status,
        401,
        "revoked: refused at once"
    );
    assert_eq!(get(Some(shop.staging.server.clone()), vec![]).await.status, 200);
}

#[actix_web::test]
async fn the_bundle_is_the_keys_environment_with_etag_304_and_gzip() {
    let app = TestApp::new();
    let shop = shop(&app).await;
    let key = shop.production.server.clone();
    let plain = app.call("GET", "/sdk/v1/bundle", Some(&key), None).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-type"), Some("application/json"));
    let bundle: Bundle = serde_json::from_slice(&plain.bytes).expect("a bundle in the document format");
    assert_eq!(
        (bundle.project.key.as_str(), bundle.environment.as_str()),
        ("shop", "production")
    );
    assert_eq!(bundle.revision, revision(&app, &shop.production));
    let keys: Vec<&str> = bundle.flags.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["banner-text", "new-checkout"]);
    for flag in &bundle.flags {
        assert_eq!(
            flag.environments.keys().collect::<Vec<_>>(),
            ["production"],
            "only this environment's state"
        );
    }
    assert_eq!(
        bundle.segments.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        ["beta"]
    );
    let checkout = &bundle.flags[1].environments["production"];
    assert!(checkout.enabled);
    assert_eq!(checkout.rules[0].id.as_deref(), Some("vip"));

    let staging = app
        .call("GET", "/sdk/v1/bundle", Some(&shop.staging.server), None)
        .await;
    let staging: Bundle = serde_json::from_slice(&staging.bytes).unwrap();
    assert_eq!(staging.environment, "staging");
    assert!(!staging.flags[1].environments["staging"].enabled);

    // A strong ETag; caches must come back to revalidate.
    let etag = plain.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(plain.header("cache-control"), Some("max-age=0, must-revalidate"));
    assert!(plain.header("vary").unwrap().contains("Accept-Encoding"));

    for tag in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}")] {
        let again = app
            .request(
                "GET",
                "/sdk/v1/bundle",
                Some(&key),
                None,
                &[("If-None-Match", &tag)],
            )
            .await;
        assert_eq!(again.status, 304, "If-None-Match: {tag}");
        assert!(again.bytes.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        assert_eq!(again.header("cache-control"), Some("max-age=0, must-revalidate"));
    }

    let gzip = app
        .request(
            "GET",
            "/sdk/v1/bundle",
            Some(&key),
            None,
            &[("Accept-Encoding", "br, gzip")],
        )
        .await;
    assert_eq!(gzip.status, 200);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(gzip.header("etag"), Some(etag.as_str()));
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(gzip.bytes.as_slice())
        .read_to_end(&mut unzipped)
        .expect("valid gzip");
    assert_eq!(unzipped, plain.bytes);
    assert!(gzip.bytes.len() < plain.bytes.len());
    let refused = app
        .request(
            "GET",
            "/sdk/v1/bundle",
            Some(&key),
            None,
            &[("Accept-Encoding", "gzip;q=0")],
        )
        .await;
    assert_eq!(refused.header("content-encoding"), None);
    assert_eq!(refused.bytes, plain.bytes);

    // A change makes the old ETag stale; the other environment's stays valid.
    let staging_etag = app
        .call("GET", "/sdk/v1/bundle", Some(&shop.staging.server), None)
        .await;
    let staging_etag = staging_etag.header("etag").unwrap().to_owned();
    toggle(&app, &shop, &shop.production, "new-checkout", false).await;
    let changed = app
        .request(
            "GET",
            "/sdk/v1/bundle",
            Some(&key),
            None,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    let changed: Bundle = serde_json::from_slice(&changed.bytes).unwrap();
    assert!(!changed.flags[1].environments["production"].enabled);
    let same = app
        .request(
            "GET",
            "/sdk/v1/bundle",
            Some(&shop.staging.server),
            None,
            &[("If-None-Match", &staging_etag)],
        )
        .await;
    assert_eq!(same.status, 304);
}

#[actix_web::test]
async fn a_real_client_gets_the_gzip_bundle_and_the_max_age_is_configurable() {
    let app = TestApp::with_settings(|s| s.serve.bundle_max_age = 60);
    let shop = shop(&app).await;
    let server = RealServer::start(&app.state);
    // reqwest asks for gzip and decodes it.
    let resp = reqwest::Client::new()
        .get(format!("{}/sdk/v1/bundle", server.url))
        .bearer_auth(&shop.production.server)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "max-age=60, must-revalidate");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let bundle: Bundle = resp.json().await.expect("decoded bundle");
    assert_eq!(bundle.environment, "production");
    let resp = reqwest::Client::new()
        .get(format!("{}/sdk/v1/bundle", server.url))
        .header("X-API-Key", &shop.production.server)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);
    shut_down(&app, server).await;
}

#[actix_web::test]
async fn a_toggle_reaches_an_open_stream() {
    let app = TestApp::new();
    let shop = shop(&app).await;
    let server = RealServer::start(&app.state);
    let before = revision(&app, &shop.production);
    let mut stream = Stream::open(&server, &shop.production.server, None);

    let (id, data) = stream.next().await;
    assert_eq!(id, before, "on connect: the current revision");
    assert_eq!(data["revision"], before);
    assert_eq!(
        data["etag"],
        app.state.snapshots.get(shop.production.id).unwrap().etag
    );
    assert_eq!(flag_keys(&data), ["banner-text", "new-checkout"]);

    toggle(&app, &shop, &shop.production, "new-checkout", false).await;
    let (id, data) = stream.next().await;
    assert_eq!(id, before + 1);
    assert_eq!(data["revision"], before + 1);
    assert_eq!(flag_keys(&data), ["new-checkout"]);
    // The event's ETag is the bundle's: an SDK re-fetches with it.
    let bundle = app
        .call("GET", "/sdk/v1/bundle", Some(&shop.production.server), None)
        .await;
    assert_eq!(data["etag"].as_str(), bundle.header("etag"));

    toggle(&app, &shop, &shop.production, "banner-text", true).await;
    let (id, data) = stream.next().await;
    assert_eq!((id, flag_keys(&data)), (before + 2, vec!["banner-text"]));
    shut_down(&app, server).await;
}

#[actix_web::test]
async fn the_stream_speaks_sse_with_retry_keep_alive_and_no_proxy_buffering() {
    let app = TestApp::with_settings(|s| s.serve.stream_keepalive_secs = 1);
    let shop = shop(&app).await;
    let server = RealServer::start(&app.state);
    let mut resp = reqwest::Client::new()
        .get(format!("{}/sdk/v1/stream", server.url))
        .bearer_auth(&shop.production.server)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let mut wire = String::new();
    while !wire.contains(": keep-alive") {
        let chunk = tokio::time::timeout(PATIENCE, resp.chunk())
            .await
            .expect("bytes arrive")
            .unwrap()
            .unwrap();
        wire.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let revision = revision(&app, &shop.production);
    assert!(wire.starts_with("retry: 3000\n\n"), "{wire}");
    assert!(wire.contains(&format!("id: {revision}\n")), "{wire}");
    // Only the staging stream's key is refused for a client key.
    let client = reqwest::Client::new()
        .get(format!("{}/sdk/v1/stream", server.url))
        .bearer_auth(&shop.production.client)
        .send()
        .await
        .unwrap();
    assert_eq!(client.status(), 403);
    drop(resp);
    shut_down(&app, server).await;
}

#[actix_web::test]
async fn a_stream_resumes_from_last_event_id() {
    let app = TestApp::new();
    let shop = shop(&app).await;
    let server = RealServer::start(&app.state);
    let old = revision(&app, &shop.production);
    toggle(&app, &shop, &shop.production, "new-checkout", false).await;
    toggle(&app, &shop, &shop.production, "new-checkout", true).await;
    let current = revision(&app, &shop.production);
    assert_eq!(current, old + 2);

    // Behind: the current revision at once.
    let mut behind = Stream::open(&server, &shop.production.server, Some(old));
    let (id, data) = behind.next().await;
    assert_eq!(id, current);
    assert_eq!(flag_keys(&data), ["banner-text", "new-checkout"]);

    // Up to date: nothing until the next change, which is the first event.
    let mut up_to_date = Stream::open(&server, &shop.production.server, Some(current));
    assert!(up_to_date.quiet_for(Duration::from_millis(300)).await);
    toggle(&app, &shop, &shop.production, "banner-text", true).await;
    let (id, data) = up_to_date.next().await;
    assert_eq!((id, flag_keys(&data)), (current + 1, vec!["banner-text"]));
    let (id, _) = behind.next().await;
    assert_eq!(id, current + 1);
    shut_down(&app, server).await;
}

#[actix_web::test]
async fn a_staging_stream_hears_nothing_of_production() {
    let app = TestApp::new();
    let shop = shop(&app).await;
    let server = RealServer::start(&app.state);
    let mut production = Stream::open(&server, &shop.production.server, None);
    let mut staging = Stream::open(&server, &shop.staging.server, None);
    let (staging_first, _) = staging.next().await;
    production.next().await;

    toggle(&app, &shop, &shop.production, "new-checkout", false).await;
    toggle(&app, &shop, &shop.production, "banner-text", true).await;
    let (_, first) = production.next().await;
    let (_, second) = production.next().await;
    assert_eq!(
        (flag_keys(&first), flag_keys(&second)),
        (vec!["new-checkout"], vec!["banner-text"])
    );

    // Staging's next event is its own change, not production's two.
    toggle(&app, &shop, &shop.staging, "banner-text", true).await;
    let (id, data) = staging.next().await;
    assert_eq!(id, staging_first + 1);
    assert_eq!(flag_keys(&data), ["banner-text"]);
    shut_down(&app, server).await;
}

#[actix_web::test]
async fn a_revoked_keys_stream_closes_within_a_keep_alive() {
    let app = TestApp::with_settings(|s| s.serve.stream_keepalive_secs = 1);
    let shop = shop(&app).await;
    let server = RealServer::start(&app.state);
    let mut revoked = Stream::open(&server, &shop.production.server, None);
    let mut other = Stream::open(&server, &shop.staging.server, None);
    revoked.next().await;
    other.next().await;

    revoke(&app, &shop, &shop.production).await;
    revoked.ended().await;
    // The other key's stream goes on.
    assert!(other.quiet_for(Duration::from_millis(1500)).await);
    toggle(&app, &shop, &shop.staging, "new-checkout", true).await;
    other.next().await;
    // Reconnecting is refused.
    let again = reqwest::Client::new()
        .get(format!("{}/sdk/v1/stream", server.url))
        .bearer_auth(&shop.production.server)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
    shut_down(&app, server).await;
}

/// Waits until the hub has `n` receivers (open streams).
async fn receivers_become(app: &TestApp, n: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.state.hub.receivers() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} receivers, expected {n}",
            app.state.hub.receivers()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_gone_client_is_dropped_and_shutdown_ends_every_stream() {
    let app = TestApp::with_settings(|s| s.serve.stream_keepalive_secs = 1);
    let shop = shop(&app).await;
    let server = RealServer::start(&app.state);
    let idle = app.state.hub.receivers();

    let mut gone = Stream::open(&server, &shop.production.server, None);
    gone.next().await;
    receivers_become(&app, idle + 1).await;
    drop(gone);
    receivers_become(&app, idle).await;

    let mut a = Stream::open(&server, &shop.production.server, None);
    let mut b = Stream::open(&server, &shop.staging.server, None);
    a.next().await;
    b.next().await;
    app.state.hub.close();
    a.ended().await;
    b.ended().await;
    receivers_become(&app, idle).await;
    shut_down(&app, server).await;
}

fn counts(app: &TestApp, env: &Env) -> Vec<(String, String, i64)> {
    let id = env.id;
    let mut rows: Vec<(String, String, i64)> = app
        .state
        .store
        .read_blocking(move |c| usage::counts(c, id, None, 0))
        .unwrap()
        .into_iter()
        .map(|c| (c.flag_key, c.variant, c.count))
        .collect();
    rows.sort();
    rows
}

fn rows(list: &[(&str, &str, i64)]) -> Vec<(String, String, i64)> {
    list.iter()
        .map(|(f, v, n)| (f.to_string(), v.to_string(), *n))
        .collect()
}

#[actix_web::test]
async fn evaluation_counts_add_up_across_batches_and_survive_a_restart() {
    let app = TestApp::new();
    let shop = shop(&app).await;
    let key = shop.production.server.clone();
    let now = flagstaff::store::now_ms();
    let batch = |counts: Value| json!({"start": now - 60_000, "end": now, "counts": counts});

    let first = app
        .call(
            "POST",
            "/sdk/v1/events",
            Some(&key),
            Some(batch(json!([
                {"flag": "new-checkout", "variant": "on", "count": 3},
                {"flag": "new-checkout", "variant": "off", "count": 2},
                {"flag": "no-such-flag", "variant": "on", "count": 7},
                {"flag": "new-checkout", "variant": "maybe", "count": 1},
                {"flag": "banner-text", "variant": "a", "count": 1},
            ]))),
        )
        .await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    assert_eq!(
        first.body,
        json!({"accepted": 3, "ignored": 2}),
        "unknown flags and variants are ignored"
    );
    let second = app
        .call(
            "POST",
            "/sdk/v1/events",
            Some(&key),
            Some(batch(
                json!([{"flag": "new-checkout", "variant": "on", "count": 4}]),
            )),
        )
        .await;
    assert_eq!(second.status, 202);
    // A staging key's counts are staging's.
    let staging = app
        .call(
            "POST",
            "/sdk/v1/events",
            Some(&shop.staging.server),
            Some(batch(
                json!([{"flag": "new-checkout", "variant": "off", "count": 10}]),
            )),
        )
        .await;
    assert_eq!(staging.status, 202);

    // Requests only add in memory: one write per flush interval.
    assert!(counts(&app, &shop.production).is_empty());
    let flushed = flagstaff::events::flush(&app.state).await.unwrap();
    assert_eq!(flushed.counts, 4);
    assert_eq!(
        counts(&app, &shop.production),
        rows(&[
            ("banner-text", "a", 1),
            ("new-checkout", "off", 2),
            ("new-checkout", "on", 7)
        ])
    );
    assert_eq!(counts(&app, &shop.staging), rows(&[("new-checkout", "off", 10)]));
    let hour = app.state.store.read_blocking({
        let id = shop.production.id;
        move |c| usage::counts(c, id, Some("new-checkout"), 0)
    });
    assert!(
        hour.unwrap()
            .iter()
            .all(|c| c.hour == flagstaff::events::hour_of(now))
    );
    let production = shop.production.id;
    let last = app
        .state
        .store
        .read_blocking(move |c| usage::last_evaluated(c, production))
        .unwrap();
    assert_eq!(last.len(), 2);
    assert!(
        last.iter()
            .all(|(_, at)| *at <= flagstaff::store::now_ms() && *at >= now)
    );
    let used: Option<i64> = app
        .state
        .store
        .read_blocking({
            let id = shop.production.server_id;
            move |c| {
                Ok(
                    c.query_row("SELECT at FROM key_last_used WHERE key_id = ?1", [id], |r| {
                        r.get(0)
                    })?,
                )
            }
        })
        .unwrap();
    assert!(used.is_some_and(|at| at >= now), "the key's last use is recorded");

    let third = app
        .call(
            "POST",
            "/sdk/v1/events",
            Some(&key),
            Some(batch(
                json!([{"flag": "new-checkout", "variant": "on", "count": 1}]),
            )),
        )
        .await;
    assert_eq!(third.status, 202);
    flagstaff::events::flush(&app.state).await.unwrap();
    let app = app.restart();
    assert_eq!(
        counts(&app, &shop.production),
        rows(&[
            ("banner-text", "a", 1),
            ("new-checkout", "off", 2),
            ("new-checkout", "on", 8)
        ])
    );
}

#[actix_web::test]
async fn events_are_validated_size_limited_and_scoped_to_the_key() {
    let app = TestApp::new();
    let shop = shop(&app).await;
    let key = shop.production.server.clone();
    let post = |body: Value| {
        let (app, key) = (&app, key.clone());
        async move { app.call("POST", "/sdk/v1/events", Some(&key), Some(body)).await }
    };
    let bad = post(
        json!({"start": 0, "end": 1, "counts": [{"flag": "new-checkout", "variant": "on", "count": "3"}]}),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["path"], "counts[0].count");
    let bad = post(json!({"start": 5, "end": 1, "counts": []})).await;
    assert_eq!(
        (bad.status.as_u16(), bad.body["error"]["path"].as_str()),
        (400, Some("end"))
    );
    let not_json = app
        .request(
            "POST",
            "/sdk/v1/events",
            Some(&key),
            None,
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(not_json.status, 400);

    let huge: Vec<Value> = (0..40_000)
        .map(|i| json!({"flag": format!("flag-{i}"), "variant": "on", "count": 1}))
        .collect();
    let too_large = post(json!({"start": 0, "end": 1, "counts": huge})).await;
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.body["error"]["code"], "payload_too_large");
    assert_eq!(
        app.call("POST", "/sdk/v1/events", None, Some(json!({})))
            .await
            .status,
        401
    );

    // A client key counts only client-side flags (configs are not).
    let now = flagstaff::store::now_ms();
    let from_browser = app
        .call(
            "POST",
            "/sdk/v1/events",
            Some(&shop.production.client),
            Some(json!({"start": now, "end": now, "counts": [
                {"flag": "new-checkout", "variant": "on", "count": 1},
                {"flag": "banner-text", "variant": "a", "count": 1}]})),
        )
        .await;
    assert_eq!(from_browser.status, 202);
    assert_eq!(from_browser.body, json!({"accepted": 1, "ignored": 1}));
    // Nothing rejected was kept.
    flagstaff::events::flush(&app.state).await.unwrap();
    assert_eq!(counts(&app, &shop.production), rows(&[("new-checkout", "on", 1)]));
}

#[actix_web::test]
async fn the_flusher_writes_every_interval_and_at_shutdown() {
    let app = TestApp::with_settings(|s| s.serve.events_flush_secs = 1);
    let shop = shop(&app).await;
    let now = flagstaff::store::now_ms();
    let count = |n: u64| json!({"start": now, "end": now, "counts": [{"flag": "new-checkout", "variant": "on", "count": n}]});
    let flusher = flagstaff::events::spawn_flusher(app.state.clone());

    let posted = app
        .call(
            "POST",
            "/sdk/v1/events",
            Some(&shop.production.server),
            Some(count(2)),
        )
        .await;
    assert_eq!(posted.status, 202);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while counts(&app, &shop.production).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the flusher never wrote");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts(&app, &shop.production), rows(&[("new-checkout", "on", 2)]));

    app.call(
        "POST",
        "/sdk/v1/events",
        Some(&shop.production.server),
        Some(count(5)),
    )
    .await;
    flusher.shutdown().await;
    assert!(app.state.events.is_empty());
    assert_eq!(counts(&app, &shop.production), rows(&[("new-checkout", "on", 7)]));
}
