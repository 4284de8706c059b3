//! Authentication: who is calling, verified, as a [`Principal`].
//!
//! Mobile and web accept `Authorization: Bearer` JWTs; partner accepts `X-API-Key` and OAuth2
//! client-credentials JWTs. A request carries exactly one credential. Raw credentials go no
//! further than this module: handlers and backends see only the verified [`Identity`], and no log
//! line carries a token, a key or a key's digest.
//!
//! Failed attempts are counted per client address ([`FailedAttempts`]); a source past
//! `auth.max_failures_per_minute` is refused for the rest of the minute before any verification
//! work, so guessing keys or replaying junk tokens stays cheap for us and slow for them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bff_upstream::{Call, CallContext, Credential, Identity, Probe, Upstream, UpstreamConfig, UpstreamError};
use http::HeaderMap;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::GatewayError;
use crate::config::{ApiKeyEntry, AuthConfig, JwtConfig};

pub const API_KEY_HEADER: &str = "x-api-key";
/// Tokens longer than this are refused before any parsing or signature work.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The `typ` values an access token may carry when the config names none (RFC 9068 and the
/// generic JWT type). An ID token (`id+jwt`), a logout token or a DPoP proof is not an access token.
const ACCESS_TOKEN_TYPES: [&str; 2] = ["jwt", "at+jwt"];
/// Most client addresses whose failures are tracked at once; past it, the oldest windows go.
const MAX_TRACKED_SOURCES: usize = 100_000;
/// The window failed attempts are counted in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// First wait after a failed JWKS fetch; it doubles up to the refresh interval.
const JWKS_RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Verified tokens remembered at once: clients repeat their token on every request, and an RSA
/// verification costs far more than a lookup. Bounded, so a flood of valid tokens cannot grow it.
const VERIFIED_TOKENS: u64 = 10_000;
/// Longest a verified token is trusted without verifying it again, however long it lives.
const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(300);

/// A verified caller: the platform's one identity type, shared with every backend call.
pub type Principal = Identity;

/// The credentials one BFF accepts.
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    api_keys: Option<ApiKeys>,
    failures: FailedAttempts,
}

impl Authenticator {
    pub fn new(jwt: Option<JwtVerifier>, api_keys: Option<ApiKeys>, max_failures_per_minute: u32) -> Self {
        Self { jwt, api_keys, failures: FailedAttempts::new(max_failures_per_minute) }
    }

    /// Bearer JWTs always; API keys when any are configured. Starts fetching the signing keys at
    /// once when called inside a Tokio runtime (else on first use).
    pub fn from_config(config: &AuthConfig) -> Result<Self, GatewayError> {
        install_jwt_crypto();
        let api_keys = (!config.api_keys.is_empty()).then(|| ApiKeys::new(&config.api_keys)).transpose()?;
        let jwt = JwtVerifier::new(&config.jwt)?;
        if tokio::runtime::Handle::try_current().is_ok() {
            jwt.keys.start();
        }
        Ok(Self::new(Some(jwt), api_keys, config.max_failures_per_minute))
    }

    /// The verified caller of a request with `headers`, from `client` (the address failures are
    /// counted against).
    pub async fn authenticate(&self, headers: &HeaderMap, client: Option<IpAddr>) -> Result<Principal, GatewayError> {
        if let Some(retry_after) = client.and_then(|ip| self.failures.blocked(ip)) {
            return Err(GatewayError::TooManyFailedAttempts { retry_after });
        }
        let result = self.verify(headers).await;
        if let (Err(GatewayError::Unauthenticated(_)), Some(ip)) = (&result, client) {
            self.failures.record(ip);
        }
        result
    }

    async fn verify(&self, headers: &HeaderMap) -> Result<Principal, GatewayError> {
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
            Some(jwt) => {
                jwt.keys.first_attempt().await;
                if jwt.keys.loaded() { Ok(()) } else { Err("signing keys not loaded".to_owned()) }
            }
            None => Ok(()),
        }
    }
}

/// Failed authentication attempts per client address, in fixed one-minute windows, in a map of
/// bounded size.
struct FailedAttempts {
    limit: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedAttempts {
    fn new(limit: u32) -> Self {
        Self { limit, windows: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `client` must wait, when it has used up its failures for this window.
    fn blocked(&self, client: IpAddr) -> Option<Duration> {
        let windows = self.lock();
        let (start, failures) = windows.get(&client)?;
        let left = FAILURE_WINDOW.checked_sub(start.elapsed())?;
        (*failures >= self.limit).then_some(left)
    }

    fn record(&self, client: IpAddr) {
        let mut windows = self.lock();
        if windows.len() >= MAX_TRACKED_SOURCES && !windows.contains_key(&client) {
            windows.retain(|_, (start, _)| start.elapsed() < FAILURE_WINDOW);
            if windows.len() >= MAX_TRACKED_SOURCES {
                // Every tracked source is active: forget them all rather than grow without bound.
                windows.clear();
            }
        }
        let window = windows.entry(client).or_insert((Instant::now(), 0));
        if window.0.elapsed() >= FAILURE_WINDOW {
            *window = (Instant::now(), 0);
        }
        window.1 = window.1.saturating_add(1);
    }
}

/// API keys, stored as SHA-256 digests so the config never holds a usable secret.
pub struct ApiKeys {
    entries: Vec<([u8; 32], ApiKeyEntry)>,
}

impl ApiKeys {
    pub fn new(entries: &[ApiKeyEntry]) -> Result<Self, GatewayError> {
        let mut digests = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(&entry.sha256, &mut digest).map_err(|_| {
                GatewayError::Internal(format!("API key of `{}` is not 64 hex digits", entry.client_id))
            })?;
            digests.push((digest, entry.clone()));
        }
        Ok(Self { entries: digests })
    }

    /// The hex SHA-256 of a key, as the config stores it.
    pub fn hash(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    /// Compares the key's digest with every configured digest, in constant time and without
    /// stopping at a match, so neither the timing nor the order of the config tells anything.
    fn verify(&self, key: &[u8]) -> Result<Principal, GatewayError> {
        let digest: [u8; 32] = Sha256::digest(key).into();
        let mut found = None;
        for (candidate, entry) in &self.entries {
            let difference = candidate.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if std::hint::black_box(difference) == 0 {
                found = Some(entry);
            }
        }
        let entry = found.ok_or_else(|| GatewayError::Unauthenticated("invalid API key".into()))?;
        if entry.revoked {
            return Err(GatewayError::Unauthenticated("this API key has been revoked".into()));
        }
        Ok(Principal {
            user_id: None,
            client_id: entry.client_id.clone(),
            credential: Credential::ApiKey,
            scopes: entry.scopes.clone(),
            expires_at: None,
        })
    }
}

/// Verifies RS256 JWTs against the identity provider's signing keys ([`SigningKeys`]).
///
/// Verified tokens are remembered by their SHA-256 (the way Envoy's jwt_authn caches them) until
/// they expire (with the leeway verification allows), at most [`VERIFIED_TOKEN_TTL`], and only
/// while the signing keys they were verified against are unchanged: any change to the key set
/// (a rotation, a withdrawn key) makes every remembered token verify again. Refusals are never
/// remembered.
pub struct JwtVerifier {
    validation: Validation,
    /// The `typ` every token must carry, when the issuer sets one.
    required_typ: Option<String>,
    keys: Arc<SigningKeys>,
    verified: moka::sync::Cache<[u8; 32], Arc<VerifiedToken>>,
}

struct VerifiedToken {
    principal: Principal,
    /// The [`SigningKeys::generation`] it was verified under.
    generation: u64,
    /// Unix seconds after which verification would call it expired: `exp` plus the leeway.
    valid_until: u64,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
}

/// The claims checked before the signature.
#[derive(Debug, Deserialize)]
struct TimeClaims {
    #[serde(default)]
    exp: Option<u64>,
}

/// The JOSE header as sent, with the members jsonwebtoken's own header type drops (`crit`).
#[derive(Debug, Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Result<Self, GatewayError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        let verified =
            moka::sync::Cache::builder().max_capacity(VERIFIED_TOKENS).time_to_live(VERIFIED_TOKEN_TTL).build();
        Ok(Self {
            validation,
            required_typ: config.required_typ.clone(),
            keys: Arc::new(SigningKeys::new(config)?),
            verified,
        })
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, GatewayError> {
        let invalid = |why: &str| GatewayError::Unauthenticated(format!("invalid token: {why}"));
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid("too long"));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Read before the key is looked up: a rotation during verification then leaves an entry
        // that is already stale, never a fresh-looking one verified against a withdrawn key.
        let generation = self.keys.generation();
        if let Some(hit) = self.verified.get(&digest) {
            if hit.generation == generation && unix_now() <= hit.valid_until {
                return Ok(hit.principal.clone());
            }
            self.verified.invalidate(&digest);
        }
        let principal = self.verify_uncached(token).await?;
        let exp = principal.expires_at.and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok());
        if let Some(exp) = exp {
            let valid_until = exp.as_secs().saturating_add(self.validation.leeway);
            self.verified
                .insert(digest, Arc::new(VerifiedToken { principal: principal.clone(), generation, valid_until }));
        }
        Ok(principal)
    }

    async fn verify_uncached(&self, token: &str) -> Result<Principal, GatewayError> {
        let invalid = |why: &str| GatewayError::Unauthenticated(format!("invalid token: {why}"));
        let header = self.header(token)?;
        // An expired token is refused before its signature is checked, as Envoy's jwt_authn does:
        // the most common refusal then costs no RSA work. Trusting unverified claims only to
        // refuse is safe; a token that passes here is fully verified below.
        let times: TimeClaims =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| invalid("malformed"))?;
        if times.exp.is_some_and(|exp| exp.saturating_add(self.validation.leeway) < unix_now()) {
            return Err(invalid("expired"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no key id"))?;
        let key = self.keys.key(&kid).await?;
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
        let expires_at = Some(std::time::UNIX_EPOCH + Duration::from_secs(claims.exp));
        let scopes = claims.scope.map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
        // A client-credentials token is issued to the client itself: its subject is the client.
        if claims.client_id.as_deref() == Some(claims.sub.as_str()) {
            return Ok(Principal {
                user_id: None,
                client_id: claims.sub,
                credential: Credential::OAuthClient,
                scopes,
                expires_at,
            });
        }
        let client_id = claims.client_id.or(claims.azp).unwrap_or_else(|| self.audience().to_owned());
        Ok(Principal { user_id: Some(claims.sub), client_id, credential: Credential::User, scopes, expires_at })
    }

    /// The token's header, checked before any key is looked up: RS256 only, no critical
    /// extensions (we understand none, and RFC 7515 says to refuse what we do not understand),
    /// and an access token's `typ`.
    fn header(&self, token: &str) -> Result<JoseHeader, GatewayError> {
        let invalid = |why: &str| GatewayError::Unauthenticated(format!("invalid token: {why}"));
        let (encoded, _) = token.split_once('.').ok_or_else(|| invalid("malformed"))?;
        let bytes =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).map_err(|_| invalid("malformed"))?;
        let header: JoseHeader = serde_json::from_slice(&bytes).map_err(|_| invalid("malformed"))?;
        if header.alg != "RS256" {
            return Err(invalid("unsupported algorithm"));
        }
        if header.crit.is_some() {
            return Err(invalid("unsupported critical header"));
        }
        let typ = header.typ.as_deref().map(|t| t.strip_prefix("application/").unwrap_or(t).to_ascii_lowercase());
        let typ_ok = match (&self.required_typ, typ.as_deref()) {
            (Some(required), Some(typ)) => required.eq_ignore_ascii_case(typ),
            (Some(_), None) => false,
            (None, Some(typ)) => ACCESS_TOKEN_TYPES.contains(&typ),
            (None, None) => true,
        };
        if !typ_ok {
            return Err(invalid("not an access token (typ)"));
        }
        Ok(header)
    }

    fn audience(&self) -> &str {
        self.validation.aud.as_ref().and_then(|a| a.iter().next()).map(String::as_str).unwrap_or("-")
    }
}

/// The identity provider's signing keys, kept fresh by one background task:
/// - fetched at start (readiness waits for the first load);
/// - refreshed every `jwks_refresh_interval`, so a newly published key works and a removed key
///   stops working without a restart;
/// - kept while the provider is unreachable (stale-if-error), retried with backoff, logged;
/// - refetched early when a token names an unknown key, at most once per `jwks_refetch_cooldown`:
///   the task is the only fetcher, so a flood of made-up key ids costs the provider one fetch.
///
/// Requests never fetch. A token whose key is known is verified at once, whatever the provider is
/// doing; one naming an unknown key waits (at most `jwks_timeout`) only for the one early
/// refetch it triggered, and is refused at once while the cooldown holds.
pub struct SigningKeys {
    keys: RwLock<Arc<HashMap<String, DecodingKey>>>,
    /// Bumped whenever a fetch finds a key set different from the one held, so verified tokens
    /// remembered under an older set are verified again.
    generation: AtomicU64,
    /// SHA-256 of the held key set (kids and key material), to tell a change from a refresh.
    fingerprint: Mutex<[u8; 32]>,
    /// Counts finished fetch attempts, successful or not, so waiters know one has happened.
    attempts: watch::Sender<u64>,
    loaded: std::sync::atomic::AtomicBool,
    wake: Arc<Notify>,
    last_early_refetch: Mutex<Option<Instant>>,
    started: std::sync::Once,
    jwks: Upstream,
    jwks_path: Vec<String>,
    refresh_interval: Duration,
    refetch_cooldown: Duration,
    timeout: Duration,
}

impl SigningKeys {
    fn new(config: &JwtConfig) -> Result<Self, GatewayError> {
        let mut upstream = UpstreamConfig::new(config.jwks_url.clone());
        upstream.timeout = config.jwks_timeout;
        upstream.url.set_path("/");
        upstream.url.set_query(None);
        let jwks = Upstream::rest("identity", &upstream)?;
        let jwks_path = config.jwks_url.path_segments().into_iter().flatten().map(str::to_owned).collect();
        Ok(Self {
            keys: RwLock::default(),
            generation: AtomicU64::new(0),
            fingerprint: Mutex::new([0; 32]),
            attempts: watch::Sender::new(0),
            loaded: std::sync::atomic::AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            last_early_refetch: Mutex::new(None),
            started: std::sync::Once::new(),
            jwks,
            jwks_path,
            refresh_interval: config.jwks_refresh_interval,
            refetch_cooldown: config.jwks_refetch_cooldown,
            timeout: config.jwks_timeout,
        })
    }

    fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Holds `keys`, fetched as `fingerprint`; a set different from the one held starts a new
    /// generation (after the keys are in place, so nothing verified against the old set can be
    /// remembered as of the new generation).
    fn replace(&self, keys: HashMap<String, DecodingKey>, fingerprint: [u8; 32]) {
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        let mut held = self.fingerprint.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *held != fingerprint {
            *held = fingerprint;
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Starts the refresh task if need be and waits (at most one fetch's timeout) until its first
    /// attempt has finished, so a replica that has just started is not reported unready merely
    /// because the first fetch is under way.
    async fn first_attempt(self: &Arc<Self>) {
        self.start();
        let mut attempts = self.attempts.subscribe();
        let wait = attempts.wait_for(|n| *n > 0);
        let _ = tokio::time::timeout(self.timeout + Duration::from_millis(100), wait).await;
    }

    fn current(&self) -> Arc<HashMap<String, DecodingKey>> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Starts the refresh task, once. It holds the keys only weakly, so it ends with the BFF.
    fn start(self: &Arc<Self>) {
        self.started.call_once(|| {
            let (keys, wake) = (Arc::downgrade(self), self.wake.clone());
            tokio::spawn(refresh(keys, wake));
        });
    }

    /// The key named `kid`, waiting for one early refetch when it is unknown and the cooldown
    /// allows it (or for the first load, which is already under way).
    async fn key(self: &Arc<Self>, kid: &str) -> Result<DecodingKey, GatewayError> {
        self.start();
        if let Some(key) = self.current().get(kid) {
            return Ok(key.clone());
        }
        let unknown = || GatewayError::Unauthenticated("invalid token: unknown signing key".into());
        let mut attempts = self.attempts.subscribe();
        let first_load_pending = *attempts.borrow_and_update() == 0;
        if !first_load_pending {
            let mut last = self.last_early_refetch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < self.refetch_cooldown) {
                return Err(unknown());
            }
            *last = Some(Instant::now());
            self.wake.notify_one();
        }
        // One attempt's worth of waiting; a provider that does not answer in time fails us fast.
        let waited = tokio::time::timeout(self.timeout + Duration::from_millis(100), attempts.changed()).await;
        if let Some(key) = self.current().get(kid) {
            return Ok(key.clone());
        }
        if !self.loaded() {
            let reason = if waited.is_err() { "timed out" } else { "unreachable" };
            return Err(GatewayError::Upstream(UpstreamError::Unavailable {
                service: "identity",
                reason: format!("signing keys not loaded: identity provider {reason}"),
            }));
        }
        Err(unknown())
    }

    /// One fetch: the usable RS256 signing keys of the set. Keys marked for encryption, for
    /// another algorithm, or of another type are left out.
    /// Also the set's fingerprint: the SHA-256 of each usable key's id and parameters, in id order.
    async fn fetch(&self) -> Result<(HashMap<String, DecodingKey>, [u8; 32]), UpstreamError> {
        let call = Call::get("GET jwks", self.jwks_path.iter().cloned());
        let set: JwkSet = self.jwks.json(&CallContext::new("jwks-refresh"), call).await?;
        let mut usable: Vec<(String, &AlgorithmParameters, DecodingKey)> = set
            .keys
            .iter()
            .filter(|jwk| jwk.common.public_key_use.as_ref().is_none_or(|u| *u == PublicKeyUse::Signature))
            .filter(|jwk| jwk.common.key_algorithm.is_none_or(|alg| alg == KeyAlgorithm::RS256))
            .filter(|jwk| matches!(jwk.algorithm, AlgorithmParameters::RSA(_)))
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, &jwk.algorithm, DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        usable.sort_by(|a, b| a.0.cmp(&b.0));
        let mut fingerprint = Sha256::new();
        for (kid, params, _) in &usable {
            if let AlgorithmParameters::RSA(rsa) = params {
                for part in [kid.as_str(), rsa.n.as_str(), rsa.e.as_str()] {
                    // Length-prefixed, so no two different sets hash the same bytes.
                    fingerprint.update((part.len() as u64).to_be_bytes());
                    fingerprint.update(part.as_bytes());
                }
            }
        }
        Ok((usable.into_iter().map(|(kid, _, key)| (kid, key)).collect(), fingerprint.finalize().into()))
    }
}

/// The refresh loop of [`SigningKeys`].
async fn refresh(keys: Weak<SigningKeys>, wake: Arc<Notify>) {
    let mut backoff = JWKS_RETRY_BACKOFF;
    loop {
        let Some(store) = keys.upgrade() else { return };
        let next = match store.fetch().await {
            Ok((fetched, fingerprint)) => {
                tracing::info!(keys = fetched.len(), "fetched the JWKS");
                store.replace(fetched, fingerprint);
                store.loaded.store(true, Ordering::Release);
                backoff = JWKS_RETRY_BACKOFF;
                store.refresh_interval
            }
            Err(error) => {
                let kept = store.current().len();
                tracing::warn!(error = %error, kept_keys = kept, retry_ms = backoff.as_millis() as u64, "JWKS fetch failed; keeping the keys we have");
                let wait = backoff;
                backoff = (backoff * 2).min(store.refresh_interval);
                wait
            }
        };
        store.attempts.send_modify(|n| *n += 1);
        drop(store);
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = wake.notified() => {}
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Makes jsonwebtoken verify RS256 with ring: its pure-Rust `rust_crypto` backend rebuilds the
/// key and runs big-integer code in Rust on every verification, a quarter of a BFF's CPU under
/// load. Claim validation stays jsonwebtoken's; signing and every other algorithm stay with
/// `rust_crypto`. jsonwebtoken's provider is per process and fixed by its first use, so this runs
/// before a BFF verifies anything ([`Authenticator::from_config`]); a process that used
/// jsonwebtoken earlier (a test that signed tokens first) keeps the slower, equally correct one.
pub fn install_jwt_crypto() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if ring_rs256::PROVIDER.install_default().is_err() {
            tracing::debug!("jsonwebtoken's crypto provider was already chosen; RS256 stays on rust_crypto");
        }
    });
}

mod ring_rs256 {
    use std::sync::LazyLock;

    use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, rust_crypto};
    use jsonwebtoken::signature::{Error, Verifier};
    use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};

    pub(super) static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
        signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
        verifier_factory,
        key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
    });

    /// An RSA public key as ring takes it: big-endian, without leading zero bytes (a JWK's `n`
    /// may carry one).
    pub(super) struct Rs256 {
        n: Vec<u8>,
        e: Vec<u8>,
    }

    fn minimal(bytes: &[u8]) -> Vec<u8> {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        bytes[start..].to_vec()
    }

    pub(super) fn verifier_factory(
        algorithm: &Algorithm,
        key: &DecodingKey,
    ) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
        match (algorithm, key.kind()) {
            (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                Ok(Box::new(Rs256 { n: minimal(n), e: minimal(e) }))
            }
            _ => (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key),
        }
    }

    impl Verifier<Vec<u8>> for Rs256 {
        fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), Error> {
            // ring refuses moduli under 2048 bits, as NIST has since 2013.
            RsaPublicKeyComponents { n: &self.n, e: &self.e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .map_err(|_| Error::new())
        }
    }

    impl JwtVerifier for Rs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::RS256
        }
    }
}
