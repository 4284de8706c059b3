use bff_gateway::config::{Bff, Problems, Validate};
use serde::Deserialize;

/// The web BFF as the core sees it; `config.example.toml` beside `Cargo.toml` documents each key.
#[derive(Debug)]
pub struct Web;

impl Bff for Web {
    const NAME: &'static str = "web-bff";
    const ENV_PREFIX: &'static str = "WEB_BFF";
    const BACKENDS: &'static [&'static str] = &["users", "orders", "catalog", "inventory"];
    type Own = WebOptions;
}

/// The web BFF's configuration: the core's sections plus [`WebOptions`] at the top level.
pub type Config = bff_gateway::config::Config<WebOptions>;

/// The web BFF's own keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebOptions {
    /// Serve GraphiQL on `GET /graphql`.
    #[serde(default = "default_graphiql")]
    pub graphiql: bool,
}

fn default_graphiql() -> bool {
    true
}

impl Validate for WebOptions {
    fn validate(&self, _path: &str, _problems: &mut Problems) {}
}
