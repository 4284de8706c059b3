//! The inventory service (gRPC `shop.inventory.v1.InventoryService`): batch stock lookups.

use std::sync::Arc;

use bff_backends::proto::inventory::v1 as pb;
use tonic::{Request, Response, Status};

use crate::control::ServiceControl;
use crate::data;

/// Most ids one GetStock call may carry (the contract in the proto).
const MAX_IDS: usize = 500;

#[derive(Clone)]
pub(crate) struct InventoryService {
    control: Arc<ServiceControl>,
}

impl InventoryService {
    pub(crate) fn new(control: Arc<ServiceControl>) -> Self {
        Self { control }
    }
}

#[tonic::async_trait]
impl pb::inventory_service_server::InventoryService for InventoryService {
    async fn get_stock(&self, request: Request<pb::GetStockRequest>) -> Result<Response<pb::GetStockResponse>, Status> {
        self.control.admit("/shop.inventory.v1.InventoryService/GetStock", request.metadata(), Vec::new()).await?;
        let request = request.into_inner();
        if request.product_ids.len() > MAX_IDS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_IDS} product ids per call, got {}",
                request.product_ids.len()
            )));
        }
        let levels = request
            .product_ids
            .into_iter()
            .filter_map(|id| {
                let n = data::product_index(&id)?;
                Some(pb::StockLevel {
                    product_id: id,
                    available: (data::hash("stock.available", n) % 500) as i64,
                    reserved: (data::hash("stock.reserved", n) % 20) as i64,
                })
            })
            .collect();
        Ok(Response::new(pb::GetStockResponse { levels }))
    }
}
