//! User management (admins only): list, create with a temporary password, change role or
//! disable. At least one enabled admin always remains.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, Responder};
use serde::Deserialize;

use super::{Body, CanManage};
use crate::AppState;
use crate::error::ApiError;
use crate::password;
use crate::store::audit::Actor;
use crate::store::users::{self, Role};
use crate::store::{Changes, run_blocking};

/// Registers the user routes (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/users")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/users/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update)),
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: Option<String>,
    role: Option<String>,
    /// A temporary password: the user must change it at the first sign-in.
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    role: Option<String>,
    disabled: Option<bool>,
}

fn parse_role(role: &str) -> Result<Role, ApiError> {
    Role::parse(role).ok_or_else(|| {
        ApiError::bad_request(
            format!("role must be \"admin\", \"editor\" or \"viewer\", not {role:?}"),
            Some("role"),
        )
    })
}

fn user_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(crate::store::Resource::User, format!("user {id}")))
}

async fn list(state: web::Data<AppState>, _: CanManage) -> Result<impl Responder, ApiError> {
    let users = state.store.read(users::list).await?;
    Ok(web::Json(serde_json::json!({ "users": users })))
}

async fn get(
    state: web::Data<AppState>,
    _: CanManage,
    id: web::Path<String>,
) -> Result<impl Responder, ApiError> {
    let id = user_id(&id)?;
    let user = state.store.read(move |conn| users::info(conn, id)).await?;
    Ok(web::Json(user.ok_or_else(|| {
        ApiError::not_found(crate::store::Resource::User, format!("user {id}"))
    })?))
}

async fn create(
    state: web::Data<AppState>,
    CanManage(admin): CanManage,
    Body(input): Body<NewUser>,
) -> Result<HttpResponse, ApiError> {
    let email = input
        .email
        .ok_or_else(|| ApiError::bad_request("email is required", Some("email")))?;
    let email =
        password::parse_email(&email).map_err(|e| ApiError::bad_request(e.to_string(), Some("email")))?;
    let role = parse_role(
        input
            .role
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("role is required", Some("role")))?,
    )?;
    let password = input
        .password
        .ok_or_else(|| ApiError::bad_request("password (a temporary one) is required", Some("password")))?;
    password::check_new(&password).map_err(|e| ApiError::bad_request(e.to_string(), Some("password")))?;
    // Hashing takes tens of milliseconds: do it before taking the write lock.
    let hash = run_blocking(move || Ok(password::hash(&password))).await?;
    let actor = Actor::user(admin.user.id, &admin.user.email);
    let created = state
        .write(move |tx| {
            Ok((
                users::invite(tx, &actor, &email, role, &hash)?,
                Changes::default(),
            ))
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}

async fn update(
    state: web::Data<AppState>,
    CanManage(admin): CanManage,
    id: web::Path<String>,
    Body(input): Body<UserChange>,
) -> Result<impl Responder, ApiError> {
    let id = user_id(&id)?;
    let role = input.role.as_deref().map(parse_role).transpose()?;
    if role.is_none() && input.disabled.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give role and/or disabled",
            None,
        ));
    }
    let disabled = input.disabled;
    let actor = Actor::user(admin.user.id, &admin.user.email);
    let updated = state
        .write(move |tx| Ok((users::change(tx, &actor, id, role, disabled)?, Changes::default())))
        .await?;
    Ok(web::Json(updated))
}
