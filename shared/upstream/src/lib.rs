//! The outbound side of every BFF.
//!
//! One REST client ([`RestClient`]) and one gRPC channel wrapper ([`GrpcChannel`]) that every typed
//! backend client is built on. Both do the same things the same way:
//! - cap each call at the smaller of its configured timeout and the inbound request's remaining
//!   deadline, and refuse to call at all once that deadline has passed;
//! - forward the request id and the *verified* identity (never anything the client sent) as trusted
//!   headers or gRPC metadata;
//! - record every call (service, operation, latency, outcome) for the inbound access log;
//! - fail with one [`UpstreamError`] that says which backend failed and how.
//!
//! This crate knows nothing of the inbound side or of the domain: the inbound side hands it a
//! [`CallContext`] per request, and the typed clients in `bff-backends` name the services.
//! Retries, circuit breakers, caching and coalescing belong here too, at the single `send` path of
//! each client.

mod config;
mod context;
mod error;
mod grpc;
mod rest;

pub use config::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_UPSTREAM_TIMEOUT, UpstreamConfig};
pub use context::{CallContext, CallOutcome, CallRecorder, Identity, UpstreamCall, headers};
pub use error::UpstreamError;
pub use grpc::GrpcChannel;
pub use rest::RestClient;

/// A backend (or anything else a BFF needs) that can say whether it is ready to serve.
pub trait Probe: Send + Sync + 'static {
    /// `Err` explains what is wrong, for the readiness report.
    fn probe(&self) -> impl std::future::Future<Output = Result<(), String>> + Send;
}
