//! The web GraphQL schema: the signed-in user's profile and paged order history, with each
//! item's product and stock.
//!
//! Profile and orders resolve concurrently. Products and stock go through request-scoped data
//! loaders, so a page of orders costs one catalog call and one inventory call however many items
//! it has, and neither is called unless the query selects it. The profile and each orders page
//! are memoised for the request ([`Memo`]), so aliases cannot multiply backend calls.
//!
//! Each backend-backed field names the scope it needs where it is defined (`RequireScope`), and
//! its cost weight in [`cost_model`].

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Enum, ID, InputObject, Object, Schema, SimpleObject, Subscription};
use bff_backends::{
    CatalogClient, InventoryClient, NewOrderLine, OrdersClient, Product as CatalogProduct, ProfileChange, StockLevel,
    User, UsersClient,
};
use bff_gateway::graphql::scalars::MinorUnits;
use bff_gateway::graphql::{
    BackendFields, CostModel, Endpoint, FieldMap, GraphQlConfig, RequestMemo, RequireScope, id_argument,
    idempotency_key, page_size, request_context,
};
use bff_gateway::{BuildError, GatewayError};
use bff_upstream::{CallContext, UpstreamError};
use futures::future::{BoxFuture, FutureExt as _, Shared};
use futures::{Stream, StreamExt};

pub type WebSchema = Schema<Query, Mutation, Subscription>;
pub type WebEndpoint = Endpoint<Query, Mutation, Subscription>;

/// Which users fields each `Me` field reads (the id comes from the token).
pub const ME_FIELDS: FieldMap =
    FieldMap::new("Me", &[("id", &[]), ("name", &["name"]), ("email", &["email"]), ("orders", &[])]);
/// Which order fields (the read mask) each `Order` field reads.
pub const ORDER_FIELDS: FieldMap = FieldMap::new(
    "Order",
    &[
        ("id", &[]),
        ("status", &["status"]),
        ("total", &["total_cents"]),
        ("currency", &["currency"]),
        ("createdAt", &["created_at"]),
        ("items", &["items"]),
    ],
);
/// Which catalog fields each `Product` field reads; stock comes from inventory.
pub const PRODUCT_FIELDS: FieldMap = FieldMap::new(
    "Product",
    &[("id", &[]), ("name", &["name"]), ("price", &["price_cents"]), ("currency", &["currency"]), ("stock", &[])],
);
const MAX_ORDER_LINES: usize = 20;

/// What one backend call weighs in the cost model, beside the 1 of any object field.
const BACKEND_CALL_COST: u64 = 5;
/// What a batched lookup weighs per item: one call serves the whole batch.
const BATCHED_LOOKUP_COST: u64 = 1;
/// Most items one order holds, for the cost model (orders are capped well below this).
const MAX_ITEMS_PER_ORDER: u64 = 10;
const MAX_ORDERS_PAGE: u32 = 50;
/// Page tokens are opaque, but never this long; longer ones are refused without a backend call.
const MAX_CURSOR_LEN: usize = 256;

bff_gateway::backends! {
    /// Every backend this BFF calls, by its `[upstreams.NAME]`: the config must name exactly
    /// these, and `/readyz?verbose` probes each. Shared by every request.
    pub struct Backends {
        users: UsersClient,
        orders: OrdersClient,
        catalog: CatalogClient,
        inventory: InventoryClient,
    }
}

/// The schema with its backends, configured and costed as `config` says.
pub fn endpoint(backends: Backends, config: &GraphQlConfig) -> Result<WebEndpoint, BuildError> {
    let sdl = sdl();
    for map in [&ME_FIELDS, &ORDER_FIELDS, &PRODUCT_FIELDS] {
        map.check(&sdl)?;
    }
    let schema = || bff_gateway::graphql::configure(builder(), config).data(backends.clone());
    Ok(Endpoint::new(schema, config, cost_model()?))
}

/// What each field costs: the SDL's shape, plus which fields call a backend and how long the
/// unpaged lists are.
pub fn cost_model() -> Result<CostModel, GatewayError> {
    Ok(CostModel::from_sdl(&sdl())?
        .backend_field("Query.me", BACKEND_CALL_COST)
        .backend_field("Mutation.placeOrder", BACKEND_CALL_COST)
        .backend_field("Mutation.cancelOrder", BACKEND_CALL_COST)
        .backend_field("Mutation.updateProfile", BACKEND_CALL_COST)
        .backend_field("Subscription.orderStatusChanged", BACKEND_CALL_COST)
        .backend_field("Me.orders", BACKEND_CALL_COST)
        .backend_field("OrderItem.product", BATCHED_LOOKUP_COST)
        .backend_field("Product.stock", BATCHED_LOOKUP_COST)
        // Sized by the connection's `first`.
        .list_size("OrderConnection.edges", 1)
        .list_size("Order.items", MAX_ITEMS_PER_ORDER))
}

/// The schema as SDL, as checked into `schemas/web.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

fn builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query, Mutation, Subscription)
}

/// What this request has loaded: the profile, and each orders page by its arguments and fields.
#[derive(Default)]
pub struct Memo {
    profile: RequestMemo<BackendFields, Result<User, UpstreamError>>,
    orders: RequestMemo<(u32, Option<String>, BackendFields), Result<bff_backends::OrdersPage, UpstreamError>>,
}

fn memo<'a>(ctx: &Context<'a>) -> Result<&'a Memo, GatewayError> {
    ctx.data::<Memo>().map_err(|e| GatewayError::Internal(e.message))
}

/// The per-request data loaders; they carry the request's context to the backends they batch for.
pub struct Loaders {
    products: DataLoader<ProductLoader>,
    stock: DataLoader<StockLoader>,
}

pub fn loaders(backends: &Backends, cx: &CallContext) -> Loaders {
    Loaders {
        products: DataLoader::new(ProductLoader { catalog: backends.catalog.clone(), cx: cx.clone() }, tokio::spawn),
        stock: DataLoader::new(StockLoader { inventory: backends.inventory.clone(), cx: cx.clone() }, tokio::spawn),
    }
}

pub struct ProductLoader {
    catalog: CatalogClient,
    cx: CallContext,
}

/// Keyed by product and the catalog fields its selection needs: one batch asks once, for every
/// id and the union of the fields.
impl Loader<(String, BackendFields)> for ProductLoader {
    type Value = CatalogProduct;
    type Error = UpstreamError;

    async fn load(
        &self,
        keys: &[(String, BackendFields)],
    ) -> Result<HashMap<(String, BackendFields), CatalogProduct>, UpstreamError> {
        let mut ids: Vec<&str> = keys.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let fields = BackendFields::union(keys.iter().map(|(_, fields)| fields));
        let products: HashMap<String, CatalogProduct> = self
            .catalog
            .get_many(&self.cx, &ids, fields.as_slice())
            .await?
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect();
        Ok(keys.iter().filter_map(|key| Some((key.clone(), products.get(&key.0)?.clone()))).collect())
    }
}

pub struct StockLoader {
    inventory: InventoryClient,
    cx: CallContext,
}

impl Loader<String> for StockLoader {
    type Value = StockLevel;
    type Error = UpstreamError;

    async fn load(&self, ids: &[String]) -> Result<HashMap<String, StockLevel>, UpstreamError> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let levels = self.inventory.stock(&self.cx, &ids).await?;
        Ok(levels.into_iter().map(|s| (s.product_id.clone(), s)).collect())
    }
}

fn backends<'a>(ctx: &Context<'a>) -> Result<&'a Backends, GatewayError> {
    ctx.data::<Backends>().map_err(|e| GatewayError::Internal(e.message))
}

fn loaders_of<'a>(ctx: &Context<'a>) -> Result<&'a Loaders, GatewayError> {
    ctx.data::<Loaders>().map_err(|e| GatewayError::Internal(e.message))
}

pub struct Query;

#[Object]
impl Query {
    /// The signed-in user.
    #[graphql(guard = "RequireScope(\"profile\")")]
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let user_id = request_context(ctx)?.user_id()?.to_owned();
        Ok(Me { id: user_id, profile_fields: ME_FIELDS.select(ctx, ctx.field()) })
    }
}

/// The signed-in user. `id` comes from the verified token; the profile fields share one call to
/// the users service per request (for the fields `me` selects), and the orders do not wait for it.
pub struct Me {
    id: String,
    profile_fields: BackendFields,
}

impl Me {
    async fn profile(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let load = || backends.users.get(cx.upstream(), &self.id, self.profile_fields.as_slice());
        Ok(memo(ctx)?.profile.get_or_load(self.profile_fields.clone(), load).await?)
    }
}

#[Object]
impl Me {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }

    /// Null (with an error) when the users service fails.
    async fn name(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(Some(self.profile(ctx).await?.name()?.to_owned()))
    }

    /// Null (with an error) when the users service fails.
    async fn email(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(Some(self.profile(ctx).await?.email()?.to_owned()))
    }

    /// The user's orders, newest first. `after` is the `endCursor` of the previous page.
    #[graphql(guard = "RequireScope(\"orders\")")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Option<OrderConnection>> {
        let first = page_size("first", first, MAX_ORDERS_PAGE)?;
        if after
            .as_deref()
            .is_some_and(|c| c.is_empty() || c.len() > MAX_CURSOR_LEN || !c.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(GatewayError::BadRequest("`after` is not a cursor this API issued".into()).into());
        }
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let owner = cx.owner()?;
        let fields = ORDER_FIELDS.select_at(ctx, ctx.field(), &["edges", "node"]);
        let load = || backends.orders.list(cx.upstream(), &owner, first, after.as_deref(), fields.as_slice());
        let page = memo(ctx)?.orders.get_or_load((first, after.clone(), fields.clone()), load).await?;
        let wants_stock =
            ctx.look_ahead().field("edges").field("node").field("items").field("product").field("stock").exists();
        let stock = wants_stock.then(|| page_stock(backends, cx.upstream(), &page.orders));
        Ok(Some(OrderConnection {
            page_info: PageInfo { has_next_page: page.next_page_token.is_some(), end_cursor: page.next_page_token },
            edges: page
                .orders
                .into_iter()
                .map(|record| OrderEdge { node: Order { record, page_stock: stock.clone() } })
                .collect(),
        }))
    }
}

#[derive(SimpleObject)]
pub struct OrderConnection {
    pub edges: Vec<OrderEdge>,
    pub page_info: PageInfo,
}

#[derive(SimpleObject)]
pub struct OrderEdge {
    pub node: Order,
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// Pass as `after` to get the next page; null on the last page.
    pub end_cursor: Option<String>,
}

pub struct Order {
    record: bff_backends::Order,
    /// The stock of every product on the order's page, when the page asked for it.
    page_stock: Option<PageStock>,
}

impl From<bff_backends::Order> for Order {
    fn from(record: bff_backends::Order) -> Self {
        Self { record, page_stock: None }
    }
}

/// The stock of every product on a page of orders: one inventory call, started as soon as the
/// page's orders are known, so it runs beside the catalog batch instead of after it (stock is a
/// field of each product, which would otherwise wait for the products). Shared by every product
/// of the page; the call is abandoned if the request is.
type PageStock = Shared<BoxFuture<'static, Result<Arc<HashMap<String, StockLevel>>, UpstreamError>>>;

/// Aborts a spawned call when nothing waits for it any more.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn page_stock(backends: &Backends, cx: &CallContext, orders: &[bff_backends::Order]) -> PageStock {
    let ids: Vec<String> = orders
        .iter()
        .filter_map(|order| order.items().ok())
        .flatten()
        .map(|item| item.product_id.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let (inventory, cx) = (backends.inventory.clone(), cx.clone());
    let task = tokio::spawn(async move {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let levels = inventory.stock(&cx, &ids).await?;
        Ok(Arc::new(levels.into_iter().map(|level| (level.product_id.clone(), level)).collect()))
    });
    let guard = AbortOnDrop(task.abort_handle());
    async move {
        let _abort_if_dropped = guard;
        task.await.unwrap_or_else(|e| Err(UpstreamError::Failed { service: "inventory", detail: e.to_string() }))
    }
    .boxed()
    .shared()
}

#[Object]
impl Order {
    async fn id(&self) -> ID {
        ID(self.record.id.clone())
    }

    async fn status(&self) -> async_graphql::Result<OrderStatus> {
        Ok(self.record.status()?.into())
    }

    async fn total(&self) -> async_graphql::Result<MinorUnits> {
        Ok(MinorUnits(self.record.total_cents()?))
    }

    /// ISO 4217.
    async fn currency(&self) -> async_graphql::Result<&str> {
        Ok(self.record.currency()?)
    }

    /// RFC 3339, UTC.
    async fn created_at(&self) -> async_graphql::Result<&str> {
        Ok(self.record.created_at()?)
    }

    async fn items(&self) -> async_graphql::Result<Vec<OrderItem>> {
        Ok(self
            .record
            .items()?
            .iter()
            .map(|item| OrderItem {
                product_id: item.product_id.clone(),
                quantity: item.quantity,
                page_stock: self.page_stock.clone(),
            })
            .collect())
    }
}

pub struct OrderItem {
    product_id: String,
    quantity: i32,
    page_stock: Option<PageStock>,
}

#[Object]
impl OrderItem {
    async fn quantity(&self) -> i32 {
        self.quantity
    }

    /// Null when the product no longer exists, or (with an error) when the catalog fails.
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Product>> {
        let fields = PRODUCT_FIELDS.select(ctx, ctx.field());
        let stock = self.page_stock.clone();
        if !fields.needs_call() {
            return Ok(Some(Product { record: CatalogProduct::bare(&self.product_id), page_stock: stock }));
        }
        let product = loaders_of(ctx)?.products.load_one((self.product_id.clone(), fields)).await?;
        Ok(product.map(|record| Product { record, page_stock: stock }))
    }
}

pub struct Product {
    record: CatalogProduct,
    page_stock: Option<PageStock>,
}

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ID(self.record.id.clone())
    }

    async fn name(&self) -> async_graphql::Result<&str> {
        Ok(self.record.name()?)
    }

    async fn price(&self) -> async_graphql::Result<MinorUnits> {
        Ok(MinorUnits(self.record.price_cents()?))
    }

    /// ISO 4217.
    async fn currency(&self) -> async_graphql::Result<&str> {
        Ok(self.record.currency()?)
    }

    /// Null when inventory does not track the product, or (with an error) when it fails.
    async fn stock(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Stock>> {
        let level = match &self.page_stock {
            Some(page) => page.clone().await?.get(&self.record.id).cloned(),
            None => loaders_of(ctx)?.stock.load_one(self.record.id.clone()).await?,
        };
        Ok(level.map(|level| Stock { available: level.available }))
    }
}

#[derive(SimpleObject)]
pub struct Stock {
    pub available: i64,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "bff_backends::OrderStatus")]
pub enum OrderStatus {
    Pending,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    Unknown,
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Places an order for the signed-in user. Send the same `idempotencyKey` when retrying: the
    /// order is placed once however often the request arrives.
    #[graphql(guard = "RequireScope(\"orders\")")]
    async fn place_order(&self, ctx: &Context<'_>, input: PlaceOrderInput) -> async_graphql::Result<Order> {
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        if input.lines.is_empty() || input.lines.len() > MAX_ORDER_LINES {
            return Err(GatewayError::BadRequest(format!("an order has 1 to {MAX_ORDER_LINES} lines")).into());
        }
        let lines = input
            .lines
            .iter()
            .map(|line| {
                Ok(NewOrderLine {
                    product_id: id_argument("productId", &line.product_id)?.to_owned(),
                    quantity: line.quantity,
                })
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        let key = idempotency_key(&input.idempotency_key)?;
        let order = backends.orders.create(cx.upstream(), &cx.owner()?, lines, Some(key.to_owned())).await?;
        Ok(order.into())
    }

    /// Cancels one of the signed-in user's orders, unless it has shipped.
    #[graphql(guard = "RequireScope(\"orders\")")]
    async fn cancel_order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Order> {
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let id = id_argument("id", &id)?;
        Ok(backends.orders.cancel(cx.upstream(), &cx.owner()?, id).await?.into())
    }

    /// Changes the signed-in user's name or avatar; answers with the profile as it now is.
    #[graphql(guard = "RequireScope(\"profile\")")]
    async fn update_profile(&self, ctx: &Context<'_>, input: ProfileInput) -> async_graphql::Result<Me> {
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        if input.name.is_none() && input.avatar_url.is_none() {
            return Err(GatewayError::BadRequest("set `name`, `avatarUrl` or both".into()).into());
        }
        let user_id = cx.user_id()?;
        let change = ProfileChange { name: input.name, avatar_url: input.avatar_url };
        let user = backends.users.update(cx.upstream(), user_id, &change).await?;
        // The answer is whole: the memo serves `me`'s fields from it without another call.
        let fields = ME_FIELDS.select(ctx, ctx.field());
        let _ = memo(ctx)?.profile.get_or_load(fields.clone(), || async { Ok(user) }).await;
        Ok(Me { id: user_id.to_owned(), profile_fields: fields })
    }
}

#[derive(InputObject)]
pub struct PlaceOrderInput {
    pub lines: Vec<OrderLineInput>,
    /// Chosen by the client per order it places (a UUID, say), and sent again on every retry.
    pub idempotency_key: String,
}

#[derive(InputObject)]
pub struct OrderLineInput {
    pub product_id: ID,
    pub quantity: i32,
}

#[derive(InputObject)]
pub struct ProfileInput {
    pub name: Option<String>,
    /// An `https://` URL.
    pub avatar_url: Option<String>,
}

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Each status change of one of the signed-in user's orders, starting with its current
    /// status, until it reaches a final one. Over WebSocket (graphql-transport-ws) only.
    #[graphql(guard = "RequireScope(\"orders\")")]
    async fn order_status_changed(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<OrderStatusEvent>> + use<>> {
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let id = id_argument("orderId", &order_id)?;
        let changes = backends.orders.watch(cx.upstream(), &cx.owner()?, id).await?;
        Ok(changes.map(|change| {
            let change = change.map_err(GatewayError::from)?;
            Ok(OrderStatusEvent {
                order_id: ID(change.order_id),
                status: change.status.into(),
                changed_at: change.changed_at,
            })
        }))
    }
}

#[derive(SimpleObject)]
pub struct OrderStatusEvent {
    pub order_id: ID,
    pub status: OrderStatus,
    /// RFC 3339, UTC.
    pub changed_at: String,
}
