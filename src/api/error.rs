//! The one error type of the HTTP API, rendered as `{"error": {"code", "message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every error's body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error of an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Machine-readable: `bad_parameter`, `unknown_symbol`, `no_quote`, `unknown_indicator`,
    /// `invalid_rule`, `unknown_rule`, `conflict`, `unauthorized`, `not_found`,
    /// `method_not_allowed`, `timeout`, `payload_too_large`, `overloaded`, `unavailable`,
    /// `internal`.
    pub code: &'static str,
    /// For people: what is wrong, naming the parameter or field.
    pub message: String,
}

/// Everything a handler can answer instead of data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No such symbol (404 `unknown_symbol`).
    #[error("unknown symbol {0:?}")]
    UnknownSymbol(String),
    /// The symbol has no quote yet (404 `no_quote`).
    #[error("no quote for {0:?} yet")]
    NoQuote(String),
    /// No indicator of that name (400 `unknown_indicator`).
    #[error("{0}")]
    UnknownIndicator(String),
    /// An alert rule is invalid (400 `invalid_rule`; the message names the field).
    #[error("{0}")]
    InvalidRule(String),
    /// No alert rule with that id (404 `unknown_rule`).
    #[error("{0}")]
    UnknownRule(String),
    /// The request conflicts with the current state (409 `conflict`).
    #[error("{0}")]
    Conflict(String),
    /// A query parameter is invalid (400 `bad_parameter`).
    #[error("{0}")]
    BadParameter(String),
    /// The request's path does not exist (404 `not_found`).
    #[error("no route for {0}")]
    NotFound(String),
    /// The path exists but not for this method (405 `method_not_allowed`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A request that changes state lacks the API token, or has a wrong one (401
    /// `unauthorized`).
    #[error("this endpoint needs the API token: `Authorization: Bearer <token>`")]
    Unauthorized,
    /// Too many requests in flight: this one is shed (503 `overloaded`).
    #[error("too many requests in flight ({0}); try again shortly")]
    Overloaded(usize),
    /// The request was not complete in time, e.g. its body arrived too slowly (408 `timeout`).
    #[error("the request took longer than {0} ms")]
    Timeout(u128),
    /// The request body is larger than the API accepts (413 `payload_too_large`).
    #[error("request bodies are limited to {0} bytes")]
    PayloadTooLarge(usize),
    /// The service cannot answer yet or any more (503 `unavailable`).
    #[error("{0}")]
    Unavailable(String),
    /// A failure on our side (500 `internal`).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownSymbol(_)
            | ApiError::NotFound(_)
            | ApiError::NoQuote(_)
            | ApiError::UnknownRule(_) => StatusCode::NOT_FOUND,
            ApiError::BadParameter(_)
            | ApiError::UnknownIndicator(_)
            | ApiError::InvalidRule(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownSymbol(_) => "unknown_symbol",
            ApiError::NoQuote(_) => "no_quote",
            ApiError::UnknownIndicator(_) => "unknown_indicator",
            ApiError::InvalidRule(_) => "invalid_rule",
            ApiError::UnknownRule(_) => "unknown_rule",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::Timeout(_) => "timeout",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BadParameter(_) => "bad_parameter",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        if self == ApiError::Unauthorized {
            let challenge = [(axum::http::header::WWW_AUTHENTICATE, "Bearer")];
            return (self.status(), challenge, Json(body)).into_response();
        }
        (self.status(), Json(body)).into_response()
    }
}
