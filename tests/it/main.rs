//! Integration tests: one binary, modules per area, helpers in one place.

mod cli;
mod helpers;
mod keys;
mod store;
mod users;
