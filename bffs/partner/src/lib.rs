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
use bff_gateway::auth::{ApiKeys, JwtVerifier};
use bff_gateway::health::{self, ReadinessCheck};
use bff_gateway::middleware::{self as mw, StageLayer};
use bff_gateway::{Authenticator, ErrorFormat, GatewayError};
use bff_upstream::UpstreamError;
use tower::ServiceBuilder;

pub use config::{AuthConfig, Config, Upstreams};
pub use v1::Backends;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// The whole partner BFF as a router: what the binary serves and what tests call directly.
pub fn app(config: Config) -> Result<Router, Error> {
    let backends = Backends::new(&config.upstreams)?;
    let authenticator = Arc::new(Authenticator::new(
        Some(JwtVerifier::new(&config.auth.jwt)?),
        Some(ApiKeys::new(&config.auth.api_keys)?),
    ));
    let checks = vec![
        ReadinessCheck::new("identity", authenticator.clone()),
        ReadinessCheck::new("catalog", Arc::new(backends.catalog.clone())),
        ReadinessCheck::new("inventory", Arc::new(backends.inventory.clone())),
        ReadinessCheck::new("orders", Arc::new(backends.orders.clone())),
    ];

    let v1 = v1::routes(backends).route_layer(StageLayer::new(mw::Authenticate(authenticator)));
    let router = Router::new()
        .nest("/v1", v1)
        .merge(health::routes(checks))
        .fallback(mw::not_found)
        .method_not_allowed_fallback(mw::method_not_allowed);
    Ok(stack(router, &config.server))
}

/// The middleware every request meets, outermost first. See `bff_gateway::middleware` for why
/// this order.
fn stack(router: Router, server: &bff_gateway::config::ServerConfig) -> Router {
    router.layer(
        ServiceBuilder::new()
            // Keep or mint the request id; echo it on the response.
            .layer(StageLayer::new(mw::AssignRequestId))
            // One JSON access line per request, with route, principal and upstream calls.
            .layer(StageLayer::new(mw::AccessLog))
            // Gateway errors below become RFC 9457 problem+json with code and request id.
            .layer(StageLayer::new(mw::RenderErrors(ErrorFormat::Problem)))
            // A panic is a branded 500, not a dropped connection.
            .layer(StageLayer::new(mw::CatchPanic))
            // Only the gateway sets identity headers.
            .layer(StageLayer::new(mw::StripIdentityHeaders))
            // The request's deadline; upstream calls are cut to fit inside it.
            .layer(StageLayer::new(mw::EnforceDeadline(server.request_timeout)))
            // Oversized bodies are refused before parsing.
            .layer(StageLayer::new(mw::LimitBody(server.body_limit_bytes))),
    )
}
