//! What sends a call over the wire: JSON over HTTP, or gRPC; both over rustls.

pub(crate) mod grpc;
pub(crate) mod rest;
pub mod tls;
