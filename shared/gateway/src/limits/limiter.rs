//! Decisions over several limits at once: a request is admitted only if every limit that applies
//! to it admits it, and then spends from all of them; a refused request spends from none, so a
//! client refused by its own limit does not drain the global one for everybody else. In process
//! the shards involved are locked together (in one order, so two decisions never wait on each
//! other in a cycle); through Redis one script decides the lot atomically, in one round trip.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::config::Quota;
use super::gcra::{self, Outcome, Rate};
use super::local::Table;
use super::shared::Shared;
use crate::GatewayError;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers): the quotas that applied.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of each.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Requests,
    /// GraphQL cost points.
    Cost,
}

/// One limit: its name (in headers, logs and Redis keys; from the config, never from a client),
/// its quota, and its keys' state in process.
pub struct Policy {
    name: Arc<str>,
    quota: Quota,
    table: Table,
    /// This policy's `RateLimit-Policy` item, written once.
    header_item: String,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("name", &self.name).field("quota", &self.quota).finish()
    }
}

impl Policy {
    fn new(name: Arc<str>, quota: Quota, unit: Unit, max_keys: usize) -> Self {
        // `w`: the seconds a key takes to rest fully, the window its `q` (the burst) refills in.
        let window = quota.per.as_secs_f64() * quota.burst as f64 / quota.rate as f64;
        let mut header_item = format!("\"{name}\";q={};w={}", quota.burst, (window.ceil() as u64).max(1));
        if unit == Unit::Cost {
            // Cost points are no registered quota unit; a vendor parameter says what `q` counts.
            header_item.push_str(";bff-unit=\"graphql-cost\"");
        }
        Self { name, quota, table: Table::new(max_keys), header_item }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Keys this policy tracks in process now, and the most it will.
    pub fn tracked_keys(&self) -> (usize, usize) {
        (self.table.len(), self.table.capacity())
    }
}

/// One limit to check for a request: which, for which key, at what cost.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    pub policy: &'a Arc<Policy>,
    pub key: &'a str,
    pub cost: u64,
}

/// Where a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// In process, the configured way.
    Local,
    /// In Redis, for every replica.
    Shared,
    /// In process with this replica's share of each quota, because Redis did not answer.
    Fallback,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Shared => "shared",
            Self::Fallback => "fallback",
        }
    }
}

/// The answer for one request over every limit checked.
#[derive(Debug, Clone)]
pub struct Decision {
    pub admitted: bool,
    pub states: Vec<(Arc<Policy>, Outcome)>,
    pub source: Source,
}

impl Decision {
    fn admit_all() -> Self {
        Self { admitted: true, states: Vec::new(), source: Source::Local }
    }

    /// The limit that decided: the refusing one with the longest wait, or, when admitted, the one
    /// with the least left.
    pub fn deciding(&self) -> Option<&(Arc<Policy>, Outcome)> {
        if self.admitted {
            self.states.iter().min_by_key(|(_, outcome)| outcome.remaining)
        } else {
            self.states.iter().filter(|(_, o)| !o.admitted).max_by_key(|(_, outcome)| outcome.retry_after)
        }
    }

    /// The error a refused request is answered with, naming the limit that decided; `None` when
    /// admitted.
    pub fn refusal(&self) -> Option<GatewayError> {
        if self.admitted {
            return None;
        }
        let limit = self.deciding().map(|(policy, _)| policy.name().to_owned()).unwrap_or_default();
        Some(GatewayError::RateLimited { limit, retry_after: self.retry_after() })
    }

    /// How long until the request would be admitted.
    pub fn retry_after(&self) -> Duration {
        self.states.iter().map(|(_, outcome)| outcome.retry_after).max().unwrap_or_default()
    }

    /// Adds `RateLimit-Policy` and `RateLimit` items for every limit checked (as further field
    /// lines, so a response may carry the items of several decisions).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        if self.states.is_empty() {
            return;
        }
        let mut policies = String::new();
        let mut limits = String::new();
        for (policy, outcome) in &self.states {
            let separator = if policies.is_empty() { "" } else { ", " };
            let _ = write!(policies, "{separator}{}", policy.header_item);
            // `t`: the window in which at most `r` more may be used. For a limit that refused,
            // until it would admit (what `Retry-After` says, as the draft asks them to agree);
            // with no unit left, until the next one; else until the key is whole again. Whole
            // seconds, rounded up.
            let window = match (outcome.admitted, outcome.remaining) {
                (false, _) => outcome.retry_after,
                (true, 0) => outcome.next_unit,
                (true, _) => outcome.reset,
            };
            let seconds = window.as_secs() + u64::from(window.subsec_nanos() > 0);
            let _ = write!(limits, "{separator}\"{}\";r={};t={seconds}", policy.name, outcome.remaining);
        }
        for (name, value) in [(RATELIMIT_POLICY, policies), (RATELIMIT, limits)] {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.append(name, value);
            }
        }
    }
}

/// Every limit of one BFF, decided in process or through Redis.
pub struct Limiter {
    epoch: Instant,
    max_keys: usize,
    shared: Option<Arc<Shared>>,
}

impl Limiter {
    pub(super) fn new(max_keys: usize, shared: Option<Arc<Shared>>) -> Self {
        Self { epoch: Instant::now(), max_keys, shared }
    }

    /// A new limit named `name`.
    pub fn policy(&self, name: impl Into<Arc<str>>, quota: Quota, unit: Unit) -> Arc<Policy> {
        Arc::new(Policy::new(name.into(), quota, unit, self.max_keys))
    }

    /// Whether the decisions are shared, and how that stands: `Some(Ok)` while Redis answers,
    /// `Some(Err(why))` while this replica decides alone.
    pub fn shared_status(&self) -> Option<Result<(), String>> {
        self.shared.as_ref().map(|shared| shared.status())
    }

    /// Checks every limit in `checks` (each policy at most once), and spends from all of them
    /// when `spend` and every one admits. Through Redis when shared and Redis answers within its
    /// timeout; in process otherwise. Never fails: a limiter that cannot reach its store decides
    /// alone rather than refuse traffic.
    pub async fn decide(&self, checks: &[Check<'_>], spend: bool) -> Decision {
        if checks.is_empty() {
            return Decision::admit_all();
        }
        // A policy named twice would lock its shard twice: the first mention counts.
        let repeated = |i: usize| checks[..i].iter().any(|earlier| Arc::ptr_eq(earlier.policy, checks[i].policy));
        let deduplicated: Vec<Check<'_>>;
        let checks = if (1..checks.len()).any(repeated) {
            deduplicated = (0..checks.len()).filter(|&i| !repeated(i)).map(|i| checks[i]).collect();
            &deduplicated[..]
        } else {
            checks
        };
        if let Some(shared) = &self.shared {
            if shared.is_up() {
                match shared.decide(checks, spend).await {
                    Ok(decision) => return decision,
                    Err(why) => shared.went_down(why),
                }
            }
            return self.decide_here(checks, spend, shared.replicas(), Source::Fallback);
        }
        self.decide_here(checks, spend, 1, Source::Local)
    }

    /// The in-process decision, each quota divided by `share`.
    pub(super) fn decide_here(&self, checks: &[Check<'_>], spend: bool, share: u32, source: Source) -> Decision {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let slots: Vec<_> = checks.iter().map(|check| check.policy.table.slot(check.key)).collect();
        // Lock in one global order (by table address) so concurrent decisions cannot deadlock.
        let mut order: Vec<usize> = (0..checks.len()).collect();
        order.sort_by_key(|&i| Arc::as_ptr(checks[i].policy) as usize);
        let mut guards: Vec<_> = (0..checks.len()).map(|_| None).collect();
        for &i in &order {
            guards[i] = Some(checks[i].policy.table.lock(slots[i]));
        }
        let mut states = Vec::with_capacity(checks.len());
        for (i, check) in checks.iter().enumerate() {
            let tat = guards[i].as_ref().and_then(|shard| shard.get(&slots[i].hash())).copied().unwrap_or(0);
            let outcome = gcra::decide(tat, now, Rate::of(&check.policy.quota, share), check.cost);
            states.push((check.policy.clone(), outcome));
        }
        let admitted = states.iter().all(|(_, outcome)| outcome.admitted);
        if admitted && spend {
            for (i, check) in checks.iter().enumerate() {
                if let Some(shard) = guards[i].as_mut() {
                    check.policy.table.store(shard, slots[i], states[i].1.spent_tat, now);
                }
            }
        } else {
            // Nothing was spent: a limit that would have admitted reports its key as it stands
            // (as the Redis script does); one that refused keeps its wait.
            for (i, (_, outcome)) in states.iter_mut().enumerate().filter(|(_, (_, o))| o.admitted) {
                let tat = guards[i].as_ref().and_then(|shard| shard.get(&slots[i].hash())).copied().unwrap_or(0);
                *outcome = gcra::decide(tat, now, Rate::of(&checks[i].policy.quota, share), 0);
            }
        }
        Decision { admitted, states, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> Limiter {
        Limiter::new(1_000, None)
    }

    #[tokio::test]
    async fn every_limit_must_admit_and_a_refusal_spends_from_none() {
        let limiter = limiter();
        let per_user = limiter.policy("principal", Quota::new(1, Duration::from_secs(60), 2), Unit::Requests);
        let global = limiter.policy("global", Quota::new(1, Duration::from_secs(60), 5), Unit::Requests);
        let checks = |key| [Check { policy: &per_user, key, cost: 1 }, Check { policy: &global, key: "", cost: 1 }];
        assert!(limiter.decide(&checks("alice"), true).await.admitted);
        assert!(limiter.decide(&checks("alice"), true).await.admitted);
        for _ in 0..10 {
            let refused = limiter.decide(&checks("alice"), true).await;
            assert!(!refused.admitted);
            assert_eq!(refused.deciding().map(|(p, _)| p.name()), Some("principal"));
        }
        // Alice's refusals left the global limit as she found it: 3 of 5 remain for others.
        let bob = limiter.decide(&checks("bob"), true).await;
        assert!(bob.admitted);
        assert_eq!(bob.states[1].1.remaining, 2);
    }

    #[tokio::test]
    async fn a_look_spends_nothing_and_headers_name_each_limit() {
        let limiter = limiter();
        let cost = limiter.policy("cost", Quota::new(600, Duration::from_secs(60), 100), Unit::Cost);
        let check = [Check { policy: &cost, key: "user:a", cost: 30 }];
        let look = limiter.decide(&check, false).await;
        assert!(look.admitted);
        assert_eq!(look.states[0].1.remaining, 100);
        let spent = limiter.decide(&check, true).await;
        assert_eq!(spent.states[0].1.remaining, 70);
        let mut headers = HeaderMap::new();
        spent.write_headers(&mut headers);
        assert_eq!(headers[RATELIMIT_POLICY], "\"cost\";q=100;w=10;bff-unit=\"graphql-cost\"");
        assert_eq!(headers[RATELIMIT], "\"cost\";r=70;t=3");
    }
}
