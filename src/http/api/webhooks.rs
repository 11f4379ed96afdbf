//! Webhooks of a project (DESIGN.md §10), admins only: list, create (the secret is shown once),
//! read, change, delete, rotate the secret, send a test event, and the delivery attempts.

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse, Responder};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Body, CanManage, Params, location};
use crate::AppState;
use crate::error::ApiError;
use crate::store::Changes;
use crate::store::webhooks::{self, Change, Settings, Webhook};
use crate::webhooks::{Format, check_events, check_secret, check_url, deliver};

/// Registers the webhook routes (inside `/api/v1`).
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/projects/{project}/webhooks")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/projects/{project}/webhooks/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/projects/{project}/webhooks/{id}/secret").route(web::post().to(rotate)))
    .service(web::resource("/projects/{project}/webhooks/{id}/test").route(web::post().to(test)))
    .service(web::resource("/projects/{project}/webhooks/{id}/attempts").route(web::get().to(attempts)));
}

#[derive(Deserialize)]
struct WebhookPath {
    project: String,
    id: String,
}

impl WebhookPath {
    fn id(&self) -> Result<i64, ApiError> {
        self.id
            .parse()
            .map_err(|_| ApiError::not_found(crate::store::Resource::Webhook, format!("webhook {}", self.id)))
    }
}

/// A webhook's fields as sent (all optional here; create requires `url` and `events`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Input {
    url: Option<String>,
    events: Option<Vec<String>>,
    /// Absent: unchanged (every environment on create); `null`: every environment.
    #[serde(default)]
    environments: Option<Value>,
    format: Option<String>,
    enabled: Option<bool>,
    secret: Option<String>,
}

/// The checked form of an [`Input`]: what it sets.
pub struct Checked {
    pub change: Change,
    pub secret: Option<String>,
}

/// Checks an input's fields; a bad one is a 400 naming it.
pub fn check(input: Input, allow_private: bool) -> Result<Checked, ApiError> {
    let url = input
        .url
        .map(|u| check_url(&u, allow_private).map_err(|m| ApiError::bad_request(m, Some("url"))))
        .transpose()?;
    let events = input
        .events
        .map(|e| check_events(&e).map_err(|(i, m)| ApiError::bad_request(m, Some(&format!("events[{i}]")))))
        .transpose()?;
    let environments = match input.environments {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(ApiError::bad_request(
                    "environments must name at least one environment (or be null for every one)",
                    Some("environments"),
                ));
            }
            let mut keys: Vec<String> = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let Value::String(key) = item else {
                    return Err(ApiError::bad_request(
                        "an environment is named by its key, a string",
                        Some(&format!("environments[{i}]")),
                    ));
                };
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            Some(Some(keys))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "environments must be a list of environment keys, or null for every one",
                Some("environments"),
            ));
        }
    };
    let format = input
        .format
        .map(|f| {
            Format::parse(&f).ok_or_else(|| {
                ApiError::bad_request(
                    format!("format must be \"json\" or \"slack\", not {f:?}"),
                    Some("format"),
                )
            })
        })
        .transpose()?;
    let secret = input
        .secret
        .map(|s| check_secret(&s).map_err(|m| ApiError::bad_request(m, Some("secret"))))
        .transpose()?;
    Ok(Checked {
        change: Change {
            url,
            events,
            environments,
            format,
            enabled: input.enabled,
        },
        secret,
    })
}

/// A new webhook: its fields plus the secret, shown this once.
#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    webhook: Webhook,
    secret: String,
}

fn allow_private(state: &AppState) -> bool {
    state.settings.serve.webhooks.webhook_allow_private
}

async fn list(
    state: web::Data<AppState>,
    _: CanManage,
    path: web::Path<String>,
) -> Result<impl Responder, ApiError> {
    let project = path.into_inner();
    let hooks = state
        .store
        .read(move |conn| webhooks::list(conn, &project))
        .await?;
    Ok(web::Json(json!({ "webhooks": hooks })))
}

async fn create(
    state: web::Data<AppState>,
    admin: CanManage,
    path: web::Path<String>,
    Body(input): Body<Input>,
) -> Result<HttpResponse, ApiError> {
    let project = path.into_inner();
    let Checked { change, secret } = check(input, allow_private(&state))?;
    let url = change
        .url
        .ok_or_else(|| ApiError::bad_request("url is required", Some("url")))?;
    let events = change
        .events
        .ok_or_else(|| ApiError::bad_request("events is required (\"*\" for all)", Some("events")))?;
    let settings = Settings {
        url,
        events,
        environments: change.environments.flatten(),
        format: change.format.unwrap_or(Format::Json),
        enabled: change.enabled.unwrap_or(true),
    };
    let actor = admin.actor();
    let p = project.clone();
    let (webhook, secret) = state
        .write(move |tx| {
            Ok((
                webhooks::create_audited(tx, &actor, &p, settings, secret)?,
                Changes::default(),
            ))
        })
        .await?;
    let id = webhook.id.to_string();
    Ok(HttpResponse::Created()
        .insert_header(location(&["projects", &project, "webhooks", &id]))
        .json(Created { webhook, secret }))
}

async fn get(
    state: web::Data<AppState>,
    _: CanManage,
    path: web::Path<WebhookPath>,
) -> Result<impl Responder, ApiError> {
    let id = path.id()?;
    let project = path.into_inner().project;
    Ok(web::Json(
        state
            .store
            .read(move |conn| webhooks::get(conn, &project, id))
            .await?,
    ))
}

async fn update(
    state: web::Data<AppState>,
    admin: CanManage,
    path: web::Path<WebhookPath>,
    Body(input): Body<Input>,
) -> Result<impl Responder, ApiError> {
    let id = path.id()?;
    let project = path.into_inner().project;
    if input.secret.is_some() {
        return Err(ApiError::bad_request(
            "the secret is changed by POST …/webhooks/{id}/secret",
            Some("secret"),
        ));
    }
    let Checked { change, .. } = check(input, allow_private(&state))?;
    let actor = admin.actor();
    let webhook = state
        .write(move |tx| {
            Ok((
                webhooks::update_audited(tx, &actor, &project, id, change)?,
                Changes::default(),
            ))
        })
        .await?;
    Ok(web::Json(webhook))
}

async fn delete(
    state: web::Data<AppState>,
    admin: CanManage,
    path: web::Path<WebhookPath>,
) -> Result<HttpResponse, ApiError> {
    let id = path.id()?;
    let project = path.into_inner().project;
    let actor = admin.actor();
    state
        .write(move |tx| {
            Ok((
                webhooks::delete_audited(tx, &actor, &project, id)?,
                Changes::default(),
            ))
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewSecret {
    secret: Option<String>,
}

async fn rotate(
    state: web::Data<AppState>,
    admin: CanManage,
    path: web::Path<WebhookPath>,
    body: web::Bytes,
) -> Result<impl Responder, ApiError> {
    let id = path.id()?;
    let project = path.into_inner().project;
    // The body is optional: without one a secret is generated.
    let input: NewSecret = if body.iter().all(u8::is_ascii_whitespace) {
        NewSecret::default()
    } else {
        super::json_body(&body)?
    };
    let secret = input
        .secret
        .map(|s| check_secret(&s).map_err(|m| ApiError::bad_request(m, Some("secret"))))
        .transpose()?;
    let actor = admin.actor();
    let secret = state
        .write(move |tx| {
            Ok((
                webhooks::rotate_secret_audited(tx, &actor, &project, id, secret)?,
                Changes::default(),
            ))
        })
        .await?;
    Ok(web::Json(json!({ "secret": secret })))
}

async fn test(
    state: web::Data<AppState>,
    admin: CanManage,
    path: web::Path<WebhookPath>,
) -> Result<impl Responder, ApiError> {
    let id = path.id()?;
    let project = path.into_inner().project;
    let attempt = deliver::send_test(&state, &project, id, &admin.0.user.email).await?;
    Ok(web::Json(attempt))
}

async fn attempts(
    req: HttpRequest,
    state: web::Data<AppState>,
    _: CanManage,
    path: web::Path<WebhookPath>,
) -> Result<impl Responder, ApiError> {
    let params = Params::parse(&req, &["limit"])?;
    let limit = params.number("limit", 1, 500)?.unwrap_or(50) as u32;
    let id = path.id()?;
    let project = path.into_inner().project;
    let attempts = state
        .store
        .read(move |conn| webhooks::attempts(conn, &project, id, limit))
        .await?;
    Ok(web::Json(json!({ "attempts": attempts })))
}
