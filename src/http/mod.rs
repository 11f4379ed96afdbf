//! HTTP, one module per audience. Each exposes `configure(cfg: &mut ServiceConfig)`.

pub mod admin;
pub mod api;
pub mod auth;
pub mod client;
pub mod cors;
pub mod health;
pub mod ofrep;
pub mod sdk;

use actix_web::web::ServiceConfig;

/// Registers every audience's routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.configure(health::configure);
    cfg.configure(api::configure);
    cfg.configure(ofrep::configure).configure(client::configure);
    cfg.configure(sdk::configure);
    cfg.configure(admin::configure);
}
