//! The management API, `/api/v1` (DESIGN.md §4): projects, environments, flags and their
//! per-environment state, segments, import and export, the audit log with a flag's history and
//! restore — plus users, admin tokens, SDK keys and the OpenAPI document.
//!
//! Callers authenticate with an admin token; [`CanView`], [`CanEdit`] and [`CanManage`] check the
//! role before the body is read. Bodies are parsed with [`Body`] / [`json_body`], so a malformed
//! one is a 400 naming the path of the bad field. Every error is
//! `{"error": {"code", "message", "path"?}}`.

mod audit;
mod environments;
mod flags;
mod keys;
mod openapi;
mod projects;
mod promote;
mod schedules;
mod segments;
mod tokens;
mod transfer;
mod users;
mod webhooks;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{self, ServiceConfig};
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::http::auth::Admin;
use crate::store::audit::Actor;
use crate::store::users::Role;

/// The largest body `/api/v1` reads (an imported document can be big).
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Registers `/api/v1`.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .configure(projects::configure)
            .configure(environments::configure)
            .configure(flags::configure)
            .configure(segments::configure)
            .configure(transfer::configure)
            .configure(audit::configure)
            // ── users, admin tokens, SDK keys, OpenAPI: registered here ──
            .configure(users::configure)
            .configure(tokens::configure)
            .configure(keys::configure)
            .configure(openapi::configure)
            // ── end ──
            .configure(webhooks::configure)
            // ── scheduled changes, compare and promote (issue 16) ──
            .configure(schedules::configure)
            .configure(promote::configure)
            // ── end ──
            .default_service(web::to(no_such_endpoint))
            .wrap(from_fn(method_not_allowed)),
    );
}

/// A resource answers a method it does not take with an empty 405; the API answers with its
/// JSON error instead, naming the method and the path.
async fn method_not_allowed(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    use actix_web::ResponseError;
    let res = next.call(req).await?;
    if res.status() != actix_web::http::StatusCode::METHOD_NOT_ALLOWED {
        return Ok(res.map_into_left_body());
    }
    let message = format!(
        "{} is not a method of {} (docs/api.md lists each endpoint's methods)",
        res.request().method(),
        res.request().path()
    );
    let answer = ApiError::MethodNotAllowed(message).error_response();
    Ok(res.into_response(answer).map_into_right_body())
}

async fn no_such_endpoint(req: HttpRequest) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    ApiError::NotFound {
        resource: None,
        what: format!("endpoint {} {}", req.method(), req.path()),
    }
    .error_response()
}

/// Parses a JSON body; a malformed one is a 400 naming the path of the bad field
/// (`variations[1].value`), or no path when the JSON itself is broken.
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("a JSON body is required", None));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        json_error(if path == "." { "" } else { &path }, e.into_inner())
    })?;
    de.end().map_err(|e| json_error("", e))?;
    Ok(value)
}

fn json_error(path: &str, e: serde_json::Error) -> ApiError {
    let code = if e.is_syntax() || e.is_eof() {
        "invalid_json"
    } else {
        "bad_request"
    };
    let message = e.to_string();
    let path = field_path(path, &message);
    ApiError::BadRequest {
        code,
        message,
        path: Some(path).filter(|p| !p.is_empty()),
    }
}

/// A `PUT` body naming what the URL names: its `key` may be left out.
pub fn with_key<T: DeserializeOwned>(mut body: serde_json::Value, key: &str) -> Result<T, ApiError> {
    if let serde_json::Value::Object(map) = &mut body {
        map.entry("key").or_insert_with(|| key.into());
    }
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        json_error(if path == "." { "" } else { &path }, e.into_inner())
    })
}

/// Serde reports a missing field at its parent's path, naming the field only in the message;
/// the path should name the field itself.
pub fn field_path(path: &str, message: &str) -> String {
    let field = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field);
    match field {
        Some(field) if path.is_empty() => field.to_owned(),
        Some(field) => format!("{path}.{field}"),
        None => path.to_owned(),
    }
}

/// A JSON body parsed with [`json_body`]. A body too large is a 413.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Body<T>, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move { Ok(Body(json_body(&raw(bytes.await)?)?)) })
    }
}

/// A body's bytes, as JSON errors.
pub struct RawBody(pub web::Bytes);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<RawBody, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move { Ok(RawBody(raw(bytes.await)?)) })
    }
}

fn raw(read: Result<web::Bytes, actix_web::Error>) -> Result<web::Bytes, ApiError> {
    read.map_err(|e| {
        if e.as_response_error().status_code() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "the body is larger than {} MiB",
                BODY_LIMIT / (1024 * 1024)
            ))
        } else {
            ApiError::bad_request(format!("the body could not be read: {e}"), None)
        }
    })
}

/// The query string's parameters; an unknown one is a 400 naming it.
pub struct Params(BTreeMap<String, String>);

impl Params {
    fn parse(req: &HttpRequest, known: &[&str]) -> Result<Params, ApiError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| ApiError::bad_request(format!("the query string is malformed: {e}"), None))?
            .into_inner();
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            if !known.contains(&name.as_str()) {
                return Err(ApiError::bad_request(
                    format!("unknown query parameter {name:?}; known: {}", known.join(", ")),
                    Some(&name),
                ));
            }
            if map.insert(name.clone(), value).is_some() {
                return Err(ApiError::bad_request(
                    format!("query parameter {name:?} is given twice"),
                    Some(&name),
                ));
            }
        }
        Ok(Params(map))
    }

    /// A text parameter (an empty one counts as absent).
    fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A whole-number parameter within `min..=max`.
    fn number(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.text(name) else {
            return Ok(None);
        };
        match value.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request(
                format!("{name} must be a whole number from {min} to {max}, not {value:?}"),
                Some(name),
            )),
        }
    }
}

/// The page of a listing: `limit` (default 50, at most 500) and `before` (an id: the previous
/// page's last).
struct Page {
    limit: u32,
    before: Option<i64>,
}

impl Page {
    fn from(params: &Params) -> Result<Page, ApiError> {
        Ok(Page {
            limit: params.number("limit", 1, 500)?.unwrap_or(50) as u32,
            before: params.number("before", 1, i64::MAX)?,
        })
    }
}

/// `If-Match: <version>` (`"3"`, `3` or `W/"3"`); absent or `*` is no precondition.
pub struct IfMatch(pub Option<u64>);

impl FromRequest for IfMatch {
    type Error = ApiError;
    type Future = std::future::Ready<Result<IfMatch, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(if_match(req))
    }
}

fn if_match(req: &HttpRequest) -> Result<IfMatch, ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(IfMatch(None));
    };
    let bad = || ApiError::bad_request("If-Match must be a version, such as \"3\"", Some("If-Match"));
    let value = value.to_str().map_err(|_| bad())?.trim();
    if value == "*" {
        return Ok(IfMatch(None));
    }
    let value = value.strip_prefix("W/").unwrap_or(value);
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    value.parse().map(|v| IfMatch(Some(v))).map_err(|_| bad())
}

/// The `ETag` of something with a version.
fn version_tag(version: u64) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name(pub Admin);

        impl $name {
            /// Who the audit log names.
            pub fn actor(&self) -> Actor {
                Actor::user(self.0.user.id, &self.0.user.email)
            }
        }

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = Pin<Box<dyn Future<Output = Result<$name, ApiError>>>>;

            fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
                let admin = Admin::from_request(req, payload);
                Box::pin(async move {
                    let admin = admin.await?;
                    admin.require($role)?;
                    Ok($name(admin))
                })
            }
        }
    };
}

role_extractor!(
    /// A caller who may read (any role).
    CanView,
    Role::Viewer
);
role_extractor!(
    /// A caller who may change flags, their states, segments, and import (editor or admin).
    CanEdit,
    Role::Editor
);
role_extractor!(
    /// A caller who may create, rename and delete projects and environments (admin).
    CanManage,
    Role::Admin
);

/// `/api/v1/…` of a resource, for `Location`.
fn location(parts: &[&str]) -> (header::HeaderName, String) {
    let mut path = String::from("/api/v1");
    for part in parts {
        path.push('/');
        path.push_str(part);
    }
    (header::LOCATION, path)
}
