use bff_upstream::{Call, CallContext, Probe, Upstream, UpstreamConfig, UpstreamError};
use serde::Deserialize;

/// A product as BFFs may show it. The catalog sends about forty fields, including internal ones
/// (cost, supplier); a BFF that asks for `fields` gets only those, so everything but the id is
/// optional here.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: String,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub price_cents: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub rating: Option<f64>,
    #[serde(default)]
    pub review_count: Option<i64>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ProductList {
    items: Vec<Product>,
}

/// The catalog service: `GET /products/{id}` and the batch `GET /products?ids=..`; both take
/// `fields=a,b` to ask for only some fields.
#[derive(Debug, Clone)]
pub struct CatalogClient(Upstream);

/// Most ids one batch call carries.
pub const MAX_BATCH: usize = 100;

impl CatalogClient {
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        Upstream::rest("catalog", config).map(Self)
    }

    /// One product; `fields` empty means all.
    pub async fn get(&self, cx: &CallContext, id: &str, fields: &[&str]) -> Result<Product, UpstreamError> {
        self.0.json(cx, Call::get("GET /products/{id}", ["products", id]).fields(fields)).await
    }

    /// Many products in as few calls as the batch limit allows; unknown ids are left out.
    pub async fn get_many(
        &self,
        cx: &CallContext,
        ids: &[&str],
        fields: &[&str],
    ) -> Result<Vec<Product>, UpstreamError> {
        let calls = ids.chunks(MAX_BATCH).map(|chunk| {
            let call = Call::get("GET /products?ids", ["products"]).query("ids", chunk.join(",")).fields(fields);
            async move { self.0.json::<ProductList>(cx, call).await.map(|list| list.items) }
        });
        let pages = futures::future::try_join_all(calls).await?;
        Ok(pages.into_iter().flatten().collect())
    }
}

impl Probe for CatalogClient {
    async fn probe(&self) -> Result<(), String> {
        crate::rest_ready(&self.0).await
    }
}
