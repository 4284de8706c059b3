//! The mobile GraphQL schema: the app's screens, one query each: home, product detail and order
//! detail, and the place-order mutation.
//!
//! Each field that needs a backend calls it itself, so the fields of one object resolve
//! concurrently and a failing backend nulls only its own fields. Each asks its backend only for
//! what the client selected ([`FieldMap`]s below): `home { user { name } }` asks the users
//! service for `name` and calls nothing else. Each backend-backed field names the scope it needs
//! where it is defined (`RequireScope`), and its cost weight in [`cost_model`]. What a field
//! loads is memoised for the request ([`Memo`]): however many aliases ask, each backend is called
//! once per distinct argument and field set.
//!
//! Payloads stay compact for phones: money is `MinorUnits` (a string: totals can exceed 32 bits),
//! and image URLs are sized for the device by an argument.

use async_graphql::{Context, EmptySubscription, Enum, ID, InputObject, Object, Schema, SimpleObject};
use bff_backends::{
    CatalogClient, InventoryClient, NewOrderLine, Order as OrderRecord, OrdersClient, Product as CatalogProduct,
    Recommendation, RecommendationsClient, User as UserRecord, UsersClient,
};
use bff_gateway::graphql::scalars::MinorUnits;
use bff_gateway::graphql::{
    BackendFields, CostModel, Endpoint, FieldMap, GraphQlConfig, RequestMemo, RequireScope, id_argument,
    idempotency_key, page_size, request_context,
};
use bff_gateway::{BuildError, GatewayError};
use bff_upstream::UpstreamError;

pub type MobileSchema = Schema<Query, Mutation, EmptySubscription>;
pub type MobileEndpoint = Endpoint<Query, Mutation, EmptySubscription>;

/// What one backend call weighs in the cost model, beside the 1 of any object field.
const BACKEND_CALL_COST: u64 = 5;
const MAX_RECENT_ORDERS: u32 = 20;
const MAX_RECOMMENDATIONS: u32 = 20;
const MAX_ORDER_LINES: usize = 20;
/// Image widths the image service renders, in device pixels.
const IMAGE_WIDTHS: std::ops::RangeInclusive<i32> = 32..=2048;

/// Which users fields each `User` field reads (the id comes from the token).
pub const USER_FIELDS: FieldMap =
    FieldMap::new("User", &[("id", &[]), ("name", &["name"]), ("avatarUrl", &["avatar_url"])]);
/// Which catalog fields each `Product` field reads; stock and similar products come from
/// other backends.
pub const PRODUCT_FIELDS: FieldMap = FieldMap::new(
    "Product",
    &[
        ("id", &[]),
        ("name", &["name"]),
        ("description", &["description"]),
        ("brand", &["brand"]),
        ("price", &["price_cents"]),
        ("currency", &["currency"]),
        ("imageUrl", &["image_url"]),
        ("rating", &["rating"]),
        ("stock", &[]),
        ("similar", &[]),
    ],
);
/// Which order fields (the read mask) each `Order` field reads.
pub const ORDER_FIELDS: FieldMap = FieldMap::new(
    "Order",
    &[
        ("id", &[]),
        ("status", &["status"]),
        ("total", &["total_cents"]),
        ("currency", &["currency"]),
        ("createdAt", &["created_at"]),
        ("itemCount", &["items"]),
        ("lines", &["items"]),
    ],
);

bff_gateway::backends! {
    /// Every backend this BFF calls, by its `[upstreams.NAME]`: the config must name exactly
    /// these, and `/readyz?verbose` probes each. Shared by every request.
    pub struct Backends {
        users: UsersClient,
        orders: OrdersClient,
        recommendations: RecommendationsClient,
        catalog: CatalogClient,
        inventory: InventoryClient,
    }
}

/// The schema with its backends, configured and costed as `config` says; its field maps checked
/// against it.
pub fn endpoint(backends: Backends, config: &GraphQlConfig) -> Result<MobileEndpoint, BuildError> {
    let sdl = sdl();
    for map in [&USER_FIELDS, &PRODUCT_FIELDS, &ORDER_FIELDS] {
        map.check(&sdl)?;
    }
    let schema = || bff_gateway::graphql::configure(builder(), config).data(backends.clone());
    Ok(Endpoint::new(schema, config, cost_model()?))
}

/// What each field costs: the SDL's shape, plus which fields call a backend.
pub fn cost_model() -> Result<CostModel, GatewayError> {
    Ok(CostModel::from_sdl(&sdl())?
        .backend_field("Home.user", BACKEND_CALL_COST)
        .backend_field("Home.recentOrders", BACKEND_CALL_COST)
        .backend_field("Home.recommendations", BACKEND_CALL_COST)
        .backend_field("Query.product", BACKEND_CALL_COST)
        .backend_field("Product.stock", BACKEND_CALL_COST)
        .backend_field("Product.similar", BACKEND_CALL_COST)
        .backend_field("Query.order", BACKEND_CALL_COST)
        .backend_field("Mutation.placeOrder", BACKEND_CALL_COST))
}

/// The schema as SDL, as checked into `schemas/mobile.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

fn builder() -> async_graphql::SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query, Mutation, EmptySubscription)
}

/// What this request has loaded, by argument and field set: one call per backend datum however
/// often it is selected.
#[derive(Default)]
pub struct Memo {
    user: RequestMemo<BackendFields, Result<UserRecord, UpstreamError>>,
    recent_orders: RequestMemo<(u32, BackendFields), Result<Vec<OrderRecord>, UpstreamError>>,
    recommendations: RequestMemo<u32, Result<Vec<Recommendation>, UpstreamError>>,
    products: RequestMemo<(String, BackendFields), Result<CatalogProduct, UpstreamError>>,
    stock: RequestMemo<String, Result<Option<i64>, UpstreamError>>,
    similar: RequestMemo<(String, u32), Result<Vec<Recommendation>, UpstreamError>>,
    orders: RequestMemo<(String, BackendFields), Result<OrderRecord, UpstreamError>>,
}

pub struct Query;

#[Object]
impl Query {
    /// Everything the home screen shows, in one round trip.
    async fn home(&self) -> Home {
        Home
    }

    /// The product screen: the product, its stock and products like it. Null when there is no
    /// such product.
    #[graphql(guard = "RequireScope(\"profile\")")]
    async fn product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Product>> {
        let id = id_argument("id", &id)?;
        let fields = PRODUCT_FIELDS.select(ctx, ctx.field());
        if !fields.needs_call() {
            return Ok(Some(Product(CatalogProduct::bare(id))));
        }
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let load = || backends.catalog.get(cx.upstream(), id, fields.as_slice());
        match memo(ctx)?.products.get_or_load((id.to_owned(), fields.clone()), load).await {
            Ok(product) => Ok(Some(Product(product))),
            Err(UpstreamError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The order screen. Null when the signed-in user has no such order.
    #[graphql(guard = "RequireScope(\"orders\")")]
    async fn order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Order>> {
        let id = id_argument("id", &id)?;
        let fields = ORDER_FIELDS.select(ctx, ctx.field());
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let owner = cx.owner()?;
        let load = || backends.orders.get(cx.upstream(), &owner, id, fields.as_slice());
        match memo(ctx)?.orders.get_or_load((id.to_owned(), fields.clone()), load).await {
            Ok(order) => Ok(Some(Order(order))),
            Err(UpstreamError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Places an order for the signed-in user. Send the same `idempotencyKey` when retrying: the
    /// order is placed once however often the request arrives.
    #[graphql(guard = "RequireScope(\"orders\")")]
    async fn place_order(&self, ctx: &Context<'_>, input: PlaceOrderInput) -> async_graphql::Result<Order> {
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let lines = order_lines(&input.lines)?;
        let key = idempotency_key(&input.idempotency_key)?;
        let order = backends.orders.create(cx.upstream(), &cx.owner()?, lines, Some(key.to_owned())).await?;
        Ok(Order(order))
    }
}

/// The lines of an order to place, checked before any backend call.
pub fn order_lines(lines: &[OrderLineInput]) -> Result<Vec<NewOrderLine>, GatewayError> {
    if lines.is_empty() || lines.len() > MAX_ORDER_LINES {
        return Err(GatewayError::BadRequest(format!("an order has 1 to {MAX_ORDER_LINES} lines")));
    }
    lines
        .iter()
        .map(|line| {
            Ok(NewOrderLine {
                product_id: id_argument("productId", &line.product_id)?.to_owned(),
                quantity: line.quantity,
            })
        })
        .collect()
}

#[derive(InputObject)]
pub struct PlaceOrderInput {
    pub lines: Vec<OrderLineInput>,
    /// Chosen by the app per order it places (a UUID, say), and sent again on every retry.
    pub idempotency_key: String,
}

#[derive(InputObject)]
pub struct OrderLineInput {
    pub product_id: ID,
    pub quantity: i32,
}

/// The home screen of the signed-in user.
pub struct Home;

#[Object]
impl Home {
    /// The signed-in user; null (with an error) when the users service fails.
    #[graphql(guard = "RequireScope(\"profile\")")]
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let user_id = cx.user_id()?;
        let fields = USER_FIELDS.select(ctx, ctx.field());
        if !fields.needs_call() {
            return Ok(Some(User::Bare(user_id.to_owned())));
        }
        let load = || backends.users.get(cx.upstream(), user_id, fields.as_slice());
        Ok(Some(User::Loaded(memo(ctx)?.user.get_or_load(fields.clone(), load).await?)))
    }

    /// The user's newest orders.
    #[graphql(guard = "RequireScope(\"orders\")")]
    async fn recent_orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 3)] first: i32,
    ) -> async_graphql::Result<Option<Vec<Order>>> {
        let first = page_size("first", first, MAX_RECENT_ORDERS)?;
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let owner = cx.owner()?;
        let fields = ORDER_FIELDS.select(ctx, ctx.field());
        let load = || async {
            backends.orders.list(cx.upstream(), &owner, first, None, fields.as_slice()).await.map(|page| page.orders)
        };
        let orders = memo(ctx)?.recent_orders.get_or_load((first, fields.clone()), load).await?;
        Ok(Some(orders.into_iter().map(Order).collect()))
    }

    /// Products picked for the user.
    #[graphql(guard = "RequireScope(\"profile\")")]
    async fn recommendations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 5)] first: i32,
    ) -> async_graphql::Result<Option<Vec<RecommendedProduct>>> {
        let first = page_size("first", first, MAX_RECOMMENDATIONS)?;
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let user_id = cx.user_id()?;
        let load = || backends.recommendations.for_user(cx.upstream(), user_id, first as usize);
        let picks = memo(ctx)?.recommendations.get_or_load(first, load).await?;
        Ok(Some(picks.into_iter().map(RecommendedProduct).collect()))
    }
}

fn memo<'a>(ctx: &Context<'a>) -> Result<&'a Memo, GatewayError> {
    ctx.data::<Memo>().map_err(|e| GatewayError::Internal(e.message))
}

fn backends<'a>(ctx: &Context<'a>) -> Result<&'a Backends, GatewayError> {
    ctx.data::<Backends>().map_err(|e| GatewayError::Internal(e.message))
}

/// `url` asking the image service for `width` device pixels.
fn sized(url: &str, width: i32) -> Result<String, GatewayError> {
    if !IMAGE_WIDTHS.contains(&width) {
        return Err(GatewayError::BadRequest(format!(
            "`width` must be between {} and {}",
            IMAGE_WIDTHS.start(),
            IMAGE_WIDTHS.end()
        )));
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}w={width}"))
}

/// The signed-in user: the id from the token, the rest from the users service when selected.
pub enum User {
    Bare(String),
    Loaded(UserRecord),
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        match self {
            Self::Bare(id) => ID(id.clone()),
            Self::Loaded(user) => ID(user.id.clone()),
        }
    }

    async fn name(&self) -> async_graphql::Result<&str> {
        Ok(self.loaded()?.name()?)
    }

    /// The avatar, `width` device pixels wide; null when the user has none.
    async fn avatar_url(&self, #[graphql(default = 96)] width: i32) -> async_graphql::Result<Option<String>> {
        Ok(self.loaded()?.avatar_url()?.map(|url| sized(url, width)).transpose()?)
    }
}

impl User {
    fn loaded(&self) -> Result<&UserRecord, GatewayError> {
        match self {
            Self::Loaded(user) => Ok(user),
            Self::Bare(_) => Err(GatewayError::Internal("a user field was resolved without loading the user".into())),
        }
    }
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

/// An order, as the home screen lists it and the order screen shows it.
pub struct Order(OrderRecord);

#[Object]
impl Order {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn status(&self) -> async_graphql::Result<OrderStatus> {
        Ok(self.0.status()?.into())
    }

    async fn total(&self) -> async_graphql::Result<MinorUnits> {
        Ok(MinorUnits(self.0.total_cents()?))
    }

    /// ISO 4217.
    async fn currency(&self) -> async_graphql::Result<&str> {
        Ok(self.0.currency()?)
    }

    /// RFC 3339, UTC.
    async fn created_at(&self) -> async_graphql::Result<&str> {
        Ok(self.0.created_at()?)
    }

    async fn item_count(&self) -> async_graphql::Result<i32> {
        Ok(self.0.items()?.iter().map(|item| item.quantity).sum())
    }

    async fn lines(&self) -> async_graphql::Result<Vec<OrderLine>> {
        Ok(self
            .0
            .items()?
            .iter()
            .map(|item| OrderLine {
                product_id: ID(item.product_id.clone()),
                quantity: item.quantity,
                unit_price: MinorUnits(item.unit_price_cents),
            })
            .collect())
    }
}

#[derive(SimpleObject)]
pub struct OrderLine {
    pub product_id: ID,
    pub quantity: i32,
    pub unit_price: MinorUnits,
}

/// A product on its screen: catalog fields as selected, its stock, and products like it.
pub struct Product(CatalogProduct);

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn name(&self) -> async_graphql::Result<&str> {
        Ok(self.0.name()?)
    }

    async fn description(&self) -> async_graphql::Result<&str> {
        Ok(self.0.description()?)
    }

    async fn brand(&self) -> async_graphql::Result<&str> {
        Ok(self.0.brand()?)
    }

    async fn price(&self) -> async_graphql::Result<MinorUnits> {
        Ok(MinorUnits(self.0.price_cents()?))
    }

    /// ISO 4217.
    async fn currency(&self) -> async_graphql::Result<&str> {
        Ok(self.0.currency()?)
    }

    /// The product photo, `width` device pixels wide.
    async fn image_url(&self, #[graphql(default = 400)] width: i32) -> async_graphql::Result<String> {
        Ok(sized(self.0.image_url()?, width)?)
    }

    /// Average review, 1 to 5.
    async fn rating(&self) -> async_graphql::Result<f64> {
        Ok(self.0.rating()?)
    }

    /// Units available to order now; null when inventory does not track the product.
    async fn stock(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<i64>> {
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let id = self.0.id.clone();
        let load = || async {
            let levels = backends.inventory.stock(cx.upstream(), &[id.as_str()]).await?;
            Ok(levels.into_iter().find(|level| level.product_id == id).map(|level| level.available))
        };
        Ok(memo(ctx)?.stock.get_or_load(self.0.id.clone(), load).await?)
    }

    /// Products like this one.
    async fn similar(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 4)] first: i32,
    ) -> async_graphql::Result<Vec<RecommendedProduct>> {
        let first = page_size("first", first, MAX_RECOMMENDATIONS)?;
        let (cx, backends) = (request_context(ctx)?, backends(ctx)?);
        let load = || backends.recommendations.similar(cx.upstream(), &self.0.id, first as usize);
        let picks = memo(ctx)?.similar.get_or_load((self.0.id.clone(), first), load).await?;
        Ok(picks.into_iter().map(RecommendedProduct).collect())
    }
}

/// A product as a recommendation shows it: enough to draw its tile.
pub struct RecommendedProduct(Recommendation);

#[Object(name = "ProductTile")]
impl RecommendedProduct {
    async fn id(&self) -> ID {
        ID(self.0.product_id.clone())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn price(&self) -> MinorUnits {
        MinorUnits(self.0.price_cents)
    }
}
