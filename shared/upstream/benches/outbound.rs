//! What the per-backend stack's layers cost per call, against a baseline measured in the same run:
//! the same no-op transport called bare. No sockets, so the figures are the layers' CPU cost alone:
//! record and budget alone; the whole default stack (record, cache with nothing to cache,
//! coalescing, budget, bulkhead, retry, balance with a breaker); and the cache's miss path (a new
//! key each call: lookup, call, store) against its hit path.
//!
//! `cargo bench -p bff-upstream --bench outbound` (add `-- 500000` for more iterations).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bff_upstream::layer::{CallBudgetLayer, Layered, OperationCache, RecordLayer};
use bff_upstream::{Answer, Call, CallContext, CallRecorder, UpstreamConfig, UpstreamError, UpstreamRequest};
use tower::{Service, ServiceBuilder, ServiceExt};

const DEFAULT_ITERATIONS: u32 = 200_000;

fn transport()
-> impl Service<UpstreamRequest, Response = Answer, Error = UpstreamError, Future: Send> + Clone + Send + Sync + 'static
{
    tower::service_fn(|_: UpstreamRequest| async {
        Ok::<_, UpstreamError>(Answer::new(bytes::Bytes::from_static(b"{}")))
    })
}

/// Mean time per call of `service`; `distinct` gives every call its own id (a new cache key).
async fn per_call<S>(service: S, iterations: u32, distinct: bool) -> Duration
where
    S: Service<UpstreamRequest, Response = Answer, Error = UpstreamError> + Clone,
{
    let started = Instant::now();
    for n in 0..iterations {
        // A request with a deadline and a recorder, as every call made for an inbound request
        // has; a fresh recorder each time, as each inbound request has its own.
        let cx = CallContext::new("bench")
            .with_deadline(Instant::now() + Duration::from_secs(3600))
            .with_recorder(CallRecorder::default());
        let id = if distinct { format!("u-{n}") } else { "u-1".to_owned() };
        let request = UpstreamRequest::new(cx, Call::get("GET /users/{id}", ["users".to_owned(), id]));
        service.clone().oneshot(request).await.unwrap();
    }
    started.elapsed() / iterations
}

fn micros(duration: Duration) -> f64 {
    duration.as_nanos() as f64 / 1000.0
}

fn main() {
    let iterations = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(DEFAULT_ITERATIONS);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Building the stacks makes their tasks' homes; they need the runtime at hand.
    let _context = runtime.enter();
    let record_and_budget = ServiceBuilder::new()
        .layer(Layered(RecordLayer::new("users")))
        .layer(CallBudgetLayer::new("users", Duration::from_secs(2)))
        .service(transport());
    let config = UpstreamConfig::new("http://127.0.0.1:1".parse().unwrap());
    let full = bff_upstream::stack::stack("users", &config, |_| Ok(transport())).unwrap();
    let mut cached = config.clone();
    cached
        .cache
        .operations
        .insert("GET /users/{id}".into(), OperationCache { ttl: Duration::from_secs(3600), public: false });
    let cached = bff_upstream::stack::stack("users", &cached, |_| Ok(transport())).unwrap();
    let (bare, minimal, whole, miss, hit) = runtime.block_on(async {
        (
            per_call(transport(), iterations, true).await,
            per_call(record_and_budget, iterations, true).await,
            per_call(full, iterations, true).await,
            per_call(cached.clone(), iterations, true).await,
            per_call(cached, iterations, false).await,
        )
    });
    println!("upstream stack, {iterations} calls each, no sockets (a no-op transport):");
    println!("  bare transport              {:>8.2} µs/call  (baseline)", micros(bare));
    for (name, figure) in [("record + budget", minimal), ("the whole default stack", whole)] {
        println!(
            "  {name:<27} {:>8.2} µs/call  (the layers add {:.2} µs)",
            micros(figure),
            micros(figure.saturating_sub(bare))
        );
    }
    println!(
        "  cache miss (lookup + store) {:>8.2} µs/call  (the layers add {:.2} µs)",
        micros(miss),
        micros(miss.saturating_sub(bare))
    );
    println!(
        "  cache hit                   {:>8.2} µs/call  ({:.2}x the miss path; a real miss adds the backend's round trip)",
        micros(hit),
        micros(hit) / micros(miss)
    );
}
