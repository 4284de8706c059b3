//! Failed authentication attempts per client address, as one more limit (`[limits]
//! failed_authentication`): each failure spends a unit, through Redis when limits are shared.
//! Whether an address may try again is answered in process, before any verification work, from
//! what the last failure's decision said (here or on Redis), so a successful request costs no
//! round trip for it, and a replica learns of failures made on the others at its next failure.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::limiter::{Check, Limiter, Policy};
use super::local::Table;

pub struct FailedAttempts {
    policy: Arc<Policy>,
    /// Address -> until when it is refused (nanoseconds on `epoch`).
    blocked: Table,
    epoch: Instant,
}

impl FailedAttempts {
    pub(super) fn new(policy: Arc<Policy>, max_keys: usize) -> Self {
        Self { policy, blocked: Table::new(max_keys), epoch: Instant::now() }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long `client` must wait, when it has used up its failures.
    pub fn blocked(&self, client: IpAddr) -> Option<Duration> {
        // Keyed by the address itself: nothing is formatted for the requests that succeed.
        let slot = self.blocked.slot(&client);
        let until = *self.blocked.lock(slot).get(&slot.hash())?;
        let now = self.now();
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// Counts a failure from `client`; past the limit, the address is refused until a unit is back.
    pub async fn record(&self, limiter: &Limiter, client: IpAddr) {
        let key = client.to_string();
        let decision = limiter.decide(&[Check { policy: &self.policy, key: &key, cost: 1 }], true).await;
        let Some((_, outcome)) = decision.states.first() else { return };
        // Refused, or the last unit spent: the address waits for the next one.
        let wait = if outcome.admitted { outcome.next_unit } else { outcome.retry_after };
        if wait.is_zero() {
            return;
        }
        let now = self.now();
        let slot = self.blocked.slot(&client);
        let until = now.saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
        self.blocked.store(&mut self.blocked.lock(slot), slot, until, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Quota, Unit};

    #[tokio::test]
    async fn a_source_is_blocked_after_its_limit_and_others_are_not() {
        let limiter = Limiter::new(100, None);
        let policy = limiter.policy("failed", Quota::new(2, Duration::from_secs(60), 2), Unit::Requests);
        let failures = FailedAttempts::new(policy, 100);
        let (bad, good): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        failures.record(&limiter, bad).await;
        assert!(failures.blocked(bad).is_none());
        failures.record(&limiter, bad).await;
        let wait = failures.blocked(bad).expect("blocked after 2 failures");
        assert!(wait <= Duration::from_secs(30) && wait > Duration::from_secs(29), "{wait:?}: one unit's time");
        assert!(failures.blocked(good).is_none());
    }
}
