//! Prerequisites: chains, an off prerequisite, unlisted variations, the depth limit, cycles.

use flagstaff_eval::model::Document;
use flagstaff_eval::{CompiledEnvironment, Reason};
use serde_json::{Value, json};

use crate::support::{ENV, bool_flag, compile_valid, ctx, doc, outcome};

fn requires(key: &str, prereq: &str, variations: Value, extra: Value) -> Value {
    let mut state = json!({"enabled": true,
        "prerequisites": [{"flag": prereq, "variations": variations}],
        "fallthrough": {"variation": "on"}});
    if let (Value::Object(s), Value::Object(e)) = (&mut state, extra) {
        s.extend(e);
    }
    bool_flag(key, state)
}

#[test]
fn a_chain_passes_when_every_link_serves_a_listed_variation() {
    let env = compile_valid(
        json!([]),
        json!([
            requires("a", "b", json!(["on"]), json!({})),
            requires("b", "c", json!(["on"]), json!({})),
            bool_flag("c", json!({"enabled": true, "fallthrough": {"variation": "on"}})),
        ]),
    );
    let e = env.evaluate("a", &ctx(json!({})));
    assert_eq!(outcome(&e), (Some("on"), "DEFAULT"));
    assert_eq!(e.prerequisite, None);
}

#[test]
fn an_off_prerequisite_anywhere_in_the_chain_fails_the_flag() {
    let env = compile_valid(
        json!([]),
        json!([
            requires("a", "b", json!(["on", "off"]), json!({"off_variation": "off"})),
            requires("b", "c", json!(["on"]), json!({})),
            // c is off: it serves `on` as its off variation, but being off it fails anyway.
            bool_flag("c", json!({"enabled": false, "off_variation": "on"})),
        ]),
    );
    let c = ctx(json!({"targetingKey": "u"}));
    let b = env.evaluate("b", &c);
    assert_eq!(
        (outcome(&b), b.prerequisite),
        ((Some("off"), "PREREQUISITE_FAILED"), Some("c"))
    );
    // a lists b's off variation, but b's own prerequisite failed, so a fails too, naming b.
    let a = env.evaluate("a", &c);
    assert_eq!(
        (outcome(&a), a.prerequisite),
        ((Some("off"), "PREREQUISITE_FAILED"), Some("b"))
    );
    assert_eq!(a.value, Some(&json!(false)));
}

#[test]
fn a_prerequisite_serving_an_unlisted_variation_fails_per_context() {
    let env = compile_valid(
        json!([]),
        json!([
            requires(
                "dependent",
                "gate",
                json!(["on"]),
                json!({
                "targets": [{"variation": "on", "values": ["vip"]}]})
            ),
            bool_flag(
                "gate",
                json!({"enabled": true,
                "rules": [{"clauses": [{"attribute": "beta", "op": "in", "values": [true]}], "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}})
            ),
        ]),
    );
    let in_beta = env.evaluate("dependent", &ctx(json!({"targetingKey": "u", "beta": true})));
    assert_eq!(outcome(&in_beta), (Some("on"), "DEFAULT"));
    let not_beta = env.evaluate("dependent", &ctx(json!({"targetingKey": "u"})));
    assert_eq!(
        (outcome(&not_beta), not_beta.prerequisite),
        ((Some("off"), "PREREQUISITE_FAILED"), Some("gate"))
    );
    // Prerequisites come before targets.
    let vip = env.evaluate("dependent", &ctx(json!({"targetingKey": "vip"})));
    assert_eq!(outcome(&vip), (Some("off"), "PREREQUISITE_FAILED"));
    // A disabled flag does not look at its prerequisites.
    let off = compile_valid(
        json!([]),
        json!([
            requires("x", "y", json!(["on"]), json!({"enabled": false})),
            bool_flag("y", json!({}))
        ]),
    );
    let e = off.evaluate("x", &ctx(json!({})));
    assert_eq!((outcome(&e), e.prerequisite), ((Some("off"), "DISABLED"), None));
}

#[test]
fn a_prerequisite_that_errors_fails() {
    let env = compile_valid(
        json!([]),
        json!([
            requires("a", "split", json!(["on", "off"]), json!({})),
            bool_flag(
                "split",
                json!({"enabled": true, "fallthrough": {"rollout": {"variations": [
                {"variation": "on", "weight": 50000}, {"variation": "off", "weight": 50000}]}}})
            ),
        ]),
    );
    assert_eq!(
        outcome(&env.evaluate("a", &ctx(json!({"targetingKey": "u"})))),
        (Some("on"), "DEFAULT")
    );
    let e = env.evaluate("a", &ctx(json!({})));
    assert_eq!(
        (outcome(&e), e.prerequisite),
        ((Some("off"), "PREREQUISITE_FAILED"), Some("split"))
    );
}

/// `f0 → f1 → … → f{n-1}`, each requiring the next to serve `on`; the last is on.
fn chain(n: usize) -> Document {
    let flags: Vec<Value> = (0..n)
        .map(|i| {
            if i + 1 < n {
                requires(&format!("f{i}"), &format!("f{}", i + 1), json!(["on"]), json!({}))
            } else {
                bool_flag(
                    &format!("f{i}"),
                    json!({"enabled": true, "fallthrough": {"variation": "on"}}),
                )
            }
        })
        .collect();
    doc(json!([]), Value::Array(flags))
}

#[test]
fn evaluation_follows_prerequisites_16_deep_and_no_deeper() {
    // f0's prerequisites reach down to f16: 16 levels.
    let ok = CompiledEnvironment::compile(&chain(17), ENV);
    assert_eq!(
        outcome(&ok.evaluate("f0", &ctx(json!({})))),
        (Some("on"), "DEFAULT")
    );
    let too_deep = CompiledEnvironment::compile(&chain(18), ENV);
    let e = too_deep.evaluate("f0", &ctx(json!({})));
    assert_eq!(
        (outcome(&e), e.prerequisite),
        ((Some("off"), "PREREQUISITE_FAILED"), Some("f1"))
    );
    // From f1 the same chain is only 16 deep.
    assert_eq!(
        outcome(&too_deep.evaluate("f1", &ctx(json!({})))),
        (Some("on"), "DEFAULT")
    );
}

#[test]
fn a_cycle_saved_despite_validation_fails_instead_of_looping() {
    let d = doc(
        json!([]),
        json!([
            requires("a", "b", json!(["on"]), json!({})),
            requires("b", "a", json!(["on"]), json!({})),
            requires("self", "self", json!(["on"]), json!({})),
        ]),
    );
    assert!(flagstaff_eval::validate_document(&d).is_err());
    let env = CompiledEnvironment::compile(&d, ENV);
    for key in ["a", "b", "self"] {
        let e = env.evaluate(key, &ctx(json!({})));
        assert_eq!(e.reason, Reason::PrerequisiteFailed, "{key}");
    }
}

#[test]
fn a_wide_diamond_of_prerequisites_is_evaluated_in_linear_time() {
    // 16 layers of 4 flags, each flag requiring all 4 of the next layer: 4^16 paths. Only
    // remembering each flag's outcome within an evaluation makes this finish.
    let (layers, width) = (16, 4);
    let mut flags = Vec::new();
    for layer in 0..layers {
        for i in 0..width {
            let key = format!("l{layer}-{i}");
            let state = if layer + 1 < layers {
                let prerequisites: Vec<Value> = (0..width)
                    .map(|j| json!({"flag": format!("l{}-{j}", layer + 1), "variations": ["on"]}))
                    .collect();
                json!({"enabled": true, "prerequisites": prerequisites, "fallthrough": {"variation": "on"}})
            } else {
                json!({"enabled": true, "fallthrough": {"variation": "on"}})
            };
            flags.push(bool_flag(&key, state));
        }
    }
    let env = compile_valid(json!([]), Value::Array(flags));
    let all = env.evaluate_all(&ctx(json!({})), |_| true);
    assert_eq!(all.len(), layers * width);
    assert!(all.iter().all(|e| e.variant == Some("on")), "{all:?}");
}
