//! CORS from `[server.cors]`: exact origins (or `*` without credentials), the methods and headers
//! our APIs take, and the request id exposed to scripts. Preflights are answered here, before
//! limits and authentication: they carry no credentials and are cheap.

use std::time::Duration;

use bff_upstream::headers::REQUEST_ID;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};
use url::Url;

use crate::config::{Problems, Validate};

/// How long browsers may cache a CORS preflight answer.
pub const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// Cross-origin access for browsers. Origins are listed exactly: a wildcard is refused together
/// with credentials (browsers would refuse it anyway, and allowing any origin to send a user's
/// cookies is never what is meant).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// `https://app.example.com`, or `*` for any origin (only without credentials).
    pub allowed_origins: Vec<String>,
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self { allowed_origins: Vec::new(), allow_credentials: false, max_age: DEFAULT_CORS_MAX_AGE }
    }
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

/// The layer `config` describes.
pub fn layer(config: &CorsConfig) -> CorsLayer {
    let origins = if config.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(config.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([http::Method::GET, http::Method::POST, http::Method::OPTIONS])
        .allow_headers([
            http::header::AUTHORIZATION,
            http::header::CONTENT_TYPE,
            http::header::ACCEPT,
            HeaderName::from_static(REQUEST_ID),
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([HeaderName::from_static(REQUEST_ID)])
        .allow_credentials(config.allow_credentials)
        .max_age(config.max_age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(config: &CorsConfig) -> Vec<String> {
        let mut problems = Problems::default();
        config.validate("server.cors", &mut problems);
        problems.keys()
    }

    #[test]
    fn a_wildcard_with_credentials_and_non_origins_are_refused_by_key_path() {
        let wildcard = CorsConfig { allowed_origins: vec!["*".into()], allow_credentials: true, ..Default::default() };
        assert_eq!(problems(&wildcard), ["server.cors.allowed_origins"]);
        let path = CorsConfig { allowed_origins: vec!["https://app.example.com/login".into()], ..Default::default() };
        assert_eq!(problems(&path), ["server.cors.allowed_origins"]);
        let fine = CorsConfig { allowed_origins: vec!["https://app.example.com".into()], ..Default::default() };
        assert!(problems(&fine).is_empty());
    }
}
