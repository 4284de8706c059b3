//! Authentication: who is calling, verified, as the platform's one identity type,
//! [`Identity`] (shared with every backend call).
//!
//! Mobile and web accept `Authorization: Bearer` JWTs; partner accepts `X-API-Key` and OAuth2
//! client-credentials JWTs. A request carries exactly one credential. Raw credentials go no
//! further than this module: handlers and backends see only the verified [`Identity`], and no log
//! line carries a token, a key or a key's digest.
//!
//! - [`config`]: `[auth]`, `[auth.jwt]`, `[[auth.api_keys]]`;
//! - [`jwt`]: RS256 verification (ring), claims, the access-token header checks;
//! - [`jwks`]: the signing keys and the one task that keeps them fresh;
//! - [`token_cache`]: verified tokens remembered until they expire or the keys change;
//! - [`api_keys`]: hashed keys compared in constant time.
//!
//! Failed attempts are a limit per client address (`[limits] failed_authentication`, see
//! [`FailedAttempts`](crate::limits::FailedAttempts)); a source past it is refused before any
//! verification work, so guessing keys or replaying junk tokens stays cheap for us and slow for
//! them.

pub mod api_keys;
pub mod config;
pub mod jwks;
pub mod jwt;
pub mod token_cache;

use std::net::IpAddr;
use std::sync::Arc;

use bff_upstream::{Identity, Probe};
use http::HeaderMap;

pub use self::api_keys::ApiKeys;
pub use self::config::{ApiKeyEntry, AuthConfig, JwtConfig};
pub use self::jwt::{JwtVerifier, install_jwt_crypto};
use crate::GatewayError;
use crate::limits::Limits;

pub const API_KEY_HEADER: &str = "x-api-key";

/// The credentials one BFF accepts.
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    api_keys: Option<ApiKeys>,
    /// Where failed attempts are counted.
    limits: Arc<Limits>,
}

impl Authenticator {
    /// How long ago the JWKS was last fetched; `None` without JWTs or before the first fetch.
    pub fn jwks_age(&self) -> Option<std::time::Duration> {
        self.jwt.as_ref().and_then(JwtVerifier::keys_age)
    }

    pub fn new(jwt: Option<JwtVerifier>, api_keys: Option<ApiKeys>, limits: Arc<Limits>) -> Self {
        Self { jwt, api_keys, limits }
    }

    /// Bearer JWTs always; API keys when any are configured. Starts fetching the signing keys at
    /// once when called inside a Tokio runtime (else on first use).
    pub fn from_config(config: &AuthConfig, limits: Arc<Limits>) -> Result<Self, GatewayError> {
        install_jwt_crypto();
        let api_keys = (!config.api_keys.is_empty()).then(|| ApiKeys::new(&config.api_keys)).transpose()?;
        let jwt = JwtVerifier::new(&config.jwt)?;
        if tokio::runtime::Handle::try_current().is_ok() {
            jwt.start_refresh();
        }
        Ok(Self::new(Some(jwt), api_keys, limits))
    }

    /// The limits this BFF enforces, failed attempts among them.
    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// The verified caller of a request with `headers`, from `client` (the address failures are
    /// counted against).
    pub async fn authenticate(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Result<Identity, GatewayError> {
        let failures = self.limits.failed_attempts();
        if let Some(retry_after) = client.and_then(|ip| failures.blocked(ip)) {
            return Err(GatewayError::TooManyFailedAttempts { retry_after });
        }
        let result = self.verify(headers).await;
        if let (Err(GatewayError::Unauthenticated(_)), Some(ip)) = (&result, client) {
            failures.record(self.limits.limiter(), ip).await;
        }
        result
    }

    async fn verify(&self, headers: &HeaderMap) -> Result<Identity, GatewayError> {
        let unauthenticated = |msg: &str| GatewayError::Unauthenticated(msg.to_owned());
        let api_key = headers.get(API_KEY_HEADER);
        let bearer = headers.get(http::header::AUTHORIZATION);
        match (api_key, bearer) {
            (Some(_), Some(_)) => Err(unauthenticated("send either an API key or a bearer token, not both")),
            (Some(key), None) => {
                let keys = self.api_keys.as_ref().ok_or_else(|| unauthenticated("API keys are not accepted here"))?;
                keys.verify(key.as_bytes())
            }
            (None, Some(value)) => {
                let jwt = self.jwt.as_ref().ok_or_else(|| unauthenticated("bearer tokens are not accepted here"))?;
                let token = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                    .map(str::trim)
                    .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
                jwt.verify(token).await
            }
            (None, None) => Err(unauthenticated("missing credentials")),
        }
    }
}

/// Ready when tokens can be verified: the signing keys are loaded.
impl Probe for Authenticator {
    async fn probe(&self) -> Result<(), String> {
        match &self.jwt {
            Some(jwt) => jwt.keys_loaded().await,
            None => Ok(()),
        }
    }
}
