//! Retries within a budget: only what the error kind says is safe to send again, with
//! exponential backoff and full jitter, never past the call's deadline, and never more than a
//! configured fraction of the backend's calls, so retries cannot multiply an outage.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tower::ServiceExt;
use tower::retry::budget::{Budget, TpsBudget};

use super::{Below, CallFuture, CallLayer};
use crate::UpstreamRequest;

/// `[upstreams.NAME.retry]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per call, the first included: 1 turns retries off.
    pub attempts: u32,
    /// The first backoff's ceiling; each retry doubles it, up to `max_backoff`. The wait is a
    /// random time below the ceiling (full jitter), so clients that failed together do not come
    /// back together.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Retries (and hedges) may add at most this fraction of the backend's calls...
    pub budget_ratio: f32,
    /// ...plus this many per second, so a quiet backend can still be retried.
    pub min_per_second: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 2,
            backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(250),
            budget_ratio: 0.2,
            min_per_second: 10,
        }
    }
}

impl RetryConfig {
    pub(crate) fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !(1..=5).contains(&self.attempts) {
            problems.push(("retry.attempts", "must be between 1 and 5".to_owned()));
        }
        if self.backoff > self.max_backoff || self.max_backoff > Duration::from_secs(30) {
            problems.push(("retry.backoff", "must be at most max_backoff, which is at most 30s".to_owned()));
        }
        if !(0.0..=1.0).contains(&self.budget_ratio) {
            problems.push(("retry.budget_ratio", "must be between 0 and 1".to_owned()));
        }
        if self.min_per_second > 10_000 {
            problems.push(("retry.min_per_second", "must be at most 10000".to_owned()));
        }
        problems
    }
}

/// A backend's retry budget, shared by its retry and hedge layers: every call deposits, every
/// retry or hedge withdraws, over a sliding ten seconds (tower's `TpsBudget`).
#[derive(Debug, Clone)]
pub struct RetryBudget(Arc<TpsBudget>);

impl RetryBudget {
    pub fn new(config: &RetryConfig) -> Self {
        Self(Arc::new(TpsBudget::new(Duration::from_secs(10), config.min_per_second, config.budget_ratio)))
    }

    pub(crate) fn deposit(&self) {
        self.0.deposit();
    }

    pub(crate) fn withdraw(&self) -> bool {
        self.0.withdraw()
    }
}

#[derive(Debug, Clone)]
pub struct RetryLayer {
    config: RetryConfig,
    budget: RetryBudget,
}

impl RetryLayer {
    pub fn new(config: &RetryConfig, budget: RetryBudget) -> Self {
        Self { config: config.clone(), budget }
    }
}

impl CallLayer for RetryLayer {
    fn call<S: Below>(&self, inner: S, request: UpstreamRequest) -> CallFuture {
        let RetryLayer { config, budget } = self.clone();
        budget.deposit();
        // Whether a failure may be sent again is the error kind's to say; a call that is not
        // idempotent may only be repeated when it never left.
        let idempotent = request.call.idempotent;
        if config.attempts <= 1 {
            return Box::pin(inner.oneshot(request));
        }
        Box::pin(async move {
            let mut attempt = 1;
            let mut request = request;
            loop {
                let result = inner.clone().oneshot(request.clone()).await;
                let error = match result {
                    Ok(answer) => return Ok(answer),
                    Err(error) if attempt < config.attempts && error.is_retryable(idempotent) => error,
                    Err(error) => return Err(error),
                };
                let ceiling = config.backoff.saturating_mul(1 << (attempt - 1).min(16)).min(config.max_backoff);
                // A backend that said when to come back is taken at its word; otherwise full jitter.
                let wait = error.retry_after().unwrap_or_else(|| ceiling.mul_f64(fastrand::f64()));
                // Never past the deadline: a retry that could not finish in time is not sent.
                if request.remaining().is_some_and(|left| left <= wait) || !budget.withdraw() {
                    return Err(error);
                }
                tokio::time::sleep(wait).await;
                // Another instance, when there is one: the one that just failed may be the problem.
                request.avoid_instance = request.trace.instance_index();
                attempt += 1;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use tower::Layer as _;

    use super::*;
    use crate::layer::Layered;
    use crate::{Answer, Call, CallContext, UpstreamError};

    /// A backend failing every call with `error`, counting them.
    fn failing(calls: Arc<AtomicU32>, error: UpstreamError) -> impl Below {
        tower::service_fn(move |_: UpstreamRequest| {
            calls.fetch_add(1, Ordering::Relaxed);
            let error = error.clone();
            async move { Err::<Answer, _>(error) }
        })
    }

    fn config() -> RetryConfig {
        RetryConfig {
            attempts: 3,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..RetryConfig::default()
        }
    }

    fn failed() -> UpstreamError {
        UpstreamError::Failed { service: "test", detail: "HTTP 500".into() }
    }

    #[tokio::test]
    async fn only_idempotent_calls_are_retried_unless_the_call_never_left() {
        let calls = Arc::new(AtomicU32::new(0));
        let retry =
            Layered(RetryLayer::new(&config(), RetryBudget::new(&config()))).layer(failing(calls.clone(), failed()));
        let get = Call::get("GET /x", ["x"]);
        retry.clone().oneshot(UpstreamRequest::new(CallContext::new("r"), get.clone())).await.unwrap_err();
        assert_eq!(calls.swap(0, Ordering::Relaxed), 3, "a GET is tried three times");
        let post = Call::send_json(http::Method::POST, "POST /x", ["x"], &()).unwrap();
        retry.clone().oneshot(UpstreamRequest::new(CallContext::new("r"), post.clone())).await.unwrap_err();
        assert_eq!(calls.swap(0, Ordering::Relaxed), 1, "a POST that reached the backend is not repeated");
        let never_left = UpstreamError::Unavailable { service: "test", reason: "refused".into() };
        let retry =
            Layered(RetryLayer::new(&config(), RetryBudget::new(&config()))).layer(failing(calls.clone(), never_left));
        retry.oneshot(UpstreamRequest::new(CallContext::new("r"), post)).await.unwrap_err();
        assert_eq!(calls.load(Ordering::Relaxed), 3, "a POST that never left may be sent again");
    }

    #[tokio::test]
    async fn retries_stop_at_the_budget() {
        let calls = Arc::new(AtomicU32::new(0));
        let config = RetryConfig { budget_ratio: 0.1, min_per_second: 1, ..config() };
        let retry =
            Layered(RetryLayer::new(&config, RetryBudget::new(&config))).layer(failing(calls.clone(), failed()));
        for _ in 0..100 {
            let request = UpstreamRequest::new(CallContext::new("r"), Call::get("GET /x", ["x"]));
            retry.clone().oneshot(request).await.unwrap_err();
        }
        let retries = calls.load(Ordering::Relaxed) - 100;
        // 10% of 100 calls plus the floor of 1 a second over the 10 s window.
        assert!((10..=21).contains(&retries), "{retries} retries for 100 calls");
    }

    #[tokio::test]
    async fn no_retry_is_sent_that_could_not_finish_before_the_deadline() {
        let calls = Arc::new(AtomicU32::new(0));
        let slow_backoff =
            RetryConfig { backoff: Duration::from_secs(5), max_backoff: Duration::from_secs(5), ..config() };
        let overloaded = UpstreamError::Overloaded { service: "test", retry_after: Some(Duration::from_secs(2)) };
        let retry = Layered(RetryLayer::new(&slow_backoff, RetryBudget::new(&slow_backoff)))
            .layer(failing(calls.clone(), overloaded));
        let mut request = UpstreamRequest::new(CallContext::new("r"), Call::get("GET /x", ["x"]));
        request.deadline = Some(Instant::now() + Duration::from_millis(500));
        let started = Instant::now();
        let error = retry.oneshot(request).await.unwrap_err();
        assert_eq!((error.kind(), calls.load(Ordering::Relaxed)), ("overloaded", 1), "Retry-After 2s > 500ms left");
        assert!(started.elapsed() < Duration::from_millis(100), "it did not wait");
    }
}
