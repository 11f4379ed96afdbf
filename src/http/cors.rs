//! CORS for the public evaluation endpoints only (OFREP, `/client/v1`, `/sdk/flagstaff.js`):
//! browsers on other origins call them with a client key. `/api` and the admin pages never get
//! these headers, so a page elsewhere can never read them.
//!
//! The allowed origins come from the settings (`--cors-origins`, default `*`), read per request,
//! which is why this is a small `from_fn` middleware and not a builder fixed at startup.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};

use crate::AppState;

/// Request headers a page may send: the key, the body's type, revalidation, SSE resumption.
pub const ALLOW_HEADERS: &str =
    "Authorization, X-API-Key, Content-Type, If-None-Match, Last-Event-ID, Cache-Control";
/// Response headers a page may read.
pub const EXPOSE_HEADERS: &str = "ETag, Retry-After";
const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
/// How long a browser may reuse a preflight answer (Chromium caps it at 2 hours).
const MAX_AGE_SECS: &str = "7200";

/// What the settings allow for a request's `Origin`.
#[derive(Debug, PartialEq, Eq)]
enum Allowed {
    /// Any origin: `Access-Control-Allow-Origin: *` (the answer is the same for everyone, so
    /// one cached copy serves every origin).
    Any,
    /// This origin is listed: echo it (and `Vary: Origin`).
    Origin(HeaderValue),
    /// No `Origin` header (not a cross-origin browser call) or an origin not listed.
    No,
}

fn allowed(origins: &[String], origin: Option<&HeaderValue>) -> Allowed {
    if origins.iter().any(|o| o.trim() == "*") {
        return Allowed::Any;
    }
    let Some(origin) = origin else { return Allowed::No };
    let Ok(text) = origin.to_str() else {
        return Allowed::No;
    };
    let listed = origins
        .iter()
        .any(|o| o.trim().trim_end_matches('/').eq_ignore_ascii_case(text));
    if listed {
        Allowed::Origin(origin.clone())
    } else {
        Allowed::No
    }
}

fn add_allow_origin(headers: &mut HeaderMap, allowed: &Allowed) {
    match allowed {
        Allowed::Any => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
        Allowed::Origin(origin) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        }
        Allowed::No => {}
    }
    // With a list, the answer depends on `Origin`, also when it is absent or refused: a cache
    // must not hand one origin's copy (or a copy without CORS headers) to another.
    if *allowed != Allowed::Any {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The middleware: answers preflights itself, and adds the CORS headers to every other answer
/// (errors included, so a page can read why its call failed).
pub async fn public(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<BoxBody, impl MessageBody>>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let origins = state
        .as_ref()
        .map_or(&[][..], |s| &s.settings.serve.frontend.cors_origins[..]);
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = allowed(origins, origin.as_ref());

    let preflight = req.method() == Method::OPTIONS
        && origin.is_some()
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut res = if allowed == Allowed::No {
            HttpResponse::build(StatusCode::FORBIDDEN)
                .content_type("text/plain; charset=utf-8")
                .body("this origin is not allowed (see --cors-origins)")
        } else {
            HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECS))
                .finish()
        };
        add_allow_origin(res.headers_mut(), &allowed);
        return Ok(req.into_response(res).map_into_left_body());
    }

    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    add_allow_origin(headers, &allowed);
    if allowed != Allowed::No {
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    Ok(res.map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_allows_any_origin_with_a_wildcard() {
        let origins = vec!["*".to_owned()];
        assert_eq!(
            allowed(&origins, Some(&HeaderValue::from_static("https://a.example"))),
            Allowed::Any
        );
        assert_eq!(allowed(&origins, None), Allowed::Any);
    }

    #[test]
    fn listed_origins_are_echoed_and_others_refused() {
        let origins = vec![
            "https://a.example/".to_owned(),
            " http://b.example:8080".to_owned(),
        ];
        let a = HeaderValue::from_static("https://a.example");
        assert_eq!(allowed(&origins, Some(&a)), Allowed::Origin(a.clone()));
        let b = HeaderValue::from_static("http://b.example:8080");
        assert_eq!(allowed(&origins, Some(&b)), Allowed::Origin(b.clone()));
        assert_eq!(
            allowed(&origins, Some(&HeaderValue::from_static("https://evil.example"))),
            Allowed::No
        );
        assert_eq!(
            allowed(
                &origins,
                Some(&HeaderValue::from_static("https://a.example.evil"))
            ),
            Allowed::No
        );
        assert_eq!(allowed(&origins, None), Allowed::No);
    }
}
