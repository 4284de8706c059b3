//! The mobile BFF: one GraphQL endpoint shaped for the mobile app's screens.
//!
//! - `POST /graphql`: the schema in [`schema`] (exported to `schemas/mobile.graphql`). Requires a
//!   bearer JWT with audience `mobile`; each field names the scope it needs (`profile`,
//!   `orders`). Documents are checked against `[graphql.limits]` before anything runs.
//! - `GET /graphql`: GraphiQL, when `[graphql] graphiql = true`.
//! - `GET /healthz`, `GET /readyz`: liveness and readiness (signing keys loaded, not draining);
//!   `GET /readyz?verbose` also shows each backend's last probe.
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
use bff_gateway::graphql::{self, GraphQlRequest};
use bff_gateway::stack::InboundStack;
use bff_gateway::{Authenticator, BuildError, ErrorFormat, RequestContext};

pub use config::{Config, Mobile};
pub use schema::{Backends, MobileEndpoint, MobileSchema};

/// The whole mobile BFF as a router: what the binary serves and what tests call directly.
pub fn app(config: Config) -> Result<Router, BuildError> {
    let backends = Backends::new(&config.upstreams)?;
    let authenticator = Arc::new(Authenticator::from_config(&config.auth)?);
    let endpoint = schema::endpoint(backends.clone(), &config.own.graphql)?;
    let api = Router::new().route("/graphql", post(graphql_handler)).with_state(endpoint);
    let public = graphql::public_routes(&config.own.graphql);
    Ok(InboundStack::new(&config.server, ErrorFormat::GraphQl, authenticator)
        .backend("users", Arc::new(backends.users))
        .backend("orders", Arc::new(backends.orders))
        .backend("recommendations", Arc::new(backends.recommendations))
        .build(api, public))
}

async fn graphql_handler(
    State(endpoint): State<MobileEndpoint>,
    cx: RequestContext,
    request: GraphQlRequest,
) -> Response {
    endpoint.execute(cx, request, |request| request.data(schema::Memo::default())).await
}
