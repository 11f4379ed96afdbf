//! Flagstaff's evaluation engine: the document model, validation, compilation, evaluation and
//! hashing of DESIGN.md §2–3. Pure Rust: no I/O, no async. The server and the Rust SDK both run
//! exactly this code.

pub mod model;
