//! CORS for the public evaluation endpoints only (OFREP, `/client/v1`, `/sdk/flagstaff.js`):
//! browsers on other origins call them with a client key. `/api` and the admin pages never get
//! these headers, so a page elsewhere can never read them.
//!
//! The allowed origins come from the settings (`--cors-origins`, default `*`, parsed once at
//! start into [`AllowedOrigins`]), read per request from the application state, which is why
//! this is our own middleware and not a builder fixed at startup.

use std::future::{Ready, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{Error, HttpRequest, HttpResponse, web};
use futures_util::TryFutureExt as _;
use futures_util::future::{Either, MapOk};

use crate::config::AllowedOrigins;
use crate::state::Serving;

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

fn allowed(origins: &AllowedOrigins, origin: Option<&HeaderValue>) -> Allowed {
    if *origins == AllowedOrigins::Any {
        return Allowed::Any;
    }
    let Some(origin) = origin else { return Allowed::No };
    let Ok(text) = origin.to_str() else {
        return Allowed::No;
    };
    if origins.allows(text) {
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

/// The middleware over the public scopes: answers preflights itself, and adds the CORS headers
/// to every other answer (errors included, so a page can read why its call failed). No boxed
/// future: it runs on every evaluation request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicCors;

impl<S, B> Transform<S, ServiceRequest> for PublicCors
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = PublicCorsService<S>;
    type InitError = ();
    type Future = Ready<Result<PublicCorsService<S>, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(PublicCorsService { service }))
    }
}

/// [`PublicCors`] over one scope.
pub struct PublicCorsService<S> {
    service: S,
}

/// Adds the CORS headers to an answer, reading the request's `Origin` and the settings anew.
type Finish<B> = fn(ServiceResponse<B>) -> ServiceResponse<EitherBody<B>>;

impl<S, B> Service<ServiceRequest> for PublicCorsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Either<Ready<Result<Self::Response, Error>>, MapOk<S::Future, Finish<B>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let preflight = req.method() == Method::OPTIONS
            && req.headers().contains_key(header::ORIGIN)
            && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            let allowed = allowed_for(req.request());
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
            return Either::Left(ready(Ok(req.into_response(res).map_into_right_body())));
        }
        Either::Right(self.service.call(req).map_ok(finish as Finish<B>))
    }
}

/// What the settings allow for this request's `Origin`.
fn allowed_for(req: &HttpRequest) -> Allowed {
    match req.app_data::<web::Data<Serving>>() {
        Some(s) => allowed(
            &s.settings.serve.frontend.cors_origins,
            req.headers().get(header::ORIGIN),
        ),
        None => Allowed::No,
    }
}

fn finish<B>(mut res: ServiceResponse<B>) -> ServiceResponse<EitherBody<B>> {
    let allowed = allowed_for(res.request());
    let headers = res.headers_mut();
    add_allow_origin(headers, &allowed);
    if allowed != Allowed::No {
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    res.map_into_left_body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_allows_any_origin_with_a_wildcard() {
        let origins = AllowedOrigins::parse("https://a.example, *").unwrap();
        assert_eq!(
            allowed(&origins, Some(&HeaderValue::from_static("https://a.example"))),
            Allowed::Any
        );
        assert_eq!(allowed(&origins, None), Allowed::Any);
    }

    #[test]
    fn listed_origins_are_echoed_and_others_refused() {
        let origins = AllowedOrigins::parse("https://a.example/, http://b.example:8080,").unwrap();
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
