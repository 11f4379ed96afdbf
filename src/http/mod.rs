//! HTTP, one module per audience. Each exposes `configure(cfg: &mut ServiceConfig)`.

pub mod auth;

use actix_web::web::ServiceConfig;

/// Registers every audience's routes.
pub fn configure(_cfg: &mut ServiceConfig) {}
