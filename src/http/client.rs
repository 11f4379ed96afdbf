//! Browsers' cacheable read, the "belt" of DESIGN.md §1 (the browser SDK itself is served by
//! `http::sdk`).
//!
//! `GET /client/v1/{client key}/{context}` answers the values of the client-side flags for a
//! context carried in the URL (base64url of its JSON): `{"flags": {"key": value, …}}`. Being a
//! plain GET without credentials in headers, it needs no CORS preflight, and any HTTP cache or
//! CDN may keep it (`Cache-Control: public, …, stale-if-error=…`) and serve it while Flagstaff
//! is down. Query parameters are ignored, so an SDK can add `?r=<revision>` after a change to
//! get past caches. Only a client key may be used here: a URL is no place for a server key.
//!
//! The context is read, limited and evaluated as for OFREP ([`crate::http::evaluation`]).

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::{self, ServiceConfig};

use super::auth::EvaluationKey;
use super::conditional::IfNoneMatch;
use super::cors;
use super::evaluation::json::write_u64;
use super::evaluation::{self, ContextError, answers, context_from_url, record};
use crate::error::ApiError;
use crate::state::Serving;

/// Registers `/client/v1`, with CORS for browsers.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::scope("/client/v1")
            .wrap(cors::PublicCors)
            .route("/{key}/{context}", web::get().to(values)),
    );
}

/// A refused context, as `/client/v1` says it: `invalid_context` naming `context`.
fn invalid_context(error: ContextError) -> ApiError {
    let (ContextError::Parse(message) | ContextError::Invalid(message)) = error;
    ApiError::BadRequest {
        code: "invalid_context",
        message,
        path: Some("context".into()),
    }
}

/// `GET /client/v1/{client key}/{context}`.
async fn values(
    state: web::Data<Serving>,
    if_none_match: IfNoneMatch,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (secret, encoded) = path.into_inner();
    let caller = EvaluationKey::client_key_in_url(&state, &secret)?;
    let limits = &state.settings.serve.frontend;
    let context = context_from_url(&encoded, limits).map_err(invalid_context)?;
    let snapshots = state.snapshots.current();
    let snapshot = snapshots
        .get(caller.key.environment_id)
        .ok_or_else(|| ApiError::Unauthorized("the key's environment no longer exists".into()))?;
    let answers = answers::of(snapshot);
    let engine = &snapshot.engine;
    // {"flags": {key: value, …}, "revision": n}. Flags that cannot be evaluated for this
    // context (a rollout without a targetingKey) are left out: the SDK then answers its default,
    // as for an unknown flag.
    let mut body = Vec::with_capacity(64 + 48 * engine.len());
    body.extend_from_slice(b"{\"flags\":{");
    let mut evaluations = 0;
    let mut served = Vec::with_capacity(engine.len());
    engine.evaluate_each(
        &context,
        |f| caller.may_evaluate(f),
        |index, e| {
            evaluations += 1;
            if let (Some(variation), None) = (e.variation, e.error) {
                if !served.is_empty() {
                    body.push(b',');
                }
                body.extend_from_slice(answers.member(index, variation));
                served.push(answers.counter(index, variation));
            }
        },
    );
    body.extend_from_slice(b"},\"revision\":");
    write_u64(&mut body, snapshot.revision);
    body.push(b'}');
    let etag = evaluation::etag(snapshot.environment_id, &body);
    let cache_control = format!(
        "public, max-age={}, stale-while-revalidate={}, stale-if-error={}",
        limits.client_max_age,
        limits.client_max_age.max(60),
        limits.client_stale_if_error
    );
    if if_none_match.matches(&etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, cache_control))
            .finish());
    }
    record(&state, snapshot, evaluations, &served);
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .body(body))
}
