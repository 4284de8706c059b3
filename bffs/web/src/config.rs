use bff_gateway::config::Bff;
use bff_gateway::graphql::GraphQlKeys;

/// The web BFF as the core sees it; `config.example.toml` beside `Cargo.toml` documents each key.
#[derive(Debug)]
pub struct Web;

impl Bff for Web {
    const NAME: &'static str = "web-bff";
    const ENV_PREFIX: &'static str = "WEB_BFF";
    type Backends = crate::Backends;
    type Own = GraphQlKeys;

    /// Each root field: bearer JWTs only, the scope it needs, the cost budget, its backends.
    fn route_table(config: &Config) -> Vec<bff_gateway::telemetry::route_table::RouteEntry> {
        let limits: Vec<String> = [("cost", config.limits.cost), ("per principal", config.limits.per_principal)]
            .into_iter()
            .filter_map(|(name, quota)| quota.map(|q| format!("{name} {q}")))
            .collect();
        bff_gateway::telemetry::route_table::graphql_root_fields(&crate::schema::sdl())
            .into_iter()
            .map(|field| {
                let (scope, backends) = ROOT_FIELDS
                    .iter()
                    .find(|(name, _, _)| *name == field)
                    .map_or(("?", "?"), |(_, scope, backends)| (*scope, *backends));
                bff_gateway::telemetry::route_table::RouteEntry {
                    route: field,
                    auth: "bearer JWT (audience web)".to_owned(),
                    scope: scope.to_owned(),
                    limits: if limits.is_empty() { "-".to_owned() } else { limits.join("; ") },
                    backends: backends.to_owned(),
                }
            })
            .collect()
    }
}

/// The web BFF's configuration: the core's sections and `[graphql]`.
pub type Config = bff_gateway::config::Config<GraphQlKeys>;

/// The root fields, with the scope each needs (`RequireScope` on the field) and the backends it
/// calls; `tests/e2e/schemas.rs` holds this list to the schema's root fields.
pub const ROOT_FIELDS: &[(&str, &str, &str)] = &[
    ("mutation placeOrder", "orders", "orders"),
    ("mutation cancelOrder", "orders", "orders"),
    ("mutation updateProfile", "profile", "users"),
    ("query me", "profile", "users, orders, catalog, inventory"),
    ("subscription orderStatusChanged", "orders", "orders (server stream)"),
];
