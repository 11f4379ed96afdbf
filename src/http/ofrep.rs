//! The OpenFeature Remote Evaluation Protocol (OFREP, `/shared/reference/ofrep-openapi.yaml`):
//! any OpenFeature OFREP provider evaluates flags on this server, unchanged.
//!
//! * `POST /ofrep/v1/evaluate/flags/{key}`: one flag.
//! * `POST /ofrep/v1/evaluate/flags`: every flag the key may see, with a strong `ETag` over the
//!   answer (it depends on the context), `304` on `If-None-Match`, and `eventStreams`
//!   (OFREP ADR-0008) naming `GET /ofrep/v1/stream`.
//! * `GET /ofrep/v1/stream`: Server-Sent Events, one `refetchEvaluation` per change of the
//!   caller's environment, `id:` = the environment's revision, `Last-Event-ID` honoured.
//!
//! A server key evaluates every flag; a client key only client-side flags: for it any other
//! flag does not exist (`FLAG_NOT_FOUND`, and bulk leaves it out). Answers carry values,
//! variants, reasons and a little metadata — never rules, segments or their members. Contexts
//! are evaluated in memory and never stored.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse, Responder, ResponseError};
use actix_web_lab::sse;
use async_broadcast::{Receiver, RecvError};
use flagstaff_eval::{Context, EvalError, Evaluation, Reason, Value};
use futures_util::StreamExt as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::auth::{EvaluationKey, SdkKey};
use super::cors;
use crate::answers::{Answers, write_str, write_str_content};
use crate::config::FrontendArgs;
use crate::error::ApiError;
use crate::hub::Change;
use crate::snapshot::{Current, Snapshot};
use crate::state::Serving;
use crate::store::api_keys::KeyKind;

/// Path of the change stream, as `eventStreams` names it.
pub const STREAM_PATH: &str = "/ofrep/v1/stream";

/// Registers `/ofrep/v1`, with CORS for browsers.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::scope("/ofrep/v1")
            .wrap(cors::PublicCors)
            .route("/evaluate/flags", web::post().to(bulk))
            .route("/evaluate/flags/{key}", web::post().to(single))
            .route("/stream", web::get().to(stream)),
    );
}

// ---------------------------------------------------------------------------------------------
// Errors on the OFREP wire: `{"key"?, "errorCode"?, "errorDetails"}`.

/// An OFREP error answer. Evaluation errors carry an OpenFeature `errorCode`; authentication
/// errors (401, 403) carry only `errorDetails`.
#[derive(Debug, thiserror::Error)]
#[error("{details}")]
pub struct OfrepError {
    status: StatusCode,
    key: Option<String>,
    code: Option<&'static str>,
    details: String,
}

impl OfrepError {
    fn new(status: StatusCode, key: Option<&str>, code: &'static str, details: impl Into<String>) -> Self {
        OfrepError {
            status,
            key: key.map(str::to_owned),
            code: Some(code),
            details: details.into(),
        }
    }

    /// 400 `PARSE_ERROR`: the body is not JSON.
    pub fn parse(key: Option<&str>, details: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, key, "PARSE_ERROR", details)
    }

    /// 400 `INVALID_CONTEXT`.
    pub fn invalid_context(key: Option<&str>, details: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, key, "INVALID_CONTEXT", details)
    }

    /// 404 `FLAG_NOT_FOUND`.
    pub fn flag_not_found(key: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Some(key),
            "FLAG_NOT_FOUND",
            format!("flag {key:?} was not found"),
        )
    }
}

impl From<ApiError> for OfrepError {
    fn from(e: ApiError) -> Self {
        if let ApiError::Internal(cause) = &e {
            tracing::error!(error = %cause, "OFREP request failed");
        }
        OfrepError {
            status: e.status_code(),
            key: None,
            code: None,
            details: e.to_string(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(rename = "errorCode", skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(rename = "errorDetails")]
    details: &'a str,
}

impl ResponseError for OfrepError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(ErrorBody {
            key: self.key.as_deref(),
            code: self.code,
            details: &self.details,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Contexts: parsed once at the edge, limited in size and depth, never stored.

/// Checks a context against the limits and OFREP's one rule (`targetingKey` is a string).
/// The message names the problem and the setting that sets the limit.
pub(crate) fn check_context(context: &Context, limits: &FrontendArgs) -> Result<(), String> {
    let max = limits.max_context_depth as usize;
    if let Some(path) = too_deep(context, 1, max) {
        return Err(format!(
            "the context nests deeper than {max} levels at {path} (the limit of --max-context-depth)"
        ));
    }
    match context.get("targetingKey") {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(other) => Err(format!(
            "context.targetingKey must be a string, not {}",
            json_type(other)
        )),
    }
}

/// The path of the first value deeper than `max` (the object at `depth`), if any. Nothing is
/// allocated unless one is found: every evaluation request passes through here.
fn too_deep(object: &Context, depth: usize, max: usize) -> Option<String> {
    /// The steps from `value` down to the first container deeper than `max`, innermost first.
    fn walk(value: &Value, depth: usize, max: usize) -> Option<Vec<String>> {
        let found = match value {
            Value::Object(_) | Value::Array(_) if depth > max => return Some(Vec::new()),
            Value::Object(map) => map
                .iter()
                .find_map(|(k, v)| Some((format!(".{k}"), walk(v, depth + 1, max)?))),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| Some((format!("[{i}]"), walk(v, depth + 1, max)?))),
            _ => None,
        };
        found.map(|(step, mut steps)| {
            steps.push(step);
            steps
        })
    }
    if depth > max {
        return Some("context".to_owned());
    }
    object.iter().find_map(|(key, value)| {
        let steps = walk(value, depth + 1, max)?;
        let mut path = format!("context.{key}");
        for step in steps.iter().rev() {
            path.push_str(step);
        }
        Some(path)
    })
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads an evaluation request's body (at most `--max-context-bytes`), `{"context": {…}}`,
/// into its context. `context` may be left out: the Python provider sends `{}` for an empty one.
async fn read_context(
    payload: web::Payload,
    limits: &FrontendArgs,
    flag: Option<&str>,
) -> Result<Context, OfrepError> {
    let limit = limits.max_context_bytes as usize;
    let body = match payload.to_bytes_limited(limit).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return Err(OfrepError::parse(
                flag,
                format!("the request body could not be read: {e}"),
            ));
        }
        Err(_) => {
            return Err(OfrepError::invalid_context(
                flag,
                format!("the request body is larger than {limit} bytes (the limit of --max-context-bytes)"),
            ));
        }
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    // The usual body straight into its one field; anything else is parsed again below to say
    // what is wrong with it.
    #[derive(Deserialize)]
    struct Request {
        context: Option<Value>,
    }
    let context = match serde_json::from_slice::<Request>(&body) {
        Ok(request) => request.context,
        Err(_) => {
            let request: Value = serde_json::from_slice(&body)
                .map_err(|e| OfrepError::parse(flag, format!("the body is not valid JSON: {e}")))?;
            let Value::Object(mut request) = request else {
                return Err(OfrepError::invalid_context(
                    flag,
                    format!(
                        "the body must be an object {{\"context\": {{…}}}}, not {}",
                        json_type(&request)
                    ),
                ));
            };
            request.remove("context")
        }
    };
    let context = match context {
        None | Some(Value::Null) => Context::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(OfrepError::invalid_context(
                flag,
                format!("context must be a JSON object, not {}", json_type(&other)),
            ));
        }
    };
    check_context(&context, limits).map_err(|details| OfrepError::invalid_context(flag, details))?;
    Ok(context)
}

// ---------------------------------------------------------------------------------------------
// Evaluations on the wire.

/// The OFREP reason of an engine reason: the list is closed, so `PREREQUISITE_FAILED` is
/// `DISABLED` (with metadata saying why).
fn wire_reason(reason: Reason) -> &'static str {
    match reason {
        Reason::PrerequisiteFailed => "DISABLED",
        other => other.as_str(),
    }
}

/// Writes a number without an allocation.
fn write_u64(out: &mut Vec<u8>, n: u64) {
    use std::io::Write as _;
    write!(out, "{n}").expect("writing to a Vec cannot fail");
}

/// Writes one flag's answer: `{key, value, variant, metadata, reason}` on success,
/// `{key, errorCode, errorDetails, metadata}` on failure. Metadata holds primitives only (the
/// providers drop anything else): the state's `version`, the `ruleId` that served the value,
/// and for a failed prerequisite `prerequisiteFailed` and — when the caller may know of that
/// flag — its key as `prerequisite`. `index` is the flag's position in the engine. Returns
/// whether it was a success.
///
/// A success starts with the snapshot's pre-written piece of the flag and variation
/// ([`crate::answers`]): the bulk answer is 50 of these, so this is most of its cost.
fn write_item(
    out: &mut Vec<u8>,
    answers: &Answers,
    index: usize,
    evaluation: &Evaluation<'_>,
    may_see: impl Fn(&str) -> bool,
) -> bool {
    let (Some(variation), None) = (evaluation.variation, evaluation.error) else {
        write_error_item(out, evaluation, may_see);
        return false;
    };
    out.extend_from_slice(answers.ofrep_head(index, variation));
    write_metadata_rest(out, evaluation, may_see);
    out.extend_from_slice(b"},\"reason\":\"");
    // One arm per reason, so that each copy is of a known length.
    match wire_reason(evaluation.reason) {
        "STATIC" => out.extend_from_slice(b"STATIC"),
        "DEFAULT" => out.extend_from_slice(b"DEFAULT"),
        "TARGETING_MATCH" => out.extend_from_slice(b"TARGETING_MATCH"),
        "SPLIT" => out.extend_from_slice(b"SPLIT"),
        "DISABLED" => out.extend_from_slice(b"DISABLED"),
        other => out.extend_from_slice(other.as_bytes()),
    }
    out.extend_from_slice(b"\"}");
    true
}

/// `{key, errorCode, errorDetails, metadata}`.
fn write_error_item(out: &mut Vec<u8>, evaluation: &Evaluation<'_>, may_see: impl Fn(&str) -> bool) {
    let error = evaluation.error.unwrap_or(EvalError::FlagNotFound);
    let details = match error {
        EvalError::TargetingKeyMissing => format!(
            "flag {:?} serves a percentage rollout, which needs the context's targetingKey \
             (or the rollout's bucket_by attribute)",
            evaluation.key
        ),
        EvalError::FlagNotFound => format!("flag {:?} was not found", evaluation.key),
    };
    out.extend_from_slice(b"{\"key\":");
    write_str(out, evaluation.key);
    out.extend_from_slice(b",\"errorCode\":\"");
    out.extend_from_slice(error.code().as_bytes());
    out.extend_from_slice(b"\",\"errorDetails\":");
    write_str(out, &details);
    out.extend_from_slice(b",\"metadata\":{\"version\":");
    write_u64(out, evaluation.version);
    write_metadata_rest(out, evaluation, may_see);
    out.extend_from_slice(b"}}");
}

/// The metadata after its version: `ruleId`, and for a failed prerequisite
/// `prerequisiteFailed` and `prerequisite`. The caller closes the object.
fn write_metadata_rest(out: &mut Vec<u8>, evaluation: &Evaluation<'_>, may_see: impl Fn(&str) -> bool) {
    if let Some(rule_id) = evaluation.rule_id {
        out.extend_from_slice(b",\"ruleId\":");
        write_str(out, rule_id);
    }
    if evaluation.reason == Reason::PrerequisiteFailed {
        out.extend_from_slice(b",\"prerequisiteFailed\":true");
        if let Some(prerequisite) = evaluation.prerequisite.filter(|p| may_see(p)) {
            out.extend_from_slice(b",\"prerequisite\":");
            write_str(out, prerequisite);
        }
    }
}

fn snapshot_of<'s>(snapshots: &'s Current, key: &SdkKey) -> Result<&'s Arc<Snapshot>, OfrepError> {
    snapshots
        .get(key.environment_id)
        .ok_or_else(|| crate::http::auth::environment_gone().into())
}

/// Counts what was served, for the evaluation insights and the metrics: `evaluations` made on
/// `snapshot`, of which those that served a value are `served`, by counter slot
/// ([`crate::answers::Answers::counter`]).
pub(crate) fn record(state: &Serving, snapshot: &Arc<Snapshot>, evaluations: usize, served: &[usize]) {
    crate::metrics::record_evaluations(crate::metrics::Source::Server, evaluations as u64);
    tally::add(state, snapshot, served);
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
    let context = read_context(payload, &state.settings.serve.frontend, Some(&flag_key)).await?;
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
    let answers = snapshot.answers();
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

/// A strong ETag over an answer's bytes and its environment (XXH3-128: answers are hashed on
/// every request, so the hash must cost next to nothing; it need not resist forgery, since the
/// one who could forge it is the one it is served to).
pub(crate) fn etag(environment_id: i64, body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = xxhash_rust::xxh3::xxh3_128_with_seed(body, environment_id as u64);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for i in (0..32).rev() {
        tag.push(char::from(HEX[((hash >> (4 * i)) & 0xf) as usize]));
    }
    tag.push('"');
    tag
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 wants for this header).
pub(crate) fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let wanted = strip(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || strip(tag) == wanted)
}

/// `POST /ofrep/v1/evaluate/flags`.
async fn bulk(
    state: web::Data<Serving>,
    req: HttpRequest,
    caller: Result<EvaluationKey, ApiError>,
    payload: web::Payload,
) -> Result<HttpResponse, OfrepError> {
    // `flagConfigEtag` / `flagConfigLastModified` (ADR-0008) are accepted and need nothing:
    // every answer is evaluated on the current snapshot.
    let caller = caller?;
    let limits = &state.settings.serve.frontend;
    let context = read_context(payload, limits, None).await?;
    let snapshots = state.snapshots.current();
    let snapshot = snapshot_of(&snapshots, &caller.key)?;
    let engine = &snapshot.engine;
    let answers = snapshot.answers();
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
    let etag = etag(snapshot.environment_id, &body);
    if not_modified(req.headers(), &etag) {
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

// ---------------------------------------------------------------------------------------------
// Stream tokens: a server key's caller gets, instead of its key, a token naming the key,
// signed with a per-process secret. It is valid until the end of the next hour, and the same
// within an hour, so the bulk answer (and its ETag) stays the same for an hour at a time.

static TOKEN_SECRET: LazyLock<[u8; 32]> = LazyLock::new(|| {
    use rand::RngCore as _;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    secret
});

/// Validity of a stream token: until the end of the hour after the one it was issued in.
const TOKEN_HOURS: u64 = 2;

struct StreamToken;

impl StreamToken {
    fn mac(message: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&*TOKEN_SECRET).expect("HMAC takes a key of any length");
        mac.update(message.as_bytes());
        mac
    }

    /// `v1.<environment>.<key id>.<expiry, Unix seconds>.<MAC>`.
    fn issue(key: &SdkKey, now: u64) -> String {
        let expires = (now / 3600 + TOKEN_HOURS) * 3600;
        let message = format!("v1.{}.{}.{expires}", key.environment_id, key.id);
        let tag = Self::mac(&message).finalize().into_bytes();
        format!("{message}.{}", hex::encode(&tag[..16]))
    }

    /// The environment and key a token names, if it is genuine and not expired.
    fn verify(token: &str, now: u64) -> Option<(i64, i64)> {
        let (message, tag) = token.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        Self::mac(message)
            .verify_truncated_left(&tag)
            .ok()
            .filter(|_| tag.len() == 16)?;
        let mut parts = message.split('.');
        let (Some("v1"), Some(env), Some(key), Some(expires), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expires: u64 = expires.parse().ok()?;
        (now < expires).then_some((env.parse().ok()?, key.parse().ok()?))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The change stream.

#[derive(Deserialize)]
struct StreamQuery {
    key: Option<String>,
    token: Option<String>,
}

/// Who may follow an environment's changes: a client key in the URL, a token, or any SDK key
/// in the headers (for non-browser clients).
fn stream_caller(
    state: &Serving,
    query: &StreamQuery,
    header_key: Result<EvaluationKey, ApiError>,
) -> Result<SdkKey, ApiError> {
    if let Some(secret) = &query.key {
        return EvaluationKey::client_key_in_url(state, secret).map(|k| k.key);
    }
    if let Some(token) = &query.token {
        let invalid =
            || ApiError::Unauthorized("the stream token is invalid or expired: evaluate again".into());
        let (environment_id, id) = StreamToken::verify(token, unix_now()).ok_or_else(invalid)?;
        if !state.keys.is_active(id) {
            return Err(invalid());
        }
        state.events.touch_key(id);
        return Ok(SdkKey {
            id,
            environment_id,
            kind: KeyKind::Server,
        });
    }
    header_key.map(|k| k.key)
}

fn refetch_event(revision: u64, etag: &str) -> sse::Event {
    let data = serde_json::json!({"type": "refetchEvaluation", "etag": etag.trim_matches('"')});
    sse::Data::new(data.to_string()).id(revision.to_string()).into()
}

/// What one open stream follows.
struct Follow {
    changes: Receiver<Arc<Change>>,
    state: web::Data<Serving>,
    environment_id: i64,
    key_id: i64,
    /// The last revision sent; nothing older or equal is sent again.
    sent: u64,
    /// How often to check that the key is still active while nothing changes.
    check_every: Duration,
}

impl Follow {
    /// The next event for this stream, or `None` when it ends (shutdown, key revoked,
    /// environment gone).
    async fn next(mut self) -> Option<(Result<sse::Event, std::convert::Infallible>, Follow)> {
        loop {
            let Ok(received) = tokio::time::timeout(self.check_every, self.changes.recv()).await else {
                // Quiet for a while: a revoked key's stream still ends within one interval.
                if !self.state.keys.is_active(self.key_id) {
                    return None;
                }
                continue;
            };
            let (revision, etag) = match received {
                Ok(change) if change.environment_id == self.environment_id => {
                    (change.revision, change.etag.clone())
                }
                Ok(_) => continue,
                // Fell behind: whatever was missed, the latest revision says it all.
                Err(RecvError::Overflowed(_)) => {
                    let snapshot = self.state.snapshots.get(self.environment_id)?;
                    (snapshot.revision, snapshot.etag.clone())
                }
                Err(RecvError::Closed) => return None,
            };
            if !self.state.keys.is_active(self.key_id) {
                return None;
            }
            if revision > self.sent {
                self.sent = revision;
                return Some((Ok(refetch_event(revision, &etag)), self));
            }
        }
    }
}

/// `GET /ofrep/v1/stream?key=<client key>` (or `?token=…`, or a key in the headers).
async fn stream(
    state: web::Data<Serving>,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
    header_key: Result<EvaluationKey, ApiError>,
) -> Result<HttpResponse, OfrepError> {
    let key = stream_caller(&state, &query, header_key)?;
    // Subscribe before reading the current revision, so that no change falls in between.
    let changes = state.hub.subscribe();
    let snapshot = Arc::clone(snapshot_of(&state.snapshots.current(), &key)?);
    let last_seen = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // A new subscriber may have missed a change since its last evaluation, and one resuming
    // after a gap has missed whatever happened meanwhile: unless it says it has seen exactly
    // the current revision, tell it to evaluate again now.
    let first =
        (last_seen != Some(snapshot.revision)).then(|| Ok(refetch_event(snapshot.revision, &snapshot.etag)));
    let keep_alive = Duration::from_secs(state.settings.serve.stream_keepalive_secs);
    let follow = Follow {
        changes,
        state: state.clone(),
        environment_id: key.environment_id,
        key_id: key.id,
        sent: snapshot.revision,
        check_every: keep_alive,
    };
    let events = futures_util::stream::iter(first).chain(futures_util::stream::unfold(follow, Follow::next));
    let mut res = sse::Sse::from_stream(events)
        .with_keep_alive(keep_alive)
        .with_retry_duration(Duration::from_secs(2))
        .respond_to(&req);
    res.headers_mut().insert(
        header::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// Counting what was served. `Events::record` takes a lock and allocates per flag, which would
// be most of a bulk evaluation's cost; so each worker thread adds its counts to a tally of its
// own — an array per snapshot, one slot per flag variation ([`crate::answers`]), so counting is
// an increment — and hands the tally to `Events` once a second, by flag and variant key. At
// shutdown, at most that last second of counts is lost.

mod tally {
    use std::cell::RefCell;
    use std::sync::{Arc, Weak};
    use std::time::Duration;

    use crate::events::{Count, Events};
    use crate::snapshot::Snapshot;
    use crate::state::Serving;

    /// How often a worker hands its counts to `Events`.
    const EVERY: Duration = Duration::from_secs(1);

    /// One application's counts on this thread (tests run several applications in a process).
    struct Tally {
        events: Weak<Events>,
        /// The snapshots served since the last hand-over (usually one per environment, more
        /// after changes), each with its counter slots.
        counts: Vec<(Arc<Snapshot>, Vec<u64>)>,
    }

    thread_local! {
        static TALLIES: RefCell<Vec<Tally>> = const { RefCell::new(Vec::new()) };
    }

    /// Counts one each in the counter slots `served` of `snapshot`.
    pub fn add(state: &Serving, snapshot: &Arc<Snapshot>, served: &[usize]) {
        let started = TALLIES.with_borrow_mut(|tallies| {
            let found = tallies
                .iter()
                .position(|t| std::ptr::eq(t.events.as_ptr(), Arc::as_ptr(&state.events)));
            let (index, started) = match found {
                Some(index) => (index, false),
                None => {
                    let events = Arc::downgrade(&state.events);
                    tallies.push(Tally {
                        events,
                        counts: Vec::new(),
                    });
                    (tallies.len() - 1, true)
                }
            };
            let tally = &mut tallies[index];
            let answers = snapshot.answers();
            // The latest snapshot is the likeliest: look from the end.
            let slots = match tally.counts.iter().rposition(|(s, _)| Arc::ptr_eq(s, snapshot)) {
                Some(i) => &mut tally.counts[i].1,
                None => {
                    tally
                        .counts
                        .push((Arc::clone(snapshot), vec![0; answers.counters()]));
                    &mut tally.counts.last_mut().expect("pushed just above").1
                }
            };
            for &slot in served {
                slots[slot] += 1;
            }
            started
        });
        if started {
            let events = Arc::downgrade(&state.events);
            actix_web::rt::spawn(async move {
                let mut tick = actix_web::rt::time::interval(EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if !flush(&events) {
                        break;
                    }
                }
            });
        }
    }

    /// Hands this thread's counts for `events` over; false once that application is gone.
    fn flush(events: &Weak<Events>) -> bool {
        let Some(target) = events.upgrade() else {
            TALLIES.with_borrow_mut(|tallies| tallies.retain(|t| t.events.strong_count() > 0));
            return false;
        };
        let taken = TALLIES.with_borrow_mut(|tallies| {
            let tally = tallies.iter_mut().find(|t| t.events.ptr_eq(events))?;
            Some(std::mem::take(&mut tally.counts))
        });
        let Some(counts) = taken else { return true };
        // Counted within the last second: they are dated when handed over (reading the clock on
        // every request would cost more than the counting).
        let at = crate::store::now_ms();
        for (snapshot, slots) in &counts {
            let answers = snapshot.answers();
            let counts = snapshot.engine.flags().enumerate().flat_map(|(i, flag)| {
                let first = answers.counter(i, 0);
                flag.variations()
                    .zip(&slots[first..])
                    .filter(|(_, count)| **count > 0)
                    .map(move |((variant, _), count)| Count {
                        flag: flag.key(),
                        variant,
                        count: *count,
                    })
            });
            target.record(snapshot.environment_id, at, counts);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> FrontendArgs {
        FrontendArgs {
            max_context_depth: 3,
            ..FrontendArgs::default()
        }
    }

    fn ctx(v: Value) -> Context {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn depth_is_counted_from_the_context_object() {
        let ok = ctx(serde_json::json!({"a": {"b": {"c": 1}}, "list": [[1]]}));
        assert_eq!(check_context(&ok, &limits()), Ok(()));
        let deep = ctx(serde_json::json!({"a": {"b": {"c": {"d": 1}}}}));
        let err = check_context(&deep, &limits()).unwrap_err();
        assert!(
            err.contains("context.a.b.c") && err.contains("--max-context-depth"),
            "{err}"
        );
        let deep_list = ctx(serde_json::json!({"x": [[[1]]]}));
        assert!(
            check_context(&deep_list, &limits())
                .unwrap_err()
                .contains("context.x[0][0]")
        );
        // The path is exact, and names the first container too deep.
        let limit = limits().max_context_depth as usize;
        let deep = ctx(serde_json::json!({"ok": 1, "a": {"b": {"c": {"d": 1}}}, "z": [[{"y": {}}]]}));
        assert_eq!(too_deep(&deep, 1, limit).as_deref(), Some("context.a.b.c"));
        let mixed = ctx(serde_json::json!({"z": [1, [2, {"y": {"w": 0}}]]}));
        assert_eq!(too_deep(&mixed, 1, limit).as_deref(), Some("context.z[1][1]"));
        assert_eq!(too_deep(&mixed, 1, 0).as_deref(), Some("context"));
        assert_eq!(too_deep(&mixed, 1, 1).as_deref(), Some("context.z"));
    }

    #[test]
    fn targeting_key_must_be_a_string() {
        assert!(check_context(&ctx(serde_json::json!({"targetingKey": "u"})), &limits()).is_ok());
        assert!(check_context(&ctx(serde_json::json!({"targetingKey": null})), &limits()).is_ok());
        let err = check_context(&ctx(serde_json::json!({"targetingKey": 7})), &limits()).unwrap_err();
        assert!(err.contains("targetingKey") && err.contains("a number"), "{err}");
    }

    #[test]
    fn stream_tokens_verify_until_they_expire_and_not_when_altered() {
        let key = SdkKey {
            id: 7,
            environment_id: 3,
            kind: KeyKind::Server,
        };
        let now = 1_700_000_000;
        let token = StreamToken::issue(&key, now);
        assert_eq!(
            StreamToken::issue(&key, now + 60),
            token,
            "stable within the hour"
        );
        assert_eq!(StreamToken::verify(&token, now), Some((3, 7)));
        assert_eq!(StreamToken::verify(&token, now + 3600), Some((3, 7)));
        assert_eq!(StreamToken::verify(&token, now + 2 * 3600 + 1), None);
        let forged = token.replacen("v1.3.7", "v1.4.7", 1);
        assert_eq!(StreamToken::verify(&forged, now), None);
        assert!(!token.contains("fs_srv_"));
    }

    #[test]
    fn etags_are_the_quoted_hash_in_32_hex_digits() {
        for (environment, body) in [(1, &b""[..]), (7, b"{\"flags\":[]}"), (-3, &[0xff; 300][..])] {
            let hash = xxhash_rust::xxh3::xxh3_128_with_seed(body, environment as u64);
            assert_eq!(etag(environment, body), format!("\"{hash:032x}\""));
        }
        assert_ne!(etag(1, b"a"), etag(2, b"a"), "the environment is part of it");
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(not_modified(&headers, "\"abc\""));
        assert!(!not_modified(&headers, "\"abd\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&headers, "\"anything\""));
    }
}
