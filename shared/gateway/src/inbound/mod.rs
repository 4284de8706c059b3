//! The one inbound stack every BFF serves through. A BFF hands over its API routes, its
//! authenticator and its backends' probes, may add its own stages at one named point, and gets
//! back the whole router. In request order:
//!
//! 1. sensitive headers: `Authorization`, `Cookie`, `X-API-Key` are marked so no log prints them
//!    (tower-http);
//!    and `X-Content-Type-Options: nosniff` on every response;
//! 2. request id: a well-formed `X-Request-Id` is kept, otherwise a UUIDv7 is minted; echoed on
//!    the response (tower-http), readable by everything below as [`RequestId`](crate::RequestId);
//!    then the client address ([`ClientAddr`](crate::middleware::ClientAddr)): the peer, or what a
//!    configured trusted proxy says in `X-Forwarded-For`;
//! 3. access log: one JSON line per request, bounded fields only;
//! 4. error rendering: the single place a [`GatewayError`](crate::GatewayError) becomes a body;
//!    then CORS (`[server.cors]`: preflights answered here, before limits and authentication);
//! 5. overload: at most `max_concurrent_requests` in flight; past it an immediate 503
//!    `OVERLOADED` with `Retry-After`, never a queue (tower's `GlobalConcurrencyLimit` and
//!    `LoadShed`). `/healthz` and `/readyz` join the stack above this point, so a replica busy
//!    to its limit still answers its probes;
//! 6. panic catching into a branded 500 (tower-http);
//! 7. identity-header stripping: client-sent `x-user-id`, `x-user-scopes`, `x-client-id` are gone;
//! 8. deadline: the request timeout, which upstream calls also fit inside;
//! 9. **the BFF's own stages** ([`InboundStack::with_stage`]);
//! 10. body limit: a declared `Content-Length` over the limit is refused before reading, a
//!     streamed body is cut at the limit (tower-http); the body is never buffered here;
//! 11. routing, then authentication on API routes only (probes stay open): headers only, so a
//!     request without valid credentials is refused before its body is read; a client address
//!     past its failed attempts is refused before any verification; an authenticated response
//!     gets `Cache-Control: no-store` unless the handler set a cache policy.

use std::sync::Arc;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use http::HeaderValue;
use http::header::{self, AUTHORIZATION, COOKIE, HeaderName};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::API_KEY_HEADER;
use crate::config::ServerConfig;
use crate::health::{self, Readiness, ReadinessCheck};
use crate::middleware::{self as mw, StageLayer};
use crate::{Authenticator, ErrorFormat};

type BffStage = Box<dyn FnOnce(Router) -> Router + Send>;

/// The standard stack, configured for one BFF.
pub struct InboundStack {
    server: ServerConfig,
    format: ErrorFormat,
    authenticator: Arc<Authenticator>,
    backends: Vec<ReadinessCheck>,
    bff_stages: Vec<BffStage>,
    self_authenticating: Option<mw::SelfAuthenticating>,
}

impl InboundStack {
    pub fn new(server: &ServerConfig, format: ErrorFormat, authenticator: Arc<Authenticator>) -> Self {
        Self {
            server: server.clone(),
            format,
            authenticator,
            backends: Vec::new(),
            bff_stages: Vec::new(),
            self_authenticating: None,
        }
    }

    /// A backend whose probe `/readyz?verbose` reports, as information.
    pub fn backend<P: bff_upstream::Probe>(mut self, name: &'static str, probe: Arc<P>) -> Self {
        self.backends.push(ReadinessCheck::new(name, probe));
        self
    }

    /// Adds a BFF's own layer at the named point (step 9): after the core's stages, so it sees the
    /// request id, a stripped request and the deadline, and its errors are rendered and logged;
    /// before the body limit and the router. Stages added later run later (further inside).
    pub fn with_stage<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower::Service<axum::extract::Request> + Clone + Send + Sync + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Response: axum::response::IntoResponse + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Error: Into<std::convert::Infallible> + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Future: Send + 'static,
    {
        self.bff_stages.push(Box::new(move |router: Router| router.layer(layer)));
        self
    }

    /// API requests that `is_one` picks out skip authentication because their handler
    /// authenticates them itself (a WebSocket upgrade authenticates in its first message) or
    /// serves no data (the GraphiQL page). Narrow by construction: the handler must make the
    /// same decision.
    pub fn authenticates_itself(
        mut self,
        is_one: impl Fn(&axum::extract::Request) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.self_authenticating = Some(Arc::new(is_one));
        self
    }

    /// The whole BFF: `api` behind authentication, `public` (GraphiQL, say) and the probes open,
    /// everything inside the standard stack.
    pub fn build(self, api: Router, public: Router) -> Router {
        let Self { server, format, authenticator, backends, bff_stages, self_authenticating } = self;
        // axum refuses a route layer on no routes; a BFF with nothing behind authentication is
        // odd but not wrong.
        let api = if api.has_routes() {
            api.route_layer(StageLayer::new(mw::Authenticate {
                authenticator: authenticator.clone(),
                skip: self_authenticating,
            }))
        } else {
            api
        };
        let mut router = Router::new().merge(api).merge(public);
        if router.has_routes() {
            router = router.route_layer(tower::util::MapRequestLayer::new(mw::record_route));
        }
        router = router.fallback(mw::not_found).method_not_allowed_fallback(mw::method_not_allowed);

        // Layers wrap what is already there, so the stack is applied from the inside out.
        let limit = server.body_limit_bytes;
        router = router.layer(
            ServiceBuilder::new()
                .map_response(mw::brand_payload_too_large(limit))
                .layer(RequestBodyLimitLayer::new(limit))
                .map_request(move |mut request: axum::extract::Request<_>| {
                    request.extensions_mut().insert(crate::rest::BodyLimit(limit));
                    request
                })
                // This stack's limit is the one; axum's own 2 MB default would silently cap it.
                .layer(DefaultBodyLimit::disable()),
        );
        // Reversed so that the first stage added is the outermost of them.
        for stage in bff_stages.into_iter().rev() {
            router = stage(router);
        }
        router = router.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(mw::overloaded(server.overload_retry_after)))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(server.max_concurrent_requests))
                .map_response(axum::response::IntoResponse::into_response)
                .layer(CatchPanicLayer::custom(mw::panic_response))
                .layer(StageLayer::new(mw::StripIdentityHeaders))
                .layer(StageLayer::new(mw::EnforceDeadline(server.request_timeout))),
        );
        // The probes join here, inside the request id, access log and error rendering but outside
        // the overload limit: a replica busy to its limit is alive, and must not be restarted
        // for failing its liveness probe.
        let router = router.merge(health::routes(Readiness::new(authenticator, backends)));
        // CORS sits inside error rendering, so its own refusals never need one, and outside the
        // overload limit and authentication: a preflight carries no credentials and is cheap.
        let router = match &server.cors {
            Some(cors) => router.layer(mw::cors(cors)),
            None => router,
        };
        let request_id = HeaderName::from_static(mw::REQUEST_ID_HEADER);
        router.layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    AUTHORIZATION,
                    COOKIE,
                    HeaderName::from_static(API_KEY_HEADER),
                ]))
                // Browsers must not guess a type other than the one we send.
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .map_request(mw::drop_malformed_request_id)
                .layer(SetRequestIdLayer::new(request_id.clone(), mw::MintRequestId))
                .layer(PropagateRequestIdLayer::new(request_id))
                .map_request(mw::expose_request_id)
                .map_request(mw::resolve_client_addr(server.trusted_proxies.clone().into()))
                .layer(StageLayer::new(mw::AccessLog))
                .layer(StageLayer::new(mw::RenderErrors(format))),
        )
    }
}
