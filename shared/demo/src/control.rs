//! Injectable faults and call recording, per service, plus the control API that drives them.
//!
//! End-to-end tests need to see what a BFF actually asked a backend (which headers it forwarded,
//! which fields it requested, how many calls a cache saved) and to make a backend slow, flaky or
//! dead on demand. Both live here so every service, REST or gRPC, behaves the same way.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::json_error;

/// Most recent calls kept per service; older ones only count.
const RECENT: usize = 100;
/// Longest a fault change waits for a service to go down or come back.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do to each call. All zero/false means a healthy service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Probability (0..=1) that a call fails after the delay.
    pub error_rate: f64,
    /// Never answer (until the caller's deadline, which the service honours): for testing
    /// timeouts and circuit breakers.
    pub hang: bool,
    /// Ignore the caller's deadline (`grpc-timeout`, `x-request-timeout-ms`): with `hang`, a
    /// backend that never answers at all, so only the caller's own timer ends the call.
    pub ignore_deadline: bool,
    /// Take the service off the network: its port refuses connections (probes included) and open
    /// connections are cut, as in a real outage, until this is set back to false.
    pub down: bool,
    /// The body is garbage (see `body_faults` for these five).
    pub malformed_body: bool,
    /// The body is far larger than any answer should be.
    pub oversized_body: bool,
    /// The body arrives a few bytes at a time, this many milliseconds apart.
    pub dribble_ms: u64,
    /// The connection is reset halfway through the body.
    pub reset_mid_body: bool,
    /// The body stops halfway and never continues (for gRPC, a stream that stalls).
    pub stall_body: bool,
}

/// One call as the backend saw it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedCall {
    /// Its place among every call the service has seen, from 1.
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub fields: Vec<String>,
    /// Bytes of the answer's body (REST) or message (gRPC); 0 until answered.
    pub response_bytes: u64,
    /// For a server stream: `open`, then `finished` or `cancelled` (the client went away).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<&'static str>,
}

impl RecordedCall {
    fn new(method: String, path: String, headers: BTreeMap<String, String>, fields: Vec<String>) -> Self {
        Self { seq: 0, method, path, headers, fields, response_bytes: 0, stream: None }
    }
}

#[derive(Default)]
struct Inner {
    faults: Faults,
    count: u64,
    recent: VecDeque<RecordedCall>,
}

/// The faults and recordings of one service, shared by its handlers and the control API.
pub struct ServiceControl {
    name: Arc<str>,
    state: Mutex<Inner>,
    /// Whether the service should be down; its server watches this.
    down: watch::Sender<bool>,
    /// Whether it is: the server says so once its port is closed, or open again.
    is_down: watch::Sender<bool>,
}

impl ServiceControl {
    pub(crate) fn new(name: impl Into<Arc<str>>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            state: Mutex::new(Inner::default()),
            down: watch::Sender::new(false),
            is_down: watch::Sender::new(false),
        })
    }

    pub(crate) fn watch_down(&self) -> watch::Receiver<bool> {
        self.down.subscribe()
    }

    /// Called by the service's server once its port matches the requested state.
    pub(crate) fn confirm_down(&self, down: bool) {
        self.is_down.send_replace(down);
    }

    /// Waits (a bounded while) until the server has acted on the requested state, so a caller
    /// that was told "down" finds the port closed, and "up" finds it open.
    async fn settled(&self) -> bool {
        let wanted = *self.down.borrow();
        let mut is_down = self.is_down.subscribe();
        tokio::time::timeout(SETTLE_TIMEOUT, is_down.wait_for(|down| *down == wanted)).await.is_ok_and(|r| r.is_ok())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    // A panic while holding the lock cannot leave the state inconsistent (every update is a single
    // assignment or push), so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
        self.down.send_if_modified(|down| std::mem::replace(down, faults.down) != faults.down);
    }

    pub(crate) fn reset(&self) {
        *self.lock() = Inner::default();
        self.down.send_if_modified(|down| std::mem::replace(down, false));
    }

    /// Records a call; the answer is its `seq`, for [`ServiceControl::answered`].
    pub(crate) fn record(&self, mut call: RecordedCall) -> u64 {
        let mut state = self.lock();
        state.count += 1;
        call.seq = state.count;
        if state.recent.len() == RECENT {
            state.recent.pop_front();
        }
        state.recent.push_back(call);
        state.count
    }

    fn update(&self, seq: u64, change: impl FnOnce(&mut RecordedCall)) {
        if let Some(call) = self.lock().recent.iter_mut().rev().find(|call| call.seq == seq) {
            change(call);
        }
    }

    /// Notes the size of the answer to call `seq`.
    pub(crate) fn answered(&self, seq: u64, bytes: usize) {
        self.update(seq, |call| call.response_bytes = bytes as u64);
    }

    /// Notes the state of the stream call `seq` opened.
    pub(crate) fn streaming(&self, seq: u64, state: &'static str) {
        self.update(seq, |call| call.stream = Some(state));
    }

    /// `{"count": N, "recent": [...]}`, oldest first.
    pub(crate) fn calls_json(&self) -> Value {
        let state = self.lock();
        json!({ "count": state.count, "recent": state.recent })
    }

    /// Applies the current faults: `Err(())` means "answer with an injected error".
    async fn apply_faults(&self) -> Result<(), ()> {
        let faults = self.faults();
        let delay = faults.latency_ms.saturating_add(if faults.jitter_ms > 0 {
            fastrand::u64(0..=faults.jitter_ms)
        } else {
            0
        });
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if faults.hang {
            std::future::pending::<()>().await;
        }
        if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
            return Err(());
        }
        Ok(())
    }

    /// Records a gRPC call and applies faults; every RPC handler calls this first. The answer is
    /// the call's `seq`.
    pub async fn admit(
        &self,
        method_path: &str,
        metadata: &tonic::metadata::MetadataMap,
        fields: Vec<String>,
    ) -> Result<u64, tonic::Status> {
        let mut headers = BTreeMap::new();
        for entry in metadata.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = entry {
                let value = String::from_utf8_lossy(value.as_encoded_bytes()).into_owned();
                insert_header(&mut headers, key.as_str(), value);
            }
        }
        let budget =
            headers.get("grpc-timeout").and_then(|t| parse_grpc_timeout(t)).filter(|_| !self.faults().ignore_deadline);
        let seq = self.record(RecordedCall::new("POST".to_owned(), method_path.to_owned(), headers, fields));
        match within(budget, self.apply_faults()).await {
            Some(Ok(())) => Ok(seq),
            Some(Err(())) => Err(tonic::Status::unavailable("injected fault")),
            None => Err(tonic::Status::deadline_exceeded("the caller's deadline passed")),
        }
    }
}

/// Runs `work` for at most `budget` (forever without one): a backend that honours its caller's
/// deadline stops working once nobody waits for the answer.
async fn within<T>(budget: Option<Duration>, work: impl std::future::Future<Output = T>) -> Option<T> {
    match budget {
        Some(budget) => tokio::time::timeout(budget, work).await.ok(),
        None => Some(work.await),
    }
}

/// gRPC's `grpc-timeout`: at most eight digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok().filter(|_| digits.len() <= 8)?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Repeated headers are joined the way HTTP allows folding them, so none is lost.
fn insert_header(headers: &mut BTreeMap<String, String>, name: &str, value: String) {
    headers
        .entry(name.to_owned())
        .and_modify(|existing| {
            existing.push_str(", ");
            existing.push_str(&value);
        })
        .or_insert(value);
}

/// The `fields` query parameter, split on commas.
pub(crate) fn fields_param(raw: Option<&str>) -> Vec<String> {
    raw.map(|raw| raw.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The REST counterpart of [`ServiceControl::admit`], as axum middleware. Health probes pass
/// straight through: they are the orchestrator's traffic, not the BFF's, and a service made
/// "slow" must still be seen as up.
pub(crate) async fn rest_middleware(
    State(control): State<Arc<ServiceControl>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let query = Query::<BTreeMap<String, String>>::try_from_uri(request.uri()).map(|q| q.0).unwrap_or_default();
    let mut headers = BTreeMap::new();
    for (name, value) in request.headers() {
        insert_header(&mut headers, name.as_str(), String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let budget = headers
        .get(bff_upstream::headers::REQUEST_TIMEOUT_MS)
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis)
        .filter(|_| !control.faults().ignore_deadline);
    let seq = control.record(RecordedCall::new(
        request.method().to_string(),
        request.uri().path().to_owned(),
        headers,
        fields_param(query.get("fields").map(String::as_str)),
    ));
    let work = async {
        if control.apply_faults().await.is_err() {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, "injected fault");
        }
        let response = next.run(request).await;
        // The services answer with whole JSON bodies, whose size is known up front.
        if let Some(bytes) = axum::body::HttpBody::size_hint(response.body()).exact() {
            control.answered(seq, usize::try_from(bytes).unwrap_or(usize::MAX));
        }
        response
    };
    within(budget, work)
        .await
        .unwrap_or_else(|| json_error(StatusCode::GATEWAY_TIMEOUT, "the caller's deadline passed"))
}

/// All six services' controls, in a fixed order, then those of further instances.
pub(crate) struct Controls {
    pub identity: Arc<ServiceControl>,
    pub users: Arc<ServiceControl>,
    pub catalog: Arc<ServiceControl>,
    pub orders: Arc<ServiceControl>,
    pub inventory: Arc<ServiceControl>,
    pub recommendations: Arc<ServiceControl>,
    /// Instances started beside the six (`catalog-2`, `catalog-canary`, ...).
    pub more: Mutex<Vec<Arc<ServiceControl>>>,
}

impl Controls {
    pub(crate) fn new() -> Self {
        Self {
            identity: ServiceControl::new("identity"),
            users: ServiceControl::new("users"),
            catalog: ServiceControl::new("catalog"),
            orders: ServiceControl::new("orders"),
            inventory: ServiceControl::new("inventory"),
            recommendations: ServiceControl::new("recommendations"),
            more: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn all(&self) -> Vec<Arc<ServiceControl>> {
        let six = [&self.identity, &self.users, &self.catalog, &self.orders, &self.inventory, &self.recommendations];
        let more = self.more.lock().unwrap_or_else(PoisonError::into_inner);
        six.into_iter().chain(more.iter()).cloned().collect()
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<ServiceControl>> {
        self.all().into_iter().find(|control| &*control.name == name)
    }

    /// A control for one more instance of `service`: `{service}-{suffix}` (then `-{suffix}2`...),
    /// or `{service}-2`, `-3`... without a suffix.
    pub(crate) fn add(&self, service: &str, suffix: &str) -> Arc<ServiceControl> {
        let mut more = self.more.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = |name: &str| more.iter().any(|control| &*control.name == name);
        let (mut name, mut n) = match suffix {
            "" => (format!("{service}-2"), 3),
            suffix => (format!("{service}-{suffix}"), 2),
        };
        while taken(&name) {
            name = format!("{service}-{suffix}{n}").replace("--", "-");
            n += 1;
        }
        let control = ServiceControl::new(name);
        more.push(Arc::clone(&control));
        control
    }
}

/// The control API: `GET /calls`, `POST /reset`, `GET`/`PUT /faults/{service}`.
pub(crate) fn router(controls: Arc<Controls>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/calls", get(calls))
        .route("/reset", post(reset))
        .route("/faults/{service}", get(get_faults).put(put_faults))
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "not found") })
        .with_state(controls)
}

async fn calls(State(controls): State<Arc<Controls>>) -> Json<Value> {
    let map: Map<String, Value> =
        controls.all().into_iter().map(|control| (control.name.to_string(), control.calls_json())).collect();
    Json(Value::Object(map))
}

async fn reset(State(controls): State<Arc<Controls>>) -> Response {
    for control in controls.all() {
        control.reset();
    }
    for control in controls.all() {
        if !control.settled().await {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, &format!("{} did not come back up", control.name));
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(controls): State<Arc<Controls>>, Path(service): Path<String>) -> Response {
    match controls.get(&service) {
        Some(control) => Json(control.faults()).into_response(),
        None => unknown_service(&service),
    }
}

async fn put_faults(
    State(controls): State<Arc<Controls>>,
    Path(service): Path<String>,
    body: Result<Json<Faults>, JsonRejection>,
) -> Response {
    let Some(control) = controls.get(&service) else {
        return unknown_service(&service);
    };
    let faults = match body {
        Ok(Json(faults)) => faults,
        Err(rejection) => {
            return json_error(StatusCode::BAD_REQUEST, &format!("invalid faults: {}", rejection.body_text()));
        }
    };
    if faults.dribble_ms > 10_000 {
        return json_error(StatusCode::BAD_REQUEST, "dribble_ms must be at most 10000");
    }
    if !(0.0..=1.0).contains(&faults.error_rate) {
        return json_error(StatusCode::BAD_REQUEST, "error_rate must be between 0 and 1");
    }
    control.set_faults(faults);
    if !control.settled().await {
        let state = if faults.down { "go down" } else { "come back up" };
        return json_error(StatusCode::SERVICE_UNAVAILABLE, &format!("{service} did not {state} in time"));
    }
    Json(faults).into_response()
}

fn unknown_service(service: &str) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        &format!(
            "no such service '{service}'; expected one of identity, users, catalog, orders, inventory, recommendations, \
             or a further instance's name (GET /calls lists them)"
        ),
    )
}
