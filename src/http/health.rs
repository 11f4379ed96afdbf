//! Operators' endpoints: `/healthz` answers 200 while the process serves HTTP; `/readyz` answers
//! 200 while the database answers and every environment has its snapshot, 503 otherwise and
//! from the moment a shutdown begins (so a load balancer drains this instance); `/metrics` is
//! the Prometheus text exposition.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, http::header};
use serde_json::json;

use crate::AppState;
use crate::metrics::{self, Gauges};

/// Registers the operators' routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(prometheus));
}

/// Liveness: the process is up and answering.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}

/// Readiness: the database answers, every environment it holds has a snapshot, and the server
/// is not shutting down.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let snapshots = state.snapshots.all().len();
    let (status, body) = if state.hub.is_closed() {
        (false, json!({"status": "shutting_down"}))
    } else {
        let counted = state
            .store
            .read(|conn| Ok(conn.query_row("SELECT count(*) FROM environments", [], |r| r.get::<_, i64>(0))?))
            .await;
        match counted {
            Err(e) => {
                tracing::error!(error = %e, "readiness: the database does not answer");
                (false, json!({"status": "database_unavailable"}))
            }
            Ok(environments) if usize::try_from(environments).ok() != Some(snapshots) => (
                false,
                json!({"status": "snapshots_missing", "environments": environments, "snapshots": snapshots}),
            ),
            Ok(environments) => (true, json!({"status": "ready", "environments": environments})),
        }
    };
    let mut res = if status {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

/// Prometheus metrics.
async fn prometheus(state: web::Data<AppState>) -> HttpResponse {
    let gauges = Gauges {
        open_streams: state.hub.receivers(),
        environments: state.snapshots.all().len(),
        database_bytes: std::fs::metadata(state.store.path())
            .map(|m| m.len())
            .unwrap_or(0),
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics::metrics().render(&gauges))
}
