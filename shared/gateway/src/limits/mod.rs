//! Traffic limits: how much each caller, client address, route, GraphQL operation and the whole
//! BFF may ask for, so a runaway client cannot starve the others or the backends behind them.
//!
//! - [`config`]: `[limits]`, quotas as rate, period and burst;
//! - [`gcra`]: the generic cell rate algorithm, one number per key;
//! - [`local`]: each limit's keys in process, in a bounded table;
//! - [`limiter`]: decisions over several limits at once, all admitting or none spending, and the
//!   `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers);
//! - [`shared`]: the same decisions for every replica through Redis, one atomic script per
//!   decision, falling back to this replica's share when Redis does not answer in time;
//! - [`stage`]: the inbound stage after authentication: per principal, per address, per route
//!   and global limits, and a BFF's own (partner plans), before any body is read;
//! - [`failed_attempts`]: failed authentication as one more limit per client address, checked
//!   before any verification work.
//!
//! GraphQL budgets spend each operation's computed cost from the caller's `cost` limit; the
//! GraphQL endpoint asks [`Limits::spend_cost`] once it has costed the document.

pub mod config;
mod failed_attempts;
pub mod gcra;
pub mod limiter;
mod local;
mod shared;
pub mod stage;

use std::net::IpAddr;
use std::sync::Arc;

use bff_upstream::Identity;

pub use self::config::{KeyedBy, LimitsConfig, Quota, RouteLimit};
pub use self::failed_attempts::FailedAttempts;
pub use self::limiter::{Check, Decision, Limiter, Policy, RATELIMIT, RATELIMIT_POLICY, Source, Unit};
pub use self::stage::{OwnLimits, RateLimit};
use crate::GatewayError;
use crate::store::Redis;

/// The key of the limits counted over every request together.
const GLOBAL_KEY: &str = "*";

/// A limit on one route (method and template) or one GraphQL operation.
#[derive(Debug)]
struct Scoped {
    method: Option<http::Method>,
    /// The route template, or the operation name.
    name: String,
    by: KeyedBy,
    policy: Arc<Policy>,
}

/// Every limit of one BFF, and the limiter that decides them.
pub struct Limits {
    limiter: Limiter,
    global: Option<Arc<Policy>>,
    per_address: Option<Arc<Policy>>,
    per_principal: Option<Arc<Policy>>,
    cost: Option<Arc<Policy>>,
    routes: Vec<Scoped>,
    operations: Vec<Scoped>,
    failed_attempts: FailedAttempts,
}

impl Limits {
    /// `config`'s limits for the BFF `bff`, shared through `store` when `[limits] shared`.
    pub fn from_config(
        bff: &'static str,
        config: &LimitsConfig,
        store: Option<&Arc<Redis>>,
    ) -> Result<Arc<Self>, GatewayError> {
        let shared = match (config.shared, store) {
            (true, Some(redis)) => {
                let shared = Arc::new(shared::Shared::new(redis.clone(), bff, config.shared_timeout, config.replicas));
                shared.warm_up();
                Some(shared)
            }
            (true, None) => return Err(GatewayError::Internal("limits.shared needs [redis] url".into())),
            (false, _) => None,
        };
        let limiter = Limiter::new(config.max_keys, shared);
        let requests = |name: &str, quota: &Option<Quota>| quota.map(|q| limiter.policy(name, q, Unit::Requests));
        let scoped = |limit: &RouteLimit, i: usize| {
            let (method, name) = match (&limit.route, &limit.operation) {
                (Some(route), _) => {
                    let (method, template) = route.split_once(' ').unwrap_or(("GET", route));
                    (http::Method::from_bytes(method.as_bytes()).ok(), template.to_owned())
                }
                (None, operation) => (None, operation.clone().unwrap_or_default()),
            };
            // Named by position: the route or operation is in the config, and names stay short.
            let policy = limiter.policy(format!("route-{i}"), limit.quota(), Unit::Requests);
            Scoped { method, name, by: limit.by, policy }
        };
        let (routes, operations): (Vec<_>, Vec<_>) =
            config.routes.iter().enumerate().map(|(i, l)| scoped(l, i)).partition(|s| s.method.is_some());
        let failed = limiter.policy("failed-authentication", config.failed_authentication, Unit::Requests);
        Ok(Arc::new(Self {
            global: requests("global", &config.global),
            per_address: requests("address", &config.per_address),
            per_principal: requests("principal", &config.per_principal),
            cost: config.cost.map(|q| limiter.policy("cost", q, Unit::Cost)),
            routes,
            operations,
            failed_attempts: FailedAttempts::new(failed, config.max_keys),
            limiter,
        }))
    }

    /// Limits that admit everything but failed authentication (tests, tools).
    pub fn unlimited() -> Arc<Self> {
        Self::from_config("-", &LimitsConfig::default(), None).unwrap_or_else(|_| unreachable!("no store is asked for"))
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// A limit of the BFF's own (a partner plan's quota) to hand the [`stage`] per request.
    pub fn policy(&self, name: impl Into<Arc<str>>, quota: Quota) -> Arc<Policy> {
        self.limiter.policy(name, quota, Unit::Requests)
    }

    pub fn failed_attempts(&self) -> &FailedAttempts {
        &self.failed_attempts
    }

    /// Whether any `[[limits.routes]]` entry names a GraphQL operation.
    pub fn has_operation_limits(&self) -> bool {
        !self.operations.is_empty()
    }

    /// The GraphQL budget, when one is configured.
    pub fn cost_policy(&self) -> Option<&Arc<Policy>> {
        self.cost.as_ref()
    }

    /// Spends `cost` from `identity`'s GraphQL budget and one request from the limits on each of
    /// `operations` (by operation name; names with no limit are ignored), all or nothing; with
    /// `with_request_limits`, one from the global and per-principal limits too (an operation
    /// over a socket, which the stage saw only as its upgrade). With `spend` false, only looks
    /// (a dry run). Admits everything when no limit applies.
    pub async fn spend_cost(
        &self,
        identity: &Identity,
        operations: &[&str],
        cost: u64,
        spend: bool,
        with_request_limits: bool,
    ) -> Decision {
        let owner = identity.owner().unwrap_or_default();
        let mut checks = Vec::new();
        if let Some(policy) = &self.cost {
            checks.push(Check { policy, key: &owner, cost });
        }
        for limit in self.operations.iter() {
            // One unit per operation of that name: a batch of ten spends ten.
            let count = operations.iter().filter(|name| **name == limit.name).count() as u64;
            if count == 0 {
                continue;
            }
            // Validation keeps operation limits to these two: the address is the stage's to count.
            let key = match limit.by {
                KeyedBy::Global => GLOBAL_KEY,
                KeyedBy::Principal | KeyedBy::Address => owner.as_str(),
            };
            checks.push(Check { policy: &limit.policy, key, cost: count });
        }
        if with_request_limits {
            if let Some(policy) = &self.global {
                checks.push(Check { policy, key: GLOBAL_KEY, cost: 1 });
            }
            if let Some(policy) = &self.per_principal {
                checks.push(Check { policy, key: &owner, cost: 1 });
            }
        }
        self.limiter.decide(&checks, spend).await
    }

    /// The keys of one request, for the limits the stage checks.
    fn request_checks<'a>(
        &'a self,
        method: &http::Method,
        template: Option<&str>,
        keys: &'a RequestKeys,
        own: &'a [Arc<Policy>],
    ) -> Vec<Check<'a>> {
        let mut checks = Vec::with_capacity(4 + own.len());
        let key = |by: KeyedBy| match by {
            KeyedBy::Principal => keys.principal.as_deref(),
            KeyedBy::Address => keys.address.as_deref(),
            KeyedBy::Global => Some(GLOBAL_KEY),
        };
        let mut add = |policy: &'a Arc<Policy>, by: KeyedBy| {
            if let Some(key) = key(by) {
                checks.push(Check { policy, key, cost: 1 });
            }
        };
        if let Some(policy) = &self.global {
            add(policy, KeyedBy::Global);
        }
        if let Some(policy) = &self.per_address {
            add(policy, KeyedBy::Address);
        }
        if let Some(policy) = &self.per_principal {
            add(policy, KeyedBy::Principal);
        }
        // A HEAD is served by the GET route, and counts as one.
        let method = if method == http::Method::HEAD { &http::Method::GET } else { method };
        if let Some(template) = template {
            for limit in self.routes.iter().filter(|l| l.name == template && l.method.as_ref() == Some(method)) {
                add(&limit.policy, limit.by);
            }
        }
        for policy in own {
            add(policy, KeyedBy::Principal);
        }
        checks
    }
}

/// What a request's limits are keyed by.
struct RequestKeys {
    principal: Option<String>,
    address: Option<String>,
}

impl RequestKeys {
    fn new(identity: Option<&Identity>, address: Option<IpAddr>) -> Self {
        Self { principal: identity.and_then(Identity::owner), address: address.map(|ip| ip.to_string()) }
    }
}

impl Limits {
    /// The keys of a request, written out only when some limit counts by them (a BFF with no
    /// per-address or per-caller limit formats neither); `own` says the BFF's stage handed over
    /// limits of its own, which count by caller.
    fn request_keys(&self, identity: Option<&Identity>, address: Option<IpAddr>, own: bool) -> RequestKeys {
        let by = |keyed: KeyedBy| self.routes.iter().any(|limit| limit.by == keyed);
        let principal = own || self.per_principal.is_some() || by(KeyedBy::Principal);
        let address_counts = self.per_address.is_some() || by(KeyedBy::Address);
        RequestKeys::new(identity.filter(|_| principal), address.filter(|_| address_counts))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_flood_of_distinct_addresses_leaves_each_limit_bounded() {
        let config = LimitsConfig {
            per_address: Some(Quota::new(1, Duration::from_secs(60), 5)),
            max_keys: 1_000,
            ..LimitsConfig::default()
        };
        let limits = Limits::from_config("test", &config, None).unwrap();
        for i in 0..50_000u32 {
            let keys = RequestKeys::new(None, Some(IpAddr::V4(i.into())));
            let checks = limits.request_checks(&http::Method::GET, None, &keys, &[]);
            assert!(limits.limiter.decide(&checks, true).await.admitted, "every address is new");
        }
        let (held, most) = limits.per_address.as_ref().unwrap().tracked_keys();
        assert!(held <= most && most <= 1_000 + 16, "{held} keys held, at most {most}");
    }

    #[tokio::test]
    async fn the_limits_that_apply_follow_the_route_the_caller_and_the_address() {
        let quota = Quota::new(1, Duration::from_secs(1), 1);
        let route = |route: &str, by| RouteLimit {
            route: Some(route.into()),
            operation: None,
            by,
            rate: 1,
            per: Duration::from_secs(1),
            burst: 1,
        };
        let config = LimitsConfig {
            global: Some(quota),
            per_principal: Some(quota),
            routes: vec![route("POST /v2/orders", KeyedBy::Principal), route("GET /v2/orders", KeyedBy::Global)],
            ..LimitsConfig::default()
        };
        let limits = Limits::from_config("test", &config, None).unwrap();
        let identity = Identity {
            user_id: None,
            client_id: "acme".into(),
            credential: bff_upstream::Credential::ApiKey,
            scopes: Vec::new(),
            expires_at: None,
        };
        let keys = RequestKeys::new(Some(&identity), Some("192.0.2.1".parse().unwrap()));
        let named = |method: http::Method, template| -> Vec<(String, String)> {
            let checks = limits.request_checks(&method, Some(template), &keys, &[]);
            checks.iter().map(|c| (c.policy.name().to_owned(), c.key.to_owned())).collect()
        };
        let owner = ("principal".to_owned(), "key:acme".to_owned());
        assert_eq!(
            named(http::Method::POST, "/v2/orders"),
            [("global".to_owned(), "*".to_owned()), owner.clone(), ("route-0".to_owned(), "key:acme".to_owned())]
        );
        assert_eq!(named(http::Method::GET, "/v2/orders")[2], ("route-1".to_owned(), "*".to_owned()));
        assert_eq!(named(http::Method::GET, "/v2/products/{id}").len(), 2, "no route limit on this one");
    }
}
