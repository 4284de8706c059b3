//! The outbound side of every BFF.
//!
//! A backend call is a value, an [`UpstreamRequest`]: the backend, the operation as a template
//! (`GET /users/{id}`, or the gRPC method), its parameters, the fields asked for, whether it is
//! idempotent and whether it is a read, and the per-request [`CallContext`] the inbound side handed over.
//! Each backend has one [`Upstream`]: a tower service stack, built from config, between the typed
//! clients of `bff-backends` and the wire. In request order:
//!
//! 1. [`layer::RecordLayer`]: one record per call, keyed by the operation template (never a raw
//!    id), with what every layer below decided (cache status, attempts, hedges, instance,
//!    breaker), for the access log, and later metrics and spans;
//! 2. [`layer::Split`]: a canary's share of callers, sticky per caller, to a version of its own
//!    (everything below is per version);
//! 3. [`layer::CacheLayer`]: stored answers, keyed from the wire ([`AnswerKey`]);
//! 4. [`layer::CoalesceLayer`]: one backend call for concurrent identical reads, same key;
//! 5. [`layer::CallBudgetLayer`]: the call's budget, the smaller of its timeout and what remains of
//!    the inbound request's deadline; no call at all once that is spent;
//! 6. [`layer::MirrorLayer`]: a copy to a shadow backend, fire and forget;
//! 7. [`layer::BulkheadLayer`]: at most N calls in flight to the backend;
//! 8. [`layer::RetryLayer`] and [`layer::HedgeLayer`]: safe failures tried again, slow reads
//!    hedged, both within one retry budget;
//! 9. [`layer::Balance`]: power of two choices over the instances, a circuit breaker per
//!    instance (passive outlier ejection);
//! 10. the transport of each instance: [`RestTransport`] (reqwest, JSON) or [`GrpcTransport`]
//!     (tonic, raw protobuf bytes, so one stack serves every RPC).
//!
//! Both transports forward the request id and the *verified* identity as trusted headers or gRPC
//! metadata, tell the backend its deadline (`grpc-timeout`, or [`headers::REQUEST_TIMEOUT_MS`] for
//! REST), speak TLS through rustls, and fail with one [`UpstreamError`] whose kinds carry what
//! retry and breaker decisions need.
//!
//! Files: [`upstream`](Upstream) (the handle), [`stack`] (composition only), [`layer`] (one file
//! per layer), `transport/` (REST, gRPC, TLS), [`Call`] and [`CallContext`] (what a call is and
//! carries), [`UpstreamError`].
//!
//! This crate knows nothing of the inbound side or of the domain.

mod call;
mod config;
mod context;
mod error;
mod health;
mod key;
pub mod layer;
pub mod stack;
mod trace;
mod transport;
mod upstream;

pub use call::{Answer, CacheControl, Call, Target, UpstreamRequest};
pub use config::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_UPSTREAM_TIMEOUT, UpstreamConfig, Upstreams};
pub use context::{
    CallContext, CallOutcome, CallRecorder, Credential, Identity, TraceHeaders, UpstreamCall, headers,
    propagate_trace_context,
};
pub use error::UpstreamError;
pub use health::{HealthRegistry, InstanceHealth};
pub use key::{AnswerKey, Scope};
pub use trace::{BreakerState, CacheStatus, CallDecisions, CallTrace};
pub use transport::grpc::GrpcTransport;
pub use transport::rest::RestTransport;
pub use transport::tls;
pub use upstream::Upstream;

/// A backend (or anything else a BFF needs) that can say whether it is ready to serve.
pub trait Probe: Send + Sync + 'static {
    /// `Err` explains what is wrong, for the readiness report.
    fn probe(&self) -> impl std::future::Future<Output = Result<(), String>> + Send;
}
