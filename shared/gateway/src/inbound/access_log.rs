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

impl Stage for AccessLog {
    async fn run<S: Downstream>(&self, mut request: Request, next: Next<S>) -> Response {
        let started = Instant::now();
        let _in_flight = self.metrics.started();
        let log = Arc::new(RequestLog::default());
        request.extensions_mut().insert(log.clone());
        let method = request.method().clone();
        let request_id = request.extensions().get::<RequestId>().map(|id| id.0.clone());
        let client = request.extensions().get::<ClientAddr>().map(|addr| addr.0);
        let bytes_in = content_length(request.headers());
        // The request's span: every backend call's span is its child.
        let span = traces::request_span(request.headers(), client);
        let mut response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
        let calls = log.upstream.calls();
        // The gateway's own time: the total less the waits on backends, parallel ones once.
        let split = TimeSplit::of(started, Instant::now(), &calls);
        let error = response.extensions().get::<PendingError>().map(|e| Arc::clone(&e.0));
        let error = error.as_deref();
        let error_source = error.map(|e| e.source());
        let route = log.route.get().map(String::as_str).unwrap_or("(unmatched)");
        // The span is named by the same bounded label as the metrics: a trace backend's span
        // metrics must not grow with invented operation names either.
        let operation =
            self.metrics.operation_label(log.operation.get().map(String::as_str), response.status().as_u16());
        let span_name = if operation == "-" { route } else { operation.as_str() };
        traces::name(&span, span_name, response.status().as_u16(), error.map(|e| e.code().as_str()));
        self.metrics.observe(&RequestRecord {
            route,
            operation: &operation,
            status: response.status().as_u16(),
            error_code: error.map(|e| e.code().as_str()),
            error_source,
            split,
            calls: &calls,
        });
        let mut upstream: Vec<String> = calls.iter().take(MAX_LOGGED_UPSTREAM_CALLS).map(ToString::to_string).collect();
        if calls.len() > MAX_LOGGED_UPSTREAM_CALLS {
            upstream.push(format!("+{} more", calls.len() - MAX_LOGGED_UPSTREAM_CALLS));
        }
        let limit = log.limit.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        // Timings reveal how the BFF works inside: only for the callers configured to see them.
        if client.is_some_and(|ip| self.server_timing_for.iter().any(|block| block.contains(ip))) {
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
        let bytes_out =
            axum::body::HttpBody::size_hint(response.body()).exact().or_else(|| content_length(response.headers()));
        tracing::info!(
            target: "access",
            request_id = request_id.as_deref().unwrap_or("-"),
            trace_id = traces::trace_id(&span).as_deref().unwrap_or("-"),
            method = %method,
            route,
            operation = log.operation.get().map(String::as_str).unwrap_or("-"),
            document = log.document.get().map(String::as_str).unwrap_or("-"),
            cost = log.cost.load(std::sync::atomic::Ordering::Relaxed),
            status = response.status().as_u16(),
            error_code = error.map(|e| e.code().as_str()).unwrap_or("-"),
            // Who made the error: a backend's failure relayed, or the gateway's own refusal.
            error_source = error_source.unwrap_or("-"),
            latency_ms = millis(split.total),
            gateway_ms = millis(split.gateway()),
            upstream_wait_ms = millis(split.upstream),
            principal = log.principal.get().map(String::as_str).unwrap_or("-"),
            client = client.map(|ip| ip.to_string()).as_deref().unwrap_or("-"),
            bytes_in,
            bytes_out,
            limit = limit.as_ref().map_or("-", |l| l.policy.name()),
            limit_remaining = limit.as_ref().map(|l| l.remaining),
            limit_decided = limit.as_ref().map_or("-", |l| l.source.as_str()),
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
    use std::sync::Mutex;

    use axum::response::IntoResponse;

    use super::*;
    use crate::GatewayError;
    use crate::inbound::stage::testing::{get, run};

    /// Collects what the `access` target writes, as JSON lines.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

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
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let written: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(written.len(), 1, "{text}");
        let line = &written[0];
        assert_eq!(line["target"], "access");
        assert_eq!((line["request_id"].as_str(), line["route"].as_str()), (Some("req-9"), Some("/orders/{id}")));
        assert_eq!((line["status"].as_u64(), line["error_code"].as_str()), (Some(403), Some("FORBIDDEN")));
        assert_eq!(line["error_source"], "gateway");
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
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let figure = |name: &str| line[name].as_f64().unwrap_or_else(|| panic!("no {name} in {line}"));
        assert_eq!(figure("upstream_wait_ms"), 50.0, "{line}");
        assert!((figure("gateway_ms") + 50.0 - figure("latency_ms")).abs() < 0.01, "{line}");
        assert!(figure("latency_ms") >= 60.0, "{line}");
        assert_eq!(line["error_source"], "backend");
    }
}
