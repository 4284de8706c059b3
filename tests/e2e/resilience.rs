//! The outbound side's resilience and cache layers against the real demo backends (latency,
//! errors, outages and broken bodies injected there): caching and coalescing that never cross
//! principals, retries, hedging, breakers, the bulkhead, several instances, a canary split,
//! mirroring, and the fault matrix answered through a BFF within its deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bff_backends::{CatalogClient, ProfileChange, UsersClient};
use bff_demo::{Demo, DemoConfig, DemoInstance, Version};
use bff_upstream::layer::{
    BreakerConfig, BulkheadConfig, CanaryConfig, HedgeConfig, MirrorConfig, OperationCache, RetryConfig,
};
use bff_upstream::{
    BreakerState, CacheStatus, CallContext, CallDecisions, CallRecorder, Credential, Identity, UpstreamConfig,
};
use futures::future::join_all;
use serde_json::{Value, json};

use crate::support::{TestStack, at, rss_bytes, shared_redis, unique};

/// The demo backends alone, driven through their control API.
struct Backends {
    demo: Demo,
    http: reqwest::Client,
}

impl Backends {
    async fn start() -> Self {
        bff_upstream::tls::install_default_provider();
        Self { demo: Demo::start(DemoConfig::ephemeral()).await.unwrap(), http: reqwest::Client::new() }
    }

    async fn faults(&self, service: &str, faults: Value) {
        let url = format!("{}/faults/{service}", self.demo.control_url());
        let response = self.http.put(url).json(&faults).send().await.unwrap();
        assert!(response.status().is_success(), "faults for {service}: {}", response.status());
    }

    /// Calls the instance named `service` (`catalog`, `catalog-2`, `catalog-canary`...) has seen.
    async fn count(&self, service: &str) -> u64 {
        let calls: Value =
            self.http.get(format!("{}/calls", self.demo.control_url())).send().await.unwrap().json().await.unwrap();
        calls[service]["count"].as_u64().unwrap_or_else(|| panic!("no record of {service}: {calls:#}"))
    }

    async fn recent(&self, service: &str) -> Vec<Value> {
        let calls: Value =
            self.http.get(format!("{}/calls", self.demo.control_url())).send().await.unwrap().json().await.unwrap();
        calls[service]["recent"].as_array().cloned().unwrap_or_default()
    }

    fn config(&self, addr: std::net::SocketAddr) -> UpstreamConfig {
        UpstreamConfig::new(bff_demo::http_url(addr).parse().unwrap())
    }

    async fn instance(&self, service: &str, version: Version) -> DemoInstance {
        self.demo.start_instance(service, version).await.unwrap()
    }
}

fn url(instance: &DemoInstance) -> url::Url {
    bff_demo::http_url(instance.addr).parse().unwrap()
}

/// A request context acting for user `id` with `scopes`, and the recorder its calls land in.
fn user(id: &str, scopes: &[&str]) -> (CallContext, CallRecorder) {
    let identity = Identity {
        user_id: Some(id.to_owned()),
        client_id: "mobile".to_owned(),
        credential: Credential::User,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        expires_at: None,
    };
    let recorder = CallRecorder::default();
    let cx = CallContext::new(format!("req-{id}")).with_identity(Arc::new(identity)).with_recorder(recorder.clone());
    (cx, recorder)
}

/// What the layers decided for the one call `recorder` holds.
fn decided(recorder: &CallRecorder) -> CallDecisions {
    let calls = recorder.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls[0].decisions.clone()
}

/// The catalog's reads declared public, as the shipped configs do.
fn public_catalog(mut config: UpstreamConfig, ttl: Duration) -> UpstreamConfig {
    for operation in ["GET /products/{id}", "GET /products?ids"] {
        config.cache.operations.insert(operation.to_owned(), OperationCache { ttl, public: true });
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_identical_cacheable_reads_make_one_backend_call() {
    let b = Backends::start().await;
    b.faults("catalog", json!({ "latency_ms": 200 })).await;
    let catalog = CatalogClient::new(&public_catalog(b.config(b.demo.addrs.catalog), Duration::from_secs(30))).unwrap();
    let reads = (0..1000).map(|i| {
        let (cx, recorder) = user(&format!("u-{i}"), &["profile"]);
        let catalog = catalog.clone();
        async move {
            (catalog.get(&cx, "p-7", &["name", "price_cents"]).await.map(|p| p.name().unwrap().to_owned()), recorder)
        }
    });
    let answers = join_all(reads).await;
    assert!(answers.iter().all(|(name, _)| name.as_ref().unwrap() == answers[0].0.as_ref().unwrap()));
    assert_eq!(b.count("catalog").await, 1, "a thousand readers, one catalog call");
    let coalesced = answers.iter().filter(|(_, r)| decided(r).cache == CacheStatus::Coalesced).count();
    assert_eq!(coalesced, 999, "every reader but the leader shared its call");
    // Later readers are answered from the cache.
    let (cx, recorder) = user("u-late", &[]);
    catalog.get(&cx, "p-7", &["name", "price_cents"]).await.unwrap();
    assert_eq!((b.count("catalog").await, decided(&recorder).cache), (1, CacheStatus::Hit));
}

/// The users service answers `Cache-Control: private`: even a call misdeclared public is never
/// shared, by coalescing or by the cache, and two requests that differ only in a forwarded header
/// (the scopes) each make their own call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_answers_never_cross_principals_by_cache_or_coalescing() {
    let b = Backends::start().await;
    b.faults("users", json!({ "latency_ms": 150 })).await;
    let mut config = b.config(b.demo.addrs.users);
    config
        .cache
        .operations
        .insert("GET /users/{id}".into(), OperationCache { ttl: Duration::from_secs(60), public: true });
    let users = UsersClient::new(&config).unwrap();
    let (alice, _) = user("u-1", &["profile"]);
    let (alice_more, _) = user("u-1", &["profile", "orders"]);
    let (bob, _) = user("u-2", &["profile"]);
    let (a, a_more, b_reads_alice) = tokio::join!(
        users.get(&alice, "u-1", &["name"]),
        users.get(&alice_more, "u-1", &["name"]),
        users.get(&bob, "u-1", &["name"]),
    );
    for answer in [a, a_more, b_reads_alice] {
        assert_eq!(answer.unwrap().id, "u-1");
    }
    // Three calls, each carrying its own caller: nobody was handed another's answer.
    let recent = b.recent("users").await;
    let callers: std::collections::BTreeSet<(String, String)> = recent
        .iter()
        .map(|call| {
            (
                call["headers"]["x-user-id"].as_str().unwrap().to_owned(),
                call["headers"]["x-user-scopes"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!((recent.len(), callers.len()), (3, 3), "{recent:#?}");
    // Each caller's answer was kept for that caller only.
    let (alice, recorder) = user("u-1", &["profile"]);
    users.get(&alice, "u-1", &["name"]).await.unwrap();
    assert_eq!((b.count("users").await, decided(&recorder).cache), (3, CacheStatus::Hit));
    let (carol, recorder) = user("u-3", &["profile"]);
    users.get(&carol, "u-1", &["name"]).await.unwrap();
    assert_eq!((b.count("users").await, decided(&recorder).cache), (4, CacheStatus::Miss), "not alice's copy");
}

#[tokio::test]
async fn a_mutation_drops_that_users_cached_reads() {
    let b = Backends::start().await;
    let mut config = b.config(b.demo.addrs.users);
    config.cache.ttl = Some(Duration::from_secs(60));
    let users = UsersClient::new(&config).unwrap();
    let (me, _) = user("u-4", &["profile"]);
    let before = users.get(&me, "u-4", &["name"]).await.unwrap();
    users.get(&me, "u-4", &["name"]).await.unwrap();
    assert_eq!(b.count("users").await, 1, "the second read came from the cache");
    let change = ProfileChange { name: Some("Renamed Person".into()), avatar_url: None };
    users.update(&me, "u-4", &change).await.unwrap();
    let (me, recorder) = user("u-4", &["profile"]);
    let after = users.get(&me, "u-4", &["name"]).await.unwrap();
    assert_eq!(decided(&recorder).cache, CacheStatus::Miss);
    assert_eq!((before.name().unwrap() != "Renamed Person", after.name().unwrap()), (true, "Renamed Person"));
}

#[tokio::test]
async fn stale_if_error_serves_a_stale_entry_while_the_backend_fails() {
    let b = Backends::start().await;
    let mut config = public_catalog(b.config(b.demo.addrs.catalog), Duration::from_millis(100));
    config.cache.stale_if_error = Duration::from_secs(60);
    let catalog = CatalogClient::new(&config).unwrap();
    let without_stale =
        CatalogClient::new(&public_catalog(b.config(b.demo.addrs.catalog), Duration::from_millis(100))).unwrap();
    let (cx, _) = user("u-1", &[]);
    let fresh = catalog.get(&cx, "p-3", &["name"]).await.unwrap();
    without_stale.get(&cx, "p-3", &["name"]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    b.faults("catalog", json!({ "error_rate": 1.0 })).await;
    let (cx, recorder) = user("u-1", &[]);
    let stale = catalog.get(&cx, "p-3", &["name"]).await.unwrap();
    assert_eq!((stale.name().unwrap(), decided(&recorder).cache), (fresh.name().unwrap(), CacheStatus::Stale));
    let (cx, _) = user("u-1", &[]);
    assert_eq!(without_stale.get(&cx, "p-3", &["name"]).await.unwrap_err().kind(), "overloaded");
}

#[tokio::test]
async fn the_shared_level_shares_a_public_entry_between_two_replicas_through_redis() {
    let url = shared_redis().await;
    let b = Backends::start().await;
    let prefix = format!("test-cache-{}", unique());
    let redis_config = bff_gateway::config::RedisConfig {
        key_prefix: prefix.clone(),
        ..bff_gateway::config::RedisConfig::new(url.clone())
    };
    let mut config = public_catalog(b.config(b.demo.addrs.catalog), Duration::from_secs(30));
    config.cache.shared = true;
    let upstreams = bff_upstream::Upstreams([("catalog".to_owned(), config)].into());
    let replica = |redis: &bff_gateway::config::RedisConfig| {
        let store = bff_gateway::store::Redis::from_config(redis).unwrap();
        let upstreams = bff_gateway::store::SharedCache::upstreams(&upstreams, store.as_ref(), "test-bff");
        CatalogClient::new(upstreams.get("catalog").unwrap()).unwrap()
    };
    let (a, b_replica) = (replica(&redis_config), replica(&redis_config));
    let (cx, _) = user("u-1", &[]);
    let first = a.get(&cx, "p-11", &["name"]).await.unwrap();
    // The entry is written behind the answer; wait until it is there.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let pattern = format!("{prefix}:cache:test-bff:catalog:*");
    let mut keys: Vec<String> = Vec::new();
    for _ in 0..100 {
        keys = redis::cmd("KEYS").arg(&pattern).query_async(&mut connection).await.unwrap();
        if !keys.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(keys.len(), 1, "one shared entry, named by a hash (no identity in it)");
    let (cx, recorder) = user("u-2", &[]);
    let second = b_replica.get(&cx, "p-11", &["name"]).await.unwrap();
    assert_eq!((second.name().unwrap(), decided(&recorder).cache), (first.name().unwrap(), CacheStatus::Hit));
    assert_eq!(b.count("catalog").await, 1, "the second replica did not call the catalog");
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut connection).await.unwrap();

    // Redis unreachable: the first level alone, never an error.
    let (_socket, dead) = crate::support::refusing_addr();
    let down = replica(&bff_gateway::config::RedisConfig::new(format!("redis://{dead}")));
    let (cx, recorder) = user("u-3", &[]);
    down.get(&cx, "p-12", &["name"]).await.unwrap();
    assert_eq!((b.count("catalog").await, decided(&recorder).cache), (2, CacheStatus::Miss));
}

#[tokio::test]
async fn retries_happen_only_on_idempotent_calls() {
    let b = Backends::start().await;
    b.faults("users", json!({ "error_rate": 1.0 })).await;
    let users = UsersClient::new(&b.config(b.demo.addrs.users)).unwrap();
    let (me, recorder) = user("u-5", &["profile"]);
    assert_eq!(users.get(&me, "u-5", &["name"]).await.unwrap_err().kind(), "overloaded");
    assert_eq!((b.count("users").await, decided(&recorder).attempts), (2, 2), "a read is tried twice");
    let (me, recorder) = user("u-5", &["profile"]);
    let change = ProfileChange { name: Some("X".into()), avatar_url: None };
    assert!(users.update(&me, "u-5", &change).await.is_err());
    assert_eq!((b.count("users").await, decided(&recorder).attempts), (3, 1), "a write that reached it is not");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_to_a_second_instance_answers_when_the_first_is_slow() {
    let b = Backends::start().await;
    let second = b.instance("catalog", Version::Stable).await;
    b.faults("catalog", json!({ "latency_ms": 1500 })).await;
    let mut config = b.config(b.demo.addrs.catalog);
    config.instances = vec![url(&second)];
    config.hedge = Some(HedgeConfig { delay: Some(Duration::from_millis(50)), ..HedgeConfig::default() });
    let catalog = CatalogClient::new(&config).unwrap();
    let mut hedged = 0;
    for n in 1..=8 {
        let (cx, recorder) = user("u-1", &[]);
        let started = Instant::now();
        catalog.get(&cx, &format!("p-{n}"), &["name"]).await.unwrap();
        let elapsed = started.elapsed();
        let decisions = decided(&recorder);
        // The slow instance takes 1.5s: an answer sooner came from the other one.
        assert!(elapsed < Duration::from_millis(1500), "read {n} took {elapsed:?}: {decisions:?}");
        assert_eq!(decisions.instance.as_deref(), Some(second.addr.to_string().as_str()));
        hedged += usize::from(decisions.hedges);
    }
    assert_eq!(b.count("catalog-2").await, 8, "every answer came from the fast instance");
    assert_eq!(b.count("catalog").await as usize, hedged, "each call to the slow one was hedged");
}

#[tokio::test]
async fn a_failing_backend_trips_its_breaker_fails_fast_and_recovers_through_half_open() {
    let b = Backends::start().await;
    let mut config = b.config(b.demo.addrs.users);
    config.retry = RetryConfig { attempts: 1, ..RetryConfig::default() };
    config.breaker =
        BreakerConfig { consecutive_failures: 5, open_for: Duration::from_millis(400), ..BreakerConfig::default() };
    let users = UsersClient::new(&config).unwrap();
    b.faults("users", json!({ "error_rate": 1.0 })).await;
    for _ in 0..5 {
        let (me, _) = user("u-6", &["profile"]);
        assert_eq!(users.get(&me, "u-6", &["name"]).await.unwrap_err().kind(), "overloaded");
    }
    for _ in 0..20 {
        let (me, recorder) = user("u-6", &["profile"]);
        assert_eq!(users.get(&me, "u-6", &["name"]).await.unwrap_err().kind(), "circuit_open");
        assert_eq!(decided(&recorder).breaker, BreakerState::Open);
    }
    assert_eq!(b.count("users").await, 5, "an open breaker costs the backend nothing");
    b.faults("users", json!({})).await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (me, recorder) = user("u-6", &["profile"]);
    users.get(&me, "u-6", &["name"]).await.unwrap();
    assert_eq!(decided(&recorder).breaker, BreakerState::HalfOpen, "the probe");
    let (me, recorder) = user("u-6", &["profile"]);
    users.get(&me, "u-6", &["name"]).await.unwrap();
    assert_eq!(decided(&recorder).breaker, BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bulkhead_refuses_calls_past_its_limit_while_other_backends_go_on() {
    let b = Backends::start().await;
    b.faults("users", json!({ "latency_ms": 500 })).await;
    let mut config = b.config(b.demo.addrs.users);
    config.bulkhead = BulkheadConfig { max_in_flight: 4 };
    let users = UsersClient::new(&config).unwrap();
    let catalog = CatalogClient::new(&b.config(b.demo.addrs.catalog)).unwrap();
    let slow = (1..=10).map(|n| {
        let users = users.clone();
        async move {
            let (me, _) = user(&format!("u-{n}"), &["profile"]);
            let started = Instant::now();
            (users.get(&me, &format!("u-{n}"), &["name"]).await, started.elapsed())
        }
    });
    let other = async {
        let (cx, _) = user("u-1", &[]);
        catalog.get(&cx, "p-1", &["name"]).await
    };
    let (results, other) = tokio::join!(join_all(slow), other);
    assert!(other.is_ok(), "the catalog was not held up by the users backend");
    let served = results.iter().filter(|(r, _)| r.is_ok()).count();
    let refused: Vec<_> =
        results.iter().filter(|(r, _)| r.as_ref().is_err_and(|e| e.kind() == "bulkhead_full")).collect();
    assert_eq!((served, refused.len()), (4, 6));
    // Refused at once, not after waiting on the slow backend.
    assert!(refused.iter().all(|(_, elapsed)| *elapsed < Duration::from_millis(500)), "{refused:?}");
    assert_eq!(b.count("users").await, 4);
}

#[tokio::test]
async fn with_two_instances_and_one_down_or_failing_traffic_moves_to_the_healthy_one() {
    let b = Backends::start().await;
    let second = b.instance("catalog", Version::Stable).await;
    let mut config = b.config(b.demo.addrs.catalog);
    config.instances = vec![url(&second)];
    let catalog = CatalogClient::new(&config).unwrap();
    b.faults("catalog", json!({ "down": true })).await;
    for n in 1..=30 {
        let (cx, _) = user("u-1", &[]);
        catalog.get(&cx, &format!("p-{n}"), &["name"]).await.unwrap_or_else(|e| panic!("read {n}: {e}"));
    }
    assert_eq!(b.count("catalog-2").await, 30);
    b.faults("catalog", json!({ "error_rate": 1.0 })).await;
    for n in 31..=90 {
        let (cx, _) = user("u-1", &[]);
        catalog.get(&cx, &format!("p-{n}"), &["name"]).await.unwrap_or_else(|e| panic!("read {n}: {e}"));
    }
    // Failing calls were retried on the healthy instance, and the failing one was ejected once
    // its breaker saw half of its last 20 calls fail or 10 in a row.
    let failing = b.count("catalog").await;
    assert!(failing <= 20, "the failing instance got {failing} of 60 calls");
    assert_eq!(b.count("catalog-2").await, 30 + 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_gets_its_share_of_callers_and_each_caller_keeps_its_version() {
    let b = Backends::start().await;
    let canary = b.instance("catalog", Version::Canary).await;
    let mut config = b.config(b.demo.addrs.catalog);
    config.canary = Some(CanaryConfig { urls: vec![url(&canary)], percent: 5.0 });
    let catalog = CatalogClient::new(&config).unwrap();
    const CALLERS: usize = 2000;
    for chunk in (0..CALLERS).collect::<Vec<_>>().chunks(200) {
        join_all(chunk.iter().map(|i| {
            let catalog = catalog.clone();
            async move {
                let (cx, _) = user(&format!("caller-{i}"), &[]);
                catalog.get(&cx, "p-5", &["name"]).await.unwrap();
            }
        }))
        .await;
    }
    // 5% of 2,000 is 100; the binomial standard deviation is under 10: four of them either way.
    let to_canary = b.count("catalog-canary").await;
    assert!((61..=139).contains(&to_canary), "{to_canary} of {CALLERS} callers went to the canary");
    assert_eq!(b.count("catalog").await + to_canary, CALLERS as u64);
    // A caller stays on one version: the canary's answers say so in the name.
    for caller in ["caller-1", "caller-2", "caller-3", "caller-4"] {
        let mut versions = std::collections::BTreeSet::new();
        for _ in 0..10 {
            let (cx, _) = user(caller, &[]);
            versions.insert(catalog.get(&cx, "p-5", &["name"]).await.unwrap().name().unwrap().ends_with("(canary)"));
        }
        assert_eq!(versions.len(), 1, "{caller} saw both versions");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_gets_copies_whose_failures_and_slowness_never_reach_the_client() {
    let b = Backends::start().await;
    let shadow = b.instance("catalog", Version::Shadow).await;
    let mut config = b.config(b.demo.addrs.catalog);
    config.mirror = Some(MirrorConfig { url: url(&shadow), percent: 100.0, max_in_flight: 4, mutations: false });
    let catalog = CatalogClient::new(&config).unwrap();
    for n in 1..=5 {
        let (cx, _) = user("u-1", &[]);
        catalog.get(&cx, &format!("p-{n}"), &["name"]).await.unwrap();
    }
    let mut copies = 0;
    for _ in 0..100 {
        copies = b.count("catalog-shadow").await;
        if copies == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(copies, 5, "every read was copied to the shadow");
    b.faults("catalog-shadow", json!({ "latency_ms": 1500, "error_rate": 1.0 })).await;
    for n in 6..=35 {
        let (cx, _) = user("u-1", &[]);
        let started = Instant::now();
        let product = catalog.get(&cx, &format!("p-{n}"), &["name"]).await.unwrap();
        assert!(!product.name().unwrap().is_empty());
        assert!(started.elapsed() < Duration::from_millis(1500), "the client waited on the shadow");
    }
    let copied = b.count("catalog-shadow").await - 5;
    assert!(copied <= 4, "{copied} copies sent while 4 were stuck: the queue is bounded");
    assert_eq!(b.count("catalog").await, 35);
}

/// Each fault of the matrix, on a REST backend (recommendations) and a gRPC one (orders), is
/// answered by the mobile BFF within its deadline with the rest of the data and the fault's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_of_the_matrix_is_answered_within_the_deadline_with_partial_data() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    let query = "{ home { user { id name } recentOrders(first: 3) { id } recommendations(first: 5) { id name } } }";
    let deadline = bff_platform::DEVSTACK_UPSTREAM_TIMEOUT + Duration::from_secs(1);
    let matrix = [
        (json!({ "malformed_body": true }), &["UPSTREAM_ERROR"][..]),
        (json!({ "oversized_body": true }), &["UPSTREAM_ERROR"][..]),
        (json!({ "dribble_ms": 600 }), &["UPSTREAM_TIMEOUT"][..]),
        (json!({ "reset_mid_body": true }), &["UPSTREAM_ERROR", "UPSTREAM_UNAVAILABLE"][..]),
        (json!({ "stall_body": true }), &["UPSTREAM_TIMEOUT"][..]),
    ];
    for (service, field) in [("recommendations", "recommendations"), ("orders", "recentOrders")] {
        for (fault, codes) in &matrix {
            t.set_faults(service, fault.clone()).await;
            let rss_before = rss_bytes();
            let started = Instant::now();
            let reply = t.graphql(t.stack.mobile, Some(&token), query, json!({})).await;
            let elapsed = started.elapsed();
            let grown = rss_bytes().saturating_sub(rss_before);
            t.set_faults(service, json!({})).await;
            assert_eq!(reply.status, 200, "{service} {fault}: {:#}", reply.body);
            assert!(elapsed < deadline, "{service} {fault}: {elapsed:?}");
            assert_eq!(at(&reply.body, "/data/home/user/id"), "u-1", "{service} {fault}: the rest of the data");
            assert!(reply.body["data"]["home"][field].is_null(), "{service} {fault}: {:#}", reply.body);
            let error_codes = reply.error_codes();
            assert!(
                error_codes.iter().all(|code| codes.contains(&code.as_str())) && !error_codes.is_empty(),
                "{service} {fault}: {error_codes:?}"
            );
            // 24 MiB sent; the BFF reads at most its body limit and keeps nothing of it.
            assert!(grown < 40 << 20, "{service} {fault}: RSS grew {} MiB", grown >> 20);
        }
    }
}

/// The partner API's product needs the catalog and may do without the inventory: an inventory
/// that cannot answer leaves `stock` out and says so in `Partial-Response`; a catalog that cannot
/// answer fails the request with the honest status.
#[tokio::test]
async fn a_partner_answer_leaves_out_an_optional_branch_and_fails_on_a_required_one() {
    let t = TestStack::start().await;
    let key = [("x-api-key", bff_platform::DEMO_PARTNER_API_KEY)];
    t.set_faults("inventory", json!({ "hang": true })).await;
    let reply = t.get(t.stack.partner, "/v2/products/p-2", &key).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(reply.body["id"], "p-2");
    assert!(reply.body.get("stock").is_none() && reply.body["name"].is_string(), "{:#}", reply.body);
    assert_eq!(reply.header("partial-response"), Some(r#"stock; backend="inventory"; code="UPSTREAM_TIMEOUT""#));
    t.set_faults("inventory", json!({})).await;
    let whole = t.get(t.stack.partner, "/v2/products/p-2", &key).await;
    assert_eq!((whole.status.as_u16(), whole.header("partial-response")), (200, None));
    assert!(whole.body["stock"]["available"].is_number());
    t.set_faults("catalog", json!({ "hang": true })).await;
    let timed_out = t.get(t.stack.partner, "/v2/products/p-4", &key).await;
    assert_eq!((timed_out.status.as_u16(), timed_out.body["code"].as_str()), (504, Some("UPSTREAM_TIMEOUT")));
    t.set_faults("catalog", json!({ "down": true })).await;
    let down = t.get(t.stack.partner, "/v2/products/p-6", &key).await;
    assert_eq!((down.status.as_u16(), down.body["code"].as_str()), (503, Some("UPSTREAM_UNAVAILABLE")));
}

/// A leader whose client goes away does not cancel the call its followers wait on, and a
/// follower waits no longer than its own deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coalesced_call_outlives_its_leader_and_no_follower_waits_past_its_deadline() {
    let b = Backends::start().await;
    b.faults("catalog", json!({ "latency_ms": 400 })).await;
    let catalog = CatalogClient::new(&b.config(b.demo.addrs.catalog)).unwrap();
    let leader = {
        let catalog = catalog.clone();
        tokio::spawn(async move {
            let (cx, _) = user("u-1", &[]);
            catalog.get(&cx, "p-9", &["name"]).await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (follower, recorder) = user("u-1", &[]);
    let (hurried, _) = user("u-1", &[]);
    let hurried = hurried.with_deadline(Instant::now() + Duration::from_millis(150));
    let follow = {
        let catalog = catalog.clone();
        tokio::spawn(async move { (catalog.get(&follower, "p-9", &["name"]).await, recorder) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The leader's client goes away.
    leader.abort();
    let started = Instant::now();
    let error = catalog.get(&hurried, "p-9", &["name"]).await.unwrap_err();
    assert_eq!(error.kind(), "timeout", "the hurried follower gave up at its own deadline");
    assert!(started.elapsed() < Duration::from_millis(400), "it did not wait for the backend");
    let (answer, recorder) = follow.await.unwrap();
    assert!(answer.unwrap().name().is_ok(), "the follower got the answer of the abandoned leader's call");
    assert_eq!(decided(&recorder).cache, CacheStatus::Coalesced);
    assert_eq!(b.count("catalog").await, 1);
}
