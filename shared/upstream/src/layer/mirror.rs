//! Mirroring to a shadow backend: a copy of each call (or a sample of them), fire and forget.
//! The shadow's answers and failures never touch the client's response, and its calls in flight
//! are bounded: a copy that finds the bound reached is dropped, so a slow shadow cannot build up
//! memory or tasks.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use url::Url;

use super::{Below, CallFuture, CallLayer};
use crate::UpstreamRequest;
use crate::stack::UpstreamService;

/// `[upstreams.NAME.mirror]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The shadow backend.
    pub url: Url,
    /// Percent of calls copied to it.
    #[serde(default = "all")]
    pub percent: f64,
    /// Copies in flight at once; more are dropped.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Mirror calls that are not reads too. Off by default: a shadow that writes where the
    /// primary writes would apply every mutation twice.
    #[serde(default)]
    pub mutations: bool,
}

fn all() -> f64 {
    100.0
}

fn default_max_in_flight() -> usize {
    16
}

impl MirrorConfig {
    pub(crate) fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !(self.percent > 0.0 && self.percent <= 100.0) {
            problems.push(("mirror.percent", "must be above 0 and at most 100".to_owned()));
        }
        if !(1..=10_000).contains(&self.max_in_flight) {
            problems.push(("mirror.max_in_flight", "must be between 1 and 10000".to_owned()));
        }
        problems
    }
}

/// Copies calls to the shadow's own stack (its transport, bounded by the call's budget).
#[derive(Clone)]
pub struct MirrorLayer {
    config: Arc<MirrorConfig>,
    shadow: UpstreamService,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl std::fmt::Debug for MirrorLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorLayer").field("shadow", &self.config.url.as_str()).finish_non_exhaustive()
    }
}

impl MirrorLayer {
    pub fn new(config: &MirrorConfig, shadow: UpstreamService, timeout: Duration) -> Self {
        Self {
            config: Arc::new(config.clone()),
            shadow,
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            timeout,
        }
    }

    fn copy(&self, request: &UpstreamRequest) {
        if !(request.call.read || self.config.mutations) || fastrand::f64() * 100.0 >= self.config.percent {
            return;
        }
        // Every slot taken: this copy is dropped.
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else { return };
        let mut copy = UpstreamRequest::new(request.cx.detached(), request.call.clone());
        let timeout = request.remaining().unwrap_or(self.timeout).min(self.timeout);
        copy.deadline = Some(std::time::Instant::now() + timeout);
        let shadow = self.shadow.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(timeout, shadow.oneshot(copy)).await;
            drop(permit);
        });
    }
}

impl CallLayer for MirrorLayer {
    fn call<S: Below>(&self, inner: S, request: UpstreamRequest) -> CallFuture {
        self.copy(&request);
        Box::pin(inner.oneshot(request))
    }
}
