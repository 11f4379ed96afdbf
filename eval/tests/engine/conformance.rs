//! The conformance corpus (eval/testdata/conformance.json, CONFORMANCE.md) that every SDK runs:
//! each suite's bundle is valid, and the engine gives every case's expected result.

use flagstaff_eval::{CompiledEnvironment, Evaluation, parse_bundle, validate_bundle};
use serde_json::{Value, json};

const CORPUS: &str = include_str!("../../testdata/conformance.json");

/// An evaluation in the corpus's terms: only the keys the case states are compared.
fn actual(e: &Evaluation<'_>) -> Value {
    json!({
        "value": e.value,
        "variant": e.variant,
        "reason": e.reason.as_str(),
        "errorCode": e.error.map(|e| e.code()),
        "ruleId": e.rule_id,
        "prerequisite": e.prerequisite,
        "version": e.version,
    })
}

#[test]
fn the_engine_passes_every_case_of_the_corpus() {
    let corpus: Value = serde_json::from_str(CORPUS).expect("the corpus is JSON");
    assert_eq!(corpus["flagstaff_conformance"], 1);
    let mut failures = Vec::new();
    let mut count = 0;
    for suite in corpus["suites"].as_array().expect("suites") {
        let name = suite["name"].as_str().expect("a suite name");
        let bytes = serde_json::to_vec(&suite["bundle"]).expect("serialise");
        let bundle = parse_bundle(&bytes).unwrap_or_else(|e| panic!("suite {name}: not a bundle: {e}"));
        if let Err(errors) = validate_bundle(&bundle) {
            panic!("suite {name}: the bundle is invalid: {errors:#?}");
        }
        let env = CompiledEnvironment::from_bundle(&bundle);
        for case in suite["cases"].as_array().expect("cases") {
            count += 1;
            let flag = case["flag"].as_str().expect("a flag key");
            let ctx = case["context"].as_object().expect("a context object");
            let got = actual(&env.evaluate(flag, ctx));
            for (field, expected) in case["expect"].as_object().expect("an expect object") {
                if got[field] != *expected {
                    failures.push(format!(
                        "{name} / {}: {field} is {} (expected {expected})",
                        case["name"], got[field]
                    ));
                }
            }
        }
    }
    assert!(count >= 150, "only {count} cases");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_corpus_covers_every_operator_reason_and_error() {
    let text = CORPUS;
    for op in [
        "in",
        "contains",
        "starts_with",
        "ends_with",
        "matches",
        "lt",
        "lte",
        "gt",
        "gte",
        "semver_eq",
        "semver_lt",
        "semver_lte",
        "semver_gt",
        "semver_gte",
        "before",
        "after",
        "exists",
        "in_segment",
    ] {
        assert!(text.contains(&format!("\"op\": \"{op}\"")), "operator {op}");
    }
    for reason in [
        "STATIC",
        "DEFAULT",
        "TARGETING_MATCH",
        "SPLIT",
        "DISABLED",
        "PREREQUISITE_FAILED",
        "ERROR",
    ] {
        assert!(
            text.contains(&format!("\"reason\": \"{reason}\"")),
            "reason {reason}"
        );
    }
    for code in ["FLAG_NOT_FOUND", "TARGETING_KEY_MISSING"] {
        assert!(
            text.contains(&format!("\"errorCode\": \"{code}\"")),
            "error {code}"
        );
    }
}
