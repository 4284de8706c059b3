//! [`Upstream`]: the handle a typed client holds for one backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use crate::context::{CallOutcome, UpstreamCall};
use crate::stack::{UpstreamService, stack};
use crate::{Call, CallContext, GrpcTransport, RestTransport, Target, UpstreamConfig, UpstreamError, UpstreamRequest};

/// One backend: its name, its service stack, and the transport of its first instance (for
/// readiness probes and server streams, which bypass the stack). Cheap to clone; clones share
/// connections.
#[derive(Clone)]
pub struct Upstream {
    service: &'static str,
    stack: UpstreamService,
    transport: Transport,
    /// Operations the config marks idempotent besides what the typed client says.
    idempotent: Arc<[String]>,
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
        let stack = stack(service, config, |url| RestTransport::new(service, config, url))?;
        let transport = Transport::Rest(RestTransport::new(service, config, &config.url)?);
        Ok(Self { service, stack, transport, idempotent: config.idempotent.clone().into() })
    }

    /// A gRPC backend: one lazily connected, multiplexed HTTP/2 channel per instance, so a BFF
    /// starts while the backend is down.
    pub fn grpc(service: &'static str, config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let stack = stack(service, config, |url| GrpcTransport::new(service, config, url))?;
        let transport = Transport::Grpc(GrpcTransport::new(service, config, &config.url)?);
        Ok(Self { service, stack, transport, idempotent: config.idempotent.clone().into() })
    }

    /// Sends `call` down the stack on behalf of the request `cx` describes.
    pub async fn call(&self, cx: &CallContext, mut call: Call) -> Result<Bytes, UpstreamError> {
        if !call.idempotent && self.idempotent.iter().any(|operation| operation == call.operation) {
            call.idempotent = true;
        }
        self.stack.clone().oneshot(UpstreamRequest::new(cx.clone(), call)).await.map(|answer| answer.body)
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
            started,
            latency: started.elapsed(),
            outcome,
            decisions: crate::trace::CallTrace::default().decisions(),
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
