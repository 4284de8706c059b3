//! The mobile BFF: one GraphQL endpoint shaped for the mobile app's screens.
//!
//! - `POST /graphql`, and `GET /graphql` for queries (GraphQL over HTTP, `application/json` or
//!   `application/graphql-response+json`): the schema in [`schema`] (exported to
//!   `schemas/mobile.graphql`). Requires a bearer JWT with audience `mobile`; each field names
//!   the scope it needs (`profile`, `orders`). Documents are checked against `[graphql.limits]`
//!   before anything runs.
//! - Persisted queries (`[graphql.persisted_queries]`): automatic (APQ, by hash, `GET`-able) or,
//!   in production, a safelist: only the operations in `schemas/mobile.persisted.json` run.
//! - `GET /graphql` from a browser: GraphiQL, when `[graphql] graphiql = true`.
//! - `GET /healthz`, `GET /readyz`: liveness and readiness (signing keys loaded, not draining);
//!   `GET /readyz?verbose` also shows each backend's last probe.
//!
//! Backends: users (REST), orders (gRPC), recommendations (REST), catalog (REST), inventory
//! (gRPC). The home screen fans out to the first three at once, so it answers in about the time
//! of the slowest; each backend is asked only for the fields the query selected.

mod config;
pub mod schema;

use std::sync::Arc;

use axum::Router;
use bff_gateway::config::Bff;
use bff_gateway::graphql::GraphQlService;
use bff_gateway::inbound::{Apps, InboundStack};
use bff_gateway::limits::Limits;
use bff_gateway::store::{Redis, SharedCache};
use bff_gateway::{Authenticator, BuildError, ErrorFormat};

pub use config::{Config, Mobile, ROOT_FIELDS};
pub use schema::{Backends, MobileEndpoint, MobileSchema};

/// The whole mobile BFF as a router: what the binary serves and what tests call directly.
pub fn app(config: Config) -> Result<Router, BuildError> {
    Ok(stack(config)?.build())
}

/// [`app`], and the admin router (`/metrics`, `/healthz`, `/readyz`) for `[server] admin_listen`.
pub fn apps(config: Config) -> Result<Apps, BuildError> {
    Ok(stack(config)?.build_with_admin())
}

/// The mobile BFF's inbound stack with its routes and backends, not yet built: [`app`], or a
/// stack a test extends at one of its named slots.
pub fn stack(config: Config) -> Result<InboundStack, BuildError> {
    let routes = <Mobile as bff_gateway::config::Bff>::route_table(&config);
    let store = Redis::from_config(&config.redis)?;
    let backends = Backends::new(&SharedCache::upstreams(&config.upstreams, store.as_ref(), Mobile::NAME))?;
    let limits = Limits::from_config(Mobile::NAME, &config.limits, store.as_ref())?;
    let authenticator = Arc::new(Authenticator::from_config(&config.auth, limits.clone())?);
    let graphql = &config.own.graphql;
    let service = GraphQlService {
        endpoint: schema::endpoint(backends.clone(), graphql)?.with_shared_store(store.as_ref()).with_limits(&limits),
        prepare: Arc::new(|_, request| request.data(schema::Memo::default())),
        graphiql: graphql.graphiql,
        subscriptions: None,
    };
    let authenticates_itself = service.authenticates_itself();
    let (api, public) = service.routes();
    Ok(InboundStack::new(&config.server, ErrorFormat::GraphQl, authenticator)
        .routes(api, public)
        .backends(&backends)
        .route_table(routes)
        .authenticates_itself(authenticates_itself))
}
