//! Failed authentication attempts per client address, in fixed one-minute windows, in a map of
//! bounded size: a source past its limit is refused before any verification work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most client addresses whose failures are tracked at once; past it, the oldest windows go.
const MAX_TRACKED_SOURCES: usize = 100_000;
/// The window failed attempts are counted in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Failed authentication attempts per client address, in fixed one-minute windows, in a map of
/// bounded size.
pub struct FailedAttempts {
    limit: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedAttempts {
    pub fn new(limit: u32) -> Self {
        Self { limit, windows: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `client` must wait, when it has used up its failures for this window.
    pub fn blocked(&self, client: IpAddr) -> Option<Duration> {
        let windows = self.lock();
        let (start, failures) = windows.get(&client)?;
        let left = FAILURE_WINDOW.checked_sub(start.elapsed())?;
        (*failures >= self.limit).then_some(left)
    }

    pub fn record(&self, client: IpAddr) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_blocked_after_its_limit_and_others_are_not() {
        let failures = FailedAttempts::new(2);
        let (bad, good): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        failures.record(bad);
        assert!(failures.blocked(bad).is_none());
        failures.record(bad);
        let wait = failures.blocked(bad).expect("blocked after 2 failures");
        assert!(wait <= FAILURE_WINDOW && !wait.is_zero());
        assert!(failures.blocked(good).is_none());
    }

    #[test]
    fn the_map_is_bounded_whatever_the_number_of_sources() {
        let failures = FailedAttempts::new(5);
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 10) {
            failures.record(IpAddr::V4(std::net::Ipv4Addr::from(i)));
        }
        assert!(failures.lock().len() <= MAX_TRACKED_SOURCES);
    }
}
