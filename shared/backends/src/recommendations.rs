use bff_upstream::{CallContext, Probe, RestClient, UpstreamConfig, UpstreamError};
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

/// The recommendations service: `GET /users/{id}/recommendations?limit=N`.
#[derive(Debug, Clone)]
pub struct RecommendationsClient(RestClient);

impl RecommendationsClient {
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        RestClient::new("recommendations", config).map(Self)
    }

    pub async fn for_user(
        &self,
        cx: &CallContext,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<Recommendation>, UpstreamError> {
        let limit = limit.to_string();
        let list: RecommendationList =
            self.0.get(cx, &["users", user_id, "recommendations"], &[("limit", &limit)]).await?;
        Ok(list.items)
    }
}

impl Probe for RecommendationsClient {
    async fn probe(&self) -> Result<(), String> {
        crate::rest_ready(&self.0).await
    }
}
