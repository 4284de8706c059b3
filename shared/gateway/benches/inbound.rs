//! What the inbound stack costs per request, against a baseline measured in the same run: the
//! same route served by a bare router. In process (`oneshot`, no sockets), so the figures are the
//! layers' own CPU cost, not the kernel's.
//!
//! `cargo bench -p bff-gateway --bench inbound` (add `-- 200000` for more iterations).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bff_gateway::config::{AuthConfig, JwtConfig, ServerConfig};
use bff_gateway::inbound::InboundStack;
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
}
