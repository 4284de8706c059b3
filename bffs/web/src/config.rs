use bff_gateway::cli::BffConfig;
use bff_gateway::config::{JwtConfig, Problems, ServerConfig, UpstreamConfig, Validate, join};
use serde::Deserialize;

/// The web BFF's configuration; `config.example.toml` beside `Cargo.toml` documents each key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    /// Bearer JWTs from the identity service, audience `web`.
    pub auth: JwtConfig,
    pub upstreams: Upstreams,
    /// Serve GraphiQL on `GET /graphql`.
    #[serde(default = "default_graphiql")]
    pub graphiql: bool,
}

fn default_graphiql() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstreams {
    pub users: UpstreamConfig,
    pub orders: UpstreamConfig,
    pub catalog: UpstreamConfig,
    pub inventory: UpstreamConfig,
}

impl Validate for Config {
    fn validate(&self, path: &str, problems: &mut Problems) {
        self.server.validate(&join(path, "server"), problems);
        self.auth.validate(&join(path, "auth"), problems);
        let upstreams = join(path, "upstreams");
        let Upstreams { users, orders, catalog, inventory } = &self.upstreams;
        for (name, upstream) in [("users", users), ("orders", orders), ("catalog", catalog), ("inventory", inventory)] {
            Validate::validate(upstream, &join(&upstreams, name), problems);
        }
    }
}

impl BffConfig for Config {
    const NAME: &'static str = "web-bff";
    const ENV_PREFIX: &'static str = "WEB_BFF";

    fn server(&self) -> &ServerConfig {
        &self.server
    }
}
