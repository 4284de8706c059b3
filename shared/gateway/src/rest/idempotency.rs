//! Idempotent retries of unsafe requests (`Idempotency-Key`, as Stripe and the IETF draft
//! `draft-ietf-httpapi-idempotency-key-header` describe it), handled by the gateway so a backend
//! never sees a retried request twice.
//!
//! The first request with a key claims it (an in-flight record with a short lease) and runs;
//! its response is stored under the key for `ttl`. Afterwards the same key with the same request
//! (method, route and body, by fingerprint) gets the stored response again, marked
//! `Idempotency-Replayed: true`; with a different request, 422 `IDEMPOTENCY_KEY_REUSED`; while
//! the first is still running, 409 `IDEMPOTENCY_KEY_IN_USE`. A response that says the server
//! failed (5xx) is not stored: the claim is released so the client may retry, and the retry
//! reaches the backend with the same backend key ([`ClaimedKey::backend_key`]), so a first
//! attempt that got through before failing is not acted on twice.
//!
//! Keys are scoped by the caller (the owner the gateway verified), so one partner's key can
//! never replay another's response. Records live in the shared store (`[redis]`) when
//! `shared = true`, so every replica agrees; otherwise in this process, bounded by `max_entries`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::GatewayError;
use crate::config::{Problems, Validate, join};
use crate::store::{Redis, unavailable};

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotency-replayed";
/// How long a completed request's response is replayed.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a claim holds if its replica dies mid-request; past it the key may run again.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Records kept in process memory when there is no Redis.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Longest key accepted (the header is the client's; the store key is its digest).
pub const MAX_KEY_LEN: usize = 255;
const STORE: &str = "idempotency store";

/// `[idempotency]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Keep records in the shared store (`[redis]`), so every replica agrees; otherwise in
    /// this process only.
    pub shared: bool,
    pub max_entries: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self { ttl: DEFAULT_TTL, lease: DEFAULT_LEASE, shared: false, max_entries: DEFAULT_MAX_ENTRIES }
    }
}

impl Validate for IdempotencyConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        problems.check(path, "ttl", !self.ttl.is_zero(), "must be more than 0s");
        problems.check(path, "lease", !self.lease.is_zero(), "must be more than 0s");
        problems.check(path, "max_entries", self.max_entries > 0, "must be at least 1");
    }

    fn shared_store_users(&self, path: &str, users: &mut Vec<String>) {
        if self.shared {
            users.push(join(path, "shared"));
        }
    }
}

/// A response as stored: enough to send it again byte for byte.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl StoredResponse {
    pub fn into_response(self, replayed: bool) -> Response {
        let mut response = (StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK), self.body).into_response();
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                response.headers_mut().insert(name, value);
            }
        }
        if replayed {
            response.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        }
        response
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    InFlight {
        fingerprint: String,
        generation: u64,
    },
    Done {
        fingerprint: String,
        response: StoredResponse,
    },
    /// The request failed on our side and may be retried; a retry keeps the generation, so the
    /// backend sees the same key and does not act twice if the first attempt got through.
    Released {
        fingerprint: String,
        generation: u64,
    },
}

/// What a request with a key may do.
#[derive(Debug)]
pub enum Claim {
    /// Run it, then [`Idempotency::complete`] or [`Idempotency::release`] the key.
    Run(ClaimedKey),
    /// It ran before: send this again.
    Replay(StoredResponse),
}

/// A key this request holds.
#[derive(Debug)]
pub struct ClaimedKey {
    store_key: String,
    fingerprint: String,
    generation: u64,
}

impl ClaimedKey {
    /// The key to hand the backend, for its own deduplication: the client's key and this
    /// record's generation, so a retry after a failure reaches the backend as the same request,
    /// while the key used again after its record expired is a new one.
    pub fn backend_key(&self, client_key: &str) -> String {
        format!("{client_key}~{:x}", self.generation)
    }
}

enum Backend {
    Memory(moka::sync::Cache<String, Arc<(Record, Instant)>>),
    Redis(Arc<Redis>),
}

/// The idempotency records of one BFF.
pub struct Idempotency {
    namespace: String,
    ttl: Duration,
    lease: Duration,
    backend: Backend,
}

/// A memory record's own lifetime: the lease while in flight, the ttl once done.
struct RecordExpiry;

impl moka::Expiry<String, Arc<(Record, Instant)>> for RecordExpiry {
    fn expire_after_create(&self, _: &String, value: &Arc<(Record, Instant)>, now: Instant) -> Option<Duration> {
        Some(value.1.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Arc<(Record, Instant)>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.1.saturating_duration_since(now))
    }
}

impl Idempotency {
    /// Records for BFF `namespace` (its name: replicas of one BFF share them, BFFs do not), in
    /// `store` when the config says they are shared.
    pub fn new(namespace: &str, config: &IdempotencyConfig, store: Option<&Arc<Redis>>) -> Result<Self, GatewayError> {
        let backend = match (config.shared, store) {
            (true, Some(redis)) => Backend::Redis(redis.clone()),
            (true, None) => return Err(GatewayError::Internal("idempotency.shared needs [redis] url".into())),
            (false, _) => Backend::Memory(
                moka::sync::Cache::builder().max_capacity(config.max_entries).expire_after(RecordExpiry).build(),
            ),
        };
        Ok(Self { namespace: namespace.to_owned(), ttl: config.ttl, lease: config.lease, backend })
    }

    /// Claims `key` for `owner`'s `request` (method, route and body, as the client sent them),
    /// or says why not.
    pub async fn claim(&self, owner: &str, key: &str, request: &[&[u8]]) -> Result<Claim, GatewayError> {
        let mut digest = Sha256::new();
        for part in request {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        let fingerprint = hex::encode(digest.finalize());
        let scoped = hex::encode(Sha256::digest(format!("{owner}\0{key}")));
        let name = format!("{}:idempotency:{scoped}", self.namespace);
        let store_key = match &self.backend {
            Backend::Redis(redis) => redis.key(&name),
            Backend::Memory(_) => name,
        };
        // When the key was first claimed: unique enough to tell one life of a key from the next.
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX));
        let in_flight = Record::InFlight { fingerprint: fingerprint.clone(), generation };
        let existing = match &self.backend {
            Backend::Memory(cache) => {
                let entry = cache
                    .entry(store_key.clone())
                    .or_insert_with(|| Arc::new((in_flight, Instant::now() + self.lease)));
                if entry.is_fresh() { None } else { Some(entry.into_value().0.clone()) }
            }
            Backend::Redis(redis) => {
                let set = redis::cmd("SET")
                    .arg(&store_key)
                    .arg(encode(&in_flight)?)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(self.lease))
                    .clone();
                let claimed: Option<String> = redis.query(STORE, &set).await?;
                if claimed.is_some() {
                    None
                } else {
                    let record: Option<String> = redis.query(STORE, redis::cmd("GET").arg(&store_key)).await?;
                    // Gone between the two commands (it expired): treat as a claim lost to a race.
                    let record = record.ok_or(GatewayError::IdempotencyKeyInUse)?;
                    Some(serde_json::from_str(&record).map_err(|e| unavailable(STORE, e.to_string()))?)
                }
            }
        };
        match existing {
            None => Ok(Claim::Run(ClaimedKey { store_key, fingerprint, generation })),
            Some(Record::InFlight { fingerprint: first, .. }) if first == fingerprint => {
                Err(GatewayError::IdempotencyKeyInUse)
            }
            Some(Record::Done { fingerprint: first, response }) if first == fingerprint => Ok(Claim::Replay(response)),
            Some(Record::Released { fingerprint: first, generation }) if first == fingerprint => {
                // Two retries racing here both run, with the same backend key: the backend
                // deduplicates them.
                let claimed = ClaimedKey { store_key, fingerprint, generation };
                self.put(&claimed.store_key, &Record::InFlight { fingerprint: first, generation }, self.lease).await?;
                Ok(Claim::Run(claimed))
            }
            Some(_) => Err(GatewayError::IdempotencyKeyReused),
        }
    }

    /// Stores the response of a claimed request, to be replayed for `ttl`.
    pub async fn complete(&self, claimed: ClaimedKey, response: StoredResponse) -> Result<(), GatewayError> {
        self.put(&claimed.store_key, &Record::Done { fingerprint: claimed.fingerprint, response }, self.ttl).await
    }

    /// Gives up a claim without a response to keep (the request failed on our side): the same
    /// request may be retried with the key at once.
    pub async fn release(&self, claimed: ClaimedKey) -> Result<(), GatewayError> {
        let record = Record::Released { fingerprint: claimed.fingerprint, generation: claimed.generation };
        self.put(&claimed.store_key, &record, self.ttl).await
    }

    async fn put(&self, store_key: &str, record: &Record, ttl: Duration) -> Result<(), GatewayError> {
        match &self.backend {
            Backend::Memory(cache) => {
                cache.insert(store_key.to_owned(), Arc::new((record.clone(), Instant::now() + ttl)))
            }
            Backend::Redis(redis) => {
                let () = redis
                    .query(STORE, redis::cmd("SET").arg(store_key).arg(encode(record)?).arg("PX").arg(millis(ttl)))
                    .await?;
            }
        }
        Ok(())
    }
}

/// `value` as JSON text with every object's members sorted, so two writings of the same body
/// (member order, whitespace) fingerprint alike.
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn write(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(object) => {
                let mut members: Vec<_> = object.iter().collect();
                members.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (name, member)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(name.clone()).to_string());
                    out.push(':');
                    write(member, out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn encode(record: &Record) -> Result<String, GatewayError> {
    serde_json::to_string(record).map_err(|e| GatewayError::Internal(format!("idempotency record: {e}")))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}
