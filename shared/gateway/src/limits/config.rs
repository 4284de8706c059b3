//! `[limits]`: how much each caller, address, route and the whole BFF may ask for, as quotas of a
//! generic cell rate algorithm (see [`super::gcra`]), and where the decisions are kept.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Problems, Validate, join};

/// How long a decision may wait on Redis before the replica decides on its own.
pub const DEFAULT_SHARED_TIMEOUT: Duration = Duration::from_millis(20);
/// Keys each limit tracks in process at most; idle keys go first when it is full.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Failed authentication attempts one client address may make per minute (and all at once).
pub const DEFAULT_FAILED_AUTHENTICATIONS_PER_MINUTE: u64 = 60;
/// The most replicas a config may say it runs, for the share each takes when Redis is away.
const MAX_REPLICAS: u32 = 10_000;
/// The longest period a quota may be stated over.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// The longest a key may take to rest fully (`per * burst / rate`).
const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// A quota: `rate` units (requests, or GraphQL cost) per `per`, of which at most `burst` may be
/// spent at once. A key that has been idle for `per * burst / rate` has its whole burst again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub rate: u64,
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    pub burst: u64,
}

/// `50/1s, burst 100`: how the route table shows a quota.
impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}, burst {}", self.rate, humantime::format_duration(self.per), self.burst)
    }
}

impl Quota {
    pub const fn new(rate: u64, per: Duration, burst: u64) -> Self {
        Self { rate, per, burst }
    }
}

impl Validate for Quota {
    fn validate(&self, path: &str, problems: &mut Problems) {
        problems.check(path, "rate", self.rate >= 1, "must be at least 1");
        problems.check(path, "burst", self.burst >= 1, "must be at least 1");
        problems.check(
            path,
            "per",
            self.per >= Duration::from_millis(1) && self.per <= MAX_PERIOD,
            "must be between 1ms and 24h",
        );
        // One unit must take at least a microsecond to come back (Redis counts microseconds).
        problems.check(
            path,
            "rate",
            self.rate as u128 * 1_000 <= self.per.as_nanos(),
            "is more than one unit per microsecond of `per`",
        );
        // The time a key takes to rest must stay far inside the arithmetic's range.
        let window = self.per.as_nanos().saturating_mul(u128::from(self.burst)) / u128::from(self.rate.max(1));
        problems.check(path, "burst", window <= MAX_WINDOW.as_nanos(), "takes more than 30 days to refill at `rate`");
    }
}

/// What a limit counts per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyedBy {
    /// The verified caller: `user:{id}`, `key:{client}` or `client:{client}`.
    Principal,
    /// The client address, as the trusted proxies report it.
    Address,
    /// Every request to the BFF (or route) together.
    Global,
}

/// `[[limits.routes]]`: a limit on one route (`"GET /v2/products/{id}"`: method and route
/// template, as the route table names it) or one GraphQL operation (by the name the schema's
/// client gives it, as in `operation = "Home"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimit {
    pub route: Option<String>,
    pub operation: Option<String>,
    pub by: KeyedBy,
    pub rate: u64,
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    pub burst: u64,
}

impl RouteLimit {
    pub fn quota(&self) -> Quota {
        Quota::new(self.rate, self.per, self.burst)
    }
}

/// `[limits]`. Every limit is optional but failed authentication, which is always on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Decide through the shared store (`[redis]`), so every replica enforces one quota.
    pub shared: bool,
    /// How long a decision waits on Redis before this replica decides alone (and stops asking
    /// Redis until it answers again).
    #[serde(with = "humantime_serde")]
    pub shared_timeout: Duration,
    /// Replicas of this BFF: while Redis is away each one enforces this share of every quota.
    pub replicas: u32,
    /// Keys each limit tracks in process at most.
    pub max_keys: usize,
    /// Every request to this BFF together.
    pub global: Option<Quota>,
    /// Each client address.
    pub per_address: Option<Quota>,
    /// Each verified caller.
    pub per_principal: Option<Quota>,
    /// Each verified caller's GraphQL budget, in cost (see `graphql::limits::CostModel`).
    pub cost: Option<Quota>,
    /// Failed authentication attempts per client address; past it, 429 before any verification.
    pub failed_authentication: Quota,
    pub routes: Vec<RouteLimit>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            shared: false,
            shared_timeout: DEFAULT_SHARED_TIMEOUT,
            replicas: 1,
            max_keys: DEFAULT_MAX_KEYS,
            global: None,
            per_address: None,
            per_principal: None,
            cost: None,
            failed_authentication: Quota::new(
                DEFAULT_FAILED_AUTHENTICATIONS_PER_MINUTE,
                Duration::from_secs(60),
                DEFAULT_FAILED_AUTHENTICATIONS_PER_MINUTE,
            ),
            routes: Vec::new(),
        }
    }
}

impl Validate for LimitsConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        problems.check(
            path,
            "shared_timeout",
            self.shared_timeout >= Duration::from_millis(1) && self.shared_timeout <= Duration::from_secs(1),
            "must be between 1ms and 1s: every request may wait this long on Redis",
        );
        problems.check(path, "replicas", (1..=MAX_REPLICAS).contains(&self.replicas), "must be between 1 and 10000");
        problems.check(path, "max_keys", (1..=10_000_000).contains(&self.max_keys), "must be between 1 and 10000000");
        for (name, quota) in [
            ("global", &self.global),
            ("per_address", &self.per_address),
            ("per_principal", &self.per_principal),
            ("cost", &self.cost),
        ] {
            if let Some(quota) = quota {
                quota.validate(&join(path, name), problems);
            }
        }
        self.failed_authentication.validate(&join(path, "failed_authentication"), problems);
        for (i, limit) in self.routes.iter().enumerate() {
            let at = format!("{}[{i}]", join(path, "routes"));
            limit.quota().validate(&at, problems);
            match (&limit.route, &limit.operation) {
                (Some(route), None) => problems.check(
                    &at,
                    "route",
                    route.split_once(' ').is_some_and(|(method, template)| {
                        ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].contains(&method) && template.starts_with('/')
                    }),
                    "must be a method and a route template, as in \"GET /v2/products/{id}\"",
                ),
                (None, Some(operation)) => {
                    problems.check(
                        &at,
                        "operation",
                        !operation.is_empty() && operation.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                        "must be a GraphQL operation name",
                    );
                    problems.check(
                        &at,
                        "by",
                        limit.by != KeyedBy::Address,
                        "an operation's limit is per principal or global (per address is `per_address`)",
                    );
                }
                _ => problems.push(at.clone(), "needs exactly one of `route` and `operation`"),
            }
        }
    }

    fn shared_store_users(&self, path: &str, users: &mut Vec<String>) {
        if self.shared {
            users.push(join(path, "shared"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_quotas_and_routes_are_reported_by_key_path() {
        let zero = Quota::new(0, Duration::ZERO, 0);
        let config = LimitsConfig {
            per_principal: Some(zero),
            routes: vec![RouteLimit {
                route: Some("/no-method".into()),
                operation: None,
                by: KeyedBy::Principal,
                rate: 1,
                per: Duration::from_secs(1),
                burst: 1,
            }],
            replicas: 0,
            ..LimitsConfig::default()
        };
        let mut problems = Problems::default();
        config.validate("limits", &mut problems);
        assert_eq!(
            problems.keys(),
            [
                "limits.replicas",
                "limits.per_principal.rate",
                "limits.per_principal.burst",
                "limits.per_principal.per",
                "limits.routes[0].route",
            ]
        );
    }
}
