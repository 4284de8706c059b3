//! Traffic splitting for backend rollouts: a weighted share of calls goes to a canary version,
//! sticky per caller (the owner of the data: `user:{id}`, `key:{client}`), so one user does not
//! flip between versions from one call to the next. Each version has a stack of its own below
//! this one, cache included, so a canary answer is never served to a caller of the stable one.

use std::task::{Context, Poll};

use serde::Deserialize;
use tower::{Service, ServiceExt};
use url::Url;

use super::CallFuture;
use crate::stack::UpstreamService;
use crate::{Answer, UpstreamError, UpstreamRequest};

/// `[upstreams.NAME.canary]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// The canary version's instances.
    pub urls: Vec<Url>,
    /// Percent of callers sent to it.
    pub percent: f64,
}

impl CanaryConfig {
    pub(crate) fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.urls.is_empty() {
            problems.push(("canary.urls", "must name at least one instance".to_owned()));
        }
        if !(0.0..=100.0).contains(&self.percent) {
            problems.push(("canary.percent", "must be between 0 and 100".to_owned()));
        }
        problems
    }
}

/// Buckets callers are spread over; a canary at `percent` takes `percent * 100` of them.
const BUCKETS: u64 = 10_000;

/// Routes each call to the stable or the canary stack.
#[derive(Clone)]
pub struct Split {
    stable: UpstreamService,
    canary: UpstreamService,
    /// Buckets below this go to the canary.
    canary_buckets: u64,
}

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split").field("canary_buckets", &self.canary_buckets).finish_non_exhaustive()
    }
}

impl Split {
    pub fn new(stable: UpstreamService, canary: UpstreamService, percent: f64) -> Self {
        Self { stable, canary, canary_buckets: (percent * 100.0).round() as u64 }
    }

    /// The caller's bucket: a stable hash of who owns the data (FNV-1a, the same in every
    /// replica and every build), or a random one for a call made for nobody.
    fn bucket(request: &UpstreamRequest) -> u64 {
        match request.cx.identity().and_then(|identity| identity.owner()) {
            Some(owner) => fnv1a(owner.as_bytes()) % BUCKETS,
            None => fastrand::u64(..BUCKETS),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

impl Service<UpstreamRequest> for Split {
    type Response = Answer;
    type Error = UpstreamError;
    type Future = CallFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        // Which stack a call goes to is decided per call; each is driven ready inside it.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        let version = if Self::bucket(&request) < self.canary_buckets { &self.canary } else { &self.stable };
        Box::pin(version.clone().oneshot(request))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Call, CallContext, Credential, Identity};

    fn for_user(id: &str) -> UpstreamRequest {
        let identity = Identity {
            user_id: Some(id.to_owned()),
            client_id: "web".to_owned(),
            credential: Credential::User,
            scopes: Vec::new(),
            expires_at: None,
        };
        UpstreamRequest::new(CallContext::new("r").with_identity(Arc::new(identity)), Call::get("GET /x", ["x"]))
    }

    #[test]
    fn callers_spread_evenly_over_the_buckets_and_each_keeps_its_own() {
        let users = 20_000;
        let below_500 = (0..users).filter(|i| Split::bucket(&for_user(&format!("u-{i}"))) < 500).count();
        // 5% of 20,000 is 1,000; the binomial standard deviation is about 31: allow four of them.
        assert!((876..=1124).contains(&below_500), "{below_500} of {users} users fell in a 5% share");
        assert_eq!(Split::bucket(&for_user("u-7")), Split::bucket(&for_user("u-7")));
    }
}
