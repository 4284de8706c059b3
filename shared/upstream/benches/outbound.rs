//! What the per-backend stack's own layers (record, deadline) cost per call, against a baseline
//! measured in the same run: the same no-op transport called bare. No sockets, so the figures are
//! the layers' CPU cost alone.
//!
//! `cargo bench -p bff-upstream --bench outbound` (add `-- 500000` for more iterations).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bff_upstream::layer::{CallBudgetLayer, RecordLayer};
use bff_upstream::{Answer, Call, CallContext, CallRecorder, UpstreamError, UpstreamRequest};
use tower::{Service, ServiceBuilder, ServiceExt};

const DEFAULT_ITERATIONS: u32 = 200_000;

fn transport()
-> impl Service<UpstreamRequest, Response = Answer, Error = UpstreamError, Future: Send> + Clone + Send + 'static {
    tower::service_fn(|_: UpstreamRequest| async {
        Ok::<_, UpstreamError>(Answer::new(bytes::Bytes::from_static(b"{}")))
    })
}

async fn per_call<S>(service: S, iterations: u32) -> Duration
where
    S: Service<UpstreamRequest, Response = Answer, Error = UpstreamError> + Clone,
{
    // A request with a deadline and a recorder, as every call made for an inbound request has.
    let cx = CallContext::new("bench")
        .with_deadline(Instant::now() + Duration::from_secs(3600))
        .with_recorder(CallRecorder::default());
    let request = || UpstreamRequest::new(cx.clone(), Call::get("GET /users/{id}", ["users", "u-1"]));
    let started = Instant::now();
    for _ in 0..iterations {
        service.clone().oneshot(request()).await.unwrap();
    }
    started.elapsed() / iterations
}

fn main() {
    let iterations = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(DEFAULT_ITERATIONS);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stacked = ServiceBuilder::new()
        .layer(RecordLayer::new("users"))
        .layer(CallBudgetLayer::new("users", Duration::from_secs(2)))
        .service(transport());
    let (bare, stacked) =
        runtime.block_on(async { (per_call(transport(), iterations).await, per_call(stacked, iterations).await) });
    println!("upstream stack (record + deadline), {iterations} calls each, no sockets:");
    println!("  bare transport   {:>8.2} µs/call  (baseline)", bare.as_nanos() as f64 / 1000.0);
    println!(
        "  with the stack   {:>8.2} µs/call  (the layers add {:.2} µs)",
        stacked.as_nanos() as f64 / 1000.0,
        stacked.saturating_sub(bare).as_nanos() as f64 / 1000.0,
    );
}
