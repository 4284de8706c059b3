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
        bff_gateway::telemetry::route_table::graphql(&crate::schema::sdl(), "web", ROOT_FIELDS, &config.limits)
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
