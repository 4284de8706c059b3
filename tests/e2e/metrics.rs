//! `/metrics` on the admin listener, scraped over HTTP and parsed as Prometheus parses it: the
//! counters move by exactly what a scripted sequence of requests should move them by, gateway
//! time counts parallel backend waits once, and a flood of invented names and paths leaves the
//! number of series bounded.

use std::net::SocketAddr;
use std::time::Duration;

use bff_gateway::limits::Quota;
use serde_json::json;

use crate::support::TestStack;

/// One sample of a scrape: its name, labels and value, and its exemplar's trace id.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
    #[serde(default)]
    pub exemplar: Option<String>,
}

/// Parses an OpenMetrics page with the Prometheus project's own parser (Python's
/// `prometheus_client`), which also refuses a page that is not valid OpenMetrics.
const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
samples = [{"name": s.name, "labels": s.labels, "value": s.value,
            "exemplar": s.exemplar.labels.get("trace_id") if s.exemplar else None}
           for family in text_string_to_metric_families(sys.stdin.read()) for s in family.samples]
print(json.dumps(samples))
"#;

/// A scrape of `admin`'s `/metrics`, parsed.
pub(crate) async fn scrape(t: &TestStack, admin: SocketAddr) -> Vec<Sample> {
    use std::io::Write as _;
    let response = t.http.get(TestStack::url(admin, "/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    let mut parser = std::process::Command::new("python3")
        .args(["-c", PARSER])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    parser.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = parser.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "these tests parse /metrics with Python's prometheus_client: \
         `python3 -m pip install prometheus-client==0.21.1` (.ci/run installs it)"
    );
    assert!(output.status.success(), "not valid OpenMetrics: {stderr}\n{text}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The sum of every sample named `metric` whose labels include all of `labels` (0 when none).
fn value(scrape: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .iter()
        .filter(|s| s.name == metric && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

fn series(scrape: &[Sample], metric: &str) -> usize {
    scrape.iter().filter(|s| s.name == metric).count()
}

/// A partner BFF with a plan quota of three requests, and the catalog cached, on free ports.
async fn partner(t: &TestStack) -> (SocketAddr, SocketAddr) {
    let mut config = bff_platform::partner_config(
        &t.stack.demo,
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(1),
        bff_platform::DEMO_PARTNER_API_KEY,
    );
    config.own.plans.get_mut("full").unwrap().limit = Some(Quota::new(1, Duration::from_secs(60), 3));
    let server = config.server.clone();
    let apps = partner_bff::apps(config).unwrap();
    let (public, _) = bff_platform::spawn_server_with(apps.public, &server, std::future::pending()).await.unwrap();
    let (admin, _) =
        bff_platform::spawn_server(apps.admin, "127.0.0.1:0".parse().unwrap(), std::future::pending()).await.unwrap();
    (public, admin)
}

#[tokio::test]
async fn the_counters_move_by_exactly_what_each_request_did() {
    let t = TestStack::start().await;
    let (addr, admin) = partner(&t).await;
    let key = [("x-api-key", bff_platform::DEMO_PARTNER_API_KEY)];
    let route = "/v2/products/{id}";
    let requests = |s: &[Sample], status: &str, code: &str, source: &str| {
        value(s, "bff_requests_total", &[("route", route), ("status", status), ("code", code), ("source", source)])
    };
    let catalog = |s: &[Sample], cache: &str| {
        value(
            s,
            "bff_upstream_calls_total",
            &[("backend", "catalog"), ("operation", "GET /products/{id}"), ("outcome", "ok"), ("cache", cache)],
        )
    };
    let before = scrape(&t, admin).await;

    // A success, then the same product again: the catalog's answer comes from the cache.
    assert_eq!(t.get(addr, "/v2/products/p-1", &key).await.status, 200);
    assert_eq!(t.get(addr, "/v2/products/p-1", &key).await.status, 200);
    // No credential: 401, the gateway's.
    let refused = t.get(addr, "/v2/products/p-1", &[("x-api-key", "wrong")]).await;
    assert_eq!((refused.status.as_u16(), refused.body["source"].as_str()), (401, Some("gateway")));
    // A hung catalog: 504, the backend's; the body says whose too.
    t.set_faults("catalog", json!({ "hang": true })).await;
    let timed_out = t.get(addr, "/v2/products/p-2", &key).await;
    assert_eq!((timed_out.status.as_u16(), timed_out.body["source"].as_str()), (504, Some("backend")));
    // The plan's third request was that one; the fourth is refused.
    assert_eq!(t.get(addr, "/v2/products/p-3", &key).await.status, 429);

    let after = scrape(&t, admin).await;
    let moved = |f: &dyn Fn(&[Sample]) -> f64| f(&after) - f(&before);
    assert_eq!(moved(&|s| requests(s, "200", "-", "-")), 2.0);
    assert_eq!(moved(&|s| requests(s, "504", "UPSTREAM_TIMEOUT", "backend")), 1.0);
    assert_eq!(moved(&|s| requests(s, "429", "RATE_LIMITED", "gateway")), 1.0);
    assert_eq!(moved(&|s| requests(s, "401", "UNAUTHENTICATED", "gateway")), 1.0);
    assert_eq!(moved(&|s| catalog(s, "miss")), 1.0, "the first read");
    assert_eq!(moved(&|s| catalog(s, "hit")), 1.0, "the second read");
    assert_eq!(
        value(&after, "bff_upstream_calls_total", &[("backend", "catalog"), ("outcome", "timeout")]),
        1.0,
        "the hung call"
    );
    assert_eq!(value(&after, "bff_requests_in_flight", &[]), 0.0);
    assert_eq!(value(&after, "bff_build_info", &[]), 1.0);
    // The admin listener is the only place metrics are: the public port does not serve them.
    assert_eq!(t.get(addr, "/metrics", &[]).await.status, 404);
    // It serves the route table too, as `partner-bff routes` prints it.
    let routes = t.http.get(TestStack::url(admin, "/routes")).send().await.unwrap().text().await.unwrap();
    let row = routes.lines().find(|l| l.starts_with("GET /v2/products/{id} ")).unwrap_or_else(|| panic!("{routes}"));
    assert!(row.contains("catalog:read") && row.contains("plan full: 1/1m, burst 3"), "{row}");
}

/// Three backends answering after 150 ms each, in parallel: the gateway's own time is the total
/// less one wait, not three.
#[tokio::test]
async fn gateway_time_counts_parallel_backend_waits_once() {
    let t = TestStack::start().await;
    for service in ["users", "orders", "recommendations"] {
        t.set_faults(service, json!({ "latency_ms": 150 })).await;
    }
    let token = t.token("u-1", "mobile");
    let reply = t.graphql(t.stack.mobile, Some(&token), crate::support::HOME_QUERY, json!({})).await;
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
    let scraped = scrape(&t, t.stack.admin[0]).await;
    let labels = [("route", "/graphql"), ("operation", "Home")];
    let total = value(&scraped, "bff_request_duration_seconds_sum", &labels);
    let gateway = value(&scraped, "bff_gateway_time_seconds_sum", &labels);
    let waiting = total - gateway;
    assert!((0.15..0.3).contains(&waiting), "waited {waiting:.3}s of {total:.3}s: one 150 ms wait, not three");
    // The token was verified with keys fetched moments ago.
    let age = value(&scraped, "bff_jwks_age_seconds", &[]);
    assert!(age > 0.0 && age < 30.0, "JWKS age {age}");
}

/// Invented operation names, ids in paths and unknown paths do not add series past the bound.
#[tokio::test]
async fn a_flood_of_names_ids_and_paths_leaves_the_series_bounded() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    let warm = scrape(&t, t.stack.admin[0]).await;
    let before = series(&warm, "bff_requests_total");
    let warm_partner = scrape(&t, t.stack.admin[2]).await;
    for n in 0..300 {
        let query = format!("query Invented{n} {{ home {{ user {{ id }} }} }}");
        t.graphql(t.stack.mobile, Some(&token), &query, json!({})).await;
        t.get(t.stack.mobile, &format!("/no/such/path/{n}"), &[]).await;
        t.get(t.stack.partner, &format!("/v2/products/p-{n}"), &[("x-api-key", "wrong")]).await;
    }
    let partner_before = series(&warm_partner, "bff_requests_total");
    let partner_grown = series(&scrape(&t, t.stack.admin[2]).await, "bff_requests_total") - partner_before;
    assert!(partner_grown <= 2, "{partner_grown} new partner series for 300 product ids");
    let after = scrape(&t, t.stack.admin[0]).await;
    let grown = series(&after, "bff_requests_total") - before;
    assert!(
        grown <= bff_gateway::telemetry::metrics::MAX_OPERATIONS + 4,
        "{grown} new series for 300 invented names and 300 unknown paths"
    );
    assert!(value(&after, "bff_requests_total", &[("operation", "other")]) > 0.0);
}

/// `Server-Timing` goes to the callers `[server] server_timing_for` names (the devstack: this
/// machine), and to nobody else.
#[tokio::test]
async fn server_timing_goes_only_to_the_configured_callers() {
    let t = TestStack::start().await;
    let key = [("x-api-key", bff_platform::DEMO_PARTNER_API_KEY)];
    let shown = t.get(t.stack.partner, "/v2/products/p-1", &key).await;
    let timing = shown.header("server-timing").unwrap_or_else(|| panic!("no Server-Timing: {:?}", shown.headers));
    let names: Vec<&str> = timing.split(", ").map(|metric| metric.split(';').next().unwrap()).collect();
    assert_eq!(names, ["auth", "upstream", "gateway", "total"], "{timing}");
    // A GraphQL request shows its parsing and execution too.
    let token = t.token("u-1", "mobile");
    let graphql = TestStack::reply(
        t.http
            .post(TestStack::url(t.stack.mobile, "/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": "{ home { user { id name } } }" })),
    )
    .await;
    let timing = graphql.header("server-timing").unwrap().to_owned();
    let names: Vec<&str> = timing.split(", ").map(|metric| metric.split(';').next().unwrap()).collect();
    assert_eq!(names, ["auth", "parse", "execute", "upstream", "gateway", "total"], "{timing}");
    let (plain, _) = partner(&t).await;
    assert_eq!(t.get(plain, "/v2/products/p-1", &key).await.header("server-timing"), None, "not configured");
    // GraphQL errors say whose they are as well.
    t.set_faults("users", json!({ "error_rate": 1.0 })).await;
    let token = t.token("u-1", "mobile");
    let reply = t.graphql(t.stack.mobile, Some(&token), "{ home { user { id name } } }", json!({})).await;
    assert_eq!(reply.body["errors"][0]["extensions"]["source"], "backend", "{:#}", reply.body);
    let refused = t.graphql(t.stack.mobile, None, "{ home { user { id } } }", json!({})).await;
    assert_eq!(refused.body["errors"][0]["extensions"]["source"], "gateway", "{:#}", refused.body);
}

/// Every metric the Grafana dashboard queries is one the BFFs export.
#[tokio::test]
async fn the_dashboard_queries_only_metrics_the_bffs_export() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    t.graphql(t.stack.mobile, Some(&token), crate::support::HOME_QUERY, json!({})).await;
    let exported: std::collections::BTreeSet<String> =
        scrape(&t, t.stack.admin[0]).await.into_iter().map(|s| s.name).collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/bff-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let queries: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap()))
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    let mut queried = std::collections::BTreeSet::new();
    for query in &queries {
        let mut rest = *query;
        while let Some(at) = rest.find("bff_") {
            let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[at + name.len()..];
            queried.insert(name);
        }
    }
    let missing: Vec<&String> = queried.iter().filter(|name| !exported.contains(*name)).collect();
    assert!(missing.is_empty(), "the dashboard queries {missing:?}, which no BFF exports ({exported:?})");
}

/// Each backend instance's breaker state is a gauge: a failing catalog shows as open (ejected).
#[tokio::test]
async fn breaker_states_show_per_backend_instance() {
    let t = TestStack::start().await;
    let config = bff_platform::partner_config(
        &t.stack.demo,
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(1),
        bff_platform::DEMO_PARTNER_API_KEY,
    );
    let apps = partner_bff::apps(config.clone()).unwrap();
    let (public, _) =
        bff_platform::spawn_server_with(apps.public, &config.server, std::future::pending()).await.unwrap();
    let (admin, _) =
        bff_platform::spawn_server(apps.admin, "127.0.0.1:0".parse().unwrap(), std::future::pending()).await.unwrap();
    let open = |s: &[Sample]| value(s, "bff_upstream_breaker", &[("backend", "catalog"), ("state", "open")]);
    let closed = |s: &[Sample]| value(s, "bff_upstream_breaker", &[("backend", "catalog"), ("state", "closed")]);
    let before = scrape(&t, admin).await;
    assert_eq!((open(&before), closed(&before)), (0.0, 1.0), "one catalog instance, closed");
    // Ten failures open it: two attempts per read, so five reads.
    t.set_faults("catalog", json!({ "error_rate": 1.0 })).await;
    let key = [("x-api-key", bff_platform::DEMO_PARTNER_API_KEY)];
    for n in 1..=8 {
        t.get(public, &format!("/v2/products/p-{n}"), &key).await;
    }
    let after = scrape(&t, admin).await;
    assert_eq!((open(&after), closed(&after)), (1.0, 0.0), "the catalog instance is ejected");
}

/// A document without variables is validated in full until a request of it has passed, then in
/// the fast mode; a document with variables, or one that failed, is validated in full every time.
/// The answers stay the same either way.
#[tokio::test]
async fn validation_goes_fast_only_for_a_document_that_passed_and_has_no_variables() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    let validations = |s: &[Sample], mode: &str| value(s, "bff_graphql_validations_total", &[("mode", mode)]);
    let before = scrape(&t, t.stack.admin[0]).await;

    let mut answers = Vec::new();
    for _ in 0..3 {
        let reply = t.graphql(t.stack.mobile, Some(&token), "{ home { user { id name } } }", json!({})).await;
        assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
        answers.push(reply.body["data"].clone());
    }
    assert!(answers.iter().all(|a| *a == answers[0] && a["home"]["user"]["id"] == "u-1"), "{answers:?}");
    let with_variables = "query Recent($n: Int!) { home { recentOrders(first: $n) { id } } }";
    for n in [1, 2] {
        let reply = t.graphql(t.stack.mobile, Some(&token), with_variables, json!({ "n": n })).await;
        assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
    }
    for _ in 0..2 {
        let reply = t.graphql(t.stack.mobile, Some(&token), "{ home { user { internalRiskScore } } }", json!({})).await;
        assert_eq!(reply.error_codes(), ["GRAPHQL_VALIDATION_FAILED"]);
    }

    let after = scrape(&t, t.stack.admin[0]).await;
    let moved = |mode| validations(&after, mode) - validations(&before, mode);
    // In full: the first of the three, both with variables, both that failed.
    assert_eq!((moved("full"), moved("fast")), (5.0, 2.0));
}
