//! The SDK's three requests to a Flagstaff server: the bundle, the stream, the events.

use std::fmt;
use std::time::Duration;

use reqwest::header::{self, HeaderValue};
use reqwest::{Client as HttpClient, StatusCode};

use crate::events::Report;

/// One server (primary or fallback), by its base URL without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub base: String,
}

impl Endpoint {
    /// Checks and normalises a base URL such as `https://flags.example.com` or
    /// `http://127.0.0.1:8080/flagstaff/`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let parsed = reqwest::Url::parse(url.trim()).map_err(|e| e.to_string())?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("scheme {:?} is not http or https", parsed.scheme()));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err("a base URL takes no query or fragment".into());
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("credentials do not belong in the URL; the server key is sent in a header".into());
        }
        Ok(Endpoint {
            base: parsed.as_str().trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// What a bundle request gave.
#[derive(Debug)]
pub(crate) enum Fetched {
    Bundle { bytes: Vec<u8>, etag: Option<String> },
    NotModified,
}

/// Why a request failed, said so that a person can act on it (never containing the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// 401 or 403: the key is wrong, revoked, or not a server key.
    Rejected(StatusCode),
    /// Another unexpected status, with the start of the body.
    Status(StatusCode, String),
    /// Nothing answered in time.
    Timeout(Duration),
    /// Connection refused, DNS failure, reset….
    Transport(String),
    /// The answer was not what the protocol says.
    Protocol(String),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Rejected(status) => {
                write!(
                    f,
                    "the server key was rejected (HTTP {status}); is it a current server key?"
                )
            }
            RequestError::Status(status, body) if body.is_empty() => write!(f, "HTTP {status}"),
            RequestError::Status(status, body) => write!(f, "HTTP {status}: {body}"),
            RequestError::Timeout(after) => write!(f, "no answer within {after:?}"),
            RequestError::Transport(message) => f.write_str(message),
            RequestError::Protocol(message) => f.write_str(message),
        }
    }
}

/// `error` with its chain of causes ("error sending request…: connection refused").
fn describe(error: &reqwest::Error) -> RequestError {
    if error.is_timeout() {
        return RequestError::Transport("timed out".into());
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    RequestError::Transport(message)
}

async fn unexpected(response: reqwest::Response) -> RequestError {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return RequestError::Rejected(status);
    }
    let body = response.text().await.unwrap_or_default();
    let mut body: String = body.chars().take(200).collect();
    body.truncate(body.trim_end().len());
    RequestError::Status(status, body)
}

async fn within<T>(
    timeout: Duration,
    request: impl Future<Output = Result<T, RequestError>>,
) -> Result<T, RequestError> {
    tokio::time::timeout(timeout, request)
        .await
        .unwrap_or(Err(RequestError::Timeout(timeout)))
}

/// `GET /sdk/v1/bundle`, conditional on `etag` when given.
pub(crate) async fn fetch_bundle(
    http: &HttpClient,
    endpoint: &Endpoint,
    key: &HeaderValue,
    etag: Option<&str>,
    timeout: Duration,
) -> Result<Fetched, RequestError> {
    within(timeout, async {
        let mut request = http
            .get(endpoint.url("/sdk/v1/bundle"))
            .header(header::AUTHORIZATION, key.clone())
            .header(header::ACCEPT, "application/json");
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let response = request.send().await.map_err(|e| describe(&e))?;
        match response.status() {
            StatusCode::OK => {
                let etag = response
                    .headers()
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let bytes = response.bytes().await.map_err(|e| describe(&e))?;
                Ok(Fetched::Bundle {
                    bytes: bytes.to_vec(),
                    etag,
                })
            }
            StatusCode::NOT_MODIFIED if etag.is_some() => Ok(Fetched::NotModified),
            _ => Err(unexpected(response).await),
        }
    })
    .await
}

/// `GET /sdk/v1/stream`: the response once its headers arrived, ready to read.
pub(crate) async fn open_stream(
    http: &HttpClient,
    endpoint: &Endpoint,
    key: &HeaderValue,
    last_event_id: Option<&str>,
    timeout: Duration,
) -> Result<reqwest::Response, RequestError> {
    within(timeout, async {
        let mut request = http
            .get(endpoint.url("/sdk/v1/stream"))
            .header(header::AUTHORIZATION, key.clone())
            .header(header::ACCEPT, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.map_err(|e| describe(&e))?;
        if response.status() != StatusCode::OK {
            return Err(unexpected(response).await);
        }
        let is_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_stream {
            return Err(RequestError::Protocol(
                "the stream answered with a content type other than text/event-stream".into(),
            ));
        }
        Ok(response)
    })
    .await
}

/// Reads the next piece of a stream's body; `Ok(None)` at its end.
pub(crate) async fn next_chunk(response: &mut reqwest::Response) -> Result<Option<Vec<u8>>, RequestError> {
    match response.chunk().await {
        Ok(chunk) => Ok(chunk.map(|c| c.to_vec())),
        Err(e) => Err(describe(&e)),
    }
}

/// `POST /sdk/v1/events`.
pub(crate) async fn post_events(
    http: &HttpClient,
    endpoint: &Endpoint,
    key: &HeaderValue,
    report: &Report,
    timeout: Duration,
) -> Result<(), RequestError> {
    within(timeout, async {
        let body = serde_json::to_vec(report).map_err(|e| RequestError::Protocol(e.to_string()))?;
        let response = http
            .post(endpoint.url("/sdk/v1/events"))
            .header(header::AUTHORIZATION, key.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(unexpected(response).await)
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised_and_checked() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8080").unwrap().base,
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            Endpoint::parse("https://x.test/flags/").unwrap().base,
            "https://x.test/flags"
        );
        assert_eq!(
            Endpoint::parse("https://x.test/").unwrap().url("/sdk/v1/bundle"),
            "https://x.test/sdk/v1/bundle"
        );
        assert!(Endpoint::parse("ftp://x.test").is_err());
        assert!(Endpoint::parse("x.test:80").is_err());
        assert!(Endpoint::parse("https://x.test/?a=1").is_err());
        assert!(Endpoint::parse("https://user:pw@x.test/").is_err());
    }
}
