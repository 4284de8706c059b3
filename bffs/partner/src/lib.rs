//! The partner BFF: a versioned REST API for third-party partners.
//!
//! Every API route needs one credential: an `X-API-Key` (stored hashed in config) or an OAuth2
//! client-credentials bearer token from the identity service (audience `partner`); user tokens
//! are refused. The partner acts for itself: its orders are the orders it placed, owned by
//! `key:{client_id}` (API key) or `client:{client_id}` (OAuth client), namespaces no user id can
//! fall into.
//!
//! **Versions.** `/v1` (deprecated: every response carries `Deprecation`, `Sunset` and a `Link`
//! to the v2 document) and `/v2` are served side by side by one set of handlers
//! ([`routes`]); each version is a representation of the same resources ([`model`], [`v1`],
//! [`v2`]). The unversioned paths (`/products/{id}`, ...) pick the version from `Accept:
//! application/vnd.shop.v2+json`; without one, the latest; a version this API does not serve is
//! 406 with the supported media types. `/v1/openapi.json` and `/v2/openapi.json` publish each
//! version's contract, need no credential, and are what requests are validated against.
//!
//! **Access** is decided in one place, at the gateway's slot after authentication, before any
//! handler runs or any body is read: the route's scope from the route table ([`routes::ROUTES`])
//! and the client's plan (`[plans]`, `[client_plans]`): which versions and routes it may call. A
//! client with no plan is refused everything. A plan's quotas (`limit`, `route_limits`) are handed
//! on to the gateway's rate limits, which decide them with the BFF's own `[limits]` at once.
//!
//! Errors are RFC 9457 problem+json with a stable `code` and the request id; a body or a query
//! that breaks the schema lists every violation in `errors`, by JSON pointer or parameter.

mod config;
pub mod model;
pub mod openapi;
pub mod routes;
pub mod v1;
pub mod v2;
pub mod version;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, any, get, on};
use bff_gateway::config::Bff;
use bff_gateway::inbound::stage::{Downstream, Next, Stage, StageLayer};
use bff_gateway::inbound::{Apps, InboundStack};
use bff_gateway::limits::{Limits, OwnLimits, Policy};
use bff_gateway::rest::idempotency::Idempotency;
use bff_gateway::store::{Redis, SharedCache};
use bff_gateway::{Authenticator, BuildError, ErrorFormat, GatewayError, RequestContext};
use http::{HeaderValue, header};
use tower::ServiceExt;

pub use config::{Config, Partner, PartnerOptions, Plan};
pub use routes::Backends;
use routes::{Api, ROUTES};
use v1::V1;
use v2::V2;
use version::Version;

/// The API versions this BFF serves, oldest first.
pub const VERSIONS: &[&str] = &[V1::NAME, V2::NAME];
/// What the unversioned paths serve when `Accept` names no version.
pub const LATEST: &str = V2::NAME;
const MEDIA_TYPES: &[&str] = &[V1::MEDIA_TYPE, V2::MEDIA_TYPE];

/// The whole partner BFF as a router: what the binary serves and what tests call directly.
pub fn app(config: Config) -> Result<Router, BuildError> {
    Ok(stack(config)?.build())
}

/// [`app`], and the admin router (`/metrics`, `/healthz`, `/readyz`) for `[server] admin_listen`.
pub fn apps(config: Config) -> Result<Apps, BuildError> {
    Ok(stack(config)?.build_with_admin())
}

/// The partner BFF's inbound stack with its routes, backends and access decision, not yet built:
/// [`app`], or a stack a test extends at one of its named slots.
pub fn stack(config: Config) -> Result<InboundStack, BuildError> {
    let routes = <Partner as bff_gateway::config::Bff>::route_table(&config);
    let store = Redis::from_config(&config.redis)?;
    let backends = Backends::new(&SharedCache::upstreams(&config.upstreams, store.as_ref(), Partner::NAME))?;
    let limits = Limits::from_config(Partner::NAME, &config.limits, store.as_ref())?;
    let authenticator = Arc::new(Authenticator::from_config(&config.auth, limits.clone())?);
    let idempotency = Arc::new(Idempotency::new(Partner::NAME, &config.own.idempotency, store.as_ref())?);
    let token_url = format!("{}/oauth/token", config.auth.jwt.issuer.trim_end_matches('/'));
    let v1 = Arc::new(Api::<V1>::new(backends.clone(), idempotency.clone(), &token_url)?);
    let v2 = Arc::new(Api::<V2>::new(backends.clone(), idempotency, &token_url)?);
    let documents = Router::new()
        .route("/v1/openapi.json", get(document(v1.document())))
        .route("/v2/openapi.json", get(document(v2.document())))
        .route("/{version}/{*rest}", any(unknown_version));

    let versioned = Router::new().nest("/v1", routes::routes(v1.clone())).nest("/v2", routes::routes(v2.clone()));
    // The unversioned paths: each operation served by the version `Accept` selects.
    let unversioned = routes::by_path(|operation| {
        let (one, two) =
            (routes::operation_service(v1.clone(), operation), routes::operation_service(v2.clone(), operation));
        let method = ROUTES.iter().find(|route| route.operation == operation).map(|route| route.method.clone());
        let filter = method.and_then(|m| MethodFilter::try_from(m).ok()).unwrap_or(MethodFilter::GET);
        on(filter, move |request: Request| {
            let service = match request.extensions().get::<SelectedVersion>() {
                Some(SelectedVersion(V1::NAME)) => one.clone(),
                _ => two.clone(),
            };
            async move {
                match service.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        })
    });
    let api = versioned.merge(unversioned);
    Ok(InboundStack::new(&config.server, ErrorFormat::Problem, authenticator)
        .routes(api, documents)
        .backends(&backends)
        .route_table(routes)
        .after_authentication(
            "partner access",
            StageLayer::new(Authorize {
                plans: Arc::new(PlanQuotas::new(&config.own, &limits)),
                options: Arc::new(config.own),
            }),
        ))
}

fn document(document: &serde_json::Value) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + 'static {
    let body = bytes::Bytes::from(serde_json::to_vec_pretty(document).unwrap_or_default());
    move || {
        let mut response = body.clone().into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        std::future::ready(response)
    }
}

/// `/v9/...`: a version this API does not serve, said so with the ones it does.
async fn unknown_version(axum::extract::Path((version, _)): axum::extract::Path<(String, String)>) -> GatewayError {
    let looks_like_version = version.len() <= 4
        && !VERSIONS.contains(&version.as_str())
        && version.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    match looks_like_version {
        true => {
            GatewayError::NotFound(format!("this API has no version `{version}`; it serves {}", VERSIONS.join(" and ")))
        }
        false => GatewayError::NotFound("no such route".into()),
    }
}

/// The version `Accept` asks for: a vendor media type, or the latest when it names none.
fn requested_version(headers: &http::HeaderMap) -> Result<&'static str, GatewayError> {
    let mut unknown = false;
    for range in headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
        let media = range.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if let Some(version) = media.strip_prefix("application/vnd.shop.").and_then(|m| m.strip_suffix("+json")) {
            match VERSIONS.iter().find(|v| **v == version) {
                Some(known) => return Ok(known),
                None => unknown = true,
            }
        }
    }
    match unknown {
        true => Err(GatewayError::UnsupportedVersion { supported: MEDIA_TYPES }),
        false => Ok(LATEST),
    }
}

/// The version an unversioned request is served by, chosen from `Accept` by [`Authorize`].
#[derive(Debug, Clone, Copy)]
struct SelectedVersion(&'static str);

/// The one access decision for every route, at the gateway's slot after authentication, so a
/// refusal reads no body and calls no backend: a partner credential (not a user token), the
/// scope the route table names, and a plan that covers the version and route. An unversioned
/// request's version comes from `Accept` here (and the answer varies by it).
#[derive(Debug, Clone)]
struct Authorize {
    options: Arc<PartnerOptions>,
    plans: Arc<PlanQuotas>,
}

/// Each plan's quotas as limits, made once: every client of a plan has its own key in them.
#[derive(Debug, Default)]
struct PlanQuotas {
    by_client: HashMap<String, PlanLimits>,
}

/// One plan's limit, and its limits by route name.
type PlanLimits = (Option<Arc<Policy>>, HashMap<String, Arc<Policy>>);

impl PlanQuotas {
    fn new(options: &PartnerOptions, limits: &Limits) -> Self {
        let plans: HashMap<&str, _> = options
            .plans
            .iter()
            .map(|(name, plan)| {
                let limit = plan.limit.map(|quota| limits.policy(format!("plan:{name}"), quota));
                let routes = plan
                    .route_limits
                    .iter()
                    .map(|(route, quota)| (route.clone(), limits.policy(format!("plan:{name}:{route}"), *quota)))
                    .collect();
                (name.as_str(), (limit, routes))
            })
            .collect();
        let by_client = options
            .client_plans
            .iter()
            .filter_map(|(client, plan)| Some((client.clone(), plans.get(plan.as_str())?.clone())))
            .collect();
        Self { by_client }
    }

    /// The limits `client`'s plan puts on `route`.
    fn quotas(&self, client: &str, route: &str) -> Vec<Arc<Policy>> {
        let Some((limit, routes)) = self.by_client.get(client) else { return Vec::new() };
        limit.iter().chain(routes.get(route)).cloned().collect()
    }
}

impl Stage for Authorize {
    async fn run<S: Downstream>(&self, mut request: Request, next: Next<S>) -> Response {
        let path = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
        let path = path.trim_start_matches('/');
        let versioned =
            path.split_once('/').and_then(|(first, rest)| Some((*VERSIONS.iter().find(|v| **v == first)?, rest)));
        let decision = match versioned {
            Some((version, route_path)) => self.decide(&request, version, route_path),
            None => requested_version(request.headers()).and_then(|version| {
                request.extensions_mut().insert(SelectedVersion(version));
                self.decide(&request, version, path)
            }),
        };
        let mut response = match decision {
            Ok(limits) => {
                if !limits.is_empty() {
                    request.extensions_mut().insert(OwnLimits(limits));
                }
                next.run(request).await
            }
            Err(error) => error.into_response(),
        };
        if versioned.is_none() {
            response.headers_mut().append(header::VARY, HeaderValue::from_static("accept"));
        }
        response
    }
}

impl Authorize {
    /// Whether the caller may call this route of `version`, and if so its plan's quotas on it.
    fn decide(&self, request: &Request, version: &str, route_path: &str) -> Result<Vec<Arc<Policy>>, GatewayError> {
        let route = ROUTES
            .iter()
            .find(|r| r.method == request.method() && r.path.trim_start_matches('/') == route_path)
            .ok_or_else(|| {
                GatewayError::Internal(format!("{} {route_path} is missing from the route table", request.method()))
            })?;
        let cx = RequestContext::from_extensions(request.extensions())?;
        let principal = cx.principal()?;
        if principal.user_id.is_some() {
            return Err(GatewayError::Forbidden("the partner API takes client credentials, not user tokens".into()));
        }
        cx.require_scope(route.scope)?;
        let name = route.name(version);
        if !self.options.allows(&principal.client_id, version, &name) {
            return Err(GatewayError::Forbidden(format!("your plan does not include {name}")));
        }
        Ok(self.plans.quotas(&principal.client_id, &name))
    }
}
