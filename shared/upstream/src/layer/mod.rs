//! The layers of a backend's stack, one file each, with the config of each beside it;
//! [`crate::stack`] puts them in order.

mod balance;
mod breaker;
mod bulkhead;
mod cache;
mod call_budget;
mod coalesce;
mod hedge;
mod mirror;
mod record;
mod retry;
mod split;

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::{Answer, UpstreamError, UpstreamRequest};

/// What a layer's call returns.
pub type CallFuture = BoxFuture<'static, Result<Answer, UpstreamError>>;

/// What lies below a layer: the rest of the backend's stack.
pub trait Below:
    Service<UpstreamRequest, Response = Answer, Error = UpstreamError, Future: Send + 'static> + Clone + Send + 'static
{
}

impl<S> Below for S where
    S: Service<UpstreamRequest, Response = Answer, Error = UpstreamError, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// What one layer does with a call, given the rest of the stack below it. Every layer but the
/// budget (which is always ready itself) and the balancer (which picks an instance per call) is
/// one of these, made a tower layer by [`Layered`]: the layer's own code is only this.
pub trait CallLayer: Clone + Send + Sync + 'static {
    fn call<S: Below>(&self, inner: S, request: UpstreamRequest) -> CallFuture;
}

/// A [`CallLayer`] as a tower layer.
#[derive(Debug, Clone)]
pub struct Layered<L>(pub L);

impl<L: CallLayer, S> Layer<S> for Layered<L> {
    type Service = LayeredService<L, S>;

    fn layer(&self, inner: S) -> Self::Service {
        LayeredService { layer: self.0.clone(), inner }
    }
}

/// The service of a [`Layered`]: ready when what is below is, and the ready service goes into
/// the call (a fresh clone waits for the next `poll_ready`).
#[derive(Debug, Clone)]
pub struct LayeredService<L, S> {
    layer: L,
    inner: S,
}

impl<L: CallLayer, S: Below> Service<UpstreamRequest> for LayeredService<L, S> {
    type Response = Answer;
    type Error = UpstreamError;
    type Future = CallFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        self.layer.call(ready, request)
    }
}

pub use balance::{Balance, BreakerHandle, Instance};
pub use breaker::Breaker;
pub use breaker::BreakerConfig;
pub use bulkhead::{BulkheadConfig, BulkheadLayer};
pub use cache::{CacheConfig, CacheLayer, OperationCache, SecondLevel, SecondLevelHandle};
pub use call_budget::{CallBudget, CallBudgetLayer};
pub use coalesce::CoalesceLayer;
pub use hedge::{HedgeConfig, HedgeLayer};
pub use mirror::{MirrorConfig, MirrorLayer};
pub use record::RecordLayer;
pub use retry::{RetryBudget, RetryConfig, RetryLayer};
pub use split::{CanaryConfig, Split};
