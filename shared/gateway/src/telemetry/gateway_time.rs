//! The gateway's own time in a request: its total time less the time it spent waiting on
//! backends, where waits that overlap (a fan-out in parallel) count once, as the wall time they
//! cover. Three 50 ms calls at once are 50 ms of waiting, not 150; the same three one after the
//! other are 150.

use std::time::{Duration, Instant};

use bff_upstream::UpstreamCall;

/// How a request's time divides between the gateway and its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSplit {
    pub total: Duration,
    /// The union of the intervals spent waiting on backends, within the request.
    pub upstream: Duration,
}

impl TimeSplit {
    /// The split of a request that ran from `started` to `ended` and made `calls`.
    pub fn of(started: Instant, ended: Instant, calls: &[UpstreamCall]) -> Self {
        let total = ended.saturating_duration_since(started);
        // Each call as an interval clipped to the request, in order of start.
        let mut intervals: Vec<(Instant, Instant)> = calls
            .iter()
            .map(|call| (call.started.max(started), (call.started + call.latency).min(ended)))
            .filter(|(from, to)| from < to)
            .collect();
        intervals.sort_unstable_by_key(|(from, _)| *from);
        let mut upstream = Duration::ZERO;
        let mut current: Option<(Instant, Instant)> = None;
        for (from, to) in intervals {
            current = match current {
                Some((start, end)) if from <= end => Some((start, end.max(to))),
                Some((start, end)) => {
                    upstream += end - start;
                    Some((from, to))
                }
                None => Some((from, to)),
            };
        }
        if let Some((start, end)) = current {
            upstream += end - start;
        }
        Self { total, upstream }
    }

    /// The gateway's own time: everything but the waiting.
    pub fn gateway(&self) -> Duration {
        self.total.saturating_sub(self.upstream)
    }
}

#[cfg(test)]
mod tests {
    use bff_upstream::{CallOutcome, CallTrace};

    use super::*;

    fn call(started: Instant, latency_ms: u64) -> UpstreamCall {
        UpstreamCall {
            service: "test",
            operation: "GET /x",
            started,
            latency: Duration::from_millis(latency_ms),
            outcome: CallOutcome::Ok,
            decisions: CallTrace::default().decisions(),
        }
    }

    #[test]
    fn parallel_waits_count_once_and_sequential_ones_add_up() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let end = t0 + ms(200);
        // A fan-out of three 50 ms calls at once, 10 ms in: 50 ms of waiting.
        let parallel = [call(t0 + ms(10), 50), call(t0 + ms(10), 50), call(t0 + ms(11), 49)];
        let split = TimeSplit::of(t0, end, &parallel);
        assert_eq!((split.upstream, split.gateway()), (ms(50), ms(150)));
        // The same three one after the other: 150 ms.
        let sequential = [call(t0, 50), call(t0 + ms(50), 50), call(t0 + ms(100), 50)];
        assert_eq!(TimeSplit::of(t0, end, &sequential).gateway(), ms(50));
        // Overlapping in a chain, and a gap: [0,60) ∪ [40,90) ∪ [120,130) is 100 ms.
        let chained = [call(t0 + ms(40), 50), call(t0, 60), call(t0 + ms(120), 10)];
        assert_eq!(TimeSplit::of(t0, end, &chained).upstream, ms(100));
        // A call that outlives the request (a subscription's, a detached one) counts only within it.
        assert_eq!(TimeSplit::of(t0, end, &[call(t0 + ms(150), 500)]).upstream, ms(50));
        assert_eq!(TimeSplit::of(t0, end, &[]).gateway(), ms(200));
    }
}
