//! `[auth]`: how callers prove who they are. Bearer JWTs from the identity service
//! (`[auth.jwt]`), and, for partner BFFs, API keys (`[[auth.api_keys]]`).

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::config::{Problems, Validate, join};

/// Clock skew we tolerate on `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);
/// How often the signing keys are fetched again: a removed key stops working within this.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// Least time between two JWKS fetches triggered by unknown key ids.
pub const DEFAULT_JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// How long one JWKS fetch may take.
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_JWKS_REFETCH_COOLDOWN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub jwt: JwtConfig,
    pub api_keys: Vec<ApiKeyEntry>,
}

impl AuthConfig {
    pub fn new(jwt: JwtConfig) -> Self {
        Self { jwt, ..Self::default() }
    }
}

impl Validate for AuthConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        self.jwt.validate(&join(path, "jwt"), problems);
        for (i, key) in self.api_keys.iter().enumerate() {
            let key_path = format!("{}[{i}]", join(path, "api_keys"));
            key.validate(&key_path, problems);
            let repeated = self.api_keys[..i].iter().any(|earlier| earlier.sha256.eq_ignore_ascii_case(&key.sha256));
            problems.check(&key_path, "sha256", !repeated, "the same key is configured twice");
        }
    }
}

/// Bearer JWTs issued by the identity service. `issuer`, `audience` and `jwks_url` have no
/// default: validation reports each one missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry: this BFF's audience.
    pub audience: String,
    pub jwks_url: Option<Url>,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    #[serde(with = "humantime_serde")]
    pub jwks_refetch_cooldown: Duration,
    #[serde(with = "humantime_serde")]
    pub jwks_timeout: Duration,
    /// How often the keys are fetched again in the background.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// The `typ` header every token must carry (`at+jwt` for RFC 9068 access tokens), for
    /// issuers that set one; unset, a token's `typ` may be absent, `JWT` or `at+jwt`.
    pub required_typ: Option<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            jwks_url: None,
            leeway: DEFAULT_JWT_LEEWAY,
            jwks_refetch_cooldown: DEFAULT_JWKS_REFETCH_COOLDOWN,
            jwks_timeout: DEFAULT_JWKS_TIMEOUT,
            jwks_refresh_interval: DEFAULT_JWKS_REFRESH_INTERVAL,
            required_typ: None,
        }
    }
}

impl JwtConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, jwks_url: Url) -> Self {
        Self { issuer: issuer.into(), audience: audience.into(), jwks_url: Some(jwks_url), ..Self::default() }
    }
}

impl Validate for JwtConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        problems.check(path, "issuer", !self.issuer.trim().is_empty(), "must be set");
        problems.check(path, "audience", !self.audience.trim().is_empty(), "must be set");
        let Some(jwks_url) = &self.jwks_url else {
            return problems.push(join(path, "jwks_url"), "must be set");
        };
        problems.check(
            path,
            "jwks_url",
            matches!(jwks_url.scheme(), "http" | "https") && jwks_url.host().is_some(),
            "must be an http(s) URL with a host",
        );
        problems.check(
            path,
            "jwks_url",
            jwks_url.scheme() != "http" || is_loopback(jwks_url),
            "must be https unless the host is loopback: anyone on the path could swap the signing keys",
        );
        problems.check(
            path,
            "jwks_url",
            jwks_url.query().is_none()
                && jwks_url.path_segments().is_some_and(|mut segments| segments.all(|s| !s.is_empty())),
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeyEntry {
    pub client_id: String,
    pub sha256: String,
    pub scopes: Vec<String>,
    /// A revoked key is refused with a message that says so; keep it listed until its holder
    /// has moved on, so they learn why.
    pub revoked: bool,
}

impl Validate for ApiKeyEntry {
    fn validate(&self, path: &str, problems: &mut Problems) {
        problems.check(
            path,
            "client_id",
            super::jwt::is_well_formed_id(&self.client_id),
            "must be set: at most 255 visible ASCII characters, no spaces",
        );
        for scope in &self.scopes {
            problems.check(path, "scopes", super::jwt::is_well_formed_id(scope), &format!("`{scope}` is not a scope"));
        }
        problems.check(
            path,
            "sha256",
            self.sha256.len() == 64 && self.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
            "must be 64 hex digits (the SHA-256 of the key)",
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let config: AuthConfig = toml::from_str(text).unwrap();
        let mut problems = Problems::default();
        config.validate("auth", &mut problems);
        problems.keys()
    }

    #[test]
    fn defaults_are_written_once_and_required_keys_are_reported_missing() {
        assert_eq!(problems(""), ["auth.jwt.issuer", "auth.jwt.audience", "auth.jwt.jwks_url"]);
        let config: AuthConfig = toml::from_str("[jwt]\nissuer = \"i\"").unwrap();
        assert_eq!(config.jwt.leeway, DEFAULT_JWT_LEEWAY);
    }

    #[test]
    fn a_jwks_over_plain_http_is_refused_unless_on_loopback() {
        let jwt = |url: &str| format!("[jwt]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"{url}\"");
        assert_eq!(problems(&jwt("http://idp.example.com/jwks")), ["auth.jwt.jwks_url"]);
        assert!(problems(&jwt("http://127.0.0.1:5000/jwks")).is_empty());
        assert!(problems(&jwt("https://idp.example.com/jwks")).is_empty());
    }
}
