//! Segments: included beats rules, excluded beats both included and rules.

use serde_json::json;

use crate::support::{bool_flag, compile_valid, ctx};

fn env() -> flagstaff_eval::CompiledEnvironment {
    compile_valid(
        json!([
            {"key": "beta", "name": "Beta",
             "included": ["u-in", "u-both"], "excluded": ["u-out", "u-both"],
             "rules": [
                {"clauses": [{"attribute": "email", "op": "ends_with", "values": ["@acme.com"]}]},
                {"id": "big", "clauses": [{"attribute": "seats", "op": "gte", "values": [100]},
                                          {"attribute": "plan", "op": "in", "values": ["enterprise"]}]}
             ]},
            {"key": "staff", "included": ["u-staff"]}
        ]),
        json!([
            bool_flag(
                "in-beta",
                json!({"enabled": true,
                "rules": [{"id": "seg", "clauses": [{"op": "in_segment", "values": ["beta"]}], "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}})
            ),
            bool_flag(
                "not-in-beta",
                json!({"enabled": true,
                "rules": [{"clauses": [{"op": "in_segment", "values": ["beta"], "negate": true}], "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}})
            ),
            bool_flag(
                "in-any",
                json!({"enabled": true,
                "rules": [{"clauses": [{"op": "in_segment", "values": ["staff", "beta"]}], "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}})
            ),
        ]),
    )
}

#[test]
fn membership() {
    let env = env();
    let cases = [
        (
            "included, no rule matches",
            json!({"targetingKey": "u-in", "email": "x@other.com"}),
            true,
        ),
        (
            "excluded beats a matching rule",
            json!({"targetingKey": "u-out", "email": "x@acme.com"}),
            false,
        ),
        (
            "excluded beats included",
            json!({"targetingKey": "u-both", "email": "x@acme.com"}),
            false,
        ),
        (
            "first rule",
            json!({"targetingKey": "u-9", "email": "x@acme.com"}),
            true,
        ),
        (
            "second rule, all clauses",
            json!({"targetingKey": "u-9", "seats": 150, "plan": "enterprise"}),
            true,
        ),
        (
            "second rule, one clause",
            json!({"targetingKey": "u-9", "seats": 150, "plan": "team"}),
            false,
        ),
        (
            "rules apply without a targeting key",
            json!({"email": "x@acme.com"}),
            true,
        ),
        ("nothing matches", json!({"targetingKey": "u-9"}), false),
        ("empty context", json!({}), false),
    ];
    for (label, context, in_beta) in cases {
        let c = ctx(context);
        let e = env.evaluate("in-beta", &c);
        assert_eq!(e.variant == Some("on"), in_beta, "{label}");
        if in_beta {
            assert_eq!(e.rule_id, Some("seg"), "{label}");
        }
        // Negation inverts membership, even for a context with no attributes at all: in_segment
        // has no attribute to be missing.
        assert_eq!(
            env.evaluate("not-in-beta", &c).variant == Some("on"),
            !in_beta,
            "{label}"
        );
    }
}

#[test]
fn in_segment_matches_any_of_its_segments() {
    let env = env();
    let on = |c| env.evaluate("in-any", &ctx(c)).variant == Some("on");
    assert!(on(json!({"targetingKey": "u-staff"})));
    assert!(on(json!({"targetingKey": "u-in"})));
    assert!(!on(json!({"targetingKey": "u-out"})));
}
