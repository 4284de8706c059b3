//! `cargo run --release --bin devstack`: the demo backends and all three BFFs in one process, on
//! the default ports, with a ready-made token, API key and example request for each BFF.
//! Ctrl-C (or SIGTERM) drains in-flight requests and stops. `-- --help` lists the overrides
//! (ports, upstream timeout, partner API key, and `--redis URL` or `REDIS_URL`, which shares
//! limits, persisted queries and idempotency records through that Redis).

use std::process::ExitCode;

use bff_platform::{DEMO_PARTNER_CLIENT_ID, Stack, StackConfig};

/// A day: long enough to explore by hand without minting another token.
const DEMO_TOKEN_TTL_S: i64 = 24 * 3600;
const DEMO_USER: &str = "u-1";

// The BFF binaries' allocator, so the devstack behaves as they do.
#[global_allocator]
static ALLOCATOR: bff_allocator::Allocator = bff_allocator::Allocator;

fn main() -> ExitCode {
    bff_allocator::configure();
    if std::env::args().skip(1).any(|arg| arg == "-h" || arg == "--help") {
        print_usage();
        return ExitCode::SUCCESS;
    }
    // `REDIS_URL` is the default `--redis`: an explicit flag later in the list wins.
    let redis = std::env::var("REDIS_URL").ok().filter(|url| !url.is_empty()).map(|url| ["--redis".to_owned(), url]);
    let args = redis.into_iter().flatten().chain(std::env::args().skip(1));
    let config = match StackConfig::from_args(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("devstack: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The exporter's batches run on the runtime.
    let _context = runtime.enter();
    let _traces = match bff_gateway::telemetry::init_with_tracing("bff-devstack", &config.telemetry()) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("devstack: {error}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let api_key = config.partner_api_key.clone();
        let stack = match Stack::start(config).await {
            Ok(stack) => stack,
            Err(error) => {
                eprintln!("devstack: {error:#}");
                eprintln!("devstack: is another devstack already running on these ports?");
                return ExitCode::FAILURE;
            }
        };
        print_banner(&stack, &api_key);
        bff_gateway::server::shutdown_signal().await;
        stack.shutdown().await;
        bff_gateway::telemetry::flush();
        ExitCode::SUCCESS
    })
}

#[allow(clippy::print_stdout)]
fn print_usage() {
    println!("{}", bff_platform::USAGE);
}

#[allow(clippy::print_stdout)]
fn print_banner(stack: &Stack, api_key: &str) {
    let demo = &stack.demo;
    let url = |addr| bff_demo::http_url(addr);
    let mobile_token = demo.mint_token(DEMO_USER, "mobile", "profile orders", DEMO_TOKEN_TTL_S);
    let web_token = demo.mint_token(DEMO_USER, "web", "profile orders", DEMO_TOKEN_TTL_S);
    let a = &demo.addrs;
    println!(
        r#"
BFF platform devstack is up.

BFFs
  mobile   {mobile}/graphql  GraphQL; bearer JWT, audience `mobile`
  web      {web}/graphql  GraphQL; bearer JWT, audience `web`; GraphiQL in a browser
  partner  {partner}/v2       REST (v1 deprecated); X-API-Key or OAuth2 client-credentials token; contract at {partner}/v2/openapi.json
  each also serves /healthz and /readyz; metrics on the admin listeners: {mobile_admin}/metrics, {web_admin}/metrics, {partner_admin}/metrics

Demo backends
  identity         {identity}  JWKS, POST /oauth/token, POST /dev/token
  users            {users}
  catalog          {catalog}, {catalog_second} (catalog-2)
  recommendations  {recommendations}
  orders           {orders}  gRPC
  inventory        {inventory}  gRPC
  control          {control}  GET /calls, POST /reset, PUT /faults/{{service}}

Demo credentials (user {DEMO_USER}, valid 24h)
  MOBILE_TOKEN={mobile_token}
  WEB_TOKEN={web_token}
  PARTNER_API_KEY={api_key}   (partner `{DEMO_PARTNER_CLIENT_ID}`; OAuth2 client secret `demo-partner-secret`)

Try
  curl -s {mobile}/graphql -H "authorization: Bearer $MOBILE_TOKEN" -H 'content-type: application/json' \
    -d '{{"query":"{{ home {{ user {{ id name avatarUrl }} recentOrders(first: 3) {{ id status total currency }} recommendations(first: 5) {{ id name price }} }} }}"}}'
  curl -s {web}/graphql -H "authorization: Bearer $WEB_TOKEN" -H 'content-type: application/json' \
    -d '{{"query":"{{ me {{ id name email orders(first: 2) {{ edges {{ node {{ id status items {{ quantity product {{ name stock {{ available }} }} }} }} }} pageInfo {{ hasNextPage endCursor }} }} }} }}"}}'
  curl -s {partner}/v2/products/p-42 -H "x-api-key: $PARTNER_API_KEY"
  curl -s -X PUT {control}/faults/users -H 'content-type: application/json' -d '{{"latency_ms": 3000}}'   # then retry the mobile query

Ctrl-C stops everything.
"#,
        mobile = url(stack.mobile),
        web = url(stack.web),
        partner = url(stack.partner),
        mobile_admin = url(stack.admin[0]),
        web_admin = url(stack.admin[1]),
        partner_admin = url(stack.admin[2]),
        identity = url(a.identity),
        users = url(a.users),
        catalog = url(a.catalog),
        catalog_second = a.catalog_second.map_or_else(|| "-".to_owned(), url),
        recommendations = url(a.recommendations),
        orders = url(a.orders),
        inventory = url(a.inventory),
        control = url(a.control),
    );
}
