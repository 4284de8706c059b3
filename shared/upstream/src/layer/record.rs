//! Records each call in the request's call list.

use std::time::Instant;

use tower::ServiceExt;

use super::{Below, CallFuture, CallLayer};
use crate::UpstreamRequest;
use crate::context::{CallOutcome, UpstreamCall};

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

impl CallLayer for RecordLayer {
    fn call<S: Below>(&self, inner: S, request: UpstreamRequest) -> CallFuture {
        use tracing::Instrument as _;
        let (service, operation, cx) = (self.service, request.call.operation, request.cx.clone());
        let trace = request.trace.clone();
        let started = Instant::now();
        // A client span per call of a sampled request, named by its template; the transports send
        // its trace context. A request not sampled has no span to be the parent of one.
        let span = if crate::context::tracing_on() && !tracing::Span::current().is_none() {
            tracing::info_span!(
                "upstream",
                otel.name = operation,
                otel.kind = "client",
                backend = service,
                outcome = tracing::field::Empty,
                cache = tracing::field::Empty,
                attempts = tracing::field::Empty,
                instance = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let response = inner.oneshot(request);
        Box::pin(
            async move {
                let result = response.await;
                let outcome = match &result {
                    Ok(_) => CallOutcome::Ok,
                    Err(e) => CallOutcome::Failed(e.kind()),
                };
                let decisions = trace.decisions();
                let span = tracing::Span::current();
                span.record("outcome", outcome.as_str());
                span.record("cache", decisions.cache.as_str());
                span.record("attempts", decisions.attempts);
                if let Some(instance) = &decisions.instance {
                    span.record("instance", &**instance);
                }
                cx.record(UpstreamCall { service, operation, started, latency: started.elapsed(), outcome, decisions });
                result
            }
            .instrument(span),
        )
    }
}
