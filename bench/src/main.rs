//! `bff-bench`: a BFF under load beside a baseline that makes the same backend calls with none of
//! the gateway, in one run. See `bff-bench --help` and the README's Performance section.
//!
//! Three processes besides this one, each this binary re-run with a hidden subcommand: the demo
//! backends, the BFF under test and the baseline, so each one's CPU and memory are its own.

mod baseline;
mod capacity;
mod children;
mod collector;
mod load;
mod report;
mod scenario;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

use crate::scenario::{Bff, Scenario};

// The BFF under test runs in this binary, so this is its allocator: the BFF binaries' own
// (mimalloc, tuned in `bff_allocator`). The baseline and the demo get it too, so the floor is
// measured with the same allocator.
#[global_allocator]
static ALLOCATOR: bff_allocator::Allocator = bff_allocator::Allocator;

const USAGE: &str = "usage: bff-bench [--scenario NAME] [--duration 30s] [--concurrency 32] [--rate N] \
[--latency 0ms] [--sampling 0.1] [--soak 10m] [--connections 1000] [--replicas 1,3] [--redis URL] [--results PATH|none] [--label TEXT]

  --scenario      mobile-home (default), web-orders-page, partner-product, auth-reject, large-token,
                  large-document-hit, large-document-miss, product-page
  --duration      each measured phase: the closed loop, then the open loop, for the BFF and the baseline
  --concurrency   connections of the closed loop (and of the open loop)
  --rate          the open loop's rate in requests/s (default: half the BFF's closed-loop throughput)
  --latency       fixed latency the demo backends add to every call (0ms: CPU-bound)
  --sampling      share of requests the BFF traces (exported to a receiver in its process): 0.1, the
                  ratio the shipped deployments sample at (deploy/k8s/*/configmap.yaml), or 1 for all
  --soak          run the BFF alone under the closed loop this long, printing its RSS over time
  --connections   hold this many idle keep-alive connections to the BFF and report its RSS
  --replicas      run this many BFF replicas at once (each count in turn) sharing one Redis, load
                  spread evenly over them, and report requests/s, CPU, and Redis round trips and
                  Redis CPU per request: how many replicas one Redis carries
  --redis         the Redis the replicas share (default: REDIS_URL, else redis://127.0.0.1:6379)
  --results       markdown file the run's figures are appended to (default bench/results.md)
  --label         what this build carries, for the results file (\"before\", \"+ validate once\")";

/// The share of requests the shipped deployments trace (`sampling_ratio` in
/// `deploy/k8s/*/configmap.yaml`): what the harness measures unless `--sampling` says otherwise.
/// `bench/tests/smoke.rs` checks the two agree.
pub const PRODUCTION_SAMPLING: f64 = 0.1;

/// What a run was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    pub duration: Duration,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub latency: Duration,
    pub sampling: f64,
    pub soak: Option<Duration>,
    pub connections: Option<usize>,
    pub results: Option<PathBuf>,
    pub label: Option<String>,
    /// Replica counts for the capacity mode.
    pub replicas: Option<Vec<usize>>,
    pub redis: String,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        scenario: Scenario::MobileHome,
        duration: Duration::from_secs(30),
        concurrency: 32,
        rate: None,
        latency: Duration::ZERO,
        sampling: PRODUCTION_SAMPLING,
        soak: None,
        connections: None,
        results: Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results.md"))),
        label: None,
        replicas: None,
        redis: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let duration = || humantime::parse_duration(value).map_err(|e| format!("{flag} {value}: {e}"));
        let number = || value.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| format!("{flag}: `{value}`"));
        match flag.as_str() {
            "--scenario" => {
                options.scenario =
                    Scenario::parse(value).ok_or_else(|| format!("unknown scenario `{value}`\n{USAGE}"))?;
            }
            "--duration" => options.duration = duration()?,
            "--concurrency" => options.concurrency = number()?,
            "--rate" => options.rate = Some(value.parse().map_err(|_| format!("--rate: `{value}`"))?),
            "--latency" => options.latency = duration()?,
            "--sampling" => {
                options.sampling = value
                    .parse()
                    .ok()
                    .filter(|r: &f64| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("--sampling: `{value}` (0 to 1)"))?;
            }
            "--soak" => options.soak = Some(duration()?),
            "--connections" => options.connections = Some(number()?),
            "--results" => options.results = (value != "none").then(|| PathBuf::from(value)),
            "--label" => options.label = Some(value.clone()),
            "--replicas" => {
                let counts: Option<Vec<usize>> = value
                    .split(',')
                    .map(|n| n.trim().parse().ok().filter(|&n: &usize| (1..=16).contains(&n)))
                    .collect();
                options.replicas =
                    Some(counts.ok_or_else(|| format!("--replicas: `{value}` (counts 1 to 16, as 1,3)"))?);
            }
            "--redis" => options.redis = value.clone(),
            _ => return Err(format!("unknown argument `{flag}`\n{USAGE}")),
        }
    }
    Ok(options)
}

/// Prints the line a parent waits for: this child serves, and what it needs to know.
pub fn announce(payload: &str) {
    eprintln!("{}{payload}", children::READY);
}

fn flag<'a>(args: &'a [String], name: &str) -> anyhow::Result<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{name} is required"))
}

/// The hidden subcommands the harness runs its children with.
fn child(command: &str, args: &[String]) -> anyhow::Result<()> {
    children::exit_with_parent();
    match command {
        "serve-demo" => {
            let latency = humantime::parse_duration(flag(args, "--latency").unwrap_or("0ms"))?;
            serve::demo(latency)
        }
        "serve-bff" => {
            let bff = Bff::parse(flag(args, "--bff")?).context("--bff: mobile, web or partner")?;
            let shared_answers = args.iter().any(|a| a == "--shared-answers");
            let redis = flag(args, "--redis").ok();
            let sampling = match flag(args, "--sampling") {
                Ok(ratio) => ratio.parse().context("--sampling")?,
                Err(_) => PRODUCTION_SAMPLING,
            };
            serve::bff(bff, serve::decode_addrs(flag(args, "--demo")?)?, shared_answers, redis, sampling)
        }
        "serve-baseline" => {
            let scenario = Scenario::parse(flag(args, "--scenario")?).context("--scenario: unknown")?;
            baseline::serve(scenario, serve::decode_addrs(flag(args, "--demo")?)?)
        }
        other => bail!("unknown subcommand {other}"),
    }
}

fn main() -> ExitCode {
    bff_allocator::configure();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(command) = args.first().filter(|a| a.starts_with("serve-")) {
        return match child(command, &args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bff-bench {command}: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match parse_options(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match report::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bff-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
