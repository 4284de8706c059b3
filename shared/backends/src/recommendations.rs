use bff_upstream::{Call, CallContext, Probe, Upstream, UpstreamConfig, UpstreamError};
use serde::Deserialize;

/// A product recommended to a user, with enough of the product to show it.
#[derive(Debug, Clone, Deserialize)]
pub struct Recommendation {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
    pub score: f64,
}

#[derive(Deserialize)]
struct RecommendationList {
    items: Vec<Recommendation>,
}

/// The recommendations service: `GET /users/{id}/recommendations?limit=N` (picked for a user)
/// and `GET /products/{id}/similar?limit=N` (like a product).
#[derive(Debug, Clone)]
pub struct RecommendationsClient(Upstream);

impl RecommendationsClient {
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        Upstream::rest("recommendations", config).map(Self)
    }

    pub async fn for_user(
        &self,
        cx: &CallContext,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<Recommendation>, UpstreamError> {
        let call = Call::get("GET /users/{id}/recommendations", ["users", user_id, "recommendations"])
            .query("limit", limit.to_string());
        let list: RecommendationList = self.0.json(cx, call).await?;
        Ok(list.items)
    }

    pub async fn similar(
        &self,
        cx: &CallContext,
        product_id: &str,
        limit: usize,
    ) -> Result<Vec<Recommendation>, UpstreamError> {
        let call = Call::get("GET /products/{id}/similar", ["products", product_id, "similar"])
            .query("limit", limit.to_string());
        let list: RecommendationList = self.0.json(cx, call).await?;
        Ok(list.items)
    }
}

impl Probe for RecommendationsClient {
    async fn probe(&self) -> Result<(), String> {
        crate::rest_ready(&self.0).await
    }
}
