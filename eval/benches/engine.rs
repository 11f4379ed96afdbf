//! Engine benchmarks; figures and goals are in BENCHMARKS.md ("Engine").
//!
//! `cargo bench -p flagstaff-eval --bench engine`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use flagstaff_eval::model::{Document, Flag};
use flagstaff_eval::{CompiledEnvironment, Context};
use serde_json::{Value, json};

const ENV: &str = "production";

fn bool_flag(key: &str, state: Value) -> Value {
    json!({"key": key, "type": "boolean",
           "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
           "environments": {ENV: state}})
}

/// A flag of a realistic environment; `i` picks its shape.
fn realistic_flag(i: usize) -> Value {
    let key = format!("flag-{i:04}");
    match i % 10 {
        // 40%: on or off, nothing else.
        0..=3 => bool_flag(
            &key,
            json!({"enabled": !i.is_multiple_of(4), "fallthrough": {"variation": "on"}}),
        ),
        // 20%: targets and two rules.
        4 | 5 => bool_flag(
            &key,
            json!({"enabled": true,
            "targets": [{"variation": "on", "values": (0..20).map(|k| format!("user-{k}")).collect::<Vec<_>>()}],
            "rules": [
                {"id": "staff", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@acme.com"]},
                                            {"attribute": "country", "op": "in", "values": ["fr", "de", "it"]}],
                 "serve": {"variation": "on"}},
                {"id": "big", "clauses": [{"attribute": "seats", "op": "gte", "values": [100]}],
                 "serve": {"variation": "on"}}],
            "fallthrough": {"variation": "off"}}),
        ),
        // 20%: a percentage rollout of a string flag.
        6 | 7 => json!({"key": key, "type": "string",
            "variations": [{"key": "control", "value": "control"}, {"key": "a", "value": "A"}, {"key": "b", "value": "B"}],
            "environments": {ENV: {"enabled": true, "fallthrough": {"rollout": {"variations": [
                {"variation": "control", "weight": 50000}, {"variation": "a", "weight": 25000},
                {"variation": "b", "weight": 25000}]}}}}}),
        // 10%: a segment rule behind a prerequisite.
        8 => bool_flag(
            &key,
            json!({"enabled": true,
            "prerequisites": [{"flag": format!("flag-{:04}", i - 7), "variations": ["on"]}],
            "rules": [{"id": "beta", "clauses": [{"op": "in_segment", "values": [format!("segment-{}", i % 5)]}],
                       "serve": {"variation": "on"}}],
            "fallthrough": {"variation": "off"}}),
        ),
        // 10%: a remote config chosen by app version.
        _ => json!({"key": key, "type": "json", "kind": "config",
            "variations": [{"key": "v1", "value": {"limit": 10, "theme": "light"}},
                           {"key": "v2", "value": {"limit": 50, "theme": "dark"}}],
            "environments": {ENV: {"enabled": true,
                "rules": [{"id": "new-app", "clauses": [{"attribute": "app.version", "op": "semver_gte", "values": ["2.0.0"]}],
                           "serve": {"variation": "v2"}}],
                "fallthrough": {"variation": "v1"}}}}),
    }
}

fn segments() -> Value {
    (0..5)
        .map(|s| {
            json!({"key": format!("segment-{s}"),
                   "included": (0..200).map(|k| format!("user-{}", k * 7 + s)).collect::<Vec<_>>(),
                   "excluded": ["user-3"],
                   "rules": [{"clauses": [{"attribute": "plan", "op": "in", "values": ["enterprise"]},
                                          {"attribute": "email", "op": "matches", "values": ["^[a-z]+@(acme|initech)\\.com$"]}]}]})
        })
        .collect()
}

fn document(flags: Vec<Value>) -> Document {
    serde_json::from_value(json!({
        "flagstaff": 1, "project": {"key": "shop"}, "environments": [{"key": ENV}],
        "segments": segments(), "flags": flags,
    }))
    .expect("benchmark documents parse")
}

fn compile(flags: Vec<Value>) -> CompiledEnvironment {
    let doc = document(flags);
    flagstaff_eval::validate_document(&doc).expect("benchmark documents are valid");
    CompiledEnvironment::compile(&doc, ENV)
}

fn context() -> Context {
    match json!({"targetingKey": "user-123456", "email": "ann@example.com", "country": "fr",
                 "plan": "pro", "seats": 12, "app": {"version": "2.3.1"}, "beta": false})
    {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

fn single_flags(c: &mut Criterion) {
    let ctx = context();
    // Rules 1-4 match on their first two clauses and fail on the third; rule 5 matches: all 15
    // clauses are evaluated.
    let clause_sets = |last: Value| {
        json!([
            {"attribute": "country", "op": "in", "values": ["fr", "de", "es", "it", "nl"]},
            {"attribute": "email", "op": "ends_with", "values": ["@example.com", "@example.org"]},
            last,
        ])
    };
    let failing = [
        json!({"attribute": "seats", "op": "gte", "values": [100]}),
        json!({"attribute": "app.version", "op": "semver_lt", "values": ["2.0.0"]}),
        json!({"attribute": "plan", "op": "in", "values": ["enterprise"]}),
        json!({"attribute": "email", "op": "matches", "values": ["^admin"]}),
    ];
    let mut rules: Vec<Value> = failing
        .iter()
        .enumerate()
        .map(|(i, last)| json!({"id": format!("rule-{i}"), "clauses": clause_sets(last.clone()), "serve": {"variation": "on"}}))
        .collect();
    rules.push(json!({"id": "rule-4", "clauses": clause_sets(json!({"attribute": "beta", "op": "in", "values": [false]})),
                      "serve": {"variation": "on"}}));
    let in_values: Vec<String> = (0..10_000).map(|i| format!("account-{i}")).collect();
    let env = compile(vec![
        bool_flag(
            "no-rules",
            json!({"enabled": true, "fallthrough": {"variation": "on"}}),
        ),
        bool_flag(
            "five-rules",
            json!({"enabled": true, "rules": rules, "fallthrough": {"variation": "off"}}),
        ),
        json!({"key": "rollout", "type": "string",
               "variations": [{"key": "control", "value": "control"}, {"key": "a", "value": "A"}, {"key": "b", "value": "B"}],
               "environments": {ENV: {"enabled": true, "fallthrough": {"rollout": {"variations": [
                   {"variation": "control", "weight": 34000}, {"variation": "a", "weight": 33000},
                   {"variation": "b", "weight": 33000}]}}}}}),
        bool_flag(
            "in-10000",
            json!({"enabled": true,
            "rules": [{"clauses": [{"attribute": "account", "op": "in", "values": in_values}], "serve": {"variation": "on"}}],
            "fallthrough": {"variation": "off"}}),
        ),
        bool_flag(
            "targets-100000",
            json!({"enabled": true,
            "targets": [{"variation": "on", "values": (0..100_000).map(|i| format!("user-{i}")).collect::<Vec<_>>()}],
            "fallthrough": {"variation": "off"}}),
        ),
    ]);
    let check = |key: &str, ctx: &Context, variant: &str, reason: &str| {
        let e = env.evaluate(key, ctx);
        assert_eq!((e.variant, e.reason.as_str()), (Some(variant), reason), "{key}");
    };
    let mut in_ctx = ctx.clone();
    in_ctx.insert("account".into(), json!("account-9876"));
    check("no-rules", &ctx, "on", "STATIC");
    check("five-rules", &ctx, "on", "TARGETING_MATCH");
    assert_eq!(env.evaluate("five-rules", &ctx).rule_id, Some("rule-4"));
    assert_eq!(env.evaluate("rollout", &ctx).reason.as_str(), "SPLIT");
    check("in-10000", &in_ctx, "on", "TARGETING_MATCH");
    check("targets-100000", &ctx, "off", "DEFAULT");

    let mut group = c.benchmark_group("evaluate");
    group.bench_function("no_rules", |b| {
        b.iter(|| {
            env.evaluate(black_box("no-rules"), black_box(&ctx))
                .value
                .is_some()
        });
    });
    group.bench_function("5_rules_3_clauses", |b| {
        b.iter(|| {
            env.evaluate(black_box("five-rules"), black_box(&ctx))
                .value
                .is_some()
        });
    });
    group.bench_function("rollout", |b| {
        b.iter(|| {
            env.evaluate(black_box("rollout"), black_box(&ctx))
                .value
                .is_some()
        });
    });
    group.bench_function("in_10000_values", |b| {
        b.iter(|| {
            env.evaluate(black_box("in-10000"), black_box(&in_ctx))
                .value
                .is_some()
        });
    });
    group.bench_function("target_list_100000_keys", |b| {
        b.iter(|| {
            env.evaluate(black_box("targets-100000"), black_box(&ctx))
                .value
                .is_some()
        });
    });
    group.finish();
}

fn environments(c: &mut Criterion) {
    let ctx = context();
    let env100 = compile((0..100).map(realistic_flag).collect());
    assert_eq!(env100.evaluate_all(&ctx, |_| true).len(), 100);
    c.bench_function("evaluate_all/100_flags", |b| {
        b.iter(|| env100.evaluate_all(black_box(&ctx), |_| true).len());
    });

    let doc1000 = document((0..1000).map(realistic_flag).collect());
    flagstaff_eval::validate_document(&doc1000).expect("valid");
    c.bench_function("compile/1000_flags", |b| {
        b.iter(|| CompiledEnvironment::compile(black_box(&doc1000), ENV).len());
    });
    c.bench_function("validate/1000_flags", |b| {
        b.iter(|| flagstaff_eval::validate_document(black_box(&doc1000)).is_ok());
    });

    let env1000 = CompiledEnvironment::compile(&doc1000, ENV);
    let toggled: Flag =
        serde_json::from_value(bool_flag("flag-0500", json!({"enabled": false}))).expect("parses");
    c.bench_function("with_flag/1000_flags", |b| {
        b.iter(|| env1000.with_flag(black_box(&toggled)).len());
    });
}

criterion_group! {
    name = benches;
    // Modest times: the machine is shared.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = single_flags, environments
}
criterion_main!(benches);
