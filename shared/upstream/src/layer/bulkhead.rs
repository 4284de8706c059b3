//! At most N calls in flight per backend; past it a call fails at once.

use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use super::{Below, CallFuture, CallLayer};
use crate::{UpstreamError, UpstreamRequest};

/// `[upstreams.NAME.bulkhead]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Calls to this backend in flight at once, retries and hedges included in their call.
    pub max_in_flight: usize,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self { max_in_flight: 256 }
    }
}

impl BulkheadConfig {
    pub(crate) fn validate(&self) -> Vec<(&'static str, String)> {
        match self.max_in_flight {
            1..=100_000 => Vec::new(),
            _ => vec![("bulkhead.max_in_flight", "must be between 1 and 100000".to_owned())],
        }
    }
}

/// Fails a call at once with [`UpstreamError::BulkheadFull`] when the backend already has
/// `max_in_flight` calls: a slow backend then holds at most that many of the BFF's requests
/// waiting, and every other backend's calls go on. Failing rather than queueing keeps the wait
/// bounded by nothing but the backend's own latency.
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    service: &'static str,
    limit: usize,
    permits: Arc<Semaphore>,
}

impl BulkheadLayer {
    pub fn new(service: &'static str, config: &BulkheadConfig) -> Self {
        Self { service, limit: config.max_in_flight, permits: Arc::new(Semaphore::new(config.max_in_flight)) }
    }
}

impl CallLayer for BulkheadLayer {
    fn call<S: Below>(&self, inner: S, request: UpstreamRequest) -> CallFuture {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            let (service, limit) = (self.service, self.limit);
            return Box::pin(std::future::ready(Err(UpstreamError::BulkheadFull { service, limit })));
        };
        let response = inner.oneshot(request);
        Box::pin(async move {
            let result = response.await;
            drop(permit);
            result
        })
    }
}
