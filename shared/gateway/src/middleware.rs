//! The gateway's own tower layers. Each is a [`Stage`]: one async function over the request and
//! the rest of the stack, wrapped into a [`StageLayer`] whose service propagates `poll_ready`, so
//! tower's concurrency limits, load shedding and rate limits compose around and inside them.
//! [`crate::stack::InboundStack`] puts them in order with tower-http's layers.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use bff_upstream::Identity;
use futures::future::BoxFuture;
use http::{HeaderValue, StatusCode};
use tower::{Layer, Service};

use crate::config::{CorsConfig, IpBlock};
use crate::error::PendingError;
use crate::graphql::ResponseMedia;
use crate::server::PeerAddr;
use crate::{Authenticator, Deadline, ErrorFormat, GatewayError, RequestId, RequestLog};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Most upstream calls one access line lists; the rest are counted.
const MAX_LOGGED_UPSTREAM_CALLS: usize = 16;
/// Longest client-sent request id we keep; longer ones are replaced, not truncated.
const MAX_REQUEST_ID_LEN: usize = 128;

/// One middleware stage.
pub trait Stage: Clone + Send + Sync + 'static {
    fn run<S>(&self, request: Request, next: Next<S>) -> impl Future<Output = Response> + Send
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send;
}

/// The rest of the stack below a stage, already ready to take the request.
pub struct Next<S>(S);

impl<S> Next<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    pub async fn run(mut self, request: Request) -> Response {
        match self.0.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// A [`Stage`] as a tower layer.
#[derive(Clone)]
pub struct StageLayer<St>(St);

impl<St: Stage> StageLayer<St> {
    pub fn new(stage: St) -> Self {
        Self(stage)
    }
}

impl<St: Stage, S> Layer<S> for StageLayer<St> {
    type Service = StageService<St, S>;

    fn layer(&self, inner: S) -> Self::Service {
        StageService { stage: self.0.clone(), inner }
    }
}

#[derive(Clone)]
pub struct StageService<St, S> {
    stage: St,
    inner: S,
}

impl<St, S> Service<Request> for StageService<St, S>
where
    St: Stage,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    /// Ready when the rest of the stack is: a concurrency limit or rate limit below is felt above.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The instance polled ready serves this request; its fresh clone waits for the next poll.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let stage = self.stage.clone();
        Box::pin(async move { Ok(stage.run(request, Next(ready)).await) })
    }
}

/// Printable ASCII id characters only: an id ends up in logs and in headers to backends.
pub fn is_well_formed_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Before tower-http's `SetRequestId`: a client id that is not well formed is dropped, so a
/// fresh one is minted instead of a hostile string travelling into logs and backends.
pub(crate) fn drop_malformed_request_id(mut request: Request) -> Request {
    let malformed =
        request.headers().get(REQUEST_ID_HEADER).is_some_and(|v| !v.to_str().is_ok_and(is_well_formed_request_id));
    if malformed {
        request.headers_mut().remove(REQUEST_ID_HEADER);
    }
    request
}

/// After `SetRequestId`: the id as the [`RequestId`] every stage and handler reads.
pub(crate) fn expose_request_id(mut request: Request) -> Request {
    let id = request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(Arc::<str>::from);
    if let Some(id) = id {
        request.extensions_mut().insert(RequestId(id));
    }
    request
}

/// Mints UUIDv7 request ids: unique, and sortable by time in log searches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MintRequestId;

impl tower_http::request_id::MakeRequestId for MintRequestId {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<tower_http::request_id::RequestId> {
        let id = HeaderValue::try_from(uuid::Uuid::now_v7().to_string()).ok()?;
        Some(tower_http::request_id::RequestId::new(id))
    }
}

/// One structured line per request on the `access` target, written when the response is ready.
/// Every field is bounded: the route template, not the path with its ids; the operation name
/// the GraphQL layer accepted; upstream calls by their operation template.
#[derive(Clone)]
pub struct AccessLog;

impl Stage for AccessLog {
    async fn run<S>(&self, mut request: Request, next: Next<S>) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send,
    {
        let started = Instant::now();
        let log = Arc::new(RequestLog::default());
        request.extensions_mut().insert(log.clone());
        let method = request.method().clone();
        let request_id = request.extensions().get::<RequestId>().map(|id| id.0.clone());
        let response = next.run(request).await;
        let calls = log.upstream.calls();
        let mut upstream: Vec<String> = calls.iter().take(MAX_LOGGED_UPSTREAM_CALLS).map(ToString::to_string).collect();
        if calls.len() > MAX_LOGGED_UPSTREAM_CALLS {
            upstream.push(format!("+{} more", calls.len() - MAX_LOGGED_UPSTREAM_CALLS));
        }
        tracing::info!(
            target: "access",
            request_id = request_id.as_deref().unwrap_or("-"),
            method = %method,
            route = log.route.get().map(String::as_str).unwrap_or("(unmatched)"),
            operation = log.operation.get().map(String::as_str).unwrap_or("-"),
            cost = log.cost.load(std::sync::atomic::Ordering::Relaxed),
            status = response.status().as_u16(),
            error_code = response.extensions().get::<PendingError>().map(|e| e.0.code()).unwrap_or("-"),
            latency_ms = started.elapsed().as_micros() as f64 / 1000.0,
            principal = log.principal.get().map(String::as_str).unwrap_or("-"),
            upstream_calls = calls.len(),
            upstream = %upstream.join(", "),
        );
        response
    }
}

/// The address of the client a request is from: the connection's peer, or, when the peer is a
/// configured trusted proxy, the nearest address in `X-Forwarded-For` that is not one. What an
/// untrusted peer writes in that header is ignored, so it cannot pick the address its failed
/// attempts are counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Most `X-Forwarded-For` entries read: proxies chains are short; a long header is an attack.
const MAX_FORWARDED_HOPS: usize = 16;

/// The stage that sets [`ClientAddr`], trusting `X-Forwarded-For` from `trusted` proxies only.
pub fn resolve_client_addr(trusted: Arc<[IpBlock]>) -> impl Fn(Request) -> Request + Clone {
    move |mut request: Request| {
        if let Some(PeerAddr(peer)) = request.extensions().get::<PeerAddr>().copied() {
            let client = client_addr(peer.ip(), request.headers(), &trusted);
            request.extensions_mut().insert(ClientAddr(client));
        }
        request
    }
}

fn client_addr(peer: IpAddr, headers: &http::HeaderMap, trusted: &[IpBlock]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|block| block.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    // From the nearest hop outwards: each trusted proxy vouches for the one before it.
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => return client,
        }
    }
    client
}

/// CORS from config: exact origins (or `*` without credentials), the methods and headers our
/// APIs take, and the request id exposed to scripts.
pub fn cors(config: &CorsConfig) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = if config.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(config.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([http::Method::GET, http::Method::POST, http::Method::OPTIONS])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            http::header::ACCEPT,
            http::HeaderName::from_static(REQUEST_ID_HEADER),
            http::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([http::HeaderName::from_static(REQUEST_ID_HEADER)])
        .allow_credentials(config.allow_credentials)
        .max_age(config.max_age)
}

/// Tells the access log which route template matched: the log sits outside the router, where
/// only the raw path is known.
pub fn record_route(request: Request) -> Request {
    if let (Some(path), Some(log)) =
        (request.extensions().get::<MatchedPath>(), request.extensions().get::<Arc<RequestLog>>())
    {
        let _ = log.route.set(path.as_str().to_owned());
    }
    request
}

/// Renders every [`GatewayError`] raised below it in the BFF's format, with the request id.
#[derive(Clone)]
pub struct RenderErrors(pub ErrorFormat);

impl Stage for RenderErrors {
    async fn run<S>(&self, request: Request, next: Next<S>) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send,
    {
        let request_id =
            request.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_else(|| Arc::from("-"));
        // A GraphQL client that asked for `application/graphql-response+json` gets its errors in
        // that type too, whichever stage refused it (only the headers are kept: the request goes on).
        let accept: Vec<HeaderValue> = match self.0 {
            ErrorFormat::GraphQl => request.headers().get_all(http::header::ACCEPT).iter().cloned().collect(),
            ErrorFormat::Problem => Vec::new(),
        };
        let response = next.run(request).await;
        let Some(PendingError(error)) = response.extensions().get::<PendingError>().cloned() else {
            return response;
        };
        match &*error {
            GatewayError::Internal(detail) => tracing::error!(request_id = &*request_id, detail, "internal error"),
            GatewayError::StoreUnavailable { store, detail } => {
                tracing::error!(request_id = &*request_id, store, detail, "store unavailable");
            }
            _ => {}
        }
        let mut rendered = error.render(self.0, &request_id);
        // Headers the stages below set on the way up (a version's `Deprecation`, `Vary`, `Allow`)
        // still apply to the rendered error; its own body headers win.
        let inherited: Vec<http::HeaderName> = response
            .headers()
            .keys()
            .filter(|name| {
                !rendered.headers().contains_key(*name)
                    && *name != http::header::CONTENT_TYPE
                    && *name != http::header::CONTENT_LENGTH
            })
            .cloned()
            .collect();
        for name in inherited {
            for value in response.headers().get_all(&name) {
                rendered.headers_mut().append(name.clone(), value.clone());
            }
        }
        if self.0 == ErrorFormat::GraphQl {
            let mut headers = http::HeaderMap::new();
            for value in accept {
                headers.append(http::header::ACCEPT, value);
            }
            let media = ResponseMedia::negotiate(&headers).unwrap_or(ResponseMedia::Json);
            rendered.headers_mut().insert(http::header::CONTENT_TYPE, media.content_type());
        }
        // Keep the error visible to stages above (the access log reports its code).
        rendered.extensions_mut().insert(PendingError(error));
        rendered
    }
}

/// tower-http's `CatchPanic` answers with this: a branded 500; the panic message is logged, not sent.
pub(crate) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    GatewayError::Internal(format!("handler panicked: {detail}")).into_response()
}

/// What the load shedder's refusal becomes: an immediate 503 `OVERLOADED` with `Retry-After`.
pub(crate) fn overloaded(retry_after: Duration) -> impl Fn(tower::BoxError) -> std::future::Ready<Response> + Clone {
    move |error| {
        let response = if error.is::<tower::load_shed::error::Overloaded>() {
            GatewayError::Overloaded { retry_after }
        } else {
            GatewayError::Internal(format!("inbound stack failed: {error}"))
        };
        std::future::ready(response.into_response())
    }
}

/// tower-http's `RequestBodyLimit` refuses a declared `Content-Length` over the limit with a bare
/// 413; this brands it. (A streamed body cut at the limit fails in the extractor, which says the
/// same.)
pub(crate) fn brand_payload_too_large<B>(limit: usize) -> impl Fn(http::Response<B>) -> Response + Clone
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    move |response| {
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE && response.extensions().get::<PendingError>().is_none() {
            GatewayError::PayloadTooLarge { limit }.into_response()
        } else {
            response.map(axum::body::Body::new)
        }
    }
}

/// Drops any identity header the client sent: only the gateway sets those, from verified
/// credentials, so a backend can trust them.
#[derive(Clone)]
pub struct StripIdentityHeaders;

impl Stage for StripIdentityHeaders {
    async fn run<S>(&self, mut request: Request, next: Next<S>) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send,
    {
        for name in bff_upstream::headers::IDENTITY {
            if request.headers_mut().remove(name).is_some() {
                tracing::debug!(header = name, "dropped a client-sent identity header");
            }
        }
        next.run(request).await
    }
}

/// Gives the request a deadline and answers 504 `REQUEST_TIMEOUT` when it passes. Upstream calls
/// read the same deadline, so they give up in time to report which backend was slow. (tower-http's
/// `Timeout` answers a bare 408 and tells nothing to what runs below, so this one is ours.)
#[derive(Clone)]
pub struct EnforceDeadline(pub Duration);

impl Stage for EnforceDeadline {
    async fn run<S>(&self, mut request: Request, next: Next<S>) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send,
    {
        request.extensions_mut().insert(Deadline(Instant::now() + self.0));
        match tokio::time::timeout(self.0, next.run(request)).await {
            Ok(response) => response,
            Err(_) => GatewayError::RequestTimeout(self.0).into_response(),
        }
    }
}

/// Verifies the request's credentials and attaches the verified [`Identity`]. It reads headers
/// only: the body is still unread when a request without valid credentials is refused.
#[derive(Clone)]
pub struct Authenticate {
    pub authenticator: Arc<Authenticator>,
    /// Requests that authenticate themselves (see [`InboundStack::authenticates_itself`](crate::stack::InboundStack::authenticates_itself)).
    pub skip: Option<SelfAuthenticating>,
}

/// Picks out the requests a handler authenticates itself.
pub type SelfAuthenticating = Arc<dyn Fn(&Request) -> bool + Send + Sync>;

impl Stage for Authenticate {
    async fn run<S>(&self, mut request: Request, next: Next<S>) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send,
    {
        if self.skip.as_ref().is_some_and(|skip| skip(&request)) {
            return next.run(request).await;
        }
        let client = request.extensions().get::<ClientAddr>().map(|addr| addr.0);
        match self.authenticator.authenticate(request.headers(), client).await {
            Ok(identity) => {
                if let Some(log) = request.extensions().get::<Arc<RequestLog>>() {
                    let _ = log.principal.set(identity.to_string());
                }
                request.extensions_mut().insert(Arc::<Identity>::new(identity));
                let mut response = next.run(request).await;
                // One caller's data must not land in a shared cache, unless a handler said how
                // it may be cached.
                response
                    .headers_mut()
                    .entry(http::header::CACHE_CONTROL)
                    .or_insert(HeaderValue::from_static("no-store"));
                response
            }
            Err(error) => error.into_response(),
        }
    }
}

/// Router fallback: a branded 404 for paths no route serves.
pub async fn not_found(request: Request) -> GatewayError {
    GatewayError::NotFound(format!("no route for {} {}", request.method(), request.uri().path()))
}

/// Router fallback for a known path with the wrong method.
pub async fn method_not_allowed() -> GatewayError {
    GatewayError::MethodNotAllowed
}
