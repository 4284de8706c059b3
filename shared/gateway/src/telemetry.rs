//! Structured JSON logs on stdout. `RUST_LOG` filters as usual; the default keeps access lines
//! and our own info events.

use tracing_subscriber::EnvFilter;

const DEFAULT_FILTER: &str = "info,h2=warn,hyper=warn,tower=warn";

/// Installs the global subscriber; a second call (tests, the devstack) is a no-op.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}
