//! Traces: a server span per inbound request (named by its GraphQL operation or route template),
//! a client span per backend call (named by its operation template), exported over OTLP/gRPC
//! when `[telemetry] otlp_endpoint` is set, and W3C trace context (`traceparent`, `tracestate`)
//! sent to every backend, REST and gRPC alike. A caller's trace context is continued only from
//! the addresses `trust_traceparent_from` names; from anyone else a request starts a new trace,
//! so an outsider cannot join (or force the sampling of) the BFF's traces.
//!
//! Export is batched on the tokio runtime: spans wait in a queue of at most `max_queued_spans`
//! (more are dropped) and an export gives up after `export_timeout`, so a slow or dead collector
//! costs memory bounded by the queue and never a request's time. Sampling is parent-based: a
//! trusted caller's decision is followed, new traces are sampled at `sampling_ratio`. The
//! decision is made when the request arrives, before any span exists: a request not sampled
//! makes no spans at all (no request span, no phases, no client spans), so its cost is one random
//! number, not the bookkeeping of spans that would be dropped at export. Its backend calls then
//! carry no `traceparent`, and backends decide for themselves.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::config::TelemetryConfig;
use crate::inbound::client_addr::IpBlock;

/// What the request spans need once tracing is on.
struct Tracing {
    trusted: Vec<IpBlock>,
    /// Share of new traces recorded.
    ratio: f64,
}

static TRACING: OnceLock<Tracing> = OnceLock::new();

/// The tracer provider, for flushing what is queued before the process exits.
pub struct TracesGuard(SdkTracerProvider);

impl TracesGuard {
    pub fn flush(&self) {
        let _ = self.0.force_flush();
    }
}

impl Drop for TracesGuard {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

/// The layer that turns request and call spans into OpenTelemetry spans.
pub(super) type SpanLayer<S> = tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

/// The tracing layer and its provider for `service`, when `config` names a collector; installs
/// the propagation of trace context to backends. Must run inside a tokio runtime: the exporter
/// and its batches live there.
pub(super) fn layer<S>(service: &str, config: &TelemetryConfig) -> Result<Option<(SpanLayer<S>, TracesGuard)>, String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use opentelemetry_otlp::WithExportConfig as _;
    let Some(endpoint) = &config.otlp_endpoint else { return Ok(None) };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.as_str())
        .with_timeout(config.export_timeout)
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
    let batches = BatchConfigBuilder::default()
        .with_max_queue_size(config.max_queued_spans)
        .with_scheduled_delay(Duration::from_millis(200))
        .build();
    let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .with_batch_config(batches)
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        // The ratio is applied when a request arrives ([`request_span`]); a span that exists was
        // sampled, so the SDK records every one.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service.to_owned()).build())
        .build();
    let tracer = provider.tracer("bff-gateway");
    Ok(Some((tracing_opentelemetry::layer().with_tracer(tracer), TracesGuard(provider))))
}

/// Turns spans on, once the layer that exports them is installed: request spans, and trace
/// context on every backend call.
pub(super) fn activate(config: &TelemetryConfig) {
    let _ = TRACING.set(Tracing { trusted: config.trust_traceparent_from.clone(), ratio: config.sampling_ratio });
    bff_upstream::propagate_trace_context(current_trace_headers);
}

/// A server span for a request from `client`, continuing its caller's trace when the caller is
/// trusted. Named once the route or operation is known ([`name`]).
pub(crate) fn request_span(headers: &http::HeaderMap, client: Option<std::net::IpAddr>) -> tracing::Span {
    let Some(tracing) = TRACING.get() else { return tracing::Span::none() };
    let trusted = client.is_some_and(|ip| tracing.trusted.iter().any(|block| block.contains(ip)));
    let parent = trusted
        .then(|| TraceContextPropagator::new().extract(&Headers(headers)))
        .filter(|parent| parent.span().span_context().is_valid());
    let sampled = match &parent {
        Some(parent) => parent.span().span_context().is_sampled(),
        None => tracing.ratio >= 1.0 || fastrand::f64() < tracing.ratio,
    };
    if !sampled {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        http.response.status_code = tracing::field::Empty,
        error.code = tracing::field::Empty,
    );
    if let Some(parent) = parent {
        let _ = span.set_parent(parent);
    }
    span
}

/// A span for one phase of a request (`authenticate`, `graphql.check`, `graphql.execute`), a
/// child of the request's; none when tracing is off.
pub fn phase(name: &'static str) -> tracing::Span {
    // Only inside a sampled request: elsewhere the span would be a root of its own.
    if TRACING.get().is_none() || tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!("phase", otel.name = name)
}

/// The request span's name and outcome, once known.
pub(crate) fn name(span: &tracing::Span, name: &str, status: u16, code: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    // The OpenTelemetry span has started by now (its children needed its context): rename it
    // there, where `otel.name` no longer reaches.
    span.context().span().update_name(name.to_owned());
    span.record("http.response.status_code", status);
    if let Some(code) = code {
        span.record("error.code", code);
    }
}

/// The span's trace id, when it is being traced.
pub(crate) fn trace_id(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// `traceparent` and `tracestate` of the current span.
fn current_trace_headers() -> Vec<(&'static str, String)> {
    let mut carrier = Carrier(HashMap::new());
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier
        .0
        .into_iter()
        .filter_map(|(name, value)| match name.as_str() {
            "traceparent" => Some(("traceparent", value)),
            "tracestate" => Some(("tracestate", value)),
            _ => None,
        })
        .collect()
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct Carrier(HashMap<String, String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}
