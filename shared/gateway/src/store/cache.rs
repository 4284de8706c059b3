//! The response cache's shared level: public answers in Redis, for every replica.
//!
//! Keys are `{prefix}:cache:{bff}:{backend}:{sha256 of the answer key}`; the answer key holds no
//! identity (only public answers come here) but can be long, so it is hashed. A lookup waits at
//! most `[redis] cache_timeout`; any failure is a miss, logged once, after which the level is
//! skipped for a second before it is tried again, so Redis being down costs one timeout a second,
//! not one per call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bff_upstream::AnswerKey;
use bff_upstream::layer::{SecondLevel, SecondLevelHandle};
use bytes::Bytes;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::Redis;

/// How long the shared level is skipped after it failed.
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(1);
const STORE: &str = "cache";

/// [`SecondLevel`] over the BFF's Redis. Cheap to clone; clones share.
#[derive(Clone)]
pub struct SharedCache(Arc<Inner>);

struct Inner {
    redis: Arc<Redis>,
    bff: &'static str,
    skip_until: Mutex<Option<Instant>>,
    reported: AtomicBool,
}

impl SharedCache {
    /// `upstreams`, with this level given to every backend whose cache says `shared = true`
    /// when there is a store (validation made sure there is one if any says so).
    pub fn upstreams(
        upstreams: &bff_upstream::Upstreams,
        redis: Option<&Arc<Redis>>,
        bff: &'static str,
    ) -> bff_upstream::Upstreams {
        let mut upstreams = upstreams.clone();
        if let Some(redis) = redis {
            let level = Self(Arc::new(Inner {
                redis: Arc::clone(redis),
                bff,
                skip_until: Mutex::new(None),
                reported: AtomicBool::new(false),
            }));
            upstreams.share_cache_through(&SecondLevelHandle(Arc::new(level)));
        }
        upstreams
    }
}

impl Inner {
    fn key(&self, service: &str, key: &AnswerKey) -> String {
        let digest = hex::encode(Sha256::digest(key.as_bytes()));
        self.redis.key(&format!("cache:{}:{service}:{digest}", self.bff))
    }

    fn skipping(&self) -> bool {
        self.skip_until.lock().unwrap_or_else(PoisonError::into_inner).is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, why: &str) {
        *self.skip_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + SKIP_AFTER_FAILURE);
        if !self.reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(store = STORE, reason = why, "shared cache unavailable: serving from this replica's cache");
        }
    }

    fn answered(&self) {
        if self.reported.swap(false, Ordering::Relaxed) {
            tracing::info!(store = STORE, "shared cache available again");
        }
    }
}

impl SecondLevel for SharedCache {
    fn get(&self, service: &str, key: &AnswerKey) -> BoxFuture<'static, Option<(Bytes, Duration)>> {
        let inner = Arc::clone(&self.0);
        if inner.skipping() {
            return Box::pin(std::future::ready(None));
        }
        let key = inner.key(service, key);
        Box::pin(async move {
            let lookup = async {
                let mut connection = inner.redis.connection(STORE).await.map_err(|e| e.to_string())?;
                redis::pipe()
                    .get(&key)
                    .pttl(&key)
                    .query_async::<(Option<Vec<u8>>, i64)>(&mut connection)
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(inner.redis.cache_timeout, lookup).await {
                Ok(Ok((Some(body), ttl_ms))) if ttl_ms > 0 => {
                    inner.answered();
                    Some((Bytes::from(body), Duration::from_millis(ttl_ms.unsigned_abs())))
                }
                Ok(Ok(_)) => {
                    inner.answered();
                    None
                }
                Ok(Err(why)) => {
                    inner.failed(&why);
                    None
                }
                Err(_) => {
                    inner.failed("no answer within cache_timeout");
                    None
                }
            }
        })
    }

    fn put(&self, service: &str, key: &AnswerKey, body: Bytes, ttl: Duration) {
        let inner = Arc::clone(&self.0);
        if inner.skipping() {
            return;
        }
        let key = inner.key(service, key);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        tokio::spawn(async move {
            let store = async {
                let mut connection = inner.redis.connection(STORE).await.map_err(|e| e.to_string())?;
                redis::cmd("SET")
                    .arg(&key)
                    .arg(body.as_ref())
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<()>(&mut connection)
                    .await
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(inner.redis.timeout, store).await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => inner.failed(&why),
                Err(_) => inner.failed("no answer within timeout"),
            }
        });
    }
}
