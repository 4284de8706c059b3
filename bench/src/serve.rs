//! The children: the demo backends, and the BFF under test with its production stack.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow};
use bff_demo::{Demo, DemoAddrs, DemoConfig};
use bff_gateway::config::Config;
use bff_gateway::limits::Quota;
use serde_json::json;

use crate::scenario::{Bff, Tokens, USER};

const SCOPES: &str = "profile orders";
/// Services whose calls the scenarios make (identity only serves the JWKS).
pub const BACKENDS: [&str; 5] = ["users", "catalog", "orders", "inventory", "recommendations"];

pub fn encode_addrs(a: &DemoAddrs) -> String {
    format!(
        "identity={},users={},catalog={},orders={},inventory={},recommendations={},control={}",
        a.identity, a.users, a.catalog, a.orders, a.inventory, a.recommendations, a.control
    )
}

pub fn decode_addrs(encoded: &str) -> anyhow::Result<DemoAddrs> {
    let addr = |name: &str| -> anyhow::Result<SocketAddr> {
        let value = encoded
            .split(',')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| anyhow!("no {name} address in `{encoded}`"))?;
        value.parse().with_context(|| format!("{name} address `{value}`"))
    };
    Ok(DemoAddrs {
        identity: addr("identity")?,
        users: addr("users")?,
        catalog: addr("catalog")?,
        orders: addr("orders")?,
        inventory: addr("inventory")?,
        recommendations: addr("recommendations")?,
        control: addr("control")?,
        catalog_second: None,
    })
}

/// The demo's ready line: its addresses, then the scenarios' tokens as `name=token`.
pub fn parse_demo_ready(ready: &str) -> anyhow::Result<(DemoAddrs, Tokens)> {
    let mut parts = ready.split_whitespace();
    let addrs = decode_addrs(parts.next().context("empty ready line")?)?;
    let mut tokens = Tokens::default();
    for part in parts {
        let (name, token) = part.split_once('=').context("odd token")?;
        let slot = match name {
            "mobile" => &mut tokens.mobile,
            "web" => &mut tokens.web,
            "large" => &mut tokens.large,
            "expired" => &mut tokens.expired,
            _ => continue,
        };
        *slot = token.to_owned();
    }
    Ok((addrs, tokens))
}

/// Serves the demo backends, each call delayed by `latency`, until the parent goes away.
pub fn demo(latency: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        bff_upstream::tls::install_default_provider();
        let demo = Demo::start(DemoConfig::ephemeral()).await.context("starting the demo backends")?;
        if !latency.is_zero() {
            let http = reqwest::Client::new();
            let faults = json!({ "latency_ms": u64::try_from(latency.as_millis()).unwrap_or(u64::MAX) });
            for service in BACKENDS {
                let url = format!("{}/faults/{service}", demo.control_url());
                http.put(url).json(&faults).send().await?.error_for_status()?;
            }
        }
        let tokens = Tokens {
            mobile: demo.mint_token(USER, "mobile", SCOPES, 3600),
            web: demo.mint_token(USER, "web", SCOPES, 3600),
            large: large_token(&demo),
            expired: demo.mint_token(USER, "mobile", SCOPES, -120),
        };
        crate::announce(&format!(
            "{} mobile={} web={} large={} expired={}",
            encode_addrs(&demo.addrs),
            tokens.mobile,
            tokens.web,
            tokens.large,
            tokens.expired
        ));
        std::future::pending::<()>().await;
        anyhow::Ok(())
    })
}

/// How long the large token is: 7.5 KiB, just under the gateway's 8 KiB limit.
pub const LARGE_TOKEN_BYTES: usize = 7680;

/// A valid mobile token of [`LARGE_TOKEN_BYTES`] or a few bytes less: an identity provider that
/// puts a user's groups in the token.
fn large_token(demo: &Demo) -> String {
    // base64url without padding; an RS256 (2048-bit) signature is 256 bytes.
    let encoded = |bytes: usize| bytes.div_ceil(3) * 4 - (3 - bytes % 3) % 3;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": bff_demo::KID });
    let claims = |groups: usize| {
        let groups: Vec<String> = (0..groups).map(|i| format!("group-{i:04}")).collect();
        json!({
            "iss": demo.issuer(), "sub": USER, "aud": "mobile", "scope": SCOPES,
            "iat": now, "exp": now + 3600, "groups": groups,
        })
    };
    let length = |groups: usize| {
        encoded(header.to_string().len()) + encoded(claims(groups).to_string().len()) + encoded(256) + 2
    };
    let mut groups = 0;
    while length(groups + 1) <= LARGE_TOKEN_BYTES {
        groups += 1;
    }
    demo.sign_raw(&header, &claims(groups), bff_demo::KID)
}

/// The public router with the admin one (`/metrics`) under `/__bench`, outside the public stack:
/// the harness reads counters from the BFF's own metrics (Redis round trips) on the one port it
/// knows.
fn with_admin(apps: bff_gateway::inbound::Apps) -> axum::Router {
    apps.public.nest("/__bench", apps.admin)
}

/// A quota no load here reaches: a billion a second.
const UNREACHABLE: Quota = Quota::new(1_000_000_000, Duration::from_secs(1), 1_000_000_000);

/// Production settings with quotas the load cannot reach: the harness measures cost, not limits,
/// so every limit stays on (each request still pays for its decisions) and only its quota rises.
fn high_limits<O>(config: &mut Config<O>) {
    config.server.max_concurrent_requests = 100_000;
    config.server.max_connections = 100_000;
    let limits = &mut config.limits;
    limits.failed_authentication = UNREACHABLE;
    for quota in
        [&mut limits.global, &mut limits.per_address, &mut limits.per_principal, &mut limits.cost].into_iter().flatten()
    {
        *quota = UNREACHABLE;
    }
    for route in &mut limits.routes {
        (route.rate, route.per, route.burst) = (UNREACHABLE.rate, UNREACHABLE.per, UNREACHABLE.burst);
    }
}

/// Every connection of a scenario acts for the same caller, so coalescing and the cache would
/// answer most calls from each other, which no real crowd of users does, and the comparison with
/// the baseline (which calls its backends for every request) would flatter the BFF. They are off
/// here; every other layer stays on.
fn no_shared_answers<O>(config: &mut Config<O>) {
    for (_, upstream) in config.upstreams.0.iter_mut() {
        upstream.coalesce = false;
        upstream.cache = bff_upstream::layer::CacheConfig::default();
    }
}

/// The partner's plans with quotas the load cannot reach.
fn high_plan_limits(options: &mut partner_bff::PartnerOptions) {
    for plan in options.plans.values_mut() {
        plan.limit = plan.limit.map(|_| UNREACHABLE);
        plan.route_limits.values_mut().for_each(|quota| *quota = UNREACHABLE);
    }
}

/// Serves BFF `bff` with its shipped production config against the demo at `demo`, as its own
/// binary would (JSON access log on stdout at the production filter), until the parent goes away.
/// `shared_answers` keeps the response cache and coalescing on (see [`no_shared_answers`]).
pub fn bff(
    bff: Bff,
    demo: DemoAddrs,
    shared_answers: bool,
    redis: Option<&str>,
    sampling_ratio: f64,
) -> anyhow::Result<()> {
    bff_upstream::tls::install_default_provider();
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let (mut mobile, mut web, mut partner) = bff_platform::production_configs(
        &demo,
        listen,
        bff_platform::DEVSTACK_UPSTREAM_TIMEOUT,
        bff_platform::DEMO_PARTNER_API_KEY,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Building an app creates lazily connecting gRPC channels, which need the runtime at hand.
    let _context = runtime.enter();
    // Every layer on, as production runs it: the access log, the metrics (always), and traces,
    // sampled at `--sampling` (by default the shipped deployments' 0.1) and exported to a
    // receiver in this process.
    let collector = runtime.block_on(crate::collector::start())?;
    let telemetry = bff_gateway::config::TelemetryConfig {
        otlp_endpoint: Some(format!("http://{collector}").parse()?),
        sampling_ratio,
        ..bff_gateway::config::TelemetryConfig::default()
    };
    let _traces = bff_gateway::telemetry::init_with_tracing(bff.name(), &telemetry).map_err(|e| anyhow!(e))?;
    let app_error = |e: &dyn std::fmt::Display| anyhow!("building the {} BFF: {e}", bff.name());
    // Replicas sharing one store, as the devstack's `--redis` runs them: limits decided there,
    // persisted queries and idempotency records kept there.
    if let Some(url) = redis {
        bff_platform::share_through(&mut mobile, url);
        mobile.own.graphql.persisted_queries.shared = true;
        bff_platform::share_through(&mut web, url);
        web.own.graphql.persisted_queries.shared = true;
        bff_platform::share_through(&mut partner, url);
        partner.own.idempotency.shared = true;
        for prefix in [&mut mobile.redis.key_prefix, &mut web.redis.key_prefix, &mut partner.redis.key_prefix] {
            // The harness's own pid: every replica of one run shares the keys, no other run does.
            *prefix = format!("bench-{}", std::os::unix::process::parent_id());
        }
    }
    let (router, server) = match bff {
        Bff::Mobile => {
            high_limits(&mut mobile);
            if !shared_answers {
                no_shared_answers(&mut mobile);
            }
            let server = mobile.server.clone();
            (with_admin(mobile_bff::apps(mobile).map_err(|e| app_error(&e))?), server)
        }
        Bff::Web => {
            high_limits(&mut web);
            if !shared_answers {
                no_shared_answers(&mut web);
            }
            let server = web.server.clone();
            (with_admin(web_bff::apps(web).map_err(|e| app_error(&e))?), server)
        }
        Bff::Partner => {
            high_limits(&mut partner);
            high_plan_limits(&mut partner.own);
            if !shared_answers {
                no_shared_answers(&mut partner);
            }
            let server = partner.server.clone();
            (with_admin(partner_bff::apps(partner).map_err(|e| app_error(&e))?), server)
        }
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(server.listen_addr()).await?;
        crate::announce(&listener.local_addr()?.to_string());
        bff_gateway::server::serve(listener, router, &server, std::future::pending()).await?;
        anyhow::Ok(())
    })
}
