//! Flags and configs: list and read (any role); create, replace, delete, change a state,
//! restore (editors). Each flag is shown with its state in every environment, with versions.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse, Responder};
use flagstaff_eval::model::{Flag, FlagKind};
use serde::Deserialize;

use super::{Body, CanEdit, CanView, IfMatch, Page, Params, location, version_tag};
use crate::AppState;
use crate::error::ApiError;
use crate::store::flags::{self, FlagFilter, StatePatch};

/// Registers the flag routes (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/projects/{project}/flags")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/projects/{project}/flags/{flag}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .service(
        web::resource("/projects/{project}/flags/{flag}/environments/{env}")
            .route(web::get().to(get_state))
            .route(web::patch().to(patch_state)),
    )
    .service(web::resource("/projects/{project}/flags/{flag}/history").route(web::get().to(history)))
    .service(web::resource("/projects/{project}/flags/{flag}/restore").route(web::post().to(restore)));
}

async fn list(
    state: web::Data<AppState>,
    _: CanView,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<impl Responder, ApiError> {
    let params = Params::parse(&req, &["kind", "tag"])?;
    let kind = match params.text("kind") {
        None => None,
        Some("flag") => Some(FlagKind::Flag),
        Some("config") => Some(FlagKind::Config),
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("kind must be \"flag\" or \"config\", not {other:?}"),
                Some("kind"),
            ));
        }
    };
    let filter = FlagFilter {
        kind,
        tag: params.text("tag").map(str::to_owned),
    };
    let project = path.into_inner();
    let list = state
        .store
        .read(move |conn| flags::list(conn, &project, &filter))
        .await?;
    Ok(web::Json(serde_json::json!({ "flags": list })))
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
            .read(move |conn| flags::get(conn, &project, &key))
            .await?,
    ))
}

async fn create(
    state: web::Data<AppState>,
    caller: CanEdit,
    path: web::Path<String>,
    body: Body<Flag>,
) -> Result<HttpResponse, ApiError> {
    let (actor, project) = (caller.actor(), path.into_inner());
    let loc = location(&["projects", &project, "flags", &body.0.key]);
    let flag = state
        .write(move |tx| flags::create(tx, &actor, &project, body.0))
        .await?;
    Ok(HttpResponse::Created().insert_header(loc).json(flag))
}

async fn update(
    state: web::Data<AppState>,
    caller: CanEdit,
    path: web::Path<(String, String)>,
    body: Body<serde_json::Value>,
) -> Result<impl Responder, ApiError> {
    let (actor, (project, key)) = (caller.actor(), path.into_inner());
    let flag: Flag = super::with_key(body.0, &key)?;
    Ok(web::Json(
        state
            .write(move |tx| flags::update(tx, &actor, &project, &key, flag))
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
        .write(move |tx| flags::delete(tx, &actor, &project, &key))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn get_state(
    state: web::Data<AppState>,
    _: CanView,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (project, key, env) = path.into_inner();
    let found = state
        .store
        .read(move |conn| flags::state(conn, &project, &key, &env))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(version_tag(found.version.unwrap_or(0)))
        .json(found))
}

async fn patch_state(
    state: web::Data<AppState>,
    caller: CanEdit,
    path: web::Path<(String, String, String)>,
    if_match: IfMatch,
    body: Body<StatePatch>,
) -> Result<HttpResponse, ApiError> {
    let (actor, (project, key, env)) = (caller.actor(), path.into_inner());
    let expected = if_match.0;
    let new = state
        .write(move |tx| flags::patch_state(tx, &actor, &project, &key, &env, body.0, expected))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(version_tag(new.version.unwrap_or(0)))
        .json(new))
}

async fn history(
    state: web::Data<AppState>,
    _: CanView,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<impl Responder, ApiError> {
    let page = Page::from(&Params::parse(&req, &["limit", "before"])?)?;
    let (project, key) = path.into_inner();
    let entries = state
        .store
        .read(move |conn| flags::history(conn, &project, &key, page.before, page.limit))
        .await?;
    Ok(web::Json(super::audit::page(entries, page.limit)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Restore {
    audit_id: i64,
}

async fn restore(
    state: web::Data<AppState>,
    caller: CanEdit,
    path: web::Path<(String, String)>,
    body: Body<Restore>,
) -> Result<impl Responder, ApiError> {
    let (actor, (project, key)) = (caller.actor(), path.into_inner());
    let audit_id = body.0.audit_id;
    Ok(web::Json(
        state
            .write(move |tx| flags::restore(tx, &actor, &project, &key, audit_id))
            .await?,
    ))
}
