//! The OpenFeature Remote Evaluation Protocol (OFREP, `/shared/reference/ofrep-openapi.yaml`):
//! any OpenFeature OFREP provider evaluates flags on this server, unchanged.
//!
//! * `POST /ofrep/v1/evaluate/flags/{key}`: one flag.
//! * `POST /ofrep/v1/evaluate/flags`: every flag the key may see, with a strong `ETag` over the
//!   answer (it depends on the context), `304` on `If-None-Match`, and `eventStreams`
//!   (OFREP ADR-0008) naming `GET /ofrep/v1/stream`.
//! * `GET /ofrep/v1/stream` ([`stream`]): Server-Sent Events, one `refetchEvaluation` per change
//!   of the caller's environment, `id:` = the environment's revision, `Last-Event-ID` honoured.
//!
//! A server key evaluates every flag; a client key only client-side flags: for it any other
//! flag does not exist (`FLAG_NOT_FOUND`, and bulk leaves it out). Answers carry values,
//! variants, reasons and a little metadata — never rules, segments or their members. Contexts
//! are read and limited as for `/client/v1` ([`crate::http::evaluation`]) and never stored.
//!
//! The parts: [`error`] (the OFREP error body), [`answer`] (one flag's answer, by hand),
//! [`token`] (the signed stream tokens of server keys), [`stream`].

mod answer;
mod error;
mod stream;
mod token;

use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::web::{self, ServiceConfig};

use self::answer::write_item;
pub use self::error::OfrepError;
use self::token::{StreamToken, unix_now};
use super::auth::{EvaluationKey, SdkKey};
use super::conditional::IfNoneMatch;
use super::cors;
use super::evaluation::json::{write_str, write_str_content};
use super::evaluation::{self, answers, context_from_body, record};
use crate::config::FrontendArgs;
use crate::error::ApiError;
use crate::snapshot::{Current, Snapshot};
use crate::state::Serving;

/// Path of the change stream, as `eventStreams` names it.
pub const STREAM_PATH: &str = "/ofrep/v1/stream";

/// Registers `/ofrep/v1`, with CORS for browsers.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::scope("/ofrep/v1")
            .wrap(cors::PublicCors)
            .route("/evaluate/flags", web::post().to(bulk))
            .route("/evaluate/flags/{key}", web::post().to(single))
            .route("/stream", web::get().to(stream::stream)),
    );
}

/// The snapshot of the key's environment; 401 when the environment is gone.
fn snapshot_of<'s>(snapshots: &'s Current, key: &SdkKey) -> Result<&'s Arc<Snapshot>, OfrepError> {
    snapshots
        .get(key.environment_id)
        .ok_or_else(|| crate::http::auth::environment_gone().into())
}

/// `POST /ofrep/v1/evaluate/flags/{key}`.
async fn single(
    state: web::Data<Serving>,
    caller: Result<EvaluationKey, ApiError>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, OfrepError> {
    let caller = caller?;
    let flag_key = path.into_inner();
    let context = context_from_body(payload, &state.settings.serve.frontend)
        .await
        .map_err(|e| OfrepError::context(Some(&flag_key), e))?;
    let snapshots = state.snapshots.current();
    let snapshot = snapshot_of(&snapshots, &caller.key)?;
    let engine = &snapshot.engine;
    let Some(index) = engine
        .position(&flag_key)
        .filter(|_| engine.flag(&flag_key).is_some_and(|f| caller.may_evaluate(f)))
    else {
        return Err(OfrepError::flag_not_found(&flag_key));
    };
    let evaluation = engine.evaluate(&flag_key, &context);
    let answers = answers::of(snapshot);
    let served = match (evaluation.variation, evaluation.error) {
        (Some(variation), None) => Some(answers.counter(index, variation)),
        _ => None,
    };
    record(&state, snapshot, 1, served.as_slice());
    let may_see = |k: &str| engine.flag(k).is_some_and(|f| caller.may_evaluate(f));
    let mut body = Vec::with_capacity(256);
    let status = match write_item(&mut body, answers, index, &evaluation, may_see) {
        true => StatusCode::OK,
        false => StatusCode::BAD_REQUEST,
    };
    Ok(HttpResponse::build(status)
        .content_type("application/json")
        .body(body))
}

/// OFREP ADR-0008: where to listen for changes, `{"type":"sse","url":…}` with `--public-url`,
/// else `{"type":"sse","endpoint":{"requestUri":…}}` (relative to the origin the provider was
/// configured with). A client key may ride in the URL (it is public); a server key never does —
/// its caller gets a short-lived signed token instead.
fn write_event_stream(out: &mut Vec<u8>, caller: &EvaluationKey, limits: &FrontendArgs) {
    match &limits.public_url {
        Some(base) => {
            out.extend_from_slice(b"{\"type\":\"sse\",\"url\":\"");
            write_str_content(out, base);
        }
        None => out.extend_from_slice(b"{\"type\":\"sse\",\"endpoint\":{\"requestUri\":\""),
    }
    out.extend_from_slice(STREAM_PATH.as_bytes());
    match &caller.client_secret {
        Some(client_key) => {
            out.extend_from_slice(b"?key=");
            write_str_content(out, client_key);
        }
        None => {
            out.extend_from_slice(b"?token=");
            write_str_content(out, &StreamToken::issue(&caller.key, unix_now()));
        }
    }
    match limits.public_url {
        Some(_) => out.extend_from_slice(b"\"}"),
        None => out.extend_from_slice(b"\"}}"),
    }
}

/// `POST /ofrep/v1/evaluate/flags`.
async fn bulk(
    state: web::Data<Serving>,
    if_none_match: IfNoneMatch,
    caller: Result<EvaluationKey, ApiError>,
    payload: web::Payload,
) -> Result<HttpResponse, OfrepError> {
    // `flagConfigEtag` / `flagConfigLastModified` (ADR-0008) are accepted and need nothing:
    // every answer is evaluated on the current snapshot.
    let caller = caller?;
    let limits = &state.settings.serve.frontend;
    let context = context_from_body(payload, limits)
        .await
        .map_err(|e| OfrepError::context(None, e))?;
    let snapshots = state.snapshots.current();
    let snapshot = snapshot_of(&snapshots, &caller.key)?;
    let engine = &snapshot.engine;
    let answers = answers::of(snapshot);
    let may_see = |k: &str| engine.flag(k).is_some_and(|f| caller.may_evaluate(f));
    // {"flags": [...], "metadata": {"project", "environment"}, "eventStreams": [...]}
    let mut body = Vec::with_capacity(256 + 128 * engine.len());
    body.extend_from_slice(b"{\"flags\":[");
    let mut evaluations = 0;
    let mut served = Vec::with_capacity(engine.len());
    engine.evaluate_each(
        &context,
        |f| caller.may_evaluate(f),
        |index, evaluation| {
            if evaluations > 0 {
                body.push(b',');
            }
            evaluations += 1;
            if write_item(&mut body, answers, index, &evaluation, may_see) {
                served.extend(evaluation.variation.map(|v| answers.counter(index, v)));
            }
        },
    );
    body.extend_from_slice(b"],\"metadata\":{\"project\":");
    write_str(&mut body, &snapshot.project.key);
    body.extend_from_slice(b",\"environment\":");
    write_str(&mut body, &snapshot.environment);
    body.extend_from_slice(b"},\"eventStreams\":[");
    write_event_stream(&mut body, &caller, limits);
    body.extend_from_slice(b"]}");
    let etag = evaluation::etag(snapshot.environment_id, &body);
    if if_none_match.matches(&etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    record(&state, snapshot, evaluations, &served);
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "private, no-cache"))
        .body(body))
}
