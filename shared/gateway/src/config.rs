//! Configuration: a TOML file, overridden by environment variables, deserialized strictly
//! (`deny_unknown_fields`, humantime durations) and then validated. Every problem is reported with
//! its key path, all at once, before the process serves anything.
//!
//! Environment overrides use the BFF's prefix and `__` between keys:
//! `MOBILE_BFF__SERVER__LISTEN=0.0.0.0:8080` sets `server.listen`. Values are read as TOML
//! (numbers, booleans, arrays) and fall back to plain strings; quote a value that must stay a
//! string but reads as something else: `WEB_BFF__AUTH__AUDIENCE='"12345"'`.

//!
//! The loader is all that lives here: each section's type, defaults and validation live with its
//! concern ([`ServerConfig`], [`AuthConfig`], [`RedisConfig`], [`LimitsConfig`], `UpstreamConfig`,
//! and a BFF's own).
//! A struct takes its defaults from its `Default` impl (`#[serde(default)]` on the struct), which
//! names each value once as a constant.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Value;

pub use crate::auth::config::{ApiKeyEntry, AuthConfig, JwtConfig};
use crate::backends::BackendSet;
pub use crate::inbound::client_addr::IpBlock;
pub use crate::inbound::cors::CorsConfig;
pub use crate::limits::LimitsConfig;
pub use crate::reload::ReloadConfig;
pub use crate::server::config::{ServerConfig, TlsConfig};
pub use crate::store::RedisConfig;
pub use crate::telemetry::TelemetryConfig;
pub use bff_upstream::{UpstreamConfig, Upstreams};

/// What a BFF is to the core: its name, where its overrides come from, the backends it calls,
/// the credentials it takes, and its own config keys.
pub trait Bff: 'static {
    /// The binary's name, as in `mobile-bff`.
    const NAME: &'static str;
    /// Prefix of environment overrides, as in `MOBILE_BFF`.
    const ENV_PREFIX: &'static str;
    /// Every backend it calls ([`backends!`](crate::backends!)); each needs an `[upstreams.NAME]`
    /// section, and no other may appear.
    type Backends: BackendSet;
    /// Whether `[[auth.api_keys]]` may be configured (partners); user-facing BFFs take JWTs only.
    const ACCEPTS_API_KEYS: bool = false;
    /// The BFF's own top-level keys, beside the core's `server`, `auth`, `redis`, `limits`
    /// and `upstreams`.
    type Own: DeserializeOwned + Validate + Clone + fmt::Debug + Send + Sync + 'static;

    /// Every route this BFF serves under `config`, for `routes` and the admin listener.
    fn route_table(_config: &Config<Self::Own>) -> Vec<crate::telemetry::route_table::RouteEntry> {
        Vec::new()
    }
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
    /// The shared store, for the features whose section says `shared = true`.
    pub redis: RedisConfig,
    pub limits: LimitsConfig,
    pub upstreams: Upstreams,
    /// Traces: OpenTelemetry over OTLP, off unless an endpoint is set.
    pub telemetry: TelemetryConfig,
    /// When the config is read again while serving.
    pub reload: ReloadConfig,
    pub own: Own,
}

/// The top-level keys the core owns; everything else belongs to the BFF.
const CORE_SECTIONS: [&str; 7] = ["server", "auth", "redis", "limits", "upstreams", "telemetry", "reload"];

impl<Own: Validate> Config<Own> {
    fn validate_for<B: Bff>(&self, problems: &mut Problems) {
        self.server.validate("server", problems);
        self.auth.validate("auth", problems);
        self.redis.validate("redis", problems);
        self.limits.validate("limits", problems);
        self.telemetry.validate("telemetry", problems);
        self.reload.validate("reload", problems);
        if !B::ACCEPTS_API_KEYS && !self.auth.api_keys.is_empty() {
            problems.push("auth.api_keys".into(), format!("{} takes bearer tokens only", B::NAME));
        }
        for name in <B::Backends as BackendSet>::NAMES {
            if !self.upstreams.0.contains_key(*name) {
                problems.push(format!("upstreams.{name}"), format!("missing: {} calls this backend", B::NAME));
            }
        }
        for (name, upstream) in self.upstreams.iter() {
            if <B::Backends as BackendSet>::NAMES.contains(&name) {
                Validate::validate(upstream, &join("upstreams", name), problems);
            } else {
                problems.push(
                    format!("upstreams.{name}"),
                    format!(
                        "{} calls no such backend (it calls {})",
                        B::NAME,
                        <B::Backends as BackendSet>::NAMES.join(", ")
                    ),
                );
            }
        }
        self.own.validate("", problems);
        if !self.redis.is_configured() {
            let mut users = Vec::new();
            self.limits.shared_store_users("limits", &mut users);
            users.extend(self.upstreams.needing_shared_store().map(|key| join("upstreams", &key)));
            self.own.shared_store_users("", &mut users);
            for key in users {
                problems.push(key, "needs the shared store: set [redis] url");
            }
        }
    }
}

impl Validate for UpstreamConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        for (field, message) in UpstreamConfig::validate(self) {
            problems.push(join(path, field), message);
        }
    }
}

/// A config section that can check itself beyond what its types say.
pub trait Validate {
    /// Adds a problem per bad value, with `path` (the section's key path) as prefix.
    fn validate(&self, path: &str, problems: &mut Problems);

    /// The key paths of the settings that ask for the shared store (`[redis]`), so validation
    /// can say which ones need it when none is configured.
    fn shared_store_users(&self, _path: &str, _users: &mut Vec<String>) {}
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

    /// The key path of each problem, in the order found.
    pub fn keys(&self) -> Vec<String> {
        self.0.iter().map(|p| p.key.clone()).collect()
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
    from_toml::<B>(&read(path)?, path, process_env())
}

/// The text of the config file at `path`.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })
}

/// The process's environment as `(NAME, value)` pairs, for [`from_toml`]'s overrides.
pub fn process_env() -> impl Iterator<Item = (String, String)> {
    // Variables that are not UTF-8 cannot be ours; skipping them beats refusing to start.
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

/// Where a health check on this machine reaches the BFF `path` configures: `[server]
/// admin_listen`, else `listen` (when it speaks plain HTTP), environment overrides applied, an
/// unspecified address (`0.0.0.0`, `::`) taken as loopback. No other key is read or checked.
pub fn probe_address<B: Bff>(path: &Path) -> Result<std::net::SocketAddr, ConfigError> {
    let mut table: toml::Table = read(path)?
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax { path: path.to_owned(), message: e.to_string() })?;
    apply_env_overrides(&mut table, process_env(), B::ENV_PREFIX)?;
    let server = table.get("server").and_then(Value::as_table);
    let address = |key: &str| -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let Some(value) = server.and_then(|server| server.get(key)) else { return Ok(None) };
        let field = || ConfigError::Field { key: format!("server.{key}"), message: "not a socket address".into() };
        value.as_str().ok_or_else(field)?.parse().map(Some).map_err(|_| field())
    };
    let tls = server.is_some_and(|server| server.contains_key("tls"));
    let addr = match (address("admin_listen")?, address("listen")?) {
        (Some(admin), _) => admin,
        (None, Some(listen)) if !tls => listen,
        _ => {
            return Err(ConfigError::Field {
                key: "server.admin_listen".into(),
                message: "needed for a health check (the public listener speaks TLS or is not set)".into(),
            });
        }
    };
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    Ok(std::net::SocketAddr::new(ip, addr.port()))
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
    let [server, auth, redis, limits, mut upstreams, telemetry, reload] = CORE_SECTIONS.map(|key| table.remove(key));
    if let Some(Value::Table(backends)) = &mut upstreams {
        apply_upstream_defaults(backends);
    }
    // `[auth]` has keys without defaults, so it must be there; the others may be left out.
    let or_empty = |value: Option<Value>| value.or_else(|| Some(Value::Table(toml::Table::new())));
    let config = Config {
        server: section("server", or_empty(server))?,
        auth: section("auth", auth)?,
        redis: section("redis", or_empty(redis))?,
        limits: section("limits", or_empty(limits))?,
        upstreams: section("upstreams", or_empty(upstreams))?,
        telemetry: section("telemetry", or_empty(telemetry))?,
        reload: section("reload", or_empty(reload))?,
        // What is left is the BFF's own; its `deny_unknown_fields` catches typos at the top level.
        own: section("", Some(Value::Table(table)))?,
    };
    let mut problems = Problems::default();
    config.validate_for::<B>(&mut problems);
    if problems.0.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(problems.0)) }
}

/// `[upstreams.defaults]` given to every backend: each backend's own keys win, table by table
/// (`[upstreams.catalog.breaker] open_for` overrides only that key of the defaults' breaker).
fn apply_upstream_defaults(backends: &mut toml::Table) {
    let Some(Value::Table(defaults)) = backends.remove(UPSTREAM_DEFAULTS) else { return };
    for (_, backend) in backends.iter_mut() {
        if let Value::Table(own) = backend {
            merge_missing(own, &defaults);
        }
    }
}

/// The section of `[upstreams]` whose keys every backend gets unless it sets its own.
pub const UPSTREAM_DEFAULTS: &str = "defaults";

fn merge_missing(own: &mut toml::Table, defaults: &toml::Table) {
    for (key, default) in defaults {
        match (own.get_mut(key), default) {
            // A backend's own operation list replaces the defaults' whole: an operation declared
            // public in the defaults must not make the backend's own entry for it public.
            (Some(_), _) if key == "operations" => {}
            (Some(Value::Table(own)), Value::Table(default)) => merge_missing(own, default),
            (Some(_), _) => {}
            (None, default) => {
                own.insert(key.clone(), default.clone());
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::graphql::GraphQlKeys;
    use crate::health::ReadinessCheck;

    struct NoBackends;

    impl BackendSet for NoBackends {
        const NAMES: &'static [&'static str] = &["users"];

        fn readiness_checks(&self) -> Vec<ReadinessCheck> {
            Vec::new()
        }
    }

    struct Test;

    impl Bff for Test {
        const NAME: &'static str = "test-bff";
        const ENV_PREFIX: &'static str = "TEST_BFF";
        type Backends = NoBackends;
        type Own = GraphQlKeys;
    }

    const MINIMAL: &str = r#"
        [server]
        listen = "127.0.0.1:0"
        [auth.jwt]
        issuer = "https://idp.example.com"
        audience = "test"
        jwks_url = "https://idp.example.com/jwks"
        [upstreams.users]
        url = "http://127.0.0.1:5001"
    "#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config<GraphQlKeys>, ConfigError> {
        from_toml::<Test>(text, Path::new("test.toml"), env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn a_feature_shared_through_the_store_needs_the_store() {
        let env = [("TEST_BFF__GRAPHQL__PERSISTED_QUERIES__SHARED", "true")];
        let error = load(MINIMAL, &env).unwrap_err();
        assert_eq!(error.keys(), ["graphql.persisted_queries.shared"], "{error}");
        let with_store = [env[0], ("TEST_BFF__REDIS__URL", "redis://127.0.0.1:6379")];
        let config = load(MINIMAL, &with_store).unwrap();
        assert_eq!(config.redis.url.as_deref(), Some("redis://127.0.0.1:6379"));
    }

    #[test]
    fn the_declared_backends_are_exactly_the_upstream_sections() {
        let extra = format!("{MINIMAL}\n[upstreams.stranger]\nurl = \"http://127.0.0.1:9\"\n");
        assert_eq!(load(&extra, &[]).unwrap_err().keys(), ["upstreams.stranger"]);
        let missing = MINIMAL.replace("[upstreams.users]", "[upstreams.other]");
        assert_eq!(load(&missing, &[]).unwrap_err().keys(), ["upstreams.users", "upstreams.other"]);
    }

    #[test]
    fn upstream_defaults_reach_every_backend_and_its_own_keys_win() {
        let text = format!(
            "{MINIMAL}\ntimeout = \"750ms\"\n[upstreams.users.breaker]\nopen_for = \"1s\"\n\
             [upstreams.defaults]\ntimeout = \"3s\"\nconnect_timeout = \"250ms\"\n\
             [upstreams.defaults.breaker]\nconsecutive_failures = 3\nopen_for = \"9s\"\n"
        );
        let config = load(&text, &[]).unwrap();
        let users = config.upstreams.get("users").unwrap();
        assert_eq!(users.timeout, Duration::from_millis(750), "the backend's own key wins");
        assert_eq!(users.connect_timeout, Duration::from_millis(250), "a key it leaves out comes from the defaults");
        assert_eq!((users.breaker.consecutive_failures, users.breaker.open_for), (3, Duration::from_secs(1)));
        // A bad default is reported where it lands, like any other key.
        let typo = text.replace("consecutive_failures = 3", "consecutive_failure = 3");
        assert_eq!(load(&typo, &[]).unwrap_err().keys(), ["upstreams.users.breaker.consecutive_failure"]);
    }

    #[test]
    fn a_shared_cache_needs_the_store() {
        let text = format!("{MINIMAL}\n[upstreams.users.cache]\nttl = \"5s\"\nshared = true\n");
        assert_eq!(load(&text, &[]).unwrap_err().keys(), ["upstreams.users.cache.shared"]);
        assert!(load(&text, &[("TEST_BFF__REDIS__URL", "redis://127.0.0.1:6379")]).is_ok());
    }
}
