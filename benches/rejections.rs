//! What each hostile request costs the mobile BFF to refuse, against a baseline measured in the
//! same run: the cheapest accepted request (`{ __typename }`, no backend call). In process
//! (`oneshot` on the whole BFF router, the demo backends on loopback), so the figures are the
//! gateway's own CPU per request. The goal: every refusal well under a millisecond.
//!
//! `cargo bench --bench rejections` (add `-- 2000` for more iterations per case).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::Request;
use tower::ServiceExt;

const DEFAULT_ITERATIONS: u32 = 500;

async fn time(router: &Router, token: &str, query: &str, iterations: u32) -> (Duration, u16) {
    let body = serde_json::json!({ "query": query }).to_string();
    let mut status = 0;
    let started = Instant::now();
    for _ in 0..iterations {
        let request = Request::post("/graphql")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.clone()))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        status = response.status().as_u16();
        let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    }
    (started.elapsed() / iterations, status)
}

fn main() {
    let iterations = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(DEFAULT_ITERATIONS);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        bff_upstream::tls::install_default_provider();
        let demo = bff_demo::Demo::start(bff_demo::DemoConfig::ephemeral()).await.unwrap();
        let config = bff_platform::mobile_config(&demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
        let router = mobile_bff::app(config).unwrap();
        let token = demo.mint_token("u-1", "mobile", "profile orders", 3600);

        let mut doubling = String::from("query { home { ...F26 } } fragment F0 on Home { user { id } } ");
        for i in 1..=26 {
            doubling.push_str(&format!("fragment F{i} on Home {{ ...F{p} ...F{p} }} ", p = i - 1));
        }
        let aliases: String = (0..100).map(|i| format!("a{i}: home {{ user {{ name }} }} ")).collect();
        let cases = [
            ("baseline: { __typename }", "{ __typename }".to_owned()),
            ("fragment doubling, 26 levels", doubling),
            ("depth 20", format!("{{ {}x{} }}", "a { ".repeat(20), " }".repeat(20))),
            ("cost from first: 100000", "{ home { recentOrders(first: 100000) { id } } }".to_owned()),
            ("100 aliased home screens", format!("{{ {aliases} }}")),
            ("3000 tokens", format!("{{ home {{ user {{ {} }} }} }}", "id ".repeat(3000))),
            (
                "10 directives on a field",
                format!("{{ home {{ user {{ id {} }} }} }}", "@include(if: true) ".repeat(10)),
            ),
            ("20 KiB document", format!("{{ __typename }} # {}", "x".repeat(20 * 1024))),
            ("introspection (allowed here)", "{ __schema { queryType { name } } }".to_owned()),
        ];
        let (baseline, _) = time(&router, &token, &cases[0].1, iterations).await;
        println!("mobile BFF, {iterations} requests per case, in process; time per request:");
        for (name, query) in &cases {
            let (per_request, status) = time(&router, &token, query, iterations).await;
            let ratio = per_request.as_secs_f64() / baseline.as_secs_f64();
            println!(
                "  {name:<32} {status}  {:>8.1} µs   ratio to baseline {ratio:.2}",
                per_request.as_secs_f64() * 1e6
            );
        }
        // A refused token with a known key id and a bad signature: a 401 after full RS256 work.
        let forged = format!("{}x", &token[..token.len() - 1]);
        let (per_request, status) = time(&router, &forged, "{ __typename }", iterations).await;
        println!("  {:<32} {status}  {:>8.1} µs", "bad signature", per_request.as_secs_f64() * 1e6);
    });
}
