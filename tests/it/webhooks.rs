//! Webhooks (issue 17): every change delivered to a real HTTP receiver on 127.0.0.1, signed, in
//! order, once — through a receiver that is down for a while, a `kill -9` of the server in the
//! middle of the backoff, the address checks, the Slack format, the retry window's end, audit
//! retention, and the signature checks of docs/webhooks.md run as written (Python and Node).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use flagstaff::store::users::Role;
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{TestApp, Tool, free_port, root, tools_installed};

const PROJECT: &str = "hooks";
const FLAG: &str = "new-checkout";
/// Strings a receiver must get back byte for byte.
const HOSTILE: &[&str] = &[
    "a,b",
    "\"quoted\"",
    "tab\there",
    "<script>alert(1)</script>",
    "é ünï 🚩",
];
/// A secret given by the caller, with what a signature must survive (UTF-8, quotes, commas).
const SECRET: &str = "sécret, \"quoted\" <script>é";
/// How long a test waits for something that should happen (a hang guard, not a speed check).
const GUARD: Duration = Duration::from_secs(30);

fn document() -> Value {
    json!({
        "flagstaff": 1,
        "project": {"key": PROJECT, "name": "Hooks"},
        "environments": [{"key": "production", "name": "Production"}, {"key": "staging", "name": "Staging"}],
        "segments": [],
        "flags": [{
            "key": FLAG, "name": "New checkout", "kind": "flag", "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "environments": {"production": {"enabled": false, "fallthrough": {"variation": "on"}}}
        }]
    })
}

/// An app with the project imported and an admin token; delivery settings for tests.
async fn setup(allow_private: bool, retry_base_ms: u64, window_secs: u64) -> (TestApp, String) {
    setup_with(move |s| {
        s.serve.webhooks.webhook_allow_private = allow_private;
        s.serve.webhooks.webhook_retry_base_ms = retry_base_ms;
        s.serve.webhooks.webhook_retry_window_secs = window_secs;
    })
    .await
}

async fn setup_with(change: impl FnOnce(&mut flagstaff::config::Settings)) -> (TestApp, String) {
    let app = TestApp::with_settings(change);
    let token = app.token(Role::Admin);
    let imported = app
        .call("POST", "/api/v1/import", Some(&token), Some(document()))
        .await;
    assert!(imported.status.is_success(), "{}", imported.body);
    (app, token)
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let reply = app
        .call(
            "POST",
            &format!("/api/v1/projects/{PROJECT}/webhooks"),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

async fn toggle(app: &TestApp, token: &str, env: &str, enabled: bool) {
    let reply = app
        .call(
            "PATCH",
            &format!("/api/v1/projects/{PROJECT}/flags/{FLAG}/environments/{env}"),
            Some(token),
            Some(json!({ "enabled": enabled })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn set_targets(app: &TestApp, token: &str, values: &[&str]) {
    let reply = app
        .call(
            "PATCH",
            &format!("/api/v1/projects/{PROJECT}/flags/{FLAG}/environments/production"),
            Some(token),
            Some(json!({ "targets": [{"variation": "on", "values": values}] })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn attempts(app: &TestApp, token: &str, id: i64) -> Vec<Value> {
    let reply = app
        .call(
            "GET",
            &format!("/api/v1/projects/{PROJECT}/webhooks/{id}/attempts?limit=500"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["attempts"].as_array().unwrap().clone()
}

/// Waits (at most [`GUARD`]) until `check` holds.
async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let until = Instant::now() + GUARD;
    while !check().await {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A real HTTP receiver on 127.0.0.1 answering with a settable status.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    /// Answer with a body of this many bytes (0: a short greeting).
    body_len: Arc<AtomicUsize>,
    handle: ServerHandle,
}

impl Receiver {
    /// Starts on `port` (0: any free one), on the current actix runtime.
    fn start(port: u16) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let body_len: Arc<AtomicUsize> = Arc::default();
        let (g, s, n) = (got.clone(), status.clone(), body_len.clone());
        let server = actix_web::HttpServer::new(move || {
            let (g, s, n) = (g.clone(), s.clone(), n.clone());
            actix_web::App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (g, s, n) = (g.clone(), s.clone(), n.clone());
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    g.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    let status = StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                    match n.load(Ordering::SeqCst) {
                        0 => HttpResponse::build(status).body("receiver says <b>hi</b>"),
                        n => HttpResponse::build(status).body("é".repeat(n / 2)),
                    }
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", port))
        .expect("bind the receiver");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Receiver {
            url: format!("http://{addr}/hook?team=a,b&x=%22q%22"),
            got,
            status,
            body_len,
            handle,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// Checks `Flagstaff-Signature` as a receiver would: HMAC-SHA256 of "<t>.<body>".
fn signature_valid(secret: &str, r: &Received) -> bool {
    let header = &r.headers["flagstaff-signature"];
    let (Some(t), Some(v1)) = (
        header.split(',').find_map(|p| p.strip_prefix("t=")),
        header.split(',').find_map(|p| p.strip_prefix("v1=")),
    ) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&r.body);
    hex::decode(v1).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
}

#[actix_web::test]
async fn a_toggle_is_delivered_with_a_valid_signature() {
    let (app, token) = setup(true, 50, 3600).await;
    let receiver = Receiver::start(0);
    let created = create(
        &app,
        &token,
        json!({"url": receiver.url, "events": ["flag.updated"], "environments": ["production"]}),
    )
    .await;
    let secret = created["secret"]
        .as_str()
        .expect("the secret, shown once")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = created["id"].as_i64().unwrap();
    let listed = app
        .call(
            "GET",
            &format!("/api/v1/projects/{PROJECT}/webhooks/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert!(
        listed.body.get("secret").is_none(),
        "never shown again: {}",
        listed.body
    );
    assert!(!String::from_utf8_lossy(&listed.bytes).contains(&secret));

    let deliverer = flagstaff::webhooks::deliver::spawn(app.state.clone());
    // Staging is not wanted: only the production toggle arrives.
    toggle(&app, &token, "staging", true).await;
    let toggled = Instant::now();
    toggle(&app, &token, "production", true).await;
    wait_until("the toggle is delivered", || async {
        !receiver.received().is_empty()
    })
    .await;
    let latency = toggled.elapsed();
    let got = receiver.received();
    let first = &got[0];
    assert!(signature_valid(&secret, first), "signature: {:?}", first.headers);
    assert!(!signature_valid("another secret of some length", first));
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(
        first.headers["user-agent"],
        format!("Flagstaff/{}", env!("CARGO_PKG_VERSION"))
    );
    let event = first.json();
    assert_eq!(first.headers["flagstaff-event-id"], event["id"].as_str().unwrap());
    assert_eq!(event["type"], "flag.updated");
    assert_eq!(event["project"], PROJECT);
    assert_eq!(event["environment"], "production");
    assert_eq!(event["resource"], json!({"kind": "flag_state", "key": FLAG}));
    assert_eq!(event["before"]["enabled"], false);
    assert_eq!(event["after"]["enabled"], true);
    assert!(event["actor"].as_str().unwrap().starts_with("admin-"));
    assert!(event["audit_id"].as_i64().unwrap() > 0);
    // The attempt is recorded once the receiver's answer is read, a moment after it got the
    // request.
    wait_until("the attempt is recorded", || async {
        !attempts(&app, &token, id).await.is_empty()
    })
    .await;
    let log = attempts(&app, &token, id).await;
    assert_eq!(log[0]["outcome"], "delivered", "{log:?}");
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["response"], "receiver says <b>hi</b>");
    println!(
        "toggle delivered {} ms after the PATCH answered",
        latency.as_millis()
    );

    // The audit log of the webhook's creation never holds the secret.
    let audit = app
        .call(
            "GET",
            &format!("/api/v1/audit?project={PROJECT}&limit=500"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    assert!(!String::from_utf8_lossy(&audit.bytes).contains(&secret));

    // A rotated secret signs the next event; the old one no longer verifies.
    let rotated = app
        .call(
            "POST",
            &format!("/api/v1/projects/{PROJECT}/webhooks/{id}/secret"),
            Some(&token),
            Some(json!({"secret": SECRET})),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    toggle(&app, &token, "production", false).await;
    wait_until("the second toggle is delivered", || async {
        receiver.received().len() == 2
    })
    .await;
    let second = &receiver.received()[1];
    assert!(signature_valid(SECRET, second));
    assert!(!signature_valid(&secret, second));
    assert_eq!(second.json()["after"]["enabled"], false);
    deliverer.abort();
    receiver.stop().await;
}

#[actix_web::test]
async fn a_receiver_down_then_up_gets_every_event_once_in_order() {
    let (app, token) = setup(true, 40, 3600).await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let id = create(
        &app,
        &token,
        json!({"url": url, "events": ["*"], "secret": SECRET}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let deliverer = flagstaff::webhooks::deliver::spawn(app.state.clone());
    for (i, value) in HOSTILE.iter().enumerate() {
        set_targets(&app, &token, &[value, &format!("user-{i}")]).await;
    }
    // Nobody listens: the first event is retried, the others wait behind it.
    wait_until("three failed attempts", || async {
        attempts(&app, &token, id)
            .await
            .iter()
            .filter(|a| a["outcome"] == "retrying")
            .count()
            >= 3
    })
    .await;
    let log = attempts(&app, &token, id).await;
    let first_audit = log.last().unwrap()["audit_id"].clone();
    assert!(
        log.iter()
            .all(|a| a["audit_id"] == first_audit && a["status"].is_null()),
        "only the first event is tried while it fails: {log:?}"
    );
    assert!(
        log[0]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("connect"),
        "{log:?}"
    );

    let receiver = Receiver::start(port);
    wait_until("every event is delivered", || async {
        receiver.received().len() >= HOSTILE.len()
    })
    .await;
    // One more change after the backlog: when it arrives, anything sent twice would have too.
    toggle(&app, &token, "staging", true).await;
    wait_until("the last change is delivered", || async {
        receiver
            .received()
            .last()
            .is_some_and(|r| r.json()["environment"] == "staging")
    })
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), HOSTILE.len() + 1, "each event once");
    let mut last_audit = 0;
    for (i, r) in got.iter().enumerate() {
        assert!(signature_valid(SECRET, r));
        let event = r.json();
        let audit_id = event["audit_id"].as_i64().unwrap();
        assert!(audit_id > last_audit, "in order: {audit_id} after {last_audit}");
        last_audit = audit_id;
        if let Some(value) = HOSTILE.get(i) {
            assert_eq!(event["after"]["targets"][0]["values"][0], *value, "byte for byte");
        }
    }
    deliverer.abort();
    receiver.stop().await;
}

#[actix_web::test]
async fn after_kill_9_in_the_middle_of_the_backoff_the_events_are_delivered_after_the_restart() {
    use crate::ops::{Flagstaff, client};
    let (app, token) = setup(true, 50, 3600).await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let id = create(
        &app,
        &token,
        json!({"url": url, "events": ["flag.*"], "secret": SECRET}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let TestApp { dir, state } = app;
    drop(state);
    let env = [
        ("FLAGSTAFF_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("FLAGSTAFF_WEBHOOK_RETRY_BASE_MS", "200"),
    ];
    let mut server = Flagstaff::start(dir.path(), &env);
    let http = client();
    for value in HOSTILE {
        let res = http
            .patch(format!(
                "{}/api/v1/projects/{PROJECT}/flags/{FLAG}/environments/production",
                server.url
            ))
            .bearer_auth(&token)
            .json(&json!({"targets": [{"variation": "on", "values": [value]}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let ops = dir.path().join("work").join("flagstaff.operational.db");
    let retries = || -> i64 {
        let conn =
            rusqlite::Connection::open_with_flags(&ops, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        conn.query_row(
            "SELECT count(*) FROM webhook_attempts WHERE webhook_id = ?1 AND outcome = 'retrying'",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    };
    wait_until("the server is retrying", || async { retries() >= 2 }).await;
    server.kill9();

    let receiver = Receiver::start(port);
    let server = Flagstaff::start(dir.path(), &env);
    wait_until("every event is delivered after the restart", || async {
        receiver.received().len() >= HOSTILE.len()
    })
    .await;
    let got = receiver.received();
    let values: Vec<Value> = got
        .iter()
        .map(|r| {
            assert!(signature_valid(SECRET, r));
            r.json()["after"]["targets"][0]["values"][0].clone()
        })
        .collect();
    let expected: Vec<Value> = HOSTILE.iter().map(|v| json!(v)).collect();
    assert_eq!(values, expected, "every event, in order, none twice");
    drop(server);
    receiver.stop().await;
}

#[actix_web::test]
async fn private_addresses_are_refused_without_the_option() {
    let (app, token) = setup(false, 50, 3600).await;
    let receiver = Receiver::start(0);
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    for url in [
        format!("http://127.0.0.1:{port}/"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://10.0.0.1/".to_owned(),
    ] {
        let reply = app
            .call(
                "POST",
                &format!("/api/v1/projects/{PROJECT}/webhooks"),
                Some(&token),
                Some(json!({"url": url, "events": ["*"]})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}: {}", reply.body);
        assert_eq!(reply.body["error"]["path"], "url");
    }
    // A name is judged by what it resolves to, at every attempt.
    let id = create(
        &app,
        &token,
        json!({"url": format!("http://localhost:{port}/"), "events": ["*"]}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let deliverer = flagstaff::webhooks::deliver::spawn(app.state.clone());
    toggle(&app, &token, "production", true).await;
    wait_until("a refused attempt is recorded", || async {
        !attempts(&app, &token, id).await.is_empty()
    })
    .await;
    let log = attempts(&app, &token, id).await;
    let error = log[0]["error"].as_str().unwrap();
    assert!(
        error.contains("refused") && error.contains("--webhook-allow-private"),
        "{error}"
    );
    let tested = app
        .call(
            "POST",
            &format!("/api/v1/projects/{PROJECT}/webhooks/{id}/test"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    assert!(
        tested.body["error"].as_str().unwrap().contains("refused"),
        "{}",
        tested.body
    );
    assert!(receiver.received().is_empty(), "nothing reached the receiver");
    deliverer.abort();
    receiver.stop().await;
}

#[actix_web::test]
async fn the_slack_format_says_who_turned_what_on_where() {
    let (app, token) = setup(true, 50, 3600).await;
    let receiver = Receiver::start(0);
    create(
        &app,
        &token,
        json!({"url": receiver.url, "events": ["flag.updated"], "format": "slack"}),
    )
    .await;
    let deliverer = flagstaff::webhooks::deliver::spawn(app.state.clone());
    toggle(&app, &token, "production", true).await;
    wait_until("the message arrives", || async {
        !receiver.received().is_empty()
    })
    .await;
    let text = receiver.received()[0].json();
    let actor = text["text"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    assert!(actor.starts_with("admin-"), "{text}");
    assert_eq!(
        text,
        json!({"text": format!("{actor} turned on {FLAG} in production")})
    );
    deliverer.abort();
    receiver.stop().await;
}

#[actix_web::test]
async fn an_event_failing_for_the_whole_window_is_given_up_and_the_webhook_disabled() {
    let (app, token) = setup(true, 30, 1).await;
    let receiver = Receiver::start(0);
    receiver.status.store(500, Ordering::SeqCst);
    let id = create(
        &app,
        &token,
        json!({"url": receiver.url, "events": ["flag.updated"]}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let deliverer = flagstaff::webhooks::deliver::spawn(app.state.clone());
    toggle(&app, &token, "production", true).await;
    let path = format!("/api/v1/projects/{PROJECT}/webhooks/{id}");
    wait_until("the webhook is disabled", || async {
        app.call("GET", &path, Some(&token), None).await.body["enabled"] == false
    })
    .await;
    let webhook = app.call("GET", &path, Some(&token), None).await.body;
    let reason = webhook["disabled_reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 500") && reason.contains("flag.updated"),
        "{reason}"
    );
    let log = attempts(&app, &token, id).await;
    assert_eq!(log[0]["outcome"], "failed");
    assert!(
        log.iter()
            .skip(1)
            .all(|a| a["outcome"] == "retrying" && a["status"] == 500)
    );

    // Enabled again, it goes on with the next event (the failed one stays given up).
    receiver.status.store(200, Ordering::SeqCst);
    let before = receiver.received().len();
    let enabled = app
        .call("PATCH", &path, Some(&token), Some(json!({"enabled": true})))
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.body);
    assert!(enabled.body["disabled_reason"].is_null());
    toggle(&app, &token, "production", false).await;
    wait_until("the next event is delivered", || async {
        receiver.received().len() > before
    })
    .await;
    let got = receiver.received();
    assert_eq!(got[before].json()["after"]["enabled"], false);
    assert_eq!(got.len(), before + 1);
    deliverer.abort();
    receiver.stop().await;
}

#[actix_web::test]
async fn bad_input_is_a_400_naming_the_field_and_changes_nothing() {
    let (app, token) = setup(true, 50, 3600).await;
    let base = format!("/api/v1/projects/{PROJECT}/webhooks");
    let cases = [
        (json!({"events": ["*"]}), "url"),
        (json!({"url": "ftp://example.com/", "events": ["*"]}), "url"),
        (
            json!({"url": "https://example.com/<script>", "events": ["flag.update"]}),
            "events[0]",
        ),
        (json!({"url": "https://example.com/", "events": []}), "events[0]"),
        (json!({"url": "https://example.com/"}), "events"),
        (
            json!({"url": "https://example.com/", "events": ["*"], "environments": ["nope,\"x\""]}),
            "environments[0]",
        ),
        (
            json!({"url": "https://example.com/", "events": ["*"], "environments": []}),
            "environments",
        ),
        (
            json!({"url": "https://example.com/", "events": ["*"], "format": "teams"}),
            "format",
        ),
        (
            json!({"url": "https://example.com/", "events": ["*"], "secret": "short"}),
            "secret",
        ),
        (
            json!({"url": "https://example.com/", "events": ["*"], "colour": "red"}),
            "",
        ),
    ];
    for (body, path) in cases {
        let reply = app.call("POST", &base, Some(&token), Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        if !path.is_empty() {
            assert_eq!(reply.body["error"]["path"], path, "{body}: {}", reply.body);
        }
    }
    let listed = app.call("GET", &base, Some(&token), None).await;
    assert_eq!(listed.body["webhooks"], json!([]));

    let id = create(
        &app,
        &token,
        json!({"url": "https://example.com/a", "events": ["*"]}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let one = format!("{base}/{id}");
    let before = app.call("GET", &one, Some(&token), None).await.body;
    for body in [
        json!({"events": ["nope"]}),
        json!({"url": "javascript:alert(1)"}),
        json!({"secret": SECRET}),
    ] {
        let reply = app.call("PATCH", &one, Some(&token), Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
    }
    assert_eq!(app.call("GET", &one, Some(&token), None).await.body, before);

    // Admins only.
    let editor = app.token(Role::Editor);
    assert_eq!(
        app.call("GET", &base, Some(&editor), None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(
            "GET",
            &format!("/api/v1/projects/{PROJECT}/webhooks/999"),
            Some(&token),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let deleted = app.call("DELETE", &one, Some(&token), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.call("GET", &one, Some(&token), None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[actix_web::test]
async fn audit_retention_keeps_what_a_webhook_has_not_delivered() {
    let (app, token) = setup_with(|s| {
        s.serve.webhooks.webhook_allow_private = true;
        s.serve.audit_retention_days = 1;
    })
    .await;
    let receiver_port = free_port();
    create(
        &app,
        &token,
        json!({"url": format!("http://127.0.0.1:{receiver_port}/"), "events": ["flag.*"]}),
    )
    .await;
    toggle(&app, &token, "production", true).await;
    toggle(&app, &token, "production", false).await;
    let count = |app: &TestApp| {
        app.state
            .store
            .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM audit_log", [], |r| r.get::<_, i64>(0))?))
            .unwrap()
    };
    let before = count(&app);
    // Retention of one day, run ten days later: the undelivered toggles must stay.
    let state = app.state.clone();
    let later = flagstaff::store::now_ms() + 10 * 86_400_000;
    let done = flagstaff::retention::run(&state, later).unwrap();
    let after = count(&app);
    assert!(after >= 2, "the two toggles are kept: {after} of {before}");
    assert_eq!(before - after, done.audit_deleted as i64);
    // Once delivered, they may go (all but the newest entry).
    let receiver = Receiver::start(receiver_port);
    let deliverer = flagstaff::webhooks::deliver::spawn(app.state.clone());
    wait_until("both toggles are delivered", || async {
        receiver.received().len() == 2
    })
    .await;
    deliverer.abort();
    let state2 = state.clone();
    actix_web::rt::task::spawn_blocking(move || flagstaff::retention::run(&state2, later).unwrap())
        .await
        .unwrap();
    assert_eq!(
        count(&app),
        1,
        "everything delivered and old is pruned but the newest entry"
    );
    receiver.stop().await;
}

/// The first fenced block of `lang` in docs/webhooks.md.
fn doc_block(lang: &str) -> String {
    let doc = std::fs::read_to_string(root().join("docs/webhooks.md")).unwrap();
    let start = doc
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("docs/webhooks.md has a {lang} block"));
    let rest = &doc[start + lang.len() + 4..];
    rest[..rest.find("```").unwrap()].to_owned()
}

#[actix_web::test]
async fn the_receivers_of_the_docs_verify_real_deliveries_in_python_and_node() {
    if !tools_installed(&[Tool::Python, Tool::Node]) {
        return;
    }
    let (app, token) = setup(true, 40, 3600).await;
    let scripts = tempfile::tempdir().unwrap();
    let python = scripts.path().join("receiver.py");
    std::fs::write(&python, doc_block("python")).unwrap();
    let node = scripts.path().join("receiver.mjs");
    std::fs::write(&node, doc_block("js")).unwrap();
    let mut children = Vec::new();
    let mut ports = Vec::new();
    for (program, script) in [(Tool::Python, &python), (Tool::Node, &node)] {
        let port = free_port();
        let child = std::process::Command::new(program.expect())
            .arg(script)
            .env("PORT", port.to_string())
            .env("FLAGSTAFF_WEBHOOK_SECRET", SECRET)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program:?}: {e}"));
        children.push(child);
        ports.push(port);
        create(
            &app,
            &token,
            json!({"url": format!("http://127.0.0.1:{port}/flagstaff"), "events": ["flag.updated"], "secret": SECRET}),
        )
        .await;
    }
    let http = crate::ops::client();
    for port in &ports {
        // Ready, and a forged request is refused.
        let url = format!("http://127.0.0.1:{port}/flagstaff");
        wait_until("the receiver listens", || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.post(&url)
                    .header(
                        "Flagstaff-Signature",
                        format!("t={},v1=00", flagstaff::store::now_ms() / 1000),
                    )
                    .body("{}")
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 400)
            }
        })
        .await;
    }
    let deliverer = flagstaff::webhooks::deliver::spawn(app.state.clone());
    toggle(&app, &token, "production", true).await;
    wait_until("both receivers verified the event", || async {
        let mut all = true;
        for (outcome, _) in attempts_of_all(&app, &token).await {
            all &= outcome == "delivered";
        }
        all
    })
    .await;
    deliverer.abort();
    for mut child in children {
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("verified evt_") && stdout.contains("flag.updated"),
            "{stdout}"
        );
    }
}

/// (outcome of the newest attempt, webhook id) of every webhook of the project (`none` when
/// it has no attempt yet).
async fn attempts_of_all(app: &TestApp, token: &str) -> Vec<(String, i64)> {
    let list = app
        .call(
            "GET",
            &format!("/api/v1/projects/{PROJECT}/webhooks"),
            Some(token),
            None,
        )
        .await;
    let mut out = Vec::new();
    for w in list.body["webhooks"].as_array().unwrap() {
        let id = w["id"].as_i64().unwrap();
        let log = attempts(app, token, id).await;
        let outcome = log
            .first()
            .and_then(|a| a["outcome"].as_str())
            .unwrap_or("none")
            .to_owned();
        out.push((outcome, id));
    }
    out
}

#[actix_web::test]
async fn two_servers_on_one_data_dir_deliver_each_event_once_and_the_survivor_takes_over() {
    use crate::ops::{Flagstaff, client};
    let (app, token) = setup(true, 50, 3600).await;
    let receiver = Receiver::start(0);
    create(
        &app,
        &token,
        json!({"url": receiver.url, "events": ["flag.updated"], "secret": SECRET}),
    )
    .await;
    let TestApp { dir, state } = app;
    drop(state);
    let env = [("FLAGSTAFF_WEBHOOK_ALLOW_PRIVATE", "true")];
    let mut first = Flagstaff::start(dir.path(), &env);
    let second = Flagstaff::start(dir.path(), &env);
    let http = client();
    let patch = |url: String, enabled: bool| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let res = http
                .patch(format!(
                    "{url}/api/v1/projects/{PROJECT}/flags/{FLAG}/environments/production"
                ))
                .bearer_auth(&token)
                .json(&json!({ "enabled": enabled }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    };
    // Delivery is at least once: a process killed after a receiver got an event but before it
    // recorded so sends that event again from the survivor (same event id). What must hold is
    // the events' first arrivals, each once, in order.
    let firsts = |receiver: &Receiver| -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        receiver
            .received()
            .iter()
            .map(|r| {
                assert!(signature_valid(SECRET, r));
                r.json()
            })
            .filter(|event| seen.insert(event["id"].to_string()))
            .collect()
    };
    patch(first.url.clone(), true).await;
    wait_until("the first change is delivered", || async {
        !firsts(&receiver).is_empty()
    })
    .await;
    patch(second.url.clone(), false).await;
    wait_until("the second change is delivered", || async {
        firsts(&receiver).len() >= 2
    })
    .await;
    // Whichever process held the lock is gone: the other one delivers from now on.
    first.kill9();
    patch(second.url.clone(), true).await;
    wait_until("the third change is delivered", || async {
        firsts(&receiver).len() >= 3
    })
    .await;
    // A last change through the survivor: when it arrives, every earlier one has.
    patch(second.url.clone(), false).await;
    wait_until("the fourth change is delivered", || async {
        firsts(&receiver).len() >= 4
    })
    .await;
    let enabled: Vec<Value> = firsts(&receiver)
        .iter()
        .map(|event| event["after"]["enabled"].clone())
        .collect();
    assert_eq!(
        enabled,
        [json!(true), json!(false), json!(true), json!(false)],
        "each once, in order"
    );
    // A repeat is only ever of an event already delivered, never of one ahead of the others.
    assert!(
        receiver.received().len() <= 5,
        "at most the one event in flight at the kill repeated"
    );
    drop(second);
    receiver.stop().await;
}

#[actix_web::test]
async fn a_redirect_is_not_followed_but_retried_as_a_failure() {
    let (app, token) = setup(true, 40, 3600).await;
    let receiver = Receiver::start(0);
    receiver.status.store(307, Ordering::SeqCst);
    // A long answer: only its start is kept with the attempt.
    receiver.body_len.store(1 << 20, Ordering::SeqCst);
    let id = create(
        &app,
        &token,
        json!({"url": receiver.url, "events": ["flag.updated"]}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let deliverer = flagstaff::webhooks::deliver::spawn(app.state.clone());
    toggle(&app, &token, "production", true).await;
    wait_until("two attempts", || async {
        attempts(&app, &token, id).await.len() >= 2
    })
    .await;
    receiver.status.store(200, Ordering::SeqCst);
    wait_until("delivered once the receiver answers 200", || async {
        attempts(&app, &token, id).await[0]["outcome"] == "delivered"
    })
    .await;
    let log = attempts(&app, &token, id).await;
    for a in &log[1..] {
        assert_eq!(a["status"], 307, "{a}");
        assert_eq!(a["outcome"], "retrying");
        assert!(
            a["error"]
                .as_str()
                .unwrap()
                .contains("redirects are not followed"),
            "{a}"
        );
        let excerpt = a["response"].as_str().unwrap();
        assert!(
            excerpt.len() <= 1024 && excerpt.len() >= 1000,
            "{} bytes kept",
            excerpt.len()
        );
        assert!(excerpt.trim_end_matches('\u{fffd}').chars().all(|c| c == 'é'));
    }
    // Every request went to the receiver's own URL (the redirect led nowhere else).
    assert!(receiver.received().len() == log.len());
    deliverer.abort();
    receiver.stop().await;
}
