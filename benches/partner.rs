//! What the partner API's layers cost per request, against a baseline measured in the same run.
//!
//! 1. Whole requests, in process (`oneshot` on the partner router, the demo backends on
//!    loopback): the baseline is a v2 product read with every member (catalog and inventory in
//!    parallel); the other cases show what v1's translation, a sparse fieldset, selecting the
//!    version by media type, a refused body and an idempotent replay cost next to it.
//! 2. The layers alone: validating an order body against the published schema, and claiming
//!    then completing an idempotency key in process memory.
//!
//! `cargo bench --bench partner` (add `-- 2000` for more iterations per case).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::Request;
use tower::ServiceExt;

const DEFAULT_ITERATIONS: u32 = 500;

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Option<&'static str>,
}

impl Case {
    fn get(name: &'static str, path: &'static str) -> Self {
        Self { name, method: "GET", path, headers: vec![], body: None }
    }
}

async fn time(router: &Router, case: &Case, iterations: u32) -> (Duration, u16) {
    let mut status = 0;
    let started = Instant::now();
    for _ in 0..iterations {
        let mut request = Request::builder()
            .method(case.method)
            .uri(case.path)
            .header("x-api-key", bff_platform::DEMO_PARTNER_API_KEY)
            .header("content-type", "application/json");
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        let request = request.body(case.body.map_or_else(Body::empty, Body::from)).unwrap();
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
        let config = bff_platform::partner_config(
            &demo,
            "127.0.0.1:0".parse().unwrap(),
            Duration::from_secs(2),
            bff_platform::DEMO_PARTNER_API_KEY,
        );
        let router = partner_bff::app(config).unwrap();
        let order = r#"{"lines": [{"productId": "p-1", "quantity": 1}]}"#;
        let cases = [
            Case::get("baseline: GET /v2/products/{id}", "/v2/products/p-1"),
            Case::get("GET /v1/products/{id}", "/v1/products/p-1"),
            Case::get("?fields=id,name (catalog only)", "/v2/products/p-1?fields=id,name"),
            Case {
                name: "unversioned, Accept: v2",
                headers: vec![("accept", "application/vnd.shop.v2+json".into())],
                ..Case::get("", "/products/p-1")
            },
            Case {
                name: "POST, body breaks the schema",
                method: "POST",
                path: "/v2/orders",
                headers: vec![],
                body: Some(r#"{"lines": [{"productId": "../x", "quantity": 0}], "extra": 1}"#),
            },
            Case { name: "POST, new order", method: "POST", path: "/v2/orders", headers: vec![], body: Some(order) },
            Case {
                name: "POST, Idempotency-Key replay",
                method: "POST",
                path: "/v2/orders",
                headers: vec![("idempotency-key", "bench-replay".into())],
                body: Some(order),
            },
            Case::get("GET /v2/openapi.json", "/v2/openapi.json"),
        ];
        // Warm every cache first (signing keys, connections), so the baseline is not the coldest case.
        time(&router, &cases[0], iterations / 5 + 1).await;
        let (baseline, _) = time(&router, &cases[0], iterations).await;
        println!("partner BFF, {iterations} requests per case, in process; time per request:");
        for case in &cases {
            let (per_request, status) = time(&router, case, iterations).await;
            println!(
                "  {:<34} {status}  {:>8.1} µs   ratio to baseline {:.2}",
                case.name,
                per_request.as_secs_f64() * 1e6,
                per_request.as_secs_f64() / baseline.as_secs_f64()
            );
        }

        println!("the layers alone, {iterations} times each:");
        let document = partner_bff::openapi::document::<partner_bff::v2::V2>("http://127.0.0.1:5000/oauth/token");
        let schema = bff_gateway::rest::JsonSchema::new(
            &partner_bff::openapi::body_schema::<partner_bff::v2::V2>(),
            &document["components"],
        )
        .unwrap();
        let started = Instant::now();
        for _ in 0..iterations {
            schema.body(order.as_bytes()).unwrap();
        }
        println!(
            "  validate an order body          {:>8.2} µs",
            started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
        );
        let store = bff_gateway::rest::idempotency::Idempotency::new("bench", &Default::default(), None).unwrap();
        let stored =
            bff_gateway::rest::idempotency::StoredResponse { status: 201, headers: vec![], body: order.to_owned() };
        let started = Instant::now();
        for i in 0..iterations {
            let key = format!("k-{i}");
            match store.claim("key:bench", &key, &[b"POST /v2/orders", order.as_bytes()]).await.unwrap() {
                bff_gateway::rest::idempotency::Claim::Run(claimed) => {
                    store.complete(claimed, stored.clone()).await.unwrap()
                }
                bff_gateway::rest::idempotency::Claim::Replay(_) => unreachable!("every key is new"),
            }
        }
        println!(
            "  claim + complete a key (memory) {:>8.2} µs",
            started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
        );
    });
}
