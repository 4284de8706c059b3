use std::time::Duration;

/// Why a backend call failed, and which backend it was.
///
/// The kinds are deliberately few: the inbound side maps each to one stable client-facing code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{service}` timed out after {}ms", after.as_millis())]
    Timeout { service: &'static str, after: Duration },
    #[error("upstream `{service}` is unavailable: {reason}")]
    Unavailable { service: &'static str, reason: String },
    #[error("upstream `{service}` has no such resource")]
    NotFound { service: &'static str },
    /// The backend refused the input as invalid; `message` is safe to show the client.
    #[error("upstream `{service}` rejected the request: {message}")]
    Rejected { service: &'static str, message: String },
    #[error("upstream `{service}` failed: {detail}")]
    Failed { service: &'static str, detail: String },
    #[error("upstream `{service}` sent a response we could not read: {reason}")]
    BadBody { service: &'static str, reason: String },
    /// The call could not be expressed (an id that cannot be a path segment, say); nothing was sent.
    #[error("invalid argument for upstream `{service}`: {reason}")]
    InvalidArgument { service: &'static str, reason: String },
    #[error("upstream `{service}` is misconfigured: {reason}")]
    Config { service: &'static str, reason: String },
}

impl UpstreamError {
    pub fn service(&self) -> &'static str {
        match self {
            Self::Timeout { service, .. }
            | Self::Unavailable { service, .. }
            | Self::NotFound { service }
            | Self::Rejected { service, .. }
            | Self::Failed { service, .. }
            | Self::BadBody { service, .. }
            | Self::InvalidArgument { service, .. }
            | Self::Config { service, .. } => service,
        }
    }

    /// A short stable name of the failure kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::NotFound { .. } => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::Failed { .. } => "failed",
            Self::BadBody { .. } => "bad_body",
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::Config { .. } => "config",
        }
    }
}
