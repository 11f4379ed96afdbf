//! Integration tests: one binary, modules per area, helpers in one place.

mod helpers;
mod store;
