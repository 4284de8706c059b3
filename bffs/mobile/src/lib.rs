//! The mobile BFF: one GraphQL endpoint shaped for the mobile app's screens.
//!
//! - `POST /graphql`: the schema in [`schema`] (exported to `schemas/mobile.graphql`). Requires a
//!   bearer JWT with audience `mobile`.
//! - `GET /healthz`, `GET /readyz`: liveness, and readiness of identity, users, orders and
//!   recommendations.
//!
//! Backends: users (REST), orders (gRPC), recommendations (REST). The home screen fans out to all
//! three at once, so it answers in about the time of the slowest.

mod config;
pub mod schema;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use bff_gateway::auth::JwtVerifier;
use bff_gateway::graphql::{self, GraphQlRequest};
use bff_gateway::health::{self, ReadinessCheck};
use bff_gateway::middleware::{self as mw, StageLayer};
use bff_gateway::{Authenticator, ErrorFormat, GatewayError, RequestContext};
use bff_upstream::UpstreamError;
use tower::ServiceBuilder;

pub use config::{Config, Upstreams};
pub use schema::{Backends, MobileSchema};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// The whole mobile BFF as a router: what the binary serves and what tests call directly.
pub fn app(config: Config) -> Result<Router, Error> {
    let backends = Backends::new(&config.upstreams)?;
    let authenticator = Arc::new(Authenticator::new(Some(JwtVerifier::new(&config.auth)?), None));
    let checks = readiness_checks(&backends, &authenticator);

    let api = Router::new()
        .route("/graphql", post(graphql_handler))
        .with_state(schema::build(backends))
        .route_layer(StageLayer::new(mw::Authenticate(authenticator)));
    let router = Router::new()
        .merge(api)
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
            // One JSON access line per request, with operation, principal and upstream calls.
            .layer(StageLayer::new(mw::AccessLog))
            // Gateway errors below become GraphQL error bodies with code and request id.
            .layer(StageLayer::new(mw::RenderErrors(ErrorFormat::GraphQl)))
            // A panic is a branded 500, not a dropped connection.
            .layer(StageLayer::new(mw::CatchPanic))
            // Only the gateway sets identity headers.
            .layer(StageLayer::new(mw::StripIdentityHeaders))
            // The request's deadline; upstream calls are cut to fit inside it.
            .layer(StageLayer::new(mw::EnforceDeadline(server.request_timeout)))
            // Oversized documents are refused before parsing.
            .layer(StageLayer::new(mw::LimitBody(server.body_limit_bytes))),
    )
}

async fn graphql_handler(State(schema): State<MobileSchema>, cx: RequestContext, request: GraphQlRequest) -> Response {
    graphql::execute(&schema, cx, request.0).await
}

fn readiness_checks(backends: &Backends, authenticator: &Arc<Authenticator>) -> Vec<ReadinessCheck> {
    vec![
        ReadinessCheck::new("identity", authenticator.clone()),
        ReadinessCheck::new("users", Arc::new(backends.users.clone())),
        ReadinessCheck::new("orders", Arc::new(backends.orders.clone())),
        ReadinessCheck::new("recommendations", Arc::new(backends.recommendations.clone())),
    ]
}
