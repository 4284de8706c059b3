//! Authentication: who is calling, verified, as a [`Principal`].
//!
//! Mobile and web accept `Authorization: Bearer` JWTs; partner accepts `X-API-Key` and OAuth2
//! client-credentials JWTs. A request carries exactly one credential. Raw credentials go no
//! further than this module: handlers and backends see only the verified [`Identity`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bff_upstream::{Call, CallContext, Identity, Probe, Upstream, UpstreamConfig, UpstreamError};
use http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, RwLock};

use crate::GatewayError;
use crate::config::{ApiKeyEntry, AuthConfig, JwtConfig};

pub const API_KEY_HEADER: &str = "x-api-key";
/// Tokens longer than this are refused before any parsing or signature work.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A verified caller: the platform's one identity type, shared with every backend call.
pub type Principal = Identity;

/// The credentials one BFF accepts.
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    api_keys: Option<ApiKeys>,
}

impl Authenticator {
    pub fn new(jwt: Option<JwtVerifier>, api_keys: Option<ApiKeys>) -> Self {
        Self { jwt, api_keys }
    }

    /// Bearer JWTs always; API keys when any are configured.
    pub fn from_config(config: &AuthConfig) -> Result<Self, GatewayError> {
        let api_keys = (!config.api_keys.is_empty()).then(|| ApiKeys::new(&config.api_keys)).transpose()?;
        Ok(Self::new(Some(JwtVerifier::new(&config.jwt)?), api_keys))
    }

    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, GatewayError> {
        let unauthenticated = |msg: &str| GatewayError::Unauthenticated(msg.to_owned());
        let api_key = headers.get(API_KEY_HEADER);
        let bearer = headers.get(http::header::AUTHORIZATION);
        match (api_key, bearer) {
            (Some(_), Some(_)) => Err(unauthenticated("send either an API key or a bearer token, not both")),
            (Some(key), None) => {
                let keys = self.api_keys.as_ref().ok_or_else(|| unauthenticated("API keys are not accepted here"))?;
                keys.verify(key.to_str().map_err(|_| unauthenticated("invalid API key"))?)
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

/// Ready when tokens can be verified: the JWKS is loaded or loadable.
impl Probe for Authenticator {
    async fn probe(&self) -> Result<(), String> {
        match &self.jwt {
            Some(jwt) => jwt.ensure_keys().await,
            None => Ok(()),
        }
    }
}

/// API keys, stored as SHA-256 hashes so the config never holds a usable secret.
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], ApiKeyEntry>,
}

impl ApiKeys {
    pub fn new(entries: &[ApiKeyEntry]) -> Result<Self, GatewayError> {
        let mut by_hash = HashMap::new();
        for entry in entries {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&entry.sha256, &mut hash).map_err(|_| {
                GatewayError::Internal(format!("API key of `{}` is not 64 hex digits", entry.client_id))
            })?;
            by_hash.insert(hash, entry.clone());
        }
        Ok(Self { by_hash })
    }

    /// The hex SHA-256 of a key, as the config stores it.
    pub fn hash(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    fn verify(&self, key: &str) -> Result<Principal, GatewayError> {
        // Looking the key up by its hash means no comparison ever touches the secret itself.
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let entry = self.by_hash.get(&hash).ok_or_else(|| GatewayError::Unauthenticated("invalid API key".into()))?;
        Ok(Principal { user_id: None, client_id: entry.client_id.clone(), scopes: entry.scopes.clone() })
    }
}

/// Verifies RS256 JWTs against the identity service's JWKS: fetched on first use, cached, and
/// fetched again when a token names a key we do not know (key rotation), at most once per cooldown
/// so that tokens with made-up key ids cannot turn us into a load generator.
pub struct JwtVerifier {
    validation: Validation,
    jwks: Upstream,
    jwks_path: Vec<String>,
    refetch_cooldown: Duration,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: Mutex<Option<Instant>>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Result<Self, GatewayError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        let mut upstream = UpstreamConfig::new(config.jwks_url.clone());
        upstream.timeout = config.jwks_timeout;
        upstream.url.set_path("/");
        upstream.url.set_query(None);
        let jwks = Upstream::rest("identity", &upstream)?;
        let jwks_path = config.jwks_url.path_segments().into_iter().flatten().map(str::to_owned).collect();
        Ok(Self {
            validation,
            jwks,
            jwks_path,
            refetch_cooldown: config.jwks_refetch_cooldown,
            keys: RwLock::default(),
            last_fetch: Mutex::default(),
        })
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, GatewayError> {
        let invalid = |why: &str| GatewayError::Unauthenticated(format!("invalid token: {why}"));
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid("too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid("unsupported algorithm"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no key id"))?;
        let key = self.key(&kid).await?.ok_or_else(|| invalid("unknown signing key"))?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => invalid("expired"),
                ErrorKind::InvalidAudience => invalid("wrong audience"),
                ErrorKind::InvalidIssuer => invalid("wrong issuer"),
                ErrorKind::InvalidSignature => invalid("bad signature"),
                ErrorKind::ImmatureSignature => invalid("not valid yet"),
                _ => invalid("rejected"),
            }
        })?;
        let claims = data.claims;
        let scopes = claims.scope.map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
        // A client-credentials token is issued to the client itself: its subject is the client.
        let machine = claims.client_id.as_deref() == Some(claims.sub.as_str());
        let client_id = claims.client_id.or(claims.azp).unwrap_or_else(|| self.audience().to_owned());
        Ok(Principal { user_id: (!machine).then_some(claims.sub), client_id, scopes })
    }

    fn audience(&self) -> &str {
        self.validation.aud.as_ref().and_then(|a| a.iter().next()).map(String::as_str).unwrap_or("-")
    }

    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, GatewayError> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(Some(key.clone()));
        }
        self.refetch(kid).await?;
        Ok(self.keys.read().await.get(kid).cloned())
    }

    /// Fetches the JWKS unless another task just did (single flight) or, once keys are loaded, the
    /// cooldown forbids it. While no key was ever loaded every request may try again: refusing
    /// valid tokens for a whole cooldown because of one failed fetch would log users out.
    async fn refetch(&self, kid: &str) -> Result<(), GatewayError> {
        let mut last_fetch = self.last_fetch.lock().await;
        let keys = self.keys.read().await;
        if keys.contains_key(kid)
            || (!keys.is_empty() && last_fetch.is_some_and(|at| at.elapsed() < self.refetch_cooldown))
        {
            return Ok(());
        }
        drop(keys);
        Ok(self.fetch(&mut last_fetch).await?)
    }

    async fn ensure_keys(&self) -> Result<(), String> {
        let mut last_fetch = self.last_fetch.lock().await;
        if !self.keys.read().await.is_empty() {
            return Ok(());
        }
        self.fetch(&mut last_fetch).await.map_err(|e| {
            tracing::warn!(error = %e, "JWKS not loadable");
            e.kind().to_owned()
        })
    }

    /// Replaces the cached keys with the identity service's current set.
    async fn fetch(&self, last_fetch: &mut Option<Instant>) -> Result<(), UpstreamError> {
        let call = Call::get("GET jwks", self.jwks_path.iter().cloned());
        let set: JwkSet = self.jwks.json(&CallContext::new("jwks-refresh"), call).await?;
        let keys: HashMap<String, DecodingKey> = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        tracing::info!(keys = keys.len(), "fetched the JWKS");
        *self.keys.write().await = keys;
        *last_fetch = Some(Instant::now());
        Ok(())
    }
}
