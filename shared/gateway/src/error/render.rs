//! How a [`GatewayError`] is written: RFC 9457 problem+json for REST clients, a GraphQL response
//! with only this error for GraphQL clients; both with the stable code and the request id.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use super::{ErrorFormat, GatewayError};

impl GatewayError {
    pub fn render(&self, format: ErrorFormat, request_id: &str) -> Response {
        match format {
            ErrorFormat::Problem => self.to_problem(request_id),
            ErrorFormat::GraphQl => self.to_graphql(request_id),
        }
    }

    /// RFC 9457 problem details, with our stable code and the request id as extension members.
    pub fn to_problem(&self, request_id: &str) -> Response {
        let status = self.status();
        let code = self.code();
        let mut body = json!({
            "type": format!("urn:bff:error:{}", code.as_str().to_ascii_lowercase()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.public_message(),
            "code": code,
            "source": self.source(),
            "request_id": request_id,
        });
        match self {
            // RFC 9457's `errors` extension member: each violation by JSON pointer or parameter.
            Self::Invalid { violations, .. } => body["errors"] = serde_json::to_value(violations).unwrap_or_default(),
            Self::UnsupportedVersion { supported } => body["supported"] = json!(supported),
            // The member the ratelimit-headers draft's problem types use to name the limit.
            Self::RateLimited { limit, .. } => body["violated-policies"] = json!([limit]),
            _ => {}
        }
        self.respond(status, "application/problem+json", body)
    }

    /// A GraphQL response carrying only this error, for failures before execution (auth, limits).
    pub fn to_graphql(&self, request_id: &str) -> Response {
        let mut extensions = json!({ "code": self.code(), "source": self.source(), "requestId": request_id });
        if let Some(after) = self.retry_after() {
            extensions["retryAfter"] = json!(super::seconds_up(after));
        }
        let body = json!({ "errors": [{ "message": self.public_message(), "extensions": extensions }] });
        self.respond(self.status(), "application/json", body)
    }

    fn respond(&self, status: StatusCode, content_type: &'static str, body: serde_json::Value) -> Response {
        let mut response = (status, body.to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(super::seconds_up(after)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn every_code_renders_with_the_status_its_table_gives_it() {
        let overloaded = GatewayError::Overloaded { retry_after: Duration::from_millis(1500) };
        let response = overloaded.to_problem("r-1");
        assert_eq!(response.status(), ErrorCode::Overloaded.status());
        assert_eq!(response.headers()["retry-after"], "2", "rounded up to whole seconds");
        let refused = GatewayError::QueryRefused { code: ErrorCode::QueryTooDeep, message: "deep".into() };
        assert_eq!(refused.to_graphql("r-1").status(), 400);
        assert_eq!(GatewayError::Unauthenticated("no".into()).to_problem("r").headers()["www-authenticate"], "Bearer");
    }
}
