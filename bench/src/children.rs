//! The processes under measurement: this same binary re-run with a hidden subcommand, so the BFF's
//! CPU and memory are its own and not the load generator's or the backends'.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

/// The line a child prints on stderr once it serves, followed by what the parent needs to know.
pub const READY: &str = "bff-bench-ready ";

/// A running child. Dropping it ends it (by its own pid).
pub struct Child {
    process: std::process::Child,
    /// What followed [`READY`].
    pub ready: String,
    /// Lines the child wrote to stdout that were access-log lines.
    pub access_lines: Arc<AtomicU64>,
}

impl Child {
    /// Starts `bff-bench ARGS` and waits for its ready line.
    pub fn spawn(label: &str, args: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating bff-bench")?;
        let mut process = Command::new(exe)
            .args(args)
            // Production filter, whatever the shell running the harness has set.
            .env_remove("RUST_LOG")
            // The child exits when this pipe closes, so it cannot outlive a killed harness.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the {label} process"))?;
        let access_lines = Arc::new(AtomicU64::new(0));
        // The logs go through a pipe that is drained at once, as a log collector would.
        let stdout = process.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let counter = Arc::clone(&access_lines);
        std::thread::spawn(move || count_access_lines(stdout, &counter));
        let stderr = process.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let name = label.to_owned();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                match (line.strip_prefix(READY), ready_tx.take()) {
                    (Some(ready), Some(tx)) => {
                        let _ = tx.send(ready.to_owned());
                    }
                    (_, tx) => {
                        ready_tx = tx;
                        eprintln!("[{name}] {line}");
                    }
                }
            }
        });
        let ready = match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(ready) => ready,
            Err(_) => {
                let _ = process.kill();
                let status = process.wait().ok();
                bail!("the {label} process did not become ready (exit: {status:?})");
            }
        };
        Ok(Self { process, ready, access_lines })
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// CPU time (user + system, all threads) used so far.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_time(self.pid())
    }

    /// Peak resident set size so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        status_bytes(self.pid(), "VmHWM")
    }

    /// Current resident set size (VmRSS), in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        status_bytes(self.pid(), "VmRSS")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn count_access_lines(stdout: impl Read, counter: &AtomicU64) {
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.contains(r#""target":"access""#) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// In a child: exit when the parent goes away (its end of stdin closes).
pub fn exit_with_parent() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

/// Clock ticks per second of /proc's CPU counters (USER_HZ): 100 on Linux unless `getconf`
/// says otherwise.
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/PID/stat")?;
    // The command name may hold spaces and parentheses; the fields after its last `)` do not.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| anyhow!("odd /proc/PID/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), utime 14 and stime 15.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or_else(|| anyhow!("odd /proc stat"));
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_nanos(total.saturating_mul(1_000_000_000 / clock_ticks())))
}

fn status_bytes(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/PID/status")?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().context("odd /proc status value")?;
    Ok(kib * 1024)
}
