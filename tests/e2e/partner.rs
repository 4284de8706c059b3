//! The partner API's v1 contract as partners use it; every answer is also checked against the
//! schema the published document gives its operation.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestStack, at};
use crate::versions::Partner;

const KEY: (&str, &str) = ("x-api-key", bff_platform::DEMO_PARTNER_API_KEY);

#[tokio::test]
async fn product_and_stock() {
    let t = TestStack::start().await;
    let p = Partner::new(&t, t.stack.partner).await;
    let reply = p.get("v1", "/products/{id}", "/v1/products/p-42").await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    let raw: Value =
        reqwest::get(TestStack::url(t.stack.demo.addrs.catalog, "/products/p-42")).await.unwrap().json().await.unwrap();
    for field in ["id", "name", "description", "brand", "price_cents", "currency"] {
        assert_eq!(reply.body[field], raw[field], "{field}");
    }
    // The partner view asks the catalog only for the fields it shows.
    let call = t.recent_calls("catalog").await.into_iter().find(|c| c["path"] == "/products/p-42").unwrap();
    let fields: Vec<&str> = call["fields"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert!(fields.contains(&"price_cents") && !fields.iter().any(|f| f.starts_with("internal")), "{fields:?}");

    let stock = p.get("v1", "/products/{id}/stock", "/v1/products/p-42/stock").await;
    assert_eq!(stock.status, 200, "{:#}", stock.body);
    assert_eq!(stock.body["product_id"], "p-42");
    assert!(stock.body["available"].is_i64());
    assert_eq!(stock.body["in_stock"], stock.body["available"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_problems() {
    let t = TestStack::start().await;
    let p = Partner::new(&t, t.stack.partner).await;
    let missing = p.get("v1", "/products/{id}", "/v1/products/p-999999").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-type"), Some("application/problem+json"));
    assert_eq!(missing.body["code"], "NOT_FOUND");
    assert_eq!(missing.body["status"], 404);
    assert_eq!(missing.body["request_id"].as_str(), missing.header("x-request-id"));

    let calls_before = t.call_count("catalog").await + t.call_count("inventory").await;
    let malformed = p.get("v1", "/products/{id}", "/v1/products/..%2F..%2Fadmin").await;
    assert_eq!(malformed.status, 400, "{:#}", malformed.body);
    assert_eq!(malformed.body["code"], "BAD_REQUEST");
    // HTTP clients normalise dot segments away, so these go over a raw connection.
    for path in ["/v1/products/%2e%2e", "/v1/products/..", "/v1/products/%2e/stock", "/v1/products/%2e%2e/stock"] {
        let status = crate::support::raw_get(t.stack.partner, path, &[KEY]).await;
        assert_eq!(status, 400, "{path}");
    }
    let calls_after = t.call_count("catalog").await + t.call_count("inventory").await;
    assert_eq!(calls_after, calls_before, "a malformed id reached a backend");
}

#[tokio::test]
async fn wrong_or_missing_api_key_is_401() {
    let t = TestStack::start().await;
    let p = Partner::new(&t, t.stack.partner).await;
    for headers in [vec![("x-api-key", "wrong-key")], vec![]] {
        let reply = t.get(t.stack.partner, "/v1/orders", &headers).await;
        p.conforms(&reply, &Method::GET, "v1", "/orders");
        assert_eq!(reply.status, 401, "{headers:?}");
        assert_eq!(reply.header("content-type"), Some("application/problem+json"));
        assert_eq!(reply.body["code"], "UNAUTHENTICATED");
        assert!(reply.body["request_id"].is_string());
    }
    assert_eq!(t.call_count("orders").await, 0);
}

#[tokio::test]
async fn place_list_and_read_orders_idempotently() {
    let t = TestStack::start().await;
    let body = json!({ "items": [{ "product_id": "p-10", "quantity": 2 }, { "product_id": "p-11", "quantity": 1 }] });
    let place = || {
        t.http
            .post(TestStack::url(t.stack.partner, "/v1/orders"))
            .header(KEY.0, KEY.1)
            .header("idempotency-key", "order-2026-0001")
            .json(&body)
    };
    let p = Partner::new(&t, t.stack.partner).await;
    let created = TestStack::reply(place()).await;
    p.conforms(&created, &Method::POST, "v1", "/orders");
    assert_eq!(created.status, 201, "{:#}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.header("location"), Some(format!("/v1/orders/{id}").as_str()));
    assert_eq!(created.body["status"], "pending");
    assert_eq!(created.body["items"].as_array().unwrap().len(), 2);

    let again = TestStack::reply(place()).await;
    p.conforms(&again, &Method::POST, "v1", "/orders");
    assert_eq!(again.body["id"], id.as_str(), "the idempotency key placed a second order");
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    // The gateway answered the retry itself: the orders service saw one CreateOrder.
    let creates =
        t.recent_calls("orders").await.iter().filter(|c| c["path"].as_str().unwrap().ends_with("/CreateOrder")).count();
    assert_eq!(creates, 1, "the retry reached the backend");

    let list = p.get("v1", "/orders", "/v1/orders").await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{:#}", list.body);
    assert_eq!(items[0]["id"], id.as_str());
    assert!(list.body["next_cursor"].is_null());

    let one = p.get("v1", "/orders/{id}", &format!("/v1/orders/{id}")).await;
    assert_eq!(one.body["id"], id.as_str());
    assert_eq!(one.body["total_cents"], created.body["total_cents"]);
}

#[tokio::test]
async fn invalid_orders_are_refused_with_problems() {
    let t = TestStack::start().await;
    let p = Partner::new(&t, t.stack.partner).await;
    let post =
        |body: Value| t.http.post(TestStack::url(t.stack.partner, "/v1/orders")).header(KEY.0, KEY.1).json(&body);
    // Each violation of the published schema is named by its JSON pointer, all at once.
    for (body, pointers) in [
        (json!({ "items": [] }), vec!["/items"]),
        (json!({ "items": [{ "product_id": "p-1", "quantity": 0 }] }), vec!["/items/0/quantity"]),
        (json!({ "items": [{ "product_id": "p-1", "quantity": 1, "discount": 100 }] }), vec!["/items/0"]),
        (json!({ "lines": [] }), vec!["", ""]),
        (
            json!({ "items": [{ "product_id": "../x", "quantity": 0 }, { "quantity": 101 }] }),
            vec!["/items/0/product_id", "/items/0/quantity", "/items/1", "/items/1/quantity"],
        ),
    ] {
        let reply = TestStack::reply(post(body.clone())).await;
        p.conforms(&reply, &Method::POST, "v1", "/orders");
        assert_eq!(reply.status, 422, "{body}: {:#}", reply.body);
        assert_eq!(reply.body["code"], "VALIDATION_FAILED");
        assert!(reply.body["request_id"].is_string());
        let mut found: Vec<&str> =
            reply.body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
        found.sort_unstable();
        assert_eq!(found, pointers, "{body}: {:#}", reply.body);
    }
    // Not JSON at all: 400.
    let reply = TestStack::reply(
        t.http
            .post(TestStack::url(t.stack.partner, "/v1/orders"))
            .header(KEY.0, KEY.1)
            .header("content-type", "application/json")
            .body("{\"items\": ["),
    )
    .await;
    assert_eq!((reply.status.as_u16(), reply.body["code"].as_str()), (400, Some("BAD_REQUEST")), "{:#}", reply.body);
    assert_eq!(t.call_count("orders").await, 0, "a refused body reached the backend");
    // The orders service's own validation (an unknown product) comes back as a 400.
    let reply = TestStack::reply(post(json!({ "items": [{ "product_id": "p-999999", "quantity": 1 }] }))).await;
    assert_eq!(reply.status, 400, "{:#}", reply.body);
    assert_eq!(reply.body["code"], "BAD_REQUEST");
}

#[tokio::test]
async fn oauth2_client_credentials_tokens_work() {
    let t = TestStack::start().await;
    let token: Value = t
        .http
        .post(TestStack::url(t.stack.demo.addrs.identity, "/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "demo-partner"),
            ("client_secret", "demo-partner-secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", at(&token, "/access_token").as_str().unwrap());
    let reply = t.get(t.stack.partner, "/v1/orders", &[("authorization", &bearer)]).await;
    Partner::new(&t, t.stack.partner).await.conforms(&reply, &Method::GET, "v1", "/orders");
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    let call = t.recent_calls("orders").await.pop().unwrap();
    assert_eq!(call["headers"]["x-client-id"], "demo-partner");
    assert!(call["headers"].get("x-user-id").is_none());
}
