//! The single place a [`GatewayError`] raised anywhere below becomes a body, in the BFF's
//! [`ErrorFormat`], with the request id (linkerd's "error rescue"). Errors travel up as a bare
//! status with the error in the response's extensions ([`PendingError`]).

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use http::HeaderValue;

use super::stage::{Downstream, Next, Stage};
use crate::error::PendingError;
use crate::graphql::ResponseMedia;
use crate::{ErrorFormat, GatewayError, RequestId};

#[derive(Debug, Clone, Copy)]
pub struct RenderErrors(pub ErrorFormat);

impl Stage for RenderErrors {
    async fn run<S: Downstream>(&self, request: Request, next: Next<S>) -> Response {
        let request_id =
            request.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_else(|| Arc::from("-"));
        // A GraphQL client that asked for `application/graphql-response+json` gets its errors in
        // that type too, whichever stage refused it (only the headers are kept: the request goes on).
        let accept: Vec<HeaderValue> = match self.0 {
            ErrorFormat::GraphQl => request.headers().get_all(http::header::ACCEPT).iter().cloned().collect(),
            ErrorFormat::Problem => Vec::new(),
        };
        let response = next.run(request).await;
        let Some(PendingError(error)) = response.extensions().get::<PendingError>().cloned() else {
            return response;
        };
        match &*error {
            GatewayError::Internal(detail) => tracing::error!(request_id = &*request_id, detail, "internal error"),
            GatewayError::StoreUnavailable { store, detail } => {
                tracing::error!(request_id = &*request_id, store, detail, "store unavailable");
            }
            _ => {}
        }
        let mut rendered = error.render(self.0, &request_id);
        // Headers the stages below set on the way up (a version's `Deprecation`, `Vary`, `Allow`)
        // still apply to the rendered error; its own body headers win.
        let inherited: Vec<http::HeaderName> = response
            .headers()
            .keys()
            .filter(|name| {
                !rendered.headers().contains_key(*name)
                    && *name != http::header::CONTENT_TYPE
                    && *name != http::header::CONTENT_LENGTH
            })
            .cloned()
            .collect();
        for name in inherited {
            for value in response.headers().get_all(&name) {
                rendered.headers_mut().append(name.clone(), value.clone());
            }
        }
        if self.0 == ErrorFormat::GraphQl {
            let mut headers = http::HeaderMap::new();
            for value in accept {
                headers.append(http::header::ACCEPT, value);
            }
            let media = ResponseMedia::negotiate(&headers).unwrap_or(ResponseMedia::Json);
            rendered.headers_mut().insert(http::header::CONTENT_TYPE, media.content_type());
        }
        // Keep the error visible to stages above (the access log reports its code).
        rendered.extensions_mut().insert(PendingError(error));
        rendered
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;
    use crate::inbound::stage::testing::{get, ok, run};

    async fn json(response: Response) -> serde_json::Value {
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn with_id(headers: &[(&str, &str)]) -> Request {
        let mut request = get(headers);
        request.extensions_mut().insert(RequestId(Arc::from("req-1")));
        request
    }

    #[tokio::test]
    async fn a_problem_carries_code_status_and_request_id_and_keeps_headers_set_below() {
        let response = run(
            RenderErrors(ErrorFormat::Problem),
            |_| async {
                let mut response = GatewayError::Forbidden("no".into()).into_response();
                response.headers_mut().insert("deprecation", HeaderValue::from_static("true"));
                response
            },
            with_id(&[]),
        )
        .await;
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        assert_eq!(response.headers()["deprecation"], "true");
        let body = json(response).await;
        assert_eq!((body["code"].as_str(), body["request_id"].as_str()), (Some("FORBIDDEN"), Some("req-1")));
    }

    #[tokio::test]
    async fn graphql_errors_follow_the_negotiated_media_type() {
        let accept = [("accept", "application/graphql-response+json")];
        let response = run(
            RenderErrors(ErrorFormat::GraphQl),
            |_| async { GatewayError::MethodNotAllowed.into_response() },
            with_id(&accept),
        )
        .await;
        assert_eq!(response.headers()["content-type"], "application/graphql-response+json; charset=utf-8");
        let body = json(response).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "METHOD_NOT_ALLOWED");
        assert_eq!(body["errors"][0]["extensions"]["requestId"], "req-1");
    }

    #[tokio::test]
    async fn answers_without_an_error_pass_untouched() {
        let response = run(RenderErrors(ErrorFormat::Problem), ok, with_id(&[])).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("content-type").is_none_or(|t| t != "application/problem+json"));
    }
}
