//! The per-backend service stack, composed in one function that reads in request order. A new
//! layer is a file in [`crate::layer`] plus one line here.

use bytes::Bytes;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};

use crate::layer::{CallBudgetLayer, RecordLayer};
use crate::{UpstreamConfig, UpstreamError, UpstreamRequest};

/// Any layer of a backend's stack, once composed.
pub type UpstreamService = BoxCloneSyncService<UpstreamRequest, Bytes, UpstreamError>;

/// The stack every backend gets, outermost first. The resilience layers slot in where named.
pub(crate) fn stack<T>(service: &'static str, config: &UpstreamConfig, transport: T) -> UpstreamService
where
    T: Service<UpstreamRequest, Response = Bytes, Error = UpstreamError> + Clone + Send + Sync + 'static,
    T::Future: Send + 'static,
{
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            // Every call, whoever answers it (a cache, a coalesced peer, the backend), is recorded
            // once, under its operation template.
            .layer(RecordLayer::new(service))
            // [cache]: answers `CachePolicy::Private`/`Public` calls from stored responses.
            // [coalesce]: one in-flight backend call per identical request.
            // The budget covers every attempt below, so retries cannot outlive the request.
            .layer(CallBudgetLayer::new(service, config.timeout))
            // [retry]: `UpstreamError::is_retryable`, within the budget, with a retry budget.
            // [breaker]: `UpstreamError::is_backend_failure` opens it; open fails fast.
            // [balance]: across the backend's instances.
            .service(transport),
    )
}
