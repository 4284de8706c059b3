//! Liveness (`/healthz`: the process serves) and readiness (`/readyz`: the backends this BFF
//! needs answer, checked in parallel, each within its own timeout).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use bff_upstream::Probe;
use futures::future::{BoxFuture, join_all};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

/// Longest a single readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one round of checks answers every `/readyz`: the endpoint is public, and must not let
/// a caller fan requests out to every backend at will.
const REPORT_TTL: Duration = Duration::from_secs(1);

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// One dependency the BFF needs to serve.
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
}

struct Readiness {
    checks: Vec<ReadinessCheck>,
    /// The last report and when it was made; the lock also makes concurrent probes share one round.
    last: Mutex<Option<(Instant, StatusCode, Value)>>,
}

/// `/healthz` and `/readyz`, outside authentication.
pub fn routes(checks: Vec<ReadinessCheck>) -> Router {
    let readiness = Arc::new(Readiness { checks, last: Mutex::new(None) });
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(readiness)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(readiness): State<Arc<Readiness>>) -> impl IntoResponse {
    let mut last = readiness.last.lock().await;
    if let Some((at, status, report)) = &*last
        && at.elapsed() < REPORT_TTL
    {
        return (*status, Json(report.clone()));
    }
    let (status, report) = check_all(&readiness.checks).await;
    *last = Some((Instant::now(), status, report.clone()));
    (status, Json(report))
}

/// Runs every check in parallel. Each failure is reported by its short reason only: the probe
/// logs the detail, which may name internal hosts.
async fn check_all(checks: &[ReadinessCheck]) -> (StatusCode, Value) {
    let results = join_all(checks.iter().map(|c| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (c.check)()).await {
            Ok(result) => result,
            Err(_) => Err("timeout".to_owned()),
        };
        (c.name, outcome)
    }))
    .await;
    let ready = results.iter().all(|(_, outcome)| outcome.is_ok());
    let details: Map<String, Value> = results
        .into_iter()
        .map(|(name, outcome)| (name.to_owned(), Value::from(outcome.err().unwrap_or_else(|| "ok".to_owned()))))
        .collect();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, json!({ "status": if ready { "ready" } else { "not_ready" }, "checks": details }))
}
