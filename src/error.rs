//! The HTTP layer's error: one status and one stable snake_case code per variant, a message
//! safe to show, and the cause logged apart. Body: `{"error": {"code", "message", "path"?}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use flagstaff_eval::ValidationError;
use serde::Serialize;

use crate::store::{Resource, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        path: Option<String>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// `what` names the missing thing; `resource` gives the code (`flag_not_found`), or
    /// `not_found` when there is none (no such endpoint).
    #[error("{what} not found")]
    NotFound {
        resource: Option<Resource>,
        what: String,
    },
    /// A path that exists, called with a method it does not take.
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A limit over time was reached; the caller may try again after `retry_after` seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// The input is well formed but invalid; every problem is listed.
    #[error("{}", summary(.0))]
    Invalid(Vec<ValidationError>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn summary(errors: &[ValidationError]) -> String {
    match errors {
        [one] => one.to_string(),
        [first, ..] => format!("{first} (and {} more problems)", errors.len() - 1),
        [] => "invalid input".to_owned(),
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, path: Option<&str>) -> ApiError {
        ApiError::BadRequest {
            code: "bad_request",
            message: message.into(),
            path: path.map(str::to_owned),
        }
    }

    /// A 404 about a `resource`: `what` names it (`user 7`).
    pub fn not_found(resource: Resource, what: impl Into<String>) -> ApiError {
        ApiError::NotFound {
            resource: Some(resource),
            what: what.into(),
        }
    }

    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound { resource, .. } => resource.map_or("not_found", not_found_code),
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Invalid(_) => "invalid",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// The code of a 404 about a resource; docs/api.md lists them.
fn not_found_code(resource: Resource) -> &'static str {
    match resource {
        Resource::Project => "project_not_found",
        Resource::Environment => "environment_not_found",
        Resource::Flag => "flag_not_found",
        Resource::Segment => "segment_not_found",
        Resource::Schedule => "schedule_not_found",
        Resource::ApiKey => "key_not_found",
        Resource::RelayKey => "relay_key_not_found",
        Resource::Token => "token_not_found",
        Resource::User => "user_not_found",
        Resource::Webhook => "webhook_not_found",
        Resource::AuditEntry => "audit_entry_not_found",
        Resource::Database => "database_not_found",
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [ValidationError]>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = %cause, "request failed");
        }
        let (path, errors) = match self {
            ApiError::BadRequest { path, .. } => (path.as_deref(), None),
            ApiError::Invalid(errors) => (errors.first().map(|e| e.path.as_str()), Some(errors.as_slice())),
            _ => (None, None),
        };
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::TooManyRequests { retry_after, .. } = self {
            response.insert_header((actix_web::http::header::RETRY_AFTER, retry_after.to_string()));
        }
        response.json(Body {
            error: Detail {
                code: self.code(),
                message: self.to_string(),
                path,
                errors,
            },
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { resource, what } => ApiError::NotFound {
                resource: Some(resource),
                what,
            },
            StoreError::Conflict { message } => ApiError::Conflict(message),
            StoreError::Stale { .. } => ApiError::PreconditionFailed(e.to_string()),
            StoreError::Invalid(errors) => ApiError::Invalid(errors),
            StoreError::BadRequest { message, path } => ApiError::BadRequest {
                code: "bad_request",
                message,
                path,
            },
            other => ApiError::Internal(Box::new(other)),
        }
    }
}
