//! The caller's own admin tokens: list, create (the secret is shown once), revoke. Any role:
//! a token carries its user's role, never more.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, Responder};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Body, CanView};
use crate::AppState;
use crate::error::ApiError;
use crate::store::admin_tokens::{self, TokenInfo};
use crate::store::audit::{self, Actor, Entity};
use crate::store::{Changes, StoreError};

/// Registers the token routes (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/tokens")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(web::resource("/tokens/{id}").route(web::delete().to(revoke)));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: Option<String>,
}

/// A new token: the listing fields plus the secret, shown this once.
#[derive(Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    info: TokenInfo,
    token: String,
}

fn token_entity(id: &str) -> Entity<'_> {
    Entity {
        kind: "admin_token",
        key: Some(id),
        project: None,
        environment: None,
    }
}

async fn list(state: web::Data<AppState>, CanView(admin): CanView) -> Result<impl Responder, ApiError> {
    let user_id = admin.user.id;
    let tokens = state
        .store
        .read(move |conn| admin_tokens::list(conn, user_id))
        .await?;
    Ok(web::Json(json!({ "tokens": tokens })))
}

async fn create(
    state: web::Data<AppState>,
    CanView(admin): CanView,
    Body(input): Body<NewToken>,
) -> Result<HttpResponse, ApiError> {
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
    let actor = Actor::user(admin.user.id, &admin.user.email);
    let created = state
        .write(move |tx| {
            let user_id = admin.user.id;
            let token = admin_tokens::create(tx, user_id, &name)?;
            let id = tx.last_insert_rowid();
            let info = admin_tokens::info(tx, user_id, id)?
                .ok_or_else(|| StoreError::not_found(crate::store::Resource::Token, "the new token"))?;
            let after = json!({"id": id, "name": info.name, "user": admin.user.email, "prefix": info.prefix});
            audit::record(
                tx,
                &actor,
                "create",
                token_entity(&id.to_string()),
                None,
                Some(&after),
            )?;
            Ok((CreatedToken { info, token }, Changes::default()))
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}

async fn revoke(
    state: web::Data<AppState>,
    CanView(admin): CanView,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(crate::store::Resource::Token, format!("token {id}")))?;
    let actor = Actor::user(admin.user.id, &admin.user.email);
    state
        .write(move |tx| {
            let user_id = admin.user.id;
            let before = admin_tokens::info(tx, user_id, id)?.filter(|t| t.revoked_at.is_none());
            let Some(before) = before else {
                return Err(StoreError::not_found(
                    crate::store::Resource::Token,
                    format!("token {id} (or it is already revoked)"),
                ));
            };
            admin_tokens::revoke(tx, user_id, id)?;
            let before =
                json!({"id": id, "name": before.name, "user": admin.user.email, "prefix": before.prefix});
            audit::record(
                tx,
                &actor,
                "revoke",
                token_entity(&id.to_string()),
                Some(&before),
                None,
            )?;
            Ok(((), Changes::default()))
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
