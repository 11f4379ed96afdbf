//! Helpers shared by the tests: documents from JSON, one-flag environments, contexts.

use flagstaff_eval::model::Document;
use flagstaff_eval::{CompiledEnvironment, Context, Evaluation, validate_document};
use serde_json::{Value, json};

/// The environment every test document has.
pub const ENV: &str = "production";

/// A context from a JSON object literal.
pub fn ctx(value: Value) -> Context {
    match value {
        Value::Object(map) => map,
        other => panic!("a context is a JSON object, not {other}"),
    }
}

/// A document with environment `production`, the given segments and flags.
pub fn doc(segments: Value, flags: Value) -> Document {
    serde_json::from_value(json!({
        "flagstaff": 1,
        "project": {"key": "shop", "name": "Shop"},
        "environments": [{"key": ENV, "name": "Production"}],
        "segments": segments,
        "flags": flags,
    }))
    .expect("test documents parse")
}

/// Compiles a document that must be valid.
pub fn compile_valid(segments: Value, flags: Value) -> CompiledEnvironment {
    let doc = doc(segments, flags);
    if let Err(errors) = validate_document(&doc) {
        panic!("test document is invalid: {errors:#?}");
    }
    CompiledEnvironment::compile(&doc, ENV)
}

/// A boolean flag `key` (variations `on` = true, `off` = false) with `state` in production.
pub fn bool_flag(key: &str, state: Value) -> Value {
    json!({
        "key": key, "type": "boolean",
        "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
        "environments": {ENV: state},
    })
}

/// The variant and reason of an evaluation, for compact assertions.
pub fn outcome<'a>(e: &Evaluation<'a>) -> (Option<&'a str>, &'static str) {
    (e.variant, e.reason.as_str())
}
