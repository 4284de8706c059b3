//! The mobile GraphQL schema. Each field that needs a backend calls it itself, so the fields of
//! one object resolve concurrently and a failing backend nulls only its own fields.
//!
//! Each backend-backed field names the scope it needs where it is defined (`RequireScope`), and
//! its cost weight in [`cost_model`]. What a field loads is memoised for the request ([`Memo`]):
//! however many aliases ask for the home screen, each backend is called once per distinct
//! argument.

use async_graphql::{Context, EmptyMutation, EmptySubscription, Enum, ID, Object, Schema, SimpleObject};
use bff_backends::{OrdersClient, OrdersPage, Recommendation, RecommendationsClient, User as UserRecord, UsersClient};
use bff_gateway::graphql::{CostModel, Endpoint, GraphQlConfig, RequestMemo, RequireScope, page_size, request_context};
use bff_gateway::{BuildError, GatewayError, RequestContext};
use bff_upstream::UpstreamError;

use bff_upstream::Upstreams;

pub type MobileSchema = Schema<Query, EmptyMutation, EmptySubscription>;
pub type MobileEndpoint = Endpoint<Query, EmptyMutation, EmptySubscription>;

/// What one backend call weighs in the cost model, beside the 1 of any object field.
const BACKEND_CALL_COST: u64 = 5;
const MAX_RECENT_ORDERS: u32 = 20;
const MAX_RECOMMENDATIONS: u32 = 20;

/// The backend clients, shared by every request.
#[derive(Clone)]
pub struct Backends {
    pub users: UsersClient,
    pub orders: OrdersClient,
    pub recommendations: RecommendationsClient,
}

impl Backends {
    pub fn new(upstreams: &Upstreams) -> Result<Self, UpstreamError> {
        Ok(Self {
            users: UsersClient::new(upstreams.get("users")?)?,
            orders: OrdersClient::new(upstreams.get("orders")?)?,
            recommendations: RecommendationsClient::new(upstreams.get("recommendations")?)?,
        })
    }
}

/// The schema with its backends, configured and costed as `config` says.
pub fn endpoint(backends: Backends, config: &GraphQlConfig) -> Result<MobileEndpoint, BuildError> {
    let schema = bff_gateway::graphql::configure(builder(), config).data(backends).finish();
    Ok(Endpoint::new(schema, config, cost_model()?))
}

/// What each field costs: the SDL's shape, plus which fields call a backend.
pub fn cost_model() -> Result<CostModel, GatewayError> {
    Ok(CostModel::from_sdl(&sdl())?
        .backend_field("Home.user", BACKEND_CALL_COST)
        .backend_field("Home.recentOrders", BACKEND_CALL_COST)
        .backend_field("Home.recommendations", BACKEND_CALL_COST))
}

/// The schema as SDL, as checked into `schemas/mobile.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

fn builder() -> async_graphql::SchemaBuilder<Query, EmptyMutation, EmptySubscription> {
    Schema::build(Query, EmptyMutation, EmptySubscription)
}

/// What this request has loaded, by argument: one call per backend datum however often it is
/// selected.
#[derive(Default)]
pub struct Memo {
    user: RequestMemo<(), Result<UserRecord, UpstreamError>>,
    recent_orders: RequestMemo<u32, Result<OrdersPage, UpstreamError>>,
    recommendations: RequestMemo<u32, Result<Vec<Recommendation>, UpstreamError>>,
}

pub struct Query;

#[Object]
impl Query {
    /// Everything the home screen shows, in one round trip.
    async fn home(&self) -> Home {
        Home
    }
}

/// The home screen of the signed-in user.
pub struct Home;

#[Object]
impl Home {
    /// The signed-in user; null (with an error) when the users service fails.
    #[graphql(guard = "RequireScope(\"profile\")")]
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let (cx, backends, user_id) = request(ctx)?;
        let user = memo(ctx)?.user.get_or_load((), || backends.users.get(cx.upstream(), user_id)).await?;
        Ok(Some(User { id: user.id.into(), name: user.name, avatar_url: user.avatar_url }))
    }

    /// The user's newest orders.
    #[graphql(guard = "RequireScope(\"orders\")")]
    async fn recent_orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 3)] first: i32,
    ) -> async_graphql::Result<Option<Vec<OrderSummary>>> {
        let first = page_size("first", first, MAX_RECENT_ORDERS)?;
        let (cx, backends, _) = request(ctx)?;
        let owner = cx.owner()?;
        let load = || backends.orders.list(cx.upstream(), &owner, first, None, &[]);
        let page = memo(ctx)?.recent_orders.get_or_load(first, load).await?;
        Ok(Some(
            page.orders
                .into_iter()
                .map(|o| OrderSummary { id: o.id.into(), status: o.status.into(), total_cents: o.total_cents })
                .collect(),
        ))
    }

    /// Products picked for the user.
    #[graphql(guard = "RequireScope(\"profile\")")]
    async fn recommendations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 5)] first: i32,
    ) -> async_graphql::Result<Option<Vec<RecommendedProduct>>> {
        let first = page_size("first", first, MAX_RECOMMENDATIONS)?;
        let (cx, backends, user_id) = request(ctx)?;
        let load = || backends.recommendations.for_user(cx.upstream(), user_id, first as usize);
        let picks = memo(ctx)?.recommendations.get_or_load(first, load).await?;
        Ok(Some(
            picks
                .into_iter()
                .map(|r| RecommendedProduct { id: r.product_id.into(), name: r.name, price_cents: r.price_cents })
                .collect(),
        ))
    }
}

fn memo<'a>(ctx: &Context<'a>) -> Result<&'a Memo, GatewayError> {
    ctx.data::<Memo>().map_err(|e| GatewayError::Internal(e.message))
}

/// The request context, the backends and the signed-in user's id.
fn request<'a>(ctx: &Context<'a>) -> Result<(&'a RequestContext, &'a Backends, &'a str), GatewayError> {
    let cx = request_context(ctx)?;
    let backends = ctx.data::<Backends>().map_err(|e| GatewayError::Internal(e.message))?;
    Ok((cx, backends, cx.user_id()?))
}

#[derive(SimpleObject)]
pub struct User {
    pub id: ID,
    pub name: String,
    pub avatar_url: Option<String>,
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

/// An order as the home screen lists it.
#[derive(SimpleObject)]
#[graphql(name = "Order")]
pub struct OrderSummary {
    pub id: ID,
    pub status: OrderStatus,
    pub total_cents: i64,
}

#[derive(SimpleObject)]
#[graphql(name = "Product")]
pub struct RecommendedProduct {
    pub id: ID,
    pub name: String,
    pub price_cents: i64,
}
