//! Structured JSON logs on stdout, and how a request's time divides between the gateway and its
//! backends ([`TimeSplit`]). `RUST_LOG` filters as usual; the default keeps access lines and our
//! own info events.
//!
//! Lines are written by a thread of their own ([`log_writer`]): a request formats its access line
//! and queues it, and never waits on a write to stdout.

pub mod admin;
pub mod config;
mod gateway_time;
mod log_writer;
pub mod metrics;
pub mod route_table;
pub mod traces;

pub use gateway_time::TimeSplit;
pub use metrics::Metrics;

pub use config::{LogFormat, LogOverflow, TelemetryConfig};
pub use log_writer::dropped_lines;

use tracing_subscriber::EnvFilter;

const DEFAULT_FILTER: &str = "info,h2=warn,hyper=warn,tower=warn";

/// Installs the global subscriber; a second call (tests, the devstack) is a no-op.
pub fn init() {
    let _ = init_with_tracing("bff", &TelemetryConfig::default());
}

/// [`init`], with traces exported as `config` says (see [`traces`]) under the service name
/// `service`. Must run inside the tokio runtime the BFF serves on. Keep the guard while serving:
/// dropping it flushes what is queued.
pub fn init_with_tracing(service: &str, config: &TelemetryConfig) -> Result<Option<traces::TracesGuard>, String> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    log_writer::set_overflow(config.log_overflow);
    let configured = config.log_level.as_deref().unwrap_or(DEFAULT_FILTER);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(configured));
    // Behind a reload handle, so `[telemetry] log_level` changes with a config reload.
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let logs = match config.log_format {
        LogFormat::Json => json_lines(log_writer::Queued).with_filter(filter).boxed(),
        // Text lines (for people at a terminal) name the spans an event happened in.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(log_writer::Queued)
            .with_filter(filter)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs);
    let _ = LOG_FILTER.set(handle);
    match traces::layer(service, config)? {
        Some((spans, guard)) => {
            // The exporter sees only the request and call spans, never log events.
            let ours = tracing_subscriber::filter::filter_fn(|metadata| {
                metadata.is_span() && matches!(metadata.name(), "request" | "phase" | "upstream")
            });
            // Spans are made only once their exporter is the one installed: a process that had
            // a subscriber already would pay for spans nobody exports.
            registry
                .with(spans.with_filter(ours))
                .try_init()
                .map_err(|_| "telemetry: a log and trace subscriber is installed already".to_owned())?;
            traces::activate(config);
            Ok(Some(guard))
        }
        None => {
            let _ = registry.try_init();
            Ok(None)
        }
    }
}

/// The JSON log layer, writing to `writer`, for the level filter to wrap.
///
/// A JSON line carries its event's fields and never a span's, so the formatter is shown events
/// only: a layer that sees spans formats every span's fields into a string at creation and at
/// each `record`, which was a twentieth of a traced request's CPU, all of it thrown away. The
/// level filter around it still sees spans, so a rule that names one (`[upstream]=debug`)
/// still applies to the events inside it.
fn json_lines<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer)
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| metadata.is_event()))
}

/// The installed log filter, for [`set_log_level`].
static LOG_FILTER: std::sync::OnceLock<tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>> =
    std::sync::OnceLock::new();

/// Applies `[telemetry] log_level` (`None`: the default) to the running process, as a config
/// reload does. `RUST_LOG`, when set, still wins: nothing changes and `false` comes back.
pub fn set_log_level(level: Option<&str>) -> Result<bool, String> {
    if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
        return Ok(false);
    }
    let filter = EnvFilter::try_new(level.unwrap_or(DEFAULT_FILTER)).map_err(|e| e.to_string())?;
    let handle = LOG_FILTER.get().ok_or("telemetry: no log subscriber of ours is installed")?;
    handle.reload(filter).map_err(|e| e.to_string())?;
    Ok(true)
}

/// Waits (at most a second) until every line logged so far is written: before the process exits.
pub fn flush() {
    log_writer::flush();
}

/// What tests of log output share.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex, PoisonError};

    /// Log lines written, shared by a subscriber's writer (a clone) and the test that reads them.
    #[derive(Clone, Default)]
    pub(crate) struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Lines {
        /// Everything written so far.
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
        }
    }

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::testing::Lines;

    #[test]
    fn a_rule_naming_a_span_still_reaches_the_json_lines_of_its_events() {
        let lines = Lines::default();
        let written = lines.clone();
        let filter = tracing_subscriber::EnvFilter::new("warn,[upstream]=debug");
        let subscriber =
            tracing_subscriber::registry().with(super::json_lines(move || written.clone()).with_filter(filter));
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(marker = "outside", "not shown: debug outside the span");
            // The name of the spans of backend calls.
            let span = tracing::info_span!("upstream", backend = "loyalty");
            span.in_scope(|| tracing::debug!(marker = "inside", "shown: the rule names the span"));
        });
        let text = lines.text();
        assert!(text.contains("\"marker\":\"inside\""), "{text}");
        assert!(!text.contains("outside"), "{text}");
        // The line carries the event's fields, never the span's.
        assert!(!text.contains("loyalty"), "{text}");
    }
}
