use std::time::Duration;

/// What a client is told when a backend that does not expose its error text rejects a call.
pub const GENERIC_REJECTION: &str = "the request was rejected";

/// Why a backend call failed, and which backend it was.
///
/// The kinds are the ones retry and breaker decisions need: whether the request ever left
/// ([`UpstreamError::Unavailable`] did not, so it is always safe to try again), whether the backend
/// asked us to back off ([`UpstreamError::Overloaded`], with its `Retry-After`), and whether it
/// refused the input (a 4xx is the caller's fault: never retried, never held against the backend).
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{service}` timed out after {}ms", after.as_millis())]
    Timeout { service: &'static str, after: Duration },
    /// Refused or reset before the request was sent: nothing reached the backend.
    #[error("upstream `{service}` is unavailable: {reason}")]
    Unavailable { service: &'static str, reason: String },
    /// 429 or 503 (gRPC `RESOURCE_EXHAUSTED`): the backend asked for less traffic.
    #[error("upstream `{service}` is overloaded")]
    Overloaded { service: &'static str, retry_after: Option<Duration> },
    /// Any other server-side failure (5xx, a connection lost mid-call, an unexpected gRPC status).
    #[error("upstream `{service}` failed: {detail}")]
    Failed { service: &'static str, detail: String },
    #[error("upstream `{service}` has no such resource")]
    NotFound { service: &'static str },
    /// The backend refused the input as invalid; `message` is safe to show the client.
    #[error("upstream `{service}` rejected the request: {message}")]
    Rejected { service: &'static str, message: String },
    #[error("upstream `{service}` sent a response we could not read: {reason}")]
    BadBody { service: &'static str, reason: String },
    /// The call could not be expressed (an id that cannot be a path segment, say); nothing was sent.
    #[error("invalid argument for upstream `{service}`: {reason}")]
    InvalidArgument { service: &'static str, reason: String },
    #[error("upstream `{service}` is misconfigured: {reason}")]
    Config { service: &'static str, reason: String },
    /// Every instance's circuit breaker is open: failed at once, and nothing was sent.
    #[error("upstream `{service}` is unavailable: its circuit breaker is open")]
    CircuitOpen { service: &'static str },
    /// The backend already has as many calls in flight as its bulkhead allows: failed at once,
    /// so one slow backend cannot hold every slot of the BFF.
    #[error("upstream `{service}` is overloaded: {limit} calls already in flight")]
    BulkheadFull { service: &'static str, limit: usize },
}

impl UpstreamError {
    pub fn service(&self) -> &'static str {
        match self {
            Self::Timeout { service, .. }
            | Self::Unavailable { service, .. }
            | Self::Overloaded { service, .. }
            | Self::Failed { service, .. }
            | Self::NotFound { service }
            | Self::Rejected { service, .. }
            | Self::BadBody { service, .. }
            | Self::InvalidArgument { service, .. }
            | Self::Config { service, .. }
            | Self::CircuitOpen { service }
            | Self::BulkheadFull { service, .. } => service,
        }
    }

    /// A short stable name of the failure kind, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::Overloaded { .. } => "overloaded",
            Self::Failed { .. } => "failed",
            Self::NotFound { .. } => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::BadBody { .. } => "bad_body",
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::Config { .. } => "config",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::BulkheadFull { .. } => "bulkhead_full",
        }
    }

    /// May the same call be sent again? A call that never left always may; one that may have
    /// been processed only when it is idempotent; a backend that asked to back off, after its
    /// `Retry-After`; a refusal of the input never.
    pub fn is_retryable(&self, idempotent: bool) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::Timeout { .. } | Self::Failed { .. } | Self::Overloaded { .. } => idempotent,
            _ => false,
        }
    }

    /// Did the backend fail to give an answer at all (unhealthy, not asked because its breaker or
    /// bulkhead refused, or an answer that could not be read), rather than refuse the request?
    /// What an optional branch may be left out for, and a stale answer may stand in for.
    pub fn backend_did_not_answer(&self) -> bool {
        self.is_backend_failure()
            || matches!(self, Self::CircuitOpen { .. } | Self::BulkheadFull { .. } | Self::BadBody { .. })
    }

    /// Does this failure say the backend is unhealthy (as a circuit breaker counts), rather than
    /// that the caller asked for something wrong?
    pub fn is_backend_failure(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Unavailable { .. } | Self::Overloaded { .. } | Self::Failed { .. })
    }

    /// How long the backend asked us to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Overloaded { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_and_breaker_decisions_follow_the_kind() {
        let service = "test";
        let never_sent = UpstreamError::Unavailable { service, reason: "refused".into() };
        assert!(never_sent.is_retryable(false) && never_sent.is_backend_failure());
        let timeout = UpstreamError::Timeout { service, after: Duration::from_millis(5) };
        assert!(timeout.is_retryable(true) && !timeout.is_retryable(false));
        let overloaded = UpstreamError::Overloaded { service, retry_after: Some(Duration::from_secs(2)) };
        assert_eq!(overloaded.retry_after(), Some(Duration::from_secs(2)));
        let rejected = UpstreamError::Rejected { service, message: "no".into() };
        assert!(!rejected.is_retryable(true) && !rejected.is_backend_failure());
        assert!(!UpstreamError::NotFound { service }.is_backend_failure());
    }
}
