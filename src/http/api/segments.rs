//! A project's segments: list and read (any role); create, replace and delete (editors).

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, Responder};
use flagstaff_eval::model::Segment;

use super::{Body, CanEdit, CanView, location};
use crate::AppState;
use crate::error::ApiError;
use crate::store::segments;

/// Registers the segment routes (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/projects/{project}/segments")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/projects/{project}/segments/{segment}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    );
}

async fn list(
    state: web::Data<AppState>,
    _: CanView,
    path: web::Path<String>,
) -> Result<impl Responder, ApiError> {
    let project = path.into_inner();
    let list = state
        .store
        .read(move |conn| segments::list(conn, &project))
        .await?;
    Ok(web::Json(serde_json::json!({ "segments": list })))
}

async fn get(
    state: web::Data<AppState>,
    _: CanView,
    path: web::Path<(String, String)>,
) -> Result<impl Responder, ApiError> {
    let (project, key) = path.into_inner();
    Ok(web::Json(
        state
            .store
            .read(move |conn| segments::get(conn, &project, &key))
            .await?,
    ))
}

async fn create(
    state: web::Data<AppState>,
    caller: CanEdit,
    path: web::Path<String>,
    body: Body<Segment>,
) -> Result<HttpResponse, ApiError> {
    let (actor, project) = (caller.actor(), path.into_inner());
    let loc = location(&["projects", &project, "segments", &body.0.key]);
    let segment = state
        .write(move |tx| segments::create(tx, &actor, &project, body.0))
        .await?;
    Ok(HttpResponse::Created().insert_header(loc).json(segment))
}

async fn update(
    state: web::Data<AppState>,
    caller: CanEdit,
    path: web::Path<(String, String)>,
    body: super::Body<serde_json::Value>,
) -> Result<impl Responder, ApiError> {
    let (actor, (project, key)) = (caller.actor(), path.into_inner());
    let segment: Segment = super::with_key(body.0, &key)?;
    Ok(web::Json(
        state
            .write(move |tx| segments::update(tx, &actor, &project, &key, segment))
            .await?,
    ))
}

async fn delete(
    state: web::Data<AppState>,
    caller: CanEdit,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (actor, (project, key)) = (caller.actor(), path.into_inner());
    state
        .write(move |tx| segments::delete(tx, &actor, &project, &key))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
