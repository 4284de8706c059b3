//! The load generator: HTTP/1 keep-alive connections, each sending one request at a time.
//!
//! Closed loop: every connection sends its next request as soon as the last one is answered, which
//! finds the saturation throughput. Open loop: requests are due at a fixed rate whatever happens,
//! and a request that could not be sent when due (its connection still busy) is timed from when
//! it was due, so a stall is charged to every request it delayed (no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::scenario::RequestSpec;

/// What one load phase measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub ok: u64,
    /// Answers with another status than the scenario expects, and failed exchanges.
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latency in nanoseconds.
    pub latency: Histogram<u64>,
}

impl LoadResult {
    pub fn new() -> Self {
        Self { ok: 0, errors: 0, first_error: None, elapsed: Duration::ZERO, latency: histogram() }
    }

    /// Adds `other`, measured over its own time, to this one.
    pub fn merge(&mut self, other: LoadResult) {
        self.elapsed += other.elapsed;
        self.ok += other.ok;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    fn record(&mut self, outcome: anyhow::Result<StatusCode>, expect: StatusCode, latency: Duration) {
        match outcome {
            Ok(status) if status == expect => {
                self.ok += 1;
                let _ = self.latency.record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1));
            }
            Ok(status) => self.error(format!("status {status}, expected {expect}")),
            Err(error) => self.error(format!("{error:#}")),
        }
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    pub fn requests_per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency at quantile `q`, in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e6
    }
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 100 s at three significant digits; the bounds are valid constants.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// One keep-alive connection that reconnects after a failure.
pub struct Connection {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    pub async fn connect(&mut self) -> anyhow::Result<()> {
        let stream = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        self.sender = Some(sender);
        Ok(())
    }

    pub async fn send(&mut self, spec: &RequestSpec) -> anyhow::Result<StatusCode> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.connect().await?;
        }
        let result = async {
            let sender = self.sender.as_mut().context("not connected")?;
            sender.ready().await?;
            let mut request = Request::builder()
                .method(spec.method.clone())
                .uri(&spec.path)
                .header(header::HOST, self.addr.to_string())
                .body(Full::new(spec.body.clone()))?;
            request.headers_mut().extend(spec.headers.iter().cloned());
            let response = sender.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            anyhow::Ok(status)
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

/// `connections` connections sending back to back for `duration`.
pub async fn closed(
    addr: SocketAddr,
    spec: Arc<RequestSpec>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let started = Instant::now();
    let end = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let spec = Arc::clone(&spec);
            tokio::spawn(async move {
                let mut result = LoadResult::new();
                let mut connection = Connection::new(addr);
                while Instant::now() < end {
                    let sent = Instant::now();
                    let outcome = connection.send(&spec).await;
                    result.record(outcome, spec.expect, sent.elapsed());
                }
                result
            })
        })
        .collect();
    let mut total = LoadResult::new();
    for task in tasks {
        total.merge(task.await?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Requests due at `rate` per second for `duration`, spread over `connections` connections.
pub async fn open(
    addr: SocketAddr,
    spec: Arc<RequestSpec>,
    connections: usize,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let rate = rate.max(1.0);
    let started = Instant::now() + Duration::from_millis(20);
    let end = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|k| {
            let spec = Arc::clone(&spec);
            tokio::spawn(async move {
                let mut result = LoadResult::new();
                let mut connection = Connection::new(addr);
                if let Err(error) = connection.connect().await {
                    result.error(format!("{error:#}"));
                }
                // Connection k sends requests k, k + n, k + 2n, ... of the schedule.
                for i in (k..).step_by(connections) {
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    if due >= end {
                        break;
                    }
                    let late_before_sending = Instant::now() > due;
                    tokio::time::sleep_until(due.into()).await;
                    // Waiting on our own busy connection is the system's delay and counts from
                    // when the request was due; the timer's own wake-up slack (tokio wakes on
                    // millisecond ticks) is the harness's, so an idle connection counts from the
                    // actual send.
                    let start = if late_before_sending { due } else { Instant::now() };
                    let outcome = connection.send(&spec).await;
                    result.record(outcome, spec.expect, start.elapsed());
                }
                result
            })
        })
        .collect();
    let mut total = LoadResult::new();
    for task in tasks {
        total.merge(task.await?);
    }
    total.elapsed = started.elapsed().min(duration).max(Duration::from_millis(1));
    Ok(total)
}
