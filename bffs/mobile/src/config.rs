use bff_gateway::config::Bff;
use bff_gateway::graphql::GraphQlKeys;

/// The mobile BFF as the core sees it; `config.example.toml` beside `Cargo.toml` documents each key.
#[derive(Debug)]
pub struct Mobile;

impl Bff for Mobile {
    const NAME: &'static str = "mobile-bff";
    const ENV_PREFIX: &'static str = "MOBILE_BFF";
    type Backends = crate::Backends;
    type Own = GraphQlKeys;

    /// Each root field: bearer JWTs only, the scope it needs, the cost budget, its backends.
    fn route_table(config: &Config) -> Vec<bff_gateway::telemetry::route_table::RouteEntry> {
        bff_gateway::telemetry::route_table::graphql(&crate::schema::sdl(), "mobile", ROOT_FIELDS, &config.limits)
    }
}

/// The mobile BFF's configuration: the core's sections and `[graphql]`.
pub type Config = bff_gateway::config::Config<GraphQlKeys>;

/// The root fields, with the scope each needs (`RequireScope` on the field) and the backends it
/// calls; `tests/e2e/schemas.rs` holds this list to the schema's root fields.
pub const ROOT_FIELDS: &[(&str, &str, &str)] = &[
    (
        "query home",
        "per field: profile (user, recommendations), orders (recentOrders)",
        "users, orders, recommendations",
    ),
    ("query product", "profile", "catalog, inventory, recommendations"),
    ("query order", "orders", "orders"),
    ("mutation placeOrder", "orders", "orders"),
];
