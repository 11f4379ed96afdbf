//! Flagstaff's evaluation engine: the document model, validation, compilation, evaluation and
//! hashing of DESIGN.md §2–3. Pure Rust: no I/O, no async. The server and the Rust SDK both run
//! exactly this code.
//!
//! The life of a configuration: [`parse_document`] (or [`parse_bundle`]) turns bytes into
//! [`model`] types, [`validate_document`] / [`validate_bundle`] report every problem with its
//! path, [`CompiledEnvironment`] compiles one environment for speed, and
//! [`CompiledEnvironment::evaluate`] / [`CompiledEnvironment::evaluate_all`] answer which
//! variation a context gets and why.
//!
//! ```
//! use flagstaff_eval::{CompiledEnvironment, Reason, parse_document, validate_document};
//!
//! let doc = parse_document(br#"{
//!   "flagstaff": 1, "project": {"key": "shop"}, "environments": [{"key": "production"}],
//!   "flags": [{"key": "new-checkout", "type": "boolean",
//!     "variations": [{"key": "on", "value": true}, {"key": "off", "value": false}],
//!     "environments": {"production": {"enabled": true,
//!       "rules": [{"id": "staff", "clauses": [
//!         {"attribute": "email", "op": "ends_with", "values": ["@acme.com"]}],
//!         "serve": {"variation": "on"}}]}}}]
//! }"#).unwrap();
//! validate_document(&doc).unwrap();
//! let env = CompiledEnvironment::compile(&doc, "production");
//!
//! let ctx = serde_json::json!({"targetingKey": "u-1", "email": "ann@acme.com"});
//! let e = env.evaluate("new-checkout", ctx.as_object().unwrap());
//! assert_eq!((e.variant, e.reason, e.rule_id), (Some("on"), Reason::TargetingMatch, Some("staff")));
//! ```
#![forbid(unsafe_code)]

pub mod compile;
pub mod evaluate;
pub mod fingerprint;
pub mod hash;
pub mod model;
pub mod validate;

pub use serde_json::Value;

/// The context: a JSON object. `targetingKey` (a string) identifies the subject.
pub type Context = serde_json::Map<String, Value>;

pub use compile::{CompiledEnvironment, CompiledFlag};
pub use evaluate::{EvalError, Evaluation, Reason};
pub use fingerprint::Fingerprints;
pub use hash::bucket;
pub use validate::{ValidationError, parse_bundle, parse_document, validate_bundle, validate_document};
