//! The whole platform in one process: the demo backends and all three BFFs, wired together.
//!
//! The `devstack` binary runs this on fixed ports; the end-to-end tests run it on ephemeral ports,
//! or build single BFFs from the `*_config` functions with settings of their own. This is the
//! only crate that sees every other one.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use bff_demo::{Demo, DemoConfig};
use bff_gateway::auth::ApiKeys;
use bff_gateway::config::{ApiKeyEntry, JwtConfig, ServerConfig, UpstreamConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The devstack's upstream timeout: long enough for a healthy demo, short enough to show faults.
pub const DEVSTACK_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The partner API key the devstack accepts, printed in its banner.
pub const DEMO_PARTNER_API_KEY: &str = "demo-partner-key";
/// The partner client that key (and the demo OAuth2 client) belongs to.
pub const DEMO_PARTNER_CLIENT_ID: &str = "demo-partner";
pub const PARTNER_SCOPES: [&str; 3] = ["catalog:read", "orders:read", "orders:write"];

/// Where everything listens and how it is set up.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub demo: DemoConfig,
    pub host: IpAddr,
    /// 0 picks a free port.
    pub mobile_port: u16,
    pub web_port: u16,
    pub partner_port: u16,
    pub upstream_timeout: Duration,
    pub partner_api_key: String,
}

impl StackConfig {
    /// The devstack's fixed ports: BFFs on 4001-4003, demo backends on 5000-5005 and 5999.
    pub fn devstack() -> Self {
        Self {
            demo: DemoConfig::devstack(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            mobile_port: 4001,
            web_port: 4002,
            partner_port: 4003,
            upstream_timeout: DEVSTACK_UPSTREAM_TIMEOUT,
            partner_api_key: DEMO_PARTNER_API_KEY.to_owned(),
        }
    }

    /// Every port picked by the OS, for tests that run side by side.
    pub fn ephemeral() -> Self {
        Self { demo: DemoConfig::ephemeral(), mobile_port: 0, web_port: 0, partner_port: 0, ..Self::devstack() }
    }

    /// The devstack's settings with command-line overrides applied: `--mobile-port N`,
    /// `--web-port`, `--partner-port`, `--identity-port`, `--users-port`, `--catalog-port`,
    /// `--orders-port`, `--inventory-port`, `--recommendations-port`, `--control-port`,
    /// `--upstream-timeout 2s` and `--partner-api-key KEY`.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut config = Self::devstack();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                return Err(USAGE.to_owned());
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let port = || value.parse::<u16>().map_err(|_| format!("{flag}: `{value}` is not a port"));
            let ports = &mut config.demo.ports;
            match flag.as_str() {
                "--mobile-port" => config.mobile_port = port()?,
                "--web-port" => config.web_port = port()?,
                "--partner-port" => config.partner_port = port()?,
                "--identity-port" => ports.identity = port()?,
                "--users-port" => ports.users = port()?,
                "--catalog-port" => ports.catalog = port()?,
                "--orders-port" => ports.orders = port()?,
                "--inventory-port" => ports.inventory = port()?,
                "--recommendations-port" => ports.recommendations = port()?,
                "--control-port" => ports.control = port()?,
                "--upstream-timeout" => {
                    config.upstream_timeout = humantime::parse_duration(&value)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| format!("{flag}: `{value}` is not a duration such as 2s or 500ms"))?;
                }
                "--partner-api-key" if !value.is_empty() => config.partner_api_key = value,
                _ => return Err(format!("unknown or empty argument `{flag}`\n{USAGE}")),
            }
        }
        Ok(config)
    }
}

/// The devstack's command line.
pub const USAGE: &str = "usage: devstack [--mobile-port N] [--web-port N] [--partner-port N] [--identity-port N] \
[--users-port N] [--catalog-port N] [--orders-port N] [--inventory-port N] [--recommendations-port N] \
[--control-port N] [--upstream-timeout 2s] [--partner-api-key KEY]";

/// A running platform. Dropping it stops the demo backends; [`Stack::shutdown`] also drains the BFFs.
pub struct Stack {
    pub demo: Demo,
    pub mobile: SocketAddr,
    pub web: SocketAddr,
    pub partner: SocketAddr,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Stack {
    pub async fn start(config: StackConfig) -> anyhow::Result<Self> {
        let demo = Demo::start(config.demo.clone()).await.context("starting the demo backends")?;
        let (shutdown, _) = watch::channel(false);
        let listen = |port| SocketAddr::new(config.host, port);

        let mobile = mobile_bff::app(mobile_config(&demo, listen(config.mobile_port), config.upstream_timeout))?;
        let web = web_bff::app(web_config(&demo, listen(config.web_port), config.upstream_timeout))?;
        let partner = partner_bff::app(partner_config(
            &demo,
            listen(config.partner_port),
            config.upstream_timeout,
            &config.partner_api_key,
        ))?;

        let mut servers = Vec::new();
        let mut addrs = Vec::new();
        for (name, router, port) in [
            ("mobile", mobile, config.mobile_port),
            ("web", web, config.web_port),
            ("partner", partner, config.partner_port),
        ] {
            let signal = shutdown.subscribe();
            let (addr, server) = spawn_server(router, listen(port), wait_for(signal))
                .await
                .with_context(|| format!("starting the {name} BFF on port {port}"))?;
            addrs.push(addr);
            servers.push(server);
        }
        Ok(Self { demo, mobile: addrs[0], web: addrs[1], partner: addrs[2], shutdown, servers })
    }

    /// Stops accepting, drains in-flight requests, and waits for the BFFs to stop.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        self.demo.shutdown();
    }
}

async fn wait_for(mut signal: watch::Receiver<bool>) {
    let _ = signal.wait_for(|stop| *stop).await;
}

/// Binds `listen` and serves `router` on a task until `shutdown`; returns the bound address.
pub async fn spawn_server(
    router: Router,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(bff_gateway::server::serve(
        listener,
        router,
        shutdown,
        bff_gateway::config::DEFAULT_SHUTDOWN_GRACE,
    ));
    Ok((addr, server))
}

fn upstream(addr: SocketAddr, timeout: Duration) -> UpstreamConfig {
    let mut config = UpstreamConfig::new(bff_demo::http_url(addr).parse().expect("a socket address is a valid URL"));
    config.timeout = timeout;
    config
}

fn jwt(demo: &Demo, audience: &str) -> JwtConfig {
    JwtConfig::new(demo.issuer(), audience, demo.jwks_url().parse().expect("the demo's JWKS URL is valid"))
}

/// The mobile BFF's config against `demo`.
pub fn mobile_config(demo: &Demo, listen: SocketAddr, upstream_timeout: Duration) -> mobile_bff::Config {
    let a = &demo.addrs;
    mobile_bff::Config {
        server: ServerConfig::new(listen),
        auth: jwt(demo, "mobile"),
        upstreams: mobile_bff::Upstreams {
            users: upstream(a.users, upstream_timeout),
            orders: upstream(a.orders, upstream_timeout),
            recommendations: upstream(a.recommendations, upstream_timeout),
        },
    }
}

/// The web BFF's config against `demo`.
pub fn web_config(demo: &Demo, listen: SocketAddr, upstream_timeout: Duration) -> web_bff::Config {
    let a = &demo.addrs;
    web_bff::Config {
        server: ServerConfig::new(listen),
        auth: jwt(demo, "web"),
        upstreams: web_bff::Upstreams {
            users: upstream(a.users, upstream_timeout),
            orders: upstream(a.orders, upstream_timeout),
            catalog: upstream(a.catalog, upstream_timeout),
            inventory: upstream(a.inventory, upstream_timeout),
        },
        graphiql: true,
    }
}

/// The partner BFF's config against `demo`, accepting `api_key` for the demo partner.
pub fn partner_config(
    demo: &Demo,
    listen: SocketAddr,
    upstream_timeout: Duration,
    api_key: &str,
) -> partner_bff::Config {
    let a = &demo.addrs;
    partner_bff::Config {
        server: ServerConfig::new(listen),
        auth: partner_bff::AuthConfig {
            jwt: jwt(demo, "partner"),
            api_keys: vec![ApiKeyEntry {
                client_id: DEMO_PARTNER_CLIENT_ID.to_owned(),
                sha256: ApiKeys::hash(api_key),
                scopes: PARTNER_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            }],
        },
        upstreams: partner_bff::Upstreams {
            catalog: upstream(a.catalog, upstream_timeout),
            inventory: upstream(a.inventory, upstream_timeout),
            orders: upstream(a.orders, upstream_timeout),
        },
    }
}
