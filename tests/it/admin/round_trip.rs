//! Whatever an editor page shows, posted back untouched, stores exactly what was there: for
//! every field of the flag editor (definition and each environment's state), the config
//! editor (the same page for a config) and the segment editor. Flags and segments are drawn by
//! proptest with hostile text (commas, quotes, spaces at the ends, unicode, `<script>`, empty
//! strings, line breaks where the model allows them, numbers that look like strings), created
//! through the API, rendered, read as a browser reads the form (helpers::html_forms) and
//! posted; the API's JSON before and after must be identical.

use std::cell::Cell;
use std::collections::HashSet;

use flagstaff::store::users::Role;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use super::{PASSWORD, project, user};
use crate::helpers::{RealServer, TestApp, WebBrowser, html_form};

/// Cases per property (each makes about ten requests); `PROPTEST_CASES` overrides.
const CASES: u32 = 40;

/// `cases`, unless `PROPTEST_CASES` says otherwise.
pub fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        // No regression files in the source tree: a failure prints its (shrunk) input.
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Text people and imports put in flags, hostile to forms and HTML.
pub fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Doe, Jane".to_owned()),
        Just(" leading space".to_owned()),
        Just("trailing space ".to_owned()),
        Just(" ".to_owned()),
        Just("\"quoted\", 'single'".to_owned()),
        Just("<script>alert(1)</script>".to_owned()),
        Just("ünïcödé ✓ 日本語 🚩".to_owned()),
        Just("12".to_owned()),
        Just("-1.5e3".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("[not json".to_owned()),
        Just("[\"a\"]".to_owned()),
        Just("tab\there".to_owned()),
        Just("&amp; &#38; &lt;".to_owned()),
        Just("back\\slash".to_owned()),
        Just("*rollout".to_owned()),
        "\\PC{1,12}",
    ]
}

/// Any string, line breaks, NUL and other control characters included (for values the pages
/// show as JSON when they must: target keys, segment lists, tags, clause values).
pub fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => hostile(),
        1 => Just(String::new()),
        1 => "[\\x00-\\x7f]{0,8}",
        1 => Just("line\nbreak".to_owned()),
        1 => Just("\ncr\r\nlf\r".to_owned()),
    ]
}

/// Text of a one-line field (the model refuses line breaks and NUL there).
pub fn one_line() -> impl Strategy<Value = String> {
    any_text().prop_map(|s| s.replace(['\n', '\r', '\0'], ""))
}

/// Text of a textarea (descriptions, string values): line breaks are `\n` alone.
pub fn multi_line() -> impl Strategy<Value = String> {
    any_text().prop_map(|s| s.replace(['\r', '\0'], ""))
}

/// An optional one-line text: left out, or not empty.
fn optional_line() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(one_line().prop_filter("not empty", |s| !s.is_empty()))
}

/// A flag, variation or rule key ([A-Za-z0-9][A-Za-z0-9._-]*), sometimes one that is also a
/// word of the form (`rollout`).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => "[a-zA-Z0-9][a-zA-Z0-9._-]{0,6}",
        1 => Just("rollout".to_owned()),
        1 => Just("on".to_owned()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        Just(json!(0.1)),
        Just(json!(-0.0)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        any_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map(any_text(), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A clause; `segments` are the segment keys `in_segment` may name (none inside a segment).
fn clause(segments: Vec<String>) -> impl Strategy<Value = Value> {
    let attribute = one_line().prop_filter("not empty", |s| !s.is_empty());
    let strings = prop::collection::vec(any_text(), 1..4);
    let scalar = prop_oneof![
        any_text().prop_map(Value::from),
        number(),
        any::<bool>().prop_map(Value::from)
    ];
    let mut ops: Vec<BoxedStrategy<(Option<&'static str>, Value)>> = vec![
        prop::collection::vec(scalar, 1..4)
            .prop_map(|v| (Some("in"), Value::from(v)))
            .boxed(),
        (
            prop::sample::select(vec!["contains", "starts_with", "ends_with"]),
            strings,
        )
            .prop_map(|(op, v)| (Some(op), Value::from(v)))
            .boxed(),
        prop::sample::select(vec!["^a", "b$", "(x|y)+", "\\d{3}", "Doe, Jane"])
            .prop_map(|r| (Some("matches"), json!([r])))
            .boxed(),
        (
            prop::sample::select(vec!["lt", "lte", "gt", "gte"]),
            prop::collection::vec(number(), 1..3),
        )
            .prop_map(|(op, v)| (Some(op), Value::from(v)))
            .boxed(),
        prop::sample::select(vec!["1.2.3", "0.0.1-beta.1"])
            .prop_map(|v| (Some("semver_gte"), json!([v])))
            .boxed(),
        prop_oneof![
            number().prop_map(|n| json!([n])),
            Just(json!(["2024-05-01T12:00:00Z", 1_700_000_000_000i64]))
        ]
        .prop_map(|v| (Some("before"), v))
        .boxed(),
        Just((Some("exists"), json!([]))).boxed(),
    ];
    if !segments.is_empty() {
        ops.push(
            prop::sample::select(segments)
                .prop_map(|s| (None, json!([s])))
                .boxed(),
        );
    }
    (attribute, prop::strategy::Union::new(ops), any::<bool>()).prop_map(
        |(attribute, (op, values), negate)| match op {
            Some(op) => json!({"attribute": attribute, "op": op, "values": values, "negate": negate}),
            None => json!({"op": "in_segment", "values": values, "negate": negate}),
        },
    )
}

/// What a rule or the fallthrough serves: a variation, or a rollout over some of them in any
/// order, with weights (some may be 0) that add up to 100%.
fn serve(variations: Vec<String>) -> impl Strategy<Value = Value> {
    let n = variations.len();
    let single = prop::sample::select(variations.clone()).prop_map(|v| json!({"variation": v}));
    let rollout = (
        prop::sample::subsequence(variations, 1..=n).prop_shuffle(),
        prop::collection::vec(0..=100_000i64, n),
        optional_line(),
        optional_line(),
    )
        .prop_map(|(chosen, mut cuts, bucket_by, salt)| {
            cuts.truncate(chosen.len() - 1);
            cuts.sort_unstable();
            let mut bounds = vec![0];
            bounds.extend(cuts);
            bounds.push(100_000);
            let weighted: Vec<Value> = chosen
                .iter()
                .zip(bounds.windows(2))
                .map(|(v, w)| json!({"variation": v, "weight": w[1] - w[0]}))
                .collect();
            let mut rollout = json!({"variations": weighted});
            if let Some(b) = bucket_by {
                rollout["bucket_by"] = json!(b);
            }
            if let Some(s) = salt {
                rollout["salt"] = json!(s);
            }
            json!({"rollout": rollout})
        });
    prop_oneof![single, rollout]
}

fn dedup(keys: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    keys.into_iter().filter(|k| seen.insert(k.clone())).collect()
}

/// Rule ids must differ within a list: later duplicates are left out.
fn unique_ids(mut rules: Vec<Value>) -> Vec<Value> {
    let mut seen = HashSet::new();
    for rule in &mut rules {
        if let Some(id) = rule["id"].as_str().map(str::to_owned)
            && !seen.insert(id)
        {
            rule.as_object_mut().unwrap().remove("id");
        }
    }
    rules
}

fn with_optional(mut object: Value, field: &str, value: Option<impl Into<Value>>) -> Value {
    if let Some(value) = value {
        object[field] = value.into();
    }
    object
}

/// One environment's state of a flag with these variations.
fn state(variations: Vec<String>) -> impl Strategy<Value = Value> {
    let rule = (
        proptest::option::of(key()),
        optional_line(),
        prop::collection::vec(clause(vec!["beta".to_owned()]), 1..3),
        serve(variations.clone()),
    )
        .prop_map(|(id, description, clauses, serve)| {
            let rule = json!({"clauses": clauses, "serve": serve});
            with_optional(with_optional(rule, "id", id), "description", description)
        });
    let target = (
        prop::sample::select(variations.clone()),
        prop::collection::vec(any_text(), 0..4),
    );
    (
        any::<bool>(),
        proptest::option::of(prop::sample::select(variations.clone())),
        proptest::option::of(prop::sample::subsequence(vec!["on", "off"], 1..=2).prop_shuffle()),
        prop::collection::vec(target, 0..3),
        prop::collection::vec(rule, 0..3),
        proptest::option::of(serve(variations)),
    )
        .prop_map(|(enabled, off, prerequisite, targets, rules, fallthrough)| {
            // A key is targeted by one list only.
            let mut targeted = HashSet::new();
            let targets: Vec<Value> = targets
                .into_iter()
                .map(|(variation, values)| {
                    let mine: HashSet<String> = values.iter().cloned().collect();
                    let values: Vec<String> = values.into_iter().filter(|v| !targeted.contains(v)).collect();
                    targeted.extend(mine);
                    json!({"variation": variation, "values": values})
                })
                .collect();
            let prerequisites: Vec<Value> = prerequisite
                .map(|v| json!({"flag": "other", "variations": v}))
                .into_iter()
                .collect();
            let state = json!({"enabled": enabled, "prerequisites": prerequisites,
                "targets": targets, "rules": unique_ids(rules)});
            with_optional(
                with_optional(state, "off_variation", off),
                "fallthrough",
                fallthrough,
            )
        })
}

/// A flag or a config without its key, with a state in staging and in production.
fn flag() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec!["flag", "config"]);
    let flag_type = prop::sample::select(vec!["boolean", "string", "number", "json"]);
    (
        kind,
        flag_type,
        prop::collection::vec(key(), 1..4).prop_map(dedup),
    )
        .prop_flat_map(|(kind, flag_type, keys)| {
            let value: BoxedStrategy<Value> = match flag_type {
                "boolean" => any::<bool>().prop_map(Value::from).boxed(),
                "string" => multi_line().prop_map(Value::from).boxed(),
                "number" => number().boxed(),
                _ => json_value().boxed(),
            };
            let n = keys.len();
            let variations = (
                prop::collection::vec(value, n),
                prop::collection::vec(optional_line(), n),
            )
                .prop_map({
                    let keys = keys.clone();
                    move |(values, names)| {
                        keys.iter()
                            .zip(values)
                            .zip(names)
                            .map(|((k, v), name)| with_optional(json!({"key": k, "value": v}), "name", name))
                            .collect::<Vec<Value>>()
                    }
                });
            (
                Just(kind),
                Just(flag_type),
                variations,
                one_line(),
                multi_line(),
                prop::collection::vec(any_text(), 0..4),
                proptest::option::of(any::<bool>()),
                proptest::option::of(any::<bool>()),
                any::<bool>(),
                state(keys.clone()),
                state(keys),
            )
        })
        .prop_map(
            |(
                kind,
                flag_type,
                variations,
                name,
                description,
                tags,
                client_side,
                temporary,
                archived,
                staging,
                production,
            )| {
                let flag = json!({
                    "kind": kind, "type": flag_type, "variations": variations, "name": name,
                    "description": description, "tags": tags, "archived": archived,
                    "environments": {"staging": staging, "production": production},
                });
                with_optional(
                    with_optional(flag, "client_side", client_side),
                    "temporary",
                    temporary,
                )
            },
        )
}

/// A segment without its key.
fn segment() -> impl Strategy<Value = Value> {
    let rule = (
        proptest::option::of(key()),
        prop::collection::vec(clause(Vec::new()), 1..3),
    )
        .prop_map(|(id, clauses)| with_optional(json!({"clauses": clauses}), "id", id));
    (
        one_line(),
        multi_line(),
        prop::collection::vec(any_text(), 0..4),
        prop::collection::vec(any_text(), 0..4),
        prop::collection::vec(rule, 0..3),
    )
        .prop_map(|(name, description, included, excluded, rules)| {
            json!({"name": name, "description": description, "included": included,
                   "excluded": excluded, "rules": unique_ids(rules)})
        })
}

// ---------------------------------------------------------------------------------------------
// The property

/// A project `shop` (with segment `beta` and flag `other`), an admin signed in over a real
/// socket, and an admin token for the API.
pub struct Site {
    pub app: TestApp,
    pub server: RealServer,
    pub browser: WebBrowser,
    pub api: reqwest::Client,
    pub token: String,
}

impl Site {
    pub async fn open() -> Site {
        let app = TestApp::new();
        project(&app, "shop");
        let email = user(&app, "admin@example.com", Role::Admin);
        let token = app.token(Role::Admin);
        let server = RealServer::start(&app.state);
        let mut browser = WebBrowser::new(&server);
        browser.sign_in(&email, PASSWORD).await;
        let site = Site {
            app,
            server,
            browser,
            api: reqwest::Client::new(),
            token,
        };
        site.api_ok(
            "POST",
            "/api/v1/projects/shop/segments",
            json!({"key": "beta", "name": "Beta", "included": ["u-1"]}),
        )
        .await;
        site.api_ok(
            "POST",
            "/api/v1/projects/shop/flags",
            json!({"key": "other", "type": "boolean",
                   "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}]}),
        )
        .await;
        site
    }

    /// Calls the management API; returns status and JSON.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .api
            .request(method.parse().unwrap(), format!("{}{path}", self.server.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("API request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn api_ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, json) = self.api(method, path, Some(body)).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {json}");
        json
    }

    /// Opens `page` and posts its form `action` back untouched; the answer must be a redirect.
    async fn resubmit(&mut self, page: &str, action: &str) -> Result<(), TestCaseError> {
        let shown = self.browser.get(page).await;
        prop_assert_eq!(shown.status, 200, "{}", shown.body);
        let form = html_form(&shown.body, action);
        let answer = self.browser.post(action, &form.fields).await;
        prop_assert_eq!(
            answer.status,
            303,
            "posting {} untouched was refused: {}",
            action,
            problems(&answer.body)
        );
        Ok(())
    }
}

/// The error list of a refused form, for the failure message.
fn problems(html: &str) -> String {
    let document = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(".error-message li, .field-error").unwrap();
    document
        .select(&selector)
        .map(|e| e.text().collect::<String>())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Runs `property` on `cases` of `strategy`'s values on one actix system (the server lives
/// across cases).
pub fn run<S: Strategy>(
    cases: u32,
    strategy: S,
    property: impl AsyncFn(&mut Site, S::Value) -> Result<(), TestCaseError>,
) {
    let system = actix_web::rt::System::new();
    let site = std::cell::RefCell::new(system.block_on(Site::open()));
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&strategy, |value| {
        system.block_on(property(&mut site.borrow_mut(), value))
    });
    let site = site.into_inner();
    system.block_on(site.server.stop());
    if let Err(e) = result {
        panic!("{e}");
    }
}

thread_local! {
    static NEXT: Cell<usize> = const { Cell::new(0) };
}

fn next_key(prefix: &str) -> String {
    NEXT.with(|n| {
        n.set(n.get() + 1);
        format!("{prefix}{}", n.get())
    })
}

#[test]
fn the_flag_and_config_editors_store_exactly_what_they_show() {
    run(CASES, flag(), async |site, mut flag| {
        let key = next_key("f-");
        flag["key"] = json!(key);
        let (status, created) = site
            .api("POST", "/api/v1/projects/shop/flags", Some(flag.clone()))
            .await;
        prop_assert_eq!(
            status,
            201,
            "the generator made an invalid flag: {}\n{:#}",
            created,
            flag
        );
        let path = format!("/api/v1/projects/shop/flags/{key}");
        let (_, before) = site.api("GET", &path, None).await;
        for env in ["staging", "production"] {
            site.resubmit(
                &format!("/projects/shop/flags/{key}?env={env}"),
                &format!("/projects/shop/flags/{key}/environments/{env}"),
            )
            .await?;
        }
        site.resubmit(
            &format!("/projects/shop/flags/{key}?env=production"),
            &format!("/projects/shop/flags/{key}"),
        )
        .await?;
        let (_, after) = site.api("GET", &path, None).await;
        prop_assert_eq!(
            serde_json::to_string_pretty(&after).unwrap(),
            serde_json::to_string_pretty(&before).unwrap()
        );
        // Each write checks the whole project: keep it small.
        let (status, _) = site.api("DELETE", &path, None).await;
        prop_assert_eq!(status, 204);
        Ok(())
    });
}

#[test]
fn the_segment_editor_stores_exactly_what_it_shows() {
    run(CASES, segment(), async |site, mut segment| {
        let key = next_key("s-");
        segment["key"] = json!(key);
        let (status, created) = site
            .api("POST", "/api/v1/projects/shop/segments", Some(segment.clone()))
            .await;
        prop_assert_eq!(
            status,
            201,
            "the generator made an invalid segment: {}\n{:#}",
            created,
            segment
        );
        let path = format!("/api/v1/projects/shop/segments/{key}");
        let (_, before) = site.api("GET", &path, None).await;
        let page = format!("/projects/shop/segments/{key}");
        site.resubmit(&page, &page).await?;
        let (_, after) = site.api("GET", &path, None).await;
        prop_assert_eq!(
            serde_json::to_string_pretty(&after).unwrap(),
            serde_json::to_string_pretty(&before).unwrap()
        );
        // Each write checks the whole project: keep it small.
        let (status, _) = site.api("DELETE", &path, None).await;
        prop_assert_eq!(status, 204);
        Ok(())
    });
}
