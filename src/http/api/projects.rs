//! Projects: list and read (any role); create, rename and delete (admins).

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, Responder};

use super::{Body, CanManage, CanView, location};
use crate::AppState;
use crate::error::ApiError;
use crate::store::projects::{self, NewProject, ProjectUpdate};

/// Registers the project routes (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/projects")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/projects/{project}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    );
}

async fn list(state: web::Data<AppState>, _: CanView) -> Result<impl Responder, ApiError> {
    let projects = state.store.read(projects::list).await?;
    Ok(web::Json(serde_json::json!({ "projects": projects })))
}

async fn get(
    state: web::Data<AppState>,
    _: CanView,
    path: web::Path<String>,
) -> Result<impl Responder, ApiError> {
    let key = path.into_inner();
    Ok(web::Json(
        state.store.read(move |conn| projects::get(conn, &key)).await?,
    ))
}

async fn create(
    state: web::Data<AppState>,
    caller: CanManage,
    body: Body<NewProject>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.actor();
    let key = state
        .write(move |tx| projects::create(tx, &actor, body.0))
        .await?
        .key;
    // Read again: revisions are bumped as the write commits.
    let project = state.store.read(move |conn| projects::get(conn, &key)).await?;
    Ok(HttpResponse::Created()
        .insert_header(location(&["projects", &project.key]))
        .json(project))
}

async fn update(
    state: web::Data<AppState>,
    caller: CanManage,
    path: web::Path<String>,
    body: Body<ProjectUpdate>,
) -> Result<impl Responder, ApiError> {
    let (actor, key) = (caller.actor(), path.into_inner());
    let key = state
        .write(move |tx| projects::update(tx, &actor, &key, body.0))
        .await?
        .key;
    // Read again: revisions are bumped as the write commits.
    Ok(web::Json(
        state.store.read(move |conn| projects::get(conn, &key)).await?,
    ))
}

async fn delete(
    state: web::Data<AppState>,
    caller: CanManage,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (actor, key) = (caller.actor(), path.into_inner());
    state.write(move |tx| projects::delete(tx, &actor, &key)).await?;
    Ok(HttpResponse::NoContent().finish())
}
