//! The gateway's error model, and the one place errors become responses.
//!
//! Anything that fails inbound returns a [`GatewayError`]. As a response it travels up the stack
//! as a bare status with the error stashed in the response extensions; the
//! [`RenderErrors`](crate::middleware::RenderErrors) stage near the top of every stack renders it
//! in the BFF's [`ErrorFormat`] with the request id (linkerd's "error rescue"). GraphQL resolver
//! errors are mapped by [`crate::graphql::Endpoint::execute`] with the same codes and messages.

use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bff_upstream::UpstreamError;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

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
    /// A GraphQL document or batch over one of the configured limits; `code` names the limit.
    #[error("{message}")]
    QueryRefused { code: &'static str, message: String },
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request did not complete within {}ms", .0.as_millis())]
    RequestTimeout(Duration),
    /// This client address has failed to authenticate too often; it may try again after
    /// `retry_after`.
    #[error("too many failed authentication attempts; retry after {}s", .retry_after.as_secs().max(1))]
    TooManyFailedAttempts { retry_after: Duration },
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
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::NotFound(_) => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::NotAcceptable(_) => "NOT_ACCEPTABLE",
            Self::UnsupportedVersion { .. } => "UNSUPPORTED_VERSION",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::QueryRefused { code, .. } => code,
            Self::Invalid { unprocessable: true, .. } => "VALIDATION_FAILED",
            Self::Invalid { unprocessable: false, .. } => "BAD_REQUEST",
            Self::IdempotencyKeyInUse => "IDEMPOTENCY_KEY_IN_USE",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::StoreUnavailable { .. } => "UPSTREAM_UNAVAILABLE",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::RequestTimeout(_) => "REQUEST_TIMEOUT",
            Self::Overloaded { .. } => "OVERLOADED",
            Self::TooManyFailedAttempts { .. } => "TOO_MANY_FAILED_ATTEMPTS",
            Self::Upstream(e) => match e {
                UpstreamError::Timeout { .. } => "UPSTREAM_TIMEOUT",
                UpstreamError::Unavailable { .. } | UpstreamError::Overloaded { .. } => "UPSTREAM_UNAVAILABLE",
                UpstreamError::NotFound { .. } => "NOT_FOUND",
                UpstreamError::Rejected { .. } | UpstreamError::InvalidArgument { .. } => "BAD_REQUEST",
                UpstreamError::Failed { .. } | UpstreamError::BadBody { .. } => "UPSTREAM_ERROR",
                UpstreamError::Config { .. } => "INTERNAL",
            },
            Self::Internal(_) => "INTERNAL",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.code() {
            "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
            "FORBIDDEN" => StatusCode::FORBIDDEN,
            "BAD_REQUEST" => StatusCode::BAD_REQUEST,
            _ if matches!(self, Self::QueryRefused { .. }) => StatusCode::BAD_REQUEST,
            "NOT_FOUND" => StatusCode::NOT_FOUND,
            "METHOD_NOT_ALLOWED" => StatusCode::METHOD_NOT_ALLOWED,
            "VALIDATION_FAILED" | "IDEMPOTENCY_KEY_REUSED" => StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_IN_USE" => StatusCode::CONFLICT,
            "NOT_ACCEPTABLE" | "UNSUPPORTED_VERSION" => StatusCode::NOT_ACCEPTABLE,
            "UNSUPPORTED_MEDIA_TYPE" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
            "REQUEST_TIMEOUT" | "UPSTREAM_TIMEOUT" => StatusCode::GATEWAY_TIMEOUT,
            "UPSTREAM_UNAVAILABLE" | "OVERLOADED" => StatusCode::SERVICE_UNAVAILABLE,
            "TOO_MANY_FAILED_ATTEMPTS" => StatusCode::TOO_MANY_REQUESTS,
            "UPSTREAM_ERROR" => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
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

    /// RFC 9457 problem details, with our stable code and the request id as extension members.
    pub fn to_problem(&self, request_id: &str) -> Response {
        let status = self.status();
        let body = json!({
            "type": format!("urn:bff:error:{}", self.code().to_ascii_lowercase()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.public_message(),
            "code": self.code(),
            "request_id": request_id,
        });
        let body = match self {
            // RFC 9457's `errors` extension member: each violation by JSON pointer or parameter.
            Self::Invalid { violations, .. } => {
                let mut body = body;
                body["errors"] = serde_json::to_value(violations).unwrap_or_default();
                body
            }
            Self::UnsupportedVersion { supported } => {
                let mut body = body;
                body["supported"] = json!(supported);
                body
            }
            _ => body,
        };
        self.respond(status, "application/problem+json", body)
    }

    /// A GraphQL response carrying only this error, for failures before execution (auth, limits).
    pub fn to_graphql(&self, request_id: &str) -> Response {
        let body = json!({
            "errors": [{
                "message": self.public_message(),
                "extensions": { "code": self.code(), "requestId": request_id },
            }]
        });
        self.respond(self.status(), "application/json", body)
    }

    pub fn render(&self, format: ErrorFormat, request_id: &str) -> Response {
        match format {
            ErrorFormat::Problem => self.to_problem(request_id),
            ErrorFormat::GraphQl => self.to_graphql(request_id),
        }
    }

    fn respond(&self, status: StatusCode, content_type: &'static str, body: serde_json::Value) -> Response {
        let mut response = (status, body.to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after() {
            // Whole seconds, rounded up: `Retry-After: 0` would invite an immediate retry storm.
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }

    /// How long the client should wait before trying again, when we know.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Overloaded { retry_after } | Self::TooManyFailedAttempts { retry_after } => Some(*retry_after),
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

fn upstream_phrase(error: &UpstreamError) -> &'static str {
    match error {
        UpstreamError::Timeout { .. } => "timed out",
        UpstreamError::Unavailable { .. } | UpstreamError::Overloaded { .. } => "is unavailable",
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

/// A [`GatewayError`] on its way up to [`RenderErrors`](crate::middleware::RenderErrors).
#[derive(Debug, Clone)]
pub(crate) struct PendingError(pub(crate) Arc<GatewayError>);

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response.extensions_mut().insert(PendingError(Arc::new(self)));
        response
    }
}
