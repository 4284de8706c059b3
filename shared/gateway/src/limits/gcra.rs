//! The generic cell rate algorithm, as arithmetic on one number per key: the theoretical arrival
//! time (TAT), when the key would be fully rested had every unit it spent arrived evenly. A quota
//! of `rate` per `per` with `burst` makes units come back one per `interval = per / rate`, and
//! admits a spend of `cost` at `now` when `max(TAT, now) + cost * interval - now <= burst *
//! interval`. A key whose TAT has passed is the same as a key never seen, which is what lets the
//! in-process table drop it and Redis expire it. The Lua script of [`super::shared`] does the same
//! arithmetic in Redis, on whole microseconds (see [`Rate::of`]), so both give the same answers.

use std::time::Duration;

use super::config::Quota;

/// A quota in the algorithm's terms: nanoseconds per unit, and the burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub interval_ns: u64,
    pub burst: u64,
}

impl Rate {
    /// `quota`, or the `1 / share` of it one of `share` replicas enforces alone (never below one
    /// unit of burst). The interval is rounded up to whole microseconds, so the Redis script (on
    /// Redis's microsecond clock) does exact integer arithmetic and agrees with this one.
    pub fn of(quota: &Quota, share: u32) -> Self {
        let share = u64::from(share.max(1));
        let per = u64::try_from(quota.per.as_nanos()).unwrap_or(u64::MAX);
        let interval_ns = per.div_ceil(quota.rate.max(1)).saturating_mul(share).div_ceil(1_000).max(1) * 1_000;
        Self { interval_ns, burst: (quota.burst / share).max(1) }
    }

    fn tolerance(self) -> u64 {
        self.burst.saturating_mul(self.interval_ns)
    }
}

/// One key's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub admitted: bool,
    /// The key's TAT were the spend made.
    pub spent_tat: u64,
    /// Units left: after the spend when admitted, as things stand when not.
    pub remaining: u64,
    /// Until the key is fully rested: after the spend when admitted, as things stand when not.
    pub reset: Duration,
    /// How long until this spend would be admitted (zero when it is).
    pub retry_after: Duration,
    /// How long until one more unit may be spent, as things stand after this decision.
    pub next_unit: Duration,
}

/// Whether `cost` units may be spent at `now` from a key whose TAT is `tat` (0: never seen).
pub fn decide(tat: u64, now: u64, rate: Rate, cost: u64) -> Outcome {
    let tat = tat.max(now);
    let spent_tat = tat.saturating_add(cost.saturating_mul(rate.interval_ns));
    let tolerance = rate.tolerance();
    let admitted = spent_tat - now <= tolerance;
    let standing = if admitted { spent_tat } else { tat };
    Outcome {
        admitted,
        spent_tat,
        remaining: tolerance.saturating_sub(standing - now) / rate.interval_ns,
        reset: Duration::from_nanos(standing - now),
        retry_after: Duration::from_nanos((spent_tat - now).saturating_sub(tolerance)),
        next_unit: Duration::from_nanos(
            standing.saturating_add(rate.interval_ns).saturating_sub(now).saturating_sub(tolerance),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_fresh_key_admits_its_burst_and_then_one_unit_per_interval() {
        let rate = Rate::of(&Quota::new(10, Duration::from_secs(1), 3), 1);
        assert_eq!(rate, Rate { interval_ns: SECOND / 10, burst: 3 });
        let now = 5 * SECOND;
        let (mut tat, mut admitted) = (0, 0);
        for _ in 0..5 {
            let outcome = decide(tat, now, rate, 1);
            if outcome.admitted {
                tat = outcome.spent_tat;
                admitted += 1;
            }
        }
        assert_eq!(admitted, 3, "the burst, all at once");
        let refused = decide(tat, now, rate, 1);
        assert_eq!((refused.remaining, refused.retry_after), (0, Duration::from_millis(100)));
        assert_eq!(refused.next_unit, Duration::from_millis(100));
        assert_eq!(refused.reset, Duration::from_millis(300));
        let later = decide(tat, now + SECOND / 10, rate, 1);
        assert!(later.admitted, "one unit came back after one interval");
        assert_eq!(later.remaining, 0);
    }

    #[test]
    fn a_cost_spends_that_many_units_and_more_than_the_burst_never_passes() {
        let rate = Rate::of(&Quota::new(60, Duration::from_secs(60), 20), 1);
        let outcome = decide(0, SECOND, rate, 7);
        assert!(outcome.admitted);
        assert_eq!((outcome.remaining, outcome.reset), (13, Duration::from_secs(7)));
        let too_much = decide(0, SECOND, rate, 21);
        assert!(
            !too_much.admitted,
            "a cost over the burst is never admitted (the GraphQL budget refuses it as too costly)"
        );
    }

    #[test]
    fn intervals_are_whole_microseconds_so_redis_agrees() {
        // 27120 a minute: 2212.39 µs each, counted as 2213.
        let rate = Rate::of(&Quota::new(27_120, Duration::from_secs(60), 9_040), 1);
        assert_eq!(rate.interval_ns, 2_213_000);
        assert!(decide(0, SECOND, rate, 9_040).admitted, "a fresh key spends its whole burst");
    }

    #[test]
    fn a_replica_alone_enforces_its_share() {
        let quota = Quota::new(50, Duration::from_secs(1), 100);
        assert_eq!(Rate::of(&quota, 4), Rate { interval_ns: 4 * SECOND / 50, burst: 25 });
        assert_eq!(Rate::of(&Quota::new(1, Duration::from_secs(1), 2), 8).burst, 1, "never below one");
    }
}
