//! Import and export of a whole project as a document (DESIGN.md §2).
//!
//! Export writes the canonical document (environments in order, segments and flags by key,
//! default states left out), pretty-printed: the same data always exports to the same bytes,
//! and export → import → export is byte-identical.

use std::sync::Arc;

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, Responder};

use super::{CanEdit, CanView, RawBody};
use crate::AppState;
use crate::error::ApiError;
use crate::store::users::Role;
use crate::store::{import, projects};

/// Registers `POST /import` and `GET /projects/{project}/export` (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.route("/import", web::post().to(import))
        .route("/projects/{project}/export", web::get().to(export));
}

async fn export(
    state: web::Data<AppState>,
    _: CanView,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    let bytes = state
        .store
        .read(move |conn| projects::export_bytes(&projects::export(conn, &projects::head(conn, &key)?)?))
        .await?;
    Ok(HttpResponse::Ok().content_type("application/json").body(bytes))
}

async fn import(
    state: web::Data<AppState>,
    caller: CanEdit,
    body: RawBody,
) -> Result<impl Responder, ApiError> {
    let doc = flagstaff_eval::parse_document(&body.0).map_err(|e| {
        let path = super::field_path(&e.path, &e.message);
        ApiError::bad_request(
            e.message,
            Some(&path).filter(|p| !p.is_empty()).map(String::as_str),
        )
    })?;
    let doc = Arc::new(doc);
    let admin = caller.0.user.role >= Role::Admin;
    if !admin {
        let check = doc.clone();
        if state
            .store
            .read(move |conn| import::changes_structure(conn, &check))
            .await?
        {
            return Err(ApiError::Forbidden(format!(
                "this import creates or renames project {:?} or its environments, which needs the admin role; {} is {}",
                doc.project.key,
                caller.0.user.email,
                caller.0.user.role.as_str()
            )));
        }
    }
    let actor = caller.actor();
    let report = state
        .write(move |tx| import::import(tx, &actor, &doc, admin))
        .await?;
    Ok(web::Json(report))
}
