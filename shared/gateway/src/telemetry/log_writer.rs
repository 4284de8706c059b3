//! The thread that writes log lines. A request formats its access line and queues it, and never
//! waits on a write to stdout: a synchronous write per line was a visible share of a BFF's CPU
//! under load, and a slow log collector would stall requests. The writer drains the queue in
//! batches, one write for many lines.
//!
//! The queue is bounded. When the sink falls that far behind, `[telemetry] log_overflow` decides:
//! `drop` (the default) drops the line and counts it (`bff_log_lines_dropped_total`; the writer
//! adds a line saying how many were dropped once it catches up), so a hung sink never holds a
//! request; `block` waits for room, losing nothing.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::fmt::MakeWriter;

use super::LogOverflow;

/// Lines queued for the writer at most: a fifth of a second at the highest rate measured here
/// (a cached answer, about 40,000 a second), against a writer that drains every 2 ms. The
/// queue's slots are allocated (and touched) up front, so its length is resident memory whether
/// used or not: 65,536 slots were 2 MiB of every replica's RSS.
const QUEUED_LINES: usize = 8_192;
/// Bytes the writer gathers before a write, at most.
const BATCH_BYTES: usize = 64 * 1024;
/// How long the writer rests after a write. Lines queued meanwhile wait for it instead of each
/// waking it (a futex wake and a context switch per line showed in the profile); a line reaches
/// stdout at most this much later.
const WRITER_REST: Duration = Duration::from_millis(2);

enum Message {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// A queue of lines and the thread that writes them to a sink.
struct LogQueue {
    sender: SyncSender<Message>,
    dropped: Counter,
}

impl LogQueue {
    fn spawn(sink: impl Write + Send + 'static, capacity: usize) -> Option<Self> {
        let (sender, lines) = sync_channel(capacity);
        let dropped = Counter::default();
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || write_lines(sink, &lines, &counted))
            .ok()?;
        Some(Self { sender, dropped })
    }

    /// Queues `line`; what the writer cannot take is handed back (its thread is gone).
    fn push(&self, line: Vec<u8>, overflow: LogOverflow) -> Result<(), Vec<u8>> {
        let message = Message::Line(line);
        let refused = match overflow {
            LogOverflow::Block => self.sender.send(message).err().map(|e| e.0),
            LogOverflow::Drop => match self.sender.try_send(message) {
                Ok(()) => None,
                Err(TrySendError::Full(_)) => {
                    self.dropped.inc();
                    None
                }
                Err(TrySendError::Disconnected(message)) => Some(message),
            },
        };
        match refused {
            Some(Message::Line(line)) => Err(line),
            _ => Ok(()),
        }
    }
}

static QUEUE: OnceLock<Option<LogQueue>> = OnceLock::new();
static BLOCK: AtomicBool = AtomicBool::new(false);

pub(super) fn set_overflow(overflow: LogOverflow) {
    BLOCK.store(overflow == LogOverflow::Block, Ordering::Relaxed);
}

fn queue() -> Option<&'static LogQueue> {
    QUEUE.get_or_init(|| LogQueue::spawn(std::io::stdout(), QUEUED_LINES)).as_ref()
}

/// Lines dropped since the process started because the sink was behind (a counter every BFF's
/// metrics include).
pub fn dropped_lines() -> Counter {
    queue().map(|queue| queue.dropped.clone()).unwrap_or_default()
}

/// Waits at most a second in all, however stuck the sink is: a process exiting must not hang on
/// its logs.
pub(super) fn flush() {
    let Some(queue) = QUEUE.get().and_then(Option::as_ref) else { return };
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let (done, written) = sync_channel(1);
    let mut flush = Message::Flush(done);
    loop {
        match queue.sender.try_send(flush) {
            Ok(()) => break,
            Err(TrySendError::Full(again)) if std::time::Instant::now() < deadline => {
                flush = again;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
    let _ = written.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
}

fn write_lines(mut sink: impl Write, lines: &Receiver<Message>, dropped: &Counter) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut reported = 0;
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
        let dropped_now = dropped.get();
        if dropped_now > reported {
            let when = humantime::format_rfc3339_micros(std::time::SystemTime::now());
            let summary = format!(
                "{{\"timestamp\":\"{when}\",\"level\":\"WARN\",\"message\":\"log lines dropped: the log sink fell behind\",\"target\":\"bff::log\",\"dropped\":{},\"dropped_total\":{dropped_now}}}\n",
                dropped_now - reported
            );
            batch.extend_from_slice(summary.as_bytes());
            reported = dropped_now;
        }
        let _ = sink.write_all(&batch);
        let _ = sink.flush();
        // A full batch means more is waiting: no rest then.
        let full = batch.len() >= BATCH_BYTES;
        batch.clear();
        let flushing = !flushed.is_empty();
        for done in flushed {
            let _ = done.send(());
        }
        if !flushing && !full {
            std::thread::sleep(WRITER_REST);
        }
    }
}

/// Where tracing formats one event: the line goes to the queue whole when tracing drops it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Queued;

pub(super) struct Line(Vec<u8>);

impl<'a> MakeWriter<'a> for Queued {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}

impl Write for Line {
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
        let overflow = if BLOCK.load(Ordering::Relaxed) { LogOverflow::Block } else { LogOverflow::Drop };
        // Without a writer thread, the line is written here.
        let unwritten = match queue() {
            Some(queue) => queue.push(line, overflow).err(),
            None => Some(line),
        };
        if let Some(line) = unwritten {
            let _ = std::io::stdout().lock().write_all(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Sender, channel};

    use super::*;

    /// A sink that never finishes a write: a log collector that hung. It says when it got stuck.
    struct Hung(Sender<()>);

    impl Write for Hung {
        fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(());
            loop {
                std::thread::park();
            }
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_hung_sink_never_holds_the_caller_and_every_dropped_line_is_counted() {
        let (stuck, is_stuck) = channel();
        let queue = LogQueue::spawn(Hung(stuck), 4).unwrap();
        queue.push(b"first\n".to_vec(), LogOverflow::Drop).unwrap();
        is_stuck.recv().unwrap();
        let started = std::time::Instant::now();
        for n in 0..1000 {
            queue.push(format!("line {n}\n").into_bytes(), LogOverflow::Drop).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(1), "the caller waited on the sink");
        // The writer is stuck in its first write; the queue holds four lines; the rest are dropped.
        assert_eq!(queue.dropped.get(), 996);
    }
}
