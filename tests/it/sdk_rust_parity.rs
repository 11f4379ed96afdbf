//! Parity: for 10,000 generated contexts and every flag of a rich document (every operator,
//! negation, segments, targets, prerequisites, rollouts by other attributes and salts,
//! disabled flags, flags with no state, every type), the SDK's local evaluations equal what the
//! server answers over OFREP, exactly: value, variant, reason (OFREP's `DISABLED` for a failed
//! prerequisite), error code, version and rule id.

use std::time::Duration;

use futures_util::StreamExt as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use super::{Setup, ctx};
use flagstaff_sdk::{Evaluation, Reason};

const CONTEXTS: usize = 10_000;

/// Requests in flight at once.
const CONCURRENCY: usize = 16;

fn boolean(key: &str, state: Value) -> Value {
    json!({"key": key, "type": "boolean",
           "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
           "environments": {"production": state}})
}

fn string3(key: &str, state: Value) -> Value {
    json!({"key": key, "type": "string",
           "variations": [{"key": "a", "value": "alpha"}, {"key": "b", "value": "beta"}, {"key": "c", "value": "gamma"}],
           "environments": {"production": state}})
}

fn rule(id: &str, clauses: Value, variation: &str) -> Value {
    json!({"id": id, "clauses": clauses, "serve": {"variation": variation}})
}

fn clause(attribute: &str, op: &str, values: Value) -> Value {
    json!({"attribute": attribute, "op": op, "values": values})
}

fn negated(attribute: &str, op: &str, values: Value) -> Value {
    json!({"attribute": attribute, "op": op, "values": values, "negate": true})
}

fn split(bucket_by: Option<&str>, salt: Option<&str>) -> Value {
    let mut rollout = json!({"variations": [
        {"variation": "a", "weight": 33000}, {"variation": "b", "weight": 33000}, {"variation": "c", "weight": 34000}]});
    if let Some(by) = bucket_by {
        rollout["bucket_by"] = json!(by);
    }
    if let Some(salt) = salt {
        rollout["salt"] = json!(salt);
    }
    json!({"rollout": rollout})
}

/// One flag per operator (plain and negated, on the attributes a context may or may not have,
/// with values of the wrong type too), and flags exercising every other part of evaluation.
fn rich_document() -> Value {
    let operators: Vec<(&str, &str, Value)> = vec![
        ("in", "country", json!(["DE", "FR", 7])),
        ("in", "age", json!([18, 21, 65.5, "30"])),
        ("contains", "email", json!(["admin", "+test"])),
        ("starts_with", "version", json!(["1.", "10"])),
        ("ends_with", "email", json!(["@acme.com", "@example.org"])),
        (
            "matches",
            "email",
            json!(["^[a-c].*@(acme|example)\\.com$", "[0-9]{3}"]),
        ),
        ("lt", "age", json!([18])),
        ("lte", "score", json!([0.5])),
        ("gt", "age", json!([64, 99.5])),
        ("gte", "score", json!([0.25, 0.75])),
        ("semver_eq", "version", json!(["1.2.3", "2.0.0-beta.1"])),
        ("semver_lt", "version", json!(["2.0.0"])),
        ("semver_lte", "version", json!(["1.2.3"])),
        ("semver_gt", "version", json!(["2.0.0-beta.1"])),
        ("semver_gte", "version", json!(["10.0.0"])),
        ("before", "created", json!(["2025-01-01T00:00:00Z"])),
        ("after", "created", json!([1_740_000_000_000u64])),
        ("exists", "beta", json!([])),
        ("in", "tags", json!(["vip"])),
        ("in", "user.plan", json!(["pro", "enterprise"])),
        ("in", "a.b", json!(["dotted"])),
        ("in", "team.tier", json!(["gold"])),
    ];
    let mut flags = Vec::new();
    for (i, (op, attribute, values)) in operators.iter().enumerate() {
        let state = json!({"enabled": true,
            "rules": [rule(&format!("r{i}"), json!([clause(attribute, op, values.clone())]), "a"),
                      rule(&format!("n{i}"), json!([negated(attribute, op, values.clone())]), "b")],
            "fallthrough": {"variation": "c"}});
        flags.push(string3(&format!("op-{i}-{op}"), state));
    }
    flags.extend([
        // Segments: included, excluded, rules; in a rule with another clause.
        boolean("seg-beta", json!({"enabled": true,
            "rules": [rule("beta", json!([{"op": "in_segment", "values": ["beta", "nobody"]}]), "on")],
            "fallthrough": {"variation": "off"}})),
        boolean("seg-and", json!({"enabled": true,
            "rules": [rule("both", json!([{"op": "in_segment", "values": ["staff"]}, clause("country", "in", json!(["DE"]))]), "on"),
                      rule("not-staff", json!([{"op": "in_segment", "values": ["staff"], "negate": true}]), "off")],
            "fallthrough": {"rollout": {"variations": [{"variation": "on", "weight": 10000}, {"variation": "off", "weight": 90000}]}}})),
        // Targets before rules.
        string3("targets", json!({"enabled": true,
            "targets": [{"variation": "a", "values": ["user-1", "user-2", "user-3"]}, {"variation": "b", "values": ["user-4", "user-9"]}],
            "rules": [rule("vip", json!([clause("tags", "in", json!(["vip"]))]), "c")],
            "fallthrough": {"variation": "b"}})),
        // Rollouts: default bucketing, another attribute (strings and numbers), a salt, in a rule.
        string3("split-default", json!({"enabled": true, "fallthrough": split(None, None)})),
        string3("split-by-plan-id", json!({"enabled": true, "fallthrough": split(Some("user.id"), Some("salty"))})),
        string3("split-by-age", json!({"enabled": true, "fallthrough": split(Some("age"), None)})),
        string3("split-in-rule", json!({"enabled": true,
            "rules": [{"id": "eu", "clauses": [clause("country", "in", json!(["DE", "FR", "GB"]))], "serve": split(None, Some("eu"))}],
            "fallthrough": {"variation": "a"}})),
        // Prerequisites: a chain, one that fails for some contexts, one on a disabled flag.
        boolean("pre-base", json!({"enabled": true,
            "rules": [rule("adults", json!([clause("age", "gte", json!([18]))]), "on")],
            "fallthrough": {"variation": "off"}})),
        boolean("pre-mid", json!({"enabled": true, "prerequisites": [{"flag": "pre-base", "variations": ["on"]}],
            "fallthrough": {"rollout": {"variations": [{"variation": "on", "weight": 70000}, {"variation": "off", "weight": 30000}]}}})),
        string3("pre-top", json!({"enabled": true, "off_variation": "c",
            "prerequisites": [{"flag": "pre-mid", "variations": ["on"]}, {"flag": "seg-beta", "variations": ["off"]}],
            "fallthrough": {"variation": "a"}})),
        boolean("pre-on-disabled", json!({"enabled": true, "prerequisites": [{"flag": "disabled", "variations": ["on"]}],
            "fallthrough": {"variation": "on"}})),
        // Disabled, with and without an off variation; no state at all; static.
        boolean("disabled", json!({"enabled": false, "fallthrough": {"variation": "on"}})),
        string3("disabled-off-b", json!({"enabled": false, "off_variation": "b"})),
        json!({"key": "no-state", "type": "string", "variations": [{"key": "x", "value": "X"}, {"key": "y", "value": "Y"}]}),
        boolean("static-on", json!({"enabled": true, "fallthrough": {"variation": "on"}})),
        // Configs of every type.
        json!({"key": "cfg-number", "kind": "config", "type": "number",
               "variations": [{"key": "int", "value": 42}, {"key": "float", "value": 0.1}, {"key": "tiny", "value": 1e-7},
                              {"key": "neg", "value": -3.25}, {"key": "big", "value": 9_007_199_254_740_993u64}],
               "environments": {"production": {"enabled": true,
                   "rules": [rule("young", json!([clause("age", "lt", json!([30]))]), "float"),
                             rule("old", json!([clause("age", "gt", json!([80]))]), "big"),
                             rule("fr", json!([clause("country", "in", json!(["FR"]))]), "neg")],
                   "fallthrough": {"rollout": {"variations": [{"variation": "int", "weight": 50000}, {"variation": "tiny", "weight": 50000}]}}}}}),
        json!({"key": "cfg-json", "kind": "config", "type": "json",
               "variations": [{"key": "obj", "value": {"limits": {"rps": 10, "burst": [1, 2.5, "x"]}, "on": true}},
                              {"key": "arr", "value": [1, {"a": null}, "é"]}, {"key": "str", "value": "plain"}],
               "environments": {"production": {"enabled": true,
                   "rules": [rule("plan", json!([clause("user.plan", "in", json!(["free"]))]), "arr"),
                             rule("vip", json!([clause("tags", "contains", json!(["vi"]))]), "str")],
                   "fallthrough": {"variation": "obj"}}}}),
        json!({"key": "cfg-string", "kind": "config", "type": "string", "client_side": false,
               "variations": [{"key": "eu", "value": "https://eu.example.com"}, {"key": "us", "value": "https://us.example.com"}],
               "environments": {"production": {"enabled": true,
                   "rules": [rule("eu", json!([clause("country", "in", json!(["DE", "FR", "GB"]))]), "eu")],
                   "fallthrough": {"variation": "us"}}}}),
        // Several clauses in one rule, and a rule without id.
        boolean("multi-clause", json!({"enabled": true,
            "rules": [rule("all", json!([clause("email", "ends_with", json!(["@acme.com"])), clause("age", "gte", json!([21])),
                                          negated("country", "in", json!(["JP"]))]), "on"),
                      {"clauses": [clause("beta", "in", json!([true]))], "serve": {"variation": "on"}}],
            "fallthrough": {"variation": "off"}})),
    ]);
    json!({
        "flagstaff": 1,
        "project": {"key": "shop", "name": "Shop"},
        "environments": [{"key": "production", "name": "Production"}],
        "segments": [
            {"key": "beta", "name": "Beta", "included": ["user-5", "user-6", "user-7"], "excluded": ["user-8"],
             "rules": [{"clauses": [clause("email", "ends_with", json!(["@acme.com"]))]},
                       {"clauses": [clause("tags", "in", json!(["new"])), clause("age", "lt", json!([30]))]}]},
            {"key": "staff", "name": "Staff", "included": ["user-10"], "excluded": [],
             "rules": [{"clauses": [clause("email", "matches", json!(["^admin"]))]}]},
            {"key": "nobody", "name": "Nobody"}
        ],
        "flags": flags,
    })
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Inserts `name` four times out of five, with a value from `make`.
fn maybe(c: &mut Map<String, Value>, rng: &mut StdRng, name: &str, make: impl FnOnce(&mut StdRng) -> Value) {
    if rng.random_bool(0.8) {
        let value = make(rng);
        c.insert(name.into(), value);
    }
}

/// A context with each attribute present or not, of the expected type or not.
fn random_context(rng: &mut StdRng) -> Map<String, Value> {
    let mut c = Map::new();
    if rng.random_bool(0.95) {
        c.insert(
            "targetingKey".into(),
            json!(format!("user-{}", rng.random_range(0..3000))),
        );
    }
    maybe(&mut c, rng, "email", |rng| {
        let local = *pick(rng, &["admin", "ada", "bob", "carol", "dave+test", "eve123"]);
        let domain = *pick(
            rng,
            &["acme.com", "example.com", "example.org", "ACME.com", "gmail.com"],
        );
        if rng.random_bool(0.95) {
            json!(format!("{local}@{domain}"))
        } else {
            json!(42)
        }
    });
    maybe(&mut c, rng, "country", |rng| match rng.random_range(0..10) {
        0 => json!(["JP", "DE"]),
        1 => json!(7),
        _ => json!(pick(rng, &["DE", "FR", "US", "GB", "JP"])),
    });
    maybe(&mut c, rng, "age", |rng| match rng.random_range(0..10) {
        0 => json!("30"),
        1 => json!(rng.random_range(0.0..100.0)),
        2 => json!(65.5),
        _ => json!(rng.random_range(0..100)),
    });
    maybe(&mut c, rng, "score", |rng| {
        if rng.random_bool(0.1) {
            json!(0.25)
        } else {
            json!(rng.random::<f64>())
        }
    });
    maybe(&mut c, rng, "version", |rng| {
        json!(pick(
            rng,
            &[
                "1.0.0",
                "1.2.3",
                "2.0.0-beta.1",
                "2.0.0",
                "10.1.0",
                "not-a-version",
                "1.2",
                "v1.2.3"
            ]
        ))
    });
    maybe(&mut c, rng, "created", |rng| match rng.random_range(0..4) {
        0 => json!(rng.random_range(1_700_000_000_000u64..1_800_000_000_000)),
        1 => json!("yesterday"),
        _ => json!(format!(
            "202{}-0{}-1{}T12:00:00Z",
            rng.random_range(3..7),
            rng.random_range(1..10),
            rng.random_range(0..9)
        )),
    });
    maybe(&mut c, rng, "beta", |rng| json!(rng.random_bool(0.5)));
    maybe(&mut c, rng, "tags", |rng| {
        json!(
            ["a", "vip", "new", "b"]
                .into_iter()
                .filter(|_| rng.random_bool(0.3))
                .collect::<Vec<_>>()
        )
    });
    maybe(&mut c, rng, "user", |rng| {
        let id = if rng.random_bool(0.5) {
            json!(rng.random_range(0..1000))
        } else {
            json!(format!("id-{}", rng.random_range(0..1000)))
        };
        json!({"plan": pick(rng, &["free", "pro", "enterprise"]), "id": id})
    });
    maybe(&mut c, rng, "a.b", |rng| json!(pick(rng, &["dotted", "other"])));
    maybe(
        &mut c,
        rng,
        "a",
        |rng| json!({"b": pick(rng, &["dotted", "nested"])}),
    );
    maybe(
        &mut c,
        rng,
        "team",
        |rng| json!({"tier": pick(rng, &["gold", "silver"])}),
    );
    c
}

/// The OFREP answer the server should give for the SDK's evaluation.
fn expected_ofrep(e: &Evaluation) -> Value {
    let mut metadata = json!({"version": e.version});
    if let Some(rule) = &e.rule_id {
        metadata["ruleId"] = json!(rule);
    }
    if e.reason == Reason::PrerequisiteFailed {
        metadata["prerequisiteFailed"] = json!(true);
    }
    if let Some(prerequisite) = &e.prerequisite {
        metadata["prerequisite"] = json!(prerequisite);
    }
    match &e.error {
        None => json!({
            "key": e.key,
            "value": e.value,
            "variant": e.variant,
            "reason": if e.reason == Reason::PrerequisiteFailed { "DISABLED" } else { e.reason.as_str() },
            "metadata": metadata,
        }),
        Some(error) => json!({"key": e.key, "errorCode": error.code(), "metadata": metadata}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_evaluations_equal_the_servers_ofrep_answers() {
    let setup = Setup::new(rich_document()).await;
    let client = setup
        .builder()
        .poll_interval(Duration::from_secs(3600))
        .build()
        .await
        .expect("client");
    let keys = client.flag_keys();
    assert!(keys.len() >= 40, "a rich document: {} flags", keys.len());

    let mut rng = StdRng::seed_from_u64(20_260_301);
    let contexts: Vec<Map<String, Value>> = (0..CONTEXTS).map(|_| random_context(&mut rng)).collect();
    let url = format!("{}/ofrep/v1/evaluate/flags", setup.server.url);
    let http = &setup.http;
    let key = &setup.key;
    let answers = futures_util::stream::iter(contexts.iter().enumerate())
        .map(|(i, context)| {
            let url = &url;
            async move {
                let response = http
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"context": context}))
                    .send()
                    .await
                    .expect("OFREP request");
                assert_eq!(response.status(), 200, "context {i}");
                let body: Value = response.json().await.expect("OFREP JSON");
                (i, body)
            }
        })
        .buffer_unordered(CONCURRENCY);
    let mut answers = std::pin::pin!(answers);

    let mut compared = 0usize;
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    let mut served = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    let mut prerequisite_failures = 0;
    while let Some((i, body)) = answers.next().await {
        let context = ctx(Value::Object(contexts[i].clone()));
        let mut sdk: Vec<Value> = client.evaluate_all(&context).iter().map(expected_ofrep).collect();
        let mut server: Vec<Value> = body["flags"].as_array().expect("flags").clone();
        for item in &mut server {
            // Details are prose; the code is what must agree.
            item.as_object_mut().expect("an item").remove("errorDetails");
        }
        sdk.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
        server.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
        assert_eq!(server.len(), keys.len(), "every flag answered for context {i}");
        for (mine, theirs) in sdk.iter().zip(&server) {
            assert_eq!(
                mine,
                theirs,
                "context {i}: {}",
                Value::Object(contexts[i].clone())
            );
            let reason = theirs["reason"]
                .as_str()
                .or(theirs["errorCode"].as_str())
                .unwrap_or("?");
            *reasons.entry(reason.to_owned()).or_default() += 1;
            if let Some(variant) = theirs["variant"].as_str() {
                let flag = theirs["key"].as_str().unwrap_or("?").to_owned();
                served.entry(flag).or_default().insert(variant.to_owned());
            }
            compared += 1;
        }
        prerequisite_failures += client
            .evaluate_all(&context)
            .iter()
            .filter(|e| e.reason == Reason::PrerequisiteFailed)
            .count();
        // The same through the typed reads, which must agree with `evaluate`.
        for item in &server {
            let flag = item["key"].as_str().expect("key");
            if let Some(Value::Bool(b)) = item.get("value") {
                assert_eq!(
                    client.bool_value(flag, &context, !b),
                    *b,
                    "bool_value {flag} for context {i}"
                );
            }
        }
    }
    println!(
        "parity: {compared} evaluations over {CONTEXTS} contexts and {} flags: {reasons:?}",
        keys.len()
    );
    // The corpus reaches every outcome, or the comparison proves less than it claims.
    for reason in [
        "STATIC",
        "DEFAULT",
        "TARGETING_MATCH",
        "SPLIT",
        "DISABLED",
        "TARGETING_KEY_MISSING",
    ] {
        assert!(
            reasons.get(reason).copied().unwrap_or(0) > 0,
            "no evaluation gave {reason}: {reasons:?}"
        );
    }
    assert!(prerequisite_failures > 0, "no prerequisite failed");
    // Each operator both matched (variation a) and, negated, matched the others (b).
    for (flag, variants) in served.iter().filter(|(flag, _)| flag.starts_with("op-")) {
        assert!(
            variants.contains("a") && variants.contains("b"),
            "{flag} served only {variants:?}"
        );
    }
    assert_eq!(compared, CONTEXTS * keys.len());
    client.close().await;
}
