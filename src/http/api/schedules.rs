//! Scheduled changes of a flag's state in one environment (DESIGN.md §9): list (any role),
//! schedule and cancel (editors). The server's applier (`crate::scheduler`) applies them.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, Responder};

use super::{Body, CanEdit, CanView, location};
use crate::AppState;
use crate::error::ApiError;
use crate::store::schedules::{self, NewSchedule};

/// Registers the schedule routes (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/projects/{project}/flags/{flag}/environments/{env}/schedules")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/projects/{project}/flags/{flag}/environments/{env}/schedules/{id}")
            .route(web::delete().to(cancel)),
    );
}

async fn list(
    state: web::Data<AppState>,
    _: CanView,
    path: web::Path<(String, String, String)>,
) -> Result<impl Responder, ApiError> {
    let (project, flag, env) = path.into_inner();
    let list = state
        .store
        .read(move |conn| schedules::list(conn, &project, &flag, &env))
        .await?;
    Ok(web::Json(serde_json::json!({ "schedules": list })))
}

async fn create(
    state: web::Data<AppState>,
    caller: CanEdit,
    path: web::Path<(String, String, String)>,
    body: Body<NewSchedule>,
) -> Result<HttpResponse, ApiError> {
    let (actor, (project, flag, env)) = (caller.actor(), path.into_inner());
    let (p, f, e) = (project.clone(), flag.clone(), env.clone());
    let schedule = state
        .write(move |tx| schedules::create(tx, &actor, &p, &f, &e, body.0))
        .await?;
    state.scheduled.notify_one();
    let id = schedule.id.to_string();
    Ok(HttpResponse::Created()
        .insert_header(location(&[
            "projects",
            &project,
            "flags",
            &flag,
            "environments",
            &env,
            "schedules",
            &id,
        ]))
        .json(schedule))
}

async fn cancel(
    state: web::Data<AppState>,
    caller: CanEdit,
    path: web::Path<(String, String, String, String)>,
) -> Result<impl Responder, ApiError> {
    let (actor, (project, flag, env, id)) = (caller.actor(), path.into_inner());
    let id: i64 = id.parse().map_err(|_| {
        ApiError::not_found(
            crate::store::Resource::Schedule,
            format!("schedule {id:?} of flag {flag:?} in {env:?}"),
        )
    })?;
    Ok(web::Json(
        state
            .write(move |tx| schedules::cancel(tx, &actor, &project, &flag, &env, id))
            .await?,
    ))
}
