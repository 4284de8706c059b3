//! The admin router, served on its own listener (`[server] admin_listen`): `/metrics` for the
//! scraper, and `/healthz` and `/readyz` (with `?verbose`) for the orchestrator, off the public
//! port so neither is reachable from the internet by accident.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::Metrics;
use crate::health::{self, Readiness};

/// The media type of what `/metrics` writes (OpenMetrics text, which Prometheus reads).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn router(readiness: Arc<Readiness>, metrics: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(metrics).merge(health::routes(readiness))
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.encode())
}
