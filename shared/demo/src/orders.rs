//! The orders service (gRPC `shop.orders.v1.OrdersService`).
//!
//! Seeded orders are computed from the user id on each call rather than stored, so start-up stays
//! instant; orders placed through `CreateOrder` live in memory and list before the seeded ones.
//! Status changes made by `WatchOrder` are remembered, so a later `GetOrder` agrees with the stream.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bff_backends::proto::orders::v1 as pb;
use futures::Stream;
use prost::Message as _;
use prost_types::{FieldMask, Timestamp};
use tonic::{Request, Response, Status};

use crate::control::ServiceControl;
use crate::data;

const DEFAULT_PAGE_SIZE: usize = 20;
const MAX_PAGE_SIZE: i32 = 100;
const MAX_LINES: usize = 100;
const MAX_QUANTITY: i32 = 100;
/// Time between status changes of a watched order: long enough that a test can leave mid-watch.
const WATCH_STEP: Duration = Duration::from_millis(500);
const TOKEN_PREFIX: &str = "older:";
/// Owners are namespaced by the gateway (`user:`, `key:`, `client:`); the seeded orders belong
/// to the seeded users.
const USER_OWNER_PREFIX: &str = "user:";

/// The seeded user an owner names, if it is one.
fn seeded_user(owner: &str) -> Option<u64> {
    data::user_index(owner.strip_prefix(USER_OWNER_PREFIX)?)
}

#[derive(Default)]
struct Store {
    /// Orders placed through CreateOrder, oldest first.
    created: Vec<pb::Order>,
    by_id: HashMap<String, usize>,
    /// (owner, idempotency key) -> order id.
    idempotency: HashMap<(String, String), String>,
    /// Status changes of seeded orders made by WatchOrder.
    seeded_status: HashMap<String, i32>,
}

impl Store {
    fn seeded(&self, user: u64, k: u64) -> pb::Order {
        let seeded = data::seeded_order(user, k);
        let items: Vec<pb::OrderItem> = seeded
            .items
            .iter()
            .map(|&(product, quantity, unit_price_cents)| pb::OrderItem {
                product_id: format!("p-{product}"),
                quantity,
                unit_price_cents,
            })
            .collect();
        pb::Order {
            status: self.seeded_status.get(&seeded.id).copied().unwrap_or(seeded.status),
            id: seeded.id,
            user_id: format!("{USER_OWNER_PREFIX}u-{user}"),
            total_cents: items.iter().map(|i| i.unit_price_cents * i64::from(i.quantity)).sum(),
            currency: "USD".to_owned(),
            created_at: Some(Timestamp { seconds: seeded.created_at, nanos: 0 }),
            items,
        }
    }

    /// The order when it exists and belongs to `owner`; other owners' orders are indistinguishable
    /// from missing ones, so ids cannot be probed.
    fn find(&self, id: &str, owner: &str) -> Option<pb::Order> {
        if let Some(&index) = self.by_id.get(id) {
            return self.created.get(index).filter(|order| order.user_id == owner).cloned();
        }
        let (user, k) = data::parse_seeded_order_id(id)?;
        (seeded_user(owner) == Some(user)).then(|| self.seeded(user, k))
    }

    fn set_status(&mut self, id: &str, status: i32) {
        if let Some(&index) = self.by_id.get(id) {
            if let Some(order) = self.created.get_mut(index) {
                order.status = status;
            }
        } else {
            self.seeded_status.insert(id.to_owned(), status);
        }
    }
}

#[derive(Clone)]
pub(crate) struct OrdersService {
    control: Arc<ServiceControl>,
    store: Arc<Mutex<Store>>,
}

impl OrdersService {
    pub(crate) fn new(control: Arc<ServiceControl>) -> Self {
        Self { control, store: Arc::default() }
    }
}

// Each update is a single insert or assignment, so a poisoned lock holds consistent data.
fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

fn mask_paths(mask: Option<&FieldMask>) -> Vec<String> {
    mask.map(|m| m.paths.clone()).unwrap_or_default()
}

/// The order with only the fields `paths` names (and its id); all of it when `paths` is empty.
/// A cleared field is its zero value on the wire, as for any real service honouring a mask.
fn apply_mask(mut order: pb::Order, paths: &[String]) -> pb::Order {
    if paths.is_empty() {
        return order;
    }
    let keep = |field: &str| paths.iter().any(|p| p == field);
    if !keep("user_id") {
        order.user_id.clear();
    }
    if !keep("status") {
        order.status = 0;
    }
    if !keep("total_cents") {
        order.total_cents = 0;
    }
    if !keep("currency") {
        order.currency.clear();
    }
    if !keep("created_at") {
        order.created_at = None;
    }
    if !keep("items") {
        order.items.clear();
    }
    order
}

/// Marks a watch's call record when the stream goes, however it goes: `finished` after the
/// final status, `cancelled` when dropped earlier because the client went away.
struct StreamEnd {
    control: Arc<ServiceControl>,
    seq: u64,
    finished: std::sync::atomic::AtomicBool,
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        let finished = self.finished.load(std::sync::atomic::Ordering::Relaxed);
        self.control.streaming(self.seq, if finished { "finished" } else { "cancelled" });
    }
}

fn now() -> Timestamp {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

fn encode_token(older: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{older}"))
}

fn decode_token(token: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix(TOKEN_PREFIX)?.parse().ok()
}

/// The status an order moves to next; `None` once it is final (or unknown, so a watch never loops).
fn next_status(status: i32) -> Option<i32> {
    let next = match pb::OrderStatus::try_from(status).ok()? {
        pb::OrderStatus::Unspecified | pb::OrderStatus::Pending => pb::OrderStatus::Paid,
        pb::OrderStatus::Paid => pb::OrderStatus::Shipped,
        pb::OrderStatus::Shipped => pb::OrderStatus::Delivered,
        pb::OrderStatus::Delivered | pb::OrderStatus::Cancelled => return None,
    };
    Some(next as i32)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::OrderStatusChange, Status>> + Send>>;

#[tonic::async_trait]
impl pb::orders_service_server::OrdersService for OrdersService {
    async fn get_order(&self, request: Request<pb::GetOrderRequest>) -> Result<Response<pb::Order>, Status> {
        let fields = mask_paths(request.get_ref().read_mask.as_ref());
        let seq =
            self.control.admit("/shop.orders.v1.OrdersService/GetOrder", request.metadata(), fields.clone()).await?;
        let request = request.into_inner();
        let order = lock(&self.store).find(&request.id, &request.user_id);
        let order = order.ok_or_else(|| Status::not_found(format!("no order '{}' for this owner", request.id)))?;
        let order = apply_mask(order, &fields);
        self.control.answered(seq, order.encoded_len());
        Ok(Response::new(order))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let fields = mask_paths(request.get_ref().read_mask.as_ref());
        let seq =
            self.control.admit("/shop.orders.v1.OrdersService/ListOrders", request.metadata(), fields.clone()).await?;
        let request = request.into_inner();
        if request.user_id.is_empty() {
            return Err(Status::invalid_argument("user_id is required"));
        }
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size @ 1..=MAX_PAGE_SIZE => size as usize,
            size => {
                return Err(Status::invalid_argument(format!(
                    "page_size must be between 1 and {MAX_PAGE_SIZE} (or 0 for the default), got {size}"
                )));
            }
        };
        // A token counts the older orders still to come, not the ones shown: orders placed
        // while a client pages arrive at the head, so counting from the tail keeps the pages
        // stable (nothing shown twice, nothing skipped).
        let still_to_come = if request.page_token.is_empty() {
            None
        } else {
            Some(
                decode_token(&request.page_token)
                    .ok_or_else(|| Status::invalid_argument("page_token is not one this service issued"))?,
            )
        };

        let store = lock(&self.store);
        // Newest first: placed orders (newest last in the store), then seeded ones (highest k newest).
        let created: Vec<&pb::Order> =
            store.created.iter().rev().filter(|order| order.user_id == request.user_id).collect();
        let seeded_user = seeded_user(&request.user_id);
        let seeded_count = seeded_user.map_or(0, data::order_count) as usize;
        let total = created.len() + seeded_count;
        let offset = still_to_come.map_or(0, |left| total.saturating_sub(left));
        let end = offset.saturating_add(page_size).min(total);
        let orders = (offset.min(end)..end)
            .filter_map(|i| match created.get(i) {
                Some(order) => Some((*order).clone()),
                None => {
                    let k = (seeded_count - (i - created.len())) as u64;
                    seeded_user.map(|user| store.seeded(user, k))
                }
            })
            .map(|order| apply_mask(order, &fields))
            .collect();
        let next_page_token = if end < total { encode_token(total - end) } else { String::new() };
        let response = pb::ListOrdersResponse { orders, next_page_token };
        self.control.answered(seq, response.encoded_len());
        Ok(Response::new(response))
    }

    async fn create_order(&self, request: Request<pb::CreateOrderRequest>) -> Result<Response<pb::Order>, Status> {
        self.control.admit("/shop.orders.v1.OrdersService/CreateOrder", request.metadata(), Vec::new()).await?;
        let request = request.into_inner();
        if request.user_id.is_empty() {
            return Err(Status::invalid_argument("user_id is required"));
        }
        if request.lines.is_empty() {
            return Err(Status::invalid_argument("an order needs at least one line"));
        }
        if request.lines.len() > MAX_LINES {
            return Err(Status::invalid_argument(format!("at most {MAX_LINES} lines per order")));
        }
        let mut items = Vec::with_capacity(request.lines.len());
        for (i, line) in request.lines.iter().enumerate() {
            let Some(product) = data::product_index(&line.product_id) else {
                return Err(Status::invalid_argument(format!("line {}: unknown product '{}'", i + 1, line.product_id)));
            };
            if !(1..=MAX_QUANTITY).contains(&line.quantity) {
                return Err(Status::invalid_argument(format!(
                    "line {}: quantity must be between 1 and {MAX_QUANTITY}, got {}",
                    i + 1,
                    line.quantity
                )));
            }
            items.push(pb::OrderItem {
                product_id: line.product_id.clone(),
                quantity: line.quantity,
                unit_price_cents: data::product_price_cents(product),
            });
        }

        let mut store = lock(&self.store);
        let key =
            (!request.idempotency_key.is_empty()).then(|| (request.user_id.clone(), request.idempotency_key.clone()));
        if let Some(key) = &key
            && let Some(existing) = store.idempotency.get(key).and_then(|id| store.by_id.get(id))
            && let Some(order) = store.created.get(*existing)
        {
            return Ok(Response::new(order.clone()));
        }
        let id = format!("o-live-{}", store.created.len() + 1);
        let order = pb::Order {
            id: id.clone(),
            user_id: request.user_id,
            status: pb::OrderStatus::Pending as i32,
            total_cents: items.iter().map(|i| i.unit_price_cents * i64::from(i.quantity)).sum(),
            currency: "USD".to_owned(),
            created_at: Some(now()),
            items,
        };
        let index = store.created.len();
        store.created.push(order.clone());
        store.by_id.insert(id.clone(), index);
        if let Some(key) = key {
            store.idempotency.insert(key, id);
        }
        Ok(Response::new(order))
    }

    async fn cancel_order(&self, request: Request<pb::CancelOrderRequest>) -> Result<Response<pb::Order>, Status> {
        self.control.admit("/shop.orders.v1.OrdersService/CancelOrder", request.metadata(), Vec::new()).await?;
        let request = request.into_inner();
        let mut store = lock(&self.store);
        let Some(order) = store.find(&request.id, &request.user_id) else {
            return Err(Status::not_found(format!("no order '{}' for this owner", request.id)));
        };
        let cancellable = [pb::OrderStatus::Pending, pb::OrderStatus::Paid, pb::OrderStatus::Cancelled]
            .map(|s| s as i32)
            .contains(&order.status);
        if !cancellable {
            return Err(Status::failed_precondition(format!(
                "order '{}' has shipped and can no longer be cancelled",
                request.id
            )));
        }
        store.set_status(&order.id, pb::OrderStatus::Cancelled as i32);
        Ok(Response::new(pb::Order { status: pb::OrderStatus::Cancelled as i32, ..order }))
    }

    type WatchOrderStream = WatchStream;

    async fn watch_order(
        &self,
        request: Request<pb::WatchOrderRequest>,
    ) -> Result<Response<Self::WatchOrderStream>, Status> {
        let seq =
            self.control.admit("/shop.orders.v1.OrdersService/WatchOrder", request.metadata(), Vec::new()).await?;
        let request = request.into_inner();
        let Some(order) = lock(&self.store).find(&request.id, &request.user_id) else {
            return Err(Status::not_found(format!("no order '{}' for this owner", request.id)));
        };
        self.control.streaming(seq, "open");
        let end = Arc::new(StreamEnd { control: Arc::clone(&self.control), seq, finished: Default::default() });
        let store = Arc::clone(&self.store);
        // State: the status to emit next and whether to wait first. Progress stops when the client
        // goes away, because the stream is only polled while someone listens.
        let start = Some((order.status, false));
        let stream = futures::stream::unfold(start, move |state| {
            let store = Arc::clone(&store);
            let id = order.id.clone();
            // The guard lives as long as the stream does.
            let end = Arc::clone(&end);
            async move {
                let Some((status, wait)) = state else {
                    end.finished.store(true, std::sync::atomic::Ordering::Relaxed);
                    return None;
                };
                if wait {
                    tokio::time::sleep(WATCH_STEP).await;
                    lock(&store).set_status(&id, status);
                }
                let change = pb::OrderStatusChange { order_id: id, status, changed_at: Some(now()) };
                let next = next_status(status).map(|next| (next, true));
                Some((Ok(change), next))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
