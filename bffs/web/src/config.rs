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
}

/// The web BFF's configuration: the core's sections and `[graphql]`.
pub type Config = bff_gateway::config::Config<GraphQlKeys>;
