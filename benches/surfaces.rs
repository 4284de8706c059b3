//! What the tailored GraphQL surfaces save, against baselines measured in the same run:
//!
//! 1. **Field trimming**: backend bytes received per mobile `home` request (the app's `Home`
//!    operation, and the smallest screen `{ home { user { name } } }`), with trimming on against
//!    the same BFF built with `trim_fields = false`. Bytes and calls are the demo backends' own
//!    records (`GET /calls`), not an estimate.
//! 2. **Parse cache**: time per request when the document is in the cache (the same text again)
//!    against a miss (the same operation made unique by a trailing comment, so it must be sized,
//!    tokenised and parsed again). In process (`oneshot` on the whole router), so the figures are
//!    the gateway's own CPU.
//!
//! `cargo bench --bench surfaces` (add `-- 2000` for more iterations per case).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::Request;
use serde_json::Value;
use tower::ServiceExt;

const DEFAULT_ITERATIONS: u32 = 500;
/// Requests per trimming case: the byte counts are exact, a few requests show they are stable.
const TRIM_REQUESTS: u32 = 20;
const HOME: &str = include_str!("../bffs/mobile/operations/Home.graphql");
const NAME_ONLY: &str = "{ home { user { name } } }";

async fn post(router: &Router, token: &str, query: &str) -> Value {
    let body = serde_json::json!({ "query": query }).to_string();
    let request = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let reply: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(reply.get("errors").is_none(), "{query}: {reply}");
    reply
}

/// Backend calls and response bytes the demo recorded since the last reset, over every service.
async fn backend_traffic(http: &reqwest::Client, control: &str) -> (u64, u64) {
    let calls: Value = http.get(format!("{control}/calls")).send().await.unwrap().json().await.unwrap();
    let mut count = 0;
    let mut bytes = 0;
    for service in calls.as_object().unwrap().values() {
        for call in service["recent"].as_array().into_iter().flatten() {
            count += 1;
            bytes += call["response_bytes"].as_u64().unwrap();
        }
    }
    (count, bytes)
}

/// Backend calls and bytes per request of `query`.
async fn traffic_per_request(
    router: &Router,
    token: &str,
    query: &str,
    http: &reqwest::Client,
    control: &str,
) -> (f64, f64) {
    http.post(format!("{control}/reset")).send().await.unwrap();
    for _ in 0..TRIM_REQUESTS {
        post(router, token, query).await;
    }
    let (calls, bytes) = backend_traffic(http, control).await;
    (calls as f64 / f64::from(TRIM_REQUESTS), bytes as f64 / f64::from(TRIM_REQUESTS))
}

async fn time_per_request(router: &Router, token: &str, iterations: u32, query: impl Fn(u32) -> String) -> Duration {
    let started = Instant::now();
    for i in 0..iterations {
        post(router, token, &query(i)).await;
    }
    started.elapsed() / iterations
}

fn main() {
    let iterations = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(DEFAULT_ITERATIONS);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        bff_upstream::tls::install_default_provider();
        let demo = bff_demo::Demo::start(bff_demo::DemoConfig::ephemeral()).await.unwrap();
        let listen = "127.0.0.1:0".parse().unwrap();
        let config = bff_platform::mobile_config(&demo, listen, Duration::from_secs(2));
        let mut untrimmed_config = config.clone();
        untrimmed_config.own.graphql.trim_fields = false;
        let trimmed = mobile_bff::app(config).unwrap();
        let untrimmed = mobile_bff::app(untrimmed_config).unwrap();
        let token = demo.mint_token("u-1", "mobile", "profile orders", 3600);
        let http = reqwest::Client::new();
        let control = demo.control_url();

        println!("field trimming: backend traffic per mobile request ({TRIM_REQUESTS} requests each, from the demo's records)");
        for (name, query) in [("Home operation", HOME), ("{ home { user { name } } }", NAME_ONLY)] {
            let (calls_before, before) = traffic_per_request(&untrimmed, &token, query, &http, &control).await;
            let (calls_after, after) = traffic_per_request(&trimmed, &token, query, &http, &control).await;
            println!("  {name}");
            println!("    untrimmed (baseline)  {calls_before:>4.1} calls  {before:>8.0} bytes");
            println!("    trimmed               {calls_after:>4.1} calls  {after:>8.0} bytes");
            println!("    ratio trimmed/untrimmed bytes {:.3}", after / before);
        }

        println!("parse cache: time per Home request, in process ({iterations} requests each)");
        // Warm every other cache (signing keys, connections) before timing.
        post(&trimmed, &token, HOME).await;
        let hit = time_per_request(&trimmed, &token, iterations, |_| HOME.to_owned()).await;
        let miss = time_per_request(&trimmed, &token, iterations, |i| format!("{HOME}\n# miss {i}")).await;
        println!("  hit (same document)       {:>8.1} µs", hit.as_secs_f64() * 1e6);
        println!("  miss (parsed again)       {:>8.1} µs", miss.as_secs_f64() * 1e6);
        println!("  ratio hit/miss {:.3}", hit.as_secs_f64() / miss.as_secs_f64());
    });
}
