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

/// `routes` is the route table as `<bff> routes` prints it.
pub fn router(readiness: Arc<Readiness>, metrics: Arc<Metrics>, routes: String) -> Router {
    let routes: Arc<str> = routes.into();
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
        .route("/routes", get(move || std::future::ready(routes.to_string())))
        .merge(health::routes(readiness))
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.encode())
}
