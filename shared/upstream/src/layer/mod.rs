//! The layers of a backend's stack, one file each; [`crate::stack`] puts them in order.

mod call_budget;
mod record;

use bytes::Bytes;
use futures::future::BoxFuture;
use tower::Service;

use crate::{UpstreamError, UpstreamRequest};

/// What a layer's call returns.
pub type CallFuture = BoxFuture<'static, Result<Bytes, UpstreamError>>;

/// What lies below a layer: the rest of the backend's stack.
pub trait Below:
    Service<UpstreamRequest, Response = Bytes, Error = UpstreamError, Future: Send + 'static> + Clone + Send + 'static
{
}

impl<S> Below for S where
    S: Service<UpstreamRequest, Response = Bytes, Error = UpstreamError, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

pub use call_budget::{CallBudget, CallBudgetLayer};
pub use record::{Record, RecordLayer};
