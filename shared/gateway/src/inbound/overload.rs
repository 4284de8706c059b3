//! At most `[server] max_concurrent_requests` in flight; past it an immediate 503 `OVERLOADED`
//! with `Retry-After`, never a queue (tower's `GlobalConcurrencyLimit` under `LoadShed`).

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;

use crate::GatewayError;

/// The limit, as one layer: a refusal is answered at once, never queued. (The type is spelled out
/// so the stack can compose it with the core's other layers into one tower stack.)
#[allow(clippy::type_complexity)]
pub(crate) fn layer(
    max_concurrent_requests: usize,
    retry_after: Duration,
) -> ServiceBuilder<
    Stack<
        GlobalConcurrencyLimitLayer,
        Stack<
            LoadShedLayer,
            Stack<HandleErrorLayer<impl Fn(tower::BoxError) -> std::future::Ready<Response> + Clone, ()>, Identity>,
        >,
    >,
> {
    ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overloaded(retry_after)))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(max_concurrent_requests))
}

/// `router` behind the limit.
#[cfg(test)]
fn limit(router: axum::Router, max_concurrent_requests: usize, retry_after: Duration) -> axum::Router {
    router.layer(layer(max_concurrent_requests, retry_after).map_response(IntoResponse::into_response))
}

/// What the load shedder's refusal becomes.
fn overloaded(retry_after: Duration) -> impl Fn(tower::BoxError) -> std::future::Ready<Response> + Clone {
    move |error| {
        let response = if error.is::<tower::load_shed::error::Overloaded>() {
            GatewayError::Overloaded { retry_after }
        } else {
            GatewayError::Internal(format!("inbound stack failed: {error}"))
        };
        std::future::ready(response.into_response())
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::error::{ErrorCode, PendingError};

    #[tokio::test]
    async fn past_the_limit_a_request_is_refused_at_once_not_queued() {
        let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
        let entered_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(entered_tx)));
        let router = axum::Router::new().route(
            "/",
            get(move || {
                let entered_tx = entered_tx.clone();
                async move {
                    let first = entered_tx.lock().unwrap().take();
                    if let Some(tx) = first {
                        let _ = tx.send(());
                        // The first request holds the only slot.
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    "ok"
                }
            }),
        );
        let router = limit(router, 1, Duration::from_secs(2));
        let first = tokio::spawn(router.clone().oneshot(axum::extract::Request::get("/").body(Body::empty()).unwrap()));
        entered.await.unwrap();
        let second = router.oneshot(axum::extract::Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(second.status(), 503);
        assert_eq!(second.extensions().get::<PendingError>().map(|e| e.0.code()), Some(ErrorCode::Overloaded));
        first.abort();
    }
}
