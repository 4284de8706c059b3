//! The load generator: HTTP/1 keep-alive connections, each sending one request at a time.
//!
//! Closed loop: every connection sends its next request as soon as the last one is answered, which
//! finds the saturation throughput. Open loop: requests are due at a fixed rate whatever happens,
//! and every request is timed from when it was due, so a stall (of the server, or of the harness
//! on a busy machine) is charged to every request it delayed (no coordinated omission).
//!
//! Only correct answers count: the expected status, and, for every sampled answer, a body equal to
//! the scenario's reference once normalised ([`normalise`]). An answer with another status, or a
//! failed exchange, is an error; a sampled body that differs is a wrong answer. Both are counted on
//! their own and every answer, right or not, is in the latency histogram.

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

/// One answer in how many has its body checked; the first answer on each connection always is.
/// Parsing every body would load the machine the servers share with the harness.
const CHECK_EVERY: u64 = 8;

/// What one load phase measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Correct answers: the expected status, and (when sampled) the reference body.
    pub ok: u64,
    /// Answers with another status than the scenario expects, and failed exchanges.
    pub errors: u64,
    /// Sampled answers with the expected status whose body is not the reference.
    pub wrong: u64,
    /// How many bodies were compared with the reference.
    pub checked: u64,
    pub first_error: Option<String>,
    pub first_wrong: Option<String>,
    pub elapsed: Duration,
    /// Latency in nanoseconds, of every answer.
    pub latency: Histogram<u64>,
}

impl LoadResult {
    pub fn new() -> Self {
        Self {
            ok: 0,
            errors: 0,
            wrong: 0,
            checked: 0,
            first_error: None,
            first_wrong: None,
            elapsed: Duration::ZERO,
            latency: histogram(),
        }
    }

    /// Adds `other`, measured over its own time, to this one.
    pub fn merge(&mut self, other: LoadResult) {
        self.elapsed += other.elapsed;
        self.ok += other.ok;
        self.errors += other.errors;
        self.wrong += other.wrong;
        self.checked += other.checked;
        self.first_error = self.first_error.take().or(other.first_error);
        self.first_wrong = self.first_wrong.take().or(other.first_wrong);
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    fn record(
        &mut self,
        outcome: anyhow::Result<(StatusCode, Bytes)>,
        spec: &RequestSpec,
        check: bool,
        latency: Duration,
    ) {
        let _ = self.latency.record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1));
        match outcome {
            Ok((status, body)) if status == spec.expect => {
                if !check {
                    self.ok += 1;
                    return;
                }
                let Some(reference) = spec.reference.as_ref() else {
                    self.ok += 1;
                    return;
                };
                self.checked += 1;
                match verdict(reference, &body) {
                    Ok(()) => self.ok += 1,
                    Err(why) => {
                        self.wrong += 1;
                        self.first_wrong.get_or_insert(why);
                    }
                }
            }
            Ok((status, body)) => {
                let body = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                self.error(format!("status {status}, expected {}: {body}", spec.expect))
            }
            Err(error) => self.error(format!("{error:#}")),
        }
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }

    /// Every answer, right or wrong.
    pub fn answers(&self) -> u64 {
        self.ok + self.errors + self.wrong
    }

    /// Correct answers per second.
    pub fn requests_per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency at quantile `q`, in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e6
    }
}

/// What the harness ignores when it compares a body with the reference: the request id (a GraphQL
/// error's `extensions.requestId`, a problem's `request_id`), which differs on every answer, and a
/// GraphQL response's `extensions.rateLimit` (what is left of the caller's budget changes with
/// every answer; the answer is the data). Object members compare whatever their order.
pub fn normalise(mut value: serde_json::Value) -> serde_json::Value {
    let responses = match &mut value {
        serde_json::Value::Array(batch) => batch.iter_mut().collect(),
        single => vec![single],
    };
    for response in responses {
        if let Some(serde_json::Value::Object(members)) = response.get_mut("extensions") {
            members.remove("rateLimit");
            if members.is_empty()
                && let Some(response) = response.as_object_mut()
            {
                response.remove("extensions");
            }
        }
    }
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(members) => {
                for (name, member) in members.iter_mut() {
                    if name == "requestId" || name == "request_id" {
                        *member = serde_json::Value::String("-".to_owned());
                    } else {
                        walk(member);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// Whether `body` is the reference answer; why not, when it is not.
pub fn verdict(reference: &serde_json::Value, body: &[u8]) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&body[..body.len().min(300)])))?;
    let value = normalise(value);
    if &value == reference { Ok(()) } else { Err(format!("expected {reference}\n got      {value}")) }
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

    /// Whether the connection is still open (the server has not closed it).
    pub fn is_open(&self) -> bool {
        self.sender.as_ref().is_some_and(|sender| !sender.is_closed())
    }

    pub async fn send(&mut self, spec: &RequestSpec) -> anyhow::Result<(StatusCode, Bytes)> {
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
                .body(Full::new(spec.body()))?;
            request.headers_mut().extend(spec.headers.iter().cloned());
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
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
                let mut n = 0u64;
                while Instant::now() < end {
                    let sent = Instant::now();
                    let outcome = connection.send(&spec).await;
                    result.record(outcome, &spec, n.is_multiple_of(CHECK_EVERY), sent.elapsed());
                    n += 1;
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
                for (n, i) in (k..).step_by(connections).enumerate() {
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    // From when it was due, whatever made it late: a busy connection, or the
                    // harness itself on a loaded machine (the timer's wake-up slack included, a
                    // millisecond at most, and the same for the BFF and the baseline).
                    let outcome = connection.send(&spec).await;
                    result.record(outcome, &spec, (n as u64).is_multiple_of(CHECK_EVERY), due.elapsed());
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
