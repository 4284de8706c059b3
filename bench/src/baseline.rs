//! The baseline: the least a server can do to answer each scenario. It makes the same backend
//! calls as the BFF, in parallel, with the same kind of clients (reqwest for REST, tonic for gRPC),
//! and merges the same JSON, with none of the gateway's features: no authentication, limits,
//! access log, deadlines, GraphQL or error branding. Its figures are the practical floor.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bff_backends::proto::inventory::v1::GetStockRequest;
use bff_backends::proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use bff_backends::proto::orders::v1::ListOrdersRequest;
use bff_backends::proto::orders::v1::orders_service_client::OrdersServiceClient;
use bff_demo::{DemoAddrs, http_url};
use bytes::Bytes;
use prost_types::FieldMask;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::scenario::{PRODUCT, Scenario, USER};

struct Clients {
    http: reqwest::Client,
    users: String,
    catalog: String,
    recommendations: String,
    orders: OrdersServiceClient<Channel>,
    inventory: InventoryServiceClient<Channel>,
}

type Shared = Arc<Clients>;

/// Serves `scenario`'s baseline on an ephemeral port until the parent goes away.
pub fn serve(scenario: Scenario, demo: DemoAddrs) -> anyhow::Result<()> {
    bff_upstream::tls::install_default_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let channel = |addr| Channel::from_shared(http_url(addr)).map(|endpoint| endpoint.connect_lazy());
        let clients = Arc::new(Clients {
            http: reqwest::Client::builder().build().context("building the HTTP client")?,
            users: http_url(demo.users),
            catalog: http_url(demo.catalog),
            recommendations: http_url(demo.recommendations),
            orders: OrdersServiceClient::new(channel(demo.orders)?),
            inventory: InventoryServiceClient::new(channel(demo.inventory)?),
        });
        let router = match scenario {
            Scenario::MobileHome | Scenario::LargeToken => Router::new().route("/graphql", post(mobile_home)),
            Scenario::LargeDocumentHit | Scenario::LargeDocumentMiss => {
                Router::new().route("/graphql", post(large_document))
            }
            Scenario::WebOrdersPage => Router::new().route("/graphql", post(orders_page)),
            Scenario::PartnerProduct | Scenario::ProductPage => {
                Router::new().route("/v1/products/{id}", get(partner_product))
            }
            Scenario::AuthReject => Router::new().route("/graphql", post(reject)),
        }
        .route("/readyz", get(|| async { "ready" }))
        .with_state(clients);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        crate::announce(&listener.local_addr()?.to_string());
        axum::serve(listener, router).await?;
        anyhow::Ok(())
    })
}

fn json_response(value: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

fn failed(error: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_GATEWAY, error.to_string()).into_response()
}

async fn get_json(clients: &Clients, url: String, query: &[(&str, &str)]) -> Result<Value, reqwest::Error> {
    clients.http.get(url).query(query).send().await?.error_for_status()?.json().await
}

fn mask(fields: &[&str]) -> Option<FieldMask> {
    Some(FieldMask { paths: fields.iter().map(|f| (*f).to_owned()).collect() })
}

/// An order's status as the GraphQL schemas name it: `PAID`, not the protobuf's `ORDER_STATUS_PAID`.
fn status(order: &bff_backends::proto::orders::v1::Order) -> &'static str {
    let name = order.status().as_str_name();
    name.strip_prefix("ORDER_STATUS_").unwrap_or(name)
}

fn owner() -> String {
    format!("user:{USER}")
}

async fn mobile_home(state: State<Shared>, body: Bytes) -> Response {
    match home(state, body).await {
        Ok(answer) => json_response(&answer),
        Err(failure) => failure,
    }
}

/// The home screen's answer, as the BFF writes it.
async fn home(State(clients): State<Shared>, _body: Bytes) -> Result<Value, Response> {
    let user = get_json(&clients, format!("{}/users/{USER}", clients.users), &[("fields", "name,avatar_url")]);
    let mut orders_client = clients.orders.clone();
    let orders = orders_client.list_orders(ListOrdersRequest {
        user_id: owner(),
        page_size: 3,
        page_token: String::new(),
        read_mask: mask(&["status", "total_cents", "currency"]),
    });
    let recommendations =
        get_json(&clients, format!("{}/users/{USER}/recommendations", clients.recommendations), &[("limit", "5")]);
    let (user, orders, recommendations) = tokio::join!(user, orders, recommendations);
    let (user, orders, recommendations) = match (user, orders, recommendations) {
        (Ok(u), Ok(o), Ok(r)) => (u, o.into_inner(), r),
        (Err(e), _, _) | (_, _, Err(e)) => return Err(failed(e)),
        (_, Err(e), _) => return Err(failed(e)),
    };
    let avatar = user["avatar_url"].as_str().map(|url| format!("{url}?w=96"));
    let orders: Vec<Value> = orders
        .orders
        .iter()
        .map(|o| json!({ "id": o.id, "status": status(o), "total": o.total_cents.to_string(), "currency": o.currency }))
        .collect();
    let recommendations: Vec<Value> = recommendations["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|r| json!({ "id": r["product_id"], "name": r["name"], "price": r["price_cents"].to_string() }))
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({ "data": { "home": {
        "user": { "id": USER, "name": user["name"], "avatarUrl": avatar },
        "recentOrders": orders,
        "recommendations": recommendations,
    } } }))
}

/// The home screen with the large document's aliases: each is the user's name again.
async fn large_document(state: State<Shared>, body: Bytes) -> Response {
    let mut answer = match home(state, body).await {
        Ok(answer) => answer,
        Err(failure) => return failure,
    };
    if let Some(user) = answer["data"]["home"]["user"].as_object_mut() {
        let name = user.get("name").cloned().unwrap_or_default();
        user.remove("name");
        for alias in crate::scenario::large_document_aliases() {
            user.insert(alias, name.clone());
        }
    }
    json_response(&answer)
}

async fn orders_page(State(clients): State<Shared>, _body: Bytes) -> Response {
    let user = get_json(&clients, format!("{}/users/{USER}", clients.users), &[("fields", "name")]);
    let mut orders_client = clients.orders.clone();
    let orders = orders_client.list_orders(ListOrdersRequest {
        user_id: owner(),
        page_size: 10,
        page_token: String::new(),
        read_mask: mask(&["status", "created_at", "items"]),
    });
    let (user, orders) = match tokio::join!(user, orders) {
        (Ok(user), Ok(orders)) => (user, orders.into_inner()),
        (Err(e), _) => return failed(e),
        (_, Err(e)) => return failed(e),
    };
    let ids: BTreeSet<&str> = orders.orders.iter().flat_map(|o| &o.items).map(|i| i.product_id.as_str()).collect();
    let joined = ids.iter().copied().collect::<Vec<_>>().join(",");
    let query = [("ids", joined.as_str()), ("fields", "name,price_cents")];
    let products = get_json(&clients, format!("{}/products", clients.catalog), &query);
    let mut inventory = clients.inventory.clone();
    let stock = inventory.get_stock(GetStockRequest { product_ids: ids.iter().map(|id| (*id).to_owned()).collect() });
    let (products, stock) = match tokio::join!(products, stock) {
        (Ok(products), Ok(stock)) => (products, stock.into_inner()),
        (Err(e), _) => return failed(e),
        (_, Err(e)) => return failed(e),
    };
    let product = |id: &str| {
        let found = products["items"].as_array().and_then(|items| items.iter().find(|p| p["id"] == id));
        let available = stock.levels.iter().find(|l| l.product_id == id).map(|l| l.available);
        found.map(|p| json!({ "id": id, "name": p["name"], "price": p["price_cents"].to_string(), "stock": { "available": available } }))
    };
    let edges: Vec<Value> = orders
        .orders
        .iter()
        .map(|o| {
            let items: Vec<Value> =
                o.items.iter().map(|i| json!({ "quantity": i.quantity, "product": product(&i.product_id) })).collect();
            let created = o.created_at.as_ref().map(|t| t.seconds).unwrap_or_default();
            let created =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(created).unwrap_or_default());
            let created = humantime::format_rfc3339_seconds(created).to_string();
            json!({ "node": { "id": o.id, "status": status(o), "createdAt": created, "items": items } })
        })
        .collect();
    json_response(&json!({ "data": { "me": { "name": user["name"], "orders": { "edges": edges } } } }))
}

async fn partner_product(State(clients): State<Shared>) -> Response {
    const FIELDS: &str =
        "id,sku,name,description,brand,category,price_cents,currency,image_url,rating,review_count,tags";
    match get_json(&clients, format!("{}/products/{PRODUCT}", clients.catalog), &[("fields", FIELDS)]).await {
        Ok(mut product) => {
            if let Some(object) = product.as_object_mut() {
                object.retain(|key, _| FIELDS.split(',').any(|f| f == key));
            }
            json_response(&product)
        }
        Err(e) => failed(e),
    }
}

async fn reject() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        // What the BFF answers an expired token, its request id aside (the harness ignores it).
        r#"{"errors":[{"message":"invalid token: expired","extensions":{"code":"UNAUTHENTICATED","source":"gateway","requestId":"-"}}]}"#,
    )
        .into_response()
}
