//! Configuration: a TOML file, overridden by environment variables, deserialized strictly
//! (`deny_unknown_fields`, humantime durations) and then validated. Every problem is reported with
//! its key path, all at once, before the process serves anything.
//!
//! Environment overrides use the BFF's prefix and `__` between keys:
//! `MOBILE_BFF__SERVER__LISTEN=0.0.0.0:8080` sets `server.listen`. Values are read as TOML
//! (numbers, booleans, arrays) and fall back to plain strings; quote a value that must stay a
//! string but reads as something else: `WEB_BFF__AUTH__AUDIENCE='"12345"'`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

pub use bff_upstream::UpstreamConfig;

/// Whole-request budget when the config says nothing.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body we read when the config says nothing: generous for GraphQL documents.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 256 * 1024;
/// How long in-flight requests may take to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Clock skew we tolerate on `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
/// Least time between two JWKS fetches triggered by unknown key ids.
pub const DEFAULT_JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
const MIN_JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(1);
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(2);

/// The listener and the limits every request meets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    #[serde(with = "humantime_serde", default = "defaults::request_timeout")]
    pub request_timeout: Duration,
    #[serde(default = "defaults::body_limit_bytes")]
    pub body_limit_bytes: usize,
    #[serde(with = "humantime_serde", default = "defaults::shutdown_grace")]
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl Validate for ServerConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        problems.check(path, "request_timeout", !self.request_timeout.is_zero(), "must be more than zero");
        problems.check(path, "body_limit_bytes", self.body_limit_bytes >= 1024, "must be at least 1024");
    }
}

/// Bearer JWTs issued by the identity service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry: this BFF's audience.
    pub audience: String,
    pub jwks_url: Url,
    #[serde(with = "humantime_serde", default = "defaults::jwt_leeway")]
    pub leeway: Duration,
    #[serde(with = "humantime_serde", default = "defaults::jwks_refetch_cooldown")]
    pub jwks_refetch_cooldown: Duration,
    #[serde(with = "humantime_serde", default = "defaults::jwks_timeout")]
    pub jwks_timeout: Duration,
}

impl JwtConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, jwks_url: Url) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url,
            leeway: DEFAULT_JWT_LEEWAY,
            jwks_refetch_cooldown: DEFAULT_JWKS_REFETCH_COOLDOWN,
            jwks_timeout: DEFAULT_JWKS_TIMEOUT,
        }
    }
}

impl Validate for JwtConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        problems.check(path, "issuer", !self.issuer.trim().is_empty(), "must not be empty");
        problems.check(path, "audience", !self.audience.trim().is_empty(), "must not be empty");
        problems.check(
            path,
            "jwks_url",
            matches!(self.jwks_url.scheme(), "http" | "https") && self.jwks_url.host().is_some(),
            "must be an http(s) URL with a host",
        );
        problems.check(path, "leeway", self.leeway <= Duration::from_secs(300), "must be at most 5m");
        problems.check(path, "jwks_timeout", !self.jwks_timeout.is_zero(), "must be more than zero");
        problems.check(
            path,
            "jwks_refetch_cooldown",
            self.jwks_refetch_cooldown >= MIN_JWKS_REFETCH_COOLDOWN,
            "must be at least 1s, or made-up key ids turn every request into a JWKS fetch",
        );
    }
}

/// One partner API key. Only its SHA-256 is stored: `printf %s KEY | sha256sum`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    pub client_id: String,
    pub sha256: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl Validate for ApiKeyEntry {
    fn validate(&self, path: &str, problems: &mut Problems) {
        problems.check(path, "client_id", !self.client_id.trim().is_empty(), "must not be empty");
        problems.check(
            path,
            "sha256",
            self.sha256.len() == 64 && self.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "must be 64 hex digits (the SHA-256 of the key)",
        );
    }
}

impl Validate for UpstreamConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        for (field, message) in UpstreamConfig::validate(self) {
            problems.push(join(path, field), message);
        }
    }
}

mod defaults {
    use super::*;

    pub fn request_timeout() -> Duration {
        DEFAULT_REQUEST_TIMEOUT
    }
    pub fn body_limit_bytes() -> usize {
        DEFAULT_BODY_LIMIT_BYTES
    }
    pub fn shutdown_grace() -> Duration {
        DEFAULT_SHUTDOWN_GRACE
    }
    pub fn jwt_leeway() -> Duration {
        DEFAULT_JWT_LEEWAY
    }
    pub fn jwks_refetch_cooldown() -> Duration {
        DEFAULT_JWKS_REFETCH_COOLDOWN
    }
    pub fn jwks_timeout() -> Duration {
        DEFAULT_JWKS_TIMEOUT
    }
}

/// A config section that can check itself beyond what its types say.
pub trait Validate {
    /// Adds a problem per bad value, with `path` (the section's key path) as prefix.
    fn validate(&self, path: &str, problems: &mut Problems);

    /// Validates the whole config, `Err` listing every problem.
    fn validated(self) -> Result<Self, ConfigError>
    where
        Self: Sized,
    {
        let mut problems = Problems::default();
        self.validate("", &mut problems);
        if problems.0.is_empty() { Ok(self) } else { Err(ConfigError::Invalid(problems.0)) }
    }
}

/// The problems found while validating.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, key: String, message: impl Into<String>) {
        self.0.push(Problem { key, message: message.into() });
    }

    pub fn check(&mut self, path: &str, field: &str, ok: bool, message: &str) {
        if !ok {
            self.push(join(path, field), message);
        }
    }
}

/// `path` and `field` as one dotted key path.
pub fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("{key}: {message}")]
    Field { key: String, message: String },
    #[error("invalid config:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Every key path this error names, for tests and tooling.
    pub fn keys(&self) -> Vec<String> {
        match self {
            Self::Field { key, .. } => vec![key.clone()],
            Self::Invalid(problems) => problems.iter().map(|p| p.key.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Loads `path`, applies `{env_prefix}__*` overrides from the process environment, deserializes
/// and validates.
pub fn load<C: DeserializeOwned + Validate>(path: &Path, env_prefix: &str) -> Result<C, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    // Variables that are not UTF-8 cannot be ours; skipping them beats refusing to start.
    let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    from_toml(&text, path, env, env_prefix)
}

/// [`load`] on text already read, with the environment given explicitly (tests pass their own).
pub fn from_toml<C: DeserializeOwned + Validate>(
    text: &str,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    env_prefix: &str,
) -> Result<C, ConfigError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax { path: path.to_owned(), message: e.to_string() })?;
    apply_env_overrides(&mut table, env, env_prefix)?;
    let config: C = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Field {
            key: if key == "." { "(root)".to_owned() } else { key },
            message: e.into_inner().to_string(),
        }
    })?;
    config.validated()
}

fn apply_env_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    prefix: &str,
) -> Result<(), ConfigError> {
    let prefix = format!("{prefix}__");
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(&prefix) else { continue };
        let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError::Env { name, message: "empty key segment".into() });
        }
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let (last, parents) = keys.split_last().expect("split yields at least one segment");
        let mut node = &mut *table;
        for key in parents {
            let entry = node.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry
                .as_table_mut()
                .ok_or_else(|| ConfigError::Env { name: name.clone(), message: format!("`{key}` is not a table") })?;
        }
        node.insert(last.clone(), value);
    }
    Ok(())
}
