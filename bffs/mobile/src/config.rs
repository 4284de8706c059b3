use bff_gateway::config::{Bff, NoOwnKeys};

/// The mobile BFF as the core sees it; `config.example.toml` beside `Cargo.toml` documents each key.
#[derive(Debug)]
pub struct Mobile;

impl Bff for Mobile {
    const NAME: &'static str = "mobile-bff";
    const ENV_PREFIX: &'static str = "MOBILE_BFF";
    const BACKENDS: &'static [&'static str] = &["users", "orders", "recommendations"];
    type Own = NoOwnKeys;
}

/// The mobile BFF's configuration: the core's sections only.
pub type Config = bff_gateway::config::Config<NoOwnKeys>;
