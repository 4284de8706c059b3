//! The inbound side of every BFF: what a request meets before a BFF's own code runs.
//!
//! - [`config`]: TOML config with environment overrides, validated with key paths.
//! - [`stack`]: the one inbound stack every BFF serves through, in request order; a BFF adds its
//!   own stages at one named point.
//! - [`middleware`]: the gateway's own tower layers that stack composes with tower and tower-http.
//! - [`auth`]: JWTs verified against a JWKS, and hashed API keys, into a [`Principal`].
//! - [`error`]: [`GatewayError`], its stable codes, and the one place that renders errors as
//!   RFC 9457 problem+json or GraphQL errors.
//! - [`graphql`] and [`rest`]: request execution and extractors with gateway-branded rejections.
//! - [`health`], [`server`] (hyper-util with connection limits and graceful shutdown), [`cli`]
//!   (the thin `main` of a BFF),
//!   [`telemetry`].
//!
//! This crate knows nothing of the domain; it hands `bff-upstream` a per-request
//! [`bff_upstream::CallContext`] through [`RequestContext`].

pub mod auth;
pub mod cli;
pub mod config;
mod context;
pub mod error;
pub mod graphql;
pub mod health;
pub mod idempotency;
pub mod middleware;
pub mod rest;
pub mod server;
pub mod shared_state;
pub mod stack;
pub mod telemetry;
pub mod tls;

pub use auth::{Authenticator, Principal};
pub use context::{Deadline, RequestContext, RequestId, RequestLog};
pub use error::{BuildError, ErrorFormat, GatewayError};
