//! Liveness (`/healthz`: the process serves) and readiness (`/readyz`: the backends this BFF
//! needs answer, checked in parallel, each within its own timeout).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use bff_upstream::Probe;
use futures::future::{BoxFuture, join_all};
use serde_json::{Map, Value, json};

/// Longest a single readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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

/// `/healthz` and `/readyz`, outside authentication.
pub fn routes(checks: Vec<ReadinessCheck>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(Arc::new(checks))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(checks): State<Arc<Vec<ReadinessCheck>>>) -> impl IntoResponse {
    let results = join_all(checks.iter().map(|c| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (c.check)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {}ms", CHECK_TIMEOUT.as_millis())),
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
    (status, Json(json!({ "status": if ready { "ready" } else { "not_ready" }, "checks": details })))
}
