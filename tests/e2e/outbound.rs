//! The core's outbound stack: calls as data, deadlines that travel, honest readiness, and the
//! error kinds retry and breaker decisions need.

use std::time::Duration;

use bff_upstream::{CallContext, CallRecorder, UpstreamConfig};
use serde_json::json;

use crate::support::{HOME_QUERY, TestStack, at};

/// Backends learn how long they have: no more than what remains of the request's budget, even
/// when their own timeout is longer.
#[tokio::test]
async fn backends_are_told_the_remaining_budget() {
    let t = TestStack::start().await;
    let mut config =
        bff_platform::mobile_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(30));
    config.server.request_timeout = Duration::from_secs(1);
    let (addr, _server) = bff_platform::spawn_server_with(
        mobile_bff::app(config.clone()).unwrap(),
        &bff_gateway::config::ServerConfig { listen: Some("127.0.0.1:0".parse().unwrap()), ..config.server },
        std::future::pending(),
    )
    .await
    .unwrap();
    let reply = t.graphql(addr, Some(&t.token("u-1", "mobile")), HOME_QUERY, json!({})).await;
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);

    let users = t.recent_calls("users").await.pop().unwrap();
    let rest_ms: u64 = users["headers"][bff_upstream::headers::REQUEST_TIMEOUT_MS].as_str().unwrap().parse().unwrap();
    assert!(rest_ms > 0 && rest_ms <= 1000, "users was given {rest_ms} ms of a 1 s request");
    let orders = t.recent_calls("orders").await.pop().unwrap();
    let grpc = bff_demo::parse_grpc_timeout(orders["headers"]["grpc-timeout"].as_str().unwrap()).unwrap();
    assert!(grpc > Duration::ZERO && grpc <= Duration::from_secs(1), "orders was given {grpc:?} of a 1 s request");
}

/// A backend that honours the header stops at it: the demo answers 504 at the budget instead of
/// finishing its three-second work.
#[tokio::test]
async fn the_demo_backends_stop_work_past_the_deadline() {
    let t = TestStack::start().await;
    t.set_faults("users", json!({ "latency_ms": 3000 })).await;
    let response = t
        .http
        .get(TestStack::url(t.stack.demo.addrs.users, "/users/u-1"))
        .header(bff_upstream::headers::REQUEST_TIMEOUT_MS, "50")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
}

/// Logs (and later metrics) see operation templates, never the ids in a path.
#[tokio::test]
async fn calls_are_recorded_by_operation_template() {
    let t = TestStack::start().await;
    let users = bff_backends::UsersClient::new(&UpstreamConfig::new(
        bff_demo::http_url(t.stack.demo.addrs.users).parse().unwrap(),
    ))
    .unwrap();
    let recorder = CallRecorder::default();
    let cx = CallContext::new("test").with_recorder(recorder.clone());
    users.get(&cx, "u-42", &[]).await.unwrap();
    let calls = recorder.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].operation, "GET /users/{id}");
    assert!(!calls[0].to_string().contains("u-42"), "{}", calls[0]);
    // ...while the backend got the real path.
    assert_eq!(t.recent_calls("users").await[0]["path"], "/users/u-42");
}

/// A backend that refuses connections fails as `unavailable`: the call never left, so it is
/// always safe to retry.
#[tokio::test]
async fn a_refused_connection_is_unavailable_and_retryable() {
    let (_reserved, dead) = crate::support::refusing_addr();
    let users =
        bff_backends::UsersClient::new(&UpstreamConfig::new(bff_demo::http_url(dead).parse().unwrap())).unwrap();
    let error = users.get(&CallContext::new("test"), "u-1", &[]).await.unwrap_err();
    assert_eq!(error.kind(), "unavailable", "{error}");
    assert!(error.is_retryable(false));

    let orders =
        bff_backends::OrdersClient::new(&UpstreamConfig::new(bff_demo::http_url(dead).parse().unwrap())).unwrap();
    let error = orders.list(&CallContext::new("test"), "u-1", 3, None, &[]).await.unwrap_err();
    assert_eq!(error.kind(), "unavailable", "{error}");
}

/// A backend that answers "unavailable" itself (HTTP 503, gRPC UNAVAILABLE) may have started on
/// the call: it is overloaded, retryable only when the call is idempotent.
#[tokio::test]
async fn a_backend_refusing_the_call_is_overloaded() {
    let t = TestStack::start().await;
    for service in ["users", "orders"] {
        t.set_faults(service, json!({ "error_rate": 1.0 })).await;
    }
    let addr = |a| UpstreamConfig::new(bff_demo::http_url(a).parse().unwrap());
    let users = bff_backends::UsersClient::new(&addr(t.stack.demo.addrs.users)).unwrap();
    let error = users.get(&CallContext::new("test"), "u-1", &[]).await.unwrap_err();
    assert_eq!(error.kind(), "overloaded", "{error}");
    assert!(!error.is_retryable(false) && error.is_retryable(true));
    let orders = bff_backends::OrdersClient::new(&addr(t.stack.demo.addrs.orders)).unwrap();
    let error = orders.list(&CallContext::new("test"), "u-1", 3, None, &[]).await.unwrap_err();
    assert_eq!(error.kind(), "overloaded", "{error}");
}

/// With recommendations down (its port refusing connections), mobile stays ready, says what is
/// down when asked, and answers `home` with everything else.
#[tokio::test]
async fn a_backend_outage_degrades_answers_but_not_readiness() {
    let t = TestStack::start().await;
    let mobile = t.stack.mobile;
    t.set_faults("recommendations", json!({ "down": true })).await;
    let refused = reqwest::get(TestStack::url(t.stack.demo.addrs.recommendations, "/healthz")).await;
    assert!(refused.is_err(), "the demo still answers while down");

    let ready = t.get(mobile, "/readyz", &[]).await;
    assert_eq!(ready.status, 200, "{:#}", ready.body);
    assert_eq!(ready.body["status"], "ready");
    let verbose = t.get(mobile, "/readyz?verbose", &[]).await;
    assert_eq!(verbose.status, 200);
    let text = verbose.body.as_str().unwrap();
    for line in ["[+]signing-keys ok", "[+]not-draining ok", "[+]backend:users ok"] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    assert!(text.contains("[-]backend:recommendations failed: unavailable"), "{text}");

    let reply = t.graphql(mobile, Some(&t.token("u-1", "mobile")), HOME_QUERY, json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(at(&reply.body, "/data/home/user/id"), "u-1");
    assert!(at(&reply.body, "/data/home/recentOrders").is_array());
    assert!(at(&reply.body, "/data/home/recommendations").is_null());
    assert_eq!(reply.error_codes(), ["UPSTREAM_UNAVAILABLE"]);
    assert_eq!(reply.body["errors"][0]["path"], json!(["home", "recommendations"]));

    // Back up, it serves again (the BFF reconnects by itself).
    t.set_faults("recommendations", json!({ "down": false })).await;
    let reply = t.graphql(mobile, Some(&t.token("u-1", "mobile")), HOME_QUERY, json!({})).await;
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
}

/// A replica is not ready until it can verify tokens: with identity unreachable from the start,
/// the signing keys cannot load; and a request with a token is refused at once as unavailable.
#[tokio::test]
async fn readiness_needs_the_signing_keys() {
    let t = TestStack::start().await;
    let (_reserved, dead) = crate::support::refusing_addr();
    let mut config = bff_platform::web_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
    config.auth.jwt.jwks_url = Some(format!("{}/.well-known/jwks.json", bff_demo::http_url(dead)).parse().unwrap());
    let (addr, _server) = bff_platform::spawn_server(
        web_bff::app(config).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        std::future::pending(),
    )
    .await
    .unwrap();
    let ready = t.get(addr, "/readyz", &[]).await;
    assert_eq!(ready.status, 503, "{:#}", ready.body);
    assert_eq!(ready.body["failed"], json!(["signing-keys"]));
    let reply = t.graphql(addr, Some(&t.token("u-1", "web")), "{ me { id } }", json!({})).await;
    assert_eq!((reply.status.as_u16(), reply.error_codes()), (503, vec!["UPSTREAM_UNAVAILABLE".to_owned()]));
}
