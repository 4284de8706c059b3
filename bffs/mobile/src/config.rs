use bff_gateway::cli::BffConfig;
use bff_gateway::config::{JwtConfig, Problems, ServerConfig, UpstreamConfig, Validate, join};
use serde::Deserialize;

/// The mobile BFF's configuration; `config.example.toml` beside `Cargo.toml` documents each key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    /// Bearer JWTs from the identity service, audience `mobile`.
    pub auth: JwtConfig,
    pub upstreams: Upstreams,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstreams {
    pub users: UpstreamConfig,
    pub orders: UpstreamConfig,
    pub recommendations: UpstreamConfig,
}

impl Validate for Config {
    fn validate(&self, path: &str, problems: &mut Problems) {
        self.server.validate(&join(path, "server"), problems);
        self.auth.validate(&join(path, "auth"), problems);
        let upstreams = join(path, "upstreams");
        for (name, upstream) in [
            ("users", &self.upstreams.users),
            ("orders", &self.upstreams.orders),
            ("recommendations", &self.upstreams.recommendations),
        ] {
            Validate::validate(upstream, &join(&upstreams, name), problems);
        }
    }
}

impl BffConfig for Config {
    const NAME: &'static str = "mobile-bff";
    const ENV_PREFIX: &'static str = "MOBILE_BFF";

    fn server(&self) -> &ServerConfig {
        &self.server
    }
}
