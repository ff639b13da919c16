//! What can go wrong talking to the API, and what the user is told about it.
//!
//! The server's error body carries a code from the shared [`ErrorCode`] enum; this module
//! matches on that code to word the message (in the interface's language, see [`crate::i18n`]) and to decide whether a retry can help. It does
//! no I/O, so it is tested on the host.

use std::fmt;

use kokushi_shared::api::{ApiErrorBody, ErrorCode};

use crate::i18n::{self, t, tf};

/// A failed API call.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The request got no HTTP answer (server down, network gone). The browser's fetch reports
    /// nothing but a message, so that is all this keeps.
    Network { message: String },
    /// The server answered with an error status; `body` is its error body when it sent one.
    Status {
        status: u16,
        body: Option<ApiErrorBody>,
    },
    /// The server answered with a success status but a body this app cannot read.
    Decode { status: u16, message: String },
}

impl ApiError {
    /// Whether asking again later may succeed: network trouble and server-side failures, but not
    /// a refused request (a missing run stays missing).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Network { .. } => true,
            ApiError::Status { status, body } => {
                let code = body.as_ref().map(|b| b.code);
                *status >= 500 || *status == 429 || code == Some(ErrorCode::Unavailable)
            }
            ApiError::Decode { .. } => false,
        }
    }

    /// Whether the server wants the user to sign in (no session, or it expired).
    pub fn is_unauthorized(&self) -> bool {
        match self {
            ApiError::Status { status, body } => {
                *status == 401
                    || body
                        .as_ref()
                        .is_some_and(|b| b.code == ErrorCode::Unauthorized)
            }
            _ => false,
        }
    }

    /// Whether the server refused a save made from a stale version (someone saved since).
    pub fn is_conflict(&self) -> bool {
        match self {
            ApiError::Status { status, body } => {
                *status == 409 || body.as_ref().is_some_and(|b| b.code == ErrorCode::Conflict)
            }
            _ => false,
        }
    }

    /// Whether the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            ApiError::Status { status, body } => {
                *status == 404 || body.as_ref().is_some_and(|b| b.code == ErrorCode::NotFound)
            }
            _ => false,
        }
    }
}

impl ApiError {
    /// The translated meaning of an error code.
    pub fn code_text(code: ErrorCode) -> &'static str {
        t(match code {
            ErrorCode::NotFound => i18n::ERROR_CODE_NOT_FOUND,
            ErrorCode::Unauthorized => i18n::ERROR_CODE_UNAUTHORIZED,
            ErrorCode::Forbidden => i18n::ERROR_CODE_FORBIDDEN,
            ErrorCode::TooManyRequests => i18n::ERROR_CODE_TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => i18n::ERROR_CODE_UNAVAILABLE,
            ErrorCode::Internal => i18n::ERROR_CODE_INTERNAL,
            ErrorCode::BadRequest => i18n::ERROR_CODE_BAD_REQUEST,
            ErrorCode::InvalidExamSet => i18n::ERROR_CODE_INVALID_EXAM_SET,
            ErrorCode::Conflict => i18n::ERROR_CODE_CONFLICT,
            ErrorCode::PayloadTooLarge => i18n::ERROR_CODE_PAYLOAD_TOO_LARGE,
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ApiError::Network { message } => tf(i18n::ERROR_NETWORK, &[("message", message)]),
            ApiError::Status {
                status,
                body: Some(body),
            } => tf(
                i18n::ERROR_WITH_MESSAGE,
                &[
                    ("what", &ApiError::code_text(body.code)),
                    ("message", &body.message),
                    ("status", status),
                ],
            ),
            ApiError::Status { status, body: None } => {
                tf(i18n::ERROR_NO_BODY, &[("status", status)])
            }
            ApiError::Decode { status, message } => tf(
                i18n::ERROR_DECODE,
                &[("status", status), ("message", message)],
            ),
        };
        f.write_str(&text)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: Option<ErrorCode>) -> ApiError {
        ApiError::Status {
            status,
            body: code.map(|code| ApiErrorBody {
                code,
                message: "run 9 does not exist".to_owned(),
                details: Vec::new(),
            }),
        }
    }

    #[test]
    fn only_network_and_server_side_failures_are_worth_retrying() {
        let cases = [
            (
                ApiError::Network {
                    message: "Failed to fetch".into(),
                },
                true,
            ),
            (status(500, Some(ErrorCode::Internal)), true),
            (status(502, None), true),
            (status(503, Some(ErrorCode::Unavailable)), true),
            (status(429, None), true),
            (status(404, Some(ErrorCode::NotFound)), false),
            (status(400, Some(ErrorCode::BadRequest)), false),
            (
                ApiError::Decode {
                    status: 200,
                    message: "expected a list".into(),
                },
                false,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.is_transient(), expected, "{error:?}");
        }
    }

    #[test]
    fn a_not_found_body_reads_as_not_found_with_the_servers_message() {
        let error = status(404, Some(ErrorCode::NotFound));
        assert!(error.is_not_found());
        assert_eq!(
            error.to_string(),
            "Not found: run 9 does not exist (HTTP 404)"
        );
    }

    #[test]
    fn a_401_asks_to_sign_in_and_is_not_retried() {
        let error = status(401, Some(ErrorCode::Unauthorized));
        assert!(error.is_unauthorized());
        assert!(!error.is_transient());
        assert!(error.to_string().starts_with("Please sign in: "), "{error}");
        assert!(!status(403, Some(ErrorCode::Forbidden)).is_unauthorized());
    }

    #[test]
    fn an_error_without_a_body_still_names_the_status() {
        assert_eq!(
            status(502, None).to_string(),
            "The server answered HTTP 502 without an explanation."
        );
        assert!(!status(502, None).is_not_found());
    }

    #[test]
    fn a_409_is_a_conflict_and_other_refusals_are_not() {
        assert!(status(409, Some(ErrorCode::Conflict)).is_conflict());
        assert!(status(409, None).is_conflict());
        assert!(!status(400, Some(ErrorCode::BadRequest)).is_conflict());
    }
}
