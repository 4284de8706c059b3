//! The per-backend service stack, and the layers this crate provides for it.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::context::{CallOutcome, UpstreamCall};
use crate::{Call, CallContext, GrpcTransport, RestTransport, Target, UpstreamConfig, UpstreamError, UpstreamRequest};

/// Any layer of a backend's stack, once composed.
pub type UpstreamService = BoxCloneSyncService<UpstreamRequest, Bytes, UpstreamError>;

/// One backend: its name, its service stack, and its transport (for readiness probes, which carry
/// no request and bypass the stack). Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Upstream {
    service: &'static str,
    stack: UpstreamService,
    transport: Transport,
}

#[derive(Clone)]
enum Transport {
    Rest(RestTransport),
    Grpc(GrpcTransport),
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("service", &self.service).finish_non_exhaustive()
    }
}

impl Upstream {
    /// A JSON-over-HTTP backend.
    pub fn rest(service: &'static str, config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let transport = RestTransport::new(service, config)?;
        Ok(Self { service, stack: stack(service, config, transport.clone()), transport: Transport::Rest(transport) })
    }

    /// A gRPC backend: one lazily connected, multiplexed HTTP/2 channel, so a BFF starts while the
    /// backend is down.
    pub fn grpc(service: &'static str, config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let transport = GrpcTransport::new(service, config)?;
        Ok(Self { service, stack: stack(service, config, transport.clone()), transport: Transport::Grpc(transport) })
    }

    /// Sends `call` down the stack on behalf of the request `cx` describes.
    pub async fn call(&self, cx: &CallContext, call: Call) -> Result<Bytes, UpstreamError> {
        self.stack.clone().oneshot(UpstreamRequest { cx: cx.clone(), call, budget: None }).await
    }

    /// [`Upstream::call`], decoding a JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, cx: &CallContext, call: Call) -> Result<T, UpstreamError> {
        let body = self.call(cx, call).await?;
        serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::BadBody { service: self.service, reason: e.to_string() })
    }

    /// [`Upstream::call`], decoding a protobuf answer.
    pub async fn unary<T: prost::Message + Default>(&self, cx: &CallContext, call: Call) -> Result<T, UpstreamError> {
        let body = self.call(cx, call).await?;
        T::decode(body).map_err(|e| UpstreamError::BadBody { service: self.service, reason: e.to_string() })
    }

    /// A server-streaming RPC, decoded message by message. See
    /// [`GrpcTransport`](crate::GrpcTransport) for why streams bypass the unary stack; opening
    /// one is recorded like any call.
    pub async fn server_stream<T: prost::Message + Default + 'static>(
        &self,
        cx: &CallContext,
        call: Call,
    ) -> Result<futures::stream::BoxStream<'static, Result<T, UpstreamError>>, UpstreamError> {
        use futures::StreamExt as _;
        let (Transport::Grpc(grpc), Target::Grpc { path, message }) = (&self.transport, call.target) else {
            return Err(self.not_a("gRPC streaming"));
        };
        let started = Instant::now();
        let opened = grpc.server_streaming(cx, path, message).await;
        let outcome = match &opened {
            Ok(_) => CallOutcome::Ok,
            Err(e) => CallOutcome::Failed(e.kind()),
        };
        cx.record(UpstreamCall {
            service: self.service,
            operation: call.operation,
            latency: started.elapsed(),
            outcome,
        });
        let (grpc, service) = (grpc.clone(), self.service);
        Ok(opened?
            .map(move |message| match message {
                Ok(bytes) => T::decode(bytes).map_err(|e| UpstreamError::BadBody { service, reason: e.to_string() }),
                Err(status) => Err(grpc.stream_error(&status)),
            })
            .boxed())
    }

    /// Readiness of a REST backend: does `GET /segment/..` answer with a success status in time?
    pub async fn probe_rest(&self, path: &[&str]) -> Result<(), UpstreamError> {
        match &self.transport {
            Transport::Rest(rest) => rest.probe(path).await,
            Transport::Grpc(_) => Err(self.not_a("REST")),
        }
    }

    /// The gRPC channel, for the standard health check.
    pub fn grpc_channel(&self) -> Result<(tonic::transport::Channel, Duration), UpstreamError> {
        match &self.transport {
            Transport::Grpc(grpc) => Ok((grpc.channel(), grpc.timeout())),
            Transport::Rest(_) => Err(self.not_a("gRPC")),
        }
    }

    fn not_a(&self, kind: &str) -> UpstreamError {
        UpstreamError::Config { service: self.service, reason: format!("not a {kind} backend") }
    }
}

/// The stack every backend gets, outermost first. The resilience layers slot in where named.
fn stack<T>(service: &'static str, config: &UpstreamConfig, transport: T) -> UpstreamService
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
            .layer(DeadlineLayer::new(service, config.timeout))
            // [retry]: `UpstreamError::is_retryable`, within the budget, with a retry budget.
            // [breaker]: `UpstreamError::is_backend_failure` opens it; open fails fast.
            // [balance]: across the backend's instances.
            .service(transport),
    )
}

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

impl<S> Service<UpstreamRequest> for Record<S>
where
    S: Service<UpstreamRequest, Response = Bytes, Error = UpstreamError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Bytes;
    type Error = UpstreamError;
    type Future = BoxFuture<'static, Result<Bytes, UpstreamError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        let (service, operation, cx) = (self.service, request.call.operation, request.cx.clone());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let outcome = match &result {
                Ok(_) => CallOutcome::Ok,
                Err(e) => CallOutcome::Failed(e.kind()),
            };
            cx.record(UpstreamCall { service, operation, latency: started.elapsed(), outcome });
            result
        })
    }
}

/// Gives each call its budget (its timeout, cut to what remains of the request's deadline), tells
/// the transport so it can tell the backend, and gives up when it is spent. A request whose
/// deadline has passed makes no call at all. Waiting for the layers below to be ready (a full
/// channel, later a limit or an open breaker) is spent from the same budget, so this layer is
/// always ready itself and drives the readiness of what is below inside its timer.
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    service: &'static str,
    timeout: Duration,
}

impl DeadlineLayer {
    pub fn new(service: &'static str, timeout: Duration) -> Self {
        Self { service, timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline { service: self.service, timeout: self.timeout, inner }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    service: &'static str,
    timeout: Duration,
    inner: S,
}

impl<S> Service<UpstreamRequest> for Deadline<S>
where
    S: Service<UpstreamRequest, Response = Bytes, Error = UpstreamError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Bytes;
    type Error = UpstreamError;
    type Future = BoxFuture<'static, Result<Bytes, UpstreamError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: UpstreamRequest) -> Self::Future {
        let service = self.service;
        let budget = match request.cx.budget(service, self.timeout) {
            Ok(budget) => budget,
            Err(spent) => return Box::pin(std::future::ready(Err(spent))),
        };
        request.budget = Some(budget);
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

    use super::*;

    /// A transport that answers at once and remembers the budget of each call it was given.
    #[derive(Clone, Default)]
    struct Recording(Arc<Mutex<Vec<Option<Duration>>>>);

    impl Service<UpstreamRequest> for Recording {
        type Response = Bytes;
        type Error = UpstreamError;
        type Future = std::future::Ready<Result<Bytes, UpstreamError>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: UpstreamRequest) -> Self::Future {
            self.0.lock().unwrap().push(request.budget);
            std::future::ready(Ok(Bytes::new()))
        }
    }

    fn stack(transport: Recording) -> impl Service<UpstreamRequest, Response = Bytes, Error = UpstreamError> {
        ServiceBuilder::new()
            .layer(RecordLayer::new("test"))
            .layer(DeadlineLayer::new("test", Duration::from_secs(2)))
            .service(transport)
    }

    fn request(cx: CallContext) -> UpstreamRequest {
        UpstreamRequest { cx, call: Call::get("GET /things/{id}", ["things", "t-1"]), budget: None }
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
        assert_eq!(budgets[0], Some(Duration::from_secs(2)), "no deadline: the backend's own timeout");
        let cut = budgets[1].unwrap();
        assert!(cut < Duration::from_millis(300) && !cut.is_zero(), "{cut:?}");
    }
}
