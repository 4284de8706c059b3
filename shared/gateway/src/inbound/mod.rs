//! The one inbound stack every BFF serves through, composed in one function
//! ([`InboundStack::compose`]) that reads in request order. A BFF hands over its routes, its
//! authenticator and its backends, may add stages at two named slots, and gets back the whole
//! router. In request order (each a file here, but for the tower and tower-http layers):
//!
//! 1. sensitive headers: `Authorization`, `Cookie`, `X-API-Key` are marked so no log prints them,
//!    and `X-Content-Type-Options: nosniff` goes on every response (tower-http);
//! 2. request id ([`request_id`]);
//! 3. client address ([`client_addr`]);
//! 4. access log ([`access_log`]);
//! 5. error rendering ([`render_errors`]);
//! 6. CORS ([`cors`], when `[server.cors]` is set);
//! 7. probes: `/healthz` and `/readyz` join here, inside the request id, access log and error
//!    rendering but outside the overload limit: a replica busy to its limit is alive, and must not
//!    be restarted for failing its liveness probe;
//! 8. overload ([`overload`]);
//! 9. panic catching ([`catch_panic`]);
//! 10. identity header stripping ([`strip_identity`]);
//! 11. deadline ([`deadline`]);
//! 12. **the slot before authentication** ([`InboundStack::before_authentication`]);
//! 13. body limit ([`body_limit`]);
//! 14. routing, which records the matched route template for the access log, with branded
//!     fallbacks ([`fallback`]);
//! 15. authentication ([`authenticate`], API routes only);
//! 16. **the slot after authentication** ([`InboundStack::after_authentication`]): the verified
//!     identity and the route template are known, the body is unread;
//! 17. rate limits ([`RateLimit`](crate::limits::RateLimit), API routes only): after the BFF's
//!     own stages, so their answers (a partner's plan) join the one decision.

pub mod access_log;
pub mod authenticate;
pub mod body_limit;
mod catch_panic;
pub mod client_addr;
pub mod cors;
pub mod deadline;
pub mod fallback;
mod overload;
pub mod render_errors;
pub mod request_id;
pub mod stage;
pub mod strip_identity;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::Route;
use http::HeaderValue;
use http::header::{self, AUTHORIZATION, COOKIE, HeaderName};
use tower::{Layer, Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use self::access_log::{AccessLog, RecordRoute};
use self::authenticate::{Authenticate, SelfAuthenticating};
use self::client_addr::ResolveClientAddr;
use self::deadline::EnforceDeadline;
use self::render_errors::RenderErrors;
use self::stage::{RequestStageLayer, StageLayer};
use self::strip_identity::StripIdentityHeaders;
use crate::auth::API_KEY_HEADER;
use crate::backends::BackendSet;
use crate::health::{self, Readiness, ReadinessCheck};
use crate::limits::RateLimit;
use crate::reload::Lasting;
use crate::server::ServerConfig;
use crate::{Authenticator, ErrorFormat};

/// The name the slot before authentication has in [`InboundStack::compose`]'s order.
pub const BEFORE_AUTHENTICATION: &str = "[before authentication]";
/// The name the slot after authentication has in [`InboundStack::compose`]'s order.
pub const AFTER_AUTHENTICATION: &str = "[after authentication]";

/// One named step of the stack: it wraps everything after it.
struct Step {
    name: &'static str,
    wrap: Box<dyn FnOnce(Router) -> Router + Send>,
}

fn step(name: &'static str, wrap: impl FnOnce(Router) -> Router + Send + 'static) -> Step {
    Step { name, wrap: Box::new(wrap) }
}

/// A service axum routes to.
pub trait RouteService:
    Service<Request, Response: IntoResponse + 'static, Error: Into<Infallible> + 'static, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> RouteService for S where
    S: Service<Request, Response: IntoResponse + 'static, Error: Into<Infallible> + 'static, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// `layer`, its name noted in `names`.
fn named<L>(names: &mut Vec<&'static str>, name: &'static str, layer: L) -> L {
    names.push(name);
    layer
}

/// What [`Router::layer`] and [`Router::route_layer`] take.
pub trait RouterLayer: Layer<Route, Service: RouteService> + Clone + Send + Sync + 'static {}

impl<L> RouterLayer for L where L: Layer<Route, Service: RouteService> + Clone + Send + Sync + 'static {}

/// A BFF's two routers: the public one, and the admin one (`/metrics`, `/healthz`, `/readyz`),
/// served on a listener of its own (`[server] admin_listen`) so metrics and probes never share
/// the public port.
pub struct Apps {
    pub public: Router,
    pub admin: Router,
    /// What `/readyz` checks, for a config reload to ask before swapping the app in.
    pub readiness: Arc<Readiness>,
}

/// The standard stack, configured for one BFF.
pub struct InboundStack {
    server: ServerConfig,
    format: ErrorFormat,
    authenticator: Arc<Authenticator>,
    backends: Vec<ReadinessCheck>,
    health: bff_upstream::HealthRegistry,
    route_table: Vec<crate::telemetry::route_table::RouteEntry>,
    api: Router,
    public: Router,
    before_authentication: Vec<Step>,
    after_authentication: Vec<Step>,
    self_authenticating: Option<SelfAuthenticating>,
    lasting: Lasting,
}

impl InboundStack {
    pub fn new(server: &ServerConfig, format: ErrorFormat, authenticator: Arc<Authenticator>) -> Self {
        Self {
            server: server.clone(),
            format,
            authenticator,
            backends: Vec::new(),
            health: bff_upstream::HealthRegistry::default(),
            route_table: Vec::new(),
            api: Router::new(),
            public: Router::new(),
            before_authentication: Vec::new(),
            after_authentication: Vec::new(),
            self_authenticating: None,
            lasting: Lasting::default(),
        }
    }

    /// Serve as one generation of a process that reloads its config: the metrics and the reload
    /// status carry over from `lasting` instead of starting afresh.
    pub fn lasting(mut self, lasting: &Lasting) -> Self {
        self.lasting = lasting.clone();
        self
    }

    /// The BFF's routes: `api` behind authentication, `public` (GraphiQL, API documents) open.
    pub fn routes(mut self, api: Router, public: Router) -> Self {
        self.api = api;
        self.public = public;
        self
    }

    /// The backends whose probes `/readyz?verbose` reports, as information.
    pub fn backends(mut self, backends: &impl BackendSet) -> Self {
        self.backends.extend(backends.readiness_checks());
        self.health = backends.health();
        self
    }

    /// The route table the admin listener serves at `/routes`.
    pub fn route_table(mut self, entries: Vec<crate::telemetry::route_table::RouteEntry>) -> Self {
        self.route_table = entries;
        self
    }

    /// Adds a layer at the slot before authentication: after the core's own stages, so it sees
    /// the request id, the client address, a stripped request and the deadline, and its errors
    /// are rendered and logged; before the body limit. It goes on each route (and the fallbacks),
    /// so it runs once the router has picked one, and sees the route template. Stages added later
    /// run later.
    pub fn before_authentication(mut self, name: &'static str, layer: impl RouterLayer) -> Self {
        self.before_authentication.push(step(name, move |router| router.layer(layer)));
        self
    }

    /// Adds a layer at the slot after authentication, on API routes: the verified identity
    /// (`Arc<Identity>`) and the matched route template (`MatchedPath`) are in the request's
    /// extensions, and the body has not been read. A request whose handler authenticates it
    /// ([`InboundStack::authenticates_itself`]) carries
    /// [`SelfAuthenticated`](authenticate::SelfAuthenticated) instead of an identity. Stages added
    /// later run later.
    pub fn after_authentication(mut self, name: &'static str, layer: impl RouterLayer) -> Self {
        self.after_authentication.push(step(name, move |router| router.route_layer(layer)));
        self
    }

    /// API requests that `is_one` picks out skip authentication because their handler
    /// authenticates them itself (a WebSocket upgrade authenticates in its first message) or
    /// serves no data (the GraphiQL page). Narrow by construction: the handler must make the
    /// same decision.
    pub fn authenticates_itself(mut self, is_one: impl Fn(&Request) -> bool + Send + Sync + 'static) -> Self {
        self.self_authenticating = Some(Arc::new(is_one));
        self
    }

    /// The whole BFF.
    pub fn build(self) -> Router {
        self.compose().0
    }

    /// The whole BFF, and its admin router for a listener of its own.
    pub fn build_with_admin(self) -> Apps {
        let (apps, serving) = self.build_generation();
        serving.attach();
        apps
    }

    /// [`InboundStack::build_with_admin`] for a config reload: the metrics report this
    /// generation's breakers and signing keys only once [`Serving::attach`] says it serves.
    pub fn build_generation(self) -> (Apps, Serving) {
        let (public, _, admin, readiness, serving) = self.compose_all();
        (Apps { public, admin, readiness }, serving)
    }

    /// The whole BFF, and the names of its steps in request order: what the README's inbound
    /// section lists, and what a test holds it to.
    pub fn compose(self) -> (Router, Vec<&'static str>) {
        let (router, names, _, _, serving) = self.compose_all();
        serving.attach();
        (router, names)
    }

    fn compose_all(self) -> (Router, Vec<&'static str>, Router, Arc<Readiness>, Serving) {
        let Self {
            server,
            format,
            authenticator,
            backends,
            health,
            route_table,
            api,
            public,
            before_authentication,
            after_authentication,
            self_authenticating,
            lasting,
        } = self;
        let limit = server.body_limit_bytes;
        let limits = authenticator.limits().clone();
        let readiness = Arc::new(Readiness::new(authenticator.clone(), backends).with_reload_status(lasting.status));
        // One record per request feeds the access line and the metrics alike.
        let metrics = lasting.metrics;
        let serving = Serving { metrics: metrics.clone(), health, authenticator: authenticator.clone() };
        let routes = crate::telemetry::route_table::render(&route_table);
        let admin = crate::telemetry::admin::router(Arc::clone(&readiness), Arc::clone(&metrics), routes);
        // The layers of the two tower stacks are named where they are built, in request order; the
        // steps from the slot before authentication inwards are listed in the order the code
        // below applies them, and the README test holds both to the documented order. The core's
        // own layers are grouped into those two stacks, each wrapped around the router once (see
        // below), not boxed onto every route.
        let mut names = Vec::new();
        let edge = ServiceBuilder::new()
            .layer(named(
                &mut names,
                "sensitive headers",
                SetSensitiveRequestHeadersLayer::new([AUTHORIZATION, COOKIE, HeaderName::from_static(API_KEY_HEADER)]),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(named(&mut names, "request id", request_id::layer()))
            .layer(named(
                &mut names,
                "client address",
                RequestStageLayer::new(ResolveClientAddr(server.trusted_proxies.clone().into())),
            ))
            .layer(named(&mut names, "access log", StageLayer::new(AccessLog::new(metrics, &server.server_timing_for))))
            .layer(named(&mut names, "error rendering", StageLayer::new(RenderErrors(format))))
            .option_layer(named(&mut names, "CORS", server.cors.as_ref().map(cors::layer)));
        names.push("probes");
        let guard = ServiceBuilder::new()
            .layer(named(
                &mut names,
                "overload",
                overload::layer(server.max_concurrent_requests, server.overload_retry_after),
            ))
            .map_response(IntoResponse::into_response)
            .layer(named(
                &mut names,
                "panic catching",
                CatchPanicLayer::custom(catch_panic::panic_response as fn(_) -> _),
            ))
            .layer(named(&mut names, "identity header stripping", StageLayer::new(StripIdentityHeaders)))
            .layer(named(&mut names, "deadline", StageLayer::new(EnforceDeadline(server.request_timeout))));
        names.push(BEFORE_AUTHENTICATION);
        names.extend(before_authentication.iter().map(|s| s.name));
        names.extend(["body limit", "routing", "authentication", AFTER_AUTHENTICATION]);
        names.extend(after_authentication.iter().map(|s| s.name));
        names.push("rate limits");

        // Layers wrap what is already there, so what follows applies them from the inside out.
        // On API routes, as route layers (they run once a route has matched): the rate limits,
        // the stages after authentication around them, then authentication around those, with the
        // route's template recorded first. Each `route_layer` and `layer` boxes every route again,
        // and a request clones every box below the one it enters, so layers that are neighbours
        // (no BFF stage between them) go on as one tower stack. axum refuses a route layer on no
        // routes; a BFF with nothing behind authentication is odd but not wrong.
        let record_route = RequestStageLayer::new(RecordRoute);
        let authenticated = ServiceBuilder::new()
            .layer(record_route.clone())
            .layer(StageLayer::new(Authenticate { authenticator, skip: self_authenticating }));
        let rate_limit = StageLayer::new(RateLimit(limits));
        let api = if !api.has_routes() {
            api
        } else if after_authentication.is_empty() {
            api.route_layer(authenticated.layer(rate_limit))
        } else {
            after_authentication
                .into_iter()
                .rev()
                .fold(api.route_layer(rate_limit), |router, s| (s.wrap)(router))
                .route_layer(authenticated)
        };
        let public = if public.has_routes() { public.route_layer(record_route) } else { public };
        let router = Router::new()
            .merge(api)
            .merge(public)
            .fallback(fallback::not_found)
            .method_not_allowed_fallback(fallback::method_not_allowed);
        // The core's stacks wrap the router as a whole, as a service, rather than going on with
        // `Router::layer`, which boxes every route again: a stage clones what is below it for each
        // request, and a router is shared by reference count where a box is cloned box by box.
        // The probes join between the two stacks.
        let probes = health::routes(readiness.clone());
        // A BFF route at a probe's path would never be reached: merging refuses the overlap here,
        // at build time, as composing with the probes merged in did.
        let _ = probes.clone().merge(router.clone());
        let probed = if before_authentication.is_empty() {
            probes.fallback_service(guard.layer(body_limit::layer(limit)).service(router))
        } else {
            let router = router.layer(body_limit::layer(limit));
            let router = before_authentication.into_iter().rev().fold(router, |router, s| (s.wrap)(router));
            probes.fallback_service(guard.service(router))
        };
        let router = Router::new().fallback_service(edge.service(probed));
        (router, names, admin, readiness, serving)
    }
}

/// What the metrics read from a generation at each scrape (its breakers, its signing keys' age),
/// handed over once it serves.
pub struct Serving {
    metrics: Arc<crate::telemetry::Metrics>,
    health: bff_upstream::HealthRegistry,
    authenticator: Arc<Authenticator>,
}

impl Serving {
    pub fn attach(self) {
        self.metrics.attach(self.health, self.authenticator);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probes take their paths first: a BFF route there would never be reached, so building
    /// the stack refuses it.
    #[test]
    #[should_panic(expected = "Overlapping method route")]
    fn a_route_at_a_probes_path_is_refused_when_the_stack_is_built() {
        let server = ServerConfig::new("127.0.0.1:0".parse().expect("an address"));
        let authenticator = Arc::new(Authenticator::new(None, None, crate::limits::Limits::unlimited()));
        let public = Router::new().route("/healthz", axum::routing::get(|| async { "the BFF's own" }));
        let _ = InboundStack::new(&server, ErrorFormat::Problem, authenticator).routes(Router::new(), public).build();
    }
}
