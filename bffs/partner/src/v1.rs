//! Version 1 of the partner API. Its JSON shapes are a contract with partners: change them only
//! by adding optional fields; anything else is a `/v2`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bff_backends::{CatalogClient, InventoryClient, NewOrderLine, OrdersClient};
use bff_gateway::rest::{Json, Path, Query};
use bff_gateway::{GatewayError, RequestContext};
use bff_upstream::UpstreamError;
use serde::{Deserialize, Serialize};

use bff_upstream::Upstreams;

const DEFAULT_PAGE_SIZE: u32 = 20;
const MAX_PAGE_SIZE: u32 = 100;
const MAX_ORDER_LINES: usize = 50;
const MAX_QUANTITY: i32 = 100;
/// Ids, cursors and idempotency keys are short tokens; anything else is refused at the edge.
const MAX_TOKEN_LEN: usize = 128;
const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The backend clients, shared by every request.
#[derive(Clone)]
pub struct Backends {
    pub catalog: CatalogClient,
    pub inventory: InventoryClient,
    pub orders: OrdersClient,
}

impl Backends {
    pub fn new(upstreams: &Upstreams) -> Result<Self, UpstreamError> {
        Ok(Self {
            catalog: CatalogClient::new(upstreams.get("catalog")?)?,
            inventory: InventoryClient::new(upstreams.get("inventory")?)?,
            orders: OrdersClient::new(upstreams.get("orders")?)?,
        })
    }
}

/// One route of the API, as access control sees it: the scope it needs.
pub struct Route {
    pub method: Method,
    /// The full route template, version included, as axum's `MatchedPath` reports it.
    pub path: &'static str,
    pub scope: &'static str,
}

impl Route {
    /// `GET /v1/products/{id}`: how plans name the route.
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Every v1 route with the scope it needs: the one table access control reads. A route served
/// but missing here is refused to everyone (see `authorize` in the crate root).
pub const ROUTES: &[Route] = &[
    Route { method: Method::GET, path: "/v1/products/{id}", scope: "catalog:read" },
    Route { method: Method::GET, path: "/v1/products/{id}/stock", scope: "catalog:read" },
    Route { method: Method::GET, path: "/v1/orders", scope: "orders:read" },
    Route { method: Method::POST, path: "/v1/orders", scope: "orders:write" },
    Route { method: Method::GET, path: "/v1/orders/{id}", scope: "orders:read" },
];

pub fn routes(backends: Backends) -> Router {
    Router::new()
        .route("/products/{id}", get(get_product))
        .route("/products/{id}/stock", get(get_stock))
        .route("/orders", get(list_orders).post(create_order))
        .route("/orders/{id}", get(get_order))
        .with_state(backends)
}

/// The catalog fields partners see; the catalog's internal fields are never asked for.
const PRODUCT_FIELDS: &[&str] = &[
    "id",
    "sku",
    "name",
    "description",
    "brand",
    "category",
    "price_cents",
    "currency",
    "image_url",
    "rating",
    "review_count",
    "tags",
];

#[derive(Serialize)]
struct ProductView {
    id: String,
    sku: Option<String>,
    name: Option<String>,
    description: Option<String>,
    brand: Option<String>,
    category: Option<String>,
    price_cents: Option<i64>,
    currency: Option<String>,
    image_url: Option<String>,
    rating: Option<f64>,
    review_count: Option<i64>,
    tags: Vec<String>,
}

async fn get_product(
    State(backends): State<Backends>,
    cx: RequestContext,
    Path(id): Path<String>,
) -> Result<axum::Json<ProductView>, GatewayError> {
    let id = token("product id", &id)?;
    let p = backends.catalog.get(cx.upstream(), id, PRODUCT_FIELDS).await?;
    Ok(axum::Json(ProductView {
        id: p.id,
        sku: p.sku.into_option(),
        name: p.name.into_option(),
        description: p.description.into_option(),
        brand: p.brand.into_option(),
        category: p.category.into_option(),
        price_cents: p.price_cents.into_option(),
        currency: p.currency.into_option(),
        image_url: p.image_url.into_option(),
        rating: p.rating.into_option(),
        review_count: p.review_count.into_option(),
        tags: p.tags.into_option().unwrap_or_default(),
    }))
}

#[derive(Serialize)]
struct StockView {
    product_id: String,
    available: i64,
    in_stock: bool,
}

async fn get_stock(
    State(backends): State<Backends>,
    cx: RequestContext,
    Path(id): Path<String>,
) -> Result<axum::Json<StockView>, GatewayError> {
    let id = token("product id", &id)?;
    let level = backends
        .inventory
        .stock(cx.upstream(), &[id])
        .await?
        .into_iter()
        .find(|level| level.product_id == id)
        .ok_or_else(|| GatewayError::NotFound(format!("no stock is tracked for product `{id}`")))?;
    Ok(axum::Json(StockView {
        product_id: level.product_id,
        available: level.available,
        in_stock: level.available > 0,
    }))
}

#[derive(Serialize)]
struct OrderView {
    id: String,
    status: &'static str,
    total_cents: i64,
    currency: String,
    created_at: String,
    items: Vec<OrderItemView>,
}

#[derive(Serialize)]
struct OrderItemView {
    product_id: String,
    quantity: i32,
    unit_price_cents: i64,
}

impl OrderView {
    /// Partners read whole orders (no read mask), so every member is there; one that is not is a
    /// backend fault, not a default.
    fn of(order: bff_backends::Order) -> Result<Self, bff_upstream::UpstreamError> {
        use bff_backends::OrderStatus as S;
        Ok(Self {
            status: match order.status()? {
                S::Pending => "pending",
                S::Paid => "paid",
                S::Shipped => "shipped",
                S::Delivered => "delivered",
                S::Cancelled => "cancelled",
                S::Unknown => "unknown",
            },
            total_cents: order.total_cents()?,
            currency: order.currency()?.to_owned(),
            created_at: order.created_at()?.to_owned(),
            items: order
                .items()?
                .iter()
                .map(|i| OrderItemView {
                    product_id: i.product_id.clone(),
                    quantity: i.quantity,
                    unit_price_cents: i.unit_price_cents,
                })
                .collect(),
            id: order.id,
        })
    }
}

#[derive(Serialize)]
struct OrderList {
    items: Vec<OrderView>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list_orders(
    State(backends): State<Backends>,
    cx: RequestContext,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<OrderList>, GatewayError> {
    let owner = cx.owner()?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(GatewayError::BadRequest(format!("`limit` must be between 1 and {MAX_PAGE_SIZE}")));
    }
    let cursor = params.cursor.as_deref().map(|c| token("cursor", c)).transpose()?;
    let page = backends.orders.list(cx.upstream(), &owner, limit, cursor, &[]).await?;
    Ok(axum::Json(OrderList {
        items: page.orders.into_iter().map(OrderView::of).collect::<Result<_, _>>()?,
        next_cursor: page.next_page_token,
    }))
}

async fn get_order(
    State(backends): State<Backends>,
    cx: RequestContext,
    Path(id): Path<String>,
) -> Result<axum::Json<OrderView>, GatewayError> {
    let owner = cx.owner()?;
    let id = token("order id", &id)?;
    let order = backends.orders.get(cx.upstream(), &owner, id, &[]).await?;
    Ok(axum::Json(OrderView::of(order)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    items: Vec<NewOrderItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrderItem {
    product_id: String,
    quantity: i32,
}

/// Places an order owned by the calling partner. An `Idempotency-Key` header makes retries safe:
/// the same key returns the first order instead of placing another.
async fn create_order(
    State(backends): State<Backends>,
    cx: RequestContext,
    headers: HeaderMap,
    Json(body): Json<NewOrder>,
) -> Result<Response, GatewayError> {
    let owner = cx.owner()?;
    if body.items.is_empty() || body.items.len() > MAX_ORDER_LINES {
        return Err(GatewayError::BadRequest(format!("`items` must have 1 to {MAX_ORDER_LINES} entries")));
    }
    let mut lines = Vec::with_capacity(body.items.len());
    for (i, item) in body.items.into_iter().enumerate() {
        token(&format!("items[{i}].product_id"), &item.product_id)?;
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(GatewayError::BadRequest(format!("items[{i}].quantity must be between 1 and {MAX_QUANTITY}")));
        }
        lines.push(NewOrderLine { product_id: item.product_id, quantity: item.quantity });
    }
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY_HEADER) {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|key| token("Idempotency-Key", key).ok())
                .ok_or_else(|| GatewayError::BadRequest("`Idempotency-Key` must be a short printable token".into()))?
                .to_owned(),
        ),
        None => None,
    };
    let order = backends.orders.create(cx.upstream(), &owner, lines, idempotency_key).await?;
    let location = HeaderValue::from_str(&format!("/v1/orders/{}", order.id))
        .map_err(|_| GatewayError::Internal("order id is not a valid header value".into()))?;
    let mut response = (StatusCode::CREATED, axum::Json(OrderView::of(order)?)).into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// `value` if it is a plausible id or token (short, printable, no separators), else a 400 that
/// names `what`; a malformed id never reaches a backend.
fn token<'a>(what: &str, value: &'a str) -> Result<&'a str, GatewayError> {
    let ok = value.len() <= MAX_TOKEN_LEN
        && value.bytes().any(|b| b.is_ascii_alphanumeric())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=' | b':'));
    if ok { Ok(value) } else { Err(GatewayError::BadRequest(format!("`{what}` is not a valid id"))) }
}
