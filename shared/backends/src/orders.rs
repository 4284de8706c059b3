use bff_upstream::{Call, CallContext, Probe, Upstream, UpstreamConfig, UpstreamError};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use prost_types::FieldMask;

use crate::Member;
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

const SERVICE: &str = "orders";

/// An order. Every member but the id is only there when the read mask asked for it (or when no
/// mask was sent): outside the mask protobuf decodes zero values, which must never pass as data.
#[derive(Debug, Clone)]
pub struct Order {
    pub id: String,
    pub status: Member<OrderStatus>,
    pub total_cents: Member<i64>,
    pub currency: Member<String>,
    /// RFC 3339, UTC.
    pub created_at: Member<String>,
    pub items: Member<Vec<OrderItem>>,
}

impl Order {
    /// Every member of `Order` a read mask can name.
    pub const FIELDS: &'static [&'static str] = &["status", "total_cents", "currency", "created_at", "items"];

    pub fn status(&self) -> Result<OrderStatus, UpstreamError> {
        self.status.required(SERVICE, "status").copied()
    }

    pub fn total_cents(&self) -> Result<i64, UpstreamError> {
        self.total_cents.required(SERVICE, "total_cents").copied()
    }

    pub fn currency(&self) -> Result<&str, UpstreamError> {
        self.currency.required(SERVICE, "currency").map(String::as_str)
    }

    pub fn created_at(&self) -> Result<&str, UpstreamError> {
        self.created_at.required(SERVICE, "created_at").map(String::as_str)
    }

    pub fn items(&self) -> Result<&[OrderItem], UpstreamError> {
        self.items.required(SERVICE, "items").map(Vec::as_slice)
    }

    /// The order as decoded under `mask` (empty: everything was asked for).
    fn from_masked(order: pb::Order, mask: &[&str]) -> Self {
        let asked = |field: &str| mask.is_empty() || mask.contains(&field);
        let status = order.status().into();
        Self {
            status: Member::masked(asked("status"), || status),
            total_cents: Member::masked(asked("total_cents"), || order.total_cents),
            currency: Member::masked(asked("currency"), || order.currency),
            created_at: Member::masked(asked("created_at"), || {
                order.created_at.map(|t| t.to_string()).unwrap_or_default()
            }),
            items: Member::masked(asked("items"), || {
                order
                    .items
                    .into_iter()
                    .map(|i| OrderItem {
                        product_id: i.product_id,
                        quantity: i.quantity,
                        unit_price_cents: i.unit_price_cents,
                    })
                    .collect()
            }),
            id: order.id,
        }
    }
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

/// One status change of a watched order.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub order_id: String,
    pub status: OrderStatus,
    /// RFC 3339, UTC.
    pub changed_at: String,
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
        Upstream::grpc(SERVICE, config).map(Self)
    }

    pub async fn get(&self, cx: &CallContext, owner: &str, id: &str, fields: &[&str]) -> Result<Order, UpstreamError> {
        let request =
            pb::GetOrderRequest { id: id.to_owned(), user_id: owner.to_owned(), read_mask: read_mask(fields) };
        let call = Call::grpc("GetOrder", "/shop.orders.v1.OrdersService/GetOrder", &request).read_only();
        let order: pb::Order = self.0.unary(cx, call).await?;
        Ok(Order::from_masked(order, fields))
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
        let call = Call::grpc("ListOrders", "/shop.orders.v1.OrdersService/ListOrders", &request).read_only();
        let page: pb::ListOrdersResponse = self.0.unary(cx, call).await?;
        Ok(OrdersPage {
            orders: page.orders.into_iter().map(|order| Order::from_masked(order, fields)).collect(),
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
        Ok(Order::from_masked(order, &[]))
    }

    /// Cancels one of the owner's orders; answers with the order as it now is. Cancelling an
    /// order that is already cancelled changes nothing, so the call may be repeated.
    pub async fn cancel(&self, cx: &CallContext, owner: &str, id: &str) -> Result<Order, UpstreamError> {
        let request = pb::CancelOrderRequest { id: id.to_owned(), user_id: owner.to_owned() };
        let call = Call::grpc("CancelOrder", "/shop.orders.v1.OrdersService/CancelOrder", &request).idempotent(true);
        let order: pb::Order = self.0.unary(cx, call).await?;
        Ok(Order::from_masked(order, &[]))
    }

    /// Every status change of one of the owner's orders, starting with its current status,
    /// until it reaches a final one. Dropping the stream cancels the watch on the backend.
    pub async fn watch(
        &self,
        cx: &CallContext,
        owner: &str,
        id: &str,
    ) -> Result<BoxStream<'static, Result<StatusChange, UpstreamError>>, UpstreamError> {
        let request = pb::WatchOrderRequest { id: id.to_owned(), user_id: owner.to_owned() };
        let call = Call::grpc("WatchOrder", "/shop.orders.v1.OrdersService/WatchOrder", &request);
        let changes = self.0.server_stream::<pb::OrderStatusChange>(cx, call).await?;
        Ok(changes
            .map(|change| {
                change.map(|change| StatusChange {
                    status: change.status().into(),
                    order_id: change.order_id,
                    changed_at: change.changed_at.map(|t| t.to_string()).unwrap_or_default(),
                })
            })
            .boxed())
    }
}

impl Probe for OrdersClient {
    async fn probe(&self) -> Result<(), String> {
        crate::grpc_ready(&self.0, "shop.orders.v1.OrdersService").await
    }
}
