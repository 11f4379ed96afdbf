//! HTTP, one module per audience. Each exposes `configure(cfg: &mut ServiceConfig)`.

pub mod admin;
pub mod api;
pub mod auth;
pub mod health;

use actix_web::web::ServiceConfig;

/// Registers every audience's routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.configure(health::configure);
    cfg.configure(api::configure);
    cfg.configure(admin::configure);
}
