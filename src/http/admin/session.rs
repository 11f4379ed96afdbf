//! Who is signed in to the admin pages, and the checks every state-changing request passes.
//!
//! A session is a random token in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` over HTTPS or
//! when configured); the database keeps only its SHA-256, so a copy of the database cannot be
//! used to sign in. Sessions end after an idle time and at an absolute time, on sign-out, on a
//! password change (the others), and when the user is disabled.
//!
//! [`AdminSession`] is the extractor of pages; it refuses a state-changing method unless the
//! request carries the session's CSRF token in `X-CSRF-Token`. [`Posted`] is the extractor of
//! every form post: it checks `Origin`, reads the form and checks its `csrf` field (or the
//! header). Handlers never read cookies or headers themselves.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::{Method, header};
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::PageError;
use super::form::Form;
use crate::AppState;
use crate::config::SecureCookies;
use crate::store::audit::Actor;
use crate::store::now_ms;
use crate::store::sessions;
use crate::store::users::{Role, User};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "flagstaff_session";
/// The sign-in form's double-submit cookie (there is no session yet to hold a CSRF token).
pub const SIGN_IN_COOKIE: &str = "flagstaff_sign_in";
/// Header carrying the CSRF token on calls from our scripts.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How often at most a session's last use is written (it decides the idle expiry). Every write
/// publishes the database file, so this is kept coarse: a quarter of the idle time, at most
/// five minutes.
const TOUCH_AT_MOST_EVERY_MS: i64 = 5 * 60_000;

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct AdminSession {
    pub id: i64,
    pub user: User,
    /// The token every form of this session carries.
    pub csrf: String,
    pub must_change_password: bool,
}

impl AdminSession {
    /// Whether the user's role is at least `role`.
    pub fn can(&self, role: Role) -> bool {
        self.user.role >= role
    }

    /// 403 unless the user's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), PageError> {
        if self.can(role) {
            Ok(())
        } else {
            Err(PageError::forbidden(format!(
                "This needs the {} role; {} is {}.",
                role.as_str(),
                self.user.email,
                self.user.role.as_str()
            )))
        }
    }

    /// What the audit log records as the actor.
    pub fn actor(&self) -> Actor {
        Actor::user(self.user.id, &self.user.email)
    }
}

/// A form post: the session (CSRF token and `Origin` checked) and the form's fields.
#[derive(Debug)]
pub struct Posted {
    pub session: AdminSession,
    pub form: Form,
    /// The call came from our scripts and wants JSON back.
    pub json: bool,
}

impl Posted {
    /// [`AdminSession::require`] with the error in the caller's format.
    pub fn require(&self, role: Role) -> Result<(), PageError> {
        self.session.require(role).map_err(|e| e.json(self.json))
    }
}

pub(crate) fn state(req: &HttpRequest) -> Result<web::Data<AppState>, PageError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| PageError::internal("application state missing"))
}

/// Whether the request is a call from our scripts that wants JSON.
pub fn wants_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Where to come back after signing in: the request's own path and query.
fn sign_in_location(req: &HttpRequest) -> String {
    let here = req
        .uri()
        .path_and_query()
        .map_or("/", actix_web::http::uri::PathAndQuery::as_str);
    if here == "/" || !is_safe(req.method()) {
        return "/sign-in".to_owned();
    }
    let query = serde_urlencoded::to_string([("next", here)]).unwrap_or_default();
    format!("/sign-in?{query}")
}

/// Where a `next` (or `back`) parameter may send the browser: the path, query and fragment it
/// resolves to, when it stays on this site; `/projects` otherwise.
///
/// The decision is made on the target a browser would follow, not on the raw string: the
/// parameter is resolved as a URL against this server's origin (which drops tabs and newlines,
/// reads backslashes as slashes and strips leading spaces, as browsers do), and only a
/// same-origin result whose percent-decoded path cannot be read as `//host` either is accepted.
/// What is returned is the resolved URL's own serialization, so the `Location` sent is exactly
/// what was checked.
pub fn safe_next(next: Option<&str>) -> String {
    const FALLBACK: &str = "/projects";
    next.and_then(same_origin_path)
        .unwrap_or_else(|| FALLBACK.to_owned())
}

fn same_origin_path(next: &str) -> Option<String> {
    // A stand-in for this server's origin: only the path of what resolves onto it is kept.
    const ORIGIN: &str = "http://flagstaff.invalid/";
    // No legitimate target holds a control character; a browser would drop some of them.
    if next.chars().any(char::is_control) {
        return None;
    }
    let base = url::Url::parse(ORIGIN).expect("the stand-in origin is a valid URL");
    // Only a path on this site: never a scheme, a host or a scheme-relative `//host`.
    let cleaned: String = next
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    if !cleaned.starts_with('/') || cleaned.starts_with("//") {
        return None;
    }
    let target = base.join(next).ok()?;
    if target.origin() != base.origin() || target.username() != "" || target.password().is_some() {
        return None;
    }
    // `/%2F/host` or `/%5C/host` is harmless to a browser, but a proxy or a later redirect
    // that decodes the path would turn it into `//host`.
    let decoded = percent_encoding::percent_decode_str(target.path()).decode_utf8_lossy();
    if decoded.starts_with("//") || decoded.contains(['\\', '\t', '\n', '\r']) {
        return None;
    }
    let mut out = target.path().to_owned();
    if let Some(query) = target.query() {
        out.push('?');
        out.push_str(query);
    }
    if let Some(fragment) = target.fragment() {
        out.push('#');
        out.push_str(fragment);
    }
    Some(out)
}

async fn load(req: &HttpRequest) -> Result<AdminSession, PageError> {
    let json = wants_json(req);
    let unauthenticated = || {
        if json || !is_safe(req.method()) && req.headers().contains_key(CSRF_HEADER) {
            PageError::SignedOut
        } else {
            PageError::SignIn {
                location: sign_in_location(req),
            }
        }
    };
    let state = state(req)?;
    let Some(token) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
        return Err(unauthenticated());
    };
    let idle_ms = idle_ms(&state);
    let found = state
        .store
        .read(move |conn| sessions::authenticate(conn, &token, idle_ms))
        .await?;
    let Some(found) = found else {
        return Err(unauthenticated());
    };
    if now_ms() - found.last_seen_at > TOUCH_AT_MOST_EVERY_MS.min(idle_ms / 4) {
        let id = found.id;
        state.store.operational(move |tx| sessions::touch(tx, id)).await?;
    }
    let path = req.path();
    if found.must_change_password && !(path.starts_with("/account") || path.starts_with("/sign-out")) {
        if json {
            return Err(
                PageError::forbidden("Change your temporary password first (Your account).").json(true),
            );
        }
        return Err(PageError::TemporaryPassword);
    }
    Ok(AdminSession {
        id: found.id,
        user: found.user,
        csrf: found.csrf_token,
        must_change_password: found.must_change_password,
    })
}

impl FromRequest for AdminSession {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<AdminSession, PageError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            if !is_safe(req.method()) {
                check_origin(&req)?;
            }
            let session = load(&req).await?;
            if !is_safe(req.method()) {
                let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                if !sent.is_some_and(|sent| same_secret(sent, &session.csrf)) {
                    return Err(csrf_refused().json(wants_json(&req)));
                }
            }
            Ok(session)
        })
    }
}

impl FromRequest for Posted {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Posted, PageError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let json = wants_json(&req);
            check_origin(&req).map_err(|e| e.json(json))?;
            let session = load(&req).await?;
            let body = body
                .await
                .map_err(|e| PageError::bad_request(format!("the form could not be read: {e}")).json(json))?;
            let form = read_form(&req, &body).map_err(|e| e.json(json))?;
            let sent = req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .or_else(|| form.get("csrf"));
            if !sent.is_some_and(|sent| same_secret(sent, &session.csrf)) {
                return Err(csrf_refused().json(json));
            }
            Ok(Posted { session, form, json })
        })
    }
}

/// Reads a form body; only `application/x-www-form-urlencoded` (what forms and our scripts send).
pub(crate) fn read_form(req: &HttpRequest, body: &[u8]) -> Result<Form, PageError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !body.is_empty() && !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(PageError::UnsupportedMediaType);
    }
    Form::parse(body).map_err(PageError::bad_request)
}

pub(crate) fn csrf_refused() -> PageError {
    PageError::forbidden(
        "This form is out of date or was sent from another site (its CSRF token does not match). \
         Reload the page and try again.",
    )
}

/// Refuses a state-changing request from another site: its `Origin` (or, without one, its
/// `Referer`) must name this host, and `Sec-Fetch-Site` must not say `cross-site`.
pub fn check_origin(req: &HttpRequest) -> Result<(), PageError> {
    let refused =
        || PageError::forbidden("This request came from another site and was refused (Origin check).");
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(refused());
    }
    let host = crate::ops::proxy::host(req).to_ascii_lowercase();
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER));
    match origin {
        None => Ok(()),
        Some(value) => {
            let value = value.to_str().map_err(|_| refused())?;
            let authority = value
                .split_once("://")
                .map_or("", |(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
            if !authority.is_empty() && authority.eq_ignore_ascii_case(&host) {
                Ok(())
            } else {
                Err(refused())
            }
        }
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn idle_ms(state: &AppState) -> i64 {
    (state.settings.serve.admin.session_idle_minutes as i64).saturating_mul(60_000)
}

pub(crate) fn max_ms(state: &AppState) -> i64 {
    (state.settings.serve.admin.session_max_hours as i64).saturating_mul(3_600_000)
}

/// Whether cookies set on this request get `Secure` (with `auto`: when the request came over
/// HTTPS, as the connection or a trusted proxy says).
pub fn secure_cookies(state: &AppState, req: &HttpRequest) -> bool {
    match state.settings.serve.admin.secure_cookies {
        SecureCookies::Always => true,
        SecureCookies::Never => false,
        SecureCookies::Auto => crate::ops::proxy::scheme(req) == "https",
    }
}

/// The session cookie for a new session.
pub fn session_cookie(state: &AppState, req: &HttpRequest, token: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure_cookies(state, req))
        .max_age(CookieDuration::milliseconds(max_ms(state)))
        .finish()
}

/// A cookie that removes `name`.
pub fn removal_cookie(state: &AppState, req: &HttpRequest, name: &'static str) -> Cookie<'static> {
    let mut cookie = Cookie::build(name, "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure_cookies(state, req))
        .finish();
    cookie.make_removal();
    cookie
}

/// The sign-in form's double-submit cookie.
pub fn sign_in_cookie(state: &AppState, req: &HttpRequest, token: String) -> Cookie<'static> {
    Cookie::build(SIGN_IN_COOKIE, token)
        .path("/sign-in")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure_cookies(state, req))
        .finish()
}

/// The client address sign-in throttling counts failures by: the peer, or behind trusted
/// reverse proxies (`--trusted-proxies`) the address they report.
pub fn client_address(req: &HttpRequest) -> String {
    crate::ops::proxy::client_ip(req).map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        for (next, expected) in [
            ("/projects/shop/flags?q=a", "/projects/shop/flags?q=a"),
            ("/ok?next=//x", "/ok?next=//x"),
            (
                "/projects/shop/flags/a%2Cb#rules",
                "/projects/shop/flags/a%2Cb#rules",
            ),
            ("/a/../b", "/b"),
        ] {
            assert_eq!(safe_next(Some(next)), expected, "{next:?}");
        }
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            " //evil.example",
            "/%09/evil.example",
            "/%5C/evil.example",
            "/%2F/evil.example",
            "/.//evil.example",
            "/..//evil.example",
            "https:evil.example",
            "http:evil.example",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "projects",
            "",
            "/x\r\nSet-Cookie: a=b",
        ] {
            assert_eq!(safe_next(Some(bad)), "/projects", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/projects");
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
