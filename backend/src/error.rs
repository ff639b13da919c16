//! The one place where errors become HTTP responses. Every error body is
//! [`ApiErrorBody`] with a [`ErrorCode`] the frontend matches on.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use kokushi_shared::api::{ApiErrorBody, ErrorCode};
use kokushi_shared::igakuqa::FormatError;

use crate::db::DbError;

#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the exam set has {} problem(s); the first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    InvalidExamSet(Vec<FormatError>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A path of the API asked with a method it does not take.
    #[error("this path takes {}", allowed.join(", "))]
    MethodNotAllowed { allowed: Vec<String> },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("too many failed sign-ins; try again in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// Too much of one kind of work at once (password checks, live streams of one account).
    #[error("{message}; try again in {retry_after_secs} s")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    #[error("the queue is unavailable: {0}")]
    Queue(#[from] kokushi_queue::QueueError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Internal(String),
}

impl std::fmt::Debug for ApiError {
    /// Walks the whole cause chain, so a log line says why, not only what.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Db(DbError::Refused(_)) => ErrorCode::BadRequest,
            ApiError::InvalidExamSet(_) => ErrorCode::InvalidExamSet,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) | ApiError::MethodNotAllowed { .. } => ErrorCode::NotFound,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::TooManyRequests { .. } | ApiError::Busy { .. } => ErrorCode::TooManyRequests,
            ApiError::Queue(_) | ApiError::Db(DbError::Unavailable(_)) => ErrorCode::Unavailable,
            ApiError::Db(_) | ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        if let ApiError::MethodNotAllowed { .. } = self {
            return StatusCode::METHOD_NOT_ALLOWED;
        }
        match self.code() {
            ErrorCode::BadRequest | ErrorCode::InvalidExamSet => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
            "the server could not complete the request; the cause is in its log".to_owned()
        } else {
            self.to_string()
        };
        let details = match self {
            ApiError::InvalidExamSet(errors) => errors.clone(),
            _ => Vec::new(),
        };
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::TooManyRequests { retry_after_secs }
            | ApiError::Busy {
                retry_after_secs, ..
            } => {
                response.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            ApiError::MethodNotAllowed { allowed } => {
                response.insert_header(("Allow", allowed.join(", ")));
            }
            _ => {}
        }
        if status == StatusCode::UNAUTHORIZED {
            // Tells scripts which credentials this server takes.
            response.insert_header(("WWW-Authenticate", "Bearer realm=\"kokushi\""));
        }
        response.json(ApiErrorBody {
            code: self.code(),
            message,
            details,
        })
    }
}
