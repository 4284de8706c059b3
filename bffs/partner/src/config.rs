use std::collections::BTreeMap;

use bff_gateway::config::{Bff, Problems, Validate, join};
use bff_gateway::limits::Quota;
use bff_gateway::rest::idempotency::IdempotencyConfig;
use serde::Deserialize;

/// The partner BFF as the core sees it; `config.example.toml` beside `Cargo.toml` documents each
/// key. Partners authenticate with an API key or an OAuth2 client-credentials token.
#[derive(Debug)]
pub struct Partner;

impl Bff for Partner {
    const NAME: &'static str = "partner-bff";
    const ENV_PREFIX: &'static str = "PARTNER_BFF";
    type Backends = crate::Backends;
    const ACCEPTS_API_KEYS: bool = true;
    type Own = PartnerOptions;

    /// Every route of every version, with the scope it needs, the plans that include it (and
    /// their quotas), and the backends it calls.
    fn route_table(config: &Config) -> Vec<bff_gateway::telemetry::route_table::RouteEntry> {
        let mut entries = Vec::new();
        for version in crate::VERSIONS {
            for route in crate::routes::ROUTES {
                let name = route.name(version);
                let mut limits: Vec<String> = config
                    .own
                    .plans
                    .iter()
                    .filter(|(_, plan)| plan.versions.iter().any(|v| v == version))
                    .filter(|(_, plan)| plan.routes.as_ref().is_none_or(|routes| routes.contains(&name)))
                    .map(|(plan_name, plan)| {
                        let quota = plan.limit.map_or_else(|| "unlimited".to_owned(), |q| q.to_string());
                        match plan.route_limits.get(&name) {
                            Some(route) => format!("plan {plan_name}: {quota}; this route {route}"),
                            None => format!("plan {plan_name}: {quota}"),
                        }
                    })
                    .collect();
                if limits.is_empty() {
                    limits.push("no plan includes it".to_owned());
                }
                if let Some(global) = config.limits.global {
                    limits.push(format!("global {global}"));
                }
                entries.push(bff_gateway::telemetry::route_table::RouteEntry {
                    route: name,
                    auth: "API key or OAuth client token".to_owned(),
                    scope: route.scope.to_owned(),
                    limits: limits.join("; "),
                    backends: route.operation.backends().join(", "),
                });
            }
        }
        entries
    }
}

/// The partner BFF's configuration: the core's sections, `[plans]` and `[client_plans]`.
pub type Config = bff_gateway::config::Config<PartnerOptions>;

/// What each partner may call. A client (API key or OAuth client, by client id) with no plan
/// is refused everything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerOptions {
    pub plans: BTreeMap<String, Plan>,
    /// client id -> plan name.
    pub client_plans: BTreeMap<String, String>,
    /// `Idempotency-Key` records for `POST /v*/orders`.
    pub idempotency: IdempotencyConfig,
}

/// A plan: the API versions its clients may call, optionally only some of their routes, and how
/// fast: each client of the plan has its own quota (`limit`), and optionally a tighter one on
/// some routes (`route_limits`), on top of the BFF's `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub versions: Vec<String>,
    /// `"GET /v1/products/{id}"` entries of the route table; absent means every route of the
    /// plan's versions.
    pub routes: Option<Vec<String>>,
    /// Requests per client of this plan.
    pub limit: Option<Quota>,
    /// Requests per client of this plan on one route (`"POST /v2/orders"`).
    #[serde(default)]
    pub route_limits: BTreeMap<String, Quota>,
}

impl PartnerOptions {
    /// Whether `client` may call `method path` (a route template) of `version`.
    pub fn allows(&self, client: &str, version: &str, route: &str) -> bool {
        let Some(plan) = self.client_plans.get(client).and_then(|name| self.plans.get(name)) else { return false };
        plan.versions.iter().any(|v| v == version)
            && plan.routes.as_ref().is_none_or(|routes| routes.iter().any(|r| r == route))
    }
}

impl Validate for PartnerOptions {
    fn shared_store_users(&self, _path: &str, users: &mut Vec<String>) {
        self.idempotency.shared_store_users("idempotency", users);
    }

    fn validate(&self, _path: &str, problems: &mut Problems) {
        self.idempotency.validate("idempotency", problems);
        for (name, plan) in &self.plans {
            let path = join("plans", name);
            // A plan's name names its limits in `RateLimit` headers and in Redis keys.
            let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !plain {
                problems.push(path.clone(), "a plan's name is letters, digits, `-` and `_`");
            }
            for version in &plan.versions {
                problems.check(
                    &path,
                    "versions",
                    crate::VERSIONS.contains(&version.as_str()),
                    &format!("`{version}` is not a version this API serves ({})", crate::VERSIONS.join(", ")),
                );
            }
            let known =
                |route: &str| crate::routes::ROUTES.iter().any(|r| crate::VERSIONS.iter().any(|v| r.name(v) == route));
            for route in plan.routes.iter().flatten() {
                problems.check(&path, "routes", known(route), &format!("`{route}` is not a route of the route table"));
            }
            if let Some(limit) = &plan.limit {
                limit.validate(&join(&path, "limit"), problems);
            }
            for (route, limit) in &plan.route_limits {
                let at = join(&join(&path, "route_limits"), route);
                if !known(route) {
                    problems.push(at.clone(), "not a route of the route table");
                }
                limit.validate(&at, problems);
            }
        }
        for (client, plan) in &self.client_plans {
            problems.check(
                "client_plans",
                client,
                self.plans.contains_key(plan),
                &format!("no plan `{plan}` is defined under [plans]"),
            );
        }
    }
}
