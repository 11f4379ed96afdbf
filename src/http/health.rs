//! Operators' endpoints: `/healthz` answers 200 while the process serves HTTP.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, http::header};

/// Registers the operators' routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz));
}

/// Liveness: the process is up and answering.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}
