//! The web BFF: one GraphQL endpoint shaped for the web app, with GraphiQL for its developers.
//!
//! - `POST /graphql`: the schema in [`schema`] (exported to `schemas/web.graphql`). Requires a
//!   bearer JWT with audience `web`.
//! - `GET /graphql`: GraphiQL (no data without a token), when `graphiql = true`.
//! - `GET /healthz`, `GET /readyz`: liveness, and readiness of identity, users, orders, catalog and
//!   inventory.
//!
//! Backends: users (REST), orders (gRPC), catalog (REST), inventory (gRPC). Products and stock of
//! an order page are fetched in one batch call each, whatever the number of items.

mod config;
pub mod schema;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use bff_gateway::auth::JwtVerifier;
use bff_gateway::graphql::{self, GraphQlRequest};
use bff_gateway::health::{self, ReadinessCheck};
use bff_gateway::middleware::{self as mw, StageLayer};
use bff_gateway::{Authenticator, ErrorFormat, GatewayError, RequestContext};
use bff_upstream::UpstreamError;
use tower::ServiceBuilder;

pub use config::{Config, Upstreams};
pub use schema::{Backends, WebSchema};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// The whole web BFF as a router: what the binary serves and what tests call directly.
pub fn app(config: Config) -> Result<Router, Error> {
    let backends = Backends::new(&config.upstreams)?;
    let authenticator = Arc::new(Authenticator::new(Some(JwtVerifier::new(&config.auth)?), None));
    let checks = vec![
        ReadinessCheck::new("identity", authenticator.clone()),
        ReadinessCheck::new("users", Arc::new(backends.users.clone())),
        ReadinessCheck::new("orders", Arc::new(backends.orders.clone())),
        ReadinessCheck::new("catalog", Arc::new(backends.catalog.clone())),
        ReadinessCheck::new("inventory", Arc::new(backends.inventory.clone())),
    ];

    let api = Router::new()
        .route("/graphql", post(graphql_handler))
        .with_state(schema::build(backends))
        .route_layer(StageLayer::new(mw::Authenticate(authenticator)));
    let mut router = Router::new().merge(api).merge(health::routes(checks));
    if config.graphiql {
        router = router.route("/graphql", get(|| async { graphql::graphiql("/graphql") }));
    }
    let router = router.fallback(mw::not_found).method_not_allowed_fallback(mw::method_not_allowed);
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

async fn graphql_handler(State(schema): State<WebSchema>, cx: RequestContext, request: GraphQlRequest) -> Response {
    let backends = schema::loaders(&schema, &cx);
    graphql::execute(&schema, cx, request.0.data(backends)).await
}
