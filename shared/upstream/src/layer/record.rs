//! Records each call in the request's call list.

use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

use super::{Below, CallFuture};
use crate::context::{CallOutcome, UpstreamCall};
use crate::{Answer, UpstreamError, UpstreamRequest};

/// Records each call (template, latency, outcome) in the request's call list, for the access log.
#[derive(Debug, Clone)]
pub struct RecordLayer {
    service: &'static str,
}

impl RecordLayer {
    pub fn new(service: &'static str) -> Self {
        Self { service }
    }
}

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Record { service: self.service, inner }
    }
}

#[derive(Debug, Clone)]
pub struct Record<S> {
    service: &'static str,
    inner: S,
}

impl<S: Below> Service<UpstreamRequest> for Record<S> {
    type Response = Answer;
    type Error = UpstreamError;
    type Future = CallFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        let (service, operation, cx) = (self.service, request.call.operation, request.cx.clone());
        let trace = request.trace.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let outcome = match &result {
                Ok(_) => CallOutcome::Ok,
                Err(e) => CallOutcome::Failed(e.kind()),
            };
            let decisions = trace.decisions();
            cx.record(UpstreamCall { service, operation, latency: started.elapsed(), outcome, decisions });
            result
        })
    }
}
