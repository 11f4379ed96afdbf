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
use crate::store::audit::{self, Actor, Entity};
use crate::store::{Changes, StoreError, environments};

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
            let env_id = environments::get(tx, &project, &environment)?.id;
            let (id, secret) = api_keys::create(tx, env_id, kind, &name, actor.user_id)?;
            let info = api_keys::list(tx, env_id)?
                .into_iter()
                .find(|k| k.id == id)
                .ok_or_else(|| StoreError::not_found(format!("key {id}")))?;
            let after = json!({"id": id, "kind": kind.as_str(), "name": info.name, "prefix": info.prefix});
            audit::record(
                tx,
                &actor,
                "create",
                key_entity(&id.to_string(), &project, &environment),
                None,
                Some(&after),
            )?;
            Ok((
                CreatedKey { info, key: secret },
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
            let env_id = environments::get(tx, &project, &environment)?.id;
            let before = api_keys::list(tx, env_id)?
                .into_iter()
                .find(|k| k.id == id && k.revoked_at.is_none());
            let Some(before) = before else {
                return Err(StoreError::not_found(format!(
                    "key {id} (or it is already revoked)"
                )));
            };
            api_keys::revoke(tx, env_id, id)?;
            let before =
                json!({"id": id, "kind": before.kind.as_str(), "name": before.name, "prefix": before.prefix});
            audit::record(
                tx,
                &actor,
                "revoke",
                key_entity(&id.to_string(), &project, &environment),
                Some(&before),
                None,
            )?;
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

fn key_entity<'a>(id: &'a str, project: &'a str, environment: &'a str) -> Entity<'a> {
    Entity {
        kind: "api_key",
        key: Some(id),
        project: Some(project),
        environment: Some(environment),
    }
}
