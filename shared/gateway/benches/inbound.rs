//! What the inbound stack costs per request, against a baseline measured in the same run: the
//! same route served by a bare router. In process (`oneshot`, no sockets), so the figures are the
//! layers' own CPU cost, not the kernel's.
//!
//! Then what one rate-limit decision costs (three limits at once: global, address, principal),
//! in process, and through Redis against a bare `PING` round trip measured in the same run; and
//! what the metrics cost a request (one observation with three backend calls).
//!
//! `cargo bench -p bff-gateway --bench inbound` (add `-- 200000` for more iterations; `REDIS_URL`
//! picks the Redis, 127.0.0.1:6379 by default).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bff_gateway::config::{AuthConfig, JwtConfig, ServerConfig};
use bff_gateway::inbound::InboundStack;
use bff_gateway::limits::{Check, Limits, LimitsConfig, Quota};
use bff_gateway::store::{Redis, RedisConfig};
use bff_gateway::{Authenticator, ErrorFormat};
use http::Request;
use tower::ServiceExt;

const DEFAULT_ITERATIONS: u32 = 100_000;

/// The route under both: a handler that does nothing, so only the layers around it show.
fn route() -> Router {
    Router::new().route("/bench", get(|| async { "ok" }))
}

fn stacked() -> Router {
    let server = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    // Never called: the bench route is public, so no token is verified.
    let jwt = JwtConfig::new("https://idp.invalid", "bench", "https://idp.invalid/jwks".parse().unwrap());
    let authenticator =
        Arc::new(Authenticator::from_config(&AuthConfig::new(jwt), bff_gateway::limits::Limits::unlimited()).unwrap());
    InboundStack::new(&server, ErrorFormat::GraphQl, authenticator).routes(Router::new(), route()).build()
}

async fn per_request(router: &Router, iterations: u32) -> Duration {
    let request = || Request::get("/bench").header("x-request-id", "bench-1").body(Body::empty()).unwrap();
    for _ in 0..iterations / 10 {
        router.clone().oneshot(request()).await.unwrap();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        let response = router.clone().oneshot(request()).await.unwrap();
        assert!(response.status().is_success());
    }
    started.elapsed() / iterations
}

/// Three limits on one request, each of them admitting: what every limited request decides.
async fn decisions(limits: &Limits, iterations: u32) -> Duration {
    let quota = Quota::new(1_000_000_000, Duration::from_secs(1), 1_000_000_000);
    let policies = [limits.policy("global", quota), limits.policy("address", quota), limits.policy("principal", quota)];
    let principals: Vec<String> = (0..1_000).map(|i| format!("user:u-{i}")).collect();
    let started = Instant::now();
    for i in 0..iterations as usize {
        let checks = [
            Check { policy: &policies[0], key: "*", cost: 1 },
            Check { policy: &policies[1], key: "192.0.2.7", cost: 1 },
            Check { policy: &policies[2], key: &principals[i % principals.len()], cost: 1 },
        ];
        let decision = limits.limiter().decide(&checks, true).await;
        assert!(decision.admitted && decision.states.len() == 3);
    }
    started.elapsed() / iterations
}

/// One bare round trip to `redis`: the floor a shared decision cannot go below.
async fn pings(redis: &Redis, iterations: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..iterations {
        let pong: String = redis.query("bench", &redis::cmd("PING")).await.unwrap();
        assert_eq!(pong, "PONG");
    }
    started.elapsed() / iterations
}

async fn limit_decisions(iterations: u32) {
    let local = decisions(&Limits::from_config("bench", &LimitsConfig::default(), None).unwrap(), iterations).await;
    println!("rate-limit decisions, three limits each:");
    println!("  in process       {:>8.3} µs/decision", local.as_nanos() as f64 / 1000.0);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let store = RedisConfig { key_prefix: format!("bench-{}", std::process::id()), ..RedisConfig::new(url.clone()) };
    let redis = Redis::from_config(&store).unwrap().unwrap();
    if redis.query::<String>("bench", &redis::cmd("PING")).await.is_err() {
        println!("  through Redis    skipped: no Redis at {url} (set REDIS_URL, or start redis-server)");
        return;
    }
    let config = LimitsConfig { shared: true, shared_timeout: Duration::from_secs(1), ..LimitsConfig::default() };
    let shared = Limits::from_config("bench", &config, Some(&redis)).unwrap();
    let round_trips = iterations.min(20_000);
    decisions(&shared, round_trips / 10).await;
    let (ping, decision) = (pings(&redis, round_trips).await, decisions(&shared, round_trips).await);
    assert!(shared.limiter().shared_status() == Some(Ok(())), "every decision was made in Redis");
    println!("  Redis PING       {:>8.3} µs/round trip  (baseline)", ping.as_nanos() as f64 / 1000.0);
    println!(
        "  through Redis    {:>8.3} µs/decision  ({:.2}x a round trip: one script call)",
        decision.as_nanos() as f64 / 1000.0,
        decision.as_nanos() as f64 / ping.as_nanos().max(1) as f64,
    );
}

fn main() {
    bff_upstream::tls::install_default_provider();
    let iterations = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(DEFAULT_ITERATIONS);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (bare, stacked) = runtime
        .block_on(async { (per_request(&route(), iterations).await, per_request(&stacked(), iterations).await) });
    let overhead = stacked.saturating_sub(bare);
    println!("inbound stack, {iterations} requests each, in process:");
    println!("  bare router      {:>8.2} µs/request  (baseline)", bare.as_nanos() as f64 / 1000.0);
    println!(
        "  inbound stack    {:>8.2} µs/request  ({:.2}x the baseline; the stack adds {:.2} µs)",
        stacked.as_nanos() as f64 / 1000.0,
        stacked.as_nanos() as f64 / bare.as_nanos().max(1) as f64,
        overhead.as_nanos() as f64 / 1000.0,
    );
    runtime.block_on(limit_decisions(iterations));
    metrics(iterations);
    traces(&runtime, stacked, iterations);
}

/// The stack again with traces on: a server span per request, queued for an exporter (to a port
/// where no collector listens, so exports fail in the background and spans are dropped past the
/// queue, as with a dead collector). Logs stay off, so the difference is the spans alone.
fn traces(runtime: &tokio::runtime::Runtime, untraced: Duration, iterations: u32) {
    use bff_gateway::telemetry::TelemetryConfig;
    let config = TelemetryConfig {
        log_level: Some("off".to_owned()),
        otlp_endpoint: Some("http://127.0.0.1:9".parse().unwrap()),
        ..TelemetryConfig::default()
    };
    let traced = runtime.block_on(async {
        let guard = bff_gateway::telemetry::init_with_tracing("bench", &config).unwrap();
        let traced = per_request(&stacked(), iterations).await;
        // Shut the exporter down on the runtime its batches run on.
        drop(guard);
        traced
    });
    println!("traces, {iterations} requests:");
    println!(
        "  inbound stack with a span per request  {:>8.2} µs/request  (tracing adds {:.2} µs)",
        traced.as_nanos() as f64 / 1000.0,
        traced.saturating_sub(untraced).as_nanos() as f64 / 1000.0,
    );
}

/// One request's observation: its counters and histograms, and three backend calls'.
fn metrics(iterations: u32) {
    use bff_gateway::telemetry::metrics::RequestRecord;
    use bff_gateway::telemetry::{Metrics, TimeSplit};
    use bff_upstream::{CallOutcome, CallTrace, UpstreamCall};

    let metrics = Metrics::new();
    let started = Instant::now();
    let call = |service| UpstreamCall {
        service,
        operation: "GET /x/{id}",
        started,
        latency: Duration::from_millis(3),
        outcome: CallOutcome::Ok,
        decisions: CallTrace::default().decisions(),
    };
    let calls = [call("users"), call("orders"), call("recommendations")];
    let split = TimeSplit::of(started, started + Duration::from_millis(5), &calls);
    let record = RequestRecord {
        route: "/graphql",
        operation: "Home",
        status: 200,
        error_code: None,
        error_source: None,
        split,
        calls: &calls,
        validations: (0, 1),
        trace_id: None,
    };
    let timer = Instant::now();
    for _ in 0..iterations {
        metrics.observe(&record);
    }
    let each = timer.elapsed() / iterations;
    println!("metrics, {iterations} requests:");
    println!("  one request with three backend calls observed: {:.3} µs", each.as_nanos() as f64 / 1000.0);
}
