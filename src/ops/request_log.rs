//! Request logs: one span per request carrying a request id (also sent back as `X-Request-Id`)
//! and — recorded only when the answer is logged — its method, route, redacted path, client
//! address, status and `took_ms` (to the response head), and one event when it is answered — `debug` for successes, `info` for refusals (4xx), `error`
//! for failures (5xx), all with the target `flagstaff::request`, so
//! `FLAGSTAFF_LOG=info,flagstaff::request=debug` turns on a full access log.
//!
//! Nothing secret reaches a log line: no header is logged, the query string never is (OFREP
//! stream URLs carry `?key=` / `?token=`), and path segments that hold a credential — route
//! parameters named like one, and anything with a Flagstaff key prefix — are replaced by
//! `REDACTED`. The client address follows the trusted proxies ([`super::proxy`]).

use std::cell::RefCell;
use std::fmt;
use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{Error, HttpRequest};
use futures_util::future::LocalBoxFuture;
use rustc_hash::FxHashMap;
use tracing::field::Empty;
use tracing::{Instrument as _, Level, Span};

use super::proxy;
use crate::metrics::{self, RouteMetrics};

/// The target of the per-request events.
pub const TARGET: &str = "flagstaff::request";

/// What replaces a credential in a logged path.
pub const REDACTED: &str = "REDACTED";

/// Route parameters whose values are never logged: credentials, and the end-user context of
/// `GET /client/v1/{key}/{context}` (contexts are personal data and are never stored).
const SECRET_PARAMS: &[&str] = &["key", "token", "secret", "password", "session", "code", "context"];

/// Prefixes of Flagstaff's secrets (`crate::keys`): a path segment holding one is redacted
/// wherever it appears.
const KEY_PREFIXES: &[&str] = &["fs_srv_", "fs_cli_", crate::keys::ADMIN_TOKEN_PREFIX];

/// A request id: 128 bits shown like a UUID (36 characters), made of a random prefix drawn once
/// per process and a per-process counter (handed to threads in blocks, scrambled by a bijection, so ids stay unique but do
/// not tell how many requests the server has seen). No system call per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    prefix: u64,
    n: u64,
}

struct IdSource {
    prefix: u64,
    key: u64,
    /// The next block of counters to hand to a thread.
    blocks: AtomicU64,
}

/// Counters a thread takes at a time: the shared counter is touched once per block, not once
/// per request (two workers incrementing one cache line pay for it on every request).
const ID_BLOCK: u64 = 1 << 16;

thread_local! {
    /// This thread's next counter and the end of its block.
    static ID_RANGE: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

static IDS: LazyLock<IdSource> = LazyLock::new(|| IdSource {
    prefix: rand::random(),
    key: rand::random(),
    blocks: AtomicU64::new(0),
});

impl RequestId {
    /// The next id of this process.
    pub fn next() -> RequestId {
        let ids = &*IDS;
        let n = ID_RANGE.with(|range| {
            let (mut next, mut end) = range.get();
            if next == end {
                next = ids.blocks.fetch_add(ID_BLOCK, Ordering::Relaxed);
                end = next + ID_BLOCK;
            }
            range.set((next + 1, end));
            next
        });
        RequestId {
            prefix: ids.prefix,
            n: scramble(n.wrapping_add(ids.key)),
        }
    }

    fn header_value(self) -> HeaderValue {
        let mut buf = [0u8; 36];
        self.write_to(&mut buf);
        HeaderValue::from_bytes(&buf).expect("hex digits and dashes are a valid header value")
    }

    /// The 36 characters, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase hex.
    fn write_to(self, buf: &mut [u8; 36]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let value = (u128::from(self.prefix) << 64) | u128::from(self.n);
        let mut digit = 0;
        for (i, byte) in buf.iter_mut().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                *byte = b'-';
            } else {
                *byte = HEX[((value >> (124 - 4 * digit)) & 0xf) as usize];
                digit += 1;
            }
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 36];
        self.write_to(&mut buf);
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

/// SplitMix64's finalizer: a bijection on `u64`, so distinct counters give distinct ids.
fn scramble(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The middleware around every route, in one layer (one boxed future per request): gives the
/// request an id (sent back as `X-Request-Id`), runs it inside a `request` span that carries the
/// id, logs its answer, and counts and times it in [`metrics`] by route pattern, method and
/// status.
///
/// The span is created with only the id formatted; the other fields (`method`, `route`, `path`,
/// `client_ip`, `status`, `took_ms`) are recorded when the answer is logged — always for
/// failures and refusals at the default level, for every request with
/// `flagstaff::request=debug` — so an answer that is not logged costs no formatting.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLog;

impl<S, B> Transform<S, ServiceRequest> for RequestLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestLogService<S>;
    type InitError = ();
    type Future = Ready<Result<RequestLogService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestLogService {
            service: Rc::new(service),
            routes: Rc::default(),
        }))
    }
}

/// [`RequestLog`] over one worker's application.
pub struct RequestLogService<S> {
    service: Rc<S>,
    /// The metrics of each static route (pattern = path) seen by this worker, by path: the hot
    /// routes skip `match_pattern` (a walk of the route table and a `String`). Paths with
    /// parameters are not kept, so what clients send cannot grow it.
    routes: Rc<RefCell<FxHashMap<Box<str>, &'static RouteMetrics>>>,
}

impl<S> RequestLogService<S> {
    fn route_of(&self, req: &ServiceRequest) -> &'static RouteMetrics {
        if let Some(route) = self.routes.borrow().get(req.path()) {
            return route;
        }
        let pattern = req.match_pattern();
        let route = metrics::metrics().route(pattern.as_deref());
        if pattern.as_deref() == Some(req.path()) {
            self.routes.borrow_mut().insert(req.path().into(), route);
        }
        route
    }
}

impl<S, B> Service<ServiceRequest> for RequestLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<ServiceResponse<B>, Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let id = RequestId::next();
        let route = self.route_of(&req);
        // Not a clone of the request: routing needs it unshared.
        let method = req.method().clone();
        // With the access log on, the span is made up front so that the handler's own events
        // carry the request id too; otherwise it is made only for an answer that is logged.
        let span = if tracing::enabled!(target: TARGET, Level::DEBUG) {
            request_span(id)
        } else {
            Span::none()
        };
        let fut = span.in_scope(|| self.service.call(req));
        Box::pin(async move {
            // Entered on each poll of the handler (when there is a span), so its own events carry
            // the request id.
            let outcome = fut.instrument(span.clone()).await;
            let took = started.elapsed();
            let status = match &outcome {
                Ok(res) => res.status(),
                Err(e) => e.as_response_error().status_code(),
            };
            route.record(&method, status, took);
            log_answer(
                (span, id),
                outcome.as_ref().ok().map(ServiceResponse::request),
                &method,
                route.route(),
                status,
                took.as_secs_f64() * 1000.0,
                || match &outcome {
                    Ok(res) => res.response().error().map(std::string::ToString::to_string),
                    Err(e) => Some(e.to_string()),
                },
            );
            let mut res = outcome?;
            res.headers_mut()
                .insert(HeaderName::from_static("x-request-id"), id.header_value());
            Ok(res)
        })
    }
}

/// The `request` span, with only the id formatted (the rest is recorded by [`log_answer`]).
fn request_span(id: RequestId) -> Span {
    tracing::info_span!(
        "request",
        request_id = %id,
        method = Empty,
        route = Empty,
        path = Empty,
        client_ip = Empty,
        status = Empty,
        took_ms = Empty,
    )
}

/// One event per answer — `debug` for successes, `info` for refusals (4xx), `error` for failures
/// (5xx) — with the request's fields recorded on its span first; nothing is formatted when the
/// event's level is off.
fn log_answer(
    (span, id): (Span, RequestId),
    req: Option<&HttpRequest>,
    method: &Method,
    route: &str,
    status: StatusCode,
    took_ms: f64,
    error: impl FnOnce() -> Option<String>,
) {
    let enabled = if status.is_server_error() {
        tracing::enabled!(target: TARGET, Level::ERROR)
    } else if status.is_client_error() {
        tracing::enabled!(target: TARGET, Level::INFO)
    } else {
        tracing::enabled!(target: TARGET, Level::DEBUG)
    };
    if !enabled {
        return;
    }
    let span = if span.is_none() { request_span(id) } else { span };
    let span = &span;
    span.record("method", method.as_str());
    span.record("route", route);
    // No request when an inner service failed instead of answering.
    if let Some(req) = req {
        span.record("path", safe_path(req).as_str());
        let client_ip = proxy::client_ip(req).map(|a| a.to_string()).unwrap_or_default();
        span.record("client_ip", client_ip.as_str());
    }
    let code = status.as_u16();
    span.record("status", code);
    span.record("took_ms", took_ms);
    let error = error();
    let error = error.as_deref().unwrap_or("");
    if status.is_server_error() {
        tracing::error!(target: TARGET, parent: span, status = code, error, "request failed");
    } else if status.is_client_error() {
        tracing::info!(target: TARGET, parent: span, status = code, error, "request refused");
    } else {
        tracing::debug!(target: TARGET, parent: span, status = code, "request answered");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_key_and_the_context_of_a_cacheable_get_are_not_logged() {
        let req = actix_web::test::TestRequest::get()
            .uri("/client/v1/fs_cli_abc123/eyJ0YXJnZXRpbmdLZXkiOiJ1In0")
            .param("key", "fs_cli_abc123")
            .param("context", "eyJ0YXJnZXRpbmdLZXkiOiJ1In0")
            .to_http_request();
        assert_eq!(safe_path(&req), "/client/v1/REDACTED/REDACTED");
    }

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

    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// At the default level no span is made up front, yet a refusal's line still has the span
    /// with the id sent back, and a success writes nothing.
    #[actix_web::test]
    async fn at_the_default_level_refusals_are_logged_with_their_request_id() {
        use actix_web::{App, test, web};
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter("info")
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new()
                .wrap(RequestLog)
                .route("/ok", web::get().to(|| async { "ok" })),
        )
        .await;
        let ok = test::call_service(&app, test::TestRequest::get().uri("/ok").to_request()).await;
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.headers().get("x-request-id").unwrap().len(), 36);
        assert!(
            captured.0.lock().unwrap().is_empty(),
            "a success is not logged at info"
        );
        let missing = test::TestRequest::get()
            .uri("/x/fs_srv_secret?key=fs_srv_secret")
            .to_request();
        let missing = test::call_service(&app, missing).await;
        assert_eq!(missing.status(), 404);
        let id = missing
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(id, ok.headers().get("x-request-id").unwrap().to_str().unwrap());
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
        assert_eq!(line["target"], TARGET, "{log}");
        assert_eq!(line["fields"]["status"], 404, "{log}");
        assert_eq!(line["span"]["request_id"], id.as_str(), "{log}");
        assert_eq!(line["span"]["route"], "unmatched", "{log}");
        assert_eq!(line["span"]["path"], "/x/REDACTED", "{log}");
        assert!(!log.contains("fs_srv_secret"), "{log}");
    }

    #[test]
    fn request_ids_look_like_uuids_and_do_not_repeat() {
        let ids: Vec<String> = (0..1000).map(|_| RequestId::next().to_string()).collect();
        for id in &ids {
            assert_eq!(id.len(), 36, "{id}");
            assert!(
                id.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }),
                "{id}"
            );
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let id = RequestId::next();
        assert_eq!(id.header_value().to_str().unwrap(), id.to_string());
    }
}
