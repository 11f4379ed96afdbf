//! Browsers' cacheable read, the "belt" of DESIGN.md §1, and the browser SDK itself.
//!
//! `GET /client/v1/{client key}/{context}` answers the values of the client-side flags for a
//! context carried in the URL (base64url of its JSON): `{"flags": {"key": value, …}}`. Being a
//! plain GET without credentials in headers, it needs no CORS preflight, and any HTTP cache or
//! CDN may keep it (`Cache-Control: public, …, stale-if-error=…`) and serve it while Flagstaff
//! is down. Query parameters are ignored, so an SDK can add `?r=<revision>` after a change to
//! get past caches. Only a client key may be used here: a URL is no place for a server key.
//!
//! `GET /sdk/flagstaff.js` serves `sdk/js/flagstaff.js`, embedded in the binary.

use std::io::Write as _;
use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Bytes, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine as _;
use flagstaff_eval::{Context, Value};

use super::auth::EvaluationKey;
use super::cors;
use super::ofrep::{check_context, etag, json_type, not_modified, record};
use crate::config::FrontendArgs;
use crate::error::ApiError;
use crate::state::Serving;

/// Registers `/client/v1` and `/sdk/flagstaff.js`, with CORS for browsers.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::scope("/client/v1")
            .wrap(cors::PublicCors)
            .route("/{key}/{context}", web::get().to(values)),
    )
    .service(
        web::resource("/sdk/flagstaff.js")
            .wrap(cors::PublicCors)
            .route(web::get().to(sdk_js)),
    );
}

fn invalid_context(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_context",
        message: message.into(),
        path: Some("context".into()),
    }
}

/// Decodes the URL's context: base64url (padding optional) of a JSON object, within limits.
pub(crate) fn decode_context(encoded: &str, limits: &FrontendArgs) -> Result<Context, ApiError> {
    let limit = limits.max_context_bytes as usize;
    let encoded = encoded.trim_end_matches('=');
    if encoded.len() > limit.div_ceil(3) * 4 {
        return Err(invalid_context(format!(
            "the context is larger than {limit} bytes (the limit of --max-context-bytes)"
        )));
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|e| {
            invalid_context(format!(
                "the context must be base64url (RFC 4648 §5) of a JSON object: {e}"
            ))
        })?;
    if json.len() > limit {
        return Err(invalid_context(format!(
            "the context is {} bytes; the limit is {limit} (--max-context-bytes)",
            json.len()
        )));
    }
    let value: Value = serde_json::from_slice(&json)
        .map_err(|e| invalid_context(format!("the context is not valid JSON: {e}")))?;
    let Value::Object(context) = value else {
        return Err(invalid_context(format!(
            "the context must be a JSON object, not {}",
            json_type(&value)
        )));
    };
    check_context(&context, limits).map_err(invalid_context)?;
    Ok(context)
}

/// `GET /client/v1/{client key}/{context}`.
async fn values(
    state: web::Data<Serving>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (secret, encoded) = path.into_inner();
    let caller = EvaluationKey::client_key_in_url(&state, &secret)?;
    let limits = &state.settings.serve.frontend;
    let context = decode_context(&encoded, limits)?;
    let snapshots = state.snapshots.current();
    let snapshot = snapshots
        .get(caller.key.environment_id)
        .ok_or_else(|| ApiError::Unauthorized("the key's environment no longer exists".into()))?;
    let answers = snapshot.answers();
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
    body.extend_from_slice(snapshot.revision.to_string().as_bytes());
    body.push(b'}');
    let etag = etag(snapshot.environment_id, &body);
    let cache_control = format!(
        "public, max-age={}, stale-while-revalidate={}, stale-if-error={}",
        limits.client_max_age,
        limits.client_max_age.max(60),
        limits.client_stale_if_error
    );
    if not_modified(req.headers(), &etag) {
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

/// The browser SDK, as embedded at build time, with its gzip and ETag.
struct Asset {
    body: Bytes,
    gzip: Bytes,
    etag: String,
}

static SDK_JS: LazyLock<Asset> = LazyLock::new(|| {
    let body = include_str!("../../sdk/js/flagstaff.js").as_bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(body).expect("compressing into a Vec cannot fail");
    let gzip = gz.finish().expect("compressing into a Vec cannot fail");
    Asset {
        body: Bytes::from_static(body),
        gzip: Bytes::from(gzip),
        etag: etag(0, body),
    }
});

/// `GET /sdk/flagstaff.js`.
async fn sdk_js(req: HttpRequest) -> HttpResponse {
    let asset = &*SDK_JS;
    let mut res = if not_modified(req.headers(), &asset.etag) {
        HttpResponse::NotModified().finish()
    } else {
        let gzip = req
            .headers()
            .get_all(header::ACCEPT_ENCODING)
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|c| c.trim().split(';').next() == Some("gzip")));
        let mut res = HttpResponse::Ok();
        res.content_type("text/javascript; charset=utf-8");
        if gzip {
            res.insert_header((header::CONTENT_ENCODING, "gzip"))
                .body(asset.gzip.clone())
        } else {
            res.body(asset.body.clone())
        }
    };
    let headers = res.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&asset.etag).expect("a hex ETag is a valid header"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    res
}
