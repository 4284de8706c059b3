//! The whole `main` of a BFF binary: `--config PATH` loads and validates the config (with
//! environment overrides), `--check-config` stops there, otherwise serve until SIGTERM/SIGINT.

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::inbound::Apps;

use crate::config::{self, Bff, Config};
use crate::{server, telemetry};

struct Args {
    config: PathBuf,
    check_only: bool,
    /// `routes`: print the route table and stop.
    routes: bool,
}

fn usage(name: &str) -> String {
    format!("usage: {name} [routes] --config PATH [--check-config]")
}

fn parse_args(name: &str, mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut config = None;
    let mut check_only = false;
    let mut routes = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "routes" => routes = true,
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
    Ok(Args { config: PathBuf::from(config), check_only, routes })
}

/// Runs a BFF: `apps` turns its validated config into its routers, the public one and the admin
/// one (served when `[server] admin_listen` is set).
#[allow(clippy::print_stdout)]
pub fn main<B: Bff, E: Display>(apps: impl FnOnce(Config<B::Own>) -> Result<Apps, E>) -> ExitCode {
    let args = match parse_args(B::NAME, std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let config = match config::load::<B>(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{}: {}: {error}", B::NAME, args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.routes {
        print!("{}", telemetry::route_table::render(&B::route_table(&config)));
        return ExitCode::SUCCESS;
    }
    if args.check_only {
        println!("{}: {} is valid", B::NAME, args.config.display());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{}: cannot start the runtime: {error}", B::NAME);
            return ExitCode::FAILURE;
        }
    };
    let server = config.server.clone();
    // Building the app creates lazily connecting gRPC channels, which need the runtime at hand.
    let _runtime_context = runtime.enter();
    // Logs, and traces when `[telemetry]` names a collector (its exporter runs on the runtime).
    let traces = match telemetry::init_with_tracing(B::NAME, &config.telemetry) {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("{}: {error}", B::NAME);
            return ExitCode::from(2);
        }
    };
    let Apps { public: router, admin } = match apps(config) {
        Ok(apps) => apps,
        Err(error) => {
            eprintln!("{}: {error}", B::NAME);
            return ExitCode::from(2);
        }
    };
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(server.listen_addr()).await?;
        tracing::info!(name = B::NAME, address = %listener.local_addr()?, "listening");
        if let Some(admin_addr) = server.admin_listen {
            let admin_listener = tokio::net::TcpListener::bind(admin_addr).await?;
            tracing::info!(name = B::NAME, address = %admin_listener.local_addr()?, "admin listening");
            // Plain HTTP for the scraper and the probes, whatever the public port speaks.
            let admin_server = crate::config::ServerConfig { tls: None, ..server.clone() };
            tokio::spawn(async move {
                if let Err(error) = server::serve(admin_listener, admin, &admin_server, server::shutdown_signal()).await
                {
                    tracing::error!(%error, "the admin listener stopped");
                }
            });
        }
        server::serve(listener, router, &server, server::shutdown_signal()).await
    });
    // Log lines are written by a thread of their own: the last ones must reach stdout before exit.
    if let Some(traces) = &traces {
        traces.flush();
    }
    telemetry::flush();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}: {error}", B::NAME);
            ExitCode::FAILURE
        }
    }
}
