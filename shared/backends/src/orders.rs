use bff_upstream::{Call, CallContext, Probe, Upstream, UpstreamConfig, UpstreamError};
use prost_types::FieldMask;

use crate::proto::orders::v1 as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Pending,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    /// A status this build does not know yet: shown as such rather than failing the request.
    Unknown,
}

impl From<pb::OrderStatus> for OrderStatus {
    fn from(status: pb::OrderStatus) -> Self {
        match status {
            pb::OrderStatus::Pending => Self::Pending,
            pb::OrderStatus::Paid => Self::Paid,
            pb::OrderStatus::Shipped => Self::Shipped,
            pb::OrderStatus::Delivered => Self::Delivered,
            pb::OrderStatus::Cancelled => Self::Cancelled,
            pb::OrderStatus::Unspecified => Self::Unknown,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: String,
    pub user_id: String,
    pub status: OrderStatus,
    pub total_cents: i64,
    pub currency: String,
    /// RFC 3339, UTC; empty when the service did not say.
    pub created_at: String,
    pub items: Vec<OrderItem>,
}

#[derive(Debug, Clone)]
pub struct OrderItem {
    pub product_id: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone)]
pub struct OrdersPage {
    pub orders: Vec<Order>,
    /// `None` on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewOrderLine {
    pub product_id: String,
    pub quantity: i32,
}

impl From<pb::Order> for Order {
    fn from(order: pb::Order) -> Self {
        Self {
            status: order.status().into(),
            id: order.id,
            user_id: order.user_id,
            total_cents: order.total_cents,
            currency: order.currency,
            created_at: order.created_at.map(|t| t.to_string()).unwrap_or_default(),
            items: order
                .items
                .into_iter()
                .map(|i| OrderItem {
                    product_id: i.product_id,
                    quantity: i.quantity,
                    unit_price_cents: i.unit_price_cents,
                })
                .collect(),
        }
    }
}

fn read_mask(fields: &[&str]) -> Option<FieldMask> {
    (!fields.is_empty()).then(|| FieldMask { paths: fields.iter().map(|f| (*f).to_owned()).collect() })
}

/// The orders service (gRPC). Every call names the owner the caller acts for; the service only
/// answers with that owner's orders.
#[derive(Debug, Clone)]
pub struct OrdersClient(Upstream);

impl OrdersClient {
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        Upstream::grpc("orders", config).map(Self)
    }

    pub async fn get(&self, cx: &CallContext, owner: &str, id: &str, fields: &[&str]) -> Result<Order, UpstreamError> {
        let request =
            pb::GetOrderRequest { id: id.to_owned(), user_id: owner.to_owned(), read_mask: read_mask(fields) };
        let call = Call::grpc("GetOrder", "/shop.orders.v1.OrdersService/GetOrder", &request).idempotent(true);
        let order: pb::Order = self.0.unary(cx, call).await?;
        Ok(order.into())
    }

    /// One page of the owner's orders, newest first. `fields` names the Order fields needed.
    pub async fn list(
        &self,
        cx: &CallContext,
        owner: &str,
        page_size: u32,
        page_token: Option<&str>,
        fields: &[&str],
    ) -> Result<OrdersPage, UpstreamError> {
        let request = pb::ListOrdersRequest {
            user_id: owner.to_owned(),
            page_size: i32::try_from(page_size).unwrap_or(i32::MAX),
            page_token: page_token.unwrap_or_default().to_owned(),
            read_mask: read_mask(fields),
        };
        let call = Call::grpc("ListOrders", "/shop.orders.v1.OrdersService/ListOrders", &request).idempotent(true);
        let page: pb::ListOrdersResponse = self.0.unary(cx, call).await?;
        Ok(OrdersPage {
            orders: page.orders.into_iter().map(Order::from).collect(),
            next_page_token: (!page.next_page_token.is_empty()).then_some(page.next_page_token),
        })
    }

    pub async fn create(
        &self,
        cx: &CallContext,
        owner: &str,
        lines: Vec<NewOrderLine>,
        idempotency_key: Option<String>,
    ) -> Result<Order, UpstreamError> {
        let request = pb::CreateOrderRequest {
            user_id: owner.to_owned(),
            lines: lines
                .into_iter()
                .map(|l| pb::OrderLine { product_id: l.product_id, quantity: l.quantity })
                .collect(),
            idempotency_key: idempotency_key.unwrap_or_default(),
        };
        // With an idempotency key the service creates the order once however often it is asked.
        let idempotent = !request.idempotency_key.is_empty();
        let call =
            Call::grpc("CreateOrder", "/shop.orders.v1.OrdersService/CreateOrder", &request).idempotent(idempotent);
        let order: pb::Order = self.0.unary(cx, call).await?;
        Ok(order.into())
    }
}

impl Probe for OrdersClient {
    async fn probe(&self) -> Result<(), String> {
        crate::grpc_ready(&self.0, "shop.orders.v1.OrdersService").await
    }
}
