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

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, EmptyMutation, EmptySubscription, Enum, ID, Object, Schema, SimpleObject};
use bff_backends::{
    CatalogClient, InventoryClient, OrdersClient, Product as CatalogProduct, StockLevel, User, UsersClient,
};
use bff_gateway::graphql::{CostModel, Endpoint, GraphQlConfig, RequestMemo, RequireScope, page_size, request_context};
use bff_gateway::{BuildError, GatewayError};
use bff_upstream::{CallContext, UpstreamError};

use bff_upstream::Upstreams;

pub type WebSchema = Schema<Query, EmptyMutation, EmptySubscription>;
pub type WebEndpoint = Endpoint<Query, EmptyMutation, EmptySubscription>;

/// What one backend call weighs in the cost model, beside the 1 of any object field.
const BACKEND_CALL_COST: u64 = 5;
/// What a batched lookup weighs per item: one call serves the whole batch.
const BATCHED_LOOKUP_COST: u64 = 1;
/// Most items one order holds, for the cost model (orders are capped well below this).
const MAX_ITEMS_PER_ORDER: u64 = 10;
const MAX_ORDERS_PAGE: u32 = 50;
/// Page tokens are opaque, but never this long; longer ones are refused without a backend call.
const MAX_CURSOR_LEN: usize = 256;

/// The backend clients, shared by every request.
#[derive(Clone)]
pub struct Backends {
    pub users: UsersClient,
    pub orders: OrdersClient,
    pub catalog: CatalogClient,
    pub inventory: InventoryClient,
}

impl Backends {
    pub fn new(upstreams: &Upstreams) -> Result<Self, UpstreamError> {
        Ok(Self {
            users: UsersClient::new(upstreams.get("users")?)?,
            orders: OrdersClient::new(upstreams.get("orders")?)?,
            catalog: CatalogClient::new(upstreams.get("catalog")?)?,
            inventory: InventoryClient::new(upstreams.get("inventory")?)?,
        })
    }
}

/// The schema with its backends, configured and costed as `config` says.
pub fn endpoint(backends: Backends, config: &GraphQlConfig) -> Result<WebEndpoint, BuildError> {
    let schema = bff_gateway::graphql::configure(builder(), config).data(backends).finish();
    Ok(Endpoint::new(schema, config, cost_model()?))
}

/// What each field costs: the SDL's shape, plus which fields call a backend and how long the
/// unpaged lists are.
pub fn cost_model() -> Result<CostModel, GatewayError> {
    Ok(CostModel::from_sdl(&sdl())?
        .backend_field("Query.me", BACKEND_CALL_COST)
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

fn builder() -> async_graphql::SchemaBuilder<Query, EmptyMutation, EmptySubscription> {
    Schema::build(Query, EmptyMutation, EmptySubscription)
}

/// What this request has loaded: the profile, and each orders page by its arguments.
#[derive(Default)]
pub struct Memo {
    profile: RequestMemo<(), Result<User, UpstreamError>>,
    orders: RequestMemo<(u32, Option<String>), Result<bff_backends::OrdersPage, UpstreamError>>,
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

impl Loader<String> for ProductLoader {
    type Value = CatalogProduct;
    type Error = UpstreamError;

    async fn load(&self, ids: &[String]) -> Result<HashMap<String, CatalogProduct>, UpstreamError> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let products = self.catalog.get_many(&self.cx, &ids, &[]).await?;
        Ok(products.into_iter().map(|p| (p.id.clone(), p)).collect())
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
        Ok(Me { id: user_id })
    }
}

/// The signed-in user. `id` comes from the verified token; the profile fields share one call to
/// the users service per request, and the orders do not wait for it.
pub struct Me {
    id: String,
}

impl Me {
    async fn profile(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let load = || backends.users.get(cx.upstream(), &self.id);
        Ok(memo(ctx)?.profile.get_or_load((), load).await?)
    }
}

#[Object]
impl Me {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }

    /// Null (with an error) when the users service fails.
    async fn name(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(Some(self.profile(ctx).await?.name))
    }

    /// Null (with an error) when the users service fails.
    async fn email(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(Some(self.profile(ctx).await?.email))
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
        let load = || backends.orders.list(cx.upstream(), &owner, first, after.as_deref(), &[]);
        let page = memo(ctx)?.orders.get_or_load((first, after.clone()), load).await?;
        Ok(Some(OrderConnection {
            page_info: PageInfo { has_next_page: page.next_page_token.is_some(), end_cursor: page.next_page_token },
            edges: page.orders.into_iter().map(|order| OrderEdge { node: Order(order) }).collect(),
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

pub struct Order(bff_backends::Order);

#[Object]
impl Order {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn status(&self) -> OrderStatus {
        self.0.status.into()
    }

    async fn total_cents(&self) -> i64 {
        self.0.total_cents
    }

    /// RFC 3339, UTC.
    async fn created_at(&self) -> &str {
        &self.0.created_at
    }

    async fn items(&self) -> Vec<OrderItem> {
        self.0
            .items
            .iter()
            .map(|item| OrderItem { product_id: item.product_id.clone(), quantity: item.quantity })
            .collect()
    }
}

pub struct OrderItem {
    product_id: String,
    quantity: i32,
}

#[Object]
impl OrderItem {
    async fn quantity(&self) -> i32 {
        self.quantity
    }

    /// Null when the product no longer exists, or (with an error) when the catalog fails.
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Product>> {
        let product = loaders_of(ctx)?.products.load_one(self.product_id.clone()).await?;
        Ok(product.map(Product))
    }
}

pub struct Product(CatalogProduct);

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn name(&self) -> &str {
        self.0.name.as_deref().unwrap_or_default()
    }

    async fn price_cents(&self) -> i64 {
        self.0.price_cents.unwrap_or_default()
    }

    /// Null when inventory does not track the product, or (with an error) when it fails.
    async fn stock(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Stock>> {
        let level = loaders_of(ctx)?.stock.load_one(self.0.id.clone()).await?;
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
