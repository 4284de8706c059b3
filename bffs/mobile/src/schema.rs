//! The mobile GraphQL schema. Each field that needs a backend calls it itself, so the fields of
//! one object resolve concurrently and a failing backend nulls only its own fields.

use async_graphql::{Context, EmptyMutation, EmptySubscription, Enum, ID, Object, Schema, SimpleObject};
use bff_backends::{OrdersClient, RecommendationsClient, UsersClient};
use bff_gateway::graphql::{page_size, request_context};
use bff_gateway::{GatewayError, RequestContext};
use bff_upstream::UpstreamError;

use bff_upstream::Upstreams;

pub type MobileSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Deepest query we execute: the mobile screens need four levels; the rest is headroom.
const MAX_DEPTH: usize = 8;
const MAX_COMPLEXITY: usize = 500;
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

pub fn build(backends: Backends) -> MobileSchema {
    builder().data(backends).finish()
}

/// The schema as SDL, as checked into `schemas/mobile.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

fn builder() -> async_graphql::SchemaBuilder<Query, EmptyMutation, EmptySubscription> {
    Schema::build(Query, EmptyMutation, EmptySubscription).limit_depth(MAX_DEPTH).limit_complexity(MAX_COMPLEXITY)
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
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let (cx, backends, user_id) = request(ctx)?;
        let user = backends.users.get(cx.upstream(), user_id).await?;
        Ok(Some(User { id: user.id.into(), name: user.name, avatar_url: user.avatar_url }))
    }

    /// The user's newest orders.
    async fn recent_orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 3)] first: i32,
    ) -> async_graphql::Result<Option<Vec<OrderSummary>>> {
        let first = page_size("first", first, MAX_RECENT_ORDERS)?;
        let (cx, backends, user_id) = request(ctx)?;
        let page = backends.orders.list(cx.upstream(), user_id, first, None, &[]).await?;
        Ok(Some(
            page.orders
                .into_iter()
                .map(|o| OrderSummary { id: o.id.into(), status: o.status.into(), total_cents: o.total_cents })
                .collect(),
        ))
    }

    /// Products picked for the user.
    async fn recommendations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 5)] first: i32,
    ) -> async_graphql::Result<Option<Vec<RecommendedProduct>>> {
        let first = page_size("first", first, MAX_RECOMMENDATIONS)?;
        let (cx, backends, user_id) = request(ctx)?;
        let picks = backends.recommendations.for_user(cx.upstream(), user_id, first as usize).await?;
        Ok(Some(
            picks
                .into_iter()
                .map(|r| RecommendedProduct { id: r.product_id.into(), name: r.name, price_cents: r.price_cents })
                .collect(),
        ))
    }
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
