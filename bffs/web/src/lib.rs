//! The web BFF: one GraphQL endpoint shaped for the web app, with GraphiQL for its developers.
//!
//! - `POST /graphql`, and `GET /graphql` for queries (GraphQL over HTTP): the schema in
//!   [`schema`] (exported to `schemas/web.graphql`): the profile and order history, and the
//!   place-order, cancel-order and update-profile mutations. Requires a bearer JWT with audience
//!   `web`; each field names the scope it needs (`profile`, `orders`). Documents are checked
//!   against `[graphql.limits]` before anything runs.
//! - `GET /graphql` with a WebSocket upgrade: subscriptions (`orderStatusChanged`) over
//!   graphql-transport-ws, the token in `connection_init`'s `{"authorization": "Bearer ..."}`.
//! - `GET /graphql` from a browser: GraphiQL, served from the binary (no CDN), when
//!   `[graphql] graphiql = true`; it holds no data, its queries need a token.
//! - `GET /healthz`, `GET /readyz`: liveness and readiness (signing keys loaded, not draining);
//!   `GET /readyz?verbose` also shows each backend's last probe.
//!
//! Backends: users (REST), orders (gRPC), catalog (REST), inventory (gRPC). Products and stock of
//! an order page are fetched in one batch call each, whatever the number of items.

mod config;
pub mod schema;

use std::sync::Arc;

use axum::Router;
use bff_gateway::config::Bff;
use bff_gateway::graphql::GraphQlService;
use bff_gateway::graphql::ws::Subscriptions;
use bff_gateway::inbound::{Apps, InboundStack};
use bff_gateway::limits::Limits;
use bff_gateway::store::{Redis, SharedCache};
use bff_gateway::{Authenticator, BuildError, ErrorFormat};

pub use config::{Config, ROOT_FIELDS, Web};
pub use schema::{Backends, WebEndpoint, WebSchema};

/// The whole web BFF as a router: what the binary serves and what tests call directly.
pub fn app(config: Config) -> Result<Router, BuildError> {
    Ok(stack(config)?.build())
}

/// [`app`], and the admin router (`/metrics`, `/healthz`, `/readyz`) for `[server] admin_listen`.
pub fn apps(config: Config) -> Result<Apps, BuildError> {
    Ok(stack(config)?.build_with_admin())
}

/// The web BFF's inbound stack with its routes and backends, not yet built: [`app`], or a stack
/// a test extends at one of its named slots.
pub fn stack(config: Config) -> Result<InboundStack, BuildError> {
    let routes = <Web as bff_gateway::config::Bff>::route_table(&config);
    let store = Redis::from_config(&config.redis)?;
    let backends = Backends::new(&SharedCache::upstreams(&config.upstreams, store.as_ref(), Web::NAME))?;
    let limits = Limits::from_config(Web::NAME, &config.limits, store.as_ref())?;
    let authenticator = Arc::new(Authenticator::from_config(&config.auth, limits.clone())?);
    let graphql = &config.own.graphql;
    let loaders_for = backends.clone();
    let service = GraphQlService {
        endpoint: schema::endpoint(backends.clone(), graphql)?.with_shared_store(store.as_ref()).with_limits(&limits),
        // Data loaders carry the request's context to the backends they batch for.
        prepare: Arc::new(move |cx, request| {
            request.data(schema::loaders(&loaders_for, cx.upstream())).data(schema::Memo::default())
        }),
        graphiql: graphql.graphiql,
        subscriptions: Some(Subscriptions::new(authenticator.clone(), &graphql.subscriptions)),
    };
    let authenticates_itself = service.authenticates_itself();
    let (api, public) = service.routes();
    Ok(InboundStack::new(&config.server, ErrorFormat::GraphQl, authenticator)
        .routes(api, public)
        .backends(&backends)
        .route_table(routes)
        .authenticates_itself(authenticates_itself))
}
