//! The inbound side of every BFF: what a request meets before a BFF's own code runs. One folder
//! (or file) per concern, each with its config beside it:
//!
//! - [`inbound`]: the one stack every BFF serves through, composed in request order in one
//!   function, with a file per stage and named slots before and after authentication;
//! - [`auth`]: JWTs verified against a JWKS, and hashed API keys, into an [`Identity`];
//! - [`limits`]: traffic limits (today: failed authentication attempts per client address);
//! - [`error`]: [`GatewayError`], every code once ([`ErrorCode`]), and how errors are rendered;
//! - [`graphql`] and [`rest`]: request execution, extractors with gateway-branded rejections,
//!   idempotency;
//! - [`backends`]: a BFF's backends declared once;
//! - [`store`]: the shared store (`[redis]`);
//! - [`server`] (hyper-util with connection limits and graceful shutdown, TLS), [`health`],
//!   [`telemetry`], [`cli`] (the thin `main` of a BFF), [`config`] (the loader).
//!
//! This crate knows nothing of the domain; it hands `bff-upstream` a per-request
//! [`bff_upstream::CallContext`] through [`RequestContext`].

pub mod auth;
pub mod backends;
pub mod cli;
pub mod config;
mod context;
pub mod error;
pub mod graphql;
pub mod health;
pub mod inbound;
pub mod limits;
pub mod reload;
pub mod rest;
pub mod server;
pub mod store;
pub mod telemetry;

pub use auth::Authenticator;
pub use bff_upstream::Identity;
pub use context::{RequestContext, RequestDeadline, RequestId, RequestLog};
pub use error::{BuildError, ErrorCode, ErrorFormat, GatewayError};

/// What the [`backends!`] macro names from other crates.
#[doc(hidden)]
pub mod __private {
    pub use bff_upstream::{HealthRegistry, UpstreamError};
}
