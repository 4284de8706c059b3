use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::UpstreamError;
use crate::layer::{
    BreakerConfig, BulkheadConfig, CacheConfig, CanaryConfig, HedgeConfig, MirrorConfig, RetryConfig, SecondLevelHandle,
};

/// How long one backend call may take when the config says nothing.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long establishing a connection may take when the config says nothing.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest per-call timeout we accept: anything longer is a misconfiguration, not a need.
const MAX_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);

/// Where one backend lives, how long we wait for it, and how its calls are contained: each
/// resilience layer's section is documented beside the layer (`layer/*.rs`). Every backend gets
/// a breaker, a bulkhead, retries and coalescing by default; a cache, hedging, a canary and a
/// mirror when configured. `[upstreams.defaults]` gives any of these keys to every backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL: `http://host:port` or `https://host:port` (gRPC backends too).
    pub url: Url,
    /// More instances of the same backend, balanced with `url`.
    #[serde(default)]
    pub instances: Vec<Url>,
    /// Per-call timeout, capped further by the inbound request's deadline.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// A PEM file of CA certificates trusted for `https://` besides the public web roots: for
    /// backends behind a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Pass the backend's own rejection text (a 4xx body's message, a gRPC status message) on to
    /// clients. Only for backends that write those messages for clients; otherwise clients get a
    /// generic message with the code, and internal detail stays inside.
    #[serde(default)]
    pub expose_errors: bool,
    /// Operation templates that are safe to send twice besides GETs (gRPC reads): they may be
    /// retried after a failure that reached the backend, hedged, coalesced and cached.
    #[serde(default)]
    pub idempotent: Vec<String>,
    #[serde(default)]
    pub cache: CacheConfig,
    /// Concurrent identical reads become one call.
    #[serde(default = "yes")]
    pub coalesce: bool,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub hedge: Option<HedgeConfig>,
    #[serde(default)]
    pub breaker: BreakerConfig,
    #[serde(default)]
    pub bulkhead: BulkheadConfig,
    #[serde(default)]
    pub canary: Option<CanaryConfig>,
    #[serde(default)]
    pub mirror: Option<MirrorConfig>,
    /// Where the instances' breakers are registered for metrics, attached at start
    /// ([`Upstreams::report_health_to`]).
    #[serde(skip)]
    pub health: crate::HealthRegistry,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    DEFAULT_UPSTREAM_TIMEOUT
}

fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}

impl UpstreamConfig {
    pub fn new(url: Url) -> Self {
        Self {
            url,
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ca_file: None,
            expose_errors: false,
            instances: Vec::new(),
            idempotent: Vec::new(),
            cache: CacheConfig::default(),
            coalesce: true,
            retry: RetryConfig::default(),
            hedge: None,
            breaker: BreakerConfig::default(),
            bulkhead: BulkheadConfig::default(),
            canary: None,
            mirror: None,
            health: crate::HealthRegistry::default(),
        }
    }

    /// Every instance of the stable version: `url`, then `instances`.
    pub fn instances(&self) -> Vec<Url> {
        std::iter::once(self.url.clone()).chain(self.instances.iter().cloned()).collect()
    }

    /// Problems with this section, as `(field, message)` pairs for the caller to prefix with
    /// the section's key path.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let urls = self.instances.iter().map(|url| ("instances", url));
        let urls = urls.chain(self.canary.iter().flat_map(|canary| canary.urls.iter().map(|url| ("canary.urls", url))));
        let urls = urls.chain(self.mirror.iter().map(|mirror| ("mirror.url", &mirror.url)));
        for (field, url) in std::iter::once(("url", &self.url)).chain(urls) {
            if !matches!(url.scheme(), "http" | "https") {
                problems.push((field, format!("scheme must be http or https, not `{}`", url.scheme())));
            }
            if url.host().is_none() {
                problems.push((field, "must name a host".to_owned()));
            }
        }
        if self.instances.len() > 64 {
            problems.push(("instances", "at most 64".to_owned()));
        }
        problems.extend(self.cache.validate());
        problems.extend(self.retry.validate());
        problems.extend(self.hedge.iter().flat_map(HedgeConfig::validate));
        problems.extend(self.breaker.validate());
        problems.extend(self.bulkhead.validate());
        problems.extend(self.canary.iter().flat_map(CanaryConfig::validate));
        problems.extend(self.mirror.iter().flat_map(MirrorConfig::validate));
        for (field, value) in [("timeout", self.timeout), ("connect_timeout", self.connect_timeout)] {
            if value.is_zero() || value > MAX_UPSTREAM_TIMEOUT {
                problems.push((field, format!("must be between 1ms and {}s", MAX_UPSTREAM_TIMEOUT.as_secs())));
            }
        }
        if let Some(path) = &self.ca_file
            && let Err(error) = crate::tls::read_certificates(path)
        {
            problems.push(("ca_file", error));
        }
        problems
    }
}

/// Every backend of a BFF by name: `[upstreams.users]`, `[upstreams.orders]`, ...
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Upstreams(pub BTreeMap<String, UpstreamConfig>);

impl Upstreams {
    /// The section of backend `name`; a missing one is a config error naming it.
    pub fn get(&self, name: &'static str) -> Result<&UpstreamConfig, UpstreamError> {
        self.0.get(name).ok_or(UpstreamError::Config { service: name, reason: "no `[upstreams.*]` section".into() })
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut UpstreamConfig> {
        self.0.get_mut(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &UpstreamConfig)> {
        self.0.iter().map(|(name, config)| (name.as_str(), config))
    }

    /// Registers every backend's instances in `registry` once built, for its metrics.
    pub fn report_health_to(&mut self, registry: &crate::HealthRegistry) {
        for config in self.0.values_mut() {
            config.health = registry.clone();
        }
    }

    /// Attaches the shared store to every backend whose cache says `shared = true`.
    pub fn share_cache_through(&mut self, second_level: &SecondLevelHandle) {
        for config in self.0.values_mut().filter(|config| config.cache.shared) {
            config.cache.second_level = Some(second_level.clone());
        }
    }

    /// The key paths (below `upstreams`) of the settings that need the shared store.
    pub fn needing_shared_store(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().filter(|(_, config)| config.cache.shared).map(|(name, _)| format!("{name}.cache.shared"))
    }
}
