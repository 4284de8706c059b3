use bff_gateway::cli::BffConfig;
use bff_gateway::config::{ApiKeyEntry, JwtConfig, Problems, ServerConfig, UpstreamConfig, Validate, join};
use serde::Deserialize;

/// The partner BFF's configuration; `config.example.toml` beside `Cargo.toml` documents each key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub upstreams: Upstreams,
}

/// Partners authenticate with an API key or an OAuth2 client-credentials token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Client-credentials tokens from the identity service, audience `partner`.
    pub jwt: JwtConfig,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstreams {
    pub catalog: UpstreamConfig,
    pub inventory: UpstreamConfig,
    pub orders: UpstreamConfig,
}

impl Validate for Config {
    fn validate(&self, path: &str, problems: &mut Problems) {
        self.server.validate(&join(path, "server"), problems);
        let auth = join(path, "auth");
        self.auth.jwt.validate(&join(&auth, "jwt"), problems);
        for (i, key) in self.auth.api_keys.iter().enumerate() {
            key.validate(&format!("{auth}.api_keys[{i}]"), problems);
        }
        let upstreams = join(path, "upstreams");
        let Upstreams { catalog, inventory, orders } = &self.upstreams;
        for (name, upstream) in [("catalog", catalog), ("inventory", inventory), ("orders", orders)] {
            Validate::validate(upstream, &join(&upstreams, name), problems);
        }
    }
}

impl BffConfig for Config {
    const NAME: &'static str = "partner-bff";
    const ENV_PREFIX: &'static str = "PARTNER_BFF";

    fn server(&self) -> &ServerConfig {
        &self.server
    }
}
