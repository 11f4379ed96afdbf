//! The OpenAPI 3.1 document of `/api/v1`, handwritten and embedded in the binary.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, http::header};

/// The document's bytes.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// Registers `GET /openapi.json` (inside `/api/v1`). It needs no token.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(document));
}

async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(DOCUMENT)
}
