//! Typed clients for the domain services, built on `bff-upstream`.
//!
//! REST services: [`UsersClient`], [`CatalogClient`], [`RecommendationsClient`]. gRPC services:
//! [`OrdersClient`], [`InventoryClient`], generated from `proto/` at build time (see [`proto`]).
//!
//! The models here are the BFFs' view of each backend: they hold only the fields a BFF may use.
//! Anything else a backend sends (internal risk scores, costs) is dropped when the JSON is decoded,
//! so it cannot reach a client by accident.

mod catalog;
mod inventory;
mod member;
mod orders;
mod recommendations;
mod users;

pub use catalog::{CatalogClient, Product};
pub use inventory::{InventoryClient, StockLevel};
pub use member::Member;
pub use orders::{NewOrderLine, Order, OrderItem, OrderStatus, OrdersClient, OrdersPage, StatusChange};
pub use recommendations::{Recommendation, RecommendationsClient};
pub use users::{ProfileChange, User, UsersClient};

/// Code generated from `proto/` by `build.rs`: message types, clients and servers.
pub mod proto {
    pub mod orders {
        pub mod v1 {
            tonic::include_proto!("shop.orders.v1");
        }
    }
    pub mod inventory {
        pub mod v1 {
            tonic::include_proto!("shop.inventory.v1");
        }
    }
}

/// Readiness of a gRPC backend through the standard `grpc.health.v1` service.
async fn grpc_ready(upstream: &bff_upstream::Upstream, service: &str) -> Result<(), String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let (channel, timeout) = upstream.grpc_channel().map_err(|e| e.kind().to_owned())?;
    let mut request = tonic::Request::new(HealthCheckRequest { service: service.to_owned() });
    request.set_timeout(timeout);
    let mut client = HealthClient::new(channel);
    let check = client.check(request);
    let response = tokio::time::timeout(timeout, check)
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|s| format!("gRPC {:?}", s.code()))?;
    match response.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// Readiness of a REST backend: `GET /healthz`. The reason is a bare failure kind (readiness is
/// public); the detail is logged.
async fn rest_ready(upstream: &bff_upstream::Upstream) -> Result<(), String> {
    upstream.probe_rest(&["healthz"]).await.map_err(|e| {
        tracing::warn!(error = %e, "readiness probe failed");
        e.kind().to_owned()
    })
}
