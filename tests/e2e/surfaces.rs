//! The tailored GraphQL surfaces: field trimming down to REST and gRPC, GraphQL over HTTP,
//! persisted queries, the mobile screens, web mutations and subscriptions, and GraphiQL in a
//! real browser.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{TestStack, at};

fn fields_of(call: &Value) -> Vec<String> {
    call["fields"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn home_asks_each_backend_only_for_the_selected_fields() {
    let t = TestStack::start().await;
    let token = t.token("u-5", "mobile");
    t.reset().await;
    let reply = t.graphql(t.stack.mobile, Some(&token), "{ home { user { name } } }", json!({})).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert!(at(&reply.body, "/data/home/user/name").as_str().is_some_and(|n| !n.is_empty()));
    let user_call = t.recent_calls("users").await.pop().unwrap();
    assert_eq!(fields_of(&user_call), ["name"]);
    // The answer holds nothing the client did not select, internal fields least of all.
    assert_eq!(reply.body["data"]["home"]["user"].as_object().unwrap().len(), 1);
    assert_eq!((t.call_count("orders").await, t.call_count("recommendations").await), (0, 0));

    // Only the id: the token has it, so the users service is not called at all.
    let reply = t.graphql(t.stack.mobile, Some(&token), "{ home { user { id } } }", json!({})).await;
    assert_eq!(at(&reply.body, "/data/home/user/id"), "u-5");
    assert_eq!(t.call_count("users").await, 1);

    // gRPC: the read mask names exactly the order fields selected.
    let reply = t.graphql(t.stack.mobile, Some(&token), "{ home { recentOrders { id total } } }", json!({})).await;
    assert!(at(&reply.body, "/data/home/recentOrders/0/total").as_str().unwrap().parse::<i64>().unwrap() > 0);
    let call = t.recent_calls("orders").await.pop().unwrap();
    assert_eq!(fields_of(&call), ["total_cents"]);
    assert!(reply.body["data"]["home"]["recentOrders"][0].get("status").is_none());
}

#[tokio::test]
async fn a_page_of_ten_orders_of_eight_items_costs_four_backend_calls() {
    let t = TestStack::start().await;
    let token = t.token("u-900", "web");
    let place = "mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }";
    for order in 0..10 {
        let lines: Vec<Value> =
            (1..=8).map(|i| json!({ "productId": format!("p-{}", order * 8 + i), "quantity": 1 })).collect();
        let input = json!({ "input": { "lines": lines, "idempotencyKey": format!("page-test-{order}") } });
        let reply = t.graphql(t.stack.web, Some(&token), place, input).await;
        assert_eq!(at(&reply.body, "/data/placeOrder/status"), "PENDING", "{:#}", reply.body);
    }
    t.reset().await;
    let page = "{ me { name orders(first: 10) { edges { node { id items { quantity product { name stock { available } } } } } } } }";
    let reply = t.graphql(t.stack.web, Some(&token), page, json!({})).await;
    let edges = at(&reply.body, "/data/me/orders/edges").as_array().unwrap().clone();
    assert_eq!(edges.len(), 10, "{:#}", reply.body);
    assert!(edges.iter().all(|e| e["node"]["items"].as_array().unwrap().len() == 8));
    let calls: Vec<u64> =
        futures::future::join_all(["users", "orders", "catalog", "inventory"].map(|service| t.call_count(service)))
            .await;
    assert_eq!(calls, [1, 1, 1, 1], "users, orders, catalog, inventory");
    // The catalog was asked for the one product field selected, the orders for the items only.
    assert_eq!(fields_of(&t.recent_calls("catalog").await.pop().unwrap()), ["name"]);
    assert_eq!(fields_of(&t.recent_calls("orders").await.pop().unwrap()), ["items"]);
    assert_eq!(fields_of(&t.recent_calls("users").await.pop().unwrap()), ["name"]);
}

#[tokio::test]
async fn graphql_over_http_status_codes_media_types_and_get() {
    let t = TestStack::start().await;
    let token = t.token("u-3", "mobile");
    let url = TestStack::url(t.stack.mobile, "/graphql");
    let post = |accept: &'static str, query: &'static str| {
        t.http.post(&url).bearer_auth(&token).header("accept", accept).json(&json!({ "query": query }))
    };
    // The new media type: 400 and no `data` for a parse or validation failure.
    for query in ["{ home {", "{ home { nope } }"] {
        let reply = TestStack::reply(post("application/graphql-response+json", query)).await;
        assert_eq!(reply.status, 400, "{query}: {:#}", reply.body);
        assert!(reply.header("content-type").unwrap().starts_with("application/graphql-response+json"));
        assert!(reply.body.get("data").is_none(), "{:#}", reply.body);
        // The older one: 200, the errors say the rest.
        let reply = TestStack::reply(post("application/json", query)).await;
        assert_eq!(reply.status, 200, "{query}");
        assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    }
    let reply = TestStack::reply(post("text/csv", "{ home { user { id } } }")).await;
    assert_eq!((reply.status.as_u16(), reply.error_codes()), (406, vec!["NOT_ACCEPTABLE".to_owned()]));

    // Refusals raised by the gateway before GraphQL runs answer in the media type asked for too.
    let accept_new = ("accept", "application/graphql-response+json");
    let unauthenticated =
        t.http.post(&url).header(accept_new.0, accept_new.1).json(&json!({ "query": "{ home { user { id } } }" }));
    let not_json = t
        .http
        .post(&url)
        .bearer_auth(&token)
        .header(accept_new.0, accept_new.1)
        .header("content-type", "application/json")
        .body("{");
    let batch: Vec<Value> = (0..11).map(|_| json!({ "query": "{ __typename }" })).collect();
    let too_big = t.http.post(&url).bearer_auth(&token).header(accept_new.0, accept_new.1).json(&batch);
    for (request, status, code) in
        [(unauthenticated, 401, "UNAUTHENTICATED"), (not_json, 400, "BAD_REQUEST"), (too_big, 400, "BATCH_TOO_LARGE")]
    {
        let reply = TestStack::reply(request).await;
        assert_eq!((reply.status.as_u16(), reply.error_codes()), (status, vec![code.to_owned()]), "{:#}", reply.body);
        assert!(reply.header("content-type").unwrap().starts_with("application/graphql-response+json"), "{code}");
        assert!(reply.body.get("data").is_none(), "{:#}", reply.body);
        assert!(at(&reply.body, "/errors/0/extensions/requestId").is_string());
    }

    // GET for queries, with variables in the query string; never for mutations.
    let get = |params: &[(&str, &str)]| t.http.get(&url).bearer_auth(&token).query(params);
    let reply = TestStack::reply(get(&[
        ("query", "query Home($n: Int) { home { recentOrders(first: $n) { id } } }"),
        ("variables", r#"{"n": 2}"#),
        ("operationName", "Home"),
    ]))
    .await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(at(&reply.body, "/data/home/recentOrders").as_array().unwrap().len(), 2);
    let before = t.call_count("orders").await;
    let mutation =
        r#"mutation { placeOrder(input: {lines: [{productId: "p-1", quantity: 1}], idempotencyKey: "k"}) { id } }"#;
    let reply = TestStack::reply(get(&[("query", mutation)])).await;
    assert_eq!((reply.status.as_u16(), reply.error_codes()), (405, vec!["METHOD_NOT_ALLOWED".to_owned()]));
    assert_eq!(reply.header("allow"), Some("POST"));
    assert_eq!(t.call_count("orders").await, before, "a refused mutation reached the backend");
}

fn persisted(hash: &str) -> String {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } }).to_string()
}

/// With `[graphql.persisted_queries] shared = true` and `[redis]`, a query registered on one replica is found by
/// hash on another; with Redis unreachable, a hash-only request is a miss, not an error.
#[tokio::test]
async fn replicas_share_automatic_persisted_queries_through_redis() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let t = TestStack::start().await;
    let replica = |redis_url: String| {
        let mut config =
            bff_platform::mobile_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
        config.redis = bff_gateway::config::RedisConfig::new(redis_url);
        config.own.graphql.persisted_queries.shared = true;
        crate::attacks::serve(mobile_bff::app(config).unwrap())
    };
    let (first, second) = (replica(url.clone()).await, replica(url.clone()).await);
    let token = t.token("u-4", "mobile");
    // A text of this run only: Redis outlives test runs.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let query = format!("query Shared {{ home {{ user {{ id }} }} }} # {nanos}");
    let hash = hex::encode(sha2::Sha256::digest(query.as_bytes()));
    let by_hash = |addr| {
        let request = t.http.get(TestStack::url(addr, "/graphql")).bearer_auth(&token);
        TestStack::reply(request.query(&[("extensions", persisted(&hash))]))
    };
    let reply = by_hash(second).await;
    assert_eq!(reply.error_codes(), ["PERSISTED_QUERY_NOT_FOUND"], "{:#}", reply.body);
    let register = json!({ "query": query, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    let reply =
        TestStack::reply(t.http.post(TestStack::url(first, "/graphql")).bearer_auth(&token).json(&register)).await;
    assert_eq!(at(&reply.body, "/data/home/user/id"), "u-4", "{:#}", reply.body);
    // The registration reaches Redis off the request path: the other replica finds it shortly.
    let mut found = Value::Null;
    for _ in 0..50 {
        let reply = by_hash(second).await;
        if reply.error_codes().is_empty() {
            found = reply.body;
            break;
        }
        assert_eq!(reply.error_codes(), ["PERSISTED_QUERY_NOT_FOUND"], "{:#}", reply.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(at(&found, "/data/home/user/id"), "u-4", "the second replica never found the query");

    let (_socket, refusing) = crate::support::refusing_addr();
    let unreachable = replica(format!("redis://{refusing}")).await;
    let reply = by_hash(unreachable).await;
    assert_eq!(reply.error_codes(), ["PERSISTED_QUERY_NOT_FOUND"], "{:#}", reply.body);
}

#[tokio::test]
async fn automatic_persisted_queries_register_hit_miss_and_refuse_a_wrong_hash() {
    let t = TestStack::start().await;
    let token = t.token("u-4", "mobile");
    let url = TestStack::url(t.stack.mobile, "/graphql");
    let query = "query Persisted { home { user { id name } } }";
    let hash = hex::encode(sha2::Sha256::digest(query.as_bytes()));
    let by_get = |extensions: String| {
        let request = t.http.get(&url).bearer_auth(&token).header("accept", "application/graphql-response+json");
        TestStack::reply(request.query(&[("extensions", extensions)]))
    };
    // Miss: the client is told to send the query.
    let reply = by_get(persisted(&hash)).await;
    assert_eq!(reply.error_codes(), ["PERSISTED_QUERY_NOT_FOUND"], "{:#}", reply.body);
    assert_eq!(at(&reply.body, "/errors/0/message"), "PersistedQueryNotFound");
    // A hash that is not its query's is refused, and registers nothing.
    let wrong =
        json!({ "query": query, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "0".repeat(64) } } });
    let reply = TestStack::reply(t.http.post(&url).bearer_auth(&token).json(&wrong)).await;
    assert_eq!(reply.error_codes(), ["PERSISTED_QUERY_HASH_MISMATCH"]);
    // Register: hash and query together.
    let register = json!({ "query": query, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
    let reply = TestStack::reply(t.http.post(&url).bearer_auth(&token).json(&register)).await;
    assert_eq!(at(&reply.body, "/data/home/user/id"), "u-4");
    // Hit: by hash alone, with GET.
    let reply = by_get(persisted(&hash)).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(at(&reply.body, "/data/home/user/id"), "u-4");
}

#[tokio::test]
async fn the_safelist_runs_only_the_manifest_operations() {
    let t = TestStack::start().await;
    let mut config = bff_platform::mobile_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
    config.own.graphql.persisted_queries.mode = bff_gateway::graphql::PersistedQueryMode::Safelist;
    config.own.graphql.persisted_queries.manifest =
        Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/mobile.persisted.json"));
    let addr = crate::attacks::serve(mobile_bff::app(config).unwrap()).await;
    let token = t.token("u-6", "mobile");
    let before = t.call_count("users").await;
    let reply = t.graphql(addr, Some(&token), "{ home { user { name } } }", json!({})).await;
    assert_eq!((reply.status.as_u16(), reply.error_codes()), (400, vec!["OPERATION_NOT_IN_SAFELIST".to_owned()]));
    assert_eq!(t.call_count("users").await, before);
    // A manifest operation runs by its hash alone.
    let home =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bffs/mobile/operations/Home.graphql")).unwrap();
    let hash = hex::encode(sha2::Sha256::digest(home.as_bytes()));
    let request =
        t.http.get(TestStack::url(addr, "/graphql")).bearer_auth(&token).query(&[("extensions", persisted(&hash))]);
    let reply = TestStack::reply(request).await;
    assert_eq!(at(&reply.body, "/data/home/user/id"), "u-6", "{:#}", reply.body);
}

#[tokio::test]
async fn mobile_product_and_order_screens_and_an_idempotent_place_order() {
    let t = TestStack::start().await;
    let token = t.token("u-8", "mobile");
    let product =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bffs/mobile/operations/Product.graphql"))
            .unwrap();
    let reply = t.graphql(t.stack.mobile, Some(&token), &product, json!({ "id": "p-7" })).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    let p = at(&reply.body, "/data/product");
    assert_eq!(p["imageUrl"], "https://img.example.com/products/p-7.jpg?w=600");
    assert!(p["stock"].is_i64() && p["similar"].as_array().unwrap().len() == 4);
    assert!(p["similar"].as_array().unwrap().iter().all(|s| s["id"] != "p-7"));

    let place =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bffs/mobile/operations/PlaceOrder.graphql"))
            .unwrap();
    let input = json!({ "input": { "lines": [{ "productId": "p-7", "quantity": 2 }], "idempotencyKey": "tap-1" } });
    let first = t.graphql(t.stack.mobile, Some(&token), &place, input.clone()).await;
    let again = t.graphql(t.stack.mobile, Some(&token), &place, input).await;
    let id = at(&first.body, "/data/placeOrder/id").as_str().unwrap().to_owned();
    assert_eq!(at(&again.body, "/data/placeOrder/id"), id.as_str(), "a retry placed a second order");

    let order =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/bffs/mobile/operations/Order.graphql")).unwrap();
    let reply = t.graphql(t.stack.mobile, Some(&token), &order, json!({ "id": id })).await;
    assert_eq!(at(&reply.body, "/data/order/lines/0/quantity"), 2, "{:#}", reply.body);
    // Another user's order is not there for this one.
    let other = t.token("u-9", "mobile");
    let reply = t.graphql(t.stack.mobile, Some(&other), &order, json!({ "id": id })).await;
    assert_eq!(at(&reply.body, "/data/order"), &Value::Null);
}

#[tokio::test]
async fn web_mutations_take_the_identity_from_the_token() {
    let t = TestStack::start().await;
    let token = t.token("u-11", "web");
    let update = r#"mutation { updateProfile(input: {name: "Grace Hopper"}) { id name } }"#;
    let reply = t.graphql(t.stack.web, Some(&token), update, json!({})).await;
    assert_eq!(at(&reply.body, "/data/updateProfile/name"), "Grace Hopper", "{:#}", reply.body);
    let patch = t.recent_calls("users").await.pop().unwrap();
    assert_eq!((patch["method"].as_str(), patch["path"].as_str()), (Some("PATCH"), Some("/users/u-11")));
    let reply = t.graphql(t.stack.web, Some(&token), "{ me { name } }", json!({})).await;
    assert_eq!(at(&reply.body, "/data/me/name"), "Grace Hopper");

    let place =
        r#"mutation { placeOrder(input: {lines: [{productId: "p-2", quantity: 1}], idempotencyKey: "w-1"}) { id } }"#;
    let reply = t.graphql(t.stack.web, Some(&token), place, json!({})).await;
    let id = at(&reply.body, "/data/placeOrder/id").as_str().unwrap().to_owned();
    let cancel = format!(r#"mutation {{ cancelOrder(id: "{id}") {{ id status }} }}"#);
    // Someone else cannot cancel it.
    let other = t.token("u-12", "web");
    let reply = t.graphql(t.stack.web, Some(&other), &cancel, json!({})).await;
    assert_eq!(reply.error_codes(), ["NOT_FOUND"], "{:#}", reply.body);
    let reply = t.graphql(t.stack.web, Some(&token), &cancel, json!({})).await;
    assert_eq!(at(&reply.body, "/data/cancelOrder/status"), "CANCELLED", "{:#}", reply.body);
}

async fn subscribe(
    t: &TestStack,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    subscribe_at(t.stack.web, token).await
}

/// A graphql-transport-ws socket to the web BFF at `addr`, `connection_init` sent with `token`.
pub async fn subscribe_at(
    addr: std::net::SocketAddr,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("ws://{addr}/graphql").into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "graphql-transport-ws");
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await.unwrap();
    socket
}

pub async fn next_json(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Value {
    let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
    match message {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        Message::Close(frame) => json!({ "close": frame.map(|f| u16::from(f.code)) }),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_subscription_streams_status_changes_and_cancels_its_grpc_stream_when_the_client_goes() {
    let t = TestStack::start().await;
    let token = t.token("u-20", "web");
    let place =
        r#"mutation { placeOrder(input: {lines: [{productId: "p-3", quantity: 1}], idempotencyKey: "s-1"}) { id } }"#;
    let reply = t.graphql(t.stack.web, Some(&token), place, json!({})).await;
    let id = at(&reply.body, "/data/placeOrder/id").as_str().unwrap().to_owned();

    let mut socket = subscribe(&t, &token).await;
    assert_eq!(next_json(&mut socket).await["type"], "connection_ack");
    let query = format!(r#"subscription {{ orderStatusChanged(orderId: "{id}") {{ orderId status }} }}"#);
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    socket.send(Message::text(subscribe.to_string())).await.unwrap();
    let first = next_json(&mut socket).await;
    assert_eq!(first["payload"]["data"]["orderStatusChanged"]["status"], "PENDING", "{first:#}");
    let second = next_json(&mut socket).await;
    assert_eq!(second["payload"]["data"]["orderStatusChanged"]["status"], "PAID", "{second:#}");

    // The client goes mid-watch: the backend's stream ends as cancelled, not finished.
    drop(socket);
    for attempt in 0.. {
        let watch = t
            .recent_calls("orders")
            .await
            .into_iter()
            .rfind(|c| c["path"].as_str().unwrap().ends_with("/WatchOrder"))
            .unwrap();
        if watch["stream"] == "cancelled" {
            break;
        }
        assert!(attempt < 100 && watch["stream"] == "open", "{watch:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_draining_replica_closes_its_sockets_as_going_away() {
    let t = TestStack::start().await;
    let token = t.token("u-21", "web");
    let place =
        r#"mutation { placeOrder(input: {lines: [{productId: "p-4", quantity: 1}], idempotencyKey: "d-1"}) { id } }"#;
    let reply = t.graphql(t.stack.web, Some(&token), place, json!({})).await;
    let id = at(&reply.body, "/data/placeOrder/id").as_str().unwrap().to_owned();
    let mut socket = subscribe(&t, &token).await;
    assert_eq!(next_json(&mut socket).await["type"], "connection_ack");
    let query = format!(r#"subscription {{ orderStatusChanged(orderId: "{id}") {{ status }} }}"#);
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    socket.send(Message::text(subscribe.to_string())).await.unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "next");

    let shutdown = tokio::spawn(t.stack.shutdown());
    // Whatever was already on its way may arrive first; then 1001, well before the grace period.
    let mut close = Value::Null;
    for _ in 0..10 {
        let message = next_json(&mut socket).await;
        if message.get("close").is_some() {
            close = message["close"].clone();
            break;
        }
    }
    assert_eq!(close, 1001, "the socket was not closed as going away");
    tokio::time::timeout(Duration::from_secs(5), shutdown).await.expect("the replica stopped").unwrap();
}

#[tokio::test]
async fn subscriptions_refuse_bad_tokens_and_end_when_the_token_expires() {
    let t = TestStack::start().await;
    let mut socket = subscribe(&t, "not-a-token").await;
    assert_eq!(next_json(&mut socket).await["close"], 4403);

    // A token with two seconds left: the socket is closed with 4403 when it runs out.
    let token = t.stack.demo.mint_token("u-21", "web", "profile orders", 2);
    let mut socket = subscribe(&t, &token).await;
    assert_eq!(next_json(&mut socket).await["type"], "connection_ack");
    assert_eq!(next_json(&mut socket).await["close"], 4403);
}

/// Past `max_per_connection` (10) subscriptions on one socket the next is refused with
/// `TOO_MANY_SUBSCRIPTIONS`; past `max_connections_per_principal` (5) sockets for one caller the
/// next is closed with 4429, while another user of the same app still connects.
#[tokio::test]
async fn subscriptions_are_bounded_per_connection_and_per_caller() {
    const PER_CONNECTION: usize = 10;
    const PER_CALLER: usize = 5;
    let t = TestStack::start().await;
    let token = t.token("u-22", "web");
    let place =
        r#"mutation { placeOrder(input: {lines: [{productId: "p-4", quantity: 1}], idempotencyKey: "b-1"}) { id } }"#;
    let reply = t.graphql(t.stack.web, Some(&token), place, json!({})).await;
    let order = at(&reply.body, "/data/placeOrder/id").as_str().unwrap().to_owned();

    let mut first = subscribe(&t, &token).await;
    assert_eq!(next_json(&mut first).await["type"], "connection_ack");
    let query = format!(r#"subscription {{ orderStatusChanged(orderId: "{order}") {{ status }} }}"#);
    for id in 1..=PER_CONNECTION + 1 {
        let message = json!({ "id": id.to_string(), "type": "subscribe", "payload": { "query": query } });
        first.send(Message::text(message.to_string())).await.unwrap();
    }
    let over = (PER_CONNECTION + 1).to_string();
    let refusal = loop {
        let message = next_json(&mut first).await;
        let codes = message["payload"]["errors"].as_array().cloned().unwrap_or_default();
        if message["id"] == over.as_str() {
            break codes;
        }
        assert!(codes.is_empty(), "a subscription within the bound was refused: {message:#}");
    };
    assert_eq!(refusal[0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS", "{refusal:#?}");

    let mut open = vec![first];
    for _ in 1..PER_CALLER {
        let mut socket = subscribe(&t, &token).await;
        assert_eq!(next_json(&mut socket).await["type"], "connection_ack");
        open.push(socket);
    }
    let mut one_too_many = subscribe(&t, &token).await;
    assert_eq!(next_json(&mut one_too_many).await["close"], 4429);
    // The bound is the caller's, not the app's: another web user is not counted with u-22.
    let mut other = subscribe(&t, &t.token("u-23", "web")).await;
    assert_eq!(next_json(&mut other).await["type"], "connection_ack");
}

#[tokio::test]
async fn graphiql_answers_a_query_in_headless_chromium() {
    let t = TestStack::start().await;
    let token = t.token("u-2", "web");
    let name = {
        let reply = t.graphql(t.stack.web, Some(&token), "{ me { name } }", json!({})).await;
        at(&reply.body, "/data/me/name").as_str().unwrap().to_owned()
    };
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("graphiql.png");
    let base = format!("http://{}", t.stack.web);
    crate::browser::run_graphiql_query(&base, &token, "{ me { name } }", &name, &out).await;
    println!("screenshot: {}", out.display());
}
