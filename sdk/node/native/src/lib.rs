//! The native half of `@flagstaff/node`: one compiled bundle (the engine's
//! [`CompiledEnvironment`]) and the evaluation counts of its flags, exported to JavaScript over
//! N-API. Every rule is evaluated here, by the same code the server runs; the JavaScript side
//! only fetches bundles and passes contexts.
//!
//! Contexts cross as JSON text (`JSON.stringify` in JavaScript, one string argument): reading a
//! JS object property by property through N-API costs several times more (BENCHMARKS.md, "Node
//! SDK"). Structured answers (`evaluate`, `allFlags`, JSON values) cross back as JSON text too.

use std::sync::atomic::{AtomicU64, Ordering};

use flagstaff_eval::{CompiledEnvironment, Context, Evaluation, Value, parse_bundle};
use napi::{Error, Result, Status};
use napi_derive::napi;
use rustc_hash::FxHashMap;
use serde::Serialize;

/// One bundle, compiled, with a counter per (flag, variation).
#[napi]
pub struct Engine {
    engine: CompiledEnvironment,
    project: String,
    environment: String,
    revision: u64,
    slots: FxHashMap<Box<str>, Slot>,
    counters: Box<[AtomicU64]>,
}

/// Where a flag's counters start, and its variation keys in order.
struct Slot {
    first: usize,
    variations: Box<[Box<str>]>,
}

/// What a read expects the value to be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expected {
    Any,
    Boolean,
    String,
    Number,
    Object,
}

impl Expected {
    fn parse(name: &str) -> Expected {
        match name {
            "boolean" => Expected::Boolean,
            "string" => Expected::String,
            "number" => Expected::Number,
            "object" => Expected::Object,
            _ => Expected::Any,
        }
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            Expected::Any => true,
            Expected::Boolean => value.is_boolean(),
            Expected::String => value.is_string(),
            Expected::Number => value.is_number(),
            // OpenFeature's object reads take any JSON structure.
            Expected::Object => value.is_object() || value.is_array(),
        }
    }
}

/// The answer of [`Engine::evaluate`], as JSON for JavaScript.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    key: &'a str,
    value: Option<&'a Value>,
    variant: Option<&'a str>,
    reason: &'a str,
    error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    rule_id: Option<&'a str>,
    prerequisite: Option<&'a str>,
    version: u64,
}

impl<'a> Answer<'a> {
    fn of(e: &Evaluation<'a>) -> Answer<'a> {
        Answer {
            key: e.key,
            value: e.value,
            variant: e.variant,
            reason: e.reason.as_str(),
            error_code: e.error.map(|e| e.code()),
            error_message: e.error.map(|e| e.to_string()),
            rule_id: e.rule_id,
            prerequisite: e.prerequisite,
            version: e.version,
        }
    }

    fn error(key: &'a str, code: &'a str, message: String) -> Answer<'a> {
        Answer {
            key,
            value: None,
            variant: None,
            reason: "ERROR",
            error_code: Some(code),
            error_message: Some(message),
            rule_id: None,
            prerequisite: None,
            version: 0,
        }
    }
}

/// Parses a context given as JSON text; `None` unless it is a JSON object.
fn context(json: &str) -> Option<Context> {
    serde_json::from_str(json).ok()
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("evaluations always serialise")
}

#[napi]
impl Engine {
    /// Parses and compiles the bytes of a bundle (`GET /sdk/v1/bundle`). Throws when they are
    /// not a bundle; whatever else the engine cannot use it neutralises (see eval/README.md).
    #[napi(constructor)]
    pub fn new(bundle: &[u8]) -> Result<Engine> {
        let bundle = parse_bundle(bundle)
            .map_err(|e| Error::new(Status::InvalidArg, format!("not a Flagstaff bundle: {e}")))?;
        let engine = CompiledEnvironment::from_bundle(&bundle);
        let mut slots = FxHashMap::default();
        let mut total = 0;
        for flag in engine.flags() {
            let variations: Box<[Box<str>]> = flag.variations().map(|(key, _)| key.into()).collect();
            let count = variations.len();
            slots.insert(
                flag.key().into(),
                Slot {
                    first: total,
                    variations,
                },
            );
            total += count;
        }
        Ok(Engine {
            engine,
            project: bundle.project.key,
            environment: bundle.environment,
            revision: bundle.revision,
            slots,
            counters: (0..total).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// The project's key.
    #[napi(getter)]
    pub fn project(&self) -> String {
        self.project.clone()
    }

    /// The environment's key.
    #[napi(getter)]
    pub fn environment(&self) -> String {
        self.environment.clone()
    }

    /// The environment's revision (exact below 2⁵³).
    #[napi(getter)]
    pub fn revision(&self) -> f64 {
        self.revision as f64
    }

    /// The keys of every flag and config, sorted.
    #[napi]
    pub fn flag_keys(&self) -> Vec<String> {
        self.engine.flags().map(|f| f.key().to_owned()).collect()
    }

    /// Counts one evaluation of `flag` that served `variant`.
    fn count(&self, flag: &str, variant: &str) {
        if let Some(slot) = self.slots.get(flag)
            && let Some(i) = slot.variations.iter().position(|v| **v == *variant)
        {
            self.counters[slot.first + i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Evaluates `key` and returns its value when `accepts` it, counting the evaluation.
    fn value_where<'a>(
        &'a self,
        key: &'a str,
        context_json: &str,
        accepts: fn(&Value) -> bool,
    ) -> Option<&'a Value> {
        let ctx = context(context_json)?;
        let e = self.engine.evaluate(key, &ctx);
        let value = e.value.filter(|v| accepts(v))?;
        if let Some(variant) = e.variant {
            self.count(key, variant);
        }
        Some(value)
    }

    /// The boolean value of `key` for the context (JSON text), or `default`.
    #[napi]
    pub fn bool_value(&self, key: String, context_json: String, default: bool) -> bool {
        self.value_where(&key, &context_json, Value::is_boolean)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// The string value of `key`, or `null`.
    #[napi]
    pub fn string_value(&self, key: String, context_json: String) -> Option<String> {
        self.value_where(&key, &context_json, Value::is_string)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The number value of `key`, or `null`.
    #[napi]
    pub fn number_value(&self, key: String, context_json: String) -> Option<f64> {
        self.value_where(&key, &context_json, Value::is_number)
            .and_then(Value::as_f64)
    }

    /// The value of `key` whatever its type, as JSON text, or `null`.
    #[napi]
    pub fn json_value(&self, key: String, context_json: String) -> Option<String> {
        self.value_where(&key, &context_json, |_| true).map(to_json)
    }

    /// The full result for `key` as JSON: `{key, value, variant, reason, errorCode,
    /// errorMessage?, ruleId, prerequisite, version}`. With `expected` (`"boolean"`,
    /// `"string"`, `"number"`, `"object"`) a value of another type is error `TYPE_MISMATCH`;
    /// a context that is not a JSON object is error `INVALID_CONTEXT`. Counted when a value is
    /// served.
    #[napi]
    pub fn evaluate(&self, key: String, context_json: String, expected: String) -> String {
        let Some(ctx) = context(&context_json) else {
            return to_json(&Answer::error(
                &key,
                "INVALID_CONTEXT",
                "the context is not a JSON object".into(),
            ));
        };
        let e = self.engine.evaluate(&key, &ctx);
        let expected = Expected::parse(&expected);
        if let Some(value) = e.value
            && !expected.accepts(value)
        {
            let flag_type = self.engine.flag(&key).map(|f| format!("{:?}", f.flag_type()));
            let mut answer = Answer::error(
                &key,
                "TYPE_MISMATCH",
                format!(
                    "the flag is of type {}",
                    flag_type.unwrap_or_default().to_lowercase()
                ),
            );
            answer.version = e.version;
            return to_json(&answer);
        }
        if let Some(variant) = e.variant {
            self.count(&key, variant);
        }
        to_json(&Answer::of(&e))
    }

    /// Every flag and config evaluated for the context, as a JSON object from flag key to the
    /// answer of [`evaluate`](Self::evaluate); `null` when the context is not a JSON object.
    /// Not counted as uses of the flags.
    #[napi]
    pub fn all_flags(&self, context_json: String) -> Option<String> {
        let ctx = context(&context_json)?;
        let mut out = serde_json::Map::new();
        self.engine.evaluate_each(
            &ctx,
            |_| true,
            |_, e| {
                out.insert(
                    e.key.to_owned(),
                    serde_json::to_value(Answer::of(&e)).expect("serialises"),
                );
            },
        );
        Some(to_json(&out))
    }

    /// Takes the counts gathered so far (leaving zeros): JSON `[[flag, variant, count], …]`.
    #[napi]
    pub fn drain_counts(&self) -> String {
        let mut out = Vec::new();
        for (flag, slot) in &self.slots {
            for (i, variant) in slot.variations.iter().enumerate() {
                let n = self.counters[slot.first + i].swap(0, Ordering::Relaxed);
                if n > 0 {
                    out.push((flag, variant, n));
                }
            }
        }
        to_json(&out)
    }
}
