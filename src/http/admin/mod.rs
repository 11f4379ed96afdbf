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
    let body = page.render().map_err(|e| PageError::internal(e.to_string()))?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body))
}

/// Renders a template as a `200 OK` HTML page.
pub(crate) fn ok(page: &impl Template) -> Result<HttpResponse, PageError> {
    render(StatusCode::OK, page)
}

/// An error shown to a person as a page (or, for our scripts' calls, as JSON), or a redirect
/// to the sign-in page.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
    /// Answer `{"error": {"code", "message"}}` rather than a page (calls from our scripts).
    pub json: bool,
    /// Redirect there instead (to sign in).
    pub location: Option<String>,
    /// Seconds, for `429 Too Many Requests`.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
            json: false,
            location: None,
            retry_after: None,
        }
    }

    pub fn not_found(what: impl Into<String>) -> PageError {
        PageError::new(StatusCode::NOT_FOUND, format!("{} not found", what.into()))
    }

    pub fn forbidden(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn internal(cause: impl Into<String>) -> PageError {
        let cause = cause.into();
        tracing::error!(error = %cause, "admin page failed");
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong on the server; the log says more.",
        )
    }

    /// Answer as JSON (for a call from our scripts).
    pub fn json(mut self, json: bool) -> PageError {
        self.json = json;
        self
    }

    fn code(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PRECONDITION_FAILED => "precondition_failed",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            _ => "internal",
        }
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> PageError {
        match e {
            StoreError::NotFound { what } => PageError::not_found(what),
            StoreError::Conflict { message } => PageError::new(StatusCode::CONFLICT, message),
            StoreError::Stale { .. } => PageError::new(
                StatusCode::PRECONDITION_FAILED,
                "Someone else changed this in the meantime. Reload the page to see their change.",
            ),
            StoreError::Invalid(errors) => PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            StoreError::BadRequest { message, .. } => PageError::bad_request(message),
            other => PageError::internal(other.to_string()),
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
        if self.location.is_some() {
            StatusCode::SEE_OTHER
        } else {
            self.status
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(location) = &self.location {
            return see_other(location);
        }
        let mut resp = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        if self.json {
            return resp.json(serde_json::json!({"error": {"code": self.code(), "message": self.message}}));
        }
        let page = ErrorPage {
            status: self.status.as_u16(),
            title: self.status.canonical_reason().unwrap_or("Error"),
            message: &self.message,
            css: assets::css_url(),
        };
        match page.render() {
            Ok(body) => resp.content_type("text/html; charset=utf-8").body(body),
            Err(_) => resp
                .content_type("text/plain; charset=utf-8")
                .body(self.message.clone()),
        }
    }
}
