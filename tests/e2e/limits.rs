//! Traffic limits against the real BFFs and demo backends: bursts admitted exactly, refusals that
//! never reach a backend, GraphQL budgets spent by cost, one quota across replicas through the
//! real Redis, and a Redis that is closed, stalled or paused costing a request at most the
//! limiter's timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bff_gateway::auth::ApiKeys;
use bff_gateway::config::{ApiKeyEntry, RedisConfig};
use bff_gateway::limits::Quota;
use futures::future::join_all;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::attacks::serve;
use crate::support::{HOME_QUERY, Reply, TestStack, refusing_addr, shared_redis, unique};

const KEY: &str = bff_platform::DEMO_PARTNER_API_KEY;
/// A second partner on the same plan: its quota is its own.
const OTHER_KEY: &str = "other-partner-key";

/// A partner BFF on the demo, with a second client on the `full` plan, edited by `edit`.
async fn partner(t: &TestStack, edit: impl FnOnce(&mut partner_bff::Config)) -> SocketAddr {
    let mut config =
        bff_platform::partner_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2), KEY);
    config.auth.api_keys.push(ApiKeyEntry {
        client_id: "other-partner".into(),
        sha256: ApiKeys::hash(OTHER_KEY),
        scopes: bff_platform::PARTNER_SCOPES.map(str::to_owned).to_vec(),
        revoked: false,
    });
    config.own.client_plans.insert("other-partner".into(), "full".into());
    edit(&mut config);
    serve(partner_bff::app(config).unwrap()).await
}

/// The `full` plan's own quota, and nothing else limiting: the headers then name one limit.
fn plan_quota(config: &mut partner_bff::Config, quota: Quota) {
    config.limits.global = None;
    let plan = config.own.plans.get_mut("full").unwrap();
    plan.limit = Some(quota);
    plan.route_limits.clear();
}

async fn product(t: &TestStack, addr: SocketAddr, key: &str) -> Reply {
    product_n(t, addr, key, 1).await
}

/// Product `p-{n}`: distinct products are distinct backend calls (never coalesced or cached).
async fn product_n(t: &TestStack, addr: SocketAddr, key: &str, n: usize) -> Reply {
    t.get(addr, &format!("/v2/products/p-{n}"), &[("x-api-key", key)]).await
}

fn admitted(replies: &[Reply]) -> usize {
    replies.iter().filter(|r| r.status == 200).count()
}

/// A refusal as the ratelimit-headers draft and RFC 9457 describe it, naming `limit`.
fn assert_limited_by(reply: &Reply, limit: &str) {
    assert_eq!(reply.status, 429, "{:#}", reply.body);
    assert_eq!(reply.body["code"], "RATE_LIMITED");
    assert_eq!(reply.body["violated-policies"], json!([limit]));
    assert!(reply.body["request_id"].is_string());
    let retry_after: u64 = reply.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After in seconds");
    assert!(retry_after >= 1, "{retry_after}");
    let remaining = reply.header("ratelimit").unwrap_or_default();
    assert!(remaining.contains(&format!("\"{limit}\";r=0;t=")), "RateLimit: {remaining}");
}

#[tokio::test]
async fn a_burst_admits_its_burst_and_what_the_rate_replenished_and_refuses_the_rest_unread() {
    let t = TestStack::start().await;
    // Two a second, ten at once.
    let addr = partner(&t, |config| plan_quota(config, Quota::new(2, Duration::from_secs(1), 10))).await;
    t.reset().await;
    let started = Instant::now();
    let replies = join_all((1..=30).map(|n| product_n(&t, addr, KEY, n))).await;
    let elapsed = started.elapsed();
    let count = admitted(&replies);
    let replenished = (elapsed.as_secs_f64() * 2.0).floor() as usize;
    assert!((10..=10 + replenished).contains(&count), "{count} admitted in {elapsed:?}");
    for reply in &replies {
        // The plan's own quota: q is its burst, w the seconds it takes to refill.
        assert_eq!(reply.header("ratelimit-policy"), Some("\"plan:full\";q=10;w=5"));
        if reply.status != 200 {
            assert_limited_by(reply, "plan:full");
        }
    }
    // No refused request reached a backend: one catalog call per admitted one.
    assert_eq!(t.call_count("catalog").await, count as u64);

    // Another client of the same plan has its own quota.
    let other = product(&t, addr, OTHER_KEY).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("ratelimit"), Some("\"plan:full\";r=9;t=1"));

    // Retry-After is honest: waiting it out is enough. (A unit may have come back since the
    // burst; spend it first.)
    let mut refused = product(&t, addr, KEY).await;
    for _ in 0..3 {
        if refused.status == 429 {
            break;
        }
        refused = product(&t, addr, KEY).await;
    }
    let wait: u64 = refused.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(refused.status == 429 && wait == 1, "{} {wait}: a unit comes back every 500 ms", refused.status);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(product(&t, addr, KEY).await.status, 200);
}

#[tokio::test]
async fn the_address_limit_counts_the_peer_whatever_x_forwarded_for_claims() {
    let t = TestStack::start().await;
    let per_address = |config: &mut partner_bff::Config| {
        config.limits.per_address = Some(Quota::new(1, Duration::from_secs(60), 3));
    };
    let addr = partner(&t, per_address).await;
    let mut replies = Vec::new();
    for i in 0..5 {
        let forwarded = format!("198.51.100.{i}");
        replies.push(t.get(addr, "/v2/products/p-1", &[("x-api-key", KEY), ("x-forwarded-for", &forwarded)]).await);
    }
    assert_eq!(admitted(&replies), 3);
    assert_limited_by(&replies[4], "address");

    // Behind a trusted proxy the forwarded address is the client: each has its own quota.
    let behind_proxy = partner(&t, |config| {
        per_address(config);
        config.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    for i in 0..5 {
        let forwarded = format!("198.51.100.{i}");
        let reply =
            t.get(behind_proxy, "/v2/products/p-1", &[("x-api-key", KEY), ("x-forwarded-for", &forwarded)]).await;
        assert_eq!(reply.status, 200, "{:#}", reply.body);
    }
}

/// A mobile BFF whose users each have `budget` cost points, coming back one an hour (so a test's
/// own duration replenishes nothing).
async fn mobile_with_budget(t: &TestStack, budget: u64) -> SocketAddr {
    let mut config = bff_platform::mobile_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
    config.limits.cost = Some(Quota::new(1, Duration::from_secs(3600), budget));
    serve(mobile_bff::app(config).unwrap()).await
}

async fn post_graphql(t: &TestStack, addr: SocketAddr, token: &str, body: Value) -> Reply {
    TestStack::reply(t.http.post(TestStack::url(addr, "/graphql")).bearer_auth(token).json(&body)).await
}

fn spent(reply: &Reply) -> (u64, u64) {
    let report = &reply.body["extensions"]["rateLimit"];
    (report["cost"].as_u64().expect("a cost"), report["remaining"].as_u64().expect("what remains"))
}

#[tokio::test]
async fn graphql_requests_spend_their_computed_cost_and_a_dry_run_spends_nothing() {
    use sha2::Digest as _;
    let t = TestStack::start().await;
    let addr = mobile_with_budget(&t, 1000).await;
    let token = t.token("u-7", "mobile");

    let home = post_graphql(&t, addr, &token, json!({ "query": HOME_QUERY })).await;
    assert_eq!(home.status, 200, "{:#}", home.body);
    let (home_cost, after_home) = spent(&home);
    assert_eq!(after_home, 1000 - home_cost);
    // Each point takes an hour to come back: the budget is whole again `cost` hours from now.
    let expected = format!("\"cost\";r={after_home};t={}", home_cost * 3600);
    assert_eq!(home.header("ratelimit"), Some(expected.as_str()));
    assert!(home.header("ratelimit-policy").unwrap_or_default().starts_with("\"cost\";q=1000;"));

    let cheap = post_graphql(&t, addr, &token, json!({ "query": "{ home { user { name } } }" })).await;
    let (cheap_cost, after_cheap) = spent(&cheap);
    assert!(0 < cheap_cost && cheap_cost < home_cost, "home {home_cost}, cheap {cheap_cost}");
    assert_eq!(after_cheap, after_home - cheap_cost);

    // A dry run says what the home screen would cost, runs nothing and spends nothing.
    t.reset().await;
    let dry = json!({ "query": HOME_QUERY, "extensions": { "rateLimit": { "dryRun": true } } });
    let dry = post_graphql(&t, addr, &token, dry).await;
    assert_eq!(dry.status, 200);
    assert!(dry.body.get("data").is_none(), "{:#}", dry.body);
    assert_eq!(dry.body["extensions"]["rateLimit"]["dryRun"], true);
    assert_eq!(spent(&dry), (home_cost, after_cheap));
    assert_eq!(t.call_count("users").await + t.call_count("orders").await, 0);

    // A batch spends the sum of its operations, at once.
    let batch = json!([{ "query": "{ home { user { name } } }" }, { "query": "{ home { user { name } } }" }]);
    let batch = post_graphql(&t, addr, &token, batch).await;
    let first = Reply { status: batch.status, headers: batch.headers.clone(), body: batch.body[0].clone() };
    assert_eq!(spent(&first), (2 * cheap_cost, after_cheap - 2 * cheap_cost));

    // A persisted query sent by its hash alone (GET) costs what its text costs.
    let hash = hex::encode(sha2::Sha256::digest(HOME_QUERY.as_bytes()));
    let persisted = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let registered = post_graphql(&t, addr, &token, json!({ "query": HOME_QUERY, "extensions": persisted })).await;
    let (_, after_registered) = spent(&registered);
    let by_hash = t
        .http
        .get(TestStack::url(addr, "/graphql"))
        .bearer_auth(&token)
        .query(&[("extensions", persisted.to_string())]);
    let by_hash = TestStack::reply(by_hash).await;
    assert_eq!(by_hash.status, 200, "{:#}", by_hash.body);
    assert_eq!(spent(&by_hash), (home_cost, after_registered - home_cost));

    // Past the budget: refused before anything runs, saying when to come back.
    let mut remaining = after_registered - home_cost;
    while remaining >= home_cost {
        remaining = spent(&post_graphql(&t, addr, &token, json!({ "query": HOME_QUERY })).await).1;
    }
    t.reset().await;
    let refused = post_graphql(&t, addr, &token, json!({ "query": HOME_QUERY })).await;
    assert_eq!(refused.status, 429, "{:#}", refused.body);
    assert_eq!(refused.error_codes(), ["RATE_LIMITED"]);
    assert!(refused.body["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap_or(0) >= 1);
    assert!(refused.header("retry-after").is_some());
    assert_eq!(t.call_count("users").await + t.call_count("orders").await, 0);
    // Another user's budget is untouched.
    let other = post_graphql(&t, addr, &t.token("u-8", "mobile"), json!({ "query": HOME_QUERY })).await;
    assert_eq!(spent(&other).1, 1000 - home_cost);
}

#[tokio::test]
async fn a_subscription_spends_its_cost_when_it_subscribes() {
    use futures::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let t = TestStack::start().await;
    let mut config = bff_platform::web_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
    config.limits.cost = Some(Quota::new(1, Duration::from_secs(3600), 1000));
    let addr = serve(web_bff::app(config).unwrap()).await;
    let token = t.token("u-21", "web");
    let place =
        r#"mutation { placeOrder(input: {lines: [{productId: "p-3", quantity: 1}], idempotencyKey: "l-1"}) { id } }"#;
    let placed = post_graphql(&t, addr, &token, json!({ "query": place })).await;
    let id = placed.body["data"]["placeOrder"]["id"].as_str().expect("an order").to_owned();
    let remaining = || async {
        let dry = json!({ "query": "{ me { id } }", "extensions": { "rateLimit": { "dryRun": true } } });
        spent(&post_graphql(&t, addr, &token, dry).await).1
    };
    let before = remaining().await;

    let mut socket = crate::surfaces::subscribe_at(addr, &token).await;
    assert_eq!(crate::surfaces::next_json(&mut socket).await["type"], "connection_ack");
    let query = format!(r#"subscription {{ orderStatusChanged(orderId: "{id}") {{ orderId status }} }}"#);
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    socket.send(Message::text(subscribe.to_string())).await.unwrap();
    let first = crate::surfaces::next_json(&mut socket).await;
    assert_eq!(first["payload"]["data"]["orderStatusChanged"]["status"], "PENDING", "{first:#}");
    assert!(remaining().await < before, "subscribing spent nothing");
}

/// Partner replicas deciding through `redis_url` under a key prefix of their own.
fn shared(redis_url: &str, prefix: &str) -> impl Fn(&mut partner_bff::Config) {
    let (url, prefix) = (redis_url.to_owned(), prefix.to_owned());
    move |config| {
        config.redis = RedisConfig { key_prefix: prefix.clone(), ..RedisConfig::new(url.clone()) };
        config.limits.shared = true;
    }
}

#[tokio::test]
async fn two_replicas_sharing_redis_admit_the_quota_once_not_twice() {
    let url = shared_redis().await;
    let t = TestStack::start().await;
    let prefix = format!("limits-{}", unique());
    let replica = || {
        partner(&t, |config| {
            shared(&url, &prefix)(config);
            // Sharing is on trial here, not the timeout: a busy machine must not turn a slow
            // answer into a replica deciding alone.
            config.limits.shared_timeout = Duration::from_secs(1);
            plan_quota(config, Quota::new(1, Duration::from_secs(1), 10));
        })
    };
    let (a, b) = (replica().await, replica().await);
    let started = Instant::now();
    let replies = join_all((0..40).map(|i| product(&t, if i % 2 == 0 { a } else { b }, KEY))).await;
    let elapsed = started.elapsed();
    let count = admitted(&replies);
    assert!((10..=10 + elapsed.as_secs() as usize).contains(&count), "{count} admitted in {elapsed:?}");
    assert!(replies.iter().filter(|r| r.status != 200).all(|r| r.status == 429));
    // Failed authentication is shared too: three failures on one replica lock the address out
    // on the other at its next failure, however few it saw itself.
    let (c, d) = (
        partner(&t, |config| {
            shared(&url, &prefix)(config);
            config.limits.failed_authentication = Quota::new(1, Duration::from_secs(60), 3);
        })
        .await,
        partner(&t, |config| {
            shared(&url, &prefix)(config);
            config.limits.failed_authentication = Quota::new(1, Duration::from_secs(60), 3);
        })
        .await,
    );
    for _ in 0..3 {
        assert_eq!(product(&t, c, "wrong-key").await.status, 401);
    }
    assert_eq!(product(&t, d, "wrong-key").await.status, 401, "verified: this replica had not heard");
    let locked = product(&t, d, KEY).await;
    assert_eq!((locked.status.as_u16(), locked.body["code"].as_str()), (429, Some("TOO_MANY_FAILED_ATTEMPTS")));
}

#[tokio::test]
async fn failed_authentication_is_throttled_and_released() {
    let t = TestStack::start().await;
    let addr = partner(&t, |config| {
        // Three at once, one more every 500 ms.
        config.limits.failed_authentication = Quota::new(2, Duration::from_secs(1), 3);
    })
    .await;
    for _ in 0..3 {
        assert_eq!(product(&t, addr, "wrong-key").await.status, 401);
    }
    let locked = product(&t, addr, KEY).await;
    assert_eq!((locked.status.as_u16(), locked.body["code"].as_str()), (429, Some("TOO_MANY_FAILED_ATTEMPTS")));
    let wait: u64 = locked.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(product(&t, addr, KEY).await.status, 200, "released once a failure's worth came back");
}

/// A Redis of the test's own (pausing the shared one would stall every other test).
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server: {e}; install it with `apt-get install -y redis-server`"));
        // Owned at once, so a panic below still stops it.
        let redis = Self { child, port };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not listen on {port}");
    }

    async fn command(&self, args: &[&str]) {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        let _: redis::Value = command.query_async(&mut connection).await.unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy that forwards until told to stall, then holds every byte (connections stay open,
/// nothing arrives) until told to forward again.
struct StallingProxy {
    addr: SocketAddr,
    stalled: Arc<AtomicBool>,
}

impl StallingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, flag.clone()));
                tokio::spawn(pipe(server_read, client_write, flag.clone()));
            }
        });
        Self { addr, stalled }
    }

    fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else { return };
        if read == 0 {
            return;
        }
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

async fn readyz_verbose(t: &TestStack, addr: SocketAddr) -> String {
    t.http.get(TestStack::url(addr, "/readyz?verbose")).send().await.unwrap().text().await.unwrap()
}

/// `n` requests one after another, each timed: none may wait on Redis past the limiter's timeout
/// (its store's own timeout is 5 s here, so a request that waited on Redis would show).
async fn timed(t: &TestStack, addr: SocketAddr, key: &str, n: usize) -> Vec<Reply> {
    let mut replies = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        replies.push(product(t, addr, key).await);
        assert!(started.elapsed() < Duration::from_secs(1), "a request waited {:?}", started.elapsed());
    }
    replies
}

#[tokio::test]
async fn with_redis_stalled_or_paused_requests_flow_on_the_replicas_share_and_shared_limits_resume() {
    let t = TestStack::start().await;
    let redis = OwnRedis::start().await;
    let proxy = StallingProxy::start(SocketAddr::from(([127, 0, 0, 1], redis.port))).await;
    let addr = partner(&t, |config| {
        shared(&format!("redis://{}", proxy.addr), "outage")(config);
        config.redis.timeout = Duration::from_secs(5);
        // Longer than the devstack's 20 ms, so a busy machine cannot fake an outage.
        config.limits.shared_timeout = Duration::from_millis(200);
        // Two replicas: alone, each enforces half of each quota. A unit comes back per minute.
        config.limits.replicas = 2;
        plan_quota(config, Quota::new(1, Duration::from_secs(60), 10));
    })
    .await;

    // Redis answers: the plan's ten, decided in Redis.
    assert_eq!(admitted(&timed(&t, addr, KEY, 12).await), 10);
    assert!(readyz_verbose(&t, addr).await.contains("[+]rate-limits shared through Redis"));

    // Redis stalls: after one timeout, decisions are made here with half of each quota.
    proxy.stall(true);
    assert_eq!(admitted(&timed(&t, addr, OTHER_KEY, 8).await), 5);
    let verbose = readyz_verbose(&t, addr).await;
    assert!(
        verbose.contains("[-]rate-limits Redis unavailable") && verbose.contains("readyz check passed"),
        "{verbose}"
    );

    // Redis answers again: decisions go back to it, where the first key is still spent (in
    // process it never was).
    proxy.stall(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !readyz_verbose(&t, addr).await.contains("[+]rate-limits shared") {
        assert!(Instant::now() < deadline, "limits never went back to Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(product(&t, addr, KEY).await.status, 429, "decided in Redis again");

    // Redis paused (CLIENT PAUSE): the same. The other key is spent in process but not in Redis,
    // so where each decision is made shows.
    redis.command(&["CLIENT", "PAUSE", "1500", "ALL"]).await;
    assert_eq!(timed(&t, addr, OTHER_KEY, 1).await[0].status, 429, "decided in process");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !readyz_verbose(&t, addr).await.contains("[+]rate-limits shared") {
        assert!(Instant::now() < deadline, "limits never went back to Redis after the pause");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(product(&t, addr, OTHER_KEY).await.status, 200, "decided in Redis again");
}

#[tokio::test]
async fn with_redis_refusing_connections_each_replica_enforces_its_share() {
    let t = TestStack::start().await;
    let (_closed, closed) = refusing_addr();
    let addr = partner(&t, |config| {
        shared(&format!("redis://{closed}"), "closed")(config);
        config.redis.timeout = Duration::from_secs(5);
        config.limits.replicas = 4;
        plan_quota(config, Quota::new(1, Duration::from_secs(60), 12));
    })
    .await;
    let replies = timed(&t, addr, KEY, 5).await;
    assert_eq!(admitted(&replies), 3, "a quarter of the burst");
    assert_limited_by(&replies[4], "plan:full");
    assert!(readyz_verbose(&t, addr).await.contains("[-]rate-limits Redis unavailable"));
}
