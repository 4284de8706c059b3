//! One run: start the children, drive each, and print and record the figures side by side.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bff_demo::DemoAddrs;

use crate::Options;
use crate::children::Child;
use crate::load::{self, LoadResult};
use crate::scenario::RequestSpec;
use crate::serve::{self, BACKENDS};

const MIB: f64 = 1024.0 * 1024.0;

/// A process under test and where it listens.
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

/// What the closed loop measured of one target.
struct Closed {
    load: LoadResult,
    cpu: Duration,
    calls: f64,
    access_lines: u64,
}

impl Closed {
    /// CPU per correct answer: the same denominator as the throughput, so cheap errors or wrong
    /// answers cannot make a server look cheaper.
    fn cpu_ms_per_request(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e3 / self.load.ok.max(1) as f64
    }
}

pub(crate) fn start_target(name: &'static str, args: Vec<String>) -> anyhow::Result<Target> {
    let child = Child::spawn(name, &args)?;
    let addr = child.ready.trim().parse().with_context(|| format!("{name} announced `{}`", child.ready))?;
    Ok(Target { name, child, addr })
}

pub(crate) async fn wait_ready(http: &reqwest::Client, target: &Target) -> anyhow::Result<()> {
    let url = format!("http://{}/readyz", target.addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the {} never became ready at {url}", target.name)
}

async fn reset_calls(http: &reqwest::Client, demo: &DemoAddrs) -> anyhow::Result<()> {
    http.post(format!("http://{}/reset", demo.control)).send().await?.error_for_status()?;
    Ok(())
}

/// Calls the scenario's backends received since the last reset.
async fn backend_calls(http: &reqwest::Client, demo: &DemoAddrs) -> anyhow::Result<u64> {
    let calls: serde_json::Value =
        http.get(format!("http://{}/calls", demo.control)).send().await?.error_for_status()?.json().await?;
    Ok(BACKENDS.iter().filter_map(|service| calls[service]["count"].as_u64()).sum())
}

/// One request, checked, before any load: a wrong setup fails loudly instead of measuring errors.
/// The answer, normalised: the expected status, JSON, and no `errors` member when the scenario
/// expects success.
pub(crate) async fn check(target: &Target, spec: &RequestSpec) -> anyhow::Result<serde_json::Value> {
    let mut connection = load::Connection::new(target.addr);
    let (status, body) = connection.send(spec).await?;
    let text = String::from_utf8_lossy(&body);
    if status != spec.expect {
        bail!("the {} answered {status} to the scenario's request, expected {}: {text}", target.name, spec.expect);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("the {} answered with no JSON: {text}", target.name))?;
    if spec.expect.is_success() && value.get("errors").is_some() {
        bail!("the {} answered with errors: {text}", target.name);
    }
    Ok(load::normalise(value))
}

/// The phases are cut into slices of about this length and the BFF's and the baseline's slices
/// alternate, so load from elsewhere on the machine (a build, another run) falls on both alike and
/// the ratios stay meaningful on a shared machine.
const SLICE: Duration = Duration::from_secs(2);

fn slices(duration: Duration) -> (u32, Duration) {
    let count = ((duration.as_secs_f64() / SLICE.as_secs_f64()).round() as u32).max(1);
    (count, duration / count)
}

impl Closed {
    fn empty() -> Self {
        Self { load: LoadResult::new(), cpu: Duration::ZERO, calls: 0.0, access_lines: 0 }
    }
}

/// One closed-loop slice of `target`, added to `into`.
async fn closed_slice(
    http: &reqwest::Client,
    demo: &DemoAddrs,
    target: &Target,
    spec: &Arc<RequestSpec>,
    options: &Options,
    slice: Duration,
    into: &mut Closed,
) -> anyhow::Result<()> {
    reset_calls(http, demo).await?;
    let lines = target.child.access_lines.load(Ordering::Relaxed);
    let cpu = target.child.cpu()?;
    let load = load::closed(target.addr, Arc::clone(spec), options.concurrency, slice).await?;
    into.cpu += target.child.cpu()?.saturating_sub(cpu);
    into.calls += backend_calls(http, demo).await? as f64;
    // Let the log pipe drain before counting what it carried.
    tokio::time::sleep(Duration::from_millis(100)).await;
    into.access_lines += target.child.access_lines.load(Ordering::Relaxed) - lines;
    into.load.merge(load);
    Ok(())
}

/// Closed loops of the BFF and the baseline, in alternating slices.
async fn closed_loops(
    http: &reqwest::Client,
    demo: &DemoAddrs,
    targets: [&Target; 2],
    spec: &Arc<RequestSpec>,
    options: &Options,
) -> anyhow::Result<[Closed; 2]> {
    let warm_up = (options.duration / 5).min(Duration::from_secs(3));
    for target in targets {
        load::closed(target.addr, Arc::clone(spec), options.concurrency, warm_up).await?;
    }
    let (count, slice) = slices(options.duration);
    let mut results = [Closed::empty(), Closed::empty()];
    for _ in 0..count {
        for (target, into) in targets.iter().zip(results.iter_mut()) {
            closed_slice(http, demo, target, spec, options, slice, into).await?;
        }
    }
    for result in &mut results {
        result.calls /= result.load.answers().max(1) as f64;
    }
    Ok(results)
}

/// Open loops of the BFF and the baseline at the same rate, in alternating slices.
async fn open_loops(
    targets: [&Target; 2],
    spec: &Arc<RequestSpec>,
    options: &Options,
    rate: f64,
) -> anyhow::Result<[LoadResult; 2]> {
    let (count, slice) = slices(options.duration);
    let mut results = [LoadResult::new(), LoadResult::new()];
    for _ in 0..count {
        for (target, into) in targets.iter().zip(results.iter_mut()) {
            into.merge(load::open(target.addr, Arc::clone(spec), options.concurrency, rate, slice).await?);
        }
    }
    Ok(results)
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    bff_upstream::tls::install_default_provider();
    let demo = Child::spawn("demo", &["serve-demo".into(), "--latency".into(), fmt_duration(options.latency)])?;
    let (addrs, tokens) = serve::parse_demo_ready(&demo.ready)?;
    let mut spec = options.scenario.request(&tokens);
    let encoded = serve::encode_addrs(&addrs);
    let mut bff_args = vec![
        "serve-bff".into(),
        "--bff".into(),
        options.scenario.bff().name().into(),
        "--demo".into(),
        encoded.clone(),
    ];
    if options.scenario.shares_answers() {
        bff_args.push("--shared-answers".into());
    }
    bff_args.extend(["--sampling".into(), options.sampling.to_string()]);
    if let Some(replicas) = &options.replicas {
        return crate::capacity::run(options, replicas, spec, &bff_args);
    }
    let bff = start_target("BFF", bff_args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let http = reqwest::Client::new();
        wait_ready(&http, &bff).await?;
        let bff_answer = check(&bff, &spec).await?;
        if options.soak.is_some() || options.connections.is_some() {
            // Alone, the BFF's own first answer (checked above) is what every later one must be.
            spec.reference = Some(bff_answer.clone());
        }
        let spec = Arc::new(spec.clone());
        if let Some(soak) = options.soak {
            let text = soak_run(&bff, &spec, options, soak).await?;
            return append_text(options, "soak", &text);
        }
        if let Some(connections) = options.connections {
            let text = hold_connections(&bff, &spec, connections).await?;
            return append_text(options, "connections", &text);
        }
        let baseline = start_target(
            "baseline",
            vec![
                "serve-baseline".into(),
                "--scenario".into(),
                options.scenario.name().into(),
                "--demo".into(),
                encoded,
            ],
        )?;
        wait_ready(&http, &baseline).await?;
        // The baseline's answer is the reference: the BFF must give the same one, or its figures
        // would compare different work.
        let reference = check(&baseline, &spec).await?;
        if bff_answer != reference {
            bail!("the BFF and the baseline answer differently\n BFF:      {bff_answer}\n baseline: {reference}");
        }
        let spec = Arc::new(RequestSpec { reference: Some(reference), ..(*spec).clone() });

        let [bff_closed, base_closed] = closed_loops(&http, &addrs, [&bff, &baseline], &spec, options).await?;
        let rate = options.rate.unwrap_or(bff_closed.load.requests_per_second() / 2.0);
        let [bff_open, base_open] = open_loops([&bff, &baseline], &spec, options, rate).await?;
        let figures = Figures {
            options,
            rate,
            bff: (bff_closed, bff_open, bff.child.peak_rss()?),
            baseline: (base_closed, base_open, baseline.child.peak_rss()?),
        };
        print(&figures.text());
        append(options, &figures.markdown())
    })
}

/// Appends `markdown` to the results file, if the run has one.
fn append(options: &Options, markdown: &str) -> anyhow::Result<()> {
    if let Some(path) = &options.results {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(markdown.as_bytes())?;
        print(&format!("results appended to {}\n", path.display()));
    }
    Ok(())
}

/// A mode's printed report as a results section.
pub(crate) fn append_text(options: &Options, mode: &str, text: &str) -> anyhow::Result<()> {
    let markdown = format!(
        "\n### {} {mode} — {} — {}{}\n\ncommit {}\n\n```\n{}\n```\n",
        options.scenario.name(),
        command_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        machine(),
        options.label.as_deref().map(|l| format!(" — {l}")).unwrap_or_default(),
        command_line(&["git", "describe", "--always", "--dirty"]),
        text.trim()
    );
    append(options, &markdown)
}

#[allow(clippy::print_stdout)]
pub(crate) fn print(text: &str) {
    print!("{text}");
    let _ = std::io::stdout().flush();
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

struct Figures<'a> {
    options: &'a Options,
    rate: f64,
    bff: (Closed, LoadResult, u64),
    baseline: (Closed, LoadResult, u64),
}

impl Figures<'_> {
    fn throughput_ratio(&self) -> f64 {
        self.bff.0.load.requests_per_second() / self.baseline.0.load.requests_per_second().max(1e-9)
    }

    fn cpu_ratio(&self) -> f64 {
        self.bff.0.cpu_ms_per_request() / self.baseline.0.cpu_ms_per_request().max(1e-9)
    }

    /// Gateway-added latency at quantile `q`: the BFF's minus the baseline's, at the same rate.
    fn added_ms(&self, q: f64) -> f64 {
        self.bff.1.ms(q) - self.baseline.1.ms(q)
    }

    fn rows(&self) -> Vec<(String, String, String)> {
        let o = self.options;
        let mut rows = Vec::new();
        let mut row = |name: String, f: &dyn Fn(&(Closed, LoadResult, u64)) -> String| {
            rows.push((name, f(&self.bff), f(&self.baseline)));
        };
        row(format!("requests/s (closed loop, {} connections)", o.concurrency), &|t| {
            format!("{:.0}", t.0.load.requests_per_second())
        });
        for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            row(format!("closed-loop latency {label} ms"), &|t| format!("{:.3}", t.0.load.ms(q)));
        }
        row("CPU per request ms".to_owned(), &|t| format!("{:.3}", t.0.cpu_ms_per_request()));
        row("backend calls per request".to_owned(), &|t| format!("{:.2}", t.0.calls));
        row("access-log lines per request".to_owned(), &|t| {
            format!("{:.2}", t.0.access_lines as f64 / t.0.load.answers().max(1) as f64)
        });
        row("errors (closed loop)".to_owned(), &|t| t.0.load.errors.to_string());
        row("wrong answers (closed loop)".to_owned(), &|t| t.0.load.wrong.to_string());
        row("bodies checked (closed loop)".to_owned(), &|t| t.0.load.checked.to_string());
        for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            row(format!("open loop at {:.0}/s: latency {label} ms", self.rate), &|t| format!("{:.3}", t.1.ms(q)));
        }
        row(format!("open loop at {:.0}/s: achieved requests/s", self.rate), &|t| {
            format!("{:.0}", t.1.requests_per_second())
        });
        row(format!("open loop at {:.0}/s: errors", self.rate), &|t| t.1.errors.to_string());
        row(format!("open loop at {:.0}/s: wrong answers", self.rate), &|t| t.1.wrong.to_string());
        row("peak RSS MiB".to_owned(), &|t| format!("{:.1}", t.2 as f64 / MIB));
        rows
    }

    fn first_errors(&self) -> String {
        let mut out = String::new();
        for (name, t) in [("BFF", &self.bff), ("baseline", &self.baseline)] {
            if let Some(error) = t.0.load.first_error.as_ref().or(t.1.first_error.as_ref()) {
                let _ = writeln!(out, "first {name} error: {error}");
            }
            if let Some(wrong) = t.0.load.first_wrong.as_ref().or(t.1.first_wrong.as_ref()) {
                let _ = writeln!(out, "first {name} wrong answer: {wrong}");
            }
        }
        out
    }

    /// What went wrong in the run, or that nothing did: every figure counts correct answers only.
    fn verdict(&self) -> String {
        let [errors, wrong] = [|l: &LoadResult| l.errors, |l: &LoadResult| l.wrong].map(|count| {
            count(&self.bff.0.load) + count(&self.bff.1) + count(&self.baseline.0.load) + count(&self.baseline.1)
        });
        match errors + wrong {
            0 => "all answers correct (status, and every sampled body equal to the baseline's)".to_owned(),
            _ => format!(
                "NOT ALL ANSWERS CORRECT: {errors} errors, {wrong} wrong answers (figures count correct answers only)"
            ),
        }
    }

    fn text(&self) -> String {
        let o = self.options;
        let mut out = format!(
            "\nbff-bench: scenario {}{}, {} per phase, demo latency {}, traces sampled {}, {}\n\n",
            o.scenario.name(),
            o.label.as_deref().map(|l| format!(" ({l})")).unwrap_or_default(),
            fmt_duration(o.duration),
            fmt_duration(o.latency),
            o.sampling,
            machine()
        );
        let _ = writeln!(out, "{:<48} {:>12} {:>12}", "", "BFF", "baseline");
        for (name, bff, base) in self.rows() {
            let _ = writeln!(out, "{name:<48} {bff:>12} {base:>12}");
        }
        let _ = writeln!(
            out,
            "\ngateway-added latency at {:.0}/s: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
            self.rate,
            self.added_ms(0.5),
            self.added_ms(0.9),
            self.added_ms(0.99),
            self.added_ms(0.999)
        );
        let _ = writeln!(out, "throughput ratio BFF/baseline: {:.2}", self.throughput_ratio());
        let _ = writeln!(out, "CPU-per-request ratio BFF/baseline: {:.2}", self.cpu_ratio());
        let _ = writeln!(out, "{}", self.verdict());
        out.push_str(&self.first_errors());
        out
    }

    fn markdown(&self) -> String {
        let o = self.options;
        let mut out = format!(
            "\n### {} — {} — {}{}\n\n{} per phase, {} connections, demo latency {}, traces sampled {}, commit {}\n\n| | BFF | baseline |\n|---|---|---|\n",
            o.scenario.name(),
            command_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
            machine(),
            o.label.as_deref().map(|l| format!(" — {l}")).unwrap_or_default(),
            fmt_duration(o.duration),
            o.concurrency,
            fmt_duration(o.latency),
            o.sampling,
            command_line(&["git", "describe", "--always", "--dirty"]),
        );
        for (name, bff, base) in self.rows() {
            let _ = writeln!(out, "| {name} | {bff} | {base} |");
        }
        let _ = writeln!(
            out,
            "\nthroughput ratio {:.2}, CPU-per-request ratio {:.2}, gateway-added latency at {:.0}/s p50 {:.3} ms, p99 {:.3} ms",
            self.throughput_ratio(),
            self.cpu_ratio(),
            self.rate,
            self.added_ms(0.5),
            self.added_ms(0.99)
        );
        let _ = writeln!(out, "\n{}", self.verdict());
        out
    }
}

fn command_line(argv: &[&str]) -> String {
    std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{model}, {cores} cores")
}

/// The BFF alone under the closed loop for `soak`, its RSS printed at intervals: a leak shows as
/// growth after the warm-up.
async fn soak_run(bff: &Target, spec: &Arc<RequestSpec>, options: &Options, soak: Duration) -> anyhow::Result<String> {
    let interval = (soak / 20).max(Duration::from_secs(1));
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut report = String::new();
    let mut print = |line: &str| {
        print(line);
        report.push_str(line);
    };
    print(&format!(
        "\nbff-bench soak: scenario {}, {}, {} connections, {}\n",
        options.scenario.name(),
        fmt_duration(soak),
        options.concurrency,
        machine()
    ));
    while started.elapsed() < soak {
        let result = load::closed(bff.addr, Arc::clone(spec), options.concurrency, interval).await?;
        let rss = bff.child.rss()? as f64 / MIB;
        samples.push(rss);
        print(&format!(
            "soak t={:>6.0}s requests/s {:>8.0} errors {:>4} wrong {:>4} rss {:>7.1} MiB\n",
            started.elapsed().as_secs_f64(),
            result.requests_per_second(),
            result.errors,
            result.wrong,
            rss
        ));
    }
    // The first tenth is warm-up: pools, caches and allocator arenas fill.
    let warm = samples.len() / 10;
    if let (Some(after_warm_up), Some(last)) = (samples.get(warm), samples.last()) {
        let growth = (last - after_warm_up) / after_warm_up * 100.0;
        print(&format!(
            "soak rss after warm-up {after_warm_up:.1} MiB, at the end {last:.1} MiB: growth {growth:+.1}%, peak {:.1} MiB\n",
            bff.child.peak_rss()? as f64 / MIB
        ));
    }
    Ok(report)
}

/// Opens `count` keep-alive connections to the BFF, one request on each, and holds them idle.
async fn hold_connections(bff: &Target, spec: &Arc<RequestSpec>, count: usize) -> anyhow::Result<String> {
    let before = bff.child.rss()? as f64 / MIB;
    let mut held = Vec::with_capacity(count);
    let mut failed = 0;
    // In batches, so the connection storm stays within the listener's backlog.
    for batch in (0..count).collect::<Vec<_>>().chunks(100) {
        let opened = futures::future::join_all(batch.iter().map(|_| {
            let spec = Arc::clone(spec);
            async move {
                let mut connection = load::Connection::new(bff.addr);
                connection.send(&spec).await.map(|_| connection)
            }
        }))
        .await;
        for connection in opened {
            match connection {
                Ok(connection) => held.push(connection),
                Err(_) => failed += 1,
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = bff.child.rss()? as f64 / MIB;
    // Counted when the memory is read: a connection the server closed holds no memory there.
    let open = held.iter().filter(|connection| connection.is_open()).count();
    let report = format!(
        "\nbff-bench connections: {} idle keep-alive connections held ({failed} failed), {open} open when memory was read, {}\nBFF rss before {before:.1} MiB, with the connections {rss:.1} MiB, peak {:.1} MiB\n",
        held.len(),
        machine(),
        bff.child.peak_rss()? as f64 / MIB
    );
    print(&report);
    Ok(report)
}
