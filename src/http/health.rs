//! Operators' endpoints: `/healthz` answers 200 while the process serves HTTP; `/readyz` answers
//! 200 while the database answers and every environment has its snapshot, 503 otherwise and
//! from the moment a shutdown begins (so a load balancer drains this instance); `/metrics` is
//! the Prometheus text exposition. In a relay (no database) `/readyz` answers 200 once the relay
//! has something to serve: from its source, its cache file or its offline file.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, http::header};
use serde_json::json;

use crate::AppState;
use crate::metrics::{self, Gauges};
use crate::state::Serving;

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
async fn readyz(serving: web::Data<Serving>, primary: Option<web::Data<AppState>>) -> HttpResponse {
    let snapshots = serving.snapshots.all().len();
    let (status, body) = if serving.hub.is_closed() {
        (false, json!({"status": "shutting_down"}))
    } else if let Some(relay) = &serving.relay {
        relay.readiness(snapshots)
    } else if let Some(state) = primary {
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
    } else {
        (false, json!({"status": "database_unavailable"}))
    };
    let mut res = if status {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

/// Prometheus metrics.
async fn prometheus(serving: web::Data<Serving>, primary: Option<web::Data<AppState>>) -> HttpResponse {
    let gauges = Gauges {
        open_streams: serving.hub.receivers(),
        environments: serving.snapshots.all().len(),
        // A relay has no database.
        database_bytes: primary
            .and_then(|state| std::fs::metadata(state.store.path()).ok())
            .map_or(0, |m| m.len()),
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics::metrics().render(&gauges))
}
