//! The shapes of the gateway's own middleware, both tower layers whose services pass `poll_ready`
//! through, so tower's concurrency limits, load shedding and rate limits compose around and inside
//! them:
//!
//! - a [`Stage`] is an async function over the request and the rest of the stack
//!   ([`StageLayer`]): for stages that wait, answer themselves or touch the response;
//! - a [`RequestStage`] only amends the request on its way in ([`RequestStageLayer`]): its service
//!   hands the request on and returns the inner future as it is, with no allocation and no clone of
//!   the stack below, so the stages that need no more cost nothing extra per request. (Measured with
//!   the inbound bench: three such stages as `Stage`s cost about 1.5 µs a request.)

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::future::BoxFuture;
use tower::{Layer, Service};

/// What lies below a stage: an axum service, which never fails.
pub trait Downstream: Service<Request, Response = Response, Error = Infallible, Future: Send> + Send + 'static {}

impl<S> Downstream for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send> + Send + 'static
{
}

/// One middleware stage.
pub trait Stage: Clone + Send + Sync + 'static {
    fn run<S: Downstream>(&self, request: Request, next: Next<S>) -> impl Future<Output = Response> + Send;
}

/// The rest of the stack below a stage, already ready to take the request.
pub struct Next<S>(S);

impl<S: Downstream> Next<S> {
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

impl<St: Stage, S: Downstream + Clone> Service<Request> for StageService<St, S> {
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

/// A stage that only amends the request.
pub trait RequestStage: Clone + Send + Sync + 'static {
    fn apply<B>(&self, request: &mut http::Request<B>);
}

/// A [`RequestStage`] as a tower layer.
#[derive(Clone)]
pub struct RequestStageLayer<St>(St);

impl<St: RequestStage> RequestStageLayer<St> {
    pub fn new(stage: St) -> Self {
        Self(stage)
    }
}

impl<St: RequestStage, S> Layer<S> for RequestStageLayer<St> {
    type Service = RequestStageService<St, S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestStageService { stage: self.0.clone(), inner }
    }
}

#[derive(Clone)]
pub struct RequestStageService<St, S> {
    stage: St,
    inner: S,
}

impl<St: RequestStage, B, S: Service<http::Request<B>>> Service<http::Request<B>> for RequestStageService<St, S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        self.stage.apply(&mut request);
        self.inner.call(request)
    }
}

/// Helpers for the stages' unit tests: a stack of one stage over a handler, driven in process.
#[cfg(test)]
pub(crate) mod testing {
    use axum::body::Body;
    use axum::response::{IntoResponse, Response};
    use tower::ServiceExt;

    use super::*;

    /// Runs `request` through `stage` over `handler`.
    pub async fn run<St, H, Fut>(stage: St, handler: H, request: Request) -> Response
    where
        St: Stage,
        H: FnOnce(Request) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let inner = tower::service_fn(move |request: Request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(request).await) }
        });
        match StageLayer::new(stage).layer(inner).oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// A `GET /` request with `headers`.
    pub fn get(headers: &[(&str, &str)]) -> Request {
        let mut request = Request::get("/").body(Body::empty()).expect("a valid request");
        for (name, value) in headers {
            request.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                http::HeaderValue::from_str(value).expect("a header value"),
            );
        }
        request
    }

    /// A handler that answers 200 "ok".
    pub async fn ok(_: Request) -> Response {
        "ok".into_response()
    }
}
