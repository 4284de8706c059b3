//! The body limit (`[server] body_limit_bytes`): a declared `Content-Length` over it gets 413
//! `PAYLOAD_TOO_LARGE` before anything is read; a streamed body is cut at it (tower-http), and the
//! extractor that reads it says the same. Nothing here buffers a body.

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tower::{Layer, ServiceBuilder};
use tower_http::limit::RequestBodyLimitLayer;

use super::stage::Downstream;
use crate::GatewayError;
use crate::error::PendingError;

/// The limit, as extractors that read a body see it, to name it when a body hits it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

impl BodyLimit {
    pub(crate) fn of(request: &axum::extract::Request) -> usize {
        request.extensions().get::<BodyLimit>().map_or(0, |limit| limit.0)
    }
}

/// The limit as a stack of layers, for the inbound stack to apply with its neighbours.
pub(crate) fn layer<S: Downstream + Clone + Sync>(
    limit: usize,
) -> impl Layer<S, Service: Downstream + Clone + Sync> + Clone + Send + Sync + 'static {
    ServiceBuilder::new()
        .map_response(brand_payload_too_large(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        // The limited body goes on as the one body type the services below take.
        .map_request(move |mut request: http::Request<tower_http::body::Limited<axum::body::Body>>| {
            request.extensions_mut().insert(BodyLimit(limit));
            request.map(axum::body::Body::new)
        })
        // This stack's limit is the one; axum's own 2 MB default would silently cap it.
        .layer(DefaultBodyLimit::disable())
}

/// tower-http refuses a declared `Content-Length` over the limit with a bare 413; this brands it.
fn brand_payload_too_large<B>(limit: usize) -> impl Fn(http::Response<B>) -> Response + Clone
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    move |response| {
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE && response.extensions().get::<PendingError>().is_none() {
            GatewayError::PayloadTooLarge { limit }.into_response()
        } else {
            response.map(axum::body::Body::new)
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;
    use crate::error::ErrorCode;

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_the_handler_runs() {
        let router = Router::new().route("/", post(|| async { "the handler ran" })).layer(layer(1024));
        let request =
            axum::extract::Request::post("/").header("content-length", "4096").body(Body::from(vec![0u8; 4096]));
        let response = router.oneshot(request.unwrap()).await.unwrap();
        assert_eq!(response.status(), 413);
        assert_eq!(response.extensions().get::<PendingError>().map(|e| e.0.code()), Some(ErrorCode::PayloadTooLarge));
    }
}
