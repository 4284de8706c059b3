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

use futures::future::BoxFuture;
use tower::Service;

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

pub use balance::{Balance, Instance};
pub use breaker::BreakerConfig;
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadLayer};
pub use cache::{Cache, CacheConfig, CacheLayer, OperationCache, SecondLevel, SecondLevelHandle};
pub use call_budget::{CallBudget, CallBudgetLayer};
pub use coalesce::{Coalesce, CoalesceLayer};
pub use hedge::{Hedge, HedgeConfig, HedgeLayer};
pub use mirror::{Mirror, MirrorConfig, MirrorLayer};
pub use record::{Record, RecordLayer};
pub use retry::{Retry, RetryBudget, RetryConfig, RetryLayer};
pub use split::{CanaryConfig, Split};
