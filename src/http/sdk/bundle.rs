//! `GET /sdk/v1/bundle`: the environment's bundle, straight from the snapshot's bytes.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::http::auth::ServerKey;
use crate::http::conditional::{AcceptEncoding, IfNoneMatch};
use crate::state::Serving;

/// What a cache keys a bundle on: the coding and the credential (a CDN must never hand one
/// environment's bundle to another key, or to no key).
const VARY: HeaderValue = HeaderValue::from_static("Accept-Encoding, Authorization, X-API-Key");

pub async fn bundle(
    key: ServerKey,
    if_none_match: IfNoneMatch,
    accept_encoding: AcceptEncoding,
    state: web::Data<Serving>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state
        .snapshots
        .get(key.environment_id)
        .ok_or_else(crate::http::auth::environment_gone)?;
    // `must-revalidate` lets a shared cache store a response to a request with Authorization
    // (RFC 9111 §3.5) and makes it ask us, with the caller's key, once `max-age` has passed.
    let cache_control = match state.settings.serve.bundle_max_age {
        0 => HeaderValue::from_static("max-age=0, must-revalidate"),
        n => HeaderValue::try_from(format!("max-age={n}, must-revalidate"))
            .map_err(|e| ApiError::Internal(Box::new(e)))?,
    };
    let etag = HeaderValue::try_from(snapshot.etag.as_str()).map_err(|e| ApiError::Internal(Box::new(e)))?;

    if if_none_match.matches(&snapshot.etag) {
        return Ok(HttpResponse::build(StatusCode::NOT_MODIFIED)
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, cache_control))
            .insert_header((header::VARY, VARY))
            .finish());
    }
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((header::VARY, VARY));
    if accept_encoding.gzip() {
        resp.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
        Ok(resp.body(snapshot.bundle_gzip.clone()))
    } else {
        Ok(resp.body(snapshot.bundle.clone()))
    }
}
