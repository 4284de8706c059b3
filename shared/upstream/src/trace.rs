//! What the layers decided for one call, written as they decide and read once by the record
//! layer: the access log (and later metrics and spans) show every decision of every call.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How the cache layer answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// No cache applies (not a read, or no TTL for its operation).
    Bypass,
    Hit,
    Miss,
    /// A stored answer past its freshness: within `stale_while_revalidate` (refreshed behind it)
    /// or `stale_if_error` (the backend failed).
    Stale,
    /// Another request's identical call in flight answered it.
    Coalesced,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Coalesced => "coalesced",
        }
    }

    const ALL: [Self; 5] = [Self::Bypass, Self::Hit, Self::Miss, Self::Stale, Self::Coalesced];
}

/// A circuit breaker's state, as the call that went through it saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Probing: a limited number of calls test whether the instance is back.
    HalfOpen,
    /// Failing fast: no call reaches the instance until its cool-off ends.
    Open,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    const ALL: [Self; 3] = [Self::Closed, Self::HalfOpen, Self::Open];
}

/// The decisions made for one call, shared by its attempts. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct CallTrace(Arc<TraceState>);

#[derive(Debug, Default)]
struct TraceState {
    cache: AtomicU8,
    attempts: AtomicU8,
    hedges: AtomicU8,
    breaker: AtomicU8,
    /// The index (plus one; zero is none) of the instance the last attempt went to.
    instance_index: AtomicUsize,
    /// Its label (`host:port` from the config: a bounded set).
    instance: Mutex<Option<Arc<str>>>,
}

/// What [`CallTrace`] holds once the call is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallDecisions {
    pub cache: CacheStatus,
    /// Attempts sent to the backend (0 when the cache or a coalesced call answered).
    pub attempts: u8,
    pub hedges: u8,
    pub instance: Option<Arc<str>>,
    pub breaker: BreakerState,
}

impl CallTrace {
    pub(crate) fn set_cache(&self, status: CacheStatus) {
        self.0.cache.store(status as u8, Ordering::Relaxed);
    }

    pub(crate) fn add_attempt(&self) {
        let _ = self.0.attempts.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    pub(crate) fn add_hedge(&self) {
        let _ = self.0.hedges.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    pub(crate) fn chose(&self, index: usize, label: &Arc<str>, breaker: BreakerState) {
        self.0.instance_index.store(index + 1, Ordering::Relaxed);
        self.0.breaker.store(breaker as u8, Ordering::Relaxed);
        *self.0.instance.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(label));
    }

    /// A call refused by every instance's open breaker.
    pub(crate) fn refused_by_breaker(&self) {
        self.0.breaker.store(BreakerState::Open as u8, Ordering::Relaxed);
    }

    /// The instance the latest attempt went to.
    pub(crate) fn instance_index(&self) -> Option<usize> {
        self.0.instance_index.load(Ordering::Relaxed).checked_sub(1)
    }

    pub fn decisions(&self) -> CallDecisions {
        let state = &self.0;
        CallDecisions {
            cache: CacheStatus::ALL[usize::from(state.cache.load(Ordering::Relaxed)).min(4)],
            attempts: state.attempts.load(Ordering::Relaxed),
            hedges: state.hedges.load(Ordering::Relaxed),
            instance: state.instance.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            breaker: BreakerState::ALL[usize::from(state.breaker.load(Ordering::Relaxed)).min(2)],
        }
    }
}
