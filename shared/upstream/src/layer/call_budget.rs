//! The call's budget: its timeout, cut to what remains of the request's deadline.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower::{Layer, Service, ServiceExt};

use super::{Below, CallFuture};
use crate::{Answer, UpstreamError, UpstreamRequest};

/// Gives each call its budget (its timeout, cut to what remains of the request's deadline), tells
/// the transport so it can tell the backend, and gives up when it is spent. A request whose
/// deadline has passed makes no call at all. Waiting for the layers below to be ready (a full
/// channel, later a limit or an open breaker) is spent from the same budget, so this layer is
/// always ready itself and drives the readiness of what is below inside its timer.
#[derive(Debug, Clone)]
pub struct CallBudgetLayer {
    service: &'static str,
    timeout: Duration,
}

impl CallBudgetLayer {
    pub fn new(service: &'static str, timeout: Duration) -> Self {
        Self { service, timeout }
    }
}

impl<S> Layer<S> for CallBudgetLayer {
    type Service = CallBudget<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallBudget { service: self.service, timeout: self.timeout, inner }
    }
}

#[derive(Debug, Clone)]
pub struct CallBudget<S> {
    service: &'static str,
    timeout: Duration,
    inner: S,
}

impl<S: Below> Service<UpstreamRequest> for CallBudget<S> {
    type Response = Answer;
    type Error = UpstreamError;
    type Future = CallFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: UpstreamRequest) -> Self::Future {
        let service = self.service;
        let budget = match request.cx.budget(service, self.timeout) {
            Ok(budget) => budget,
            Err(spent) => return Box::pin(std::future::ready(Err(spent))),
        };
        request.deadline = Some(Instant::now() + budget);
        let response = self.inner.clone().oneshot(request);
        Box::pin(async move {
            tokio::time::timeout(budget, response)
                .await
                .unwrap_or(Err(UpstreamError::Timeout { service, after: budget }))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tower::ServiceBuilder;

    use super::*;
    use crate::{Call, CallContext, CallOutcome};

    /// A transport that answers at once and remembers the budget of each call it was given.
    #[derive(Clone, Default)]
    struct Recording(Arc<Mutex<Vec<Option<Duration>>>>);

    impl Service<UpstreamRequest> for Recording {
        type Response = Answer;
        type Error = UpstreamError;
        type Future = std::future::Ready<Result<Answer, UpstreamError>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: UpstreamRequest) -> Self::Future {
            self.0.lock().unwrap().push(request.remaining());
            std::future::ready(Ok(Answer::default()))
        }
    }

    fn stack(transport: Recording) -> impl Service<UpstreamRequest, Response = Answer, Error = UpstreamError> {
        ServiceBuilder::new()
            .layer(crate::layer::Layered(crate::layer::RecordLayer::new("test")))
            .layer(CallBudgetLayer::new("test", Duration::from_secs(2)))
            .service(transport)
    }

    fn request(cx: CallContext) -> UpstreamRequest {
        UpstreamRequest::new(cx, Call::get("GET /things/{id}", ["things", "t-1"]))
    }

    #[tokio::test]
    async fn a_spent_deadline_makes_no_call_and_is_recorded_as_a_timeout() {
        let transport = Recording::default();
        let recorder = crate::CallRecorder::default();
        let cx = CallContext::new("r").with_deadline(Instant::now()).with_recorder(recorder.clone());
        let error = stack(transport.clone()).oneshot(request(cx)).await.unwrap_err();
        assert_eq!(error.kind(), "timeout");
        assert!(transport.0.lock().unwrap().is_empty(), "the transport was called");
        let calls = recorder.calls();
        assert_eq!((calls.len(), calls[0].operation), (1, "GET /things/{id}"));
        assert_eq!(calls[0].outcome, CallOutcome::Failed("timeout"));
    }

    #[tokio::test]
    async fn the_budget_is_the_timeout_cut_to_the_request_deadline() {
        let transport = Recording::default();
        stack(transport.clone()).oneshot(request(CallContext::new("r"))).await.unwrap();
        let soon = CallContext::new("r").with_deadline(Instant::now() + Duration::from_millis(300));
        stack(transport.clone()).oneshot(request(soon)).await.unwrap();
        let budgets = transport.0.lock().unwrap().clone();
        let own = budgets[0].unwrap();
        assert!(
            own <= Duration::from_secs(2) && own > Duration::from_millis(1900),
            "no deadline: the backend's own timeout"
        );
        let cut = budgets[1].unwrap();
        assert!(cut < Duration::from_millis(300) && !cut.is_zero(), "{cut:?}");
    }
}
