//! Version 2 of the partner API: camelCase members, money as `{"amount": "12.34", "currency":
//! "USD"}` (a decimal string: exact, and never a float), a product's stock embedded and
//! selectable (`?fields=id,stock.available`), and lists as `{"data", "links": {"next"}}`.

use bff_backends::OrderStatus;
use bff_gateway::graphql::FieldMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model;
use crate::version::Version;

pub struct V2;

impl Version for V2 {
    const NAME: &'static str = "v2";
    const MEDIA_TYPE: &'static str = "application/vnd.shop.v2+json";
    const HEADERS: &'static [(&'static str, &'static str)] = &[];

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
            ("price", &["price_cents", "currency"]),
            ("imageUrl", &["image_url"]),
            ("rating", &["rating"]),
            ("reviewCount", &["review_count"]),
            ("tags", &["tags"]),
            ("stock", &[]),
        ],
    );
    const PRODUCT_STOCK: Option<&'static str> = Some("stock");
    const ORDER_FIELDS: FieldMap = FieldMap::new(
        "Order",
        &[
            ("id", &[]),
            ("status", &["status"]),
            ("total", &["total_cents", "currency"]),
            ("createdAt", &["created_at"]),
            ("items", &["items", "currency"]),
        ],
    );
}

/// An amount of money: a decimal string in the currency's major unit, exact.
#[derive(Serialize, ToSchema)]
pub struct Money {
    #[schema(pattern = r"^-?[0-9]+(\.[0-9]+)?$", example = "12.34")]
    amount: String,
    /// ISO 4217 code.
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    currency: String,
}

impl From<model::Money> for Money {
    fn from(money: model::Money) -> Self {
        Self { amount: money.decimal(), currency: money.currency }
    }
}

/// A product of the catalog.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rating: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    review_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<String>>,
    /// From the inventory service; asked for only when selected (or when no fieldset is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    stock: Option<Stock>,
}

impl From<model::Product> for Product {
    fn from(p: model::Product) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            brand: p.brand,
            category: p.category,
            price: p.price.map(Money::from),
            image_url: p.image_url,
            rating: p.rating,
            review_count: p.review_count,
            tags: p.tags,
            stock: p.stock.map(Stock::from),
        }
    }
}

/// A product's stock level.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stock {
    #[schema(required = false)]
    product_id: String,
    #[schema(required = false)]
    available: i64,
    #[schema(required = false)]
    in_stock: bool,
}

impl From<model::Stock> for Stock {
    fn from(s: model::Stock) -> Self {
        Self { in_stock: s.available > 0, available: s.available, product_id: s.product_id }
    }
}

/// An order the partner placed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    #[schema(required = false)]
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<Money>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Vec<OrderItem>>,
}

/// Where an order is; `unknown` is a status newer than this version.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    Unknown,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    product_id: String,
    quantity: i32,
    unit_price: Money,
}

impl From<model::Order> for Order {
    fn from(o: model::Order) -> Self {
        Self {
            id: o.id,
            status: o.status.map(|status| match status {
                OrderStatus::Pending => Status::Pending,
                OrderStatus::Paid => Status::Paid,
                OrderStatus::Shipped => Status::Shipped,
                OrderStatus::Delivered => Status::Delivered,
                OrderStatus::Cancelled => Status::Cancelled,
                OrderStatus::Unknown => Status::Unknown,
            }),
            total: o.total.map(Money::from),
            created_at: o.created_at,
            items: o.items.map(|items| {
                items
                    .into_iter()
                    .map(|i| OrderItem {
                        product_id: i.product_id,
                        quantity: i.quantity,
                        unit_price: i.unit_price.into(),
                    })
                    .collect()
            }),
        }
    }
}

/// A page of orders, newest first.
#[derive(Serialize, ToSchema)]
pub struct OrderList {
    #[schema(value_type = Vec<Order>)]
    data: Vec<serde_json::Value>,
    links: Links,
}

/// Where the next page is; absent on the last page.
#[derive(Serialize, ToSchema)]
pub struct Links {
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

impl From<model::Page<serde_json::Value>> for OrderList {
    fn from(page: model::Page<serde_json::Value>) -> Self {
        Self { data: page.items, links: Links { next: page.next_link } }
    }
}

/// An order to place.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    #[schema(min_items = 1, max_items = 50)]
    lines: Vec<NewOrderLine>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewOrderLine {
    /// A product of the catalog.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,127}$", example = "p-7")]
    product_id: String,
    #[schema(minimum = 1, maximum = 100)]
    quantity: i32,
}

impl From<NewOrder> for model::NewOrder {
    fn from(order: NewOrder) -> Self {
        Self { lines: order.lines.into_iter().map(|l| (l.product_id, l.quantity)).collect() }
    }
}
