//! A project's environments: list and read (any role); create, rename and delete (admins).

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, Responder};
use flagstaff_eval::model::EnvironmentInfo;

use super::{Body, CanManage, CanView, location};
use crate::AppState;
use crate::error::ApiError;
use crate::store::environments::{self, EnvironmentUpdate};

/// Registers the environment routes (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/projects/{project}/environments")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/projects/{project}/environments/{env}")
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
        .read(move |conn| environments::list(conn, &project))
        .await?;
    Ok(web::Json(serde_json::json!({ "environments": list })))
}

async fn get(
    state: web::Data<AppState>,
    _: CanView,
    path: web::Path<(String, String)>,
) -> Result<impl Responder, ApiError> {
    let (project, env) = path.into_inner();
    Ok(web::Json(
        state
            .store
            .read(move |conn| environments::get(conn, &project, &env))
            .await?,
    ))
}

async fn create(
    state: web::Data<AppState>,
    caller: CanManage,
    path: web::Path<String>,
    body: Body<EnvironmentInfo>,
) -> Result<HttpResponse, ApiError> {
    let (actor, project) = (caller.actor(), path.into_inner());
    let (key, project) = state
        .write(move |tx| {
            let (env, changes) = environments::create(tx, &actor, &project, body.0)?;
            Ok(((env.key, project), changes))
        })
        .await?;
    // Read again: its revision is bumped as the write commits.
    let (env, project) = state
        .store
        .read(move |conn| Ok((environments::get(conn, &project, &key)?, project)))
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(location(&["projects", &project, "environments", &env.key]))
        .json(env))
}

async fn update(
    state: web::Data<AppState>,
    caller: CanManage,
    path: web::Path<(String, String)>,
    body: Body<EnvironmentUpdate>,
) -> Result<impl Responder, ApiError> {
    let (actor, (project, env)) = (caller.actor(), path.into_inner());
    Ok(web::Json(
        state
            .write(move |tx| environments::update(tx, &actor, &project, &env, body.0))
            .await?,
    ))
}

async fn delete(
    state: web::Data<AppState>,
    caller: CanManage,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (actor, (project, env)) = (caller.actor(), path.into_inner());
    state
        .write(move |tx| environments::delete(tx, &actor, &project, &env))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
