//! The gateway's error model, and the one place errors become responses.
//!
//! Anything that fails inbound returns a [`GatewayError`]; its [`ErrorCode`] ([`codes`]: every
//! code once, with its status) is what clients switch on. As a response it travels up the stack
//! as a bare status with the error stashed in the response extensions; the
//! [`RenderErrors`](crate::inbound::render_errors::RenderErrors) stage near the top of every stack
//! renders it ([`render`]) in the BFF's [`ErrorFormat`] with the request id (linkerd's "error
//! rescue"). GraphQL resolver errors are mapped by [`crate::graphql::Endpoint::execute`] with the
//! same codes and messages.

pub mod codes;
mod render;

use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bff_upstream::UpstreamError;
use http::StatusCode;

pub use self::codes::ErrorCode;

/// How a BFF's clients expect errors: GraphQL clients get `{"errors": [...]}`, REST clients
/// RFC 9457 `application/problem+json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    Problem,
    GraphQl,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `Accept` allows none of the media types this endpoint answers with.
    #[error("{0}")]
    NotAcceptable(String),
    /// `Accept` names an API version this BFF does not serve; `supported` are the media types
    /// it does.
    #[error("`Accept` names a version this API does not serve; supported: {}", .supported.join(", "))]
    UnsupportedVersion { supported: &'static [&'static str] },
    /// The body's `Content-Type` is not one this endpoint reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A request whose body or parameters break the published schema: 400 for parameters,
    /// 422 for a body that is JSON but not a valid one; every violation is listed.
    #[error("{message}")]
    Invalid { unprocessable: bool, message: String, violations: Vec<Violation> },
    /// An `Idempotency-Key` whose first request is still running.
    #[error("a request with this Idempotency-Key is still in progress; retry after it completes")]
    IdempotencyKeyInUse,
    /// An `Idempotency-Key` sent again with a different request.
    #[error("this Idempotency-Key was used with a different request; use a new key for a new request")]
    IdempotencyKeyReused,
    /// A store the gateway keeps state in (Redis) is unreachable; the detail is logged.
    #[error("the {store} is unavailable")]
    StoreUnavailable { store: &'static str, detail: String },
    /// A GraphQL document or batch the gateway refuses to run; `code` says why.
    #[error("{message}")]
    QueryRefused { code: ErrorCode, message: String },
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request did not complete within {}ms", .0.as_millis())]
    RequestTimeout(Duration),
    /// This client address has failed to authenticate too often; it may try again after
    /// `retry_after`.
    #[error("too many failed authentication attempts; retry after {}s", .retry_after.as_secs().max(1))]
    TooManyFailedAttempts { retry_after: Duration },
    /// A limit named `limit` is used up; it admits this request again after `retry_after`.
    #[error("rate limit `{limit}` exceeded; retry after {}s", seconds_up(*.retry_after))]
    RateLimited { limit: String, retry_after: Duration },
    /// This replica is serving as many requests as it may; try again after `retry_after`.
    #[error("the server is overloaded; retry after {}s", .retry_after.as_secs().max(1))]
    Overloaded { retry_after: Duration },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Something broke inside the gateway. The detail is logged, never sent to the client.
    #[error("internal error")]
    Internal(String),
}

impl GatewayError {
    /// The stable, documented code clients switch on.
    /// Who made this error: `backend` for a backend's failure relayed, `gateway` for the
    /// gateway's own refusal or fault. In every error body, the access line and the metrics.
    pub fn source(&self) -> &'static str {
        match self {
            Self::Upstream(_) => "backend",
            _ => "gateway",
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::NotAcceptable(_) => ErrorCode::NotAcceptable,
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Self::QueryRefused { code, .. } => *code,
            Self::Invalid { unprocessable: true, .. } => ErrorCode::ValidationFailed,
            Self::Invalid { unprocessable: false, .. } => ErrorCode::BadRequest,
            Self::IdempotencyKeyInUse => ErrorCode::IdempotencyKeyInUse,
            Self::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            Self::StoreUnavailable { .. } => ErrorCode::UpstreamUnavailable,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::RequestTimeout(_) => ErrorCode::RequestTimeout,
            Self::Overloaded { .. } => ErrorCode::Overloaded,
            Self::TooManyFailedAttempts { .. } => ErrorCode::TooManyFailedAttempts,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Upstream(e) => match e {
                UpstreamError::Timeout { .. } => ErrorCode::UpstreamTimeout,
                UpstreamError::Unavailable { .. }
                | UpstreamError::Overloaded { .. }
                | UpstreamError::CircuitOpen { .. }
                | UpstreamError::BulkheadFull { .. } => ErrorCode::UpstreamUnavailable,
                UpstreamError::NotFound { .. } => ErrorCode::NotFound,
                UpstreamError::Rejected { .. } | UpstreamError::InvalidArgument { .. } => ErrorCode::BadRequest,
                UpstreamError::Failed { .. } | UpstreamError::BadBody { .. } => ErrorCode::UpstreamError,
                UpstreamError::Config { .. } => ErrorCode::Internal,
            },
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    /// What the client is told: specific where that helps it, never internal detail.
    pub fn public_message(&self) -> String {
        match self {
            Self::Upstream(UpstreamError::Rejected { message, .. }) => message.clone(),
            Self::Upstream(UpstreamError::InvalidArgument { .. }) => "invalid identifier".to_owned(),
            Self::Upstream(UpstreamError::NotFound { .. }) => "not found".to_owned(),
            Self::Upstream(UpstreamError::Config { .. }) | Self::Internal(_) => "internal error".to_owned(),
            // The backend's name helps a client report the problem; how it failed inside does not.
            Self::Upstream(e) => format!("upstream `{}` {}", e.service(), upstream_phrase(e)),
            other => other.to_string(),
        }
    }

    /// How long the client should wait before trying again, when we know.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Overloaded { retry_after }
            | Self::TooManyFailedAttempts { retry_after }
            | Self::RateLimited { retry_after, .. } => Some(*retry_after),
            Self::Upstream(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// One way a request breaks its schema: where (a JSON pointer into the body, or a query
/// parameter's name) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    pub detail: String,
}

/// `duration` in whole seconds, rounded up and at least one: what `Retry-After` says, and what
/// a message may promise (`0` would invite an immediate retry storm).
pub fn seconds_up(duration: Duration) -> u64 {
    (duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).max(1)
}

fn upstream_phrase(error: &UpstreamError) -> &'static str {
    match error {
        UpstreamError::Timeout { .. } => "timed out",
        UpstreamError::Unavailable { .. }
        | UpstreamError::Overloaded { .. }
        | UpstreamError::CircuitOpen { .. }
        | UpstreamError::BulkheadFull { .. } => "is unavailable",
        _ => "failed",
    }
}

/// Why a BFF could not be built from its validated config (a JWKS client or a backend client
/// that would not construct): what every BFF's `app()` returns.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// A [`GatewayError`] on its way up to [`RenderErrors`](crate::inbound::render_errors::RenderErrors).
#[derive(Debug, Clone)]
pub(crate) struct PendingError(pub(crate) Arc<GatewayError>);

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response.extensions_mut().insert(PendingError(Arc::new(self)));
        response
    }
}
