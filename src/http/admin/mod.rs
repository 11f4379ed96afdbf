//! The admin pages (DESIGN.md §6): server-rendered with askama, a few lines of our own plain JS
//! for progressive enhancement, every asset embedded in the binary.
//!
//! Security: sessions in the database behind an `HttpOnly`, `SameSite=Lax` cookie
//! ([`session`]); every state-changing request goes through the [`session::Posted`] extractor,
//! which checks `Origin` and the session's CSRF token; roles are checked in every handler with
//! [`session::AdminSession::require`]; every response carries a strict `Content-Security-Policy`
//! (no inline script), `X-Frame-Options: DENY` and `Referrer-Policy`. Askama escapes every value
//! put into HTML.
//!
//! Changes go through the same store functions as the management API, so validation and the
//! audit log are shared.

mod account;
mod assets;
mod audit;
mod backup;
mod bootstrap;
mod changes;
mod connect;
mod demo;
mod diff;
mod editor;
mod flags;
mod form;
mod insights;
mod keys;
mod projects;
mod sample;
mod segments;
pub mod session;
mod users;
mod view;
mod webhooks;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

pub use bootstrap::{BootstrapError, bootstrap};
pub use sample::create_at_start as create_sample_at_start;

use crate::store::StoreError;

/// The policy of every admin page: our own scripts and styles only, nothing inline, no frames.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Largest form body accepted (a flag with long target lists).
const MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::CACHE_CONTROL, "no-store"))
}

/// Registers the admin pages: `/`, `/sign-in`, `/projects/…`, `/users`, `/audit`, `/static/…`.
pub fn configure(cfg: &mut ServiceConfig) {
    let form_limit = web::PayloadConfig::new(MAX_FORM_BYTES);
    cfg.service(
        web::resource("/")
            .wrap(security_headers())
            .route(web::get().to(home)),
    );
    cfg.service(
        web::scope("/static")
            .wrap(
                DefaultHeaders::new()
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)),
            )
            .configure(assets::configure),
    );
    for (prefix, routes) in [
        ("/sign-in", account::configure_sign_in as fn(&mut ServiceConfig)),
        ("/sign-out", account::configure_sign_out),
        ("/setup", account::configure_setup),
        ("/account", account::configure_account),
        ("/projects", projects::configure),
        ("/users", users::configure),
        ("/audit", audit::configure),
        ("/backup", backup::configure),
    ] {
        cfg.service(
            web::scope(prefix)
                .app_data(form_limit.clone())
                .wrap(security_headers())
                .configure(routes)
                .default_service(web::to(not_found)),
        );
    }
}

async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, PageError> {
    Err(PageError::not_found(format!("the page {}", req.path())).json(session::wants_json(&req)))
}

async fn home(session: Option<session::AdminSession>) -> HttpResponse {
    let to = if session.is_some() {
        "/projects"
    } else {
        "/sign-in"
    };
    see_other(to)
}

/// `303 See Other` to `location` (after a form post, or to another page).
///
/// Locations are built from path parameters and form fields, which may hold anything once
/// decoded: what a header cannot carry (controls, spaces, non-ASCII) is percent-encoded, so the
/// redirect always goes out (a `%` already there is kept).
pub(crate) fn see_other(location: &str) -> HttpResponse {
    const UNSAFE_IN_A_HEADER: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ');
    let location = percent_encoding::utf8_percent_encode(location, UNSAFE_IN_A_HEADER).to_string();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// Renders a template as an HTML response with `status`.
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Result<HttpResponse, PageError> {
    let body = page.render().map_err(PageError::internal)?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body))
}

/// Renders a template as a `200 OK` HTML page.
pub(crate) fn ok(page: &impl Template) -> Result<HttpResponse, PageError> {
    render(StatusCode::OK, page)
}

/// An error shown to a person as a page (or, for our scripts' calls, as JSON), or a redirect
/// (to the sign-in page). One variant per case: each has one status and one JSON `code`.
#[derive(Debug)]
pub enum PageError {
    /// 400: the request cannot be read; the message says why.
    BadRequest(String),
    /// 401 (always JSON): a script's call without a valid session.
    SignedOut,
    /// 403: the message says what is not allowed.
    Forbidden(String),
    /// 404: what was not found (`the page /x`, `flag "a"`).
    NotFound(String),
    /// 409: the message says what is in the way.
    Conflict(String),
    /// 412: someone else changed the thing first.
    Stale,
    /// 415: a form body of another type.
    UnsupportedMediaType,
    /// 422: the change is invalid; the message lists why.
    Invalid(String),
    /// 429 with `Retry-After`.
    Throttled { message: String, retry_after: u64 },
    /// 303 to the sign-in page at `location` (which names the page to come back to).
    SignIn { location: String },
    /// 303 to the account page: a temporary password must be changed first.
    TemporaryPassword,
    /// 500; the cause is logged (when the error is made), never shown.
    Internal(Box<dyn std::error::Error + Send + Sync>),
    /// The error as `{"error": {"code", "message"}}` rather than a page (calls from our
    /// scripts). A redirect stays a redirect.
    Json(Box<PageError>),
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status().as_u16(), self.message())
    }
}

impl std::error::Error for PageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PageError::Internal(cause) => Some(cause.as_ref()),
            PageError::Json(inner) => inner.source(),
            _ => None,
        }
    }
}

impl PageError {
    pub fn not_found(what: impl Into<String>) -> PageError {
        PageError::NotFound(what.into())
    }

    pub fn forbidden(message: impl Into<String>) -> PageError {
        PageError::Forbidden(message.into())
    }

    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::BadRequest(message.into())
    }

    /// A failure of the server; `cause` (an error, or a text) is logged now and kept.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> PageError {
        let cause = cause.into();
        tracing::error!(error = %cause, "admin page failed");
        PageError::Internal(cause)
    }

    /// Answer as JSON (for a call from our scripts) when `json`.
    pub fn json(self, json: bool) -> PageError {
        match self {
            PageError::Json(_) => self,
            _ if json => PageError::Json(Box::new(self)),
            _ => self,
        }
    }

    /// The error itself, without the JSON wrapping.
    fn inner(&self) -> &PageError {
        match self {
            PageError::Json(inner) => inner.inner(),
            other => other,
        }
    }

    fn status(&self) -> StatusCode {
        match self.inner() {
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::SignedOut => StatusCode::UNAUTHORIZED,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::Stale => StatusCode::PRECONDITION_FAILED,
            PageError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PageError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            PageError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            PageError::SignIn { .. } | PageError::TemporaryPassword => StatusCode::SEE_OTHER,
            PageError::Internal(_) | PageError::Json(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the session is missing, unknown or expired (a script is told 401, a person is
    /// sent to sign in).
    pub fn is_signed_out(&self) -> bool {
        matches!(self.inner(), PageError::SignedOut | PageError::SignIn { .. })
    }

    /// What the person (or script) is told.
    pub fn message(&self) -> String {
        match self.inner() {
            PageError::BadRequest(message)
            | PageError::Forbidden(message)
            | PageError::Conflict(message)
            | PageError::Invalid(message)
            | PageError::Throttled { message, .. } => message.clone(),
            PageError::NotFound(what) => format!("{what} not found"),
            PageError::SignedOut => "You are signed out. Sign in again, then retry.".to_owned(),
            PageError::Stale => {
                "Someone else changed this in the meantime. Reload the page to see their change.".to_owned()
            }
            PageError::UnsupportedMediaType => {
                "Forms are sent as application/x-www-form-urlencoded.".to_owned()
            }
            PageError::SignIn { .. } => "sign in".to_owned(),
            PageError::TemporaryPassword => "change your password".to_owned(),
            PageError::Internal(_) | PageError::Json(_) => {
                "Something went wrong on the server; the log says more.".to_owned()
            }
        }
    }

    /// The stable `code` of the JSON answer.
    fn code(&self) -> &'static str {
        match self.inner() {
            PageError::BadRequest(_) => "bad_request",
            PageError::SignedOut => "unauthorized",
            PageError::Forbidden(_) => "forbidden",
            PageError::NotFound(_) => "not_found",
            PageError::Conflict(_) => "conflict",
            PageError::Stale => "precondition_failed",
            PageError::UnsupportedMediaType => "unsupported_media_type",
            PageError::Invalid(_) => "invalid",
            PageError::Throttled { .. } => "too_many_requests",
            PageError::SignIn { .. }
            | PageError::TemporaryPassword
            | PageError::Internal(_)
            | PageError::Json(_) => "internal",
        }
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> PageError {
        match e {
            StoreError::NotFound { what, .. } => PageError::NotFound(what),
            StoreError::Conflict { message } => PageError::Conflict(message),
            StoreError::Stale { .. } => PageError::Stale,
            StoreError::Invalid(errors) => PageError::Invalid(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            StoreError::BadRequest { message, .. } => PageError::BadRequest(message),
            other => PageError::internal(other),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
    css: &'a str,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        let message = self.message();
        let mut resp = HttpResponse::build(status);
        match self.inner() {
            PageError::SignIn { location } => return see_other(location),
            PageError::TemporaryPassword => return see_other("/account?reason=temporary"),
            PageError::Throttled { retry_after, .. } => {
                resp.insert_header((header::RETRY_AFTER, HeaderValue::from(*retry_after)));
            }
            _ => {}
        }
        // A signed-out script is always answered in JSON: it has no page to show.
        if matches!(self, PageError::Json(_) | PageError::SignedOut) {
            return resp.json(serde_json::json!({"error": {"code": self.code(), "message": message}}));
        }
        let page = ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message: &message,
            css: assets::css_url(),
        };
        match page.render() {
            Ok(body) => resp.content_type("text/html; charset=utf-8").body(body),
            Err(_) => resp.content_type("text/plain; charset=utf-8").body(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    async fn answer(e: &PageError) -> (u16, Option<String>, Option<String>, String) {
        let res = e.error_response();
        let header = |name| {
            res.headers()
                .get(name)
                .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
        };
        let (location, retry) = (header(header::LOCATION), header(header::RETRY_AFTER));
        let status = res.status().as_u16();
        let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        (status, location, retry, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Each case has one status and one code, the same as a page and as JSON; only the
    /// throttled answer has `Retry-After`, only the redirects a `Location`.
    #[actix_web::test]
    async fn each_case_answers_with_its_status_and_code() {
        let cases: Vec<(PageError, u16, &str, &str)> = vec![
            (
                PageError::bad_request("a,\"b\"\t<script>"),
                400,
                "bad_request",
                "a,\"b\"\t<script>",
            ),
            (PageError::SignedOut, 401, "unauthorized", "You are signed out"),
            (PageError::forbidden("no"), 403, "forbidden", "no"),
            (
                PageError::not_found("flag \"é\""),
                404,
                "not_found",
                "flag \"é\" not found",
            ),
            (PageError::Conflict("taken".into()), 409, "conflict", "taken"),
            (
                PageError::Stale,
                412,
                "precondition_failed",
                "Someone else changed this",
            ),
            (
                PageError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
                "Forms are sent as",
            ),
            (PageError::Invalid("bad".into()), 422, "invalid", "bad"),
            (
                PageError::Throttled {
                    message: "wait".into(),
                    retry_after: 7,
                },
                429,
                "too_many_requests",
                "wait",
            ),
            (
                PageError::internal("the disk is on fire"),
                500,
                "internal",
                "Something went wrong",
            ),
        ];
        for (e, status, code, message) in cases {
            let json = answer(&PageError::json(e, true)).await;
            assert_eq!(json.0, status, "{json:?}");
            let body: serde_json::Value = serde_json::from_str(&json.3).unwrap();
            assert_eq!(body["error"]["code"], code, "{body}");
            assert!(
                body["error"]["message"].as_str().unwrap().starts_with(message),
                "{body}"
            );
            assert_eq!(json.2.is_some(), status == 429, "Retry-After only when throttled");
            assert_eq!(json.1, None);
        }
        let page = answer(&PageError::bad_request("<script>x</script>")).await;
        assert_eq!(page.0, 400);
        assert!(
            page.3.contains("x&#60;/script&#62;") && !page.3.contains("<script>x"),
            "escaped in the page: {}",
            page.3
        );
        let throttled = PageError::Throttled {
            message: "wait".into(),
            retry_after: 7,
        };
        assert_eq!(answer(&throttled).await.2.as_deref(), Some("7"));
        // The cause of an internal error is kept, never shown.
        let internal = PageError::internal(std::io::Error::other("the disk is on fire"));
        assert_eq!(internal.source().unwrap().to_string(), "the disk is on fire");
        assert!(!answer(&internal).await.3.contains("fire"));
    }

    #[actix_web::test]
    async fn redirects_stay_redirects_even_for_scripts() {
        let sign_in = PageError::SignIn {
            location: "/sign-in?next=%2Fprojects".into(),
        };
        assert!(sign_in.is_signed_out());
        let (status, location, _, _) = answer(&sign_in.json(true)).await;
        assert_eq!(
            (status, location.as_deref()),
            (303, Some("/sign-in?next=%2Fprojects"))
        );
        let (status, location, _, _) = answer(&PageError::TemporaryPassword).await;
        assert_eq!(
            (status, location.as_deref()),
            (303, Some("/account?reason=temporary"))
        );
        assert!(!PageError::TemporaryPassword.is_signed_out());
        // A signed-out script is answered in JSON even when not asked to.
        let (status, _, _, body) = answer(&PageError::SignedOut.json(false)).await;
        assert_eq!(status, 401);
        assert!(body.starts_with('{'), "{body}");
    }
}
