//! A smoke test over real sockets: raw HTTP/1.1 for REST (the crate has no HTTP client) and the
//! generated tonic clients for gRPC.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use bff_backends::proto::orders::v1 as pb;

use super::*;

async fn http(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: demo\r\nconnection: close\r\ncontent-length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn demo_serves_rest_grpc_and_control() {
    let demo = Demo::start(DemoConfig::ephemeral()).await.unwrap();
    let a = demo.addrs;

    let (status, user) = http(a.users, "GET", "/users/u-7", "x-test: 1\r\n", "").await;
    assert_eq!(status, 200);
    assert_eq!(user["id"], "u-7");
    assert!(user["internal_risk_score"].is_f64());
    assert_eq!(http(a.users, "GET", "/users/u-0", "", "").await.0, 404);
    assert_eq!(http(a.users, "GET", "/healthz", "", "").await.0, 200);

    let (status, product) = http(a.catalog, "GET", "/products/p-5?fields=name,bogus", "", "").await;
    assert_eq!(status, 200);
    assert_eq!(product.as_object().unwrap().len(), 2);
    let (_, full) = http(a.catalog, "GET", "/products/p-5", "", "").await;
    assert!(full.as_object().unwrap().len() >= 40, "{full}");
    let (status, list) = http(a.catalog, "GET", "/products?ids=p-1,p-9999,p-2&fields=price_cents", "", "").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let many: Vec<String> = (1..=101).map(|i| format!("p-{i}")).collect();
    assert_eq!(http(a.catalog, "GET", &format!("/products?ids={}", many.join(",")), "", "").await.0, 400);

    let (status, recs) = http(a.recommendations, "GET", "/users/u-3/recommendations?limit=5", "", "").await;
    assert_eq!(status, 200);
    assert_eq!(recs["items"].as_array().unwrap().len(), 5);
    assert_eq!(recs["items"][0]["name"], full_name(&demo, &recs["items"][0]["product_id"]).await);

    // Identity: JWKS, client credentials, dev tokens; tokens verify against the published key.
    let (status, jwks) = http(a.identity, "GET", "/.well-known/jwks.json", "", "").await;
    assert_eq!(status, 200);
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find("demo-2026").unwrap()).unwrap();
    let form = "grant_type=client_credentials&client_id=demo-partner&client_secret=demo-partner-secret&scope=orders:read%20admin";
    let (status, token) =
        http(a.identity, "POST", "/oauth/token", "content-type: application/x-www-form-urlencoded\r\n", form).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "orders:read");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["partner"]);
    validation.set_issuer(&[demo.issuer()]);
    let claims =
        jsonwebtoken::decode::<Value>(token["access_token"].as_str().unwrap(), &key, &validation).unwrap().claims;
    assert_eq!(claims["client_id"], "demo-partner");
    let form_ct = "content-type: application/x-www-form-urlencoded\r\n";
    let bad = "grant_type=client_credentials&client_id=demo-partner&client_secret=nope";
    assert_eq!(http(a.identity, "POST", "/oauth/token", form_ct, bad).await.0, 401);
    assert_eq!(http(a.identity, "POST", "/oauth/token", form_ct, "grant_type=password").await.0, 400);
    let (status, dev) =
        http(a.identity, "POST", "/dev/token", "content-type: application/json\r\n", r#"{"sub":"u-1","aud":"web"}"#)
            .await;
    assert_eq!(status, 200);
    validation.set_audience(&["web"]);
    jsonwebtoken::decode::<Value>(dev["access_token"].as_str().unwrap(), &key, &validation).unwrap();
    let expired = demo.mint_token("u-1", "web", "", -600);
    assert!(jsonwebtoken::decode::<Value>(&expired, &key, &validation).is_err());

    // gRPC orders: paging, create with idempotency, watch.
    let mut orders = pb::orders_service_client::OrdersServiceClient::connect(http_url(a.orders)).await.unwrap();
    let mut token = String::new();
    let mut seen = 0;
    loop {
        let page = orders
            .list_orders(pb::ListOrdersRequest {
                user_id: "user:u-1".into(),
                page_size: 7,
                page_token: token,
                read_mask: None,
            })
            .await
            .unwrap()
            .into_inner();
        seen += page.orders.len();
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen as u64, data::order_count(1));
    let bad = pb::ListOrdersRequest { user_id: "u-1".into(), page_size: 0, page_token: "%%".into(), read_mask: None };
    assert_eq!(orders.list_orders(bad).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    let create = pb::CreateOrderRequest {
        user_id: "demo-partner".into(),
        lines: vec![pb::OrderLine { product_id: "p-3".into(), quantity: 2 }],
        idempotency_key: "k1".into(),
    };
    let first = orders.create_order(create.clone()).await.unwrap().into_inner();
    let again = orders.create_order(create).await.unwrap().into_inner();
    assert_eq!(first.id, again.id);
    assert_eq!(first.total_cents, 2 * data::product_price_cents(3));
    let mut watch = orders
        .watch_order(pb::WatchOrderRequest { id: first.id.clone(), user_id: "demo-partner".into() })
        .await
        .unwrap()
        .into_inner();
    let mut statuses = Vec::new();
    while let Some(change) = watch.message().await.unwrap() {
        statuses.push(change.status);
    }
    assert_eq!(statuses, vec![1, 2, 3, 4]);
    let got =
        orders.get_order(pb::GetOrderRequest { id: first.id, user_id: "someone-else".into(), read_mask: None }).await;
    assert_eq!(got.unwrap_err().code(), tonic::Code::NotFound);

    // Faults and recordings through the control API.
    let (_, calls) = http(a.control, "GET", "/calls", "", "").await;
    assert_eq!(calls["users"]["count"], 2, "{calls}");
    assert_eq!(calls["users"]["recent"][0]["headers"]["x-test"], "1");
    assert_eq!(calls["catalog"]["recent"][0]["fields"][0], "name");
    assert_eq!(calls["identity"]["count"], 5);
    assert!(calls["orders"]["count"].as_u64().unwrap() >= 5);
    let json_ct = "content-type: application/json\r\n";
    assert_eq!(http(a.control, "PUT", "/faults/users", json_ct, r#"{"error_rate":1.0}"#).await.0, 200);
    assert_eq!(http(a.control, "PUT", "/faults/users", json_ct, r#"{"error_rate":2.0}"#).await.0, 400);
    assert_eq!(http(a.control, "PUT", "/faults/nope", json_ct, r#"{}"#).await.0, 404);
    assert_eq!(http(a.users, "GET", "/users/u-1", "", "").await.0, 503);
    assert_eq!(http(a.users, "GET", "/healthz", "", "").await.0, 200);
    assert_eq!(http(a.control, "PUT", "/faults/inventory", json_ct, r#"{"error_rate":1}"#).await.0, 200);
    let mut inventory = bff_backends::proto::inventory::v1::inventory_service_client::InventoryServiceClient::connect(
        http_url(a.inventory),
    )
    .await
    .unwrap();
    let stock = bff_backends::proto::inventory::v1::GetStockRequest { product_ids: vec!["p-1".into(), "x".into()] };
    assert_eq!(inventory.get_stock(stock.clone()).await.unwrap_err().code(), tonic::Code::Unavailable);
    assert_eq!(http(a.control, "POST", "/reset", "", "").await.0, 204);
    assert_eq!(inventory.get_stock(stock).await.unwrap().into_inner().levels.len(), 1);
    let (_, calls) = http(a.control, "GET", "/calls", "", "").await;
    assert_eq!(calls["users"]["count"], 0);

    demo.shutdown();
}

async fn full_name(demo: &Demo, id: &Value) -> Value {
    let (_, product) = http(demo.addrs.catalog, "GET", &format!("/products/{}", id.as_str().unwrap()), "", "").await;
    product["name"].clone()
}
