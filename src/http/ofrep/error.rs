//! Errors on the OFREP wire: `{"key"?, "errorCode"?, "errorDetails"}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::ApiError;
use crate::http::evaluation::ContextError;

/// An OFREP error answer. Evaluation errors carry an OpenFeature `errorCode`; authentication
/// errors (401, 403) carry only `errorDetails`.
#[derive(Debug, thiserror::Error)]
#[error("{details}")]
pub struct OfrepError {
    status: StatusCode,
    key: Option<String>,
    code: Option<&'static str>,
    details: String,
}

impl OfrepError {
    fn new(status: StatusCode, key: Option<&str>, code: &'static str, details: impl Into<String>) -> Self {
        OfrepError {
            status,
            key: key.map(str::to_owned),
            code: Some(code),
            details: details.into(),
        }
    }

    /// 400 `PARSE_ERROR`: the body is not JSON.
    pub fn parse(key: Option<&str>, details: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, key, "PARSE_ERROR", details)
    }

    /// 400 `INVALID_CONTEXT`.
    pub fn invalid_context(key: Option<&str>, details: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, key, "INVALID_CONTEXT", details)
    }

    /// 404 `FLAG_NOT_FOUND`.
    pub fn flag_not_found(key: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Some(key),
            "FLAG_NOT_FOUND",
            format!("flag {key:?} was not found"),
        )
    }
}

impl From<ApiError> for OfrepError {
    fn from(e: ApiError) -> Self {
        if let ApiError::Internal(cause) = &e {
            tracing::error!(error = %cause, "OFREP request failed");
        }
        OfrepError {
            status: e.status_code(),
            key: None,
            code: None,
            details: e.to_string(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(rename = "errorCode", skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(rename = "errorDetails")]
    details: &'a str,
}

impl ResponseError for OfrepError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(ErrorBody {
            key: self.key.as_deref(),
            code: self.code,
            details: &self.details,
        })
    }
}

impl OfrepError {
    /// A refused context: `PARSE_ERROR` when the body is not JSON, else `INVALID_CONTEXT`.
    pub fn context(key: Option<&str>, error: ContextError) -> Self {
        match error {
            ContextError::Parse(details) => Self::parse(key, details),
            ContextError::Invalid(details) => Self::invalid_context(key, details),
        }
    }
}
