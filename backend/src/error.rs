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
    NotFound(String),
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
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::InvalidExamSet(_) => ErrorCode::InvalidExamSet,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Queue(_) | ApiError::Db(DbError::Unavailable(_)) => ErrorCode::Unavailable,
            ApiError::Db(_) | ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self.code() {
            ErrorCode::BadRequest | ErrorCode::InvalidExamSet => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
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
        HttpResponse::build(status).json(ApiErrorBody {
            code: self.code(),
            message,
            details,
        })
    }
}
