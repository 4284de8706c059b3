//! GraphQL execution for the GraphQL BFFs: request parsing with branded rejections, the request
//! context handed to resolvers, and the mapping of resolver errors to stable codes.

use std::sync::Arc;

use async_graphql::{ErrorExtensionValues, ObjectType, Schema, ServerError, SubscriptionType, Value};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{Html, IntoResponse, Response};
use bff_upstream::UpstreamError;

use crate::{GatewayError, RequestContext};

/// A GraphQL request body (`{"query", "operationName", "variables"}`).
pub struct GraphQlRequest(pub async_graphql::Request);

impl<S: Send + Sync> FromRequest<S> for GraphQlRequest {
    type Rejection = GatewayError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json =
            request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.starts_with("application/json") || v.starts_with("application/graphql-response+json")
            });
        if !is_json {
            return Err(GatewayError::BadRequest(
                "send the GraphQL request as `Content-Type: application/json`".into(),
            ));
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| GatewayError::BadRequest(format!("could not read the request body: {e}")))?;
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|e| GatewayError::BadRequest(format!("the body is not a GraphQL request: {e}")))
    }
}

/// Runs one request: records its operation name for the access log, gives resolvers the
/// [`RequestContext`], and brands every error with a stable `extensions.code` and the request id.
/// Per-request data resolvers need (data loaders, say) is added to `request` by the caller.
pub async fn execute<Q, M, S>(schema: &Schema<Q, M, S>, cx: RequestContext, request: async_graphql::Request) -> Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let _ = cx.log.operation.set(request.operation_name.clone().unwrap_or_else(|| "anonymous".to_owned()));
    let request_id = cx.request_id.clone();
    let mut response = schema.execute(request.data(cx)).await;
    for error in &mut response.errors {
        brand(error, &request_id);
    }
    axum::Json(response).into_response()
}

/// Gives the error its code and a client-safe message, and adds the request id.
fn brand(error: &mut ServerError, request_id: &Arc<str>) {
    let gateway_error = error.source::<GatewayError>().map(|e| (e.code(), e.public_message()));
    let upstream_error = || {
        error.source::<UpstreamError>().map(|e| {
            let e = GatewayError::Upstream(e.clone());
            (e.code(), e.public_message())
        })
    };
    let code = match gateway_error.or_else(upstream_error) {
        Some((code, message)) => {
            error.message = message;
            code
        }
        None => match error.extensions.as_ref().and_then(|x| x.get("code")) {
            Some(_) => return set_request_id(error, request_id),
            // No path: parse and validation errors, about the document the client sent.
            None if error.path.is_empty() => "BAD_REQUEST",
            None => {
                tracing::error!(request_id = &**request_id, message = %error.message, "unbranded resolver error");
                error.message = "internal error".to_owned();
                "INTERNAL"
            }
        },
    };
    error.extensions.get_or_insert_with(ErrorExtensionValues::default).set("code", code);
    set_request_id(error, request_id);
}

fn set_request_id(error: &mut ServerError, request_id: &str) {
    error.extensions.get_or_insert_with(ErrorExtensionValues::default).set("requestId", Value::from(request_id));
}

/// GraphiQL, pointed at `endpoint`.
pub fn graphiql(endpoint: &str) -> Html<String> {
    Html(async_graphql::http::GraphiQLSource::build().endpoint(endpoint).finish())
}

/// The [`RequestContext`] that [`execute`] put into every request.
pub fn request_context<'a>(ctx: &async_graphql::Context<'a>) -> Result<&'a RequestContext, GatewayError> {
    ctx.data::<RequestContext>().map_err(|e| GatewayError::Internal(e.message))
}

/// `value` as a page size, refused (before any backend call) when outside `1..=max`.
pub fn page_size(argument: &str, value: i32, max: u32) -> Result<u32, GatewayError> {
    u32::try_from(value)
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| GatewayError::BadRequest(format!("`{argument}` must be between 1 and {max}")))
}
