//! Version 1 of the partner API, deprecated: snake_case members, money as `price_cents` and
//! `currency`, lists as `{"items", "next_cursor"}`. Its shapes are a contract with partners that
//! still call it; it is a representation of [`crate::model`] served by the same handlers as v2,
//! so it keeps working unchanged until its sunset. Every response says so (`Deprecation`,
//! `Sunset`, and a `Link` to the v2 document).

use bff_gateway::graphql::FieldMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model;
use crate::version::Version;

pub struct V1;

impl Version for V1 {
    const NAME: &'static str = "v1";
    const MEDIA_TYPE: &'static str = "application/vnd.shop.v1+json";
    const HEADERS: &'static [(&'static str, &'static str)] = &[
        // RFC 9745: deprecated since 2026-12-01 (a structured-field date).
        ("deprecation", "@1796083200"),
        // RFC 8594: gone after this.
        ("sunset", "Wed, 01 Dec 2027 00:00:00 GMT"),
        ("link", r#"</v2/openapi.json>; rel="deprecation successor-version"; type="application/json""#),
    ];

    type Product = Product;
    type Stock = Stock;
    type Order = Order;
    type OrderList = OrderList;
    type NewOrder = NewOrder;

    const PRODUCT_FIELDS: FieldMap = FieldMap::new(
        "Product",
        &[
            ("id", &[]),
            ("sku", &["sku"]),
            ("name", &["name"]),
            ("description", &["description"]),
            ("brand", &["brand"]),
            ("category", &["category"]),
            ("price_cents", &["price_cents", "currency"]),
            ("currency", &["price_cents", "currency"]),
            ("image_url", &["image_url"]),
            ("rating", &["rating"]),
            ("review_count", &["review_count"]),
            ("tags", &["tags"]),
        ],
    );
    const PRODUCT_STOCK: Option<&'static str> = None;
    const ORDER_FIELDS: FieldMap = FieldMap::new(
        "Order",
        &[
            ("id", &[]),
            ("status", &["status"]),
            ("total_cents", &["total_cents", "currency"]),
            ("currency", &["total_cents", "currency"]),
            ("created_at", &["created_at"]),
            ("items", &["items", "currency"]),
        ],
    );
}

/// A product of the catalog.
#[derive(Serialize, ToSchema)]
#[schema(as = Product)]
pub struct Product {
    #[schema(required = false)]
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sku: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    brand: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    /// The price in the currency's minor units (cents).
    #[serde(skip_serializing_if = "Option::is_none")]
    price_cents: Option<i64>,
    /// ISO 4217 code.
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rating: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    review_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<String>>,
}

impl From<model::Product> for Product {
    fn from(p: model::Product) -> Self {
        let (price_cents, currency) = p.price.map(|m| (m.minor_units, m.currency)).unzip();
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            brand: p.brand,
            category: p.category,
            price_cents,
            currency,
            image_url: p.image_url,
            rating: p.rating,
            review_count: p.review_count,
            tags: p.tags,
        }
    }
}

/// A product's stock level.
#[derive(Serialize, ToSchema)]
#[schema(as = Stock)]
pub struct Stock {
    product_id: String,
    available: i64,
    in_stock: bool,
}

impl From<model::Stock> for Stock {
    fn from(s: model::Stock) -> Self {
        Self { in_stock: s.available > 0, available: s.available, product_id: s.product_id }
    }
}

/// An order the partner placed.
#[derive(Serialize, ToSchema)]
#[schema(as = Order)]
pub struct Order {
    #[schema(required = false)]
    id: String,
    /// `pending`, `paid`, `shipped`, `delivered`, `cancelled`, or `unknown` for a status newer
    /// than this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_cents: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Vec<OrderItem>>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OrderItem)]
pub struct OrderItem {
    product_id: String,
    quantity: i32,
    unit_price_cents: i64,
}

impl From<model::Order> for Order {
    fn from(o: model::Order) -> Self {
        let (total_cents, currency) = o.total.map(|m| (m.minor_units, m.currency)).unzip();
        Self {
            id: o.id,
            status: o.status.map(model::status_name),
            total_cents,
            currency,
            created_at: o.created_at,
            items: o.items.map(|items| {
                items
                    .into_iter()
                    .map(|i| OrderItem {
                        product_id: i.product_id,
                        quantity: i.quantity,
                        unit_price_cents: i.unit_price.minor_units,
                    })
                    .collect()
            }),
        }
    }
}

/// A page of orders, newest first; `next_cursor` fetches the next (`null` on the last page).
#[derive(Serialize, ToSchema)]
#[schema(as = OrderList)]
pub struct OrderList {
    #[schema(value_type = Vec<Order>)]
    items: Vec<serde_json::Value>,
    next_cursor: Option<String>,
}

impl From<model::Page<serde_json::Value>> for OrderList {
    fn from(page: model::Page<serde_json::Value>) -> Self {
        Self { items: page.items, next_cursor: page.next_cursor }
    }
}

/// An order to place.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewOrder)]
pub struct NewOrder {
    #[schema(min_items = 1, max_items = 50)]
    items: Vec<NewOrderItem>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewOrderItem)]
pub struct NewOrderItem {
    /// A product of the catalog.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,127}$", example = "p-7")]
    product_id: String,
    #[schema(minimum = 1, maximum = 100)]
    quantity: i32,
}

impl From<NewOrder> for model::NewOrder {
    fn from(order: NewOrder) -> Self {
        Self { lines: order.items.into_iter().map(|i| (i.product_id, i.quantity)).collect() }
    }
}
