//! `GET /sdk/v1/bundle`: the environment's bundle, straight from the snapshot's bytes.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;
use crate::http::auth::ServerKey;
use crate::state::Serving;

/// What a cache keys a bundle on: the coding and the credential (a CDN must never hand one
/// environment's bundle to another key, or to no key).
const VARY: HeaderValue = HeaderValue::from_static("Accept-Encoding, Authorization, X-API-Key");

pub async fn bundle(
    key: ServerKey,
    req: HttpRequest,
    state: web::Data<Serving>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state
        .snapshots
        .get(key.environment_id)
        .ok_or_else(crate::http::auth::environment_gone)?;
    // `must-revalidate` lets a shared cache store a response to a request with Authorization
    // (RFC 9111 §3.5) and makes it ask us, with the caller's key, once `max-age` has passed.
    let cache_control = match state.settings.serve.bundle_max_age {
        0 => HeaderValue::from_static("max-age=0, must-revalidate"),
        n => HeaderValue::try_from(format!("max-age={n}, must-revalidate"))
            .map_err(|e| ApiError::Internal(Box::new(e)))?,
    };
    let etag = HeaderValue::try_from(snapshot.etag.as_str()).map_err(|e| ApiError::Internal(Box::new(e)))?;

    if none_match(&req, &snapshot.etag) {
        return Ok(HttpResponse::build(StatusCode::NOT_MODIFIED)
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, cache_control))
            .insert_header((header::VARY, VARY))
            .finish());
    }
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((header::VARY, VARY));
    if accepts_gzip(&req) {
        resp.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
        Ok(resp.body(snapshot.bundle_gzip.clone()))
    } else {
        Ok(resp.body(snapshot.bundle.clone()))
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`). The comparison is weak, as RFC 9110
/// §13.1.2 wants for this header: `W/"x"` matches `"x"`.
fn none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .any(|value| {
            value
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
        })
}

/// Whether `Accept-Encoding` accepts gzip: `gzip` (or `x-gzip`) with a non-zero weight, or `*`
/// with a non-zero weight when gzip is not named.
fn accepts_gzip(req: &HttpRequest) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in req
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
    {
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let weight = parts
                .filter_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .or_else(|| p.trim().strip_prefix("Q="))
                })
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(weight > 0.0);
            } else if coding == "*" {
                any = Some(weight > 0.0);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn gzip(value: &str) -> bool {
        accepts_gzip(
            &TestRequest::default()
                .insert_header(("Accept-Encoding", value))
                .to_http_request(),
        )
    }

    #[test]
    fn gzip_is_accepted_only_with_a_positive_weight() {
        assert!(gzip("gzip"));
        assert!(gzip("br, gzip;q=0.5, deflate"));
        assert!(gzip("GZIP"));
        assert!(gzip("*"));
        assert!(!gzip("gzip;q=0"));
        assert!(!gzip("gzip;q=0.0, *"));
        assert!(!gzip("br, deflate"));
        assert!(!gzip("identity"));
        assert!(!gzip("*;q=0"));
        assert!(!accepts_gzip(&TestRequest::default().to_http_request()));
    }

    fn matches(value: &str) -> bool {
        none_match(
            &TestRequest::default()
                .insert_header(("If-None-Match", value))
                .to_http_request(),
            "\"r1-ab\"",
        )
    }

    #[test]
    fn if_none_match_compares_weakly_in_a_list() {
        assert!(matches("\"r1-ab\""));
        assert!(matches("W/\"r1-ab\""));
        assert!(matches("\"x\", \"r1-ab\""));
        assert!(matches("*"));
        assert!(!matches("\"r0-ab\""));
        assert!(!matches("r1-ab"));
        assert!(!matches(""));
    }
}
