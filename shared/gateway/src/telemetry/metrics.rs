//! Prometheus metrics, written in the text format at `GET /metrics` on the admin listener.
//!
//! Fed by the same per-request record as the access line (the access-log stage observes both at
//! once), so the two never disagree. Every label value comes from a bounded set: route templates
//! (the router's, or `(unmatched)`), error codes and their source, backends and their operation
//! templates (names in the code), cache statuses; a GraphQL operation name, which the client
//! chooses, is kept only for the first [`MAX_OPERATIONS`] names of requests that were answered
//! (not refused) and is `other` after that, so a flood of invented names cannot grow the series,
//! and refused requests cannot take the slots real operations need.
//!
//! `prometheus-client` (the Prometheus project's own crate): counters and histograms are atomics,
//! a label family is a read-locked map; no global registry and no exporter thread.

use std::collections::HashSet;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use bff_upstream::{BreakerState, CallOutcome, UpstreamCall};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::TimeSplit;

/// Distinct GraphQL operation names a BFF labels its series with; past them, `other`.
pub const MAX_OPERATIONS: usize = 64;
/// Distinct route templates; a router has far fewer, so this only guards against a mistake.
const MAX_ROUTES: usize = 256;

/// Every label value is a `&'static str`: route templates and operation names are interned once
/// (at most [`MAX_ROUTES`] and [`MAX_OPERATIONS`] of them), everything else is a constant, so a
/// request finds its series with no allocation.
type Labels<const N: usize> = [(&'static str, &'static str); N];

/// Labels made at the scrape, where allocating costs no request anything (breaker instances).
type OwnedLabels<const N: usize> = [(&'static str, String); N];

/// A bucket's exemplar: the trace of its latest request.
type Exemplar = OwnedLabels<1>;

/// Latency buckets: 0.25 ms to about 8 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The same buckets, each remembering the trace of its latest request (an exemplar), so a slow
/// bucket leads to a trace.
type TracedLatency = HistogramWithExemplars<Exemplar>;

fn traced_latency() -> TracedLatency {
    HistogramWithExemplars::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// One BFF's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels<5>, Counter>,
    duration: Family<Labels<2>, TracedLatency, fn() -> TracedLatency>,
    gateway_time: Family<Labels<2>, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    upstream_calls: Family<Labels<4>, Counter>,
    upstream_duration: Family<Labels<2>, Histogram, fn() -> Histogram>,
    breakers: Family<OwnedLabels<3>, Gauge>,
    jwks_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// What the scrape reads from the serving generation: its breakers and its signing keys.
    /// Replaced when a config reload swaps the app, while every series above carries on.
    serving: std::sync::Mutex<Serving>,
    config_generation: Gauge,
    config_reloads: Family<Labels<1>, Counter>,
    /// `bff_graphql_validations_total`'s two series, made once: a request adds to them with no
    /// lookup.
    validated_full: Counter,
    validated_fast: Counter,
    routes: BoundedValues,
    operations: BoundedValues,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The parts of the serving generation a scrape reads.
#[derive(Clone, Default)]
struct Serving {
    health: bff_upstream::HealthRegistry,
    authenticator: Option<std::sync::Arc<crate::Authenticator>>,
}

/// What the access-log stage knows of a finished request.
#[derive(Debug)]
pub struct RequestRecord<'a> {
    pub route: &'a str,
    /// The bounded label of its GraphQL operation ([`Metrics::operation_label`]), `-` for none.
    pub operation: &'static str,
    pub status: u16,
    pub error_code: Option<&'static str>,
    /// `gateway` or `backend`, for an error.
    pub error_source: Option<&'static str>,
    pub split: TimeSplit,
    pub calls: &'a [UpstreamCall],
    /// GraphQL operations validated in full, and in the fast mode.
    pub validations: (u32, u32),
    /// The request's trace, when traces are on: its latency bucket's exemplar.
    pub trace_id: Option<&'a str>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bff");
        let requests = Family::<Labels<5>, Counter>::default();
        let duration = Family::new_with_constructor(traced_latency as fn() -> TracedLatency);
        let gateway_time = Family::new_with_constructor(latency as fn() -> Histogram);
        let in_flight = Gauge::default();
        let upstream_calls = Family::<Labels<4>, Counter>::default();
        let upstream_duration = Family::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "requests",
            "Requests answered, by route template, GraphQL operation, status, error code and who made the error",
            requests.clone(),
        );
        registry.register("request_duration_seconds", "Time to answer a request", duration.clone());
        registry.register(
            "gateway_time_seconds",
            "The gateway's own time in a request: the total less the union of the waits on backends",
            gateway_time.clone(),
        );
        registry.register("requests_in_flight", "Requests being answered", in_flight.clone());
        registry.register(
            "upstream_calls",
            "Backend calls, by backend, operation template, outcome and cache status",
            upstream_calls.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time a backend call took, as the request saw it (a cache hit included)",
            upstream_duration.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log sink fell behind (`[telemetry] log_overflow = \"drop\"`)",
            super::dropped_lines(),
        );
        registry.register(
            "redis_round_trips",
            "Round trips to the shared store (Redis), by the feature that made them",
            crate::store::round_trips().clone(),
        );
        let breakers = Family::<OwnedLabels<3>, Gauge>::default();
        registry.register(
            "upstream_breaker",
            "1 for each backend instance's breaker state (closed, half_open or open), 0 for the others; open means ejected",
            breakers.clone(),
        );
        let jwks_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "jwks_age_seconds",
            "Seconds since the signing keys were last fetched (0 until the first fetch: /readyz says whether they are loaded)",
            jwks_age.clone(),
        );
        let config_generation = Gauge::default();
        config_generation.set(1);
        registry.register(
            "config_generation",
            "The config generation serving: 1 at start, one more for each reload applied",
            config_generation.clone(),
        );
        let config_reloads = Family::<Labels<1>, Counter>::default();
        registry.register("config_reloads", "Config reloads, by outcome (applied or refused)", config_reloads.clone());
        let validations = Family::<Labels<1>, Counter>::default();
        registry.register(
            "graphql_validations",
            "GraphQL operations validated over HTTP, by mode: full (every rule), or fast (a document \
             without variables that passed every rule before: only the checks it could still fail)",
            validations.clone(),
        );
        let validated_full = validations.get_or_create(&[("mode", "full")]).clone();
        let validated_fast = validations.get_or_create(&[("mode", "fast")]).clone();
        let info = Family::<Labels<1>, Gauge>::default();
        info.get_or_create(&[("version", env!("CARGO_PKG_VERSION"))]).set(1);
        registry.register("build_info", "The build serving: always 1", info);
        Self {
            registry,
            requests,
            duration,
            gateway_time,
            in_flight,
            upstream_calls,
            upstream_duration,
            breakers,
            jwks_age,
            serving: std::sync::Mutex::new(Serving::default()),
            config_generation,
            config_reloads,
            validated_full,
            validated_fast,
            routes: BoundedValues::new(MAX_ROUTES),
            operations: BoundedValues::new(MAX_OPERATIONS),
        }
    }

    /// From now on, reports the breakers of the instances registered in `health` and the age of
    /// `authenticator`'s signing keys: the generation serving.
    pub fn attach(&self, health: bff_upstream::HealthRegistry, authenticator: std::sync::Arc<crate::Authenticator>) {
        *self.serving.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Serving { health, authenticator: Some(authenticator) };
    }

    /// Counts a config reload by its outcome.
    pub fn record_reload(&self, outcome: &crate::reload::Outcome) {
        let outcome = match outcome {
            crate::reload::Outcome::Applied { .. } => "applied",
            crate::reload::Outcome::Refused { .. } => "refused",
        };
        self.config_reloads.get_or_create(&[("outcome", outcome)]).inc();
    }

    pub fn set_generation(&self, generation: u64) {
        self.config_generation.set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// The label a request's GraphQL operation `name` goes by, in the metrics and as its span's
    /// name: itself when known; a new name takes a slot only for a request that was answered
    /// (`status` below 400); `other` past the slots; `-` for none.
    pub fn operation_label(&self, name: Option<&str>, status: u16) -> &'static str {
        name.map_or("-", |name| self.operations.label(name, status < 400))
    }

    /// A request began: `requests_in_flight` counts it until the guard is dropped.
    pub fn started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub fn observe(&self, record: &RequestRecord<'_>) {
        let route = self.routes.label(record.route, true);
        let operation = record.operation;
        self.requests
            .get_or_create(&[
                ("route", route),
                ("operation", operation),
                ("status", status_label(record.status)),
                ("code", record.error_code.unwrap_or("-")),
                ("source", record.error_source.unwrap_or("-")),
            ])
            .inc();
        let by_route = [("route", route), ("operation", operation)];
        let exemplar = record.trace_id.map(|id| [("trace_id", id.to_owned())]);
        self.duration.get_or_create(&by_route).observe(seconds(record.split.total), exemplar);
        self.gateway_time.get_or_create(&by_route).observe(seconds(record.split.gateway()));
        let (full, fast) = record.validations;
        if full > 0 {
            self.validated_full.inc_by(full.into());
        }
        if fast > 0 {
            self.validated_fast.inc_by(fast.into());
        }
        for call in record.calls {
            let outcome = match call.outcome {
                CallOutcome::Ok => "ok",
                CallOutcome::Failed(kind) => kind,
            };
            self.upstream_calls
                .get_or_create(&[
                    ("backend", call.service),
                    ("operation", call.operation),
                    ("outcome", outcome),
                    ("cache", call.decisions.cache.as_str()),
                ])
                .inc();
            self.upstream_duration
                .get_or_create(&[("backend", call.service), ("operation", call.operation)])
                .observe(seconds(call.latency));
        }
    }

    /// The whole registry in the text exposition format.
    pub fn encode(&self) -> String {
        let Serving { health, authenticator } =
            self.serving.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if let Some(age) = authenticator.as_ref().and_then(|a| a.jwks_age()) {
            self.jwks_age.set(age.as_secs_f64());
        }
        // Breaker states are read at the scrape, not kept up to date per call.
        for instance in health.states() {
            for state in [BreakerState::Closed, BreakerState::HalfOpen, BreakerState::Open] {
                let labels = [
                    ("backend", instance.service.to_owned()),
                    ("instance", instance.instance.to_string()),
                    ("state", state.as_str().to_owned()),
                ];
                self.breakers.get_or_create(&labels).set(i64::from(instance.breaker == state));
            }
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Keeps `requests_in_flight` honest however the request ends.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `status` as a label value, made once per status code.
fn status_label(status: u16) -> &'static str {
    static LABELS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let labels =
        LABELS.get_or_init(|| (0..1000u16).map(|code| &*Box::leak(code.to_string().into_boxed_str())).collect());
    labels.get(usize::from(status)).copied().unwrap_or("other")
}

/// The values one label may take: the first `cap` seen, then `other`. Each is interned (leaked)
/// once: at most `cap` strings per label for the life of the process, since the metrics outlive
/// config generations.
struct BoundedValues {
    cap: usize,
    seen: RwLock<HashSet<&'static str>>,
}

impl BoundedValues {
    fn new(cap: usize) -> Self {
        Self { cap, seen: RwLock::new(HashSet::new()) }
    }

    /// `value` when it is known, or when `may_add` and there is room; `other` otherwise.
    fn label(&self, value: &str, may_add: bool) -> &'static str {
        if let Some(known) = self.seen.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(value) {
            return known;
        }
        if !may_add {
            return "other";
        }
        let mut seen = self.seen.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = seen.get(value) {
            return known;
        }
        if seen.len() < self.cap {
            let interned: &'static str = Box::leak(value.into());
            seen.insert(interned);
            interned
        } else {
            "other"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_invented_operation_names_stops_at_the_cap() {
        let metrics = Metrics::new();
        let split = TimeSplit { total: Duration::from_millis(2), upstream: Duration::ZERO };
        for n in 0..10_000 {
            let name = format!("Invented{n}");
            let label = metrics.operation_label(Some(&name), 200);
            let record = RequestRecord {
                route: "/graphql",
                operation: label,
                status: 200,
                error_code: None,
                error_source: None,
                split,
                calls: &[],
                validations: (1, 0),
                trace_id: None,
            };
            metrics.observe(&record);
        }
        let text = metrics.encode();
        let series = text.lines().filter(|l| l.starts_with("bff_requests_total{")).count();
        assert_eq!(series, MAX_OPERATIONS + 1, "the first names, then `other`");
        assert!(text.contains(r#"operation="other""#));
    }

    #[test]
    fn refused_requests_take_no_slot_from_real_operations() {
        let metrics = Metrics::new();
        for n in 0..1000 {
            assert_eq!(metrics.operation_label(Some(&format!("Refused{n}")), 400), "other");
        }
        assert_eq!(metrics.operation_label(Some("Home"), 200), "Home", "the slots are still free");
        assert_eq!(metrics.operation_label(Some("Home"), 429), "Home", "a known name stays itself when refused");
    }
}
