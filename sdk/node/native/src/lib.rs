//! The native half of `@flagstaff/node`: one compiled bundle (the engine's
//! [`CompiledEnvironment`]) and the evaluation counts of its flags, exported to JavaScript over
//! N-API. Every rule is evaluated here, by the same code the server runs; the JavaScript side
//! only fetches bundles and passes contexts.
//!
//! Contexts cross as JSON text (`JSON.stringify` in JavaScript, one string argument): reading a
//! JS object property by property through N-API costs several times more (BENCHMARKS.md, "Node
//! SDK"). Structured answers (`evaluate`, `allFlags`, JSON values) cross back as JSON text too.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use flagstaff_eval::{CompiledEnvironment, Context, Evaluation, Fingerprints, Value, parse_bundle};
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
    /// The last context text read and what it parsed to.
    last: RefCell<(String, Option<Context>)>,
    /// The flags' keys in [`flag_keys`](Self::flag_keys) order: the `…_at` reads name a flag by
    /// its position, so the key does not cross N-API on each read.
    keys: Box<[Box<str>]>,
    /// The context of the `…_at` reads: the one last sent, used while JavaScript sends none
    /// (its text unchanged). Apart from `last`, which the other reads also set.
    at_context: RefCell<Option<Context>>,
    /// A hash of each flag's definition, to tell which flags a new bundle changed.
    fingerprints: Fingerprints,
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

/// A context parsed once, for many reads (`client.context({...})` in JavaScript): reads then
/// cross into Rust without the context's text.
#[napi]
pub struct PreparedContext {
    ctx: Context,
}

#[napi]
impl PreparedContext {
    /// Parses the context's JSON text; throws unless it is a JSON object.
    #[napi(constructor)]
    pub fn new(json: String) -> Result<PreparedContext> {
        context(&json)
            .map(|ctx| PreparedContext { ctx })
            .ok_or_else(|| Error::new(Status::InvalidArg, "the context is not a JSON object"))
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
        let fingerprints = Fingerprints::of(&bundle.flags);
        let mut slots = FxHashMap::default();
        let mut total = 0;
        let keys = engine.flags().map(|f| f.key().into()).collect();
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
            last: RefCell::new((String::new(), None)),
            keys,
            at_context: RefCell::new(None),
            fingerprints,
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

    /// The keys of the flags added, changed or removed from `old` to this bundle, sorted.
    #[napi]
    pub fn changed_since(&self, old: &Engine) -> Vec<String> {
        self.fingerprints.changed_since(&old.fingerprints)
    }

    /// The number of flags and configs.
    #[napi(getter)]
    pub fn flag_count(&self) -> u32 {
        u32::try_from(self.engine.len()).unwrap_or(u32::MAX)
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
        ctx: &Context,
        accepts: fn(&Value) -> bool,
    ) -> Option<&'a Value> {
        let e = self.engine.evaluate(key, ctx);
        let value = e.value.filter(|v| accepts(v))?;
        if let Some(variant) = e.variant {
            self.count(key, variant);
        }
        Some(value)
    }

    /// Runs `f` on the context given as JSON text, parsed once for as long as the same text
    /// comes again (a request reads several flags for one context); `None` unless it is a JSON
    /// object.
    fn with_json<R>(&self, json: &str, f: impl FnOnce(&Context) -> R) -> Option<R> {
        let mut last = self.last.borrow_mut();
        if last.0 != json {
            last.1 = context(json);
            last.0.clear();
            last.0.push_str(json);
        }
        last.1.as_ref().map(f)
    }

    fn answer(&self, key: &str, ctx: &Context, expected: &str) -> String {
        let e = self.engine.evaluate(key, ctx);
        if let Some(value) = e.value
            && !Expected::parse(expected).accepts(value)
        {
            let flag_type = self.engine.flag(key).map(|f| format!("{:?}", f.flag_type()));
            let mut answer = Answer::error(
                key,
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
            self.count(key, variant);
        }
        to_json(&Answer::of(&e))
    }

    fn all(&self, ctx: &Context) -> String {
        let mut out = serde_json::Map::new();
        self.engine.evaluate_each(
            ctx,
            |_| true,
            |_, e| {
                out.insert(
                    e.key.to_owned(),
                    serde_json::to_value(Answer::of(&e)).expect("serialises"),
                );
            },
        );
        to_json(&out)
    }

    /// The boolean value of `key` for the context (JSON text), or `default`.
    #[napi]
    pub fn bool_value(&self, key: String, context_json: String, default: bool) -> bool {
        self.with_json(&context_json, |ctx| {
            self.value_where(&key, ctx, Value::is_boolean)
                .and_then(Value::as_bool)
        })
        .flatten()
        .unwrap_or(default)
    }

    /// [`bool_value`](Self::bool_value) for a prepared context.
    #[napi]
    pub fn bool_value_in(&self, key: String, context: &PreparedContext, default: bool) -> bool {
        self.value_where(&key, &context.ctx, Value::is_boolean)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// The string value of `key`, or `null`.
    #[napi]
    pub fn string_value(&self, key: String, context_json: String) -> Option<String> {
        self.with_json(&context_json, |ctx| self.string_value_of(&key, ctx))
            .flatten()
    }

    /// [`string_value`](Self::string_value) for a prepared context.
    #[napi]
    pub fn string_value_in(&self, key: String, context: &PreparedContext) -> Option<String> {
        self.string_value_of(&key, &context.ctx)
    }

    fn string_value_of(&self, key: &str, ctx: &Context) -> Option<String> {
        self.value_where(key, ctx, Value::is_string)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The number value of `key`, or `null`.
    #[napi]
    pub fn number_value(&self, key: String, context_json: String) -> Option<f64> {
        self.with_json(&context_json, |ctx| {
            self.value_where(&key, ctx, Value::is_number)
                .and_then(Value::as_f64)
        })
        .flatten()
    }

    /// [`number_value`](Self::number_value) for a prepared context.
    #[napi]
    pub fn number_value_in(&self, key: String, context: &PreparedContext) -> Option<f64> {
        self.value_where(&key, &context.ctx, Value::is_number)
            .and_then(Value::as_f64)
    }

    /// The value of `key` whatever its type, as JSON text, or `null`.
    #[napi]
    pub fn json_value(&self, key: String, context_json: String) -> Option<String> {
        self.with_json(&context_json, |ctx| {
            self.value_where(&key, ctx, |_| true).map(to_json)
        })
        .flatten()
    }

    /// [`json_value`](Self::json_value) for a prepared context.
    #[napi]
    pub fn json_value_in(&self, key: String, context: &PreparedContext) -> Option<String> {
        self.value_where(&key, &context.ctx, |_| true).map(to_json)
    }

    /// The full result for `key` as JSON: `{key, value, variant, reason, errorCode,
    /// errorMessage?, ruleId, prerequisite, version}`. With `expected` (`"boolean"`,
    /// `"string"`, `"number"`, `"object"`) a value of another type is error `TYPE_MISMATCH`;
    /// a context that is not a JSON object is error `INVALID_CONTEXT`. Counted when a value is
    /// served.
    #[napi]
    pub fn evaluate(&self, key: String, context_json: String, expected: String) -> String {
        self.with_json(&context_json, |ctx| self.answer(&key, ctx, &expected))
            .unwrap_or_else(|| {
                to_json(&Answer::error(
                    &key,
                    "INVALID_CONTEXT",
                    "the context is not a JSON object".into(),
                ))
            })
    }

    /// [`evaluate`](Self::evaluate) for a prepared context.
    #[napi]
    pub fn evaluate_in(&self, key: String, context: &PreparedContext, expected: String) -> String {
        self.answer(&key, &context.ctx, &expected)
    }

    /// Every flag and config evaluated for the context, as a JSON object from flag key to the
    /// answer of [`evaluate`](Self::evaluate); `null` when the context is not a JSON object.
    /// Not counted as uses of the flags.
    #[napi]
    pub fn all_flags(&self, context_json: String) -> Option<String> {
        self.with_json(&context_json, |ctx| self.all(ctx))
    }

    /// [`all_flags`](Self::all_flags) for a prepared context.
    #[napi]
    pub fn all_flags_in(&self, context: &PreparedContext) -> String {
        self.all(&context.ctx)
    }

    /// Runs `f` on the flag at `index` and the context of the `…_at` reads: `context_json`
    /// parsed (and kept) when given, else the one kept. `None` for an index out of range or a
    /// context that is not a JSON object.
    fn at<R>(
        &self,
        index: u32,
        context_json: Option<String>,
        f: impl FnOnce(&str, &Context) -> Option<R>,
    ) -> Option<R> {
        let key = self.keys.get(index as usize)?;
        let mut kept = self.at_context.borrow_mut();
        if let Some(json) = context_json {
            *kept = context(&json);
        }
        kept.as_ref().and_then(|ctx| f(key, ctx))
    }

    /// [`bool_value`](Self::bool_value) of the flag at `index` in [`flag_keys`](Self::flag_keys),
    /// for `context_json`, or when it is `null` for the context last given to an `…_at` read.
    #[napi]
    pub fn bool_value_at(&self, index: u32, context_json: Option<String>, default: bool) -> bool {
        self.at(index, context_json, |key, ctx| {
            self.value_where(key, ctx, Value::is_boolean)
                .and_then(Value::as_bool)
        })
        .unwrap_or(default)
    }

    /// [`string_value`](Self::string_value) as [`bool_value_at`](Self::bool_value_at) reads.
    #[napi]
    pub fn string_value_at(&self, index: u32, context_json: Option<String>) -> Option<String> {
        self.at(index, context_json, |key, ctx| self.string_value_of(key, ctx))
    }

    /// [`number_value`](Self::number_value) as [`bool_value_at`](Self::bool_value_at) reads.
    #[napi]
    pub fn number_value_at(&self, index: u32, context_json: Option<String>) -> Option<f64> {
        self.at(index, context_json, |key, ctx| {
            self.value_where(key, ctx, Value::is_number)
                .and_then(Value::as_f64)
        })
    }

    /// [`json_value`](Self::json_value) as [`bool_value_at`](Self::bool_value_at) reads.
    #[napi]
    pub fn json_value_at(&self, index: u32, context_json: Option<String>) -> Option<String> {
        self.at(index, context_json, |key, ctx| {
            self.value_where(key, ctx, |_| true).map(to_json)
        })
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
