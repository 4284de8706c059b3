use std::time::{Duration, Instant};

use bff_platform::StackConfig;
use serde_json::{Value, json};

use crate::support::{HOME_QUERY, PROMPT, TestStack, at};

#[tokio::test]
async fn home_answers_from_users_orders_and_recommendations() {
    let t = TestStack::start().await;
    let user_id = t.user_with_orders(3).await;
    let token = t.token(&user_id, "mobile");
    let reply = t.graphql(t.stack.mobile, Some(&token), HOME_QUERY, json!({})).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
    // One call per backend: the fan-out neither repeats nor skips.
    for service in ["users", "orders", "recommendations"] {
        assert_eq!(t.call_count(service).await, 1, "{service}");
    }

    // Cross-check against the backends themselves.
    let users = reqwest::get(TestStack::url(t.stack.demo.addrs.users, &format!("/users/{user_id}"))).await.unwrap();
    let user: Value = users.json().await.unwrap();
    let home = at(&reply.body, "/data/home");
    assert_eq!(home["user"]["id"], user_id);
    assert_eq!(home["user"]["name"], user["name"]);
    // Sized for the device: 96 px unless the query says otherwise.
    assert_eq!(home["user"]["avatarUrl"], format!("{}?w=96", user["avatar_url"].as_str().unwrap()));

    let page = t.orders_of(&user_id, 3).await;
    assert_eq!(page.orders.len(), 3);
    let expected: Vec<Value> = page.orders.iter().map(|o| json!(o.id)).collect();
    let got: Vec<Value> = home["recentOrders"].as_array().unwrap().iter().map(|o| o["id"].clone()).collect();
    assert_eq!(got, expected);

    let recommendations = home["recommendations"].as_array().unwrap();
    assert_eq!(recommendations.len(), 5);
    assert!(
        recommendations
            .iter()
            .all(|r| r["price"].as_str().unwrap().parse::<i64>().unwrap() > 0 && r["name"].is_string())
    );
}

#[tokio::test]
async fn home_fans_out_in_parallel() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    // Warm the connections and the JWKS so the timing below is the fan-out alone.
    t.graphql(t.stack.mobile, Some(&token), HOME_QUERY, json!({})).await;
    for service in ["users", "orders", "recommendations"] {
        t.set_faults(service, json!({ "latency_ms": 200 })).await;
    }
    let started = Instant::now();
    let reply = t.graphql(t.stack.mobile, Some(&token), HOME_QUERY, json!({})).await;
    let elapsed = started.elapsed();
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
    // Sequential calls would need 600ms; parallel ones about 200ms.
    assert!(elapsed >= Duration::from_millis(200), "faster than the injected latency: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(400), "not parallel: {elapsed:?}");
}

#[tokio::test]
async fn fields_come_back_in_the_order_asked_whatever_finishes_first() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    // The first field asked for is the last to finish.
    t.set_faults("users", json!({ "latency_ms": 150 })).await;
    let query = "query Ordered { home { user { name id } recommendations(first: 1) { price id } \
                 ...Orders } } fragment Orders on Home { latest: recentOrders(first: 1) { status id } }";
    let request = t
        .http
        .post(TestStack::url(t.stack.mobile, "/graphql"))
        .bearer_auth(&token)
        .json(&json!({ "query": query, "operationName": "Ordered" }));
    let text = request.send().await.unwrap().text().await.unwrap();
    let position = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("no {needle} in {text}"));
    assert!(position("\"user\"") < position("\"recommendations\""), "{text}");
    assert!(position("\"recommendations\"") < position("\"latest\""), "{text}");
    assert!(position("\"name\"") < position("\"id\""), "{text}");
    assert!(position("\"price\"") < position("\"status\""), "{text}");
}

#[tokio::test]
async fn failing_backend_yields_partial_data_with_its_error_code() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    t.set_faults("users", json!({ "error_rate": 1.0 })).await;
    let reply = t.graphql(t.stack.mobile, Some(&token), HOME_QUERY, json!({})).await;
    assert_eq!(reply.status, 200);
    let home = at(&reply.body, "/data/home");
    // Present as null, not left out: the client can tell "failed" from "not asked for".
    assert!(at(&reply.body, "/data/home/user").is_null(), "{home:#}");
    assert!(home["recentOrders"].is_array(), "{home:#}");
    assert_eq!(home["recommendations"].as_array().unwrap().len(), 5);
    assert_eq!(reply.error_codes(), ["UPSTREAM_UNAVAILABLE"]);
    let error = &reply.body["errors"][0];
    assert_eq!(error["path"], json!(["home", "user"]));
    assert_eq!(error["extensions"]["requestId"].as_str(), reply.header("x-request-id"));
}

#[tokio::test]
async fn hanging_backend_times_out_within_the_configured_timeout() {
    let config = StackConfig { upstream_timeout: Duration::from_millis(300), ..StackConfig::ephemeral() };
    let t = TestStack::start_with(config).await;
    let token = t.token("u-1", "mobile");
    t.graphql(t.stack.mobile, Some(&token), HOME_QUERY, json!({})).await;
    t.set_faults("recommendations", json!({ "hang": true })).await;
    let started = Instant::now();
    let reply = t.graphql(t.stack.mobile, Some(&token), HOME_QUERY, json!({})).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300) && elapsed < PROMPT, "{elapsed:?}");
    let home = at(&reply.body, "/data/home");
    assert!(home["recommendations"].is_null());
    assert_eq!(home["user"]["id"], "u-1");
    assert_eq!(reply.error_codes(), ["UPSTREAM_TIMEOUT"]);
    assert_eq!(reply.body["errors"][0]["path"], json!(["home", "recommendations"]));
}

/// Backends that never answer and ignore the deadline they are told (REST and gRPC alike): only
/// the BFF's own timer ends their calls, at the configured budget.
#[tokio::test]
async fn a_backend_that_never_answers_is_cut_off_by_the_bffs_own_timer() {
    let config = StackConfig { upstream_timeout: Duration::from_millis(300), ..StackConfig::ephemeral() };
    let t = TestStack::start_with(config).await;
    let token = t.token("u-1", "mobile");
    t.graphql(t.stack.mobile, Some(&token), HOME_QUERY, json!({})).await;
    for service in ["recommendations", "orders"] {
        t.set_faults(service, json!({ "hang": true, "ignore_deadline": true })).await;
    }
    let started = Instant::now();
    let reply = t.graphql(t.stack.mobile, Some(&token), HOME_QUERY, json!({})).await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300) && elapsed < PROMPT, "{elapsed:?}");
    let home = at(&reply.body, "/data/home");
    assert_eq!(home["user"]["id"], "u-1");
    assert_eq!(reply.error_codes(), ["UPSTREAM_TIMEOUT", "UPSTREAM_TIMEOUT"], "{:#}", reply.body);
    let mut paths: Vec<Value> = reply.body["errors"].as_array().unwrap().iter().map(|e| e["path"].clone()).collect();
    paths.sort_by_key(ToString::to_string);
    assert_eq!(paths, [json!(["home", "recentOrders"]), json!(["home", "recommendations"])]);
}

#[tokio::test]
async fn page_sizes_out_of_range_are_refused_without_a_backend_call() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    // Too large for the cost limit: refused before anything runs.
    let query = "{ home { recentOrders(first: 1000) { id } } }";
    let reply = t.graphql(t.stack.mobile, Some(&token), query, json!({})).await;
    assert_eq!(reply.error_codes(), ["QUERY_TOO_COSTLY"]);
    // Within the cost limit but past the field's own bounds: refused by the resolver.
    for first in [0, -1, 21] {
        let query = format!("{{ home {{ recentOrders(first: {first}) {{ id }} }} }}");
        let reply = t.graphql(t.stack.mobile, Some(&token), &query, json!({})).await;
        assert_eq!(reply.error_codes(), ["BAD_REQUEST"], "first: {first}");
    }
    assert_eq!(t.call_count("orders").await, 0);
}

/// Documents that passed validation once are not validated in full again when nothing a request
/// adds could change the outcome; these are the cases where it could, and each is refused every
/// time, before any backend call.
#[tokio::test]
async fn validation_is_never_skipped_where_a_request_could_change_its_outcome() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    // A document that failed stays failed: nothing marks it validated.
    let unknown_field = "{ home { user { internalRiskScore } } }";
    for attempt in 1..=2 {
        let reply = t.graphql(t.stack.mobile, Some(&token), unknown_field, json!({})).await;
        assert_eq!(reply.error_codes(), ["GRAPHQL_VALIDATION_FAILED"], "attempt {attempt}");
    }
    // A document with variables is validated with each request's variables: one that ran with a
    // good value is still refused with a bad one.
    let with_variables = "query Recent($n: Int!) { home { recentOrders(first: $n) { id } } }";
    let reply = t.graphql(t.stack.mobile, Some(&token), with_variables, json!({ "n": 2 })).await;
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
    let orders_calls = t.call_count("orders").await;
    let reply = t.graphql(t.stack.mobile, Some(&token), with_variables, json!({ "n": "two" })).await;
    assert_eq!(reply.error_codes(), ["GRAPHQL_VALIDATION_FAILED"], "{:#}", reply.body);
    assert!(reply.body.get("data").is_none_or(Value::is_null), "nothing ran: {:#}", reply.body);
    assert_eq!(t.call_count("orders").await, orders_calls, "no backend call for a refused request");
    assert_eq!(t.call_count("users").await, 0);
}
