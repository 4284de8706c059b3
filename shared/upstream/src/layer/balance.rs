//! The bottom of a backend's stack: its instances, each with its own transport (one reqwest pool
//! or one gRPC channel per instance, so traffic spreads instead of pinning to one HTTP/2
//! connection) and its own circuit breaker.
//!
//! Each attempt goes to the less loaded of two instances picked at random among those whose
//! breaker admits it (power of two choices on outstanding requests, as tower's `p2c` and Envoy's
//! least-request do). An instance that keeps failing opens its breaker and is left out until its
//! cool-off ends (passive outlier ejection); when every instance's breaker is open the call fails
//! at once with [`UpstreamError::CircuitOpen`], costing the backend nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower::{Service, ServiceExt};

use super::CallFuture;
use super::breaker::{Admission, Breaker, BreakerConfig, Verdict};
use crate::{Answer, UpstreamError, UpstreamRequest};

/// One instance of a backend.
#[derive(Debug)]
pub struct Instance<T> {
    /// `host:port` from the config, for logs: a bounded set.
    label: Arc<str>,
    transport: T,
    outstanding: AtomicUsize,
    breaker: BreakerHandle,
}

/// An instance's breaker, shared with the registry its metrics read.
pub type BreakerHandle = Arc<Mutex<Breaker>>;

impl<T> Instance<T> {
    pub fn new(label: impl Into<Arc<str>>, transport: T, breaker: &BreakerConfig) -> Self {
        Self {
            label: label.into(),
            transport,
            outstanding: AtomicUsize::new(0),
            breaker: Arc::new(Mutex::new(Breaker::new(breaker.clone()))),
        }
    }

    /// Makes this instance's breaker visible in `registry`, as one of `service`'s.
    pub fn registered(self, service: &'static str, registry: &crate::HealthRegistry) -> Self {
        registry.register(service, Arc::clone(&self.label), &self.breaker);
        self
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // Every update of a breaker is a few assignments; a panic cannot leave it half-made.
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Balances calls over a backend's instances.
#[derive(Debug)]
pub struct Balance<T> {
    service: &'static str,
    /// The backend's own per-call timeout: an attempt that times out with less than that is
    /// ended by its request's deadline, which says nothing about the instance.
    timeout: Duration,
    instances: Arc<[Instance<T>]>,
}

impl<T> Clone for Balance<T> {
    fn clone(&self) -> Self {
        Self { service: self.service, timeout: self.timeout, instances: Arc::clone(&self.instances) }
    }
}

impl<T> Balance<T> {
    pub fn new(service: &'static str, timeout: Duration, instances: Vec<Instance<T>>) -> Self {
        Self { service, timeout, instances: instances.into() }
    }

    /// The instance for the next attempt: two candidates at random among those whose breaker
    /// admits a call (not `avoid`, unless it is the only one; never one in `refused`), the one
    /// with fewer calls in flight.
    fn pick(&self, avoid: Option<usize>, refused: &[usize], now: Instant) -> Option<usize> {
        let admitting = |i: &usize| !refused.contains(i) && self.instances[*i].breaker().would_admit(now);
        let mut candidates: Vec<usize> =
            (0..self.instances.len()).filter(|i| Some(*i) != avoid).filter(admitting).collect();
        if candidates.is_empty() {
            candidates = avoid.into_iter().filter(admitting).collect();
        }
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => {
                let first = fastrand::usize(..n);
                let second = (first + 1 + fastrand::usize(..n - 1)) % n;
                let load = |i: usize| self.instances[candidates[i]].outstanding.load(Ordering::Relaxed);
                Some(candidates[if load(second) < load(first) { second } else { first }])
            }
        }
    }
}

/// Gives a call's outcome back to its instance however the call ends: a dropped attempt (a hedge
/// that lost) releases its slot and counts for nothing.
struct InFlight<'a, T> {
    instance: &'a Instance<T>,
    admission: Admission,
    verdict: Verdict,
}

impl<T> Drop for InFlight<'_, T> {
    fn drop(&mut self) {
        self.instance.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.instance.breaker().record(self.admission, self.verdict, Instant::now());
    }
}

impl<T> Service<UpstreamRequest> for Balance<T>
where
    T: Service<UpstreamRequest, Response = Answer, Error = UpstreamError> + Clone + Send + Sync + 'static,
    T::Future: Send + 'static,
{
    type Response = Answer;
    type Error = UpstreamError;
    type Future = CallFuture;

    /// Readiness is per instance, and the instance is chosen per call: each transport's own
    /// readiness is awaited inside the call, within its budget.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let service = this.service;
            let now = Instant::now();
            let trace = request.trace.clone();
            // Another call may take an instance's last probe slot between the pick and the
            // admission: then pick again among the others.
            let mut refused = Vec::new();
            let (index, admission, state) = loop {
                let Some(index) = this.pick(request.avoid_instance, &refused, now) else {
                    trace.refused_by_breaker();
                    return Err(UpstreamError::CircuitOpen { service });
                };
                let mut breaker = this.instances[index].breaker();
                let state = breaker.state(now);
                match breaker.admit(now) {
                    Some(admission) => break (index, admission, state),
                    None => refused.push(index),
                }
            };
            let instance = &this.instances[index];
            trace.chose(index, &instance.label, state);
            trace.add_attempt();
            instance.outstanding.fetch_add(1, Ordering::Relaxed);
            let mut in_flight = InFlight { instance, admission, verdict: Verdict::Cancelled };
            // The attempt ends at the call's deadline here, not only in the budget layer above, so
            // an instance that hangs is charged with the timeout rather than dropped unjudged.
            let deadline = request.deadline;
            let attempt = instance.transport.clone().oneshot(request);
            let result = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), attempt)
                    .await
                    .unwrap_or(Err(UpstreamError::Timeout { service, after: deadline.saturating_duration_since(now) })),
                None => attempt.await,
            };
            let full_time = deadline.is_none_or(|d| d.saturating_duration_since(now) >= this.timeout.mul_f64(0.9));
            in_flight.verdict = match &result {
                Err(UpstreamError::Timeout { .. }) if !full_time => Verdict::Cancelled,
                Err(error) if error.is_backend_failure() => Verdict::Failure,
                _ => Verdict::Success,
            };
            drop(in_flight);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    use super::*;
    use crate::{Call, CallContext};

    /// A transport that fails or answers as told, counting its calls.
    #[derive(Clone)]
    struct Fake {
        calls: Arc<AtomicU32>,
        fail: bool,
    }

    impl Service<UpstreamRequest> for Fake {
        type Response = Answer;
        type Error = UpstreamError;
        type Future = std::future::Ready<Result<Answer, UpstreamError>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: UpstreamRequest) -> Self::Future {
            self.calls.fetch_add(1, Ordering::Relaxed);
            std::future::ready(if self.fail {
                Err(UpstreamError::Failed { service: "test", detail: "boom".into() })
            } else {
                Ok(Answer::default())
            })
        }
    }

    fn request() -> UpstreamRequest {
        UpstreamRequest::new(CallContext::new("r"), Call::get("GET /x", ["x"]))
    }

    #[tokio::test]
    async fn a_failing_instance_is_ejected_and_traffic_moves_to_the_healthy_one() {
        let (bad, good) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let breaker = BreakerConfig::default();
        let balance = Balance::new(
            "test",
            Duration::from_secs(2),
            vec![
                Instance::new("bad", Fake { calls: bad.clone(), fail: true }, &breaker),
                Instance::new("good", Fake { calls: good.clone(), fail: false }, &breaker),
            ],
        );
        for _ in 0..200 {
            let _ = balance.clone().oneshot(request()).await;
        }
        let bad = bad.load(Ordering::Relaxed);
        assert!(bad <= 10, "the failing instance got {bad} calls; its breaker opens after 10 failures");
        assert_eq!(good.load(Ordering::Relaxed), 200 - bad);
    }

    #[tokio::test]
    async fn every_breaker_open_fails_fast_without_a_call() {
        let calls = Arc::new(AtomicU32::new(0));
        let breaker = BreakerConfig { open_for: Duration::from_secs(60), ..BreakerConfig::default() };
        let balance = Balance::new(
            "test",
            Duration::from_secs(2),
            vec![Instance::new("only", Fake { calls: calls.clone(), fail: true }, &breaker)],
        );
        for _ in 0..10 {
            let _ = balance.clone().oneshot(request()).await;
        }
        let request = request();
        let trace = request.trace.clone();
        let error = balance.clone().oneshot(request).await.unwrap_err();
        assert_eq!(error.kind(), "circuit_open");
        assert_eq!(calls.load(Ordering::Relaxed), 10);
        assert_eq!(trace.decisions().breaker, crate::trace::BreakerState::Open);
    }
}
