//! Frontend evaluation (issue 5): OFREP single and bulk, the cacheable `GET /client/v1`, CORS,
//! limits, what a client key may and may not see, the OFREP change stream, `/sdk/flagstaff.js`.
//! Third-party clients (OpenFeature SDKs, browsers) are in `ofrep_clients.rs`.

use std::time::Duration;

use actix_web::http::StatusCode;
use base64::Engine as _;
use clap::Parser as _;
use flagstaff::build_app;
use flagstaff::config::{AllowedOrigins, Cli, FrontendArgs};
use flagstaff::store::Changes;
use flagstaff::store::api_keys::{self, KeyKind};
use flagstaff::store::users::Role;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::helpers::{RealServer, Reply, TestApp};

/// Strings of the fixture that must never reach a browser: a rule's value, a segment member,
/// a target, and the keys of flags that are not client-side.
pub const SECRETS: [&str; 5] = [
    "@acme-internal.example",
    "u-member-7f3a",
    "u-target-1",
    "internal-tool",
    "api-rate-limit",
];

/// Project `web`: production and staging, a segment, client-side flags of each type with rules,
/// targets, a rollout, prerequisites, a server-only flag and a config.
pub fn document() -> Value {
    let bool_vars = json!([{"key": "on", "value": true}, {"key": "off", "value": false}]);
    json!({
        "flagstaff": 1,
        "project": {"key": "web", "name": "Web"},
        "environments": [{"key": "production", "name": "Production"}, {"key": "staging", "name": "Staging"}],
        "segments": [{"key": "vip", "name": "VIP", "included": ["u-member-7f3a"], "excluded": [], "rules": []}],
        "flags": [
            {"key": "new-checkout", "name": "New checkout", "type": "boolean", "variations": bool_vars,
             "environments": {"production": {
                "enabled": true, "off_variation": "off",
                "targets": [{"variation": "on", "values": ["u-target-1"]}],
                "rules": [{"id": "acme-staff", "clauses": [
                    {"attribute": "email", "op": "ends_with", "values": ["@acme-internal.example"]}],
                    "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}}}},
            {"key": "vip-banner", "name": "VIP banner", "type": "boolean", "variations": bool_vars,
             "environments": {"production": {"enabled": true,
                "rules": [{"id": "vip", "clauses": [{"op": "in_segment", "values": ["vip"]}], "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}}}},
            {"key": "checkout-split", "name": "Checkout split", "type": "string",
             "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}],
             "environments": {"production": {"enabled": true, "fallthrough": {"rollout": {"variations": [
                {"variation": "a", "weight": 50000}, {"variation": "b", "weight": 50000}]}}}}},
            {"key": "price", "name": "Price factor", "type": "number",
             "variations": [{"key": "full", "value": 1.0}, {"key": "sale", "value": 0.5}],
             "environments": {"production": {"enabled": true, "fallthrough": {"variation": "full"}}}},
            {"key": "max-items", "name": "Max items", "type": "number",
             "variations": [{"key": "few", "value": 3}, {"key": "many", "value": 30}],
             "environments": {"production": {"enabled": true, "fallthrough": {"variation": "many"}}}},
            {"key": "theme", "name": "Theme", "type": "json",
             "variations": [{"key": "dark", "value": {"bg": "#000", "fg": "#fff"}}, {"key": "light", "value": {"bg": "#fff", "fg": "#000"}}],
             "environments": {"production": {"enabled": true, "fallthrough": {"variation": "dark"}}}},
            {"key": "internal-tool", "name": "Internal tool", "type": "boolean", "client_side": false,
             "variations": bool_vars,
             "environments": {"production": {"enabled": true, "fallthrough": {"variation": "on"}}}},
            {"key": "api-rate-limit", "name": "API rate limit", "kind": "config", "type": "number",
             "variations": [{"key": "low", "value": 100}, {"key": "high", "value": 1000}],
             "environments": {"production": {"enabled": true, "fallthrough": {"variation": "high"}}}},
            {"key": "gated", "name": "Gated by a server-only flag", "type": "boolean", "variations": bool_vars,
             "environments": {"production": {"enabled": true,
                "prerequisites": [{"flag": "internal-tool", "variations": ["off"]}], "fallthrough": {"variation": "on"}}}},
            {"key": "gated-visible", "name": "Gated by new-checkout", "type": "boolean", "variations": bool_vars,
             "environments": {"production": {"enabled": true,
                "prerequisites": [{"flag": "new-checkout", "variations": ["on"]}], "fallthrough": {"variation": "on"}}}},
            {"key": "dormant", "name": "Dormant", "type": "boolean", "variations": bool_vars,
             "environments": {"production": {"enabled": false}}},
            {"key": "beta-ui", "name": "Beta UI", "type": "boolean", "variations": bool_vars,
             "environments": {"production": {"enabled": false, "fallthrough": {"variation": "on"}}}}
        ]
    })
}

/// The fixture: the app, an admin token and keys of both kinds.
pub struct Web {
    pub app: TestApp,
    pub admin: String,
    pub client: String,
    pub server: String,
    pub client_id: i64,
    pub staging_client: String,
}

impl Web {
    pub async fn new() -> Web {
        Self::with(TestApp::new()).await
    }

    pub async fn with(app: TestApp) -> Web {
        let admin = app.token(Role::Admin);
        let reply = app
            .call("POST", "/api/v1/import", Some(&admin), Some(document()))
            .await;
        assert_eq!(reply.status, 200, "import: {}", reply.body);
        let (client_id, client) = key(&app, "production", KeyKind::Client);
        let (_, server) = key(&app, "production", KeyKind::Server);
        let (_, staging_client) = key(&app, "staging", KeyKind::Client);
        Web {
            app,
            admin,
            client,
            server,
            client_id,
            staging_client,
        }
    }

    /// Turns `flag` on or off in production through the management API, as an admin would.
    pub async fn toggle(&self, flag: &str, enabled: bool) {
        let path = format!("/api/v1/projects/web/flags/{flag}/environments/production");
        let reply = self
            .app
            .call(
                "PATCH",
                &path,
                Some(&self.admin),
                Some(json!({"enabled": enabled})),
            )
            .await;
        assert_eq!(reply.status, 200, "toggle: {}", reply.body);
    }

    pub fn revision(&self) -> u64 {
        self.app
            .state
            .snapshots
            .find("web", "production")
            .expect("production snapshot")
            .revision
    }
}

/// Creates an SDK key in an environment of `web` and returns its id and secret.
pub fn key(app: &TestApp, environment: &str, kind: KeyKind) -> (i64, String) {
    let environment = environment.to_owned();
    app.state
        .write_blocking(move |tx| {
            let env: i64 = tx.query_row(
                "SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id
                 WHERE p.key = 'web' AND e.key = ?1",
                [&environment],
                |r| r.get(0),
            )?;
            let created = api_keys::create(tx, env, kind, "tests", None)?;
            Ok((
                created,
                Changes {
                    api_keys: true,
                    ..Changes::default()
                },
            ))
        })
        .expect("create key")
}

/// Sends a request with a raw body through the real application.
async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let service = actix_web::test::init_service(build_app(app.state.clone())).await;
    let mut req = actix_web::test::TestRequest::default()
        .method(method.parse().expect("method"))
        .uri(path);
    for (name, value) in headers {
        req = req.insert_header((*name, *value));
    }
    if let Some(body) = body {
        req = req.set_payload(body.to_vec());
    }
    let resp = actix_web::test::call_service(&service, req.to_request()).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = actix_web::test::read_body(resp).await;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        bytes: bytes.to_vec(),
    }
}

async fn evaluate(web: &Web, key: &str, flag: &str, context: Value) -> Reply {
    let auth = format!("Bearer {key}");
    let body = serde_json::to_vec(&json!({ "context": context })).unwrap();
    let path = format!("/ofrep/v1/evaluate/flags/{flag}");
    send(
        &web.app,
        "POST",
        &path,
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        Some(&body),
    )
    .await
}

async fn bulk(web: &Web, key: &str, context: Value, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("X-API-Key", key), ("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let body = serde_json::to_vec(&json!({ "context": context })).unwrap();
    send(&web.app, "POST", "/ofrep/v1/evaluate/flags", &all, Some(&body)).await
}

fn flags_of(reply: &Reply) -> Vec<&Value> {
    reply.body["flags"]
        .as_array()
        .expect("flags array")
        .iter()
        .collect()
}

fn flag<'a>(reply: &'a Reply, key: &str) -> Option<&'a Value> {
    flags_of(reply).into_iter().find(|f| f["key"] == key)
}

fn encode(context: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(context).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Single flag

#[actix_web::test]
async fn a_single_flag_answers_value_variant_reason_and_metadata() {
    let web = Web::new().await;
    let reply = evaluate(
        &web,
        &web.client,
        "new-checkout",
        json!({"targetingKey": "u-9", "email": "jo@acme-internal.example"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let b = &reply.body;
    assert_eq!(
        (&b["key"], &b["value"], &b["variant"], &b["reason"]),
        (
            &json!("new-checkout"),
            &json!(true),
            &json!("on"),
            &json!("TARGETING_MATCH")
        )
    );
    assert_eq!(b["metadata"]["ruleId"], "acme-staff");
    assert!(b["metadata"]["version"].as_u64().is_some(), "{b}");

    let reply = evaluate(
        &web,
        &web.client,
        "new-checkout",
        json!({"targetingKey": "u-target-1"}),
    )
    .await;
    assert_eq!(
        (&reply.body["value"], &reply.body["reason"]),
        (&json!(true), &json!("TARGETING_MATCH"))
    );
    let reply = evaluate(&web, &web.client, "new-checkout", json!({"targetingKey": "u-2"})).await;
    assert_eq!(
        (
            &reply.body["value"],
            &reply.body["variant"],
            &reply.body["reason"]
        ),
        (&json!(false), &json!("off"), &json!("DEFAULT"))
    );
    let reply = evaluate(&web, &web.client, "dormant", json!({"targetingKey": "u-2"})).await;
    assert_eq!(
        (&reply.body["value"], &reply.body["reason"]),
        (&json!(false), &json!("DISABLED"))
    );
    let reply = evaluate(&web, &web.client, "theme", json!({})).await;
    assert_eq!(
        (&reply.body["value"], &reply.body["reason"]),
        (&json!({"bg": "#000", "fg": "#fff"}), &json!("STATIC"))
    );
    let reply = evaluate(
        &web,
        &web.client,
        "checkout-split",
        json!({"targetingKey": "u-2"}),
    )
    .await;
    assert_eq!(reply.body["reason"], "SPLIT");
    assert!(["A", "B"].contains(&reply.body["value"].as_str().unwrap()));
}

#[actix_web::test]
async fn numbers_keep_their_written_form_so_floats_stay_floats() {
    let web = Web::new().await;
    let reply = evaluate(&web, &web.client, "price", json!({})).await;
    let text = String::from_utf8(reply.bytes.clone()).unwrap();
    assert!(
        text.contains("\"value\":1.0"),
        "a float variation must serialize as 1.0: {text}"
    );
    let reply = evaluate(&web, &web.client, "max-items", json!({})).await;
    let text = String::from_utf8(reply.bytes.clone()).unwrap();
    assert!(
        text.contains("\"value\":30,"),
        "an integer variation stays an integer: {text}"
    );
}

#[actix_web::test]
async fn a_missing_targeting_key_is_accepted_and_only_a_rollout_needs_it() {
    let web = Web::new().await;
    for body in [&b"{\"context\": {}}"[..], b"{}", b""] {
        let auth = format!("Bearer {}", web.client);
        let reply = send(
            &web.app,
            "POST",
            "/ofrep/v1/evaluate/flags/new-checkout",
            &[("Authorization", &auth)],
            Some(body),
        )
        .await;
        assert_eq!(
            reply.status,
            200,
            "{}: {}",
            String::from_utf8_lossy(body),
            reply.body
        );
        assert_eq!(reply.body["value"], false);
    }
    let reply = evaluate(&web, &web.client, "checkout-split", json!({"plan": "free"})).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["key"], "checkout-split");
    assert_eq!(reply.body["errorCode"], "TARGETING_KEY_MISSING");
    assert!(
        reply.body["errorDetails"]
            .as_str()
            .unwrap()
            .contains("targetingKey"),
        "{}",
        reply.body
    );
}

#[actix_web::test]
async fn a_client_key_does_not_know_server_only_flags_or_configs() {
    let web = Web::new().await;
    for hidden in ["internal-tool", "api-rate-limit", "no-such-flag"] {
        let reply = evaluate(&web, &web.client, hidden, json!({"targetingKey": "u-1"})).await;
        assert_eq!(reply.status, 404, "{hidden}: {}", reply.body);
        assert_eq!(reply.body["key"], hidden);
        assert_eq!(reply.body["errorCode"], "FLAG_NOT_FOUND");
        assert!(reply.body["errorDetails"].is_string());
        assert!(reply.body.get("value").is_none());
    }
    let reply = evaluate(&web, &web.server, "internal-tool", json!({"targetingKey": "u-1"})).await;
    assert_eq!((reply.status.as_u16(), &reply.body["value"]), (200, &json!(true)));
    let reply = evaluate(&web, &web.server, "api-rate-limit", json!({})).await;
    assert_eq!((reply.status.as_u16(), &reply.body["value"]), (200, &json!(1000)));
    // Another environment's key sees that environment: new-checkout is off in staging.
    let reply = evaluate(
        &web,
        &web.staging_client,
        "new-checkout",
        json!({"targetingKey": "u-target-1"}),
    )
    .await;
    assert_eq!(
        (&reply.body["value"], &reply.body["reason"]),
        (&json!(false), &json!("DISABLED"))
    );
}

#[actix_web::test]
async fn a_prerequisite_failure_is_disabled_on_the_wire_and_names_only_visible_flags() {
    let web = Web::new().await;
    let reply = evaluate(&web, &web.server, "gated", json!({"targetingKey": "u-1"})).await;
    assert_eq!(
        (&reply.body["value"], &reply.body["reason"]),
        (&json!(false), &json!("DISABLED"))
    );
    assert_eq!(reply.body["metadata"]["prerequisite"], "internal-tool");
    assert_eq!(reply.body["metadata"]["prerequisiteFailed"], true);
    let reply = evaluate(&web, &web.client, "gated", json!({"targetingKey": "u-1"})).await;
    assert_eq!(
        (&reply.body["value"], &reply.body["reason"]),
        (&json!(false), &json!("DISABLED"))
    );
    assert_eq!(reply.body["metadata"]["prerequisiteFailed"], true);
    assert!(
        reply.body["metadata"].get("prerequisite").is_none(),
        "{}",
        reply.body
    );
    let reply = evaluate(&web, &web.client, "gated-visible", json!({"targetingKey": "u-1"})).await;
    assert_eq!(reply.body["metadata"]["prerequisite"], "new-checkout");
    let reply = evaluate(
        &web,
        &web.client,
        "gated-visible",
        json!({"targetingKey": "u-target-1"}),
    )
    .await;
    assert_eq!(
        (&reply.body["value"], &reply.body["reason"]),
        (&json!(true), &json!("DEFAULT"))
    );
}

#[actix_web::test]
async fn bad_bodies_and_contexts_get_ofrep_errors() {
    let web = Web::new().await;
    let auth = format!("Bearer {}", web.client);
    let cases: [(&[u8], &str, &str); 5] = [
        (b"{not json", "PARSE_ERROR", "JSON"),
        (b"[1, 2]", "INVALID_CONTEXT", "context"),
        (b"{\"context\": [1]}", "INVALID_CONTEXT", "an array"),
        (b"{\"context\": \"u-1\"}", "INVALID_CONTEXT", "a string"),
        (
            b"{\"context\": {\"targetingKey\": 42}}",
            "INVALID_CONTEXT",
            "targetingKey",
        ),
    ];
    for (body, code, mentions) in cases {
        for path in [
            "/ofrep/v1/evaluate/flags/new-checkout",
            "/ofrep/v1/evaluate/flags",
        ] {
            let reply = send(&web.app, "POST", path, &[("Authorization", &auth)], Some(body)).await;
            let shown = String::from_utf8_lossy(body);
            assert_eq!(reply.status, 400, "{path} {shown}: {}", reply.body);
            assert_eq!(reply.body["errorCode"], code, "{path} {shown}: {}", reply.body);
            let details = reply.body["errorDetails"].as_str().unwrap_or_default();
            assert!(details.contains(mentions), "{path} {shown}: {details}");
            assert_eq!(
                reply.body.get("key").is_some(),
                path.ends_with("new-checkout"),
                "{}",
                reply.body
            );
        }
    }
}

#[actix_web::test]
async fn keys_are_required_and_checked() {
    let web = Web::new().await;
    let body = b"{\"context\": {}}";
    for path in [
        "/ofrep/v1/evaluate/flags/new-checkout",
        "/ofrep/v1/evaluate/flags",
    ] {
        let reply = send(&web.app, "POST", path, &[], Some(body)).await;
        assert_eq!(reply.status, 401, "{path}");
        assert!(
            reply.body["errorDetails"].as_str().unwrap().contains("key"),
            "{}",
            reply.body
        );
        let reply = send(
            &web.app,
            "POST",
            path,
            &[("X-API-Key", "fs_cli_nope")],
            Some(body),
        )
        .await;
        assert_eq!(reply.status, 401, "{path}");
        let admin = format!("Bearer {}", web.admin);
        let reply = send(&web.app, "POST", path, &[("Authorization", &admin)], Some(body)).await;
        assert_eq!(reply.status, 401, "an admin token is no SDK key: {path}");
    }
    let id = web.client_id;
    web.app
        .state
        .write_blocking(move |tx| {
            let env: i64 = tx.query_row("SELECT environment_id FROM api_keys WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
            api_keys::revoke(tx, env, id)?;
            Ok((
                (),
                Changes {
                    api_keys: true,
                    ..Changes::default()
                },
            ))
        })
        .unwrap();
    let reply = evaluate(&web, &web.client, "new-checkout", json!({})).await;
    assert_eq!(reply.status, 401, "a revoked key is refused at once");
}

// ---------------------------------------------------------------------------------------------
// Bulk

#[actix_web::test]
async fn bulk_lists_what_the_key_may_see_with_failures_inline() {
    let web = Web::new().await;
    let reply = bulk(&web, &web.client, json!({}), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let keys: Vec<&str> = flags_of(&reply)
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "beta-ui",
            "checkout-split",
            "dormant",
            "gated",
            "gated-visible",
            "max-items",
            "new-checkout",
            "price",
            "theme",
            "vip-banner"
        ]
    );
    let split = flag(&reply, "checkout-split").unwrap();
    assert_eq!(split["errorCode"], "TARGETING_KEY_MISSING");
    assert!(split.get("value").is_none());
    assert_eq!(flag(&reply, "gated").unwrap()["reason"], "DISABLED");
    for f in flags_of(&reply) {
        if f.get("errorCode").is_none() {
            for field in ["key", "value", "variant", "reason", "metadata"] {
                assert!(f.get(field).is_some(), "{field} missing in {f}");
            }
        }
    }
    assert_eq!(
        reply.body["metadata"],
        json!({"project": "web", "environment": "production"})
    );

    let reply = bulk(&web, &web.server, json!({"targetingKey": "u-1"}), &[]).await;
    let keys: Vec<&str> = flags_of(&reply)
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&"internal-tool") && keys.contains(&"api-rate-limit"),
        "{keys:?}"
    );
    assert_eq!(
        flag(&reply, "gated").unwrap()["metadata"]["prerequisite"],
        "internal-tool"
    );
}

#[actix_web::test]
async fn bulk_etag_follows_what_is_served_and_answers_304() {
    let web = Web::new().await;
    let first = bulk(&web, &web.client, json!({"targetingKey": "u-2"}), &[]).await;
    let etag = first.header("etag").expect("ETag").to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "a strong ETag: {etag}"
    );

    let again = bulk(
        &web,
        &web.client,
        json!({"targetingKey": "u-2"}),
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.bytes.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));

    // An attribute no flag looks at serves the same: same ETag. One a rule looks at: new ETag.
    let same = bulk(
        &web,
        &web.client,
        json!({"targetingKey": "u-2", "plan": "free"}),
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    let other = bulk(
        &web,
        &web.client,
        json!({"targetingKey": "u-2", "email": "x@acme-internal.example"}),
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(other.status, 200);
    assert_ne!(other.header("etag"), Some(etag.as_str()));
    assert_eq!(flag(&other, "new-checkout").unwrap()["value"], true);

    // An admin's change of a flag this context sees: 200 with the new value.
    web.toggle("new-checkout", false).await;
    let changed = bulk(
        &web,
        &web.client,
        json!({"targetingKey": "u-2"}),
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(changed.status, 200);
    assert_eq!(flag(&changed, "new-checkout").unwrap()["reason"], "DISABLED");

    // flagConfigEtag / flagConfigLastModified are accepted.
    let body = serde_json::to_vec(&json!({"context": {"targetingKey": "u-2"}})).unwrap();
    let path = "/ofrep/v1/evaluate/flags?flagConfigEtag=r1-abc&flagConfigLastModified=1771622898";
    let reply = send(&web.app, "POST", path, &[("X-API-Key", &web.client)], Some(&body)).await;
    assert_eq!(reply.status, 200);
}

#[actix_web::test]
async fn event_streams_carry_a_client_key_or_a_token_never_a_server_key() {
    let web = Web::new().await;
    let reply = bulk(&web, &web.client, json!({}), &[]).await;
    assert_eq!(
        reply.body["eventStreams"],
        json!([{"type": "sse", "endpoint": {"requestUri": format!("/ofrep/v1/stream?key={}", web.client)}}])
    );
    let reply = bulk(&web, &web.server, json!({}), &[]).await;
    let uri = reply.body["eventStreams"][0]["endpoint"]["requestUri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(uri.starts_with("/ofrep/v1/stream?token=v1."), "{uri}");
    assert!(
        !String::from_utf8_lossy(&reply.bytes).contains(&web.server),
        "the server key must not be echoed"
    );

    let app =
        TestApp::with_settings(|s| s.serve.frontend.public_url = Some("https://flags.example.com".into()));
    let web = Web::with(app).await;
    let reply = bulk(&web, &web.client, json!({}), &[]).await;
    assert_eq!(
        reply.body["eventStreams"],
        json!([{"type": "sse", "url": format!("https://flags.example.com/ofrep/v1/stream?key={}", web.client)}])
    );
}

// ---------------------------------------------------------------------------------------------
// Nothing secret leaves, nothing is kept

#[actix_web::test]
async fn browser_answers_never_hold_rules_segment_members_or_server_only_flags() {
    let web = Web::new().await;
    let contexts = [
        json!({}),
        json!({"targetingKey": "u-member-7f3a"}),
        json!({"targetingKey": "u-target-1", "email": "a@acme-internal.example"}),
    ];
    for context in contexts {
        let mut answers = vec![("", bulk(&web, &web.client, context.clone(), &[]).await)];
        for flag in ["new-checkout", "vip-banner", "gated", "internal-tool"] {
            answers.push((flag, evaluate(&web, &web.client, flag, context.clone()).await));
        }
        let get = send(
            &web.app,
            "GET",
            &format!("/client/v1/{}/{}", web.client, encode(&context)),
            &[],
            None,
        )
        .await;
        answers.push(("", get));
        for (asked, answer) in answers {
            let text = String::from_utf8_lossy(&answer.bytes);
            for secret in SECRETS {
                // What the caller sent (its context, the flag it asked for) may come back;
                // nothing else may.
                if context.to_string().contains(secret) || asked == secret {
                    continue;
                }
                assert!(!text.contains(secret), "{secret:?} leaked in {text}");
            }
        }
    }
}

#[actix_web::test]
async fn contexts_are_never_stored() {
    let web = Web::new().await;
    let marker = "ctx-marker-5d1e9b";
    let context = json!({"targetingKey": marker, "email": format!("{marker}@example.com")});
    // Each path evaluated the context (a refused request would prove nothing).
    let reply = bulk(&web, &web.client, context.clone(), &[]).await;
    assert_eq!(reply.status, 200, "bulk: {}", reply.body);
    assert!(flag(&reply, "new-checkout").is_some(), "{}", reply.body);
    let reply = evaluate(&web, &web.client, "new-checkout", context.clone()).await;
    assert_eq!(reply.status, 200, "single: {}", reply.body);
    assert_eq!(reply.body["key"], "new-checkout", "{}", reply.body);
    let reply = send(
        &web.app,
        "GET",
        &format!("/client/v1/{}/{}", web.client, encode(&context)),
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "client GET: {}", reply.body);
    assert!(reply.body.is_object(), "{}", reply.body);
    // Let any background flush of evaluation counts happen, then read every file of the data dir.
    flagstaff::events::flush(&web.app.state).await.expect("flush");
    let mut dirs = vec![web.app.dir.path().to_owned()];
    let mut files = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            let found = bytes.windows(marker.len()).any(|w| w == marker.as_bytes());
            assert!(!found, "the context was written to {}", path.display());
        }
    }
    assert!(files > 0, "the data dir holds the database");
}

#[actix_web::test]
async fn what_browsers_are_served_is_counted_for_the_insights() {
    let web = Web::new().await;
    let context = json!({"targetingKey": "u-target-1"});
    bulk(&web, &web.client, context.clone(), &[]).await;
    evaluate(&web, &web.client, "new-checkout", context.clone()).await;
    send(
        &web.app,
        "GET",
        &format!("/client/v1/{}/{}", web.client, encode(&context)),
        &[],
        None,
    )
    .await;
    // Workers hand their counts over once a second; each flush writes what was handed over.
    let count = |variant: &'static str| {
        web.app
            .state
            .store
            .read_blocking(move |c| {
                Ok(c.query_row(
                    "SELECT coalesce(sum(count), 0) FROM evaluation_counts WHERE flag_key = 'new-checkout' AND variant = ?1",
                    [variant],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .unwrap()
    };
    for _ in 0..100 {
        flagstaff::events::flush(&web.app.state).await.expect("flush");
        if count("on") >= 3 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (count("on"), count("off")),
        (3, 0),
        "bulk, single and GET each served `on` once"
    );

    // Served from the next snapshot: counted by the variant that one served, beside the first.
    web.toggle("new-checkout", false).await;
    bulk(&web, &web.client, context.clone(), &[]).await;
    bulk(&web, &web.client, context, &[]).await;
    for _ in 0..100 {
        flagstaff::events::flush(&web.app.state).await.expect("flush");
        if count("off") >= 2 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (count("on"), count("off")),
        (3, 2),
        "after the toggle, `off` twice"
    );
}

#[actix_web::test]
async fn contexts_too_big_or_too_deep_are_refused_naming_the_limit() {
    let app = TestApp::with_settings(|s| {
        s.serve.frontend.max_context_bytes = 1024;
        s.serve.frontend.max_context_depth = 3;
    });
    let web = Web::with(app).await;
    let big = json!({"targetingKey": "u", "blob": "x".repeat(2000)});
    let deep = json!({"targetingKey": "u", "a": {"b": {"c": {"d": 1}}}});
    for (context, mentions) in [(&big, "--max-context-bytes"), (&deep, "--max-context-depth")] {
        for reply in [
            evaluate(&web, &web.client, "new-checkout", context.clone()).await,
            bulk(&web, &web.client, context.clone(), &[]).await,
        ] {
            assert_eq!(reply.status, 400);
            assert_eq!(reply.body["errorCode"], "INVALID_CONTEXT");
            assert!(
                reply.body["errorDetails"].as_str().unwrap().contains(mentions),
                "{}",
                reply.body
            );
        }
        let reply = send(
            &web.app,
            "GET",
            &format!("/client/v1/{}/{}", web.client, encode(context)),
            &[],
            None,
        )
        .await;
        assert_eq!(reply.status, 400);
        assert_eq!(reply.body["error"]["code"], "invalid_context");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(mentions),
            "{}",
            reply.body
        );
    }
    let fine = json!({"targetingKey": "u", "a": {"b": 1}});
    assert_eq!(bulk(&web, &web.client, fine, &[]).await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// CORS

#[actix_web::test]
async fn preflights_are_answered_for_the_public_endpoints_only() {
    let web = Web::new().await;
    let preflight = [
        ("Origin", "http://shop.example:3000"),
        ("Access-Control-Request-Method", "POST"),
        (
            "Access-Control-Request-Headers",
            "authorization,content-type,if-none-match",
        ),
    ];
    for path in [
        "/ofrep/v1/evaluate/flags",
        "/ofrep/v1/evaluate/flags/new-checkout",
        "/client/v1/k/e30",
    ] {
        let reply = send(&web.app, "OPTIONS", path, &preflight, None).await;
        assert!(reply.status.is_success(), "{path}: {}", reply.status);
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"), "{path}");
        let allowed = reply
            .header("access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        for h in ["authorization", "x-api-key", "content-type", "if-none-match"] {
            assert!(allowed.contains(h), "{path}: {h} not in {allowed}");
        }
        assert!(
            reply
                .header("access-control-allow-methods")
                .unwrap()
                .contains("POST")
        );
    }
    let reply = bulk(
        &web,
        &web.client,
        json!({}),
        &[("Origin", "http://shop.example:3000")],
    )
    .await;
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let exposed = reply.header("access-control-expose-headers").unwrap();
    assert!(
        exposed.contains("ETag") && exposed.contains("Retry-After"),
        "{exposed}"
    );
    // Errors carry the headers too, so a page can read why.
    let reply = send(
        &web.app,
        "POST",
        "/ofrep/v1/evaluate/flags",
        &[("Origin", "http://shop.example:3000")],
        Some(b"{}"),
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("access-control-allow-origin")),
        (401, Some("*"))
    );

    for path in ["/api/v1/projects", "/"] {
        let reply = send(&web.app, "OPTIONS", path, &preflight, None).await;
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "{path} must not allow other origins"
        );
        let reply = send(
            &web.app,
            "GET",
            path,
            &[("Origin", "http://shop.example:3000")],
            None,
        )
        .await;
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "{path} must not allow other origins"
        );
    }
}

#[actix_web::test]
async fn allowed_origins_can_be_listed() {
    let app = TestApp::with_settings(|s| {
        s.serve.frontend.cors_origins = AllowedOrigins::parse("https://shop.example").unwrap();
    });
    let web = Web::with(app).await;
    let ok = [
        ("Origin", "https://shop.example"),
        ("Access-Control-Request-Method", "POST"),
    ];
    let reply = send(&web.app, "OPTIONS", "/ofrep/v1/evaluate/flags", &ok, None).await;
    assert!(reply.status.is_success());
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let bad = [
        ("Origin", "https://evil.example"),
        ("Access-Control-Request-Method", "POST"),
    ];
    let reply = send(&web.app, "OPTIONS", "/ofrep/v1/evaluate/flags", &bad, None).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("access-control-allow-origin"), None);
    let reply = bulk(
        &web,
        &web.client,
        json!({}),
        &[("Origin", "https://evil.example")],
    )
    .await;
    assert_eq!(reply.header("access-control-allow-origin"), None);
    assert!(reply.headers.get_all("vary").any(|v| v == "Origin"));
    let reply = bulk(
        &web,
        &web.client,
        json!({}),
        &[("Origin", "https://shop.example")],
    )
    .await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
}

// ---------------------------------------------------------------------------------------------
// The cacheable GET

#[actix_web::test]
async fn the_cacheable_get_serves_values_with_etag_and_cache_control() {
    let web = Web::new().await;
    let context = json!({"targetingKey": "u-target-1"});
    let path = format!("/client/v1/{}/{}", web.client, encode(&context));
    let reply = send(&web.app, "GET", &path, &[], None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["flags"]["new-checkout"], true);
    assert_eq!(reply.body["flags"]["theme"], json!({"bg": "#000", "fg": "#fff"}));
    assert_eq!(reply.body["flags"]["gated-visible"], true);
    assert!(reply.body["flags"].get("internal-tool").is_none());
    assert_eq!(reply.body["revision"], web.revision());
    let cache = reply.header("cache-control").unwrap();
    assert!(
        cache.contains("public") && cache.contains("max-age=10") && cache.contains("stale-if-error=604800"),
        "{cache}"
    );
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let etag = reply.header("etag").unwrap().to_owned();

    let again = send(
        &web.app,
        "GET",
        &format!("{path}?r=7"),
        &[("If-None-Match", &etag)],
        None,
    )
    .await;
    assert_eq!(
        again.status,
        StatusCode::NOT_MODIFIED,
        "query parameters are ignored"
    );
    assert!(again.header("cache-control").is_some());

    // Padding is optional; a rollout without a targetingKey is left out, not an error.
    let padded = format!("/client/v1/{}/{}==", web.client, encode(&json!({"a": 1})));
    let reply = send(&web.app, "GET", &padded, &[], None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body["flags"].get("checkout-split").is_none());
    assert_eq!(reply.body["flags"]["new-checkout"], false);

    web.toggle("new-checkout", false).await;
    let after = send(&web.app, "GET", &path, &[("If-None-Match", &etag)], None).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.body["flags"]["new-checkout"], false);
}

#[actix_web::test]
async fn the_cacheable_get_takes_client_keys_only_and_checks_the_context() {
    let web = Web::new().await;
    let reply = send(
        &web.app,
        "GET",
        &format!("/client/v1/{}/e30", web.server),
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, 403, "a server key in a URL is refused");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoke"),
        "{}",
        reply.body
    );
    let reply = send(&web.app, "GET", "/client/v1/fs_cli_unknown/e30", &[], None).await;
    assert_eq!(reply.status, 401);
    for bad in [
        "!!!",
        &encode(&json!([1])),
        &encode(&json!({"targetingKey": 3})),
        "bm90IGpzb24",
    ] {
        let reply = send(
            &web.app,
            "GET",
            &format!("/client/v1/{}/{bad}", web.client),
            &[],
            None,
        )
        .await;
        assert_eq!(reply.status, 400, "{bad}");
        assert_eq!(reply.body["error"]["code"], "invalid_context", "{bad}");
        assert_eq!(reply.body["error"]["path"], "context", "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// The browser SDK file

#[actix_web::test]
async fn the_browser_sdk_is_served_small_and_cross_origin() {
    let app = TestApp::new();
    let headers = [("Origin", "http://page.example"), ("Accept-Encoding", "gzip")];
    let reply = send(&app, "GET", "/sdk/flagstaff.js", &headers, None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("*"),
        "module scripts load with CORS"
    );
    assert!(
        reply.bytes.len() <= 4096,
        "flagstaff.js is {} bytes gzipped; the goal is 4 KB",
        reply.bytes.len()
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&reply.bytes[..]), &mut text).unwrap();
    assert_eq!(text, include_str!("../../sdk/js/flagstaff.js"));
    for export in [
        "export function init",
        "export const isEnabled",
        "export const get",
        "export const identify",
    ] {
        assert!(text.contains(export), "{export}");
    }
    let etag = reply.header("etag").unwrap().to_owned();
    let reply = send(
        &app,
        "GET",
        "/sdk/flagstaff.js",
        &[("If-None-Match", &etag)],
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    let reply = send(&app, "GET", "/sdk/flagstaff.js", &[], None).await;
    assert_eq!(reply.bytes, include_bytes!("../../sdk/js/flagstaff.js"));
}

#[actix_web::test]
async fn the_browser_sdk_honours_q_values_and_weak_etag_lists() {
    let app = TestApp::new();
    let plain = include_bytes!("../../sdk/js/flagstaff.js");
    // `q=0` refuses gzip, however it is spelled; identity preferred by name wins too.
    for refused in [
        "gzip;q=0",
        "gzip; q=0.000, br",
        "*;q=0",
        "gzip;q=0.5, identity;q=1",
        "br",
    ] {
        let reply = send(
            &app,
            "GET",
            "/sdk/flagstaff.js",
            &[("Accept-Encoding", refused)],
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{refused}");
        assert_eq!(reply.header("content-encoding"), None, "{refused}");
        assert_eq!(reply.bytes, plain, "{refused}");
    }
    for accepted in ["gzip;q=0.5", "br, *", "x-gzip", "GZIP;Q=1"] {
        let reply = send(
            &app,
            "GET",
            "/sdk/flagstaff.js",
            &[("Accept-Encoding", accepted)],
            None,
        )
        .await;
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "{accepted}");
    }
    let etag = send(&app, "GET", "/sdk/flagstaff.js", &[], None)
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let listed = format!("\"<script>,\", W/{etag}");
    for fresh in [listed.as_str(), "*"] {
        let reply = send(
            &app,
            "GET",
            "/sdk/flagstaff.js",
            &[("If-None-Match", fresh)],
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "{fresh}");
        assert_eq!(reply.header("etag"), Some(etag.as_str()));
    }
    let stale = format!("{}0\"", etag.trim_end_matches('"'));
    for stale in ["\"x\"", etag.trim_matches('"'), &stale] {
        let reply = send(
            &app,
            "GET",
            "/sdk/flagstaff.js",
            &[("If-None-Match", stale)],
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "{stale}");
    }
}

// ---------------------------------------------------------------------------------------------
// Settings

#[test]
fn frontend_defaults_are_the_command_lines() {
    let cli = Cli::try_parse_from(["flagstaff"]).unwrap();
    assert_eq!(cli.serve.frontend, FrontendArgs::default());
    let cli = Cli::try_parse_from([
        "flagstaff",
        "--cors-origins",
        "https://a.example,https://b.example",
    ])
    .unwrap();
    assert_eq!(
        cli.serve.frontend.cors_origins,
        AllowedOrigins::Listed(vec!["https://a.example".into(), "https://b.example".into()])
    );
    let err = Cli::try_parse_from(["flagstaff", "--public-url", "flags.example.com"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--public-url"), "{err}");
    let cli = Cli::try_parse_from(["flagstaff", "--public-url", "https://flags.example.com/"]).unwrap();
    assert_eq!(
        cli.serve.frontend.public_url.as_deref(),
        Some("https://flags.example.com")
    );
}

// ---------------------------------------------------------------------------------------------
// The change stream, over a real socket

/// A minimal reader of a text/event-stream body: yields `(id, data)` of each event.
pub struct SseReader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<actix_web::web::Bytes>>,
    buffer: String,
}

impl SseReader {
    pub async fn open(url: &str, last_event_id: Option<&str>) -> (reqwest::StatusCode, Option<SseReader>) {
        let mut req = reqwest::Client::new()
            .get(url)
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("connect");
        let status = resp.status();
        let reader = status.is_success().then(|| SseReader {
            body: resp.bytes_stream().boxed(),
            buffer: String::new(),
        });
        (status, reader)
    }

    /// The next event with data, or `None` when the stream ends. Bounded: panics after 10 s.
    pub async fn next(&mut self) -> Option<(Option<String>, Value)> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut id, mut data) = (None, String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = Some(v.trim().to_owned());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim());
                        }
                    }
                    if !data.is_empty() {
                        return Some((id, serde_json::from_str(&data).expect("JSON data")));
                    }
                    continue;
                }
                match self.body.next().await {
                    Some(Ok(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                    _ => return None,
                }
            }
        })
        .await
        .expect("an SSE event within 10 s")
    }
}

#[actix_web::test]
async fn the_stream_sends_refetch_events_with_revisions_and_honours_last_event_id() {
    let web = Web::with(TestApp::with_settings(|s| s.serve.stream_keepalive_secs = 1)).await;
    let server = RealServer::start(&web.app.state);
    let url = format!("{}/ofrep/v1/stream?key={}", server.url, web.client);

    let (status, reader) = SseReader::open(&url, None).await;
    assert_eq!(status, 200);
    let mut reader = reader.unwrap();
    let now = web.revision();
    let (id, data) = reader.next().await.unwrap();
    assert_eq!(
        id,
        Some(now.to_string()),
        "a new subscriber is told the current revision"
    );
    assert_eq!(data["type"], "refetchEvaluation");
    assert!(data["etag"].is_string());

    web.toggle("new-checkout", false).await;
    let (id, data) = reader.next().await.unwrap();
    assert_eq!(
        (id, &data["type"]),
        (Some((now + 1).to_string()), &json!("refetchEvaluation"))
    );

    // Resuming at the current revision: nothing until the next change.
    let current = web.revision().to_string();
    let (_, resumed) = SseReader::open(&url, Some(&current)).await;
    let mut resumed = resumed.unwrap();
    // Resuming from an older revision: told at once.
    let (_, behind) = SseReader::open(&url, Some(&now.to_string())).await;
    let mut behind = behind.unwrap();
    assert_eq!(behind.next().await.unwrap().0, Some(current.clone()));
    web.toggle("new-checkout", true).await;
    assert_eq!(resumed.next().await.unwrap().0, Some((now + 2).to_string()));
    assert_eq!(reader.next().await.unwrap().0, Some((now + 2).to_string()));

    // A change in another environment is not announced here.
    let path = "/api/v1/projects/web/flags/new-checkout/environments/staging";
    let reply = web
        .app
        .call("PATCH", path, Some(&web.admin), Some(json!({"enabled": true})))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    web.toggle("vip-banner", false).await;
    let (id, data) = reader.next().await.unwrap();
    let production = web.app.state.snapshots.find("web", "production").unwrap();
    assert_eq!(id, Some(production.revision.to_string()));
    assert_eq!(data["etag"].as_str(), Some(production.etag.trim_matches('"')));

    // Revoking the key ends its streams within a keep-alive interval, change or not.
    let id = web.client_id;
    web.app
        .state
        .write_blocking(move |tx| {
            let env: i64 = tx.query_row("SELECT environment_id FROM api_keys WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
            api_keys::revoke(tx, env, id)?;
            Ok((
                (),
                Changes {
                    api_keys: true,
                    ..Changes::default()
                },
            ))
        })
        .unwrap();
    assert_eq!(reader.next().await, None, "the stream of a revoked key ends");
    let (status, _) = SseReader::open(&url, None).await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[actix_web::test]
async fn the_stream_takes_tokens_for_server_keys_and_never_a_server_key_in_the_url() {
    let web = Web::new().await;
    let server = RealServer::start(&web.app.state);
    let (status, _) = SseReader::open(
        &format!("{}/ofrep/v1/stream?key={}", server.url, web.server),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let reply = bulk(&web, &web.server, json!({}), &[]).await;
    let uri = reply.body["eventStreams"][0]["endpoint"]["requestUri"]
        .as_str()
        .unwrap();
    let (status, reader) = SseReader::open(&format!("{}{uri}", server.url), None).await;
    assert_eq!(status, 200);
    let (id, _) = reader.unwrap().next().await.unwrap();
    assert_eq!(id, Some(web.revision().to_string()));
    let forged = uri.replace("token=v1.", "token=v1.9");
    let (status, _) = SseReader::open(&format!("{}{forged}", server.url), None).await;
    assert_eq!(status, 401);
    let (status, _) = SseReader::open(&format!("{}/ofrep/v1/stream", server.url), None).await;
    assert_eq!(status, 401);
    server.stop().await;
}
