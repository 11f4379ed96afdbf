//! Flagstaff's Rust server SDK: feature flags and remote configuration evaluated in-process,
//! by the same engine ([`flagstaff_eval`]) the server runs.
//!
//! [`Client::builder`] downloads the environment's whole configuration (the *bundle*) from the
//! server — or a fallback server, or the cache file — and keeps it up to date in the background
//! over Server-Sent Events, with polling as a safety net. Reads ([`Client::bool_value`] and
//! friends) are function calls on an atomically swapped snapshot: no lock, no network.
//! The `open-feature` feature adds `FlagstaffProvider`, a provider for the OpenFeature SDK.
//!
//! ```no_run
//! use flagstaff_sdk::{Client, Context};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), flagstaff_sdk::Error> {
//! let client = Client::builder("https://flags.example.com", "fs_srv_…")
//!     .cache_file("/var/cache/myapp/flags.json")
//!     .build()
//!     .await?;
//! let context: Context = flagstaff_sdk::context(json!({"targetingKey": "user-42", "plan": "pro"}));
//! if client.bool_value("new-checkout", &context, false) {
//!     // …
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod backoff;
mod cache;
mod client;
mod events;
mod http;
#[cfg(feature = "open-feature")]
mod provider;
mod snapshot;
mod sse;
mod sync;

pub use client::{Client, ClientBuilder, ConfigChange, Error, Evaluation, Source, SourceAttempt, Status};
pub use flagstaff_eval::{Context, EvalError, Reason, Value};
#[cfg(feature = "open-feature")]
pub use provider::FlagstaffProvider;

/// The OpenFeature SDK this crate's provider implements (re-exported so versions match; with
/// the `open-feature` feature).
#[cfg(feature = "open-feature")]
pub use open_feature;

/// Turns a JSON object into a [`Context`]; anything else gives an empty context.
pub fn context(value: Value) -> Context {
    match value {
        Value::Object(map) => map,
        _ => Context::new(),
    }
}

/// The README's examples, compiled as doctests so they cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
