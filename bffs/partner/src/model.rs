//! The partner API's resources, independent of any version: what the handlers produce and take.
//! Each version ([`crate::v1`], [`crate::v2`]) is a representation of these, so a new version
//! changes how resources are written, never how they are fetched.
//!
//! A member is `None` when the client's sparse fieldset left it out (and the backend was not
//! asked for it); one that was asked for and is missing is a backend fault, never a default.

use bff_backends::OrderStatus;
use bff_upstream::UpstreamError;

/// An amount of money in the currency's minor units (cents for USD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub minor_units: i64,
    pub currency: String,
}

impl Money {
    /// The decimal amount, `"12.34"` for 1234 USD cents: ISO 4217 exponents for the currencies
    /// the shop sells in (0 for JPY and KRW, 3 for the dinars, 2 for the rest).
    pub fn decimal(&self) -> String {
        let exponent = match self.currency.as_str() {
            "JPY" | "KRW" => 0,
            "BHD" | "KWD" | "JOD" | "OMR" | "TND" => 3,
            _ => 2,
        };
        let sign = if self.minor_units < 0 { "-" } else { "" };
        let units = self.minor_units.unsigned_abs();
        if exponent == 0 {
            return format!("{sign}{units}");
        }
        let scale = 10u64.pow(exponent);
        format!("{sign}{}.{:0width$}", units / scale, units % scale, width = exponent as usize)
    }
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: String,
    pub sku: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub brand: Option<String>,
    pub category: Option<String>,
    pub price: Option<Money>,
    pub image_url: Option<String>,
    pub rating: Option<f64>,
    pub review_count: Option<i64>,
    pub tags: Option<Vec<String>>,
    /// Filled only by versions that embed stock in a product (and only when selected).
    pub stock: Option<Stock>,
}

impl Product {
    /// The catalog's answer, with the money members joined; a price without its currency (or
    /// the reverse) is a backend fault.
    pub fn from_catalog(p: bff_backends::Product) -> Result<Self, UpstreamError> {
        let price = match (p.price_cents.into_option(), p.currency.into_option()) {
            (Some(minor_units), Some(currency)) => Some(Money { minor_units, currency }),
            (None, None) => None,
            _ => {
                return Err(UpstreamError::BadBody {
                    service: "catalog",
                    reason: "a price without its currency".into(),
                });
            }
        };
        Ok(Self {
            id: p.id,
            sku: p.sku.into_option(),
            name: p.name.into_option(),
            description: p.description.into_option(),
            brand: p.brand.into_option(),
            category: p.category.into_option(),
            price,
            image_url: p.image_url.into_option(),
            rating: p.rating.into_option(),
            review_count: p.review_count.into_option(),
            tags: p.tags.into_option(),
            stock: None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Stock {
    pub product_id: String,
    pub available: i64,
}

/// How every version writes a status: lowercase, `unknown` for one newer than this build.
pub fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "pending",
        OrderStatus::Paid => "paid",
        OrderStatus::Shipped => "shipped",
        OrderStatus::Delivered => "delivered",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Unknown => "unknown",
    }
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: String,
    pub status: Option<OrderStatus>,
    pub total: Option<Money>,
    pub created_at: Option<String>,
    pub items: Option<Vec<OrderItem>>,
}

#[derive(Debug, Clone)]
pub struct OrderItem {
    pub product_id: String,
    pub quantity: i32,
    pub unit_price: Money,
}

impl Order {
    /// The orders service's answer under the read mask `fields` (empty: every member).
    pub fn from_backend(order: bff_backends::Order) -> Result<Self, UpstreamError> {
        let currency = order.currency.clone().into_option();
        let money = |minor_units: i64| -> Result<Money, UpstreamError> {
            let currency = currency.clone().ok_or_else(|| UpstreamError::BadBody {
                service: "orders",
                reason: "an amount without its currency".into(),
            })?;
            Ok(Money { minor_units, currency })
        };
        Ok(Self {
            status: order.status.into_option(),
            total: order.total_cents.into_option().map(money).transpose()?,
            created_at: order.created_at.into_option(),
            items: order
                .items
                .into_option()
                .map(|items| {
                    items
                        .into_iter()
                        .map(|i| {
                            Ok(OrderItem {
                                product_id: i.product_id,
                                quantity: i.quantity,
                                unit_price: money(i.unit_price_cents)?,
                            })
                        })
                        .collect::<Result<Vec<_>, UpstreamError>>()
                })
                .transpose()?,
            id: order.id,
        })
    }
}

/// One page of a list, and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor of the next page; `None` on the last.
    pub next_cursor: Option<String>,
    /// The URL of the next page, with the same page size and fieldset.
    pub next_link: Option<String>,
}

/// An order to place: lines of product and quantity.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub lines: Vec<(String, i32)>,
}
