//! Structured JSON logs on stdout, and how a request's time divides between the gateway and its
//! backends ([`TimeSplit`]). `RUST_LOG` filters as usual; the default keeps access lines and our
//! own info events.
//!
//! Lines are written by a thread of their own: a request formats its access line and queues it,
//! and never waits on a write to stdout (a synchronous write per line was a visible share of a
//! BFF's CPU under load, and a slow log collector would stall requests). The writer drains the
//! queue in batches, one write for many lines. The queue is bounded: if the collector falls that
//! far behind, logging blocks rather than losing lines or growing without bound.

pub mod admin;
mod gateway_time;
pub mod metrics;
pub mod traces;

pub use gateway_time::TimeSplit;
pub use metrics::Metrics;

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

const DEFAULT_FILTER: &str = "info,h2=warn,hyper=warn,tower=warn";
/// Lines queued for the writer at most.
const QUEUED_LINES: usize = 65_536;
/// Bytes the writer gathers before a write, at most.
const BATCH_BYTES: usize = 64 * 1024;
/// How long the writer rests after a write. Lines queued meanwhile wait for it instead of each
/// waking it (a futex wake and a context switch per line showed in the profile); a line reaches
/// stdout at most this much later.
const WRITER_REST: Duration = Duration::from_millis(2);

/// Installs the global subscriber; a second call (tests, the devstack) is a no-op.
pub fn init() {
    let _ = init_with_tracing("bff", &traces::TracingConfig::default());
}

/// [`init`], with traces exported as `config` says (see [`traces`]) under the service name
/// `service`. Must run inside the tokio runtime the BFF serves on. Keep the guard while serving:
/// dropping it flushes what is queued.
pub fn init_with_tracing(service: &str, config: &traces::TracingConfig) -> Result<Option<traces::TracesGuard>, String> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(Queued)
        .with_filter(filter);
    let registry = tracing_subscriber::registry().with(logs);
    match traces::layer(service, config)? {
        Some((spans, guard)) => {
            // The exporter sees only the request and call spans, never log events.
            let ours = tracing_subscriber::filter::filter_fn(|metadata| {
                metadata.is_span() && matches!(metadata.name(), "request" | "upstream")
            });
            let _ = registry.with(spans.with_filter(ours)).try_init();
            Ok(Some(guard))
        }
        None => {
            let _ = registry.try_init();
            Ok(None)
        }
    }
}

/// Waits (at most a second) until every line logged so far is written: before the process exits.
pub fn flush() {
    let Some(queue) = QUEUE.get() else { return };
    let (done, written) = sync_channel(1);
    if queue.send(Message::Flush(done)).is_ok() {
        let _ = written.recv_timeout(Duration::from_secs(1));
    }
}

enum Message {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

static QUEUE: OnceLock<SyncSender<Message>> = OnceLock::new();

fn queue() -> Option<&'static SyncSender<Message>> {
    if let Some(queue) = QUEUE.get() {
        return Some(queue);
    }
    let (queue, lines) = sync_channel(QUEUED_LINES);
    let spawned = std::thread::Builder::new().name("log-writer".to_owned()).spawn(move || write_lines(&lines));
    // Without a thread to write them, lines go to stdout directly (see `Line::drop`).
    spawned.ok()?;
    // Two first callers at once: the loser's thread finds its queue dropped and ends.
    Some(QUEUE.get_or_init(|| queue))
}

fn write_lines(lines: &Receiver<Message>) {
    let stdout = std::io::stdout();
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    while let Ok(first) = lines.recv() {
        let mut next = Some(first);
        let mut flushed = Vec::new();
        while let Some(message) = next {
            match message {
                Message::Line(line) => batch.extend_from_slice(&line),
                Message::Flush(done) => flushed.push(done),
            }
            next = if batch.len() < BATCH_BYTES { lines.try_recv().ok() } else { None };
        }
        let _ = stdout.lock().write_all(&batch);
        batch.clear();
        let flushing = !flushed.is_empty();
        for done in flushed {
            let _ = done.send(());
        }
        if !flushing {
            std::thread::sleep(WRITER_REST);
        }
    }
}

/// Where tracing formats one event: the line goes to the queue whole when tracing drops it.
#[derive(Debug, Clone, Copy)]
struct Queued;

struct Line(Vec<u8>);

impl<'a> MakeWriter<'a> for Queued {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}

impl std::io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.0);
        match queue() {
            Some(queue) => {
                // Sending fails only if the writer thread is gone: write the line ourselves.
                if let Err(std::sync::mpsc::SendError(Message::Line(line))) = queue.send(Message::Line(line)) {
                    let _ = std::io::stdout().lock().write_all(&line);
                }
            }
            None => {
                let _ = std::io::stdout().lock().write_all(&line);
            }
        }
    }
}
