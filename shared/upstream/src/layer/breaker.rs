//! A circuit breaker per backend instance: the state machine and its config. The balancer holds
//! one per instance and only picks instances whose breaker admits the call, so an open breaker
//! is also passive outlier ejection: the instance gets no traffic until its cool-off ends, then a
//! few probes decide whether it is readmitted.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::trace::BreakerState;

/// `[upstreams.NAME.breaker]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Opens after this many failures in a row.
    pub consecutive_failures: u32,
    /// Or when at least this fraction of the last `window` calls failed.
    pub failure_rate: f64,
    /// How many recent calls the failure rate is taken over (at most 64).
    pub window: u32,
    /// How long it stays open before probing.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// Calls let through while half-open; that many successes close it, one failure reopens it.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 10,
            failure_rate: 0.5,
            window: 20,
            open_for: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    pub(crate) fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.consecutive_failures == 0 {
            problems.push(("breaker.consecutive_failures", "must be at least 1".to_owned()));
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            problems.push(("breaker.failure_rate", "must be above 0 and at most 1".to_owned()));
        }
        if !(1..=64).contains(&self.window) {
            problems.push(("breaker.window", "must be between 1 and 64 calls".to_owned()));
        }
        if self.open_for.is_zero() || self.open_for > Duration::from_secs(600) {
            problems.push(("breaker.open_for", "must be between 1ms and 10m".to_owned()));
        }
        if !(1..=100).contains(&self.half_open_probes) {
            problems.push(("breaker.half_open_probes", "must be between 1 and 100".to_owned()));
        }
        problems
    }
}

/// What a call let through by the breaker must report back, so a half-open probe slot is given
/// back however the call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Normal,
    /// A probe of the half-open period that began when the breaker had opened this many times:
    /// a probe that outlives its period (the breaker reopened meanwhile) counts for nothing.
    Probe(u32),
}

/// How a call ended, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    /// The backend failed (see `UpstreamError::is_backend_failure`), or hung until the deadline.
    Failure,
    /// Dropped before it ended (a hedge that lost): says nothing about the instance.
    Cancelled,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

/// One instance's breaker.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    consecutive_failures: u32,
    /// How many times it has opened.
    openings: u32,
    /// The last `window` outcomes, newest in bit 0; a set bit is a failure.
    recent: u64,
    recorded: u32,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self { config, state: State::Closed, consecutive_failures: 0, openings: 0, recent: 0, recorded: 0 }
    }

    /// The state as a call arriving `now` would find it.
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Would [`Breaker::admit`] let a call through now? (Without taking a probe slot.)
    pub(crate) fn would_admit(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } => now >= until,
            State::HalfOpen { in_flight, .. } => in_flight < self.config.half_open_probes,
        }
    }

    /// Lets a call through, or not. An open breaker whose cool-off has ended turns half-open and
    /// admits up to `half_open_probes` calls at a time.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<Admission> {
        if let State::Open { until } = self.state
            && now >= until
        {
            self.state = State::HalfOpen { in_flight: 0, successes: 0 };
        }
        match &mut self.state {
            State::Closed => Some(Admission::Normal),
            State::Open { .. } => None,
            State::HalfOpen { in_flight, .. } if *in_flight < self.config.half_open_probes => {
                *in_flight += 1;
                Some(Admission::Probe(self.openings))
            }
            State::HalfOpen { .. } => None,
        }
    }

    pub(crate) fn record(&mut self, admission: Admission, verdict: Verdict, now: Instant) {
        if let Admission::Probe(openings) = admission {
            let State::HalfOpen { in_flight, successes } = &mut self.state else { return };
            if openings != self.openings {
                return;
            }
            *in_flight = in_flight.saturating_sub(1);
            match verdict {
                Verdict::Cancelled => {}
                Verdict::Failure => self.open(now),
                Verdict::Success => {
                    *successes += 1;
                    if *successes >= self.config.half_open_probes {
                        self.close();
                    }
                }
            }
            return;
        }
        // A call admitted while closed that ends after the breaker opened says nothing new.
        if !matches!(self.state, State::Closed) || verdict == Verdict::Cancelled {
            return;
        }
        let failed = verdict == Verdict::Failure;
        let window = self.config.window.min(64);
        let mask = if window == 64 { u64::MAX } else { (1u64 << window) - 1 };
        self.recent = ((self.recent << 1) | u64::from(failed)) & mask;
        self.recorded = (self.recorded + 1).min(window);
        self.consecutive_failures = if failed { self.consecutive_failures + 1 } else { 0 };
        let failures = self.recent.count_ones();
        let rate_tripped =
            self.recorded == window && f64::from(failures) >= self.config.failure_rate * f64::from(window);
        if self.consecutive_failures >= self.config.consecutive_failures || rate_tripped {
            self.open(now);
        }
    }

    fn open(&mut self, now: Instant) {
        self.openings = self.openings.wrapping_add(1);
        self.state = State::Open { until: now + self.config.open_for };
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.consecutive_failures = 0;
        self.recent = 0;
        self.recorded = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig::default())
    }

    fn run(breaker: &mut Breaker, verdict: Verdict, now: Instant) {
        let admission = breaker.admit(now).expect("admitted");
        breaker.record(admission, verdict, now);
    }

    #[test]
    fn opens_after_consecutive_failures_and_recovers_through_half_open() {
        let (mut breaker, now) = (breaker(), Instant::now());
        for _ in 0..9 {
            run(&mut breaker, Verdict::Failure, now);
        }
        assert_eq!(breaker.state(now), BreakerState::Closed, "nine failures are not ten");
        run(&mut breaker, Verdict::Failure, now);
        assert_eq!(breaker.state(now), BreakerState::Open);
        assert_eq!(breaker.admit(now + Duration::from_secs(4)), None, "open fails fast");
        let later = now + Duration::from_secs(5);
        assert_eq!(breaker.state(later), BreakerState::HalfOpen);
        let probe = breaker.admit(later).unwrap();
        assert_eq!(probe, Admission::Probe(1));
        assert_eq!(breaker.admit(later), None, "one probe at a time");
        breaker.record(probe, Verdict::Success, later);
        assert_eq!(breaker.state(later), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens_and_a_cancelled_one_frees_its_slot() {
        let (mut breaker, now) = (breaker(), Instant::now());
        for _ in 0..10 {
            run(&mut breaker, Verdict::Failure, now);
        }
        let later = now + Duration::from_secs(5);
        let probe = breaker.admit(later).unwrap();
        breaker.record(probe, Verdict::Cancelled, later);
        let probe = breaker.admit(later).expect("the cancelled probe gave its slot back");
        breaker.record(probe, Verdict::Failure, later);
        assert_eq!(breaker.state(later), BreakerState::Open);
        assert_eq!(breaker.state(later + Duration::from_millis(4999)), BreakerState::Open);
    }

    #[test]
    fn a_probe_that_outlives_its_half_open_period_counts_for_nothing() {
        let config = BreakerConfig { half_open_probes: 2, ..BreakerConfig::default() };
        let (mut breaker, now) = (Breaker::new(config), Instant::now());
        for _ in 0..10 {
            run(&mut breaker, Verdict::Failure, now);
        }
        let later = now + Duration::from_secs(5);
        let (slow, failing) = (breaker.admit(later).unwrap(), breaker.admit(later).unwrap());
        breaker.record(failing, Verdict::Failure, later);
        let again = later + Duration::from_secs(5);
        let fresh = breaker.admit(again).unwrap();
        // The first period's probe ends now: it neither frees a slot nor helps close.
        breaker.record(slow, Verdict::Success, again);
        let second = breaker.admit(again).expect("this period's second slot");
        assert!(breaker.admit(again).is_none(), "the old probe freed no slot of this period");
        breaker.record(fresh, Verdict::Success, again);
        assert_eq!(breaker.state(again), BreakerState::HalfOpen, "one success of this period, not two");
        breaker.record(second, Verdict::Success, again);
        assert_eq!(breaker.state(again), BreakerState::Closed);
    }

    #[test]
    fn opens_when_half_of_the_window_failed_even_without_a_run_of_failures() {
        let (mut breaker, now) = (breaker(), Instant::now());
        for i in 0..19 {
            run(&mut breaker, if i % 2 == 0 { Verdict::Failure } else { Verdict::Success }, now);
        }
        assert_eq!(breaker.state(now), BreakerState::Closed, "the window is not full yet");
        run(&mut breaker, Verdict::Success, now);
        assert_eq!(breaker.state(now), BreakerState::Open, "10 of the last 20 failed");
    }

    #[test]
    fn successes_reset_the_run() {
        let (mut breaker, now) = (breaker(), Instant::now());
        for _ in 0..3 {
            for _ in 0..9 {
                run(&mut breaker, Verdict::Failure, now);
            }
            for _ in 0..11 {
                run(&mut breaker, Verdict::Success, now);
            }
        }
        assert_eq!(breaker.state(now), BreakerState::Closed, "9 of 20 is under half");
    }
}
