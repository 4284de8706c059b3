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
}

/// The mobile BFF's configuration: the core's sections and `[graphql]`.
pub type Config = bff_gateway::config::Config<GraphQlKeys>;
