//! The response cache: answers idempotent calls from stored answers, per backend, bounded in
//! bytes.
//!
//! - **Keys** are [`AnswerKey`]s, made from what goes on the wire, identity included. An answer
//!   is stored under the public key (one entry for everyone) only when its operation is declared
//!   `public` here *and* the backend's answer does not say `Cache-Control: private`; otherwise it
//!   is stored under the caller's key, where only the same identity finds it.
//! - **Lifetimes**: the operation's TTL, cut to the answer's `max-age`; `no-store` is obeyed.
//!   Past it, `stale_while_revalidate` serves the stored answer while one refresh runs behind it,
//!   and `stale_if_error` serves it when the backend fails.
//! - **Mutations**: a successful call that is not idempotent drops the caller's own entries, in
//!   every backend of the process: an entry is only served if the read that stored it started
//!   after its owner's last mutation.
//! - **Second level**: public entries can also live in the shared store for every replica
//!   ([`SecondLevel`]); the store failing means first level only, never an error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use moka::notification::RemovalCause;
use serde::Deserialize;
use tower::ServiceExt;

use super::{Below, CallFuture, CallLayer};
use crate::key::{AnswerKey, Scope};
use crate::trace::CacheStatus;
use crate::{Answer, UpstreamRequest};

/// Longest a TTL or a stale window may be: bounds how long a mutation must be remembered.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// Longest a read can run before its answer is stored (the longest call timeout there is).
const MAX_READ: Duration = Duration::from_secs(300);
/// Owners whose last mutation is remembered; past it the oldest are forgotten, and every private
/// entry stored before that moment is treated as outdated, so forgetting is never unsafe.
const MAX_OWNERS_REMEMBERED: u64 = 100_000;
/// What an entry costs beyond its key and body, for the byte bound.
const ENTRY_OVERHEAD: usize = 96;

/// `[upstreams.NAME.cache]`. Off unless a TTL is given, for the backend or an operation.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Bytes this backend's stored answers (keys included) may take in this replica.
    pub max_bytes: u64,
    /// How long any read of this backend is kept, for its caller only.
    #[serde(with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Per operation template (`"GET /products/{id}"`): its TTL and whether its answer is the same
    /// for every caller.
    pub operations: BTreeMap<String, OperationCache>,
    /// After the TTL, serve the stored answer for this long while one refresh runs behind it.
    #[serde(with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// After the TTL, serve the stored answer for this long when the backend fails.
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// Keep public answers in the shared store (`[redis]`) too, for every replica.
    pub shared: bool,
    /// The shared store, attached at start when `shared` is set.
    #[serde(skip)]
    pub second_level: Option<SecondLevelHandle>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 32 * 1024 * 1024,
            ttl: None,
            operations: BTreeMap::new(),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            shared: false,
            second_level: None,
        }
    }
}

/// `[upstreams.NAME.cache.operations."TEMPLATE"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationCache {
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// The answer does not depend on who asks (catalog data): one entry for every caller. Only
    /// declare it of operations whose backend never varies by identity.
    #[serde(default)]
    pub public: bool,
}

impl CacheConfig {
    pub(crate) fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let lifetimes = self.ttl.into_iter().chain(self.operations.values().map(|op| op.ttl));
        if lifetimes.chain([self.stale_while_revalidate, self.stale_if_error]).any(|d| d > MAX_LIFETIME) {
            problems.push(("cache", "TTLs and stale windows must be at most 1h".to_owned()));
        }
        if self.operations.values().any(|op| op.ttl.is_zero()) {
            problems.push(("cache.operations", "a TTL must be above 0".to_owned()));
        }
        if !(1024..=(16 << 30)).contains(&self.max_bytes) {
            problems.push(("cache.max_bytes", "must be between 1 KiB and 16 GiB".to_owned()));
        }
        problems
    }

    /// How long answers to `operation` may be kept, and for whom.
    fn policy(&self, operation: &str) -> Option<OperationCache> {
        match self.operations.get(operation) {
            Some(op) => Some(op.clone()),
            None => self.ttl.map(|ttl| OperationCache { ttl, public: false }),
        }
    }
}

/// A store every replica shares (Redis), for public answers. Implementations bound each call by
/// their own timeout and answer `None` when unsure: the first level then serves alone.
pub trait SecondLevel: Send + Sync + 'static {
    /// The stored body and how long it stays fresh. `namespace` is the backend (and version).
    fn get(&self, namespace: &str, key: &AnswerKey) -> BoxFuture<'static, Option<(Bytes, Duration)>>;
    /// Stores `body` for `ttl`, in the background.
    fn put(&self, namespace: &str, key: &AnswerKey, body: Bytes, ttl: Duration);
}

/// A [`SecondLevel`] in a config struct.
#[derive(Clone)]
pub struct SecondLevelHandle(pub Arc<dyn SecondLevel>);

impl std::fmt::Debug for SecondLevelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecondLevel")
    }
}

/// When each owner last changed their data through this process, so their older cached reads
/// are not served again.
struct Mutations {
    last: moka::sync::Cache<String, Instant>,
    /// Private entries stored before this are outdated: an owner was forgotten then.
    forgotten_before: Arc<Mutex<Option<Instant>>>,
}

static MUTATIONS: LazyLock<Mutations> = LazyLock::new(|| {
    let forgotten_before = Arc::new(Mutex::new(None));
    let forgotten = Arc::clone(&forgotten_before);
    let last = moka::sync::Cache::builder()
        .max_capacity(MAX_OWNERS_REMEMBERED)
        // Outlives every entry that could predate it: a read that started before the mutation,
        // stored when it ended, then kept for a TTL plus a stale window.
        .time_to_live(MAX_READ + MAX_LIFETIME * 2 + Duration::from_secs(60))
        .eviction_listener(move |_, _, cause| {
            if cause == RemovalCause::Size {
                *forgotten.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
            }
        })
        .build();
    Mutations { last, forgotten_before }
});

impl Mutations {
    fn record(&self, owner: String) {
        self.last.insert(owner, Instant::now());
    }

    /// May a private entry of `owner`'s, from a read that started at `started`, still be served?
    fn allows(&self, owner: Option<&str>, started: Instant) -> bool {
        let forgotten = *self.forgotten_before.lock().unwrap_or_else(PoisonError::into_inner);
        if forgotten.is_some_and(|at| started <= at) {
            return false;
        }
        owner.and_then(|owner| self.last.get(owner)).is_none_or(|mutated| started > mutated)
    }
}

/// May an answer to `owner` from a read that started at `started` be used (stored, served, or
/// handed to a coalesced follower)? Not if the owner changed their data since.
pub(super) fn still_current(owner: Option<&str>, started: Instant) -> bool {
    MUTATIONS.allows(owner, started)
}

/// One stored answer.
#[derive(Debug)]
struct Entry {
    body: Bytes,
    /// When the read that stored it started (see [`Mutations`]).
    started: Instant,
    fresh_until: Instant,
    revalidate_until: Instant,
    serve_on_error_until: Instant,
    /// A refresh behind a stale answer is running: one at a time.
    refreshing: AtomicBool,
}

impl Entry {
    fn gone_at(&self) -> Instant {
        self.revalidate_until.max(self.serve_on_error_until)
    }
}

/// Each entry lives until its last stale window ends.
struct EntryLifetime;

impl moka::Expiry<AnswerKey, Arc<Entry>> for EntryLifetime {
    fn expire_after_create(&self, _key: &AnswerKey, entry: &Arc<Entry>, created_at: Instant) -> Option<Duration> {
        Some(entry.gone_at().saturating_duration_since(created_at))
    }
}

struct CacheState {
    service: &'static str,
    /// The backend, and its version when it is not the stable one: the shared level's namespace,
    /// so a canary's answers never reach the stable version's callers.
    namespace: String,
    config: CacheConfig,
    entries: moka::sync::Cache<AnswerKey, Arc<Entry>>,
}

impl CacheState {
    /// Stores `answer` as its directives allow; the key it went under, if any.
    fn store(&self, policy: &OperationCache, keys: &Keys, answer: &Answer, started: Instant) -> Option<AnswerKey> {
        let directives = answer.cache_control;
        let ttl = directives.max_age.map_or(policy.ttl, |max_age| max_age.min(policy.ttl));
        if directives.no_store || ttl.is_zero() {
            return None;
        }
        let (key, public) = match &keys.public {
            Some(public) if !directives.private => (public, true),
            _ => (&keys.caller, false),
        };
        let now = Instant::now();
        // A copy of its own: an answer's bytes can be a slice of a connection's whole read buffer
        // (hyper's, tonic's), which the entry would keep alive while the weigher counts the slice.
        let body = Bytes::copy_from_slice(&answer.body);
        let entry = Entry {
            body: body.clone(),
            started,
            fresh_until: now + ttl,
            revalidate_until: now + ttl + self.config.stale_while_revalidate,
            serve_on_error_until: now + ttl + self.config.stale_if_error,
            refreshing: AtomicBool::new(false),
        };
        self.entries.insert(key.clone(), Arc::new(entry));
        if public && let Some(second) = &self.config.second_level {
            second.0.put(&self.namespace, key, body, ttl);
        }
        Some(key.clone())
    }
}

/// A call's keys: its caller's, and the public one when its operation is declared public.
struct Keys {
    caller: AnswerKey,
    public: Option<AnswerKey>,
}

#[derive(Clone)]
pub struct CacheLayer(Arc<CacheState>);

impl std::fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer").field("service", &self.0.service).finish_non_exhaustive()
    }
}

impl CacheLayer {
    /// The cache of backend `service`; `version` names a version other than the stable one.
    pub fn new(service: &'static str, version: Option<&str>, config: &CacheConfig) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|key: &AnswerKey, entry: &Arc<Entry>| {
                u32::try_from(key.len() + entry.body.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .expire_after(EntryLifetime)
            .build();
        let namespace = match version {
            Some(version) => format!("{service}.{version}"),
            None => service.to_owned(),
        };
        Self(Arc::new(CacheState { service, namespace, config: config.clone(), entries }))
    }
}

impl CallLayer for CacheLayer {
    fn call<S: Below>(&self, inner: S, mut request: UpstreamRequest) -> CallFuture {
        let owner = request.cx.identity().and_then(crate::Identity::owner);
        if !request.call.read {
            // A mutation: once it succeeds, its caller's cached reads are outdated.
            return Box::pin(async move {
                let result = inner.oneshot(request).await;
                if result.is_ok()
                    && let Some(owner) = owner
                {
                    MUTATIONS.record(owner);
                }
                result
            });
        }
        let Some(policy) = self.0.config.policy(request.call.operation) else {
            return Box::pin(inner.oneshot(request));
        };
        let state = Arc::clone(&self.0);
        Box::pin(async move {
            let started = Instant::now();
            let keys = Keys {
                caller: AnswerKey::of(&request, Scope::Caller),
                public: policy.public.then(|| AnswerKey::of(&request, Scope::Public)),
            };
            let trace = request.trace.clone();
            let mut stale = None;
            for key in keys.public.iter().chain([&keys.caller]) {
                let Some(entry) = state.entries.get(key) else { continue };
                let private = Some(key) != keys.public.as_ref();
                if private && !MUTATIONS.allows(owner.as_deref(), entry.started) {
                    state.entries.invalidate(key);
                    continue;
                }
                if started < entry.fresh_until {
                    trace.set_cache(CacheStatus::Hit);
                    return Ok(Answer::new(entry.body.clone()));
                }
                if started < entry.revalidate_until {
                    if !entry.refreshing.swap(true, Ordering::AcqRel) {
                        let keys = Keys { caller: keys.caller.clone(), public: keys.public.clone() };
                        let stale = (key.clone(), Arc::clone(&entry));
                        refresh(Arc::clone(&state), inner.clone(), &request, policy.clone(), keys, stale);
                    }
                    trace.set_cache(CacheStatus::Stale);
                    return Ok(Answer::new(entry.body.clone()));
                }
                if started < entry.serve_on_error_until && stale.is_none() {
                    stale = Some(entry);
                }
            }
            if let (Some(second), Some(public)) = (&state.config.second_level, &keys.public)
                && let Some((body, ttl)) = second.0.get(&state.namespace, public).await
            {
                let answer = Answer::new(body);
                let fresh_for = OperationCache { ttl: ttl.min(policy.ttl), public: true };
                state.store(
                    &fresh_for,
                    &Keys { caller: keys.caller.clone(), public: Some(public.clone()) },
                    &answer,
                    started,
                );
                trace.set_cache(CacheStatus::Hit);
                return Ok(answer);
            }
            trace.set_cache(CacheStatus::Miss);
            // Coalescing below shares this call under the same key the answer will be stored at.
            let shared_as = match &keys.public {
                Some(public) => (public.clone(), Scope::Public),
                None => (keys.caller.clone(), Scope::Caller),
            };
            request.shared_as = Some(shared_as);
            match inner.oneshot(request).await {
                Ok(answer) => {
                    state.store(&policy, &keys, &answer, started);
                    Ok(answer)
                }
                Err(error) if error.backend_did_not_answer() => match stale {
                    Some(entry) => {
                        trace.set_cache(CacheStatus::Stale);
                        Ok(Answer::new(entry.body.clone()))
                    }
                    None => Err(error),
                },
                Err(error) => Err(error),
            }
        })
    }
}

/// Refreshes a stale entry behind the answer already given: detached from the request (which is
/// over by then) but with its identity, so the refreshed answer is the one it would get.
fn refresh<S: Below>(
    state: Arc<CacheState>,
    inner: S,
    request: &UpstreamRequest,
    policy: OperationCache,
    keys: Keys,
    (stale_key, stale): (AnswerKey, Arc<Entry>),
) {
    let mut refresh = UpstreamRequest::new(request.cx.detached(), request.call.clone());
    refresh.shared_as = Some(match &keys.public {
        Some(public) => (public.clone(), Scope::Public),
        None => (keys.caller.clone(), Scope::Caller),
    });
    tokio::spawn(async move {
        let started = Instant::now();
        match inner.oneshot(refresh).await {
            Ok(answer) => {
                // Nothing replaced the stale entry (the answer now says `no-store`, or `private`
                // where it was public): it must not be served any longer.
                if state.store(&policy, &keys, &answer, started).as_ref() != Some(&stale_key) {
                    state.entries.invalidate(&stale_key);
                }
            }
            // The next read past the TTL tries again.
            Err(_) => stale.refreshing.store(false, Ordering::Release),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Scope;
    use crate::{Call, CallContext};

    /// An answer sliced from a connection's read buffer is stored as a copy of its own: the
    /// entry weighs what it holds.
    #[test]
    fn a_stored_answer_is_a_copy_not_the_buffer_it_was_sliced_from() {
        let cache = CacheLayer::new("catalog", None, &CacheConfig::default());
        let buffer = Bytes::from(vec![b'x'; 64 * 1024]);
        let answer = Answer::new(buffer.slice(0..16));
        let request =
            UpstreamRequest::new(CallContext::new("req-1"), Call::get("GET /products/{id}", ["products", "p-1"]));
        let keys = Keys { caller: AnswerKey::of(&request, Scope::Caller), public: None };
        let policy = OperationCache { ttl: Duration::from_secs(60), public: false };
        let key = cache.0.store(&policy, &keys, &answer, Instant::now()).expect("stored");
        let entry = cache.0.entries.get(&key).expect("an entry");
        assert_eq!(entry.body, answer.body);
        assert_ne!(entry.body.as_ptr(), answer.body.as_ptr(), "a copy of its own");
    }
}
