//! The engine's specification as tests: one binary, one module per area.

mod conformance;
mod environment;
mod operators;
mod prerequisites;
mod reasons;
mod robustness;
mod rollouts;
mod segments;
mod support;
mod validation;
mod vectors;
