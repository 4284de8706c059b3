//! The identity provider's signing keys (JWKS) and the one background task that keeps them fresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bff_upstream::{Call, CallContext, Upstream, UpstreamConfig, UpstreamError};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use super::config::JwtConfig;
use crate::GatewayError;

/// First wait after a failed JWKS fetch; it doubles up to the refresh interval.
const JWKS_RETRY_BACKOFF: Duration = Duration::from_millis(500);

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
    loaded: AtomicBool,
    wake: Arc<Notify>,
    last_early_refetch: Mutex<Option<Instant>>,
    /// When the key set was last fetched successfully.
    fetched_at: Mutex<Option<Instant>>,
    started: std::sync::Once,
    jwks: Upstream,
    jwks_path: Vec<String>,
    refresh_interval: Duration,
    refetch_cooldown: Duration,
    timeout: Duration,
}

impl SigningKeys {
    pub(crate) fn new(config: &JwtConfig) -> Result<Self, GatewayError> {
        let jwks_url =
            config.jwks_url.clone().ok_or_else(|| GatewayError::Internal("auth.jwt.jwks_url is not set".into()))?;
        let mut upstream = UpstreamConfig::new(jwks_url.clone());
        upstream.timeout = config.jwks_timeout;
        upstream.url.set_path("/");
        upstream.url.set_query(None);
        let jwks = Upstream::rest("identity", &upstream)?;
        let jwks_path = jwks_url.path_segments().into_iter().flatten().map(str::to_owned).collect();
        Ok(Self {
            keys: RwLock::default(),
            generation: AtomicU64::new(0),
            fingerprint: Mutex::new([0; 32]),
            attempts: watch::Sender::new(0),
            loaded: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            last_early_refetch: Mutex::new(None),
            fetched_at: Mutex::new(None),
            started: std::sync::Once::new(),
            jwks,
            jwks_path,
            refresh_interval: config.jwks_refresh_interval,
            refetch_cooldown: config.jwks_refetch_cooldown,
            timeout: config.jwks_timeout,
        })
    }

    /// How long ago the key set was last fetched successfully; `None` before the first fetch.
    pub(crate) fn age(&self) -> Option<Duration> {
        self.fetched_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner).map(|at| at.elapsed())
    }

    pub(crate) fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub(crate) fn generation(&self) -> u64 {
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
    pub(crate) async fn first_attempt(self: &Arc<Self>) {
        self.start();
        let mut attempts = self.attempts.subscribe();
        let wait = attempts.wait_for(|n| *n > 0);
        let _ = tokio::time::timeout(self.timeout + Duration::from_millis(100), wait).await;
    }

    fn current(&self) -> Arc<HashMap<String, DecodingKey>> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Starts the refresh task, once. It holds the keys only weakly, so it ends with the BFF.
    pub(crate) fn start(self: &Arc<Self>) {
        self.started.call_once(|| {
            let (keys, wake) = (Arc::downgrade(self), self.wake.clone());
            tokio::spawn(refresh(keys, wake));
        });
    }

    /// The key named `kid`, waiting for one early refetch when it is unknown and the cooldown
    /// allows it (or for the first load, which is already under way).
    pub(crate) async fn key(self: &Arc<Self>, kid: &str) -> Result<DecodingKey, GatewayError> {
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
                *store.fetched_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
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
