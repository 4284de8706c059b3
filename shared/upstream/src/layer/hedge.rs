//! Hedged reads: when an idempotent call has not answered after a delay, a second attempt goes
//! to another instance; the first answer wins and the other attempt is dropped, which cancels it
//! (its HTTP/2 stream is reset, its connection returned). Hedges spend the retry budget, so they
//! cannot double the load of a backend that is slow for everyone.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::{Either, select};
use serde::Deserialize;
use tower::ServiceExt;

use super::retry::RetryBudget;
use super::{Below, CallFuture, CallLayer};
use crate::UpstreamRequest;

/// `[upstreams.NAME.hedge]`: give exactly one of `delay` or `percentile`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HedgeConfig {
    /// Hedge after this long.
    #[serde(with = "humantime_serde")]
    pub delay: Option<Duration>,
    /// Or after this percentile (50 to 99.9) of the backend's recent latencies...
    pub percentile: Option<f64>,
    /// ...but never sooner than this.
    #[serde(with = "humantime_serde")]
    pub min_delay: Duration,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self { delay: None, percentile: None, min_delay: Duration::from_millis(5) }
    }
}

impl HedgeConfig {
    pub(crate) fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        match (self.delay, self.percentile) {
            (Some(_), Some(_)) | (None, None) => {
                problems.push(("hedge", "give exactly one of `delay` or `percentile`".to_owned()));
            }
            (Some(delay), None) if delay.is_zero() => problems.push(("hedge.delay", "must be above 0".to_owned())),
            (None, Some(p)) if !(50.0..=99.9).contains(&p) => {
                problems.push(("hedge.percentile", "must be between 50 and 99.9".to_owned()));
            }
            _ => {}
        }
        problems
    }
}

/// How many recent latencies the percentile is taken over.
const SAMPLES: usize = 256;
/// The percentile is computed again after this many new samples, not on every call.
const RECOMPUTE_EVERY: usize = 32;

/// Recent latencies of first attempts, and the hedge delay they give.
#[derive(Debug)]
struct Latencies {
    samples: Vec<Duration>,
    next: usize,
    since_computed: usize,
    delay: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct HedgeLayer {
    config: HedgeConfig,
    budget: RetryBudget,
    latencies: Arc<Mutex<Latencies>>,
}

impl HedgeLayer {
    pub fn new(config: &HedgeConfig, budget: RetryBudget) -> Self {
        let latencies = Latencies { samples: Vec::with_capacity(SAMPLES), next: 0, since_computed: 0, delay: None };
        Self { config: config.clone(), budget, latencies: Arc::new(Mutex::new(latencies)) }
    }

    /// The delay before a hedge: the configured one, or the percentile of recent latencies once
    /// enough are known (none before: no hedging on a guess).
    fn delay(&self) -> Option<Duration> {
        match (self.config.delay, self.config.percentile) {
            (Some(delay), _) => Some(delay),
            (None, Some(_)) => self
                .latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .delay
                .map(|d| d.max(self.config.min_delay)),
            (None, None) => None,
        }
    }

    fn observe(&self, latency: Duration) {
        let Some(percentile) = self.config.percentile else { return };
        let mut latencies = self.latencies.lock().unwrap_or_else(PoisonError::into_inner);
        if latencies.samples.len() < SAMPLES {
            latencies.samples.push(latency);
        } else {
            let next = latencies.next;
            latencies.samples[next] = latency;
        }
        latencies.next = (latencies.next + 1) % SAMPLES;
        latencies.since_computed += 1;
        if latencies.since_computed >= RECOMPUTE_EVERY {
            latencies.since_computed = 0;
            let mut sorted = latencies.samples.clone();
            sorted.sort_unstable();
            let rank = ((percentile / 100.0) * (sorted.len() - 1) as f64).round() as usize;
            latencies.delay = sorted.get(rank).copied();
        }
    }
}

impl CallLayer for HedgeLayer {
    fn call<S: Below>(&self, inner: S, request: UpstreamRequest) -> CallFuture {
        let layer = self.clone();
        let delay = layer.delay().filter(|_| request.call.read);
        let Some(delay) = delay else {
            let started = Instant::now();
            let response = inner.oneshot(request);
            return Box::pin(async move {
                let result = response.await;
                if result.is_ok() {
                    layer.observe(started.elapsed());
                }
                result
            });
        };
        Box::pin(async move {
            let started = Instant::now();
            let trace = request.trace.clone();
            let mut hedge = request.clone();
            let first = inner.clone().oneshot(request);
            let first = match select(Box::pin(first), Box::pin(tokio::time::sleep(delay))).await {
                Either::Left((result, _)) => {
                    if result.is_ok() {
                        layer.observe(started.elapsed());
                    }
                    return result;
                }
                Either::Right(((), first)) => first,
            };
            if !layer.budget.withdraw() {
                return first.await;
            }
            // The first attempt has picked its instance by now; the hedge goes elsewhere.
            hedge.avoid_instance = trace.instance_index();
            trace.add_hedge();
            let second = Box::pin(inner.oneshot(hedge));
            match select(first, second).await {
                Either::Left((Ok(answer), _)) => {
                    layer.observe(started.elapsed());
                    Ok(answer)
                }
                Either::Right((Ok(answer), _)) => Ok(answer),
                // One failed: the other may still answer.
                Either::Left((Err(_), other)) | Either::Right((Err(_), other)) => other.await,
            }
        })
    }
}
