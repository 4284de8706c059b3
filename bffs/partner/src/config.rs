use bff_gateway::config::{Bff, NoOwnKeys};

/// The partner BFF as the core sees it; `config.example.toml` beside `Cargo.toml` documents each
/// key. Partners authenticate with an API key or an OAuth2 client-credentials token.
#[derive(Debug)]
pub struct Partner;

impl Bff for Partner {
    const NAME: &'static str = "partner-bff";
    const ENV_PREFIX: &'static str = "PARTNER_BFF";
    const BACKENDS: &'static [&'static str] = &["catalog", "inventory", "orders"];
    const ACCEPTS_API_KEYS: bool = true;
    type Own = NoOwnKeys;
}

/// The partner BFF's configuration: the core's sections only.
pub type Config = bff_gateway::config::Config<NoOwnKeys>;
