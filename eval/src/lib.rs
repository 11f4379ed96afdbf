//! Flagstaff's evaluation engine: the document model, validation, compilation, evaluation and
//! hashing of DESIGN.md §2–3. Pure Rust: no I/O, no async. The server and the Rust SDK both run
//! exactly this code.
//!
//! The life of a configuration: [`parse_document`] (or [`parse_bundle`]) turns bytes into
//! [`model`] types, [`validate_document`] / [`validate_bundle`] report every problem with its
//! path, [`CompiledEnvironment`] compiles one environment for speed, and
//! [`CompiledEnvironment::evaluate`] / [`CompiledEnvironment::evaluate_all`] answer which
//! variation a context gets and why.

pub mod compile;
pub mod evaluate;
pub mod hash;
pub mod model;
pub mod validate;

pub use serde_json::Value;

/// The context: a JSON object. `targetingKey` (a string) identifies the subject.
pub type Context = serde_json::Map<String, Value>;

pub use compile::{CompiledEnvironment, CompiledFlag};
pub use evaluate::{EvalError, Evaluation, Reason};
pub use hash::bucket;
pub use validate::{ValidationError, parse_bundle, parse_document, validate_bundle, validate_document};
