//! The shared store: one Redis per BFF (`[redis]`), where replicas keep the state they share
//! (idempotency records, automatic persisted queries, rate limits, the response cache's shared
//! level: [`SharedCache`]). A single Redis (`url`) or a Redis Cluster (`cluster_nodes`): every
//! key one request touches in one command shares a hash slot (the limits' keys carry one hash
//! tag per BFF), so a decision stays one round trip on a cluster too.
//! A feature's own section says only whether it uses the store (`shared = true`). Connected on
//! first use, so a BFF starts and serves without it; what needs it answers 503 (or treats it as a
//! miss) while it is unreachable, and nothing else waits on it.

mod cache;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::GatewayError;
use crate::config::{Problems, Validate};

/// How long connecting, or one command, may take before the caller is told Redis is unavailable.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// What every key this gateway writes starts with, so a Redis shared with others stays tidy.
pub const DEFAULT_KEY_PREFIX: &str = "bff";
/// How long a lookup in the shared cache may take before it counts as a miss: a backend call is
/// the alternative, so waiting longer than a fast one would is never worth it.
pub const DEFAULT_CACHE_TIMEOUT: Duration = Duration::from_millis(25);

pub use cache::SharedCache;

/// `[redis]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://` for TLS): a single Redis. With neither this nor
    /// `cluster_nodes` nothing is shared, and a feature configured with `shared = true` is a
    /// config error.
    pub url: Option<String>,
    /// A Redis Cluster: some of its nodes (`redis://host:port`), from which the rest and the slot
    /// map are discovered; more than one, so one node down at start does not stop discovery.
    pub cluster_nodes: Vec<String>,
    /// Connecting, and each command.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub key_prefix: String,
    /// A lookup in the response cache's shared level; past it, a miss.
    #[serde(with = "humantime_serde")]
    pub cache_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            cluster_nodes: Vec::new(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            cache_timeout: DEFAULT_CACHE_TIMEOUT,
        }
    }
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: Some(url.into()), ..Self::default() }
    }

    /// A Redis Cluster known by `nodes`.
    pub fn cluster(nodes: impl IntoIterator<Item = String>) -> Self {
        Self { cluster_nodes: nodes.into_iter().collect(), ..Self::default() }
    }

    /// Whether a store is configured at all.
    pub fn is_configured(&self) -> bool {
        self.url.is_some() || !self.cluster_nodes.is_empty()
    }
}

impl Validate for RedisConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        if let Some(url) = &self.url
            && let Err(e) = redis::Client::open(url.as_str())
        {
            problems.push(crate::config::join(path, "url"), format!("not a Redis URL: {e}"));
        }
        if self.url.is_some() && !self.cluster_nodes.is_empty() {
            problems.push(
                crate::config::join(path, "cluster_nodes"),
                "set either `url` (one Redis) or `cluster_nodes` (a Redis Cluster), not both",
            );
        }
        if let Err(e) = redis::cluster::ClusterClient::new(self.cluster_nodes.clone())
            && !self.cluster_nodes.is_empty()
        {
            problems.push(crate::config::join(path, "cluster_nodes"), format!("not Redis node URLs: {e}"));
        }
        problems.check(
            path,
            "timeout",
            !self.timeout.is_zero() && self.timeout <= Duration::from_secs(30),
            "must be between 1ms and 30s: a request waits at most this long on Redis",
        );
        problems.check(
            path,
            "cache_timeout",
            !self.cache_timeout.is_zero() && self.cache_timeout <= Duration::from_secs(1),
            "must be between 1ms and 1s: a cache lookup that waits longer costs more than it saves",
        );
        problems.check(
            path,
            "key_prefix",
            !self.key_prefix.is_empty() && self.key_prefix.bytes().all(|b| b.is_ascii_graphic() && b != b'{'),
            "must be printable ASCII without spaces or `{`",
        );
    }
}

/// One BFF's connection to the shared store: one multiplexed connection (to a single Redis,
/// re-established by its manager; or to each node of a cluster, following its slot map), shared
/// by every feature that uses it.
pub struct Redis {
    client: Client,
    timeout: Duration,
    cache_timeout: Duration,
    key_prefix: String,
    connection: OnceCell<ConnectionKind>,
}

enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// A connection to the store, whichever kind it is: what commands and scripts run on, on behalf
/// of one feature (`store`), each round trip counted ([`round_trips`]).
#[derive(Clone)]
pub struct Connection {
    kind: ConnectionKind,
    /// This feature's series of [`round_trips`], looked up once per connection handle.
    round_trips: Counter,
}

#[derive(Clone)]
enum ConnectionKind {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// Round trips to the store, by feature, since the process started: `bff_redis_round_trips_total`.
/// Process-wide, as the connections are: Redis's own command count includes the commands its
/// scripts run, so only the client side can say how many times a request waited on it.
pub fn round_trips() -> &'static Family<[(&'static str, &'static str); 1], Counter> {
    static ROUND_TRIPS: std::sync::OnceLock<Family<[(&'static str, &'static str); 1], Counter>> =
        std::sync::OnceLock::new();
    ROUND_TRIPS.get_or_init(Family::default)
}

impl Connection {
    fn count(&self) {
        self.round_trips.inc();
    }
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        self.count();
        match &mut self.kind {
            ConnectionKind::Single(connection) => connection.req_packed_command(cmd),
            ConnectionKind::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.count();
        match &mut self.kind {
            ConnectionKind::Single(connection) => connection.req_packed_commands(cmd, offset, count),
            ConnectionKind::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.kind {
            ConnectionKind::Single(connection) => connection.get_db(),
            ConnectionKind::Cluster(connection) => connection.get_db(),
        }
    }
}

impl Redis {
    /// The store `config` describes, when it names one.
    pub fn from_config(config: &RedisConfig) -> Result<Option<Arc<Self>>, GatewayError> {
        let client = if let Some(url) = &config.url {
            Client::Single(
                redis::Client::open(url.as_str()).map_err(|e| GatewayError::Internal(format!("redis.url: {e}")))?,
            )
        } else if !config.cluster_nodes.is_empty() {
            let client = redis::cluster::ClusterClientBuilder::new(config.cluster_nodes.clone())
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                // One retry after a MOVED or a dropped connection, as for a single Redis: a
                // request waits on the store for a bounded time either way.
                .retries(1)
                .build()
                .map_err(|e| GatewayError::Internal(format!("redis.cluster_nodes: {e}")))?;
            Client::Cluster(client)
        } else {
            return Ok(None);
        };
        Ok(Some(Arc::new(Self {
            client,
            timeout: config.timeout,
            cache_timeout: config.cache_timeout,
            key_prefix: config.key_prefix.clone(),
            connection: OnceCell::new(),
        })))
    }

    /// `{prefix}:{name}`: every key a feature writes.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.key_prefix)
    }

    /// `{prefix}:{tag}:`, the start of keys that must share a hash slot (one command, or one
    /// script, touches them all): on a cluster they live on one node, found in one round trip.
    pub fn tagged_prefix(&self, tag: &str) -> String {
        format!("{}:{{{tag}}}:", self.key_prefix)
    }

    /// Runs `command` for `store` (named in errors and logs).
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        store: &'static str,
        command: &redis::Cmd,
    ) -> Result<T, GatewayError> {
        let mut connection = self.connection(store).await?;
        command.query_async(&mut connection).await.map_err(|e| unavailable(store, e.to_string()))
    }

    /// The shared connection, for what a single command cannot say (a script), on behalf of
    /// `store`. Cheap: a handle to the one multiplexed connection.
    pub async fn connection(&self, store: &'static str) -> Result<Connection, GatewayError> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                match &self.client {
                    Client::Single(client) => {
                        let config = redis::aio::ConnectionManagerConfig::new()
                            .set_connection_timeout(self.timeout)
                            .set_response_timeout(self.timeout)
                            .set_number_of_retries(1);
                        redis::aio::ConnectionManager::new_with_config(client.clone(), config)
                            .await
                            .map(ConnectionKind::Single)
                    }
                    Client::Cluster(client) => {
                        // Discovery connects to every seed at once, each bounded by `timeout`, and
                        // then asks for the slot map: a bound of two `timeout`s lets a seed that
                        // never answers time out on its own instead of failing discovery.
                        tokio::time::timeout(2 * self.timeout, client.get_async_connection())
                            .await
                            .unwrap_or_else(|_| Err((redis::ErrorKind::IoError, "cluster discovery timed out").into()))
                            .map(ConnectionKind::Cluster)
                    }
                }
                .map_err(|e| unavailable(store, e.to_string()))
            })
            .await?;
        // `rate limit store` -> `rate limit`: the label names the feature.
        let round_trips = round_trips().get_or_create(&[("store", store.trim_end_matches(" store"))]).clone();
        Ok(Connection { kind: connection.clone(), round_trips })
    }
}

/// The error a feature reports when its store cannot serve it.
pub fn unavailable(store: &'static str, detail: String) -> GatewayError {
    GatewayError::StoreUnavailable { store, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_bad_settings_are_reported_by_key_path() {
        let redis = Redis::from_config(&RedisConfig::new("redis://127.0.0.1:6379")).unwrap().unwrap();
        assert_eq!(redis.key("apq:ab"), "bff:apq:ab");
        assert_eq!(redis.tagged_prefix("rl:mobile-bff"), "bff:{rl:mobile-bff}:");
        assert!(Redis::from_config(&RedisConfig::default()).unwrap().is_none());
        let cluster = RedisConfig::cluster(["redis://127.0.0.1:7000".to_owned()]);
        assert!(cluster.is_configured() && Redis::from_config(&cluster).unwrap().is_some());
        let bad = RedisConfig {
            url: Some("http://nope".into()),
            cluster_nodes: vec!["redis://127.0.0.1:7000".into()],
            key_prefix: "a b".into(),
            ..RedisConfig::default()
        };
        let mut problems = Problems::default();
        bad.validate("redis", &mut problems);
        assert_eq!(problems.keys(), ["redis.url", "redis.cluster_nodes", "redis.key_prefix"]);
    }
}
