//! SDK keys of an environment: create (the secret is shown once), list, revoke. Admins only.
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
use crate::store::{Changes, environments};

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
    );
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
    let id: i64 = id.parse().map_err(|_| ApiError::NotFound(format!("key {id}")))?;
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
