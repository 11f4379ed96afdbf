//! Changing flags safely (issue 16, DESIGN.md §9): confirmation per environment, scheduled
//! changes (API, applier, export/import, a real server's stream, `kill -9`, two processes on one
//! data dir) and compare & promote.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use flagstaff::store::users::Role;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::admin::{Agent, user};
use crate::helpers::TestApp;
use crate::ops::{ENV, Flagstaff, PROJECT, Prepared, bundle, client};

/// A name with what breaks careless code: commas, quotes, a tab, unicode, markup.
const HOSTILE: &str = "Banner, \"quoted\"\t<script>alert(1)</script> ✓";

/// RFC 3339 (UTC) for `ms` milliseconds from now.
fn in_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(ms);
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format a time")
}

/// Project `shop` (development, staging, production) with a string flag `banner` (variations
/// a, b, c) and a boolean flag `new-checkout`.
fn shop_document() -> Value {
    json!({
        "flagstaff": 1,
        "project": {"key": "shop", "name": "Shop"},
        "environments": [{"key": "development", "name": "Development"},
                         {"key": "staging", "name": "Staging"},
                         {"key": "production", "name": "Production"}],
        "flags": [
            {"key": "banner", "name": HOSTILE, "type": "string",
             "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B, \"b\""}, {"key": "c", "value": "<c>"}]},
            {"key": "new-checkout", "name": "New checkout", "type": "boolean",
             "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]}
        ]
    })
}

async fn shop(app: &TestApp) -> String {
    let admin = app.token(Role::Admin);
    let reply = app
        .call("POST", "/api/v1/import", Some(&admin), Some(shop_document()))
        .await;
    assert!(reply.status.is_success(), "{} {}", reply.status, reply.body);
    admin
}

const SCHEDULES: &str = "/api/v1/projects/shop/flags/banner/environments/production/schedules";

fn schedule_count(app: &TestApp) -> i64 {
    app.state
        .store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM schedules", [], |r| r.get(0))?))
        .unwrap()
}

fn audit_rows(app: &TestApp) -> Vec<(String, Option<i64>, String, String)> {
    app.state
        .store
        .read_blocking(|c| {
            let mut stmt =
                c.prepare("SELECT actor, actor_user_id, action, entity_kind FROM audit_log ORDER BY id")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .unwrap()
}

// ── confirmation per environment ──────────────────────────────────────────────────────────

#[actix_web::test]
async fn the_confirmation_setting_is_per_environment_in_the_api_the_document_and_the_toggle() {
    let app = TestApp::new();
    let admin_token = shop_and_admin(&app).await;
    let env = |e: &str| format!("/api/v1/projects/shop/environments/{e}");
    // A new project: production asks, the others do not.
    let project = app
        .call("GET", "/api/v1/projects/shop", Some(&admin_token), None)
        .await;
    let asks: Vec<(String, bool)> = project.body["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_owned(),
                e["requires_confirmation"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        asks,
        [
            ("development".into(), false),
            ("staging".into(), false),
            ("production".into(), true)
        ]
    );
    // Turned around through the API: staging asks, production does not.
    for (e, name, on) in [("staging", "Staging", true), ("production", "Production", false)] {
        let reply = app
            .call(
                "PUT",
                &env(e),
                Some(&admin_token),
                Some(json!({"name": name, "requires_confirmation": on})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["requires_confirmation"], on);
    }
    let bad = app
        .call(
            "PUT",
            &env("staging"),
            Some(&admin_token),
            Some(json!({"name": "s", "requires_confirmation": "yes"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["path"], "requires_confirmation");

    // The toggle honours it: staging is confirmed on a page first, production is not.
    let email = user(&app, "ed@example.com", Role::Editor);
    let mut agent = Agent::signed_in(&app, &email).await;
    let list = agent.get("/projects/shop/flags").await;
    assert!(
        list.body
            .contains("data-confirm=\"Turn New checkout {state} in Staging?\""),
        "{}",
        list.body
    );
    assert!(!list.body.contains("in Production?"), "production no longer asks");
    let csrf = list.csrf();
    let staging = agent
        .post(
            "/projects/shop/flags/new-checkout/environments/staging/toggle",
            &[("csrf", &csrf), ("enabled", "true")],
        )
        .await;
    assert_eq!(staging.status, StatusCode::OK, "a confirmation page");
    assert!(staging.body.contains("name=\"confirmed\""), "{}", staging.body);
    let production = agent
        .post(
            "/projects/shop/flags/new-checkout/environments/production/toggle",
            &[("csrf", &csrf), ("enabled", "true")],
        )
        .await;
    assert_eq!(production.status, StatusCode::SEE_OTHER, "toggled at once");
    let editor_page = agent.get("/projects/shop/flags/new-checkout?env=staging").await;
    assert!(
        editor_page.body.contains("data-confirm=\"Save these changes to"),
        "the editor asks in staging"
    );

    // The document carries what differs from the default, and an import restores it.
    let export = app
        .call("GET", "/api/v1/projects/shop/export", Some(&admin_token), None)
        .await;
    assert_eq!(export.body["environments"][1]["requires_confirmation"], true);
    assert_eq!(export.body["environments"][2]["requires_confirmation"], false);
    assert!(
        export.body["environments"][0]
            .get("requires_confirmation")
            .is_none()
    );
    let other = TestApp::new();
    let token = other.token(Role::Admin);
    let imported = other
        .call("POST", "/api/v1/import", Some(&token), Some(export.body.clone()))
        .await;
    assert!(imported.status.is_success(), "{}", imported.body);
    let again = other
        .call("GET", "/api/v1/projects/shop/export", Some(&token), None)
        .await;
    assert_eq!(
        again.bytes, export.bytes,
        "export → import → export is byte-identical"
    );

    // The environments page: the checkbox, posted back untouched, keeps the setting; unchecked
    // it clears it.
    let admin_email = user(&app, "admin@example.com", Role::Admin);
    let mut admin = Agent::signed_in(&app, &admin_email).await;
    let page = admin.get("/projects/shop/environments").await;
    assert!(page.body.contains("Ask before changes"));
    let csrf = page.csrf();
    let saved = admin
        .post(
            "/projects/shop/environments/staging",
            &[
                ("csrf", &csrf),
                ("name", "Staging"),
                ("requires_confirmation", "true"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let e = app.call("GET", &env("staging"), Some(&admin_token), None).await;
    assert_eq!(e.body["requires_confirmation"], true);
    admin
        .post(
            "/projects/shop/environments/staging",
            &[("csrf", &csrf), ("name", "Staging")],
        )
        .await;
    let e = app.call("GET", &env("staging"), Some(&admin_token), None).await;
    assert_eq!(e.body["requires_confirmation"], false);
}

async fn shop_and_admin(app: &TestApp) -> String {
    shop(app).await
}

// ── scheduled changes through the API ─────────────────────────────────────────────────────

#[actix_web::test]
async fn a_schedule_is_validated_listed_and_cancelled_editors_schedule_and_viewers_see() {
    let app = TestApp::new();
    shop(&app).await;
    let editor = app.token(Role::Editor);
    let viewer = app.token(Role::Viewer);

    let created = app
        .call(
            "POST",
            SCHEDULES,
            Some(&editor),
            Some(json!({"at": "2030-01-01T10:00:00+02:00", "patch": {"enabled": true, "fallthrough": {"variation": "b"}}})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_i64().expect("an id");
    assert_eq!(created.body["at"], "2030-01-01T08:00:00.000Z", "stored in UTC");
    assert_eq!(created.body["status"], "pending");
    assert_eq!(
        created.body["patch"],
        json!({"enabled": true, "fallthrough": {"variation": "b"}})
    );
    assert!(
        created.body["created_by"]
            .as_str()
            .unwrap()
            .starts_with("editor-")
    );
    assert_eq!(
        created.header("location"),
        Some(format!("{SCHEDULES}/{id}").as_str())
    );

    // Mistakes are 400s naming the field, and store nothing.
    for (body, path) in [
        (
            json!({"at": "tomorrow at nine", "patch": {"enabled": true}}),
            "at",
        ),
        (
            json!({"at": "2001-01-01T00:00:00Z", "patch": {"enabled": true}}),
            "at",
        ),
        (
            json!({"at": in_ms(60_000), "patch": {"fallthrough": {"variation": "nope"}}}),
            "patch.fallthrough",
        ),
        (
            json!({"at": in_ms(60_000), "patch": {"enabled": "yes"}}),
            "patch.enabled",
        ),
        (json!({"at": in_ms(60_000), "patch": [1, 2]}), "patch"),
        (json!({"at": in_ms(60_000)}), "patch"),
    ] {
        let reply = app
            .call("POST", SCHEDULES, Some(&editor), Some(body.clone()))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        let got = reply.body["error"]["path"].as_str().unwrap_or_default();
        assert!(got.starts_with(path), "{body}: path {got:?}, expected {path:?}");
    }
    assert_eq!(schedule_count(&app), 1);

    // Viewers see, and may not schedule or cancel.
    let forbidden = app
        .call(
            "POST",
            SCHEDULES,
            Some(&viewer),
            Some(json!({"at": in_ms(60_000), "patch": {"enabled": true}})),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let listed = app.call("GET", SCHEDULES, Some(&viewer), None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["schedules"][0]["id"], id);
    let no = app
        .call("DELETE", &format!("{SCHEDULES}/{id}"), Some(&viewer), None)
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);

    // Cancel; a second cancel is a conflict; another flag's path does not reach it.
    let elsewhere = app
        .call(
            "DELETE",
            &format!("/api/v1/projects/shop/flags/new-checkout/environments/production/schedules/{id}"),
            Some(&editor),
            None,
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    let cancelled = app
        .call("DELETE", &format!("{SCHEDULES}/{id}"), Some(&editor), None)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    let twice = app
        .call("DELETE", &format!("{SCHEDULES}/{id}"), Some(&editor), None)
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let listed = app.call("GET", SCHEDULES, Some(&viewer), None).await;
    assert_eq!(listed.body["schedules"][0]["status"], "cancelled");
    // Scheduling and cancelling changed nothing served.
    let state = app
        .call(
            "GET",
            "/api/v1/projects/shop/flags/banner/environments/production",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(state.body["version"], 0);
    assert_eq!(state.body["enabled"], false);
}

#[actix_web::test]
async fn a_due_schedule_is_applied_by_schedule_for_its_author_and_one_that_no_longer_validates_fails() {
    let app = TestApp::new();
    let admin = shop(&app).await;
    let editor = app.token(Role::Editor);
    let started = Instant::now();
    let (first_at, second_at) = (in_ms(1_500), in_ms(1_600));
    let first = app
        .call(
            "POST",
            SCHEDULES,
            Some(&editor),
            Some(json!({"at": first_at, "patch": {"enabled": true, "fallthrough": {"variation": "b"}}})),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let second = app
        .call(
            "POST",
            SCHEDULES,
            Some(&editor),
            Some(json!({"at": second_at, "patch": {"fallthrough": {"variation": "c"}}})),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    // Variation c is removed after the second was scheduled.
    let mut flag = app
        .call("GET", "/api/v1/projects/shop/flags/banner", Some(&admin), None)
        .await
        .body;
    flag["variations"].as_array_mut().unwrap().pop();
    flag.as_object_mut().unwrap().remove("environments");
    let put = app
        .call(
            "PUT",
            "/api/v1/projects/shop/flags/banner",
            Some(&admin),
            Some(flag),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);

    let audit_before = audit_rows(&app).len();
    if started.elapsed() < Duration::from_millis(1_400) {
        // Not yet due: nothing happens.
        flagstaff::scheduler::apply_due(&app.state).await.unwrap();
        assert_eq!(audit_rows(&app).len(), audit_before, "nothing applied early");
    }
    tokio::time::sleep(Duration::from_millis(1_700).saturating_sub(started.elapsed())).await;
    let next = flagstaff::scheduler::apply_due(&app.state).await.unwrap();
    assert_eq!(next, None, "nothing else pending");

    let listed = app.call("GET", SCHEDULES, Some(&editor), None).await.body;
    let by_id = |id: &Value| {
        listed["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| &s["id"] == id)
            .unwrap()
            .clone()
    };
    let applied = by_id(&first.body["id"]);
    assert_eq!(applied["status"], "applied", "{listed}");
    assert_eq!(applied["version"], 1);
    assert!(
        applied["done_at"].as_str().unwrap() >= applied["at"].as_str().unwrap(),
        "never early"
    );
    let failed = by_id(&second.body["id"]);
    assert_eq!(failed["status"], "failed", "{listed}");
    assert!(
        failed["error"].as_str().unwrap().contains("\"c\""),
        "says why: {failed}"
    );

    // The flag has the first change only, served and announced.
    let state = app
        .call(
            "GET",
            "/api/v1/projects/shop/flags/banner/environments/production",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(state.body["version"], 1, "the failed one left the flag untouched");
    assert_eq!(state.body["fallthrough"], json!({"variation": "b"}));
    let snapshot = app.state.snapshots.find("shop", "production").expect("snapshot");
    let served: Value = serde_json::from_slice(&snapshot.bundle).unwrap();
    let banner = served["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "banner")
        .unwrap();
    assert_eq!(banner["environments"]["production"]["enabled"], true);

    // One audited change by "schedule" on behalf of the editor, and the failure recorded.
    let audit = audit_rows(&app);
    let new: Vec<_> = audit[audit_before..].to_vec();
    let editor_email = applied["created_by"].as_str().unwrap().to_owned();
    let editor_id = audit.iter().find(|r| r.0 == editor_email).and_then(|r| r.1);
    assert_eq!(
        new,
        [
            (
                format!("schedule ({editor_email})"),
                editor_id,
                "update".to_owned(),
                "flag_state".to_owned()
            ),
            (
                format!("schedule ({editor_email})"),
                editor_id,
                "schedule_failed".to_owned(),
                "schedule".to_owned()
            ),
        ]
    );
    // Applying again does nothing.
    flagstaff::scheduler::apply_due(&app.state).await.unwrap();
    assert_eq!(audit_rows(&app).len(), audit.len());
}

#[actix_web::test]
async fn pending_schedules_are_exported_and_imported_once() {
    let app = TestApp::new();
    let admin = shop(&app).await;
    for (at, patch) in [
        ("2031-05-01T09:00:00Z", json!({"enabled": true})),
        (
            "2030-05-01T09:00:00Z",
            json!({"targets": [{"variation": "c", "values": ["u,1", "u\t\"2\"", "<script>"]}]}),
        ),
    ] {
        let reply = app
            .call(
                "POST",
                SCHEDULES,
                Some(&admin),
                Some(json!({"at": at, "patch": patch})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let export = app
        .call("GET", "/api/v1/projects/shop/export", Some(&admin), None)
        .await;
    let schedules = export.body["schedules"]
        .as_array()
        .expect("schedules in the document");
    assert_eq!(schedules.len(), 2);
    assert_eq!(schedules[0]["at"], "2030-05-01T09:00:00.000Z", "in time order");
    assert_eq!(schedules[0]["flag"], "banner");
    assert_eq!(schedules[0]["environment"], "production");

    let other = TestApp::new();
    let token = other.token(Role::Admin);
    for _ in 0..2 {
        let imported = other
            .call("POST", "/api/v1/import", Some(&token), Some(export.body.clone()))
            .await;
        assert!(imported.status.is_success(), "{}", imported.body);
    }
    assert_eq!(
        schedule_count(&other),
        2,
        "importing twice adds nothing the second time"
    );
    let again = other
        .call("GET", "/api/v1/projects/shop/export", Some(&token), None)
        .await;
    assert_eq!(
        again.bytes, export.bytes,
        "export → import → export is byte-identical"
    );

    // A document whose schedule names a missing flag is refused whole.
    let third = TestApp::new();
    let token = third.token(Role::Admin);
    let mut doc = export.body.clone();
    doc["schedules"][1]["flag"] = json!("missing");
    let refused = third
        .call("POST", "/api/v1/import", Some(&token), Some(doc))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.body["error"]["path"], "schedules[1].flag");
    let mut doc = export.body.clone();
    doc["schedules"][0]["patch"] = json!({"fallthrough": {"variation": "zzz"}});
    let refused = third
        .call("POST", "/api/v1/import", Some(&token), Some(doc))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused.body["error"]["path"]
            .as_str()
            .unwrap()
            .starts_with("schedules[0].patch"),
        "{}",
        refused.body
    );
    let projects = third.call("GET", "/api/v1/projects", Some(&token), None).await;
    assert_eq!(
        projects.body["projects"],
        json!([]),
        "nothing stored: {}",
        projects.body
    );
    assert_eq!(schedule_count(&third), 0);
}

// ── scheduled changes on a real server ────────────────────────────────────────────────────

/// How long a test waits for something the server does within a second (a hang guard).
const GUARD: Duration = Duration::from_secs(20);

fn ops_schedules(flag: &str) -> String {
    format!("/api/v1/projects/{PROJECT}/flags/{flag}/environments/{ENV}/schedules")
}

async fn schedule_on(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    flag: &str,
    at: &str,
    patch: Value,
) -> Value {
    let res = http
        .post(format!("{url}{}", ops_schedules(flag)))
        .bearer_auth(token)
        .json(&json!({"at": at, "patch": patch}))
        .send()
        .await
        .expect("schedule");
    assert_eq!(res.status(), 201);
    res.json().await.expect("the schedule")
}

async fn schedules_of(http: &reqwest::Client, url: &str, token: &str, flag: &str) -> Vec<Value> {
    let res = http
        .get(format!("{url}{}", ops_schedules(flag)))
        .bearer_auth(token)
        .send()
        .await
        .expect("list schedules");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("JSON");
    body["schedules"].as_array().unwrap().clone()
}

/// Waits until every schedule of `flag` is done (applied or failed), at most [`GUARD`].
async fn until_done(http: &reqwest::Client, url: &str, token: &str, flag: &str) -> Vec<Value> {
    let until = Instant::now() + GUARD;
    loop {
        let list = schedules_of(http, url, token, flag).await;
        if list.iter().all(|s| s["status"] != "pending") {
            return list;
        }
        assert!(Instant::now() < until, "still pending: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn served(bundle: &Value, flag: &str) -> Value {
    bundle["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == flag)
        .map_or(Value::Null, |f| f["environments"][ENV].clone())
}

#[actix_web::test]
async fn a_schedule_is_applied_on_time_and_announced_on_an_sdk_stream() {
    let prepared = Prepared::new().await;
    let server = Flagstaff::start(prepared.dir.path(), &[]);
    let http = client();
    let before = bundle(&http, &server.url, &prepared.server_key).await;
    assert_eq!(served(&before, "f01")["fallthrough"], json!({"variation": "off"}));
    let stream = http
        .get(format!("{}/sdk/v1/stream", server.url))
        .bearer_auth(&prepared.server_key)
        .header("Last-Event-ID", before["revision"].to_string())
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    let mut events = stream.bytes_stream();

    let created = schedule_on(
        &http,
        &server.url,
        &prepared.token,
        "f01",
        &in_ms(1_500),
        json!({"fallthrough": {"variation": "on"}}),
    )
    .await;
    let mut seen = String::new();
    while !seen.contains("f01") {
        let chunk = tokio::time::timeout(GUARD, events.next())
            .await
            .expect("the stream announces the scheduled change")
            .expect("the stream stays open")
            .expect("stream bytes");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let after = bundle(&http, &server.url, &prepared.server_key).await;
    assert_eq!(served(&after, "f01")["fallthrough"], json!({"variation": "on"}));
    assert!(after["revision"].as_u64() > before["revision"].as_u64());
    let list = schedules_of(&http, &server.url, &prepared.token, "f01").await;
    assert_eq!(list[0]["id"], created["id"]);
    assert_eq!(list[0]["status"], "applied");
    assert!(
        list[0]["done_at"].as_str().unwrap() >= created["at"].as_str().unwrap(),
        "not early"
    );
}

#[actix_web::test]
async fn schedules_due_while_the_server_was_killed_are_applied_at_the_restart_in_time_order() {
    let prepared = Prepared::new().await;
    let data = prepared.dir.path();
    let mut server = Flagstaff::start(data, &[]);
    let http = client();
    // Created first, due last: applied in id order the flag would end "off".
    let (sooner_at, later_at) = (in_ms(3_000), in_ms(3_500));
    let later = schedule_on(
        &http,
        &server.url,
        &prepared.token,
        "f02",
        &later_at,
        json!({"fallthrough": {"variation": "on"}}),
    )
    .await;
    let sooner = schedule_on(
        &http,
        &server.url,
        &prepared.token,
        "f02",
        &sooner_at,
        json!({"enabled": false, "fallthrough": {"variation": "off"}}),
    )
    .await;
    server.kill9();
    let due = time::OffsetDateTime::parse(
        later["at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    while time::OffsetDateTime::now_utc() <= due + time::Duration::milliseconds(200) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let server = Flagstaff::start(data, &[]);
    let list = until_done(&http, &server.url, &prepared.token, "f02").await;
    assert!(list.iter().all(|s| s["status"] == "applied"), "{list:?}");
    let version_of = |s: &Value| {
        list.iter().find(|x| x["id"] == s["id"]).unwrap()["version"]
            .as_u64()
            .unwrap()
    };
    assert!(
        version_of(&sooner) < version_of(&later),
        "applied in time order: {list:?}"
    );
    // The snapshot is rebuilt just after the commit the list already shows: wait for it.
    let until = Instant::now() + GUARD;
    let mut after = bundle(&http, &server.url, &prepared.server_key).await;
    while served(&after, "f02")["fallthrough"] != json!({"variation": "on"}) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = bundle(&http, &server.url, &prepared.server_key).await;
    }
    assert_eq!(served(&after, "f02")["fallthrough"], json!({"variation": "on"}));
    assert_eq!(served(&after, "f02")["enabled"], false);
}

#[actix_web::test]
async fn two_processes_on_one_data_dir_never_apply_a_schedule_twice() {
    let prepared = Prepared::new().await;
    let data = prepared.dir.path();
    let one = Flagstaff::start(data, &[]);
    let two = Flagstaff::start(data, &[]);
    let http = client();
    // Many schedules due at one moment, half created through each process, so both wake for
    // them and race.
    let at = in_ms(2_500);
    let mut ids = Vec::new();
    for i in 0..20 {
        let url = if i % 2 == 0 { &one.url } else { &two.url };
        let flag = crate::ops::flag_key(i);
        let created = schedule_on(&http, url, &prepared.token, &flag, &at, json!({"enabled": false})).await;
        ids.push(created["id"].as_i64().unwrap());
    }
    for i in 0..20 {
        let list = until_done(&http, &one.url, &prepared.token, &crate::ops::flag_key(i)).await;
        assert_eq!(list[0]["status"], "applied", "{list:?}");
    }
    // Each was applied by exactly one of the two.
    let applied_by = |server: &Flagstaff| -> Vec<i64> {
        server
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "applied a scheduled change")
            .filter_map(|v| v["fields"]["schedule"].as_i64())
            .collect()
    };
    let mut all = applied_by(&one);
    all.extend(applied_by(&two));
    all.sort_unstable();
    assert_eq!(
        all, ids,
        "one log line per schedule, from one process or the other"
    );
    // And both servers serve the result.
    for server in [&one, &two] {
        let until = Instant::now() + GUARD;
        loop {
            let b = bundle(&http, &server.url, &prepared.server_key).await;
            if (0..20).all(|i| served(&b, &crate::ops::flag_key(i))["enabled"] == false) {
                break;
            }
            assert!(
                Instant::now() < until,
                "{} does not serve the scheduled changes",
                server.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ── compare and promote ───────────────────────────────────────────────────────────────────

#[actix_web::test]
async fn compare_then_promote_copies_states_in_one_audited_change_and_a_stale_promote_is_412() {
    let app = TestApp::new();
    shop(&app).await;
    let editor = app.token(Role::Editor);
    let state = |env: &str, flag: &str| format!("/api/v1/projects/shop/flags/{flag}/environments/{env}");
    let staged = json!({"enabled": true,
        "targets": [{"variation": "b", "values": ["Doe, Jane", "u\t\"2\"", "<script>"]}],
        "rules": [{"id": "r1", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@acme.com"]}],
                   "serve": {"variation": "c"}}],
        "fallthrough": {"variation": "b"}});
    let patched = app
        .call(
            "PATCH",
            &state("staging", "banner"),
            Some(&editor),
            Some(staged.clone()),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let patched = app
        .call(
            "PATCH",
            &state("staging", "new-checkout"),
            Some(&editor),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);

    let compared = app
        .call(
            "GET",
            "/api/v1/projects/shop/environments/staging/compare/production",
            Some(&editor),
            None,
        )
        .await;
    assert_eq!(compared.status, StatusCode::OK, "{}", compared.body);
    let flags = compared.body["flags"].as_array().unwrap();
    let banner = flags.iter().find(|f| f["key"] == "banner").unwrap();
    assert_eq!(banner["equal"], false);
    assert_eq!(
        banner["differences"],
        json!(["enabled", "targets", "rules", "fallthrough"])
    );
    assert_eq!(banner["name"], HOSTILE);
    assert_eq!(banner["from"]["version"], 1);
    assert_eq!(banner["to"]["version"], 0);

    // A stale expectation is refused whole: nothing changes, in either flag.
    let audit_before = audit_rows(&app).len();
    let stale = app
        .call(
            "POST",
            "/api/v1/projects/shop/environments/production/promote",
            Some(&editor),
            Some(json!({"from": "staging", "flags": ["new-checkout", "banner"],
                        "expect_versions": {"new-checkout": 0, "banner": 7}})),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.body);
    assert_eq!(audit_rows(&app).len(), audit_before);
    let production = app
        .call("GET", &state("production", "new-checkout"), Some(&editor), None)
        .await;
    assert_eq!(
        production.body["version"], 0,
        "the first flag was rolled back too"
    );

    // Mistakes are 400s naming the field.
    for (body, path) in [
        (json!({"from": "nowhere", "flags": ["banner"]}), "from"),
        (json!({"from": "production", "flags": ["banner"]}), "from"),
        (json!({"from": "staging", "flags": []}), "flags"),
        (
            json!({"from": "staging", "flags": ["banner", "missing"]}),
            "flags[1]",
        ),
        (
            json!({"from": "staging", "flags": ["banner"], "expect_versions": {"other": 1}}),
            "expect_versions.other",
        ),
    ] {
        let reply = app
            .call(
                "POST",
                "/api/v1/projects/shop/environments/production/promote",
                Some(&editor),
                Some(body.clone()),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        assert_eq!(reply.body["error"]["path"], path, "{body}");
    }
    let viewer = app.token(Role::Viewer);
    let forbidden = app
        .call(
            "POST",
            "/api/v1/projects/shop/environments/production/promote",
            Some(&viewer),
            Some(json!({"from": "staging", "flags": ["banner"]})),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    // The promotion as compared: both flags, one audited entry each, one revision.
    let revision_before = app.state.snapshots.find("shop", "production").unwrap().revision;
    let promoted = app
        .call(
            "POST",
            "/api/v1/projects/shop/environments/production/promote",
            Some(&editor),
            Some(json!({"from": "staging", "flags": ["banner", "new-checkout"],
                        "expect_versions": {"banner": 0, "new-checkout": 0}})),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.body);
    assert_eq!(promoted.body["flags"]["banner"]["version"], 1);
    let production = app
        .call("GET", &state("production", "banner"), Some(&editor), None)
        .await;
    for field in ["enabled", "targets", "rules", "fallthrough"] {
        assert_eq!(production.body[field], staged[field], "{field}");
    }
    let audit = audit_rows(&app);
    let promotes: Vec<_> = audit[audit_before..]
        .iter()
        .filter(|r| r.2 == "promote")
        .collect();
    assert_eq!(promotes.len(), 2, "{audit:?}");
    assert_eq!(
        app.state.snapshots.find("shop", "production").unwrap().revision,
        revision_before + 1,
        "announced once"
    );
    let compared = app
        .call(
            "GET",
            "/api/v1/projects/shop/environments/staging/compare/production",
            Some(&editor),
            None,
        )
        .await;
    assert!(
        compared.body["flags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["equal"] == true),
        "{}",
        compared.body
    );
}

#[actix_web::test]
async fn a_promotion_the_target_cannot_have_is_a_400_and_changes_nothing() {
    let app = TestApp::new();
    shop(&app).await;
    let editor = app.token(Role::Editor);
    let state = |env: &str, flag: &str| format!("/api/v1/projects/shop/flags/{flag}/environments/{env}");
    // staging: banner needs new-checkout; production: new-checkout needs banner. Promoting
    // banner alone would make a prerequisite cycle in production.
    let a = app
        .call(
            "PATCH",
            &state("staging", "banner"),
            Some(&editor),
            Some(json!({"prerequisites": [{"flag": "new-checkout", "variations": ["on"]}]})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let b = app
        .call(
            "PATCH",
            &state("production", "new-checkout"),
            Some(&editor),
            Some(json!({"prerequisites": [{"flag": "banner", "variations": ["a"]}]})),
        )
        .await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    let refused = app
        .call(
            "POST",
            "/api/v1/projects/shop/environments/production/promote",
            Some(&editor),
            Some(json!({"from": "staging", "flags": ["banner"]})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.body["error"]["path"], "flags[0]");
    let production = app
        .call("GET", &state("production", "banner"), Some(&editor), None)
        .await;
    assert_eq!(production.body["version"], 0);
}

// ── the pages ─────────────────────────────────────────────────────────────────────────────

#[actix_web::test]
async fn the_flag_page_lists_adds_and_cancels_schedules_and_the_compare_page_promotes() {
    let app = TestApp::new();
    let token = shop(&app).await;
    let editor = user(&app, "ed@example.com", Role::Editor);
    let viewer = user(&app, "vi@example.com", Role::Viewer);
    let mut ed = Agent::signed_in(&app, &editor).await;
    let flag_page = "/projects/shop/flags/new-checkout?env=production";
    let page = ed.get(flag_page).await;
    assert!(
        page.body.contains("Scheduled changes in Production"),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    // Without script the time is read as UTC.
    let added = ed
        .post(
            "/projects/shop/flags/new-checkout/environments/production/schedules",
            &[
                ("csrf", &csrf),
                ("change", "rollout"),
                ("percent", "25"),
                ("at_local", "2031-02-03T04:05"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let list = app
        .call(
            "GET",
            "/api/v1/projects/shop/flags/new-checkout/environments/production/schedules",
            Some(&token),
            None,
        )
        .await;
    let s = &list.body["schedules"][0];
    assert_eq!(s["at"], "2031-02-03T04:05:00.000Z");
    assert_eq!(
        s["patch"],
        json!({"fallthrough": {"rollout": {"variations": [{"variation": "on", "weight": 25000}, {"variation": "off", "weight": 75000}]}}})
    );
    assert_eq!(s["created_by"], "ed@example.com");
    // Our script sends the browser's time as UTC in `at`; any state is JSON.
    let added = ed
        .post(
            "/projects/shop/flags/new-checkout/environments/production/schedules",
            &[
                ("csrf", &csrf),
                ("change", "json"),
                (
                    "patch",
                    r#"{"enabled": true, "targets": [{"variation": "on", "values": ["<script>", "a,b"]}]}"#,
                ),
                ("at", "2031-01-01T00:00:00.000Z"),
                ("at_local", "2031-01-01T01:00"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let bad = ed
        .post(
            "/projects/shop/flags/new-checkout/environments/production/schedules",
            &[
                ("csrf", &csrf),
                ("change", "json"),
                ("patch", r#"{"fallthrough": {"variation": "nope"}}"#),
                ("at_local", "2031-01-01T01:00"),
            ],
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::BAD_REQUEST,
        "a patch that does not apply is refused"
    );
    let page = ed.get(flag_page).await;
    assert!(
        page.body.contains("datetime=\"2031-01-01T00:00:00.000Z\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("2031-02-03 04:05 UTC"));
    assert!(page.body.contains("Set the rollout to on 25%, off 75%"));
    assert!(
        page.body.contains("&#60;script&#62;") && !page.body.contains("\"<script>\""),
        "escaped: {}",
        page.body
            .split("id=\"schedules-title\"")
            .nth(1)
            .unwrap_or_default()
    );
    let pending = app
        .call(
            "GET",
            "/api/v1/projects/shop/flags/new-checkout/environments/production/schedules",
            Some(&token),
            None,
        )
        .await;
    let first_id = pending.body["schedules"][0]["id"].as_i64().unwrap();
    let cancelled = ed
        .post(
            &format!("/projects/shop/flags/new-checkout/environments/production/schedules/{first_id}/cancel"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::SEE_OTHER);
    assert_eq!(schedule_count(&app), 2);
    let mut vi = Agent::signed_in(&app, &viewer).await;
    let seen = vi.get(flag_page).await;
    assert!(
        seen.body.contains("cancelled") && !seen.body.contains("js-schedule"),
        "a viewer sees, without forms"
    );

    // Compare staging with production, then promote what differs.
    let patched = app
        .call(
            "PATCH",
            "/api/v1/projects/shop/flags/banner/environments/staging",
            Some(&token),
            Some(json!({"enabled": true, "fallthrough": {"variation": "c"}})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let compare = ed.get("/projects/shop/compare?from=staging&to=production").await;
    assert_eq!(compare.status, StatusCode::OK, "{}", compare.body);
    assert!(
        compare
            .body
            .contains("1 of 2 flags differ between Staging and Production"),
        "{}",
        compare.body
    );
    assert!(compare.body.contains("enabled, fallthrough"));
    assert!(
        compare.body.contains("Banner, &#34;quoted&#34;")
            || compare.body.contains("Banner, &quot;quoted&quot;"),
        "escaped name"
    );
    let csrf = compare.csrf();
    let promote = |version: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("from", "staging".to_owned()),
            ("to", "production".to_owned()),
            ("flag", "banner".to_owned()),
            ("version.banner", version.to_owned()),
        ]
    };
    let fields = promote("5");
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stale = ed.post("/projects/shop/promote", &borrowed).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let fields = promote("0");
    let borrowed: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = ed.post("/projects/shop/promote", &borrowed).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let compare = ed.get("/projects/shop/compare?from=staging&to=production").await;
    assert!(compare.body.contains("0 of 2 flags differ"), "{}", compare.body);
    let forbidden = vi.post("/projects/shop/promote", &borrowed).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
}
