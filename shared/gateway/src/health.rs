//! Liveness (`/healthz`: the process serves) and readiness (`/readyz`: this replica can serve).
//!
//! Ready means: the signing keys are loaded, and the server is not draining. (A config that did
//! not validate never gets this far, so there is no check for it to fail.) The plain `/readyz` probes no backend, so it stays fast
//! whatever they do. A backend's outage does not make a replica unready: every
//! replica shares the backend, so pulling them all out of the load balancer would turn a partial
//! outage into a total one, while the BFF answers with partial data. `/readyz?verbose` lists each
//! check in the Kubernetes style, and each backend's last probe result and latency, and whether
//! rate limits are decided through Redis or (while it is away) in process, and the config
//! generation serving with the last reload's outcome, as information.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use bff_upstream::Probe;
use futures::future::{BoxFuture, join_all};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use crate::Authenticator;
use crate::limits::Limits;
use crate::reload::ReloadStatus;
use crate::server::Draining;

/// Longest a single probe may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one round of probes answers every `/readyz`: the endpoint is public, and must not let
/// a caller fan requests out to every backend at will.
const REPORT_TTL: Duration = Duration::from_secs(1);

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// One probe: a backend, or the signing keys.
#[derive(Clone)]
pub struct ReadinessCheck {
    name: &'static str,
    check: Arc<CheckFn>,
}

impl ReadinessCheck {
    pub fn new<P: Probe>(name: &'static str, probe: Arc<P>) -> Self {
        Self {
            name,
            check: Arc::new(move || {
                let probe = probe.clone();
                Box::pin(async move { probe.probe().await })
            }),
        }
    }

    async fn run(&self) -> ProbeResult {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (self.check)()).await {
            Ok(result) => result,
            Err(_) => Err("timeout".to_owned()),
        };
        ProbeResult { name: self.name, outcome, latency: started.elapsed() }
    }
}

#[derive(Clone)]
struct ProbeResult {
    name: &'static str,
    /// `Err` holds a short public reason; the probe logs the detail, which may name internal hosts.
    outcome: Result<(), String>,
    latency: Duration,
}

/// What `/readyz` checks.
pub struct Readiness {
    signing_keys: ReadinessCheck,
    backends: Vec<ReadinessCheck>,
    /// Whether limits are decided through Redis or, while it is away, in process.
    limits: Arc<Limits>,
    /// The last round of backend probes and when it ran; the lock also makes concurrent callers
    /// share one round.
    last: Mutex<Option<(Instant, Vec<ProbeResult>)>>,
    /// The config generation and the last reload's outcome, as information.
    reload: Arc<ReloadStatus>,
}

impl Readiness {
    pub fn new(authenticator: Arc<Authenticator>, backends: Vec<ReadinessCheck>) -> Self {
        let limits = authenticator.limits().clone();
        Self {
            signing_keys: ReadinessCheck::new("signing-keys", authenticator),
            backends,
            limits,
            last: Mutex::new(None),
            reload: Arc::default(),
        }
    }

    /// Reports `status` (the process's config generation and its last reload).
    pub fn with_reload_status(mut self, status: Arc<ReloadStatus>) -> Self {
        self.reload = status;
        self
    }

    /// Whether this app could serve, leaving draining aside (it belongs to the process, not to
    /// one config): what a reload asks of a new app before swapping it in.
    pub async fn ready_apart_from_draining(&self) -> Result<(), String> {
        self.signing_keys.run().await.outcome.map_err(|why| format!("signing-keys: {why}"))
    }

    /// Every backend's probe, for information only: never on the plain `/readyz` path, which a
    /// slow backend must not slow down.
    async fn backend_probes(&self) -> Vec<ProbeResult> {
        let mut last = self.last.lock().await;
        if let Some((at, results)) = &*last
            && at.elapsed() < REPORT_TTL
        {
            return results.clone();
        }
        let results = join_all(self.backends.iter().map(ReadinessCheck::run)).await;
        *last = Some((Instant::now(), results.clone()));
        results
    }
}

/// `/healthz` and `/readyz`, outside authentication.
pub fn routes(readiness: Arc<Readiness>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(readiness)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

#[derive(Deserialize)]
struct ReadyzQuery {
    verbose: Option<String>,
}

async fn readyz(
    State(readiness): State<Arc<Readiness>>,
    draining: Option<Extension<Draining>>,
    Query(query): Query<ReadyzQuery>,
) -> Response {
    // Cheap once the keys are loaded (a read lock); single-flight while they are not.
    let keys = readiness.signing_keys.run().await;
    let draining = draining.is_some_and(|Extension(d)| d.is_draining());
    let required =
        [("signing-keys", keys.outcome), ("not-draining", if draining { Err("draining".to_owned()) } else { Ok(()) })];
    let ready = required.iter().all(|(_, outcome)| outcome.is_ok());
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    if query.verbose.is_none() {
        let failed: Vec<&str> = required.iter().filter(|(_, o)| o.is_err()).map(|(name, _)| *name).collect();
        let body =
            if ready { json!({ "status": "ready" }) } else { json!({ "status": "not_ready", "failed": failed }) };
        return (status, Json(body)).into_response();
    }
    let mut text = String::new();
    for (name, outcome) in &required {
        let _ = match outcome {
            Ok(()) => writeln!(text, "[+]{name} ok"),
            Err(reason) => writeln!(text, "[-]{name} failed: {reason}"),
        };
    }
    for probe in readiness.backend_probes().await {
        let ms = probe.latency.as_millis();
        let _ = match &probe.outcome {
            Ok(()) => writeln!(text, "[+]backend:{} ok ({ms}ms, informational)", probe.name),
            Err(reason) => writeln!(text, "[-]backend:{} failed: {reason} ({ms}ms, informational)", probe.name),
        };
    }
    let _ = match readiness.limits.limiter().shared_status() {
        None => writeln!(text, "[+]rate-limits in process (informational)"),
        Some(Ok(())) => writeln!(text, "[+]rate-limits shared through Redis (informational)"),
        Some(Err(why)) => writeln!(text, "[-]rate-limits {why} (informational)"),
    };
    text.push_str(&readiness.reload.report());
    text.push_str(if ready { "readyz check passed\n" } else { "readyz check failed\n" });
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}
