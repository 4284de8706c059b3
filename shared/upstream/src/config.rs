use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::UpstreamError;

/// How long one backend call may take when the config says nothing.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long establishing a connection may take when the config says nothing.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest per-call timeout we accept: anything longer is a misconfiguration, not a need.
const MAX_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);

/// Where one backend lives and how long we wait for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL: `http://host:port` or `https://host:port` (gRPC backends too).
    pub url: Url,
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
        }
    }

    /// Problems with this section, as `(field, message)` pairs for the caller to prefix with
    /// the section's key path.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !matches!(self.url.scheme(), "http" | "https") {
            problems.push(("url", format!("scheme must be http or https, not `{}`", self.url.scheme())));
        }
        if self.url.host().is_none() {
            problems.push(("url", "must name a host".to_owned()));
        }
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
}
