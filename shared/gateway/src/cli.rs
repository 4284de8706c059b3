//! The whole `main` of a BFF binary: `--config PATH` loads and validates the config (with
//! environment overrides), `--check-config` stops there, otherwise serve until SIGTERM/SIGINT.

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

use axum::Router;
use serde::de::DeserializeOwned;

use crate::config::{self, ServerConfig, Validate};
use crate::{server, telemetry};

/// What the generic `main` needs to know of a BFF's config.
pub trait BffConfig: DeserializeOwned + Validate {
    /// The binary's name, as in `mobile-bff`.
    const NAME: &'static str;
    /// Prefix of environment overrides, as in `MOBILE_BFF`.
    const ENV_PREFIX: &'static str;
    fn server(&self) -> &ServerConfig;
}

struct Args {
    config: PathBuf,
    check_only: bool,
}

fn usage(name: &str) -> String {
    format!("usage: {name} --config PATH [--check-config]")
}

fn parse_args(name: &str, mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut config = None;
    let mut check_only = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = Some(args.next().ok_or_else(|| format!("--config needs a path\n{}", usage(name)))?),
            "--check-config" => check_only = true,
            "-h" | "--help" => return Err(usage(name)),
            other => match other.strip_prefix("--config=") {
                Some(path) => config = Some(path.to_owned()),
                None => return Err(format!("unknown argument `{other}`\n{}", usage(name))),
            },
        }
    }
    let config = config.ok_or_else(|| format!("--config is required\n{}", usage(name)))?;
    Ok(Args { config: PathBuf::from(config), check_only })
}

/// Runs a BFF: `app` turns its validated config into its router.
#[allow(clippy::print_stdout)]
pub fn main<C: BffConfig, E: Display>(app: impl FnOnce(C) -> Result<Router, E>) -> ExitCode {
    let args = match parse_args(C::NAME, std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let config: C = match config::load(&args.config, C::ENV_PREFIX) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{}: {}: {error}", C::NAME, args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check_only {
        println!("{}: {} is valid", C::NAME, args.config.display());
        return ExitCode::SUCCESS;
    }
    telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{}: cannot start the runtime: {error}", C::NAME);
            return ExitCode::FAILURE;
        }
    };
    let server = config.server().clone();
    // Building the app creates lazily connecting gRPC channels, which need the runtime at hand.
    let _runtime_context = runtime.enter();
    let router = match app(config) {
        Ok(router) => router,
        Err(error) => {
            eprintln!("{}: {error}", C::NAME);
            return ExitCode::from(2);
        }
    };
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(server.listen).await?;
        tracing::info!(name = C::NAME, address = %listener.local_addr()?, "listening");
        server::serve(listener, router, server::shutdown_signal(), server.shutdown_grace).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}: {error}", C::NAME);
            ExitCode::FAILURE
        }
    }
}
