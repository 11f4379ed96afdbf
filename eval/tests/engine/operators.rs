//! One table per operator: each row is a context value (or a missing attribute), whether the
//! clause matches, and whether the negated clause matches.

use serde_json::{Value, json};

use crate::support::{bool_flag, compile_valid, ctx};

/// A missing attribute.
const MISSING: Option<Value> = None;

// The tables read better with `some(json!(…))` beside `MISSING` than with `Some(json!(…))`.
#[allow(clippy::unnecessary_wraps)]
fn some(v: Value) -> Option<Value> {
    Some(v)
}

/// Evaluates a rule with one clause `{attribute: "attr", op, values, negate}` against a context
/// holding `attr` (or not) and tells whether the rule matched.
fn clause_matches(op: &str, values: &Value, negate: bool, attr: Option<&Value>) -> bool {
    let env = compile_valid(
        json!([]),
        json!([bool_flag(
            "f",
            json!({
                "enabled": true,
                "rules": [{"id": "r", "clauses": [
                    {"attribute": "attr", "op": op, "values": values, "negate": negate}],
                    "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}
            })
        )]),
    );
    let mut context = ctx(json!({"targetingKey": "u-1"}));
    if let Some(v) = attr {
        context.insert("attr".into(), v.clone());
    }
    let e = env.evaluate("f", &context);
    assert!(e.error.is_none(), "{e:?}");
    e.variant == Some("on")
}

/// Checks every row: (label, attribute value, matches, matches when negated).
fn table(op: &str, values: Value, rows: &[(&str, Option<Value>, bool, bool)]) {
    for (label, attr, plain, negated) in rows {
        assert_eq!(
            clause_matches(op, &values, false, attr.as_ref()),
            *plain,
            "{op} {values} against {label} ({attr:?})"
        );
        assert_eq!(
            clause_matches(op, &values, true, attr.as_ref()),
            *negated,
            "negated {op} {values} against {label} ({attr:?})"
        );
    }
}

#[test]
fn op_in() {
    table(
        "in",
        json!(["gold", "silver", 7, true]),
        &[
            ("a listed string", some(json!("silver")), true, false),
            ("an unlisted string", some(json!("bronze")), false, true),
            ("case differs", some(json!("Gold")), false, true),
            ("a listed number", some(json!(7)), true, false),
            ("the same number as a float", some(json!(7.0)), true, false),
            ("an unlisted number", some(json!(8)), false, true),
            ("a listed boolean", some(json!(true)), true, false),
            ("an unlisted boolean", some(json!(false)), false, true),
            ("missing", MISSING, false, false),
            ("null counts as missing", some(Value::Null), false, false),
            ("wrong type: object", some(json!({"gold": 1})), false, true),
            ("number is not its text", some(json!("7")), false, true),
            (
                "array with a listed element",
                some(json!(["bronze", "gold"])),
                true,
                false,
            ),
            ("array without", some(json!(["bronze", "tin"])), false, true),
            ("empty array", some(json!([])), false, true),
        ],
    );
}

#[test]
fn op_in_with_many_values_uses_the_same_semantics() {
    let values: Vec<Value> = (0..10_000)
        .map(|i| json!(format!("user-{i}")))
        .chain((0..100).map(|i| json!(i * 3)))
        .collect();
    table(
        "in",
        Value::Array(values),
        &[
            ("first", some(json!("user-0")), true, false),
            ("last", some(json!("user-9999")), true, false),
            ("not listed", some(json!("user-10000")), false, true),
            ("a listed number", some(json!(297)), true, false),
            ("a listed number as float", some(json!(297.0)), true, false),
            ("an unlisted number", some(json!(298)), false, true),
            ("missing", MISSING, false, false),
            ("array", some(json!(["x", "user-42"])), true, false),
        ],
    );
}

#[test]
fn op_contains() {
    table(
        "contains",
        json!(["acme", "initech"]),
        &[
            ("contains one", some(json!("team-acme-eu")), true, false),
            ("contains the other", some(json!("initech")), true, false),
            ("contains none", some(json!("globex")), false, true),
            ("case differs", some(json!("ACME")), false, true),
            ("missing", MISSING, false, false),
            ("wrong type", some(json!(42)), false, true),
            ("array", some(json!(["globex", "acme"])), true, false),
        ],
    );
}

#[test]
fn op_starts_with() {
    table(
        "starts_with",
        json!(["admin-", "root"]),
        &[
            ("prefix", some(json!("admin-7")), true, false),
            ("whole", some(json!("root")), true, false),
            ("infix", some(json!("x-admin-7")), false, true),
            ("missing", MISSING, false, false),
            ("wrong type", some(json!(true)), false, true),
            ("array", some(json!(["x", "rooted"])), true, false),
        ],
    );
}

#[test]
fn op_ends_with() {
    table(
        "ends_with",
        json!(["@acme.com"]),
        &[
            ("suffix", some(json!("ann@acme.com")), true, false),
            ("other domain", some(json!("ann@acme.com.evil")), false, true),
            ("missing", MISSING, false, false),
            (
                "array with a wrong-typed element",
                some(json!([1, "b@acme.com"])),
                true,
                false,
            ),
            ("wrong type scalar", some(json!(1)), false, true),
            ("array", some(json!(["a@b.c", "b@acme.com"])), true, false),
        ],
    );
}

#[test]
fn op_matches() {
    table(
        "matches",
        json!(["^u-[0-9]+$", "^admin"]),
        &[
            ("first regex", some(json!("u-42")), true, false),
            ("second regex", some(json!("administrator")), true, false),
            ("no regex", some(json!("u-42x")), false, true),
            ("missing", MISSING, false, false),
            ("wrong type", some(json!(42)), false, true),
            ("array", some(json!(["x", "u-1"])), true, false),
        ],
    );
    // Unanchored patterns search anywhere in the value.
    table(
        "matches",
        json!(["beta"]),
        &[("infix", some(json!("alphabetagamma")), true, false)],
    );
}

#[test]
fn op_lt_lte_gt_gte() {
    // "less than any of [10, 20]" is "less than 20".
    let rows = |lt: bool, lte: bool, gt: bool, gte: bool| (lt, lte, gt, gte);
    let cases = [
        ("below all", json!(5), rows(true, true, false, false)),
        ("equal to the low bound", json!(10), rows(true, true, false, true)),
        ("between", json!(15.5), rows(true, true, true, true)),
        (
            "equal to the high bound",
            json!(20),
            rows(false, true, true, true),
        ),
        ("above all", json!(25), rows(false, false, true, true)),
    ];
    for (label, value, (lt, lte, gt, gte)) in cases {
        for (op, expected) in [("lt", lt), ("lte", lte), ("gt", gt), ("gte", gte)] {
            table(
                op,
                json!([10, 20]),
                &[(label, some(value.clone()), expected, !expected)],
            );
        }
    }
    for op in ["lt", "lte", "gt", "gte"] {
        table(
            op,
            json!([10, 20]),
            &[
                ("missing", MISSING, false, false),
                ("wrong type: numeric string", some(json!("15")), false, true),
                ("array with one in range", some(json!(["x", 15])), true, false),
            ],
        );
    }
}

#[test]
fn op_semver() {
    let v = some;
    table(
        "semver_eq",
        json!(["1.2.3", "2.0.0"]),
        &[
            ("equal", v(json!("1.2.3")), true, false),
            ("the other", v(json!("2.0.0")), true, false),
            (
                "build metadata is ignored",
                v(json!("1.2.3+build.7")),
                true,
                false,
            ),
            ("short form is padded", v(json!("2.0")), true, false),
            ("leading v", v(json!("v1.2.3")), true, false),
            ("pre-release differs", v(json!("1.2.3-beta")), false, true),
            ("different", v(json!("1.2.4")), false, true),
            ("missing", MISSING, false, false),
            ("wrong type: not a version", v(json!("latest")), false, true),
            ("wrong type: number", v(json!(1.2)), false, true),
            ("array", v(json!(["0.1.0", "2.0.0"])), true, false),
        ],
    );
    table(
        "semver_lt",
        json!(["1.2.3"]),
        &[
            ("lower", v(json!("1.2.2")), true, false),
            ("pre-release is lower", v(json!("1.2.3-rc.1")), true, false),
            ("numeric, not text, order", v(json!("1.10.0")), false, true),
            ("equal", v(json!("1.2.3")), false, true),
            ("missing", MISSING, false, false),
            ("wrong type", v(json!("x")), false, true),
            ("array", v(json!(["9.0.0", "0.9.0"])), true, false),
        ],
    );
    table(
        "semver_lte",
        json!(["1.2.3"]),
        &[
            ("equal", v(json!("1.2.3")), true, false),
            ("higher", v(json!("1.2.4")), false, true),
            ("missing", MISSING, false, false),
        ],
    );
    table(
        "semver_gt",
        json!(["1.2.3", "1.0.0"]),
        &[
            ("above the lowest", v(json!("1.1.0")), true, false),
            ("equal to the lowest", v(json!("1.0.0")), false, true),
            ("2.0.0 beats 1.10", v(json!("2.0.0-alpha")), true, false),
            ("missing", MISSING, false, false),
            ("wrong type", v(json!(2)), false, true),
        ],
    );
    table(
        "semver_gte",
        json!(["1.2.3"]),
        &[
            ("equal", v(json!("1.2.3")), true, false),
            ("lower", v(json!("1.2.3-beta")), false, true),
            ("missing", MISSING, false, false),
        ],
    );
}

#[test]
fn op_before_after() {
    let may1 = 1_714_564_800_000i64; // 2024-05-01T12:00:00Z in Unix milliseconds
    table(
        "before",
        json!(["2024-05-01T12:00:00Z"]),
        &[
            ("earlier", some(json!("2024-04-30T23:59:59Z")), true, false),
            ("earlier in milliseconds", some(json!(may1 - 1)), true, false),
            (
                "same instant, other offset",
                some(json!("2024-05-01T14:00:00+02:00")),
                false,
                true,
            ),
            ("later", some(json!("2024-05-01T12:00:00.001Z")), false, true),
            ("missing", MISSING, false, false),
            ("wrong type: not a date", some(json!("yesterday")), false, true),
            ("wrong type: boolean", some(json!(true)), false, true),
            (
                "array",
                some(json!(["2030-01-01T00:00:00Z", may1 - 1000])),
                true,
                false,
            ),
        ],
    );
    table(
        "after",
        json!([may1, "2025-01-01T00:00:00Z"]),
        &[
            (
                "after the earliest",
                some(json!("2024-06-01T00:00:00Z")),
                true,
                false,
            ),
            ("exactly the earliest", some(json!(may1)), false, true),
            ("before both", some(json!("2020-01-01T00:00:00Z")), false, true),
            (
                "fractional milliseconds",
                some(json!(may1 as f64 + 0.5)),
                true,
                false,
            ),
            ("missing", MISSING, false, false),
            ("wrong type", some(json!({"t": 1})), false, true),
        ],
    );
}

#[test]
fn op_exists() {
    table(
        "exists",
        json!([]),
        &[
            ("a string", some(json!("x")), true, false),
            ("false is a value", some(json!(false)), true, false),
            ("zero is a value", some(json!(0)), true, false),
            ("an empty array is a value", some(json!([])), true, false),
            (
                "missing: only exists sees it, so negation matches",
                MISSING,
                false,
                true,
            ),
            ("null counts as missing", some(Value::Null), false, true),
        ],
    );
}

#[test]
fn dotted_attributes_read_nested_objects_unless_a_top_level_key_exists() {
    let env = compile_valid(
        json!([]),
        json!([bool_flag(
            "f",
            json!({
                "enabled": true,
                "rules": [{"clauses": [{"attribute": "user.email", "op": "ends_with", "values": ["@acme.com"]}],
                           "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}
            })
        )]),
    );
    let variant = |c| env.evaluate("f", &ctx(c)).variant;
    assert_eq!(variant(json!({"user": {"email": "a@acme.com"}})), Some("on"));
    assert_eq!(variant(json!({"user": {"email": "a@other.com"}})), Some("off"));
    assert_eq!(
        variant(json!({"user.email": "a@acme.com", "user": {"email": "a@other.com"}})),
        Some("on")
    );
    assert_eq!(
        variant(json!({"user.email": "a@other.com", "user": {"email": "a@acme.com"}})),
        Some("off")
    );
    assert_eq!(variant(json!({"user": "a@acme.com"})), Some("off"));
    assert_eq!(variant(json!({})), Some("off"));
}

#[test]
fn a_rule_needs_all_its_clauses() {
    let env = compile_valid(
        json!([]),
        json!([bool_flag(
            "f",
            json!({
                "enabled": true,
                "rules": [{"clauses": [
                    {"attribute": "country", "op": "in", "values": ["fr", "de"]},
                    {"attribute": "age", "op": "gte", "values": [18]}],
                    "serve": {"variation": "on"}}],
                "fallthrough": {"variation": "off"}
            })
        )]),
    );
    let variant = |c| env.evaluate("f", &ctx(c)).variant;
    assert_eq!(variant(json!({"country": "fr", "age": 30})), Some("on"));
    assert_eq!(variant(json!({"country": "fr", "age": 17})), Some("off"));
    assert_eq!(variant(json!({"country": "us", "age": 30})), Some("off"));
    assert_eq!(variant(json!({"country": "fr"})), Some("off"));
}
