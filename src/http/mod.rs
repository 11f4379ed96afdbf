//! HTTP, one module per audience. Each exposes `configure(cfg: &mut ServiceConfig)`.

pub mod api;
pub mod auth;
pub mod health;

use actix_web::web::ServiceConfig;

/// Registers every audience's routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.configure(health::configure);
    cfg.configure(api::configure);
}
