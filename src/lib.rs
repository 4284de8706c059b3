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
use bff_demo::{Demo, DemoAddrs, DemoConfig};
use std::path::Path;

use bff_gateway::auth::ApiKeys;
use bff_gateway::config::{Bff, Config, ServerConfig};
use bff_gateway::inbound::client_addr::IpBlock;
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
    /// The BFFs' admin listeners (`/metrics`, probes), in the same order.
    pub admin_ports: [u16; 3],
    pub upstream_timeout: Duration,
    pub partner_api_key: String,
    /// A Redis every BFF shares its state through (limits, persisted queries, idempotency
    /// records); `None` keeps each BFF's state in process.
    pub redis: Option<String>,
    /// An OTLP/gRPC collector the devstack exports traces to (`--otlp http://127.0.0.1:4317`).
    pub otlp: Option<url::Url>,
}

impl StackConfig {
    /// The devstack's `[telemetry]`: export to `--otlp` when given, continuing every caller's trace
    /// (the devstack trusts everyone; production configs name their proxies).
    pub fn telemetry(&self) -> bff_gateway::config::TelemetryConfig {
        let everyone = ["0.0.0.0/0", "::/0"].iter().filter_map(|block| block.parse().ok()).collect();
        bff_gateway::config::TelemetryConfig {
            // A terminal, not a collector: lines a person reads.
            log_format: bff_gateway::telemetry::LogFormat::Text,
            otlp_endpoint: self.otlp.clone(),
            trust_traceparent_from: everyone,
            ..bff_gateway::config::TelemetryConfig::default()
        }
    }
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
            admin_ports: [9001, 9002, 9003],
            upstream_timeout: DEVSTACK_UPSTREAM_TIMEOUT,
            partner_api_key: DEMO_PARTNER_API_KEY.to_owned(),
            redis: None,
            otlp: None,
        }
    }

    /// Every port picked by the OS, for tests that run side by side.
    pub fn ephemeral() -> Self {
        Self {
            demo: DemoConfig::ephemeral(),
            mobile_port: 0,
            web_port: 0,
            partner_port: 0,
            admin_ports: [0; 3],
            ..Self::devstack()
        }
    }

    /// The devstack's settings with command-line overrides applied: `--mobile-port N`,
    /// `--web-port`, `--partner-port`, `--identity-port`, `--users-port`, `--catalog-port`,
    /// `--orders-port`, `--inventory-port`, `--recommendations-port`, `--control-port`,
    /// `--upstream-timeout 2s`, `--partner-api-key KEY` and `--redis URL`.
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
                "--redis" => {
                    redis::Client::open(value.as_str())
                        .map_err(|e| format!("{flag}: `{value}` is not a Redis URL: {e}"))?;
                    config.redis = Some(value);
                }
                "--otlp" => {
                    let url = value.parse().map_err(|e| format!("{flag}: `{value}` is not a URL: {e}"))?;
                    config.otlp = Some(url);
                }
                _ => return Err(format!("unknown or empty argument `{flag}`\n{USAGE}")),
            }
        }
        Ok(config)
    }
}

/// The devstack's command line.
pub const USAGE: &str = "usage: devstack [--mobile-port N] [--web-port N] [--partner-port N] [--identity-port N] \
[--users-port N] [--catalog-port N] [--orders-port N] [--inventory-port N] [--recommendations-port N] \
[--control-port N] [--upstream-timeout 2s] [--partner-api-key KEY] [--redis redis://127.0.0.1:6379] \
[--otlp http://127.0.0.1:4317]
(REDIS_URL also sets --redis)";

/// A running platform. Dropping it stops the demo backends; [`Stack::shutdown`] also drains the BFFs.
pub struct Stack {
    pub demo: Demo,
    pub mobile: SocketAddr,
    pub web: SocketAddr,
    pub partner: SocketAddr,
    /// The admin listeners of mobile, web and partner: `/metrics`, `/healthz`, `/readyz`.
    pub admin: [SocketAddr; 3],
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Stack {
    pub async fn start(config: StackConfig) -> anyhow::Result<Self> {
        bff_upstream::tls::install_default_provider();
        // Before the demo signs anything: jsonwebtoken's provider is fixed by its first use.
        bff_gateway::auth::install_jwt_crypto();
        let demo = Demo::start(config.demo.clone()).await.context("starting the demo backends")?;
        let (shutdown, _) = watch::channel(false);
        let listen = |port| SocketAddr::new(config.host, port);

        let mut mobile = mobile_config(&demo, listen(config.mobile_port), config.upstream_timeout);
        let mut web = web_config(&demo, listen(config.web_port), config.upstream_timeout);
        let mut partner =
            partner_config(&demo, listen(config.partner_port), config.upstream_timeout, &config.partner_api_key);
        if let Some(url) = &config.redis {
            share_through(&mut mobile, url);
            mobile.own.graphql.persisted_queries.shared = true;
            share_through(&mut web, url);
            web.own.graphql.persisted_queries.shared = true;
            share_through(&mut partner, url);
            partner.own.idempotency.shared = true;
        }
        let [mobile_admin, web_admin, partner_admin] = config.admin_ports.map(|port| Some(listen(port)));
        // The devstack's developers are on this machine: their answers say where the time went.
        let loopback: Vec<IpBlock> = ["127.0.0.0/8", "::1"].iter().filter_map(|block| block.parse().ok()).collect();
        for server in [&mut mobile.server, &mut web.server, &mut partner.server] {
            server.server_timing_for = loopback.clone();
        }
        mobile.server.admin_listen = mobile_admin;
        web.server.admin_listen = web_admin;
        partner.server.admin_listen = partner_admin;
        let bffs = [
            ("mobile", mobile.server.clone(), mobile_bff::apps(mobile)?),
            ("web", web.server.clone(), web_bff::apps(web)?),
            ("partner", partner.server.clone(), partner_bff::apps(partner)?),
        ];

        let mut servers = Vec::new();
        let mut addrs = Vec::new();
        let mut admin_addrs = Vec::new();
        for (name, server, apps) in bffs {
            let port = server.listen_addr().port();
            let (addr, public) = spawn_server_with(apps.public, &server, wait_for(shutdown.subscribe()))
                .await
                .with_context(|| format!("starting the {name} BFF on port {port}"))?;
            let admin_config = ServerConfig { listen: server.admin_listen, tls: None, ..server };
            let (admin_addr, admin) = spawn_server_with(apps.admin, &admin_config, wait_for(shutdown.subscribe()))
                .await
                .with_context(|| format!("starting the {name} BFF's admin listener on {:?}", admin_config.listen))?;
            addrs.push(addr);
            admin_addrs.push(admin_addr);
            servers.extend([public, admin]);
        }
        let admin = [admin_addrs[0], admin_addrs[1], admin_addrs[2]];
        Ok(Self { demo, mobile: addrs[0], web: addrs[1], partner: addrs[2], admin, shutdown, servers })
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
    spawn_server_with(router, &ServerConfig::new(listen), shutdown).await
}

/// [`spawn_server`] under `config`'s connection limits, binding `config.listen`.
pub async fn spawn_server_with(
    router: Router,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(config.listen_addr()).await?;
    let addr = listener.local_addr()?;
    let config = config.clone();
    let server = tokio::spawn(async move { bff_gateway::server::serve(listener, router, &config, shutdown).await });
    Ok((addr, server))
}

/// The shipped example configs: the devstack runs exactly these, with its ports swapped in, so
/// the examples cannot drift from what runs.
const MOBILE_EXAMPLE: &str = include_str!("../bffs/mobile/config.example.toml");
const WEB_EXAMPLE: &str = include_str!("../bffs/web/config.example.toml");
const PARTNER_EXAMPLE: &str = include_str!("../bffs/partner/config.example.toml");

/// Where the demo serves backend `name`.
pub fn backend_addr(demo: &Demo, name: &str) -> Option<SocketAddr> {
    backend_addr_in(&demo.addrs, name)
}

fn backend_addr_in(a: &DemoAddrs, name: &str) -> Option<SocketAddr> {
    Some(match name {
        "identity" => a.identity,
        "users" => a.users,
        "catalog" => a.catalog,
        "orders" => a.orders,
        "inventory" => a.inventory,
        "recommendations" => a.recommendations,
        _ => return None,
    })
}

/// Points `config` at the Redis at `url` and decides its limits there.
pub fn share_through<O>(config: &mut Config<O>, url: &str) {
    config.redis.url = Some(url.to_owned());
    config.limits.shared = true;
}

/// BFF `B`'s shipped example config, pointed at `demo`, listening on `listen`, with `extra`
/// overrides in the environment's syntax (`SECTION__KEY`, values read as TOML).
fn from_example<B: Bff>(
    example: &str,
    demo: &DemoAddrs,
    listen: SocketAddr,
    upstream_timeout: Duration,
    extra: &[(&str, String)],
) -> Config<B::Own> {
    let key = |path: &str| format!("{}__{path}", B::ENV_PREFIX);
    let mut overrides = example_overrides::<B>(demo, listen, upstream_timeout);
    overrides.extend(extra.iter().map(|(path, value)| (key(path), value.clone())));
    let file = format!("bffs/{}/config.example.toml", B::NAME.trim_end_matches("-bff"));
    bff_gateway::config::from_toml::<B>(example, Path::new(&file), overrides)
        .unwrap_or_else(|error| panic!("{file} with the devstack's overrides: {error}"))
}

/// The environment overrides (`NAME`, value) that point BFF `B`'s shipped example config at the
/// demo backends at `demo`, listening on `listen`: what the devstack applies, and what a test
/// hands a BFF process started from the example file.
pub fn example_overrides<B: Bff>(
    demo: &DemoAddrs,
    listen: SocketAddr,
    upstream_timeout: Duration,
) -> Vec<(String, String)> {
    let key = |path: &str| format!("{}__{path}", B::ENV_PREFIX);
    // The demo's issuer is its identity service's base URL (see `Demo::issuer`).
    let issuer = bff_demo::http_url(demo.identity);
    let mut overrides = vec![
        (key("SERVER__LISTEN"), listen.to_string()),
        (key("AUTH__JWT__JWKS_URL"), format!("{issuer}/.well-known/jwks.json")),
        (key("AUTH__JWT__ISSUER"), issuer),
    ];
    for backend in <B::Backends as bff_gateway::backends::BackendSet>::NAMES {
        let addr = backend_addr_in(demo, backend).unwrap_or_else(|| panic!("the demo serves no `{backend}`"));
        let upper = backend.to_ascii_uppercase();
        overrides.push((key(&format!("UPSTREAMS__{upper}__URL")), bff_demo::http_url(addr)));
        overrides.push((
            key(&format!("UPSTREAMS__{upper}__TIMEOUT")),
            humantime::format_duration(upstream_timeout).to_string(),
        ));
    }
    // The examples name a second catalog instance; the demo runs one only where asked to.
    if <B::Backends as bff_gateway::backends::BackendSet>::NAMES.contains(&"catalog") {
        let second = demo.catalog_second.map(|addr| format!("{:?}", bff_demo::http_url(addr)));
        overrides.push((key("UPSTREAMS__CATALOG__INSTANCES"), format!("[{}]", second.unwrap_or_default())));
    }
    overrides
}

/// What the devstack turns on that production configs leave off: introspection, field
/// suggestions and GraphiQL, for developers exploring the GraphQL BFFs.
fn graphql_dev_tools() -> [(&'static str, String); 3] {
    ["GRAPHQL__INTROSPECTION", "GRAPHQL__SUGGESTIONS", "GRAPHQL__GRAPHIQL"].map(|key| (key, "true".to_owned()))
}

/// The mobile BFF's config against `demo`, with the GraphQL developer tools on.
pub fn mobile_config(demo: &Demo, listen: SocketAddr, upstream_timeout: Duration) -> mobile_bff::Config {
    from_example::<mobile_bff::Mobile>(MOBILE_EXAMPLE, &demo.addrs, listen, upstream_timeout, &graphql_dev_tools())
}

/// The web BFF's config against `demo`, with the GraphQL developer tools on.
pub fn web_config(demo: &Demo, listen: SocketAddr, upstream_timeout: Duration) -> web_bff::Config {
    from_example::<web_bff::Web>(WEB_EXAMPLE, &demo.addrs, listen, upstream_timeout, &graphql_dev_tools())
}

/// The shipped example configs exactly as production would run them (no developer tools), against
/// demo backends at `demo`, which may live in another process: for the benchmark harness.
pub fn production_configs(
    demo: &DemoAddrs,
    listen: SocketAddr,
    upstream_timeout: Duration,
    partner_api_key: &str,
) -> (mobile_bff::Config, web_bff::Config, partner_bff::Config) {
    (
        from_example::<mobile_bff::Mobile>(MOBILE_EXAMPLE, demo, listen, upstream_timeout, &[]),
        from_example::<web_bff::Web>(WEB_EXAMPLE, demo, listen, upstream_timeout, &[]),
        partner_config_at(demo, listen, upstream_timeout, partner_api_key),
    )
}

/// The partner BFF's config against `demo`, accepting `api_key` for the demo partner.
pub fn partner_config(
    demo: &Demo,
    listen: SocketAddr,
    upstream_timeout: Duration,
    api_key: &str,
) -> partner_bff::Config {
    partner_config_at(&demo.addrs, listen, upstream_timeout, api_key)
}

fn partner_config_at(
    demo: &DemoAddrs,
    listen: SocketAddr,
    upstream_timeout: Duration,
    api_key: &str,
) -> partner_bff::Config {
    let scopes = PARTNER_SCOPES.map(|s| format!("{s:?}")).join(", ");
    let api_keys = format!(
        r#"[{{ client_id = "{DEMO_PARTNER_CLIENT_ID}", sha256 = "{}", scopes = [{scopes}] }}]"#,
        ApiKeys::hash(api_key)
    );
    from_example::<partner_bff::Partner>(
        PARTNER_EXAMPLE,
        demo,
        listen,
        upstream_timeout,
        &[("AUTH__API_KEYS", api_keys)],
    )
}
