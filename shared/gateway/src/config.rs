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
use toml::Value;
use url::Url;

pub use bff_upstream::{UpstreamConfig, Upstreams};

/// Whole-request budget when the config says nothing.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body we read when the config says nothing: generous for GraphQL documents.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 256 * 1024;
/// How long in-flight requests may take to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long a replica keeps serving, already reporting itself not ready, after a shutdown
/// signal: zero stops at once; behind a load balancer, its probe interval or a little more.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::ZERO;
/// Longest any server duration may be: past it, a setting is a mistake (and deadlines overflow).
const MAX_SERVER_DURATION: Duration = Duration::from_secs(3600);
/// Most connections or requests a setting may allow: far past what one process serves.
const MAX_SERVER_COUNT: usize = 1_000_000;
/// Requests one BFF serves at once; past it, new ones get an immediate 503 `OVERLOADED`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 256;
/// What the 503 `OVERLOADED` tells clients to wait before trying again.
pub const DEFAULT_OVERLOAD_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Open client connections one BFF holds; past it, new ones wait in the kernel's accept queue.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// How long a client may take to send a request's headers (HTTP/1).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may sit with no request in flight and no bytes moving.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent streams one HTTP/2 connection may open.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Largest request head (request line and headers), HTTP/1 and HTTP/2 alike.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// How long browsers may cache a CORS preflight answer.
pub const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);
/// Clock skew we tolerate on `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
/// How often the signing keys are fetched again: a removed key stops working within this.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// Failed authentication attempts one client address may make per minute before it is refused.
pub const DEFAULT_MAX_FAILURES_PER_MINUTE: u32 = 60;
/// Least time between two JWKS fetches triggered by unknown key ids.
pub const DEFAULT_JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
const MIN_JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(1);
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(2);
/// hyper refuses HTTP/1 read buffers smaller than this.
const MIN_HEADER_BYTES: usize = 8192;

/// The listener, the connection hygiene and the limits every request meets.
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
    #[serde(with = "humantime_serde", default = "defaults::drain_delay")]
    pub drain_delay: Duration,
    #[serde(default = "defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    #[serde(with = "humantime_serde", default = "defaults::overload_retry_after")]
    pub overload_retry_after: Duration,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    #[serde(with = "humantime_serde", default = "defaults::header_read_timeout")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde", default = "defaults::idle_timeout")]
    pub idle_timeout: Duration,
    #[serde(default = "defaults::http2_max_concurrent_streams")]
    pub http2_max_concurrent_streams: u32,
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// Terminate TLS here (`[server.tls]`); without it the BFF speaks plain HTTP, for a load
    /// balancer that terminates TLS in front of it.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed. From anyone else,
    /// the connection's peer is the client, whatever the header says.
    #[serde(default)]
    pub trusted_proxies: Vec<IpBlock>,
    /// Browser origins allowed to call this BFF (`[server.cors]`); none by default.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
}

/// A certificate chain and its private key, PEM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Cross-origin access for browsers. Origins are listed exactly: a wildcard is refused together
/// with credentials (browsers would refuse it anyway, and allowing any origin to send a user's
/// cookies is never what is meant).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// `https://app.example.com`, or `*` for any origin (only without credentials).
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    #[serde(with = "humantime_serde", default = "defaults::cors_max_age")]
    pub max_age: Duration,
}

impl Validate for CorsConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        let wildcard = self.allowed_origins.iter().any(|o| o == "*");
        problems.check(path, "allowed_origins", !self.allowed_origins.is_empty(), "must list at least one origin");
        problems.check(
            path,
            "allowed_origins",
            !(wildcard && self.allow_credentials),
            "`*` cannot be combined with allow_credentials = true: list the origins",
        );
        problems.check(path, "allowed_origins", !wildcard || self.allowed_origins.len() == 1, "`*` stands alone");
        for origin in self.allowed_origins.iter().filter(|o| *o != "*") {
            let parsed = Url::parse(origin).ok();
            let ok = parsed.as_ref().is_some_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.path() == "/"
                    && url.query().is_none()
                    && !origin.ends_with('/')
            });
            problems.check(
                path,
                "allowed_origins",
                ok,
                &format!("`{origin}` is not an origin such as https://app.example.com"),
            );
        }
        problems.check(path, "max_age", self.max_age <= Duration::from_secs(86_400), "must be at most 24h");
    }
}

/// An address or a CIDR block: `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    network: std::net::IpAddr,
    prefix: u8,
}

impl IpBlock {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpBlock {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = text.split_once('/').map_or((text, None), |(a, p)| (a, Some(p)));
        let network: std::net::IpAddr =
            address.parse().map_err(|_| format!("`{text}` is not an address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("`{text}` has a bad prefix length"))?
            }
        };
        Ok(Self { network, prefix })
    }
}

impl<'de> Deserialize<'de> for IpBlock {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

impl ServerConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            drain_delay: DEFAULT_DRAIN_DELAY,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            overload_retry_after: DEFAULT_OVERLOAD_RETRY_AFTER,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            tls: None,
            trusted_proxies: Vec::new(),
            cors: None,
        }
    }
}

impl Validate for ServerConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        for (field, value) in [
            ("request_timeout", self.request_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("overload_retry_after", self.overload_retry_after),
        ] {
            let ok = !value.is_zero() && value <= MAX_SERVER_DURATION;
            problems.check(path, field, ok, "must be between 1ms and 1h");
        }
        for (field, value) in [("shutdown_grace", self.shutdown_grace), ("drain_delay", self.drain_delay)] {
            problems.check(path, field, value <= MAX_SERVER_DURATION, "must be at most 1h");
        }
        problems.check(path, "body_limit_bytes", self.body_limit_bytes >= 1024, "must be at least 1024");
        for (field, value) in
            [("max_concurrent_requests", self.max_concurrent_requests), ("max_connections", self.max_connections)]
        {
            problems.check(path, field, (1..=MAX_SERVER_COUNT).contains(&value), "must be between 1 and 1000000");
        }
        problems.check(
            path,
            "http2_max_concurrent_streams",
            self.http2_max_concurrent_streams >= 1,
            "must be at least 1",
        );
        problems.check(
            path,
            "max_header_bytes",
            (MIN_HEADER_BYTES..=u32::MAX as usize).contains(&self.max_header_bytes),
            "must be at least 8192",
        );
        if let Some(tls) = &self.tls
            && let Err(error) = crate::tls::server_config(tls)
        {
            problems.push(join(path, "tls"), error);
        }
        if let Some(cors) = &self.cors {
            cors.validate(&join(path, "cors"), problems);
        }
    }
}

/// What a BFF is to the core: its name, where its overrides come from, the backends it calls,
/// the credentials it takes, and its own config keys.
pub trait Bff: 'static {
    /// The binary's name, as in `mobile-bff`.
    const NAME: &'static str;
    /// Prefix of environment overrides, as in `MOBILE_BFF`.
    const ENV_PREFIX: &'static str;
    /// Every backend it calls; each needs an `[upstreams.NAME]` section, and no other may appear.
    const BACKENDS: &'static [&'static str];
    /// Whether `[[auth.api_keys]]` may be configured (partners); user-facing BFFs take JWTs only.
    const ACCEPTS_API_KEYS: bool = false;
    /// The BFF's own top-level keys, beside the core's `server`, `auth` and `upstreams`.
    type Own: DeserializeOwned + Validate + Clone + fmt::Debug + Send + Sync + 'static;
}

/// A BFF with no keys of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOwnKeys {}

impl Validate for NoOwnKeys {
    fn validate(&self, _path: &str, _problems: &mut Problems) {}
}

/// Every BFF's config: the sections the core defines once, plus the BFF's own keys.
#[derive(Debug, Clone)]
pub struct Config<Own> {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub upstreams: Upstreams,
    pub own: Own,
}

/// The top-level keys the core owns; everything else belongs to the BFF.
const CORE_SECTIONS: [&str; 3] = ["server", "auth", "upstreams"];

impl<Own: Validate> Config<Own> {
    fn validate_for<B: Bff>(&self, problems: &mut Problems) {
        self.server.validate("server", problems);
        self.auth.validate("auth", problems);
        if !B::ACCEPTS_API_KEYS && !self.auth.api_keys.is_empty() {
            problems.push("auth.api_keys".into(), format!("{} takes bearer tokens only", B::NAME));
        }
        for name in B::BACKENDS {
            if !self.upstreams.0.contains_key(*name) {
                problems.push(format!("upstreams.{name}"), format!("missing: {} calls this backend", B::NAME));
            }
        }
        for (name, upstream) in self.upstreams.iter() {
            if B::BACKENDS.contains(&name) {
                Validate::validate(upstream, &join("upstreams", name), problems);
            } else {
                problems.push(
                    format!("upstreams.{name}"),
                    format!("{} calls no such backend (it calls {})", B::NAME, B::BACKENDS.join(", ")),
                );
            }
        }
        self.own.validate("", problems);
    }
}

/// How callers prove who they are: bearer JWTs from the identity service, and (partner BFFs)
/// API keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub jwt: JwtConfig,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyEntry>,
    /// Past this many failed attempts in a minute, a client address gets 429
    /// `TOO_MANY_FAILED_ATTEMPTS` until the minute is over, before any verification work.
    #[serde(default = "defaults::max_failures_per_minute")]
    pub max_failures_per_minute: u32,
}

impl Validate for AuthConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        self.jwt.validate(&join(path, "jwt"), problems);
        problems.check(path, "max_failures_per_minute", self.max_failures_per_minute >= 1, "must be at least 1");
        for (i, key) in self.api_keys.iter().enumerate() {
            let key_path = format!("{}[{i}]", join(path, "api_keys"));
            key.validate(&key_path, problems);
            let repeated = self.api_keys[..i].iter().any(|earlier| earlier.sha256.eq_ignore_ascii_case(&key.sha256));
            problems.check(&key_path, "sha256", !repeated, "the same key is configured twice");
        }
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
    /// How often the keys are fetched again in the background.
    #[serde(with = "humantime_serde", default = "defaults::jwks_refresh_interval")]
    pub jwks_refresh_interval: Duration,
    /// The `typ` header every token must carry (`at+jwt` for RFC 9068 access tokens), for
    /// issuers that set one; unset, a token's `typ` may be absent, `JWT` or `at+jwt`.
    #[serde(default)]
    pub required_typ: Option<String>,
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
            jwks_refresh_interval: DEFAULT_JWKS_REFRESH_INTERVAL,
            required_typ: None,
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
        problems.check(
            path,
            "jwks_url",
            self.jwks_url.scheme() != "http" || is_loopback(&self.jwks_url),
            "must be https unless the host is loopback: anyone on the path could swap the signing keys",
        );
        problems.check(
            path,
            "jwks_url",
            self.jwks_url.query().is_none()
                && self.jwks_url.path_segments().is_some_and(|mut segments| segments.all(|s| !s.is_empty())),
            "must be a plain path to the key set, without a query or empty segments",
        );
        problems.check(path, "leeway", self.leeway <= Duration::from_secs(300), "must be at most 5m");
        problems.check(path, "jwks_timeout", !self.jwks_timeout.is_zero(), "must be more than zero");
        problems.check(
            path,
            "jwks_refresh_interval",
            (MIN_JWKS_REFETCH_COOLDOWN..=Duration::from_secs(86_400)).contains(&self.jwks_refresh_interval),
            "must be between 1s and 24h",
        );
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
    /// A revoked key is refused with a message that says so; keep it listed until its holder
    /// has moved on, so they learn why.
    #[serde(default)]
    pub revoked: bool,
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
    pub fn drain_delay() -> Duration {
        DEFAULT_DRAIN_DELAY
    }
    pub fn jwt_leeway() -> Duration {
        DEFAULT_JWT_LEEWAY
    }
    pub fn jwks_refetch_cooldown() -> Duration {
        DEFAULT_JWKS_REFETCH_COOLDOWN
    }
    pub fn cors_max_age() -> Duration {
        DEFAULT_CORS_MAX_AGE
    }
    pub fn jwks_refresh_interval() -> Duration {
        DEFAULT_JWKS_REFRESH_INTERVAL
    }
    pub fn max_failures_per_minute() -> u32 {
        DEFAULT_MAX_FAILURES_PER_MINUTE
    }
    pub fn jwks_timeout() -> Duration {
        DEFAULT_JWKS_TIMEOUT
    }
    pub fn max_concurrent_requests() -> usize {
        DEFAULT_MAX_CONCURRENT_REQUESTS
    }
    pub fn overload_retry_after() -> Duration {
        DEFAULT_OVERLOAD_RETRY_AFTER
    }
    pub fn max_connections() -> usize {
        DEFAULT_MAX_CONNECTIONS
    }
    pub fn header_read_timeout() -> Duration {
        DEFAULT_HEADER_READ_TIMEOUT
    }
    pub fn idle_timeout() -> Duration {
        DEFAULT_IDLE_TIMEOUT
    }
    pub fn http2_max_concurrent_streams() -> u32 {
        DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS
    }
    pub fn max_header_bytes() -> usize {
        DEFAULT_MAX_HEADER_BYTES
    }
}

/// `localhost` or a loopback address: traffic that never leaves the machine.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A config section that can check itself beyond what its types say.
pub trait Validate {
    /// Adds a problem per bad value, with `path` (the section's key path) as prefix.
    fn validate(&self, path: &str, problems: &mut Problems);
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

/// Loads `path`, applies `{B::ENV_PREFIX}__*` overrides from the process environment,
/// deserializes and validates.
pub fn load<B: Bff>(path: &Path) -> Result<Config<B::Own>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    // Variables that are not UTF-8 cannot be ours; skipping them beats refusing to start.
    let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    from_toml::<B>(&text, path, env)
}

/// [`load`] on text already read, with the overrides given explicitly as `(NAME, value)` pairs
/// in the environment's syntax (tests and the devstack pass their own).
pub fn from_toml<B: Bff>(
    text: &str,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config<B::Own>, ConfigError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax { path: path.to_owned(), message: e.to_string() })?;
    apply_env_overrides(&mut table, env, B::ENV_PREFIX)?;
    let [server, auth, upstreams] = CORE_SECTIONS.map(|key| table.remove(key));
    let config = Config {
        server: section("server", server)?,
        auth: section("auth", auth)?,
        upstreams: section("upstreams", upstreams.or_else(|| Some(Value::Table(toml::Table::new()))))?,
        // What is left is the BFF's own; its `deny_unknown_fields` catches typos at the top level.
        own: section("", Some(Value::Table(table)))?,
    };
    let mut problems = Problems::default();
    config.validate_for::<B>(&mut problems);
    if problems.0.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(problems.0)) }
}

/// One part of the file, deserialized strictly; errors carry the full key path.
fn section<T: DeserializeOwned>(key: &str, value: Option<Value>) -> Result<T, ConfigError> {
    let value = value.ok_or_else(|| ConfigError::Field { key: key.to_owned(), message: "missing section".into() })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let full = match (key, inner.as_str()) {
            ("", ".") => "(root)".to_owned(),
            ("", inner) => inner.to_owned(),
            (key, ".") => key.to_owned(),
            (key, inner) => format!("{key}.{inner}"),
        };
        ConfigError::Field { key: full, message: e.into_inner().to_string() }
    })
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
