//! One structured line per request on the `access` target, written when the response is ready.
//! Every field is bounded: the route template, not the path with its ids; the operation name the
//! GraphQL layer accepted; upstream calls by their operation template.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

use super::stage::{Downstream, Next, Stage};
use crate::error::PendingError;
use crate::{RequestId, RequestLog};

/// Most upstream calls one access line lists; the rest are counted.
const MAX_LOGGED_UPSTREAM_CALLS: usize = 16;

#[derive(Debug, Clone, Copy)]
pub struct AccessLog;

impl Stage for AccessLog {
    async fn run<S: Downstream>(&self, mut request: Request, next: Next<S>) -> Response {
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
            error_code = response.extensions().get::<PendingError>().map(|e| e.0.code().as_str()).unwrap_or("-"),
            latency_ms = started.elapsed().as_micros() as f64 / 1000.0,
            principal = log.principal.get().map(String::as_str).unwrap_or("-"),
            upstream_calls = calls.len(),
            upstream = %upstream.join(", "),
        );
        response
    }
}

/// Tells the access log which route template matched: the log sits outside the router, where
/// only the raw path is known. A route layer, so it runs once a route has matched.
#[derive(Debug, Clone, Copy)]
pub struct RecordRoute;

impl Stage for RecordRoute {
    async fn run<S: Downstream>(&self, request: Request, next: Next<S>) -> Response {
        if let (Some(path), Some(log)) =
            (request.extensions().get::<MatchedPath>(), request.extensions().get::<Arc<RequestLog>>())
        {
            let _ = log.route.set(path.as_str().to_owned());
        }
        next.run(request).await
    }
}
