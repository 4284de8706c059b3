//! The partner BFF: a versioned REST API for third-party partners.
//!
//! Every route under `/v1` needs one credential: an `X-API-Key` (stored hashed in config) or an
//! OAuth2 client-credentials bearer token from the identity service (audience `partner`); user
//! tokens are refused. The partner acts for itself: its orders are the orders it placed, owned by
//! `partner:{client_id}`, a namespace no user id can fall into.
//!
//! | route | scope | backend |
//! |---|---|---|
//! | `GET /v1/products/{id}` | `catalog:read` | catalog (REST) |
//! | `GET /v1/products/{id}/stock` | `catalog:read` | inventory (gRPC) |
//! | `GET /v1/orders?limit=&cursor=` | `orders:read` | orders (gRPC) |
//! | `GET /v1/orders/{id}` | `orders:read` | orders (gRPC) |
//! | `POST /v1/orders` | `orders:write` | orders (gRPC) |
//!
//! Bodies are JSON in snake_case; one resource is a bare object, a list is
//! `{"items": [...], "next_cursor": ...}`; errors are RFC 9457 problem+json with the request id.
//! `GET /healthz` and `GET /readyz` need no credential.

mod config;
mod v1;

use std::sync::Arc;

use axum::Router;
use bff_gateway::stack::InboundStack;
use bff_gateway::{Authenticator, BuildError, ErrorFormat};

pub use config::{Config, Partner};
pub use v1::Backends;

/// The whole partner BFF as a router: what the binary serves and what tests call directly.
pub fn app(config: Config) -> Result<Router, BuildError> {
    let backends = Backends::new(&config.upstreams)?;
    let authenticator = Arc::new(Authenticator::from_config(&config.auth)?);
    let api = Router::new().nest("/v1", v1::routes(backends.clone()));
    Ok(InboundStack::new(&config.server, ErrorFormat::Problem, authenticator)
        .backend("catalog", Arc::new(backends.catalog))
        .backend("inventory", Arc::new(backends.inventory))
        .backend("orders", Arc::new(backends.orders))
        .build(api, Router::new()))
}
