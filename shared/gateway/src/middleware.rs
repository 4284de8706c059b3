//! The tower layers every BFF composes. Each is a [`Stage`]: one async function over the request
//! and the rest of the stack, wrapped into a named [`StageLayer`] so a BFF's `stack` function
//! reads as a list of stages, outermost first.
//!
//! The order every BFF uses, and why:
//! 1. [`AssignRequestId`]: everything below logs and renders errors with the id.
//! 2. [`AccessLog`]: times the whole request and sees the final status, even of a panic.
//! 3. [`RenderErrors`]: the one place a [`GatewayError`] becomes a body in the BFF's format.
//! 4. [`CatchPanic`]: a panicking handler yields a branded 500, not a dropped connection.
//! 5. [`StripIdentityHeaders`]: client-sent identity headers are gone before any code reads them.
//! 6. [`EnforceDeadline`]: the request's deadline, which upstream calls also respect.
//! 7. [`LimitBody`]: oversized bodies are refused before a handler buffers them.
//! 8. [`Authenticate`] (a route layer on API routes only, so probes stay open).

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::BoxFuture;
use http::{HeaderValue, Method};
use http_body_util::{BodyExt, Limited};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use crate::error::PendingError;
use crate::{Authenticator, Deadline, ErrorFormat, GatewayError, RequestId, RequestLog};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest client-sent request id we keep; longer ones are replaced, not truncated.
const MAX_REQUEST_ID_LEN: usize = 128;

/// One middleware stage.
pub trait Stage: Clone + Send + Sync + 'static {
    fn run(&self, request: Request, next: Next) -> impl Future<Output = Response> + Send;
}

/// The rest of the stack below a stage.
pub struct Next(BoxCloneSyncService<Request, Response, Infallible>);

impl Next {
    pub async fn run(self, request: Request) -> Response {
        match self.0.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// A [`Stage`] as a tower layer.
#[derive(Clone)]
pub struct StageLayer<S>(S);

impl<S: Stage> StageLayer<S> {
    pub fn new(stage: S) -> Self {
        Self(stage)
    }
}

impl<S: Stage, I> Layer<I> for StageLayer<S>
where
    I: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    I::Future: Send + 'static,
{
    type Service = StageService<S>;

    fn layer(&self, inner: I) -> Self::Service {
        StageService { stage: self.0.clone(), inner: BoxCloneSyncService::new(inner) }
    }
}

#[derive(Clone)]
pub struct StageService<S> {
    stage: S,
    inner: BoxCloneSyncService<Request, Response, Infallible>,
}

impl<S: Stage> Service<Request> for StageService<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // axum routes are always ready; readiness is taken on the clone `Next` drives.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let stage = self.stage.clone();
        let next = Next(self.inner.clone());
        Box::pin(async move { Ok(stage.run(request, next).await) })
    }
}

/// Keeps a well-formed client `X-Request-Id` (so a trace can cross systems), otherwise makes one;
/// echoes it on the response and forwards it upstream through the [`RequestContext`](crate::RequestContext).
#[derive(Clone)]
pub struct AssignRequestId;

impl Stage for AssignRequestId {
    async fn run(&self, mut request: Request, next: Next) -> Response {
        let id: Arc<str> = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|id| is_well_formed_request_id(id))
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(uuid::Uuid::now_v7().to_string()));
        request.extensions_mut().insert(RequestId(id.clone()));
        let mut response = next.run(request).await;
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    }
}

/// Printable ASCII id characters only: an id ends up in logs and in headers to backends.
pub fn is_well_formed_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// One structured line per request on the `access` target, written when the response is ready.
#[derive(Clone)]
pub struct AccessLog;

impl Stage for AccessLog {
    async fn run(&self, mut request: Request, next: Next) -> Response {
        let started = Instant::now();
        let log = Arc::new(RequestLog::default());
        request.extensions_mut().insert(log.clone());
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
        let request_id = request.extensions().get::<RequestId>().map(|id| id.0.clone());
        let response = next.run(request).await;
        let upstream: Vec<String> = log.upstream.calls().iter().map(ToString::to_string).collect();
        tracing::info!(
            target: "access",
            request_id = request_id.as_deref().unwrap_or("-"),
            method = %method,
            path = %path,
            route = route.as_deref().unwrap_or("-"),
            operation = log.operation.get().map(String::as_str).unwrap_or("-"),
            status = response.status().as_u16(),
            error_code = response.extensions().get::<PendingError>().map(|e| e.0.code()).unwrap_or("-"),
            latency_ms = started.elapsed().as_micros() as f64 / 1000.0,
            principal = log.principal.get().map(String::as_str).unwrap_or("-"),
            upstream_calls = upstream.len(),
            upstream = %upstream.join(", "),
        );
        response
    }
}

/// Renders every [`GatewayError`] raised below it in the BFF's format, with the request id.
#[derive(Clone)]
pub struct RenderErrors(pub ErrorFormat);

impl Stage for RenderErrors {
    async fn run(&self, request: Request, next: Next) -> Response {
        let request_id =
            request.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_else(|| Arc::from("-"));
        let response = next.run(request).await;
        let Some(PendingError(error)) = response.extensions().get::<PendingError>().cloned() else {
            return response;
        };
        if let GatewayError::Internal(detail) = &*error {
            tracing::error!(request_id = &*request_id, detail, "internal error");
        }
        let mut rendered = error.render(self.0, &request_id);
        // Keep the error visible to stages above (the access log reports its code).
        rendered.extensions_mut().insert(PendingError(error));
        rendered
    }
}

/// Turns a panic anywhere below into a branded 500; the panic message is logged, not sent.
#[derive(Clone)]
pub struct CatchPanic;

impl Stage for CatchPanic {
    async fn run(&self, request: Request, next: Next) -> Response {
        match AssertUnwindSafe(next.run(request)).catch_unwind().await {
            Ok(response) => response,
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                GatewayError::Internal(format!("handler panicked: {detail}")).into_response()
            }
        }
    }
}

/// Drops any identity header the client sent: only the gateway sets those, from verified
/// credentials, so a backend can trust them.
#[derive(Clone)]
pub struct StripIdentityHeaders;

impl Stage for StripIdentityHeaders {
    async fn run(&self, mut request: Request, next: Next) -> Response {
        for name in bff_upstream::headers::IDENTITY {
            if request.headers_mut().remove(name).is_some() {
                tracing::debug!(header = name, "dropped a client-sent identity header");
            }
        }
        next.run(request).await
    }
}

/// Gives the request a deadline and answers 504 when it passes. Upstream calls read the same
/// deadline, so they give up in time to report which backend was slow.
#[derive(Clone)]
pub struct EnforceDeadline(pub Duration);

impl Stage for EnforceDeadline {
    async fn run(&self, mut request: Request, next: Next) -> Response {
        request.extensions_mut().insert(Deadline(Instant::now() + self.0));
        match tokio::time::timeout(self.0, next.run(request)).await {
            Ok(response) => response,
            Err(_) => GatewayError::RequestTimeout(self.0).into_response(),
        }
    }
}

/// Refuses bodies over the limit, by `Content-Length` up front or while reading a streamed body,
/// and hands handlers a body that is already complete.
#[derive(Clone)]
pub struct LimitBody(pub usize);

impl Stage for LimitBody {
    async fn run(&self, request: Request, next: Next) -> Response {
        let limit = self.0;
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return GatewayError::PayloadTooLarge { limit }.into_response();
        }
        if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            return next.run(request).await;
        }
        let (parts, body) = request.into_parts();
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return GatewayError::PayloadTooLarge { limit }.into_response();
            }
            Err(error) => {
                return GatewayError::BadRequest(format!("could not read the request body: {error}")).into_response();
            }
        };
        next.run(Request::from_parts(parts, Body::from(bytes))).await
    }
}

/// Verifies the request's credentials and attaches the [`Principal`](crate::Principal).
#[derive(Clone)]
pub struct Authenticate(pub Arc<Authenticator>);

impl Stage for Authenticate {
    async fn run(&self, mut request: Request, next: Next) -> Response {
        match self.0.authenticate(request.headers()).await {
            Ok(principal) => {
                if let Some(log) = request.extensions().get::<Arc<RequestLog>>() {
                    let _ = log.principal.set(principal.to_string());
                }
                request.extensions_mut().insert(Arc::new(principal));
                next.run(request).await
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
