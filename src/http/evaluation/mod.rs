//! What OFREP and `/client/v1` share to evaluate flags for a caller's context: the context
//! read at the edge (from a request body or a URL) within the limits of `--max-context-bytes`
//! and `--max-context-depth`, the pre-written answer pieces of each snapshot ([`answers`]), a
//! JSON writer ([`json`]), the ETag of an answer, and the counting of what was served.
//!
//! Contexts are evaluated in memory and never stored.

pub mod answers;
pub mod json;

use std::sync::Arc;

use actix_web::web;
use base64::Engine as _;
use flagstaff_eval::{Context, Value};
use serde::Deserialize;

use crate::config::FrontendArgs;
use crate::snapshot::Snapshot;
use crate::state::Serving;

/// Why a context was refused; each wire says it its own way (OFREP `PARSE_ERROR` or
/// `INVALID_CONTEXT`, `/client/v1` `invalid_context`).
#[derive(Debug, PartialEq, Eq)]
pub enum ContextError {
    /// The body could not be read, or is not JSON.
    Parse(String),
    /// The JSON is not a context within the limits.
    Invalid(String),
}

/// Checks a context against the limits and OFREP's one rule (`targetingKey` is a string).
/// The message names the problem and the setting that sets the limit.
pub fn check_context(context: &Context, limits: &FrontendArgs) -> Result<(), String> {
    let max = limits.max_context_depth as usize;
    if let Some(path) = too_deep(context, 1, max) {
        return Err(format!(
            "the context nests deeper than {max} levels at {path} (the limit of --max-context-depth)"
        ));
    }
    match context.get("targetingKey") {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(other) => Err(format!(
            "context.targetingKey must be a string, not {}",
            json_type(other)
        )),
    }
}

/// The path of the first value deeper than `max` (the object at `depth`), if any. Nothing is
/// allocated unless one is found: every evaluation request passes through here.
fn too_deep(object: &Context, depth: usize, max: usize) -> Option<String> {
    /// The steps from `value` down to the first container deeper than `max`, innermost first.
    fn walk(value: &Value, depth: usize, max: usize) -> Option<Vec<String>> {
        let found = match value {
            Value::Object(_) | Value::Array(_) if depth > max => return Some(Vec::new()),
            Value::Object(map) => map
                .iter()
                .find_map(|(k, v)| Some((format!(".{k}"), walk(v, depth + 1, max)?))),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| Some((format!("[{i}]"), walk(v, depth + 1, max)?))),
            _ => None,
        };
        found.map(|(step, mut steps)| {
            steps.push(step);
            steps
        })
    }
    if depth > max {
        return Some("context".to_owned());
    }
    object.iter().find_map(|(key, value)| {
        let steps = walk(value, depth + 1, max)?;
        let mut path = format!("context.{key}");
        for step in steps.iter().rev() {
            path.push_str(step);
        }
        Some(path)
    })
}

/// The JSON type of a value, as a message names it ("a number").
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads an evaluation request's body (at most `--max-context-bytes`), `{"context": {…}}`,
/// into its context. `context` may be left out: the Python OFREP provider sends `{}` for an
/// empty one.
pub async fn context_from_body(
    payload: web::Payload,
    limits: &FrontendArgs,
) -> Result<Context, ContextError> {
    let limit = limits.max_context_bytes as usize;
    let body = match payload.to_bytes_limited(limit).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return Err(ContextError::Parse(format!(
                "the request body could not be read: {e}"
            )));
        }
        Err(_) => {
            return Err(ContextError::Invalid(format!(
                "the request body is larger than {limit} bytes (the limit of --max-context-bytes)"
            )));
        }
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    // The usual body straight into its one field; anything else is parsed again below to say
    // what is wrong with it.
    #[derive(Deserialize)]
    struct Request {
        context: Option<Value>,
    }
    let context = match serde_json::from_slice::<Request>(&body) {
        Ok(request) => request.context,
        Err(_) => {
            let request: Value = serde_json::from_slice(&body)
                .map_err(|e| ContextError::Parse(format!("the body is not valid JSON: {e}")))?;
            let Value::Object(mut request) = request else {
                return Err(ContextError::Invalid(format!(
                    "the body must be an object {{\"context\": {{…}}}}, not {}",
                    json_type(&request)
                )));
            };
            request.remove("context")
        }
    };
    let context = match context {
        None | Some(Value::Null) => Context::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(ContextError::Invalid(format!(
                "context must be a JSON object, not {}",
                json_type(&other)
            )));
        }
    };
    check_context(&context, limits).map_err(ContextError::Invalid)?;
    Ok(context)
}

/// Decodes a context carried in a URL: base64url (padding optional) of a JSON object, within
/// limits. Every refusal is [`ContextError::Invalid`].
pub fn context_from_url(encoded: &str, limits: &FrontendArgs) -> Result<Context, ContextError> {
    let invalid = ContextError::Invalid;
    let limit = limits.max_context_bytes as usize;
    let encoded = encoded.trim_end_matches('=');
    if encoded.len() > limit.div_ceil(3) * 4 {
        return Err(invalid(format!(
            "the context is larger than {limit} bytes (the limit of --max-context-bytes)"
        )));
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|e| {
            invalid(format!(
                "the context must be base64url (RFC 4648 §5) of a JSON object: {e}"
            ))
        })?;
    if json.len() > limit {
        return Err(invalid(format!(
            "the context is {} bytes; the limit is {limit} (--max-context-bytes)",
            json.len()
        )));
    }
    let value: Value =
        serde_json::from_slice(&json).map_err(|e| invalid(format!("the context is not valid JSON: {e}")))?;
    let Value::Object(context) = value else {
        return Err(invalid(format!(
            "the context must be a JSON object, not {}",
            json_type(&value)
        )));
    };
    check_context(&context, limits).map_err(invalid)?;
    Ok(context)
}

/// A strong ETag over an answer's bytes and its environment (XXH3-128: answers are hashed on
/// every request, so the hash must cost next to nothing; it need not resist forgery, since the
/// one who could forge it is the one it is served to).
pub fn etag(environment_id: i64, body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = xxhash_rust::xxh3::xxh3_128_with_seed(body, environment_id as u64);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for i in (0..32).rev() {
        tag.push(char::from(HEX[((hash >> (4 * i)) & 0xf) as usize]));
    }
    tag.push('"');
    tag
}

/// Counts what was served, for the evaluation insights and the metrics: `evaluations` made on
/// `snapshot`, of which those that served a value are `served`, by counter slot
/// ([`answers::Answers::counter`]).
pub fn record(state: &Serving, snapshot: &Arc<Snapshot>, evaluations: usize, served: &[usize]) {
    crate::metrics::record_evaluations(crate::metrics::Source::Server, evaluations as u64);
    let slots = answers::of(snapshot).counters();
    crate::events::tally::add(&state.events, snapshot, slots, served);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> FrontendArgs {
        FrontendArgs {
            max_context_depth: 3,
            ..FrontendArgs::default()
        }
    }

    fn ctx(v: Value) -> Context {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn depth_is_counted_from_the_context_object() {
        let ok = ctx(serde_json::json!({"a": {"b": {"c": 1}}, "list": [[1]]}));
        assert_eq!(check_context(&ok, &limits()), Ok(()));
        let deep = ctx(serde_json::json!({"a": {"b": {"c": {"d": 1}}}}));
        let err = check_context(&deep, &limits()).unwrap_err();
        assert!(
            err.contains("context.a.b.c") && err.contains("--max-context-depth"),
            "{err}"
        );
        let deep_list = ctx(serde_json::json!({"x": [[[1]]]}));
        assert!(
            check_context(&deep_list, &limits())
                .unwrap_err()
                .contains("context.x[0][0]")
        );
        // The path is exact, and names the first container too deep.
        let limit = limits().max_context_depth as usize;
        let deep = ctx(serde_json::json!({"ok": 1, "a": {"b": {"c": {"d": 1}}}, "z": [[{"y": {}}]]}));
        assert_eq!(too_deep(&deep, 1, limit).as_deref(), Some("context.a.b.c"));
        let mixed = ctx(serde_json::json!({"z": [1, [2, {"y": {"w": 0}}]]}));
        assert_eq!(too_deep(&mixed, 1, limit).as_deref(), Some("context.z[1][1]"));
        assert_eq!(too_deep(&mixed, 1, 0).as_deref(), Some("context"));
        assert_eq!(too_deep(&mixed, 1, 1).as_deref(), Some("context.z"));
    }

    #[test]
    fn targeting_key_must_be_a_string() {
        assert!(check_context(&ctx(serde_json::json!({"targetingKey": "u"})), &limits()).is_ok());
        assert!(check_context(&ctx(serde_json::json!({"targetingKey": null})), &limits()).is_ok());
        let err = check_context(&ctx(serde_json::json!({"targetingKey": 7})), &limits()).unwrap_err();
        assert!(err.contains("targetingKey") && err.contains("a number"), "{err}");
    }

    #[test]
    fn url_contexts_are_base64url_objects_within_limits() {
        let encode = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let context = serde_json::json!({"targetingKey": "u, \"1\"\t<script>", "plan": "caf\u{e9}"});
        let decoded = context_from_url(&encode(&context), &limits()).unwrap();
        assert_eq!(Value::Object(decoded), context);
        let padded = format!("{}==", encode(&serde_json::json!({})));
        assert!(context_from_url(&padded, &limits()).is_ok());
        for (encoded, says) in [
            ("not base64!".to_owned(), "base64url"),
            (encode(&serde_json::json!([1])), "an array"),
            (
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("{"),
                "not valid JSON",
            ),
            (
                encode(&serde_json::json!({"a": {"b": {"c": {}}}})),
                "--max-context-depth",
            ),
            ("A".repeat(100_000), "--max-context-bytes"),
        ] {
            match context_from_url(&encoded, &limits()) {
                Err(ContextError::Invalid(message)) => assert!(message.contains(says), "{message}"),
                other => panic!("{encoded:.40}: {other:?}"),
            }
        }
    }

    #[test]
    fn etags_are_the_quoted_hash_in_32_hex_digits() {
        for (environment, body) in [(1, &b""[..]), (7, b"{\"flags\":[]}"), (-3, &[0xff; 300][..])] {
            let hash = xxhash_rust::xxh3::xxh3_128_with_seed(body, environment as u64);
            assert_eq!(etag(environment, body), format!("\"{hash:032x}\""));
        }
        assert_ne!(etag(1, b"a"), etag(2, b"a"), "the environment is part of it");
    }
}
