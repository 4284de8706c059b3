//! `[telemetry]`: where traces go and how logging behaves when its sink falls behind.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::config::{Problems, Validate};
use crate::inbound::client_addr::IpBlock;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object a line, for collectors (the default).
    Json,
    /// Human-readable lines, for a terminal (the devstack).
    Text,
}

/// When the queue of log lines is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogOverflow {
    Drop,
    Block,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// What logging does when the log sink falls behind and the queue of lines is full: `drop`
    /// the line (counted in `bff_log_lines_dropped_total` and summed up in a periodic line), so a
    /// hung sink never holds a request; or `block` until there is room, losing nothing.
    pub log_overflow: LogOverflow,
    /// `json` (the default) or `text`.
    pub log_format: LogFormat,
    /// Which lines are written, in `RUST_LOG`'s syntax (`info`, `warn,access=info`); `RUST_LOG`
    /// wins when set. Unset: our info lines and the access log, warnings from the libraries.
    pub log_level: Option<String>,
    /// An OTLP/gRPC collector (`http://127.0.0.1:4317`). Unset: no spans are made at all.
    pub otlp_endpoint: Option<Url>,
    /// Share of new traces recorded (0 to 1); a trusted caller's own decision is followed.
    pub sampling_ratio: f64,
    /// Client addresses (or blocks) whose `traceparent` and `tracestate` are continued.
    pub trust_traceparent_from: Vec<IpBlock>,
    /// Longest one export may take.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
    /// Spans waiting for export, at most; more are dropped.
    pub max_queued_spans: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_overflow: LogOverflow::Drop,
            log_format: LogFormat::Json,
            log_level: None,
            otlp_endpoint: None,
            sampling_ratio: 1.0,
            trust_traceparent_from: Vec::new(),
            export_timeout: Duration::from_secs(3),
            max_queued_spans: 2048,
        }
    }
}

impl Validate for TelemetryConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        if let Some(level) = &self.log_level {
            problems.check(
                path,
                "log_level",
                tracing_subscriber::EnvFilter::try_new(level).is_ok(),
                "not a filter in RUST_LOG's syntax (`info`, `warn,access=info`)",
            );
        }
        if let Some(url) = &self.otlp_endpoint {
            problems.check(
                path,
                "otlp_endpoint",
                url.scheme() == "http" && url.host().is_some(),
                "must be an http:// URL with a host (OTLP over TLS is not built in: put a collector beside the BFF)",
            );
        }
        problems.check(path, "sampling_ratio", (0.0..=1.0).contains(&self.sampling_ratio), "must be between 0 and 1");
        problems.check(
            path,
            "export_timeout",
            !self.export_timeout.is_zero() && self.export_timeout <= Duration::from_secs(60),
            "must be between 1ms and 60s",
        );
        problems.check(
            path,
            "max_queued_spans",
            (1..=1_000_000).contains(&self.max_queued_spans),
            "must be between 1 and 1000000",
        );
    }
}
