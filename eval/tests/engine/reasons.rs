//! Each reason and error, the order targets → rules → fallthrough, defaults, and metadata.

use flagstaff_eval::{EvalError, Reason, bucket};
use serde_json::{Value, json};

use crate::support::{ENV, bool_flag, compile_valid, ctx, doc, outcome};

fn user(key: &str) -> flagstaff_eval::Context {
    ctx(json!({"targetingKey": key}))
}

#[test]
fn static_when_on_with_nothing_but_a_fallthrough_variation() {
    let env = compile_valid(
        json!([]),
        json!([bool_flag(
            "f",
            json!({"enabled": true, "fallthrough": {"variation": "on"}, "version": 7})
        )]),
    );
    let e = env.evaluate("f", &user("u-1"));
    assert_eq!(outcome(&e), (Some("on"), "STATIC"));
    assert_eq!(e.value, Some(&json!(true)));
    assert_eq!(e.key, "f");
    assert_eq!(e.version, 7);
    assert_eq!((e.error, e.rule_id, e.prerequisite), (None, None, None));
    // The context does not matter, not even its targeting key.
    assert_eq!(
        outcome(&env.evaluate("f", &ctx(json!({})))),
        (Some("on"), "STATIC")
    );
}

#[test]
fn default_when_the_fallthrough_serves_past_rules_targets_or_prerequisites() {
    let rule = json!([{"clauses": [{"attribute": "plan", "op": "in", "values": ["gold"]}], "serve": {"variation": "on"}}]);
    let env = compile_valid(
        json!([]),
        json!([
            bool_flag(
                "with-rules",
                json!({"enabled": true, "rules": rule, "fallthrough": {"variation": "off"}})
            ),
            bool_flag(
                "with-targets",
                json!({"enabled": true, "targets": [{"variation": "on", "values": ["vip"]}], "fallthrough": {"variation": "off"}})
            ),
            bool_flag(
                "with-prereq",
                json!({"enabled": true, "prerequisites": [{"flag": "base", "variations": ["on"]}], "fallthrough": {"variation": "off"}})
            ),
            bool_flag(
                "base",
                json!({"enabled": true, "fallthrough": {"variation": "on"}})
            ),
        ]),
    );
    for key in ["with-rules", "with-targets", "with-prereq"] {
        assert_eq!(
            outcome(&env.evaluate(key, &user("u-1"))),
            (Some("off"), "DEFAULT"),
            "{key}"
        );
    }
}

#[test]
fn targeting_match_from_targets_and_rules_with_the_rule_id() {
    let env = compile_valid(
        json!([]),
        json!([{
            "key": "color", "type": "string",
            "variations": [{"key": "red", "value": "#f00"}, {"key": "green", "value": "#0f0"}, {"key": "blue", "value": "#00f"}],
            "environments": {ENV: {
                "enabled": true,
                "targets": [{"variation": "green", "values": ["u-1", "u-2"]}, {"variation": "blue", "values": ["u-3"]}],
                "rules": [
                    {"id": "staff", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@acme.com"]}], "serve": {"variation": "blue"}},
                    {"clauses": [{"attribute": "email", "op": "contains", "values": ["@"]}], "serve": {"variation": "green"}},
                    {"id": "never-reached", "clauses": [{"attribute": "email", "op": "ends_with", "values": ["@acme.com"]}], "serve": {"variation": "red"}}
                ],
                "fallthrough": {"variation": "red"}
            }}
        }]),
    );
    let eval = |c| {
        let e = env.evaluate("color", &ctx(c));
        (e.variant, e.reason, e.rule_id, e.value.cloned())
    };
    // Targets come before rules.
    assert_eq!(
        eval(json!({"targetingKey": "u-1", "email": "a@acme.com"})),
        (Some("green"), Reason::TargetingMatch, None, Some(json!("#0f0")))
    );
    assert_eq!(
        eval(json!({"targetingKey": "u-2"})),
        (Some("green"), Reason::TargetingMatch, None, Some(json!("#0f0")))
    );
    assert_eq!(
        eval(json!({"targetingKey": "u-3"})),
        (Some("blue"), Reason::TargetingMatch, None, Some(json!("#00f")))
    );
    // Rules in order; the first match wins and reports its id.
    assert_eq!(
        eval(json!({"targetingKey": "u-9", "email": "b@acme.com"})),
        (
            Some("blue"),
            Reason::TargetingMatch,
            Some("staff"),
            Some(json!("#00f"))
        )
    );
    assert_eq!(
        eval(json!({"targetingKey": "u-9", "email": "b@other.com"})),
        (Some("green"), Reason::TargetingMatch, None, Some(json!("#0f0")))
    );
    // Targets need a string targeting key; rules still apply without one.
    assert_eq!(
        eval(json!({"targetingKey": 1, "email": "b@acme.com"})),
        (
            Some("blue"),
            Reason::TargetingMatch,
            Some("staff"),
            Some(json!("#00f"))
        )
    );
    assert_eq!(
        eval(json!({})),
        (Some("red"), Reason::Default, None, Some(json!("#f00")))
    );
}

#[test]
fn the_first_target_list_holding_a_key_wins() {
    // Validation refuses a key in two lists; a document saved anyway still evaluates.
    let d = doc(
        json!([]),
        json!([bool_flag(
            "f",
            json!({"enabled": true,
            "targets": [{"variation": "off", "values": ["u-1"]}, {"variation": "on", "values": ["u-1", "u-2"]}],
            "fallthrough": {"variation": "on"}})
        )]),
    );
    assert!(flagstaff_eval::validate_document(&d).is_err());
    let env = flagstaff_eval::CompiledEnvironment::compile(&d, ENV);
    assert_eq!(
        outcome(&env.evaluate("f", &user("u-1"))),
        (Some("off"), "TARGETING_MATCH")
    );
    assert_eq!(
        outcome(&env.evaluate("f", &user("u-2"))),
        (Some("on"), "TARGETING_MATCH")
    );
}

#[test]
fn a_target_list_of_100000_keys() {
    let keys: Vec<String> = (0..100_000).map(|i| format!("user-{i}")).collect();
    let env = compile_valid(
        json!([]),
        json!([bool_flag(
            "f",
            json!({"enabled": true, "targets": [{"variation": "on", "values": keys}], "fallthrough": {"variation": "off"}})
        )]),
    );
    assert_eq!(
        outcome(&env.evaluate("f", &user("user-0"))),
        (Some("on"), "TARGETING_MATCH")
    );
    assert_eq!(
        outcome(&env.evaluate("f", &user("user-99999"))),
        (Some("on"), "TARGETING_MATCH")
    );
    assert_eq!(
        outcome(&env.evaluate("f", &user("user-100000"))),
        (Some("off"), "DEFAULT")
    );
}

fn split_flag(key: &str, state: Value) -> Value {
    json!({
        "key": key, "type": "string",
        "variations": [{"key": "a", "value": "A"}, {"key": "b", "value": "B"}],
        "environments": {ENV: state},
    })
}

#[test]
fn split_for_rollouts_in_rules_and_fallthrough() {
    let rollout = |salt: Option<&str>, by: Option<&str>| {
        let mut r =
            json!({"variations": [{"variation": "a", "weight": 30000}, {"variation": "b", "weight": 70000}]});
        if let Some(salt) = salt {
            r["salt"] = json!(salt);
        }
        if let Some(by) = by {
            r["bucket_by"] = json!(by);
        }
        json!({"rollout": r})
    };
    let env = compile_valid(
        json!([]),
        json!([
            split_flag(
                "fall",
                json!({"enabled": true, "fallthrough": rollout(None, None)})
            ),
            split_flag(
                "ruled",
                json!({"enabled": true,
                "rules": [{"id": "beta", "clauses": [{"attribute": "beta", "op": "in", "values": [true]}],
                           "serve": rollout(Some("custom"), Some("org.id"))}],
                "fallthrough": {"variation": "a"}})
            ),
        ]),
    );
    let expected = |salt: &str, value: &str| if bucket(salt, value) < 30_000 { "a" } else { "b" };
    let mut seen = std::collections::HashSet::new();
    for i in 0..200 {
        let key = format!("user-{i}");
        let e = env.evaluate("fall", &user(&key));
        assert_eq!(e.reason, Reason::Split);
        // The default salt is the flag key, the default bucket_by the targeting key.
        assert_eq!(e.variant, Some(expected("fall", &key)), "{key}");
        seen.insert(e.variant);

        let org = format!("org-{i}");
        let e = env.evaluate(
            "ruled",
            &ctx(json!({"targetingKey": key, "beta": true, "org": {"id": org}})),
        );
        assert_eq!((e.reason, e.rule_id), (Reason::Split, Some("beta")));
        assert_eq!(e.variant, Some(expected("custom", &org)), "{org}");
    }
    assert_eq!(seen.len(), 2, "both variations are served");
}

#[test]
fn numbers_are_bucketed_as_their_json_text() {
    let env = compile_valid(
        json!([]),
        json!([split_flag(
            "n",
            json!({"enabled": true, "fallthrough": {"rollout": {"bucket_by": "account",
            "variations": [{"variation": "a", "weight": 50000}, {"variation": "b", "weight": 50000}]}}})
        )]),
    );
    for (number, text) in [(json!(12345), "12345"), (json!(-7), "-7"), (json!(1.5), "1.5")] {
        let e = env.evaluate("n", &ctx(json!({"account": number})));
        let expected = if bucket("n", text) < 50_000 { "a" } else { "b" };
        assert_eq!(e.variant, Some(expected), "{text}");
        let as_text = env.evaluate("n", &ctx(json!({"account": text})));
        assert_eq!(as_text.variant, e.variant);
    }
}

#[test]
fn targeting_key_missing_when_a_rollout_has_nothing_to_hash() {
    let env = compile_valid(
        json!([]),
        json!([split_flag(
            "f",
            json!({"enabled": true, "version": 3, "fallthrough": {"rollout": {
            "variations": [{"variation": "a", "weight": 50000}, {"variation": "b", "weight": 50000}]}}})
        )]),
    );
    for context in [
        json!({}),
        json!({"targetingKey": null}),
        json!({"targetingKey": true}),
        json!({"targetingKey": ["u"]}),
    ] {
        let e = env.evaluate("f", &ctx(context.clone()));
        assert_eq!(e.error, Some(EvalError::TargetingKeyMissing), "{context}");
        assert_eq!((e.reason, e.value, e.variant), (Reason::Error, None, None));
        assert_eq!((e.key, e.version), ("f", 3));
        assert_eq!(e.error.unwrap().code(), "TARGETING_KEY_MISSING");
    }
}

#[test]
fn flag_not_found() {
    let env = compile_valid(json!([]), json!([]));
    let e = env.evaluate("nope", &user("u-1"));
    assert_eq!(e.key, "nope");
    assert_eq!(
        (e.reason, e.error, e.value, e.version),
        (Reason::Error, Some(EvalError::FlagNotFound), None, 0)
    );
    assert_eq!(EvalError::FlagNotFound.code(), "FLAG_NOT_FOUND");
    assert!(!EvalError::FlagNotFound.to_string().is_empty());
}

#[test]
fn disabled_serves_the_off_variation_and_its_defaults() {
    let env = compile_valid(
        json!([]),
        json!([
            // Boolean: the `false` variation, wherever it is.
            {"key": "bool", "type": "boolean",
             "variations": [{"key": "yes", "value": true}, {"key": "no", "value": false}],
             "environments": {ENV: {"enabled": false, "rules": [{"clauses": [{"attribute": "x", "op": "exists"}], "serve": {"variation": "yes"}}]}}},
            // Other types: the first variation.
            {"key": "str", "type": "string",
             "variations": [{"key": "one", "value": "1"}, {"key": "two", "value": "2"}],
             "environments": {ENV: {"enabled": false}}},
            {"key": "explicit", "type": "number",
             "variations": [{"key": "one", "value": 1}, {"key": "two", "value": 2}],
             "environments": {ENV: {"enabled": false, "off_variation": "two"}}},
            // An environment the flag does not mention: the default state, i.e. off.
            {"key": "unmentioned", "type": "json",
             "variations": [{"key": "cfg", "value": {"a": [1]}}]},
        ]),
    );
    let c = ctx(json!({"targetingKey": "u", "x": 1}));
    let e = env.evaluate("bool", &c);
    assert_eq!(
        (outcome(&e), e.value),
        ((Some("no"), "DISABLED"), Some(&json!(false)))
    );
    assert_eq!(outcome(&env.evaluate("str", &c)), (Some("one"), "DISABLED"));
    assert_eq!(outcome(&env.evaluate("explicit", &c)), (Some("two"), "DISABLED"));
    let e = env.evaluate("unmentioned", &c);
    assert_eq!(
        (outcome(&e), e.value, e.version),
        ((Some("cfg"), "DISABLED"), Some(&json!({"a": [1]})), 0)
    );
}

#[test]
fn the_default_fallthrough_serves_the_off_variation() {
    let env = compile_valid(
        json!([]),
        json!([
            bool_flag("f", json!({"enabled": true, "off_variation": "on"})),
            bool_flag("g", json!({"enabled": true}))
        ]),
    );
    assert_eq!(outcome(&env.evaluate("f", &user("u"))), (Some("on"), "STATIC"));
    assert_eq!(outcome(&env.evaluate("g", &user("u"))), (Some("off"), "STATIC"));
}

#[test]
fn reasons_and_errors_have_their_wire_names() {
    let all = [
        (Reason::Static, "STATIC"),
        (Reason::Default, "DEFAULT"),
        (Reason::TargetingMatch, "TARGETING_MATCH"),
        (Reason::Split, "SPLIT"),
        (Reason::Disabled, "DISABLED"),
        (Reason::PrerequisiteFailed, "PREREQUISITE_FAILED"),
        (Reason::Error, "ERROR"),
    ];
    for (reason, name) in all {
        assert_eq!(reason.as_str(), name);
        assert_eq!(reason.to_string(), name);
        assert_eq!(serde_json::to_value(reason).unwrap(), json!(name));
    }
    assert_eq!(
        serde_json::to_value(EvalError::TargetingKeyMissing).unwrap(),
        json!("TARGETING_KEY_MISSING")
    );
}

#[test]
fn evaluations_serialize_for_the_server() {
    let env = compile_valid(
        json!([]),
        json!([bool_flag(
            "f",
            json!({"enabled": true, "fallthrough": {"variation": "on"}})
        )]),
    );
    let e = env.evaluate("f", &user("u"));
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        json!({"key": "f", "value": true, "variant": "on", "reason": "STATIC", "error": null,
               "rule_id": null, "prerequisite": null, "version": 0})
    );
}
