//! SDK keys of an environment, and relay keys of a project (DESIGN.md §8): create (the secret is
//! shown once), list, revoke. Admins only.
//! Every change goes through `AppState::write` with `api_keys: true`, so the in-memory lookup
//! that the SDK, OFREP and client paths use follows at once.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, Responder};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Body, CanManage};
use crate::AppState;
use crate::error::ApiError;
use crate::store::api_keys::{self, KeyInfo, KeyKind};
use crate::store::audit::Actor;
use crate::store::relay_keys::{self, RelayKeyInfo};
use crate::store::{Changes, environments, projects};

/// Registers the key routes (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/projects/{project}/environments/{environment}/keys")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/projects/{project}/environments/{environment}/keys/{id}")
            .route(web::delete().to(revoke)),
    )
    .service(
        web::resource("/projects/{project}/keys")
            .route(web::get().to(list_relay))
            .route(web::post().to(create_relay)),
    )
    .service(web::resource("/projects/{project}/keys/{id}").route(web::delete().to(revoke_relay)));
}

#[derive(Deserialize)]
struct EnvironmentPath {
    project: String,
    environment: String,
}

#[derive(Deserialize)]
struct KeyPath {
    project: String,
    environment: String,
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    kind: Option<String>,
    name: Option<String>,
}

/// A new key: the listing fields plus the secret, shown this once.
#[derive(Serialize)]
struct CreatedKey {
    #[serde(flatten)]
    info: KeyInfo,
    key: String,
}

async fn list(
    state: web::Data<AppState>,
    _: CanManage,
    path: web::Path<EnvironmentPath>,
) -> Result<impl Responder, ApiError> {
    let EnvironmentPath { project, environment } = path.into_inner();
    let keys = state
        .store
        .read(move |conn| api_keys::list(conn, environments::get(conn, &project, &environment)?.id))
        .await?;
    Ok(web::Json(json!({ "keys": keys })))
}

async fn create(
    state: web::Data<AppState>,
    CanManage(admin): CanManage,
    path: web::Path<EnvironmentPath>,
    Body(input): Body<NewKey>,
) -> Result<HttpResponse, ApiError> {
    let kind = match input.kind.as_deref() {
        None => {
            return Err(ApiError::bad_request(
                "kind is required: \"server\" or \"client\"",
                Some("kind"),
            ));
        }
        Some(kind) => KeyKind::parse(kind).ok_or_else(|| {
            ApiError::bad_request(
                format!("kind must be \"server\" or \"client\", not {kind:?}"),
                Some("kind"),
            )
        })?,
    };
    let name = input
        .name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "name is required (1 to 100 characters)",
            Some("name"),
        ));
    }
    let EnvironmentPath { project, environment } = path.into_inner();
    let actor = Actor::user(admin.user.id, &admin.user.email);
    let created = state
        .write(move |tx| {
            let created = api_keys::create_audited(tx, &actor, &project, &environment, kind, &name)?;
            let body = CreatedKey {
                info: created.info,
                key: created.secret,
            };
            Ok((
                body,
                Changes {
                    api_keys: true,
                    ..Changes::default()
                },
            ))
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}

async fn revoke(
    state: web::Data<AppState>,
    CanManage(admin): CanManage,
    path: web::Path<KeyPath>,
) -> Result<HttpResponse, ApiError> {
    let KeyPath {
        project,
        environment,
        id,
    } = path.into_inner();
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(crate::store::Resource::ApiKey, format!("key {id}")))?;
    let actor = Actor::user(admin.user.id, &admin.user.email);
    state
        .write(move |tx| {
            api_keys::revoke_audited(tx, &actor, &project, &environment, id)?;
            Ok((
                (),
                Changes {
                    api_keys: true,
                    ..Changes::default()
                },
            ))
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct ProjectPath {
    project: String,
}

#[derive(Deserialize)]
struct RelayKeyPath {
    project: String,
    id: String,
}

/// A new relay key: the listing fields plus the secret, shown this once.
#[derive(Serialize)]
struct CreatedRelayKey {
    #[serde(flatten)]
    info: RelayKeyInfo,
    key: String,
}

/// `GET /api/v1/projects/{project}/keys`: the project's relay keys.
async fn list_relay(
    state: web::Data<AppState>,
    _: CanManage,
    path: web::Path<ProjectPath>,
) -> Result<impl Responder, ApiError> {
    let project = path.into_inner().project;
    let keys = state
        .store
        .read(move |conn| relay_keys::list(conn, projects::head(conn, &project)?.id))
        .await?;
    Ok(web::Json(json!({ "keys": keys })))
}

/// `POST /api/v1/projects/{project}/keys` with `{"kind": "relay", "name": …}`. Project-level
/// keys are relay keys only: SDK keys belong to an environment.
async fn create_relay(
    state: web::Data<AppState>,
    CanManage(admin): CanManage,
    path: web::Path<ProjectPath>,
    Body(input): Body<NewKey>,
) -> Result<HttpResponse, ApiError> {
    match input.kind.as_deref() {
        Some("relay") => {}
        None => return Err(ApiError::bad_request("kind is required: \"relay\"", Some("kind"))),
        Some(kind) => {
            return Err(ApiError::bad_request(
                format!(
                    "kind must be \"relay\" for a project's key, not {kind:?}; server and client keys \
                     belong to an environment: POST /api/v1/projects/{{project}}/environments/{{environment}}/keys"
                ),
                Some("kind"),
            ));
        }
    }
    let name = input
        .name
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "name is required (1 to 100 characters)",
            Some("name"),
        ));
    }
    let project = path.into_inner().project;
    let actor = Actor::user(admin.user.id, &admin.user.email);
    let created = state
        .write(move |tx| {
            let created = relay_keys::create_audited(tx, &actor, &project, &name)?;
            let body = CreatedRelayKey {
                info: created.info,
                key: created.secret,
            };
            Ok((
                body,
                Changes {
                    api_keys: true,
                    ..Changes::default()
                },
            ))
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}

/// `DELETE /api/v1/projects/{project}/keys/{id}`: revokes a relay key; its relays' streams end
/// within one keep-alive and their requests are refused.
async fn revoke_relay(
    state: web::Data<AppState>,
    CanManage(admin): CanManage,
    path: web::Path<RelayKeyPath>,
) -> Result<HttpResponse, ApiError> {
    let RelayKeyPath { project, id } = path.into_inner();
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(crate::store::Resource::RelayKey, format!("relay key {id}")))?;
    let actor = Actor::user(admin.user.id, &admin.user.email);
    state
        .write(move |tx| {
            relay_keys::revoke_audited(tx, &actor, &project, id)?;
            Ok((
                (),
                Changes {
                    api_keys: true,
                    ..Changes::default()
                },
            ))
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
