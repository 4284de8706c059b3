use bff_upstream::{Call, CallContext, Probe, Upstream, UpstreamConfig, UpstreamError};
use serde::Deserialize;

use crate::Member;

const SERVICE: &str = "catalog";

/// A product as BFFs may show it. The catalog sends about forty fields, including internal ones
/// (cost, supplier); a BFF asks for the `fields` it needs and gets only those, so every member
/// but the id is a [`Member`]: absent unless asked for.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: String,
    #[serde(default)]
    pub sku: Member<String>,
    #[serde(default)]
    pub name: Member<String>,
    #[serde(default)]
    pub description: Member<String>,
    #[serde(default)]
    pub brand: Member<String>,
    #[serde(default)]
    pub category: Member<String>,
    #[serde(default)]
    pub price_cents: Member<i64>,
    #[serde(default)]
    pub currency: Member<String>,
    #[serde(default)]
    pub image_url: Member<String>,
    #[serde(default)]
    pub rating: Member<f64>,
    #[serde(default)]
    pub review_count: Member<i64>,
    #[serde(default)]
    pub tags: Member<Vec<String>>,
}

impl Product {
    /// Every member this model reads, as the catalog names them.
    pub const FIELDS: &'static [&'static str] = &[
        "sku",
        "name",
        "description",
        "brand",
        "category",
        "price_cents",
        "currency",
        "image_url",
        "rating",
        "review_count",
        "tags",
    ];

    /// A product known only by its id, for selections that need nothing from the catalog.
    pub fn bare(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            sku: Member::Absent,
            name: Member::Absent,
            description: Member::Absent,
            brand: Member::Absent,
            category: Member::Absent,
            price_cents: Member::Absent,
            currency: Member::Absent,
            image_url: Member::Absent,
            rating: Member::Absent,
            review_count: Member::Absent,
            tags: Member::Absent,
        }
    }

    pub fn name(&self) -> Result<&str, UpstreamError> {
        self.name.required(SERVICE, "name").map(String::as_str)
    }

    pub fn price_cents(&self) -> Result<i64, UpstreamError> {
        self.price_cents.required(SERVICE, "price_cents").copied()
    }

    pub fn currency(&self) -> Result<&str, UpstreamError> {
        self.currency.required(SERVICE, "currency").map(String::as_str)
    }

    pub fn image_url(&self) -> Result<&str, UpstreamError> {
        self.image_url.required(SERVICE, "image_url").map(String::as_str)
    }

    pub fn description(&self) -> Result<&str, UpstreamError> {
        self.description.required(SERVICE, "description").map(String::as_str)
    }

    pub fn brand(&self) -> Result<&str, UpstreamError> {
        self.brand.required(SERVICE, "brand").map(String::as_str)
    }

    pub fn rating(&self) -> Result<f64, UpstreamError> {
        self.rating.required(SERVICE, "rating").copied()
    }
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
        Upstream::rest(SERVICE, config).map(Self)
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
