//! Compare two environments (any role) and promote flags' states from one to another
//! (editors), DESIGN.md §9.

use actix_web::Responder;
use actix_web::web::{self, ServiceConfig};

use super::{Body, CanEdit, CanView};
use crate::AppState;
use crate::error::ApiError;
use crate::store::promote::{self, Promotion};

/// Registers the compare and promote routes (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/projects/{project}/environments/{env}/compare/{other}").route(web::get().to(compare)),
    )
    .service(web::resource("/projects/{project}/environments/{env}/promote").route(web::post().to(promote)));
}

async fn compare(
    state: web::Data<AppState>,
    _: CanView,
    path: web::Path<(String, String, String)>,
) -> Result<impl Responder, ApiError> {
    let (project, from, to) = path.into_inner();
    Ok(web::Json(
        state
            .store
            .read(move |conn| promote::compare(conn, &project, &from, &to))
            .await?,
    ))
}

async fn promote(
    state: web::Data<AppState>,
    caller: CanEdit,
    path: web::Path<(String, String)>,
    body: Body<Promotion>,
) -> Result<impl Responder, ApiError> {
    let (actor, (project, to)) = (caller.actor(), path.into_inner());
    Ok(web::Json(
        state
            .write(move |tx| promote::promote(tx, &actor, &project, &to, body.0))
            .await?,
    ))
}
