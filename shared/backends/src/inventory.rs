use bff_upstream::{Call, CallContext, Probe, Upstream, UpstreamConfig, UpstreamError};

use crate::proto::inventory::v1 as pb;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    pub product_id: String,
    pub available: i64,
    pub reserved: i64,
}

/// The inventory service (gRPC): batch stock lookups.
#[derive(Debug, Clone)]
pub struct InventoryClient(Upstream);

/// Most ids one `GetStock` call carries.
pub const MAX_BATCH: usize = 500;

impl InventoryClient {
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        Upstream::grpc("inventory", config).map(Self)
    }

    /// Stock for each known id; unknown ids are left out.
    pub async fn stock(&self, cx: &CallContext, product_ids: &[&str]) -> Result<Vec<StockLevel>, UpstreamError> {
        let calls = product_ids.chunks(MAX_BATCH).map(|chunk| {
            let request = pb::GetStockRequest { product_ids: chunk.iter().map(|id| (*id).to_owned()).collect() };
            let call = Call::grpc("GetStock", "/shop.inventory.v1.InventoryService/GetStock", &request).read_only();
            self.0.unary::<pb::GetStockResponse>(cx, call)
        });
        let pages = futures::future::try_join_all(calls).await?;
        Ok(pages
            .into_iter()
            .flat_map(|page| page.levels)
            .map(|level| StockLevel {
                product_id: level.product_id,
                available: level.available,
                reserved: level.reserved,
            })
            .collect())
    }
}

impl Probe for InventoryClient {
    async fn probe(&self) -> Result<(), String> {
        crate::grpc_ready(&self.0, "shop.inventory.v1.InventoryService").await
    }
}
