//! The whole `main` of a BFF binary: `--config PATH` loads and validates the config (with
//! environment overrides), `--check-config` stops there, `routes` prints the route table,
//! `healthcheck` asks a running BFF's `/healthz` (a container's health check, with no shell or
//! curl in the image); otherwise serve until SIGTERM/SIGINT, reloading the config on SIGHUP and
//! when the file changes ([`crate::reload`]).

use std::fmt::Display;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, Bff, Config};
use crate::inbound::InboundStack;
use crate::reload::Reloader;
use crate::{server, telemetry};

/// How long `healthcheck` waits to connect, and then for the answer, before calling the BFF
/// unhealthy: both within a container health check's usual 3s.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Serve,
    CheckConfig,
    /// `routes`: print the route table and stop.
    Routes,
    /// `healthcheck`: GET `/healthz` of the BFF the config describes; exit 0 on 200.
    Healthcheck,
}

struct Args {
    config: PathBuf,
    command: Command,
}

fn usage(name: &str) -> String {
    format!("usage: {name} [routes | healthcheck] --config PATH [--check-config]")
}

fn parse_args(name: &str, mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut config = None;
    let mut command = Command::Serve;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "routes" => command = Command::Routes,
            "healthcheck" => command = Command::Healthcheck,
            "--config" => config = Some(args.next().ok_or_else(|| format!("--config needs a path\n{}", usage(name)))?),
            "--check-config" => command = Command::CheckConfig,
            "-h" | "--help" => return Err(usage(name)),
            other => match other.strip_prefix("--config=") {
                Some(path) => config = Some(path.to_owned()),
                None => return Err(format!("unknown argument `{other}`\n{}", usage(name))),
            },
        }
    }
    let config = config.ok_or_else(|| format!("--config is required\n{}", usage(name)))?;
    Ok(Args { config: PathBuf::from(config), command })
}

/// Runs a BFF: `stack` turns a validated config into its inbound stack, once at start and again
/// at each config reload; the public router and the admin one (served when `[server]
/// admin_listen` is set) are built from it.
#[allow(clippy::print_stdout)]
pub fn main<B: Bff, E: Display + 'static>(
    stack: impl Fn(Config<B::Own>) -> Result<InboundStack, E> + Send + 'static,
) -> ExitCode {
    let args = match parse_args(B::NAME, std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if args.command == Command::Healthcheck {
        return healthcheck::<B>(&args.config);
    }
    // Read once: the text that is validated is the text whose fingerprint the reloader keeps.
    let loaded = config::read(&args.config)
        .and_then(|text| Ok((config::from_toml::<B>(&text, &args.config, config::process_env())?, text)));
    let (config, text) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{}: {}: {error}", B::NAME, args.config.display());
            return ExitCode::from(2);
        }
    };
    match args.command {
        Command::Routes => {
            print!("{}", telemetry::route_table::render(&B::route_table(&config)));
            return ExitCode::SUCCESS;
        }
        Command::CheckConfig => {
            println!("{}: {} is valid", B::NAME, args.config.display());
            return ExitCode::SUCCESS;
        }
        Command::Serve | Command::Healthcheck => {}
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
    let (reloader, live) = match Reloader::<B, _>::start(args.config.clone(), &text, config, stack) {
        Ok(started) => started,
        Err(error) => {
            eprintln!("{}: {error}", B::NAME);
            return ExitCode::from(2);
        }
    };
    // Before the listener opens: a SIGHUP that found no handler would end the process.
    let reloads = match reloader.run() {
        Ok(reloads) => reloads,
        Err(error) => {
            eprintln!("{}: cannot listen for SIGHUP: {error}", B::NAME);
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(server.listen_addr()).await?;
        tracing::info!(name = B::NAME, address = %listener.local_addr()?, "listening");
        tokio::spawn(reloads);
        if let Some(admin_addr) = server.admin_listen {
            let admin_listener = tokio::net::TcpListener::bind(admin_addr).await?;
            tracing::info!(name = B::NAME, address = %admin_listener.local_addr()?, "admin listening");
            // Plain HTTP for the scraper and the probes, whatever the public port speaks.
            let admin_server = crate::config::ServerConfig { tls: None, ..server.clone() };
            let admin = live.admin.router();
            tokio::spawn(async move {
                if let Err(error) = server::serve(admin_listener, admin, &admin_server, server::shutdown_signal()).await
                {
                    tracing::error!(%error, "the admin listener stopped");
                }
            });
        }
        server::serve(listener, live.public.router(), &server, server::shutdown_signal()).await
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

/// `healthcheck`: GET `/healthz` on the admin listener (else the public one) of the BFF `path`
/// configures, over plain HTTP/1.1 on loopback. The file is read leniently, for the two addresses
/// only: a config edit that a reload refused must not make a serving replica look dead.
#[allow(clippy::print_stdout)]
fn healthcheck<B: Bff>(path: &std::path::Path) -> ExitCode {
    let addr = match config::probe_address::<B>(path) {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("{}: healthcheck: {error}", B::NAME);
            // Not 2, which Docker reserves: a health check says healthy (0) or not (1).
            return ExitCode::FAILURE;
        }
    };
    match get_healthz(addr) {
        Ok(()) => {
            println!("{}: healthy ({addr})", B::NAME);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}: unhealthy ({addr}): {error}", B::NAME);
            ExitCode::FAILURE
        }
    }
}

fn get_healthz(addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, HEALTHCHECK_TIMEOUT)?;
    stream.set_read_timeout(Some(HEALTHCHECK_TIMEOUT))?;
    stream.set_write_timeout(Some(HEALTHCHECK_TIMEOUT))?;
    stream.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    if head.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("answered `{}`", String::from_utf8_lossy(&head))))
    }
}
