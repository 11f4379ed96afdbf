//! The audit log (any role): newest first, filtered, a page at a time.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, Responder};
use serde::Serialize;

use super::{CanView, Page, Params};
use crate::AppState;
use crate::error::ApiError;
use crate::store::audit::{self, AuditEntry, AuditQuery};

/// Registers `GET /audit` (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/audit", web::get().to(list));
}

/// A page of audit entries; `next_before` asks for the next (older) page when there may be one.
#[derive(Serialize)]
pub(super) struct AuditPage {
    entries: Vec<AuditEntry>,
    next_before: Option<i64>,
}

pub(super) fn page(entries: Vec<AuditEntry>, limit: u32) -> AuditPage {
    let next_before = if entries.len() == limit as usize {
        entries.last().map(|e| e.id)
    } else {
        None
    };
    AuditPage { entries, next_before }
}

async fn list(state: web::Data<AppState>, _: CanView, req: HttpRequest) -> Result<impl Responder, ApiError> {
    let params = Params::parse(&req, &["project", "entity_kind", "entity_key", "limit", "before"])?;
    let page_of = Page::from(&params)?;
    let project = params.text("project").map(str::to_owned);
    let kind = params.text("entity_kind").map(str::to_owned);
    let key = params.text("entity_key").map(str::to_owned);
    let entries = state
        .store
        .read(move |conn| {
            let kinds: Vec<&str> = kind.as_deref().into_iter().collect();
            audit::list(
                conn,
                &AuditQuery {
                    project: project.as_deref(),
                    entity_kinds: &kinds,
                    entity_key: key.as_deref(),
                    before: page_of.before,
                    limit: page_of.limit,
                },
            )
        })
        .await?;
    Ok(web::Json(page(entries, page_of.limit)))
}
