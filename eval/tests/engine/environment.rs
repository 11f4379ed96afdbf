//! The compiled environment: bulk evaluation, incremental updates, bundles, sharing.

use flagstaff_eval::model::{Bundle, Flag};
use flagstaff_eval::{CompiledEnvironment, CompiledFlag, Reason, parse_bundle, validate_bundle};
use serde_json::{Value, json};

use crate::support::{ENV, bool_flag, compile_valid, ctx, doc, outcome};

fn three_flags() -> CompiledEnvironment {
    compile_valid(
        json!([]),
        json!([
            bool_flag("zeta", json!({"enabled": true, "fallthrough": {"variation": "on"}})),
            {"key": "alpha", "type": "string", "kind": "config",
             "variations": [{"key": "x", "value": "X"}],
             "environments": {ENV: {"enabled": true, "fallthrough": {"variation": "x"}}}},
            {"key": "mid", "type": "boolean", "client_side": false,
             "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
             "environments": {ENV: {"enabled": true, "version": 4,
                "prerequisites": [{"flag": "zeta", "variations": ["on"]}],
                "fallthrough": {"variation": "on"}}}},
        ]),
    )
}

#[test]
fn evaluate_all_is_sorted_by_key_and_filtered() {
    let env = three_flags();
    let c = ctx(json!({"targetingKey": "u"}));
    let all = env.evaluate_all(&c, |_| true);
    let keys: Vec<&str> = all.iter().map(|e| e.key).collect();
    assert_eq!(keys, ["alpha", "mid", "zeta"]);
    // Each result is what evaluating the flag alone gives.
    for e in &all {
        assert_eq!(e, &env.evaluate(e.key, &c));
    }
    // Configs are not client-side by default; `mid` opted out.
    let browser: Vec<&str> = env
        .evaluate_all(&c, CompiledFlag::is_client_side)
        .iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(browser, ["zeta"]);
    assert!(env.evaluate_all(&c, |_| false).is_empty());
}

/// One pass over many flags remembers segment membership and parsed versions for its context;
/// each flag must still get exactly what it gets alone, whatever the other flags asked.
#[test]
fn what_a_pass_remembers_never_mixes_flags_or_attributes() {
    let rule = |clauses: Value| {
        json!({"enabled": true, "rules": [{"clauses": clauses, "serve": {"variation": "on"}}],
                                       "fallthrough": {"variation": "off"}})
    };
    let env = compile_valid(
        json!([{"key": "beta", "included": ["in-1"], "excluded": ["out-1"],
                "rules": [{"clauses": [{"attribute": "email", "op": "ends_with", "values": ["@acme.example"]}]}]}]),
        json!([
            bool_flag(
                "a-in-beta",
                rule(json!([{"op": "in_segment", "values": ["beta"]}]))
            ),
            bool_flag(
                "b-not-in-beta",
                rule(json!([{"op": "in_segment", "values": ["beta"], "negate": true}]))
            ),
            bool_flag(
                "c-new-app",
                rule(json!([{"attribute": "version", "op": "semver_gte", "values": ["2.0.0"]}]))
            ),
            bool_flag(
                "d-old-os",
                rule(json!([{"attribute": "os", "op": "semver_lt", "values": ["2.0.0"]}]))
            ),
            bool_flag(
                "e-any-new",
                rule(json!([{"attribute": "versions", "op": "semver_gte", "values": ["3.0.0"]}]))
            ),
            bool_flag(
                "f-app-is-os",
                rule(json!([{"attribute": "version", "op": "semver_eq", "values": ["1.5.0"]}]))
            ),
        ]),
    );
    let contexts = [
        json!({"targetingKey": "in-1", "version": "2.1.0", "os": "1.9", "versions": ["1.0.0", "3.1.0"]}),
        json!({"targetingKey": "out-1", "email": "x@acme.example", "version": "1.5.0", "os": "1.5.0"}),
        json!({"targetingKey": "u", "email": "x@acme.example", "version": "v3", "os": "not a version"}),
        json!({"targetingKey": "u", "email": "x@elsewhere.example", "version": 2, "versions": ["2.0.0"]}),
    ];
    for c in contexts {
        let c = ctx(c);
        let all = env.evaluate_all(&c, |_| true);
        assert_eq!(all.len(), 6);
        for e in &all {
            assert_eq!(e, &env.evaluate(e.key, &c), "{c:?}");
        }
    }
    let served = |c: Value| -> Vec<&str> {
        env.evaluate_all(&ctx(c), |_| true)
            .iter()
            .filter(|e| e.variant == Some("on"))
            .map(|e| e.key)
            .collect()
    };
    assert_eq!(
        served(
            json!({"targetingKey": "in-1", "version": "2.1.0", "os": "1.9", "versions": ["1.0.0", "3.1.0"]})
        ),
        ["a-in-beta", "c-new-app", "d-old-os", "e-any-new"]
    );
    assert_eq!(
        served(
            json!({"targetingKey": "out-1", "email": "x@acme.example", "version": "1.5.0", "os": "1.5.0"})
        ),
        ["b-not-in-beta", "d-old-os", "f-app-is-os"]
    );
}

#[test]
fn evaluate_each_gives_each_flags_position_and_variation() {
    let env = three_flags();
    let c = ctx(json!({"targetingKey": "u"}));
    let flags: Vec<&CompiledFlag> = env.flags().collect();
    let mut indexed = Vec::new();
    env.evaluate_each(&c, |f| f.key() != "mid", |i, e| indexed.push((i, e)));
    let positions: Vec<(usize, &str)> = indexed.iter().map(|(i, e)| (*i, e.key)).collect();
    assert_eq!(positions, [(0, "alpha"), (2, "zeta")]);
    for (i, e) in &indexed {
        assert_eq!(flags[*i].key(), e.key);
        assert_eq!(env.position(e.key), Some(*i));
        let (variant, value) = flags[*i].variations().nth(e.variation.unwrap()).unwrap();
        assert_eq!((Some(variant), Some(value)), (e.variant, e.value));
    }
    let plain: Vec<_> = env.evaluate_all(&c, |f| f.key() != "mid");
    assert_eq!(indexed.into_iter().map(|(_, e)| e).collect::<Vec<_>>(), plain);
    // Off: the off variation's position.
    let mid = env.evaluate("mid", &c);
    assert_eq!((mid.variant, mid.variation), (Some("on"), Some(0)));
    // An error serves no variation.
    let missing = env.evaluate("nope", &c);
    assert_eq!((missing.variation, env.position("nope")), (None, None));
}

#[test]
fn flag_metadata() {
    let env = three_flags();
    let alpha = env.flag("alpha").unwrap();
    assert_eq!(alpha.kind(), flagstaff_eval::model::FlagKind::Config);
    assert_eq!(alpha.flag_type(), flagstaff_eval::model::FlagType::String);
    assert!(!alpha.is_client_side() && !alpha.is_temporary());
    assert!(alpha.enabled());
    let mid = env.flag("mid").unwrap();
    assert_eq!(mid.version(), 4);
    assert_eq!(mid.off_variation(), ("off", &json!(false)));
    assert_eq!(
        mid.variations().map(|(k, _)| k).collect::<Vec<_>>(),
        ["on", "off"]
    );
    assert!(env.flag("nope").is_none());
    assert_eq!((env.len(), env.is_empty()), (3, false));
    assert_eq!(
        env.flags().map(CompiledFlag::key).collect::<Vec<_>>(),
        ["alpha", "mid", "zeta"]
    );
}

fn parse_flag(value: serde_json::Value) -> Flag {
    serde_json::from_value(value).unwrap()
}

#[test]
fn with_flag_recompiles_one_flag_and_shares_the_rest() {
    let before = three_flags();
    let c = ctx(json!({"targetingKey": "u"}));
    let after = before.with_flag(&parse_flag(bool_flag(
        "zeta",
        json!({"enabled": false, "version": 2}),
    )));
    // The toggle shows, and reaches the flag that depends on it.
    assert_eq!(outcome(&after.evaluate("zeta", &c)), (Some("off"), "DISABLED"));
    assert_eq!(after.evaluate("zeta", &c).version, 2);
    assert_eq!(
        outcome(&after.evaluate("mid", &c)),
        (Some("off"), "PREREQUISITE_FAILED")
    );
    // The old environment is untouched.
    assert_eq!(outcome(&before.evaluate("zeta", &c)), (Some("on"), "STATIC"));
    assert_eq!(outcome(&before.evaluate("mid", &c)), (Some("on"), "DEFAULT"));
    // The other flags are the very same compiled objects.
    for key in ["alpha", "mid"] {
        assert!(
            std::ptr::eq(before.flag(key).unwrap(), after.flag(key).unwrap()),
            "{key}"
        );
    }
    assert!(!std::ptr::eq(
        before.flag("zeta").unwrap(),
        after.flag("zeta").unwrap()
    ));

    // Adding a new flag keeps the order and the index right.
    let added = after.with_flag(&parse_flag(bool_flag(
        "beta",
        json!({"enabled": true, "fallthrough": {"variation": "on"}}),
    )));
    assert_eq!(
        added.flags().map(CompiledFlag::key).collect::<Vec<_>>(),
        ["alpha", "beta", "mid", "zeta"]
    );
    for key in ["alpha", "beta", "mid", "zeta"] {
        assert_eq!(added.evaluate(key, &c).key, key);
        assert_ne!(added.evaluate(key, &c).reason, Reason::Error, "{key}");
    }

    let removed = added.without_flag("alpha").without_flag("not-there");
    assert_eq!(
        removed.flags().map(CompiledFlag::key).collect::<Vec<_>>(),
        ["beta", "mid", "zeta"]
    );
    assert_eq!(removed.evaluate("alpha", &c).reason, Reason::Error);
    assert_eq!(
        outcome(&removed.evaluate("mid", &c)),
        (Some("off"), "PREREQUISITE_FAILED")
    );
    assert_eq!(added.len(), 4);
}

#[test]
fn with_flag_uses_the_environments_segments_and_its_own_state() {
    let env = compile_valid(json!([{"key": "beta", "included": ["u-1"]}]), json!([]));
    let flag = parse_flag(json!({
        "key": "f", "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {
            "staging": {"enabled": false},
            ENV: {"enabled": true,
                  "rules": [{"clauses": [{"op": "in_segment", "values": ["beta"]}], "serve": {"variation": "on"}}],
                  "fallthrough": {"variation": "off"}}}
    }));
    let env = env.with_flag(&flag);
    assert_eq!(
        outcome(&env.evaluate("f", &ctx(json!({"targetingKey": "u-1"})))),
        (Some("on"), "TARGETING_MATCH")
    );
    assert_eq!(
        outcome(&env.evaluate("f", &ctx(json!({"targetingKey": "u-2"})))),
        (Some("off"), "DEFAULT")
    );
    // A flag that cannot be compiled (no variations) leaves the environment instead.
    let broken = parse_flag(json!({"key": "f", "type": "boolean", "variations": []}));
    assert!(env.with_flag(&broken).flag("f").is_none());
}

#[test]
fn compile_picks_the_named_environment() {
    let d = doc(
        json!([]),
        json!([{"key": "f", "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "environments": {ENV: {"enabled": true, "fallthrough": {"variation": "on"}}, "staging": {"enabled": false}}}]),
    );
    let c = ctx(json!({}));
    assert_eq!(
        outcome(&CompiledEnvironment::compile(&d, ENV).evaluate("f", &c)),
        (Some("on"), "STATIC")
    );
    assert_eq!(
        outcome(&CompiledEnvironment::compile(&d, "staging").evaluate("f", &c)),
        (Some("off"), "DISABLED")
    );
    assert_eq!(
        outcome(&CompiledEnvironment::compile(&d, "other").evaluate("f", &c)),
        (Some("off"), "DISABLED")
    );
}

#[test]
fn bundles_parse_validate_and_compile() {
    let json = br#"{"flagstaff": 1, "project": {"key": "shop"}, "environment": "production", "revision": 42,
        "segments": [{"key": "beta", "included": ["u-1"]}],
        "flags": [{"key": "f", "type": "boolean",
            "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "environments": {"production": {"enabled": true,
                "rules": [{"clauses": [{"op": "in_segment", "values": ["beta"]}], "serve": {"variation": "on"}}]}}}]}"#;
    let bundle: Bundle = parse_bundle(json).unwrap();
    validate_bundle(&bundle).unwrap();
    let env = CompiledEnvironment::from_bundle(&bundle);
    assert_eq!((env.environment(), env.revision()), ("production", 42));
    assert!(env.has_segment("beta"));
    assert_eq!(
        outcome(&env.evaluate("f", &ctx(json!({"targetingKey": "u-1"})))),
        (Some("on"), "TARGETING_MATCH")
    );
}

#[test]
fn environments_are_cheap_to_share_between_threads() {
    fn shareable<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    shareable::<CompiledEnvironment>();
    let env = three_flags();
    let copy = env.clone();
    assert!(std::ptr::eq(env.flag("mid").unwrap(), copy.flag("mid").unwrap()));
    let handle =
        std::thread::spawn(move || copy.evaluate("zeta", &ctx(json!({}))).variant.map(str::to_owned));
    assert_eq!(handle.join().unwrap().as_deref(), Some("on"));
    let debug = format!("{env:?}");
    assert!(debug.contains("alpha") && debug.contains(ENV), "{debug}");
}
