//! The breakers of a BFF's backend instances, where its metrics can read them: each instance
//! registers its breaker when its stack is built; a scrape asks each for its state.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use crate::layer::BreakerHandle;
use crate::trace::BreakerState;

/// The instances one BFF's backends registered. Cheap to clone; clones share.
#[derive(Clone, Default)]
pub struct HealthRegistry(Arc<Mutex<Vec<Registered>>>);

struct Registered {
    service: &'static str,
    instance: Arc<str>,
    breaker: Weak<Mutex<crate::layer::Breaker>>,
}

impl std::fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthRegistry")
    }
}

/// One instance's breaker, as a scrape sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceHealth {
    pub service: &'static str,
    /// `host:port` from the config.
    pub instance: Arc<str>,
    pub breaker: BreakerState,
}

impl HealthRegistry {
    pub(crate) fn register(&self, service: &'static str, instance: Arc<str>, breaker: &BreakerHandle) {
        let mut registered = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        registered.retain(|r| r.breaker.strong_count() > 0);
        registered.push(Registered { service, instance, breaker: Arc::downgrade(breaker) });
    }

    /// Every live instance's breaker state, now.
    pub fn states(&self) -> Vec<InstanceHealth> {
        let now = Instant::now();
        let registered = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        registered
            .iter()
            .filter_map(|r| {
                let breaker = r.breaker.upgrade()?;
                let state = breaker.lock().unwrap_or_else(PoisonError::into_inner).state(now);
                Some(InstanceHealth { service: r.service, instance: Arc::clone(&r.instance), breaker: state })
            })
            .collect()
    }
}
