//! Integration tests: one binary, modules per area, helpers in one place.

mod admin;
mod api_audit;
mod api_common;
mod api_flags;
mod api_projects;
mod api_segments;
mod api_transfer;
mod changes;
mod cli;
mod hardening;
mod helpers;
mod keys;
mod ofrep;
mod ofrep_clients;
mod openapi;
mod ops;
mod readme;
mod relay;
mod sdk;
mod sdk_rust;
mod store;
mod users;
mod webhooks;
