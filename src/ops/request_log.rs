//! Request logs: one span per request carrying a request id (also sent back as `X-Request-Id`)
//! and, once answered, its status and `took_ms` (to the response head),
//! and one event when it is answered — `debug` for successes, `info` for refusals (4xx), `error`
//! for failures (5xx), all with the target `flagstaff::request`, so
//! `FLAGSTAFF_LOG=info,flagstaff::request=debug` turns on a full access log.
//!
//! Nothing secret reaches a log line: no header is logged, the query string never is (OFREP
//! stream URLs carry `?key=` / `?token=`), and path segments that hold a credential — route
//! parameters named like one, and anything with a Flagstaff key prefix — are replaced by
//! `REDACTED`. The client address follows the trusted proxies ([`super::proxy`]).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _, HttpRequest};
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::{RequestId, RootSpanBuilder};

use super::proxy;

/// The target of the per-request events.
pub const TARGET: &str = "flagstaff::request";

/// What replaces a credential in a logged path.
pub const REDACTED: &str = "REDACTED";

/// Route parameters whose values are credentials.
const SECRET_PARAMS: &[&str] = &["key", "token", "secret", "password", "session", "code"];

/// Prefixes of Flagstaff's secrets (`crate::keys`): a path segment holding one is redacted
/// wherever it appears.
const KEY_PREFIXES: &[&str] = &["fs_srv_", "fs_cli_", crate::keys::ADMIN_TOKEN_PREFIX];

/// The root span of every request (for `tracing_actix_web::TracingLogger`).
pub struct RequestSpan;

struct Started(Instant);

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(req: &ServiceRequest) -> Span {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        req.extensions_mut().insert(Started(Instant::now()));
        let client_ip = proxy::client_ip_of(req)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
        tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %req.method(),
            route = %route,
            path = Empty,
            client_ip = %client_ip,
            status = Empty,
            took_ms = Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, error) = match outcome {
            Ok(res) => {
                span.record("path", safe_path(res.request()).as_str());
                if let Some(started) = res.request().extensions().get::<Started>() {
                    span.record("took_ms", started.0.elapsed().as_secs_f64() * 1000.0);
                }
                (res.status(), res.response().error().map(|e| e.to_string()))
            }
            Err(e) => (e.as_response_error().status_code(), Some(e.to_string())),
        };
        let code = status.as_u16();
        span.record("status", code);
        let error = error.as_deref().unwrap_or("");
        if status.is_server_error() {
            tracing::error!(target: TARGET, parent: &span, status = code, error, "request failed");
        } else if status.is_client_error() {
            tracing::info!(target: TARGET, parent: &span, status = code, error, "request refused");
        } else {
            tracing::debug!(target: TARGET, parent: &span, status = code, "request answered");
        }
    }
}

/// The request's path without its query, credentials replaced by [`REDACTED`].
pub fn safe_path(req: &HttpRequest) -> String {
    let secrets: Vec<&str> = req
        .match_info()
        .iter()
        .filter(|(name, _)| SECRET_PARAMS.iter().any(|s| name.eq_ignore_ascii_case(s)))
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
        .collect();
    redact_path(req.path(), &secrets)
}

/// Replaces each segment of `path` that is one of `secrets` (raw or percent-decoded) or carries a
/// Flagstaff key prefix.
pub fn redact_path(path: &str, secrets: &[&str]) -> String {
    path.split('/')
        .map(|segment| {
            let decoded = percent_decode(segment);
            let is_secret = secrets.iter().any(|s| *s == segment || *s == decoded)
                || KEY_PREFIXES.iter().any(|p| decoded.contains(p));
            if is_secret { REDACTED } else { segment }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Middleware: sends the request id back as `X-Request-Id`, so a user can quote it and an
/// operator can find the log lines.
pub async fn request_id_header(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req.extensions().get::<RequestId>().map(ToString::to_string);
    let mut res = next.call(req).await?;
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_paths_are_redacted() {
        assert_eq!(
            redact_path(
                "/client/v1/fs_cli_abc123/eyJ0YXJnZXRpbmdLZXkiOiJ1In0",
                &["fs_cli_abc123"]
            ),
            "/client/v1/REDACTED/eyJ0YXJnZXRpbmdLZXkiOiJ1In0"
        );
        assert_eq!(
            redact_path("/x/fs_srv_zzz/y", &[]),
            "/x/REDACTED/y",
            "a key prefix is enough"
        );
        assert_eq!(
            redact_path("/x/fs%5Fadm%5Fzzz", &[]),
            "/x/REDACTED",
            "percent-encoded too"
        );
        assert_eq!(
            redact_path("/api/v1/projects/shop", &["sekrit"]),
            "/api/v1/projects/shop"
        );
        assert_eq!(redact_path("/", &[]), "/");
    }
}
