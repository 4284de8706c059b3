//! The partner BFF: a versioned REST API for third-party partners.
//!
//! Every route under `/v1` needs one credential: an `X-API-Key` (stored hashed in config) or an
//! OAuth2 client-credentials bearer token from the identity service (audience `partner`); user
//! tokens are refused. The partner acts for itself: its orders are the orders it placed, owned by
//! `key:{client_id}` (API key) or `client:{client_id}` (OAuth client), namespaces no user id can
//! fall into.
//!
//! Access is decided in one place, before any handler runs: the route's scope from the route table
//! ([`v1::ROUTES`]), and the client's plan (`[plans]`, `[client_plans]`): which versions and
//! routes it may call. A client with no plan is refused everything.
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
pub mod v1;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bff_gateway::stack::InboundStack;
use bff_gateway::{Authenticator, BuildError, ErrorFormat, GatewayError, RequestContext};

pub use config::{Config, Partner, PartnerOptions, Plan};
pub use v1::Backends;

/// The API versions this BFF serves.
pub const VERSIONS: &[&str] = &["v1"];

/// The whole partner BFF as a router: what the binary serves and what tests call directly.
pub fn app(config: Config) -> Result<Router, BuildError> {
    let backends = Backends::new(&config.upstreams)?;
    let authenticator = Arc::new(Authenticator::from_config(&config.auth)?);
    let access = Arc::new(config.own.clone());
    let api = Router::new()
        .nest("/v1", v1::routes(backends.clone()))
        .route_layer(axum::middleware::from_fn_with_state(access, authorize));
    Ok(InboundStack::new(&config.server, ErrorFormat::Problem, authenticator)
        .backend("catalog", Arc::new(backends.catalog))
        .backend("inventory", Arc::new(backends.inventory))
        .backend("orders", Arc::new(backends.orders))
        .build(api, Router::new()))
}

/// The one access decision for every route: a partner credential (not a user token), the scope
/// the route table names, and a plan that covers the version and route. Runs after
/// authentication and before the handler, so a refusal reads no body and calls no backend.
async fn authorize(State(access): State<Arc<PartnerOptions>>, request: Request, next: Next) -> Response {
    let decision = (|| {
        let parts = request.extensions();
        let path = parts.get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or_default();
        let route = v1::ROUTES.iter().find(|r| r.method == request.method() && r.path == path).ok_or_else(|| {
            GatewayError::Internal(format!("{} {path} is missing from the route table", request.method()))
        })?;
        let cx = RequestContext::from_extensions(parts)?;
        let principal = cx.principal()?;
        if principal.user_id.is_some() {
            return Err(GatewayError::Forbidden("the partner API takes client credentials, not user tokens".into()));
        }
        cx.require_scope(route.scope)?;
        let version = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        if !access.allows(&principal.client_id, version, &route.name()) {
            return Err(GatewayError::Forbidden(format!("your plan does not include {}", route.name())));
        }
        Ok(())
    })();
    match decision {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}
