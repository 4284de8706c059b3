//! Real demo backends for the BFF platform, served on loopback.
//!
//! The BFFs talk to six domain services (identity, users, catalog, orders, inventory,
//! recommendations). For the devstack and the end-to-end tests these are real servers, REST over
//! axum and gRPC over tonic, so the BFFs run their production code paths: HTTP/2 and gRPC framing,
//! JWKS fetching and timeouts meet actual sockets (and a backend that ignores its caller's deadline).
//!
//! The data is seeded deterministically (see `data`), and every service can be made slow, flaky or
//! unresponsive and records what it was asked, through a small control API (see `control`), so the
//! tests can assert on behaviour the BFFs' clients never see directly.

mod body_faults;
mod catalog;
mod control;
mod data;
mod identity;
mod inventory;
mod orders;
mod recommendations;
mod serve;
mod users;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bff_backends::proto::inventory::v1::inventory_service_server::InventoryServiceServer;
use bff_backends::proto::orders::v1::orders_service_server::OrdersServiceServer;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use body_faults::OVERSIZED_BYTES;
pub use control::{Faults, RecordedCall, ServiceControl, parse_grpc_timeout};

use control::Controls;
use identity::Signer;
pub use identity::{KID, NEXT_KID};

/// One port per service; 0 lets the OS pick (see [`Demo::addrs`](Demo) for what it picked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoPorts {
    pub identity: u16,
    pub users: u16,
    pub catalog: u16,
    pub orders: u16,
    pub inventory: u16,
    pub recommendations: u16,
    /// The control API (faults and recorded calls).
    pub control: u16,
    /// A second catalog instance (`catalog-2` in the control API), when wanted.
    pub catalog_second: Option<u16>,
}

impl DemoPorts {
    /// Fixed ports, so the devstack's BFF configuration can name them.
    pub const DEVSTACK: DemoPorts = DemoPorts {
        identity: 5000,
        users: 5001,
        catalog: 5002,
        orders: 5003,
        inventory: 5004,
        recommendations: 5005,
        control: 5999,
        catalog_second: Some(5012),
    };
    /// OS-assigned ports, so tests can run in parallel.
    pub const EPHEMERAL: DemoPorts = DemoPorts {
        identity: 0,
        users: 0,
        catalog: 0,
        orders: 0,
        inventory: 0,
        recommendations: 0,
        control: 0,
        catalog_second: None,
    };
}

/// A client allowed the OAuth2 client-credentials grant (the partner BFF's callers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerClient {
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub host: IpAddr,
    pub ports: DemoPorts,
    /// Serve `POST /dev/token` on the identity service, which mints any token asked for.
    pub dev_tokens: bool,
    pub partner_clients: Vec<PartnerClient>,
}

impl DemoConfig {
    /// The devstack: fixed ports, dev tokens on, one partner client.
    pub fn devstack() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: DemoPorts::DEVSTACK,
            dev_tokens: true,
            partner_clients: vec![PartnerClient {
                client_id: "demo-partner".to_owned(),
                client_secret: "demo-partner-secret".to_owned(),
                scopes: ["catalog:read", "orders:read", "orders:write"].map(str::to_owned).to_vec(),
            }],
        }
    }

    /// Like [`DemoConfig::devstack`] but on OS-assigned ports.
    pub fn ephemeral() -> Self {
        Self { ports: DemoPorts::EPHEMERAL, ..Self::devstack() }
    }
}

/// Where each service actually listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoAddrs {
    pub identity: SocketAddr,
    pub users: SocketAddr,
    pub catalog: SocketAddr,
    pub orders: SocketAddr,
    pub inventory: SocketAddr,
    pub recommendations: SocketAddr,
    pub control: SocketAddr,
    pub catalog_second: Option<SocketAddr>,
}

/// Which version of a service an instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Stable,
    /// A new version being rolled out: its answers say so (a catalog product's name ends in
    /// ` (canary)`), so a test or a person can tell which version answered.
    Canary,
    /// A shadow receiving mirrored traffic.
    Shadow,
}

impl Version {
    fn suffix(self) -> &'static str {
        match self {
            Self::Stable => "",
            Self::Canary => "canary",
            Self::Shadow => "shadow",
        }
    }
}

/// One more instance of a service, started by [`Demo::start_instance`].
#[derive(Clone)]
pub struct DemoInstance {
    pub addr: SocketAddr,
    /// Its own faults and recordings (also in the control API under its name).
    pub control: Arc<ServiceControl>,
}

/// The running demo backends. Dropping it stops them.
pub struct Demo {
    pub addrs: DemoAddrs,
    host: IpAddr,
    controls: Arc<Controls>,
    signer: Arc<Signer>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo").field("addrs", &self.addrs).finish_non_exhaustive()
    }
}

/// `http://ip:port` for a listening address.
pub fn http_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A JSON error body in the shape the REST services use everywhere: `{"message": ...}`.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// What every REST service shares: `/healthz`, a JSON 404, and recording plus faults on every
/// other route.
fn rest_service(router: Router, control: &Arc<ServiceControl>) -> Router {
    router
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "not found") })
        .layer(axum::middleware::from_fn_with_state(Arc::clone(control), control::rest_middleware))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(control), body_faults::middleware))
}

/// The router of domain service `service` (not identity) at `version`, recording to `control`.
async fn service_router(service: &str, control: &Arc<ServiceControl>, version: Version) -> Option<Router> {
    let body_faults = axum::middleware::from_fn_with_state(Arc::clone(control), body_faults::middleware);
    Some(match service {
        "users" => rest_service(users::router(), control),
        "catalog" => rest_service(catalog::router(version), control),
        "recommendations" => rest_service(recommendations::router(), control),
        "orders" => {
            let (health, health_service) = tonic_health::server::health_reporter();
            health.set_serving::<OrdersServiceServer<orders::OrdersService>>().await;
            tonic::service::Routes::new(health_service)
                .add_service(OrdersServiceServer::new(orders::OrdersService::new(Arc::clone(control))))
                .into_axum_router()
                .layer(body_faults)
        }
        "inventory" => {
            let (health, health_service) = tonic_health::server::health_reporter();
            health.set_serving::<InventoryServiceServer<inventory::InventoryService>>().await;
            tonic::service::Routes::new(health_service)
                .add_service(InventoryServiceServer::new(inventory::InventoryService::new(Arc::clone(control))))
                .into_axum_router()
                .layer(body_faults)
        }
        _ => return None,
    })
}

impl Demo {
    /// Binds every listener first (so ports are known and errors surface), then spawns the servers
    /// on the current tokio runtime.
    pub async fn start(config: DemoConfig) -> std::io::Result<Demo> {
        let host = config.host;
        let ports = config.ports;
        let bind = |port: u16| TcpListener::bind(SocketAddr::new(host, port));
        let identity = bind(ports.identity).await?;
        let users = bind(ports.users).await?;
        let catalog = bind(ports.catalog).await?;
        let orders = bind(ports.orders).await?;
        let inventory = bind(ports.inventory).await?;
        let recommendations = bind(ports.recommendations).await?;
        let control = bind(ports.control).await?;
        let catalog_second = match ports.catalog_second {
            Some(port) => Some(bind(port).await?),
            None => None,
        };
        let addrs = DemoAddrs {
            identity: identity.local_addr()?,
            users: users.local_addr()?,
            catalog: catalog.local_addr()?,
            orders: orders.local_addr()?,
            inventory: inventory.local_addr()?,
            recommendations: recommendations.local_addr()?,
            control: control.local_addr()?,
            catalog_second: catalog_second.as_ref().map(TcpListener::local_addr).transpose()?,
        };

        let signer = Signer::new(http_url(addrs.identity))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("demo signing key: {e}")))?;
        let signer = Arc::new(signer);
        let controls = Arc::new(Controls::new());

        let identity_router = rest_service(
            identity::router(Arc::clone(&signer), config.partner_clients, config.dev_tokens),
            &controls.identity,
        );
        let (stop, rx) = watch::channel(false);
        let mut tasks = vec![
            serve::spawn("identity", identity, identity_router, Some(controls.identity.clone()), rx.clone()),
            serve::spawn("control", control, control::router(Arc::clone(&controls)), None, rx.clone()),
        ];
        let services = [
            ("users", users, &controls.users),
            ("catalog", catalog, &controls.catalog),
            ("recommendations", recommendations, &controls.recommendations),
            ("orders", orders, &controls.orders),
            ("inventory", inventory, &controls.inventory),
        ];
        for (name, listener, control) in services {
            let router = service_router(name, control, Version::Stable).await.unwrap_or_default();
            tasks.push(serve::spawn(name, listener, router, Some(Arc::clone(control)), rx.clone()));
        }
        let demo = Demo { addrs, host, controls, signer, tasks: Mutex::new(tasks), stop };
        if let Some(listener) = catalog_second {
            demo.serve_instance("catalog", Version::Stable, listener).await?;
        }
        tracing::info!(?addrs, "demo backends listening");
        Ok(demo)
    }

    /// Starts one more instance of domain service `service` (`users`, `catalog`,
    /// `recommendations`, `orders`, `inventory`) on an OS-assigned port, with faults and
    /// recordings of its own: named `{service}-2`, `-3`... for stable instances, or
    /// `{service}-canary`, `{service}-shadow` in the control API.
    pub async fn start_instance(&self, service: &str, version: Version) -> std::io::Result<DemoInstance> {
        let listener = TcpListener::bind(SocketAddr::new(self.host, 0)).await?;
        self.serve_instance(service, version, listener).await
    }

    async fn serve_instance(
        &self,
        service: &str,
        version: Version,
        listener: TcpListener,
    ) -> std::io::Result<DemoInstance> {
        let addr = listener.local_addr()?;
        let control = self.controls.add(service, version.suffix());
        let router = service_router(service, &control, version).await.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("the demo has no service `{service}`"))
        })?;
        let task = serve::spawn("instance", listener, router, Some(Arc::clone(&control)), self.stop.subscribe());
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).push(task);
        Ok(DemoInstance { addr, control })
    }

    /// `http://ip:port` for a listening address (the same as [`http_url`]).
    pub fn url(addr: SocketAddr) -> String {
        http_url(addr)
    }

    /// The `iss` of every token: the identity service's base URL.
    pub fn issuer(&self) -> String {
        self.signer.issuer().to_owned()
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.signer.issuer())
    }

    /// The control API's base URL.
    pub fn control_url(&self) -> String {
        http_url(self.addrs.control)
    }

    /// A token signed by the identity service's key, as `POST /dev/token` would mint it. `scope` is
    /// space-separated (empty for none); a negative `ttl_s` gives an already-expired token.
    pub fn mint_token(&self, sub: &str, aud: &str, scope: &str, ttl_s: i64) -> String {
        // `Demo::start` already signed a token with this key, so signing cannot fail here.
        #[allow(clippy::expect_used)]
        self.signer.mint(sub, aud, scope, ttl_s, None).expect("the demo key signed a token at start-up")
    }

    /// Rotates the identity service's keys: publishes exactly `published` in the JWKS and signs
    /// new tokens with `signing`. The demo has two keys, [`KID`] (the start) and [`NEXT_KID`].
    pub fn rotate_keys(&self, published: &[&str], signing: &str) -> Result<(), String> {
        self.signer.rotate(published, signing)
    }

    /// A token with exactly this JOSE header and these claims, signed (RS256) with key `kid`.
    pub fn sign_raw(&self, header: &serde_json::Value, claims: &serde_json::Value, kid: &str) -> String {
        self.signer.sign_raw(header, claims, kid)
    }

    /// The faults and recordings of one service by name, for in-process tests that prefer it to
    /// the control API.
    pub fn service(&self, name: &str) -> Option<Arc<ServiceControl>> {
        self.controls.get(name)
    }

    /// Stops every server: listeners close, idle connections are closed and busy ones finish their
    /// current request, then go away. Idempotent; also done on drop.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
        for task in self.tasks.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            task.abort();
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests;
