//! The outbound side of every BFF.
//!
//! A backend call is a value, an [`UpstreamRequest`]: the backend, the operation as a template
//! (`GET /users/{id}`, or the gRPC method), its parameters, the fields asked for, whether it is
//! idempotent, its cache policy, and the per-request [`CallContext`] the inbound side handed over.
//! Each backend has one [`Upstream`]: a tower service stack, built from config, between the typed
//! clients of `bff-backends` and the wire. In request order:
//!
//! 1. [`layer::RecordLayer`]: one record per call, keyed by the operation template (never a raw
//!    id), for the access log, and later metrics and spans;
//! 2. cache, then coalescing (named slots, filled by the resilience issue);
//! 3. [`layer::CallBudgetLayer`]: the call's budget, the smaller of its timeout and what remains of
//!    the inbound request's deadline; no call at all once that is spent;
//! 4. retry, circuit breaker, balancing (named slots, filled by the resilience issue);
//! 5. the transport: [`RestTransport`] (reqwest, JSON) or [`GrpcTransport`] (tonic, raw protobuf
//!    bytes, so one stack serves every RPC).
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
pub mod layer;
pub mod stack;
mod transport;
mod upstream;

pub use call::{CachePolicy, Call, Target, UpstreamRequest};
pub use config::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_UPSTREAM_TIMEOUT, UpstreamConfig, Upstreams};
pub use context::{CallContext, CallOutcome, CallRecorder, Credential, Identity, UpstreamCall, headers};
pub use error::UpstreamError;
pub use transport::grpc::GrpcTransport;
pub use transport::rest::RestTransport;
pub use transport::tls;
pub use upstream::Upstream;

/// A backend (or anything else a BFF needs) that can say whether it is ready to serve.
pub trait Probe: Send + Sync + 'static {
    /// `Err` explains what is wrong, for the readiness report.
    fn probe(&self) -> impl std::future::Future<Output = Result<(), String>> + Send;
}
