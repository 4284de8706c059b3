//! One structured line per request on the `access` target, written when the response is ready.
//! Every field is bounded: the route template, not the path with its ids; the operation name the
//! GraphQL layer accepted; upstream calls by their operation template.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

use super::client_addr::{ClientAddr, IpBlock};
use super::stage::{Downstream, Next, RequestStage, Stage};
use crate::error::PendingError;
use crate::telemetry::metrics::{Metrics, RequestRecord};
use crate::telemetry::{TimeSplit, traces};
use crate::{RequestId, RequestLog};

/// A `Content-Length`, when it is one.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn millis(duration: std::time::Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// Most upstream calls one access line lists; the rest are counted.
const MAX_LOGGED_UPSTREAM_CALLS: usize = 16;

/// Writes the access line, feeds the metrics from the same record, and tells callers from
/// `server_timing_for` where the time went (`Server-Timing`).
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    metrics: Arc<Metrics>,
    server_timing_for: Arc<[IpBlock]>,
}

impl AccessLog {
    pub fn new(metrics: Arc<Metrics>, server_timing_for: &[IpBlock]) -> Self {
        Self { metrics, server_timing_for: server_timing_for.into() }
    }
}

/// A client that went away before its answer: nginx's status for it, which no answer carries.
const CLIENT_CLOSED: u16 = 499;

impl Stage for AccessLog {
    async fn run<S: Downstream>(&self, mut request: Request, next: Next<S>) -> Response {
        let log = Arc::new(RequestLog::default());
        request.extensions_mut().insert(log.clone());
        let client = request.extensions().get::<ClientAddr>().map(|addr| addr.0);
        // The request's span: every backend call's span is its child.
        let span = traces::request_span(request.headers(), client);
        let mut pending = Pending {
            stage: self,
            started: Instant::now(),
            _in_flight: self.metrics.started(),
            method: request.method().clone(),
            request_id: request.extensions().get::<RequestId>().map(|id| id.0.clone()),
            client,
            bytes_in: content_length(request.headers()),
            span: span.clone(),
            log,
            finished: false,
        };
        let mut response = tracing::Instrument::instrument(next.run(request), span).await;
        pending.finish(Some(&mut response));
        response
    }
}

/// A request the access log has yet to write: written when its answer is ready, or, if the
/// client goes away first (the request's future is dropped), then, with status 499, so the slow
/// requests clients gave up on show in the log and the metrics too.
struct Pending<'a> {
    stage: &'a AccessLog,
    started: Instant,
    _in_flight: crate::telemetry::metrics::InFlight,
    method: http::Method,
    request_id: Option<Arc<str>>,
    client: Option<std::net::IpAddr>,
    bytes_in: Option<u64>,
    span: tracing::Span,
    log: Arc<RequestLog>,
    finished: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(None);
        }
    }
}

impl Pending<'_> {
    fn finish(&mut self, mut response: Option<&mut Response>) {
        self.finished = true;
        let (log, metrics) = (&self.log, &self.stage.metrics);
        let calls = log.upstream.calls();
        // The gateway's own time: the total less the waits on backends, parallel ones once.
        let split = TimeSplit::of(self.started, Instant::now(), &calls);
        let status = response.as_ref().map_or(CLIENT_CLOSED, |r| r.status().as_u16());
        let error = response.as_ref().and_then(|r| r.extensions().get::<PendingError>()).map(|e| Arc::clone(&e.0));
        let error = error.as_deref();
        let error_source = match &response {
            Some(_) => error.map(|e| e.source()),
            None => Some("client"),
        };
        let route = log.route.get().map(String::as_str).unwrap_or("(unmatched)");
        // The span is named by the same bounded label as the metrics: a trace backend's span
        // metrics must not grow with invented operation names either.
        let operation = metrics.operation_label(log.operation.get().map(String::as_str), status);
        let span_name = if operation == "-" { route } else { operation };
        traces::name(&self.span, span_name, status, error.map(|e| e.code().as_str()));
        let trace_id = traces::trace_id(&self.span);
        metrics.observe(&RequestRecord {
            route,
            operation,
            status,
            error_code: error.map(|e| e.code().as_str()),
            error_source,
            split,
            calls: &calls,
            validations: log.validations.counts(),
            trace_id: trace_id.as_deref(),
        });
        let upstream = upstream_field(&calls);
        let limit = log.limit.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        // Timings reveal how the BFF works inside: only for the callers configured to see them.
        if let Some(response) = response.as_deref_mut()
            && self.client.is_some_and(|ip| self.stage.server_timing_for.iter().any(|block| block.contains(ip)))
        {
            let phases = log.phases.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let mut timing: String =
                phases.iter().map(|(name, spent)| format!("{name};dur={:.3}, ", millis(*spent))).collect();
            timing.push_str(&format!(
                "upstream;dur={:.3}, gateway;dur={:.3}, total;dur={:.3}",
                millis(split.upstream),
                millis(split.gateway()),
                millis(split.total)
            ));
            if let Ok(value) = http::HeaderValue::from_str(&timing) {
                response.headers_mut().insert(http::HeaderName::from_static("server-timing"), value);
            }
        }
        let bytes_out = response
            .as_ref()
            .and_then(|r| axum::body::HttpBody::size_hint(r.body()).exact().or_else(|| content_length(r.headers())));
        tracing::info!(
            target: "access",
            request_id = self.request_id.as_deref().unwrap_or("-"),
            trace_id = trace_id.as_deref().unwrap_or("-"),
            method = %self.method,
            route,
            operation = log.operation.get().map(String::as_str).unwrap_or("-"),
            document = log.document.get().map(String::as_str).unwrap_or("-"),
            cost = log.cost.load(std::sync::atomic::Ordering::Relaxed),
            status,
            error_code = error.map(|e| e.code().as_str()).unwrap_or("-"),
            // Who made the error: a backend's failure relayed, the gateway's own refusal, or the
            // client, gone before the answer.
            error_source = error_source.unwrap_or("-"),
            latency_ms = millis(split.total),
            gateway_ms = millis(split.gateway()),
            upstream_wait_ms = millis(split.upstream),
            principal = log.principal.get().map(String::as_str).unwrap_or("-"),
            client = %OrDash(self.client),
            bytes_in = self.bytes_in,
            bytes_out,
            limit = limit.as_ref().map_or("-", |l| l.policy.name()),
            limit_remaining = limit.as_ref().map(|l| l.remaining),
            limit_decided = limit.as_ref().map_or("-", |l| l.source.as_str()),
            upstream_calls = calls.len(),
            upstream = %upstream,
        );
    }
}

/// The access line's `upstream` field: the first calls, `, `-separated, and how many more there
/// were, written into one string.
fn upstream_field(calls: &[bff_upstream::UpstreamCall]) -> String {
    use std::fmt::Write as _;
    let mut field = String::with_capacity(64 * calls.len().min(MAX_LOGGED_UPSTREAM_CALLS + 1));
    for call in calls.iter().take(MAX_LOGGED_UPSTREAM_CALLS) {
        let separator = if field.is_empty() { "" } else { ", " };
        let _ = write!(field, "{separator}{call}");
    }
    if calls.len() > MAX_LOGGED_UPSTREAM_CALLS {
        let _ = write!(field, ", +{} more", calls.len() - MAX_LOGGED_UPSTREAM_CALLS);
    }
    field
}

/// A value, or `-` when there is none, displayed as the access line's other absent fields are.
struct OrDash<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Tells the access log which route template matched: the log sits outside the router, where
/// only the raw path is known. A route layer, so it runs once a route has matched.
#[derive(Debug, Clone, Copy)]
pub struct RecordRoute;

impl RequestStage for RecordRoute {
    fn apply<B>(&self, request: &mut http::Request<B>) {
        if let (Some(path), Some(log)) =
            (request.extensions().get::<MatchedPath>(), request.extensions().get::<Arc<RequestLog>>())
        {
            let _ = log.route.set(path.as_str().to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;
    use crate::GatewayError;
    use crate::inbound::stage::testing::{get, run};
    use crate::telemetry::testing::Lines;

    /// Collects this thread's log lines until the guard is dropped.
    fn capture() -> (Lines, tracing::subscriber::DefaultGuard) {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .finish();
        (lines, tracing::subscriber::set_default(subscriber))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_line_per_request_with_the_route_template_and_the_error_code() {
        let (lines, _guard) = capture();
        let mut request = get(&[]);
        request.extensions_mut().insert(RequestId(Arc::from("req-9")));
        let handler = |request: Request| async move {
            let log = request.extensions().get::<Arc<RequestLog>>().cloned().unwrap();
            let _ = log.route.set("/orders/{id}".to_owned());
            GatewayError::Forbidden("no".into()).into_response()
        };
        run(AccessLog::default(), handler, request).await;
        let text = lines.text();
        let written: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(written.len(), 1, "{text}");
        let line = &written[0];
        assert_eq!(line["target"], "access");
        assert_eq!((line["request_id"].as_str(), line["route"].as_str()), (Some("req-9"), Some("/orders/{id}")));
        assert_eq!((line["status"].as_u64(), line["error_code"].as_str()), (Some(403), Some("FORBIDDEN")));
        assert_eq!(line["error_source"], "gateway");
    }

    /// A client that goes away before its answer is still logged (499, made by the client).
    #[tokio::test(flavor = "current_thread")]
    async fn a_request_whose_client_went_away_is_still_logged() {
        let (lines, _guard) = capture();
        let never = |_request: Request| std::future::pending::<Response>();
        let abandoned =
            tokio::time::timeout(std::time::Duration::from_millis(20), run(AccessLog::default(), never, get(&[])));
        assert!(abandoned.await.is_err(), "the handler never answers");
        let text = lines.text();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().expect("a line")).unwrap();
        assert_eq!((line["status"].as_u64(), line["error_source"].as_str()), (Some(499), Some("client")), "{line}");
        assert!(line["latency_ms"].as_f64().unwrap() >= 20.0, "{line}");
    }

    /// The line lists the first calls and counts the rest: its size is bounded whatever a request
    /// fans out to.
    #[test]
    fn the_upstream_field_lists_the_first_calls_and_counts_the_rest() {
        let call = |operation| bff_upstream::UpstreamCall {
            service: "users",
            operation,
            started: Instant::now(),
            latency: std::time::Duration::from_millis(2),
            outcome: bff_upstream::CallOutcome::Ok,
            decisions: bff_upstream::CallTrace::default().decisions(),
        };
        assert_eq!(upstream_field(&[]), "");
        assert_eq!(upstream_field(&[call("GET /a"), call("GET /b")]), "users GET /a ok 2ms, users GET /b ok 2ms");
        let many: Vec<_> = (0..MAX_LOGGED_UPSTREAM_CALLS + 3).map(|_| call("GET /a")).collect();
        let field = upstream_field(&many);
        assert_eq!(field.matches("users GET /a ok 2ms").count(), MAX_LOGGED_UPSTREAM_CALLS, "{field}");
        assert!(field.ends_with("users GET /a ok 2ms, +3 more"), "{field}");
    }

    /// Three backend calls of 50 ms in parallel are 50 ms of waiting: the gateway's own time is
    /// the total less 50 ms, not less 150.
    #[tokio::test(flavor = "current_thread")]
    async fn the_gateway_time_counts_parallel_waits_once() {
        let (lines, _guard) = capture();
        let handler = |request: Request| async move {
            let log = request.extensions().get::<Arc<RequestLog>>().cloned().unwrap();
            let started = Instant::now();
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
            for service in ["users", "orders", "recommendations"] {
                log.upstream.push(bff_upstream::UpstreamCall {
                    service,
                    operation: "GET /x",
                    started,
                    latency: std::time::Duration::from_millis(50),
                    outcome: bff_upstream::CallOutcome::Ok,
                    decisions: bff_upstream::CallTrace::default().decisions(),
                });
            }
            GatewayError::Upstream(bff_upstream::UpstreamError::NotFound { service: "users" }).into_response()
        };
        run(AccessLog::default(), handler, get(&[])).await;
        let text = lines.text();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let figure = |name: &str| line[name].as_f64().unwrap_or_else(|| panic!("no {name} in {line}"));
        assert_eq!(figure("upstream_wait_ms"), 50.0, "{line}");
        assert!((figure("gateway_ms") + 50.0 - figure("latency_ms")).abs() < 0.01, "{line}");
        assert!(figure("latency_ms") >= 60.0, "{line}");
        assert_eq!(line["error_source"], "backend");
    }
}
