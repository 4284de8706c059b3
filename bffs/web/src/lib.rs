//! The web BFF: one GraphQL endpoint shaped for the web app, with GraphiQL for its developers.
//!
//! - `POST /graphql`: the schema in [`schema`] (exported to `schemas/web.graphql`). Requires a
//!   bearer JWT with audience `web`; each field names the scope it needs (`profile`, `orders`).
//!   Documents are checked against `[graphql.limits]` before anything runs.
//! - `GET /graphql`: GraphiQL (no data without a token), when `[graphql] graphiql = true`.
//! - `GET /healthz`, `GET /readyz`: liveness and readiness (signing keys loaded, not draining);
//!   `GET /readyz?verbose` also shows each backend's last probe.
//!
//! Backends: users (REST), orders (gRPC), catalog (REST), inventory (gRPC). Products and stock of
//! an order page are fetched in one batch call each, whatever the number of items.

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

pub use config::{Config, Web};
pub use schema::{Backends, WebEndpoint, WebSchema};

/// The whole web BFF as a router: what the binary serves and what tests call directly.
pub fn app(config: Config) -> Result<Router, BuildError> {
    let backends = Backends::new(&config.upstreams)?;
    let authenticator = Arc::new(Authenticator::from_config(&config.auth)?);
    let endpoint = schema::endpoint(backends.clone(), &config.own.graphql)?;
    let api = Router::new().route("/graphql", post(graphql_handler)).with_state((endpoint, backends.clone()));
    let public = graphql::public_routes(&config.own.graphql);
    Ok(InboundStack::new(&config.server, ErrorFormat::GraphQl, authenticator)
        .backend("users", Arc::new(backends.users))
        .backend("orders", Arc::new(backends.orders))
        .backend("catalog", Arc::new(backends.catalog))
        .backend("inventory", Arc::new(backends.inventory))
        .build(api, public))
}

async fn graphql_handler(
    State((endpoint, backends)): State<(WebEndpoint, Backends)>,
    cx: RequestContext,
    request: GraphQlRequest,
) -> Response {
    let upstream = cx.upstream().clone();
    endpoint
        .execute(cx, request, |request| {
            request.data(schema::loaders(&backends, &upstream)).data(schema::Memo::default())
        })
        .await
}
