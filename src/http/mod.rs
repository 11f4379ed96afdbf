//! HTTP, one module per audience. Each exposes `configure(cfg: &mut ServiceConfig)`.

pub mod admin;
pub mod api;
pub mod auth;
pub mod change_stream;
pub mod client;
pub mod conditional;
pub mod cors;
pub mod evaluation;
pub mod health;
pub mod ofrep;
pub mod sdk;

use actix_web::web::ServiceConfig;

/// Registers every audience's routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.configure(health::configure);
    cfg.configure(api::configure);
    cfg.configure(ofrep::configure).configure(client::configure);
    // Before `/sdk/v1`, whose scope would answer 404 for these paths.
    cfg.configure(sdk::relay::configure);
    cfg.configure(sdk::configure);
    cfg.configure(admin::configure);
}

/// Registers what a relay serves (DESIGN.md §8): the read path, answered from memory — no
/// admin pages, no `/api`, no relay routes of its own.
pub fn configure_read_path(cfg: &mut ServiceConfig) {
    cfg.configure(health::configure);
    cfg.configure(ofrep::configure).configure(client::configure);
    cfg.configure(sdk::configure);
}
