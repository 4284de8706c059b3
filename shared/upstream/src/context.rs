use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::UpstreamError;
use crate::trace::{BreakerState, CacheStatus, CallDecisions};

/// Time kept back from the request's deadline for turning an upstream timeout into a response.
const DEADLINE_MARGIN: Duration = Duration::from_millis(25);

/// Names of the trusted headers (and gRPC metadata keys) the gateway sets on every backend call.
/// Backends may trust them because the gateway strips any client-sent copy at the edge.
pub mod headers {
    pub const REQUEST_ID: &str = "x-request-id";
    pub const USER_ID: &str = "x-user-id";
    pub const USER_SCOPES: &str = "x-user-scopes";
    pub const CLIENT_ID: &str = "x-client-id";
    /// Every header that carries identity to a backend.
    pub const IDENTITY: [&str; 3] = [USER_ID, USER_SCOPES, CLIENT_ID];
    /// The time a REST backend has left for this call, in whole milliseconds, like gRPC's
    /// `grpc-timeout`: relative, so clocks need not agree. A backend should stop work past it;
    /// nobody waits for the answer any longer.
    pub const REQUEST_TIMEOUT_MS: &str = "x-request-timeout-ms";
}

/// How a caller proved who it is: each kind owns data in its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An end user's token (mobile, web).
    User,
    /// A partner's API key.
    ApiKey,
    /// A partner's OAuth2 client-credentials token.
    OAuthClient,
}

/// Who a request acts for, as verified by the gateway: the one identity type of the platform.
/// The inbound side makes it once per request from the credential; every backend call shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The end user a token was issued for; `None` for machine clients (partners).
    pub user_id: Option<String>,
    /// The client application or partner that made the call.
    pub client_id: String,
    pub credential: Credential,
    pub scopes: Vec<String>,
    /// When the credential stops being valid (a token's `exp`); `None` for API keys. Long-lived
    /// connections (subscriptions) end then.
    pub expires_at: Option<std::time::SystemTime>,
}

impl Identity {
    /// The owner of the data this caller creates and reads, as backends store it: `user:{id}`,
    /// `key:{client}` or `client:{client}`. The prefixes keep the namespaces apart, so a user
    /// whose id is `key:acme` (or `client:acme`) can never own what the partner `acme` owns.
    /// `None` only for a user credential without a user, which the gateway never makes.
    pub fn owner(&self) -> Option<String> {
        Some(match (self.credential, &self.user_id) {
            (Credential::User, Some(user)) => format!("user:{user}"),
            (Credential::User, None) => return None,
            (Credential::ApiKey, _) => format!("key:{}", self.client_id),
            (Credential::OAuthClient, _) => format!("client:{}", self.client_id),
        })
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The trusted identity headers to send with a backend call.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        let user = self.user_id.iter().map(|id| (headers::USER_ID, id.clone()));
        let scopes = (!self.scopes.is_empty()).then(|| (headers::USER_SCOPES, self.scopes.join(" ")));
        user.chain(scopes).chain(std::iter::once((headers::CLIENT_ID, self.client_id.clone())))
    }
}

/// What logs print: the kind of caller and its client (a configured, bounded set), never the
/// user's id, which is personal data and unbounded.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user_id {
            Some(_) => write!(f, "user@{}", self.client_id),
            None => write!(f, "client:{}", self.client_id),
        }
    }
}

/// Writes the trace context of the current span (W3C `traceparent`, `tracestate`) as headers; set
/// once per process by whoever installs tracing (the gateway's telemetry), so this crate needs no
/// tracing backend of its own.
pub type TraceHeaders = fn() -> Vec<(&'static str, String)>;

static TRACE_HEADERS: std::sync::OnceLock<TraceHeaders> = std::sync::OnceLock::new();

/// Every backend call from now on carries the trace context `headers` gives (REST headers, gRPC
/// metadata), and gets a span of its own. The first call wins.
pub fn propagate_trace_context(headers: TraceHeaders) {
    let _ = TRACE_HEADERS.set(headers);
}

/// Whether traces are on: without them, calls make no spans (a span costs even unexported).
pub(crate) fn tracing_on() -> bool {
    TRACE_HEADERS.get().is_some()
}

/// The per-request context the inbound side hands to every outbound call. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CallContext {
    request_id: Arc<str>,
    deadline: Option<Instant>,
    identity: Option<Arc<Identity>>,
    recorder: CallRecorder,
}

impl CallContext {
    pub fn new(request_id: impl Into<Arc<str>>) -> Self {
        Self { request_id: request_id.into(), deadline: None, identity: None, recorder: CallRecorder::default() }
    }

    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    pub fn with_identity(mut self, identity: Arc<Identity>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Shares a recorder with the inbound request, so its access log lists these calls.
    pub fn with_recorder(mut self, recorder: CallRecorder) -> Self {
        self.recorder = recorder;
        self
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_deref()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The time one call to `service` may take: its own timeout, cut short by the request's
    /// deadline less a margin, so that a slow backend is reported as such (partial data with
    /// `UPSTREAM_TIMEOUT`) before the whole request times out. Fails without calling when that
    /// time is already spent.
    pub(crate) fn budget(&self, service: &'static str, timeout: Duration) -> Result<Duration, UpstreamError> {
        let Some(deadline) = self.deadline else { return Ok(timeout) };
        let remaining = deadline.saturating_duration_since(Instant::now()).saturating_sub(DEADLINE_MARGIN);
        if remaining.is_zero() {
            return Err(UpstreamError::Timeout { service, after: Duration::ZERO });
        }
        Ok(remaining.min(timeout))
    }

    /// Every header a backend call carries: the request id, and the [`answer_headers`]. The
    /// transports send exactly these.
    ///
    /// [`answer_headers`]: CallContext::answer_headers
    pub(crate) fn outbound_headers(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        // The trace context of the call's own span: the transports run inside it.
        let trace = TRACE_HEADERS.get().map(|headers| headers()).unwrap_or_default();
        std::iter::once((headers::REQUEST_ID, self.request_id.to_string())).chain(self.answer_headers()).chain(trace)
    }

    /// The forwarded headers that can change a backend's answer: the verified identity. The
    /// cache and coalescing keys are made from these same pairs, so a header added here to go on
    /// the wire is in the keys too, and two callers who differ in any of them never share an
    /// answer unless the call is declared public.
    pub(crate) fn answer_headers(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        self.identity.iter().flat_map(|identity| identity.header_pairs())
    }

    /// The same request's identity and id, with no deadline and a recorder of its own: for work
    /// done on its behalf that outlives it (a cache refresh, a mirrored call).
    pub(crate) fn detached(&self) -> Self {
        Self {
            request_id: Arc::clone(&self.request_id),
            deadline: None,
            identity: self.identity.clone(),
            recorder: CallRecorder::default(),
        }
    }

    pub(crate) fn record(&self, call: UpstreamCall) {
        self.recorder.push(call);
    }
}

/// One backend call as the access log reports it: the operation is a template, never a raw id.
#[derive(Debug, Clone)]
pub struct UpstreamCall {
    pub service: &'static str,
    pub operation: &'static str,
    /// When the call began: with `latency`, the interval the request spent waiting on it.
    pub started: Instant,
    pub latency: Duration,
    pub outcome: CallOutcome,
    /// What the cache, retry, hedging, balancing and breaker layers decided for it.
    pub decisions: CallDecisions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    /// The call failed; the error kind is the stable code of [`UpstreamError::kind`].
    Failed(&'static str),
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed(kind) => kind,
        }
    }
}

impl fmt::Display for UpstreamCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match self.outcome {
            CallOutcome::Ok => "ok",
            CallOutcome::Failed(kind) => kind,
        };
        write!(f, "{} {} {} {}ms", self.service, self.operation, outcome, self.latency.as_millis())?;
        let decisions = &self.decisions;
        if decisions.cache != CacheStatus::Bypass {
            write!(f, " cache={}", decisions.cache.as_str())?;
        }
        if decisions.attempts > 1 {
            write!(f, " attempts={}", decisions.attempts)?;
        }
        if decisions.hedges > 0 {
            write!(f, " hedges={}", decisions.hedges)?;
        }
        if let Some(instance) = &decisions.instance {
            write!(f, " instance={instance}")?;
        }
        if decisions.breaker != BreakerState::Closed {
            write!(f, " breaker={}", decisions.breaker.as_str())?;
        }
        Ok(())
    }
}

/// Collects the backend calls made on behalf of one inbound request. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct CallRecorder(Arc<Mutex<Vec<UpstreamCall>>>);

/// Most calls one recorder keeps: a long-lived connection (a subscription) must not grow it
/// without bound; an ordinary request makes a handful.
const MAX_RECORDED_CALLS: usize = 256;

impl CallRecorder {
    /// Adds a call (the record layer does, for every call of the request).
    pub fn push(&self, call: UpstreamCall) {
        // A poisoned lock only means another recording panicked; the list itself is still sound.
        let mut calls = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        if calls.len() < MAX_RECORDED_CALLS {
            calls.push(call);
        }
    }

    pub fn calls(&self) -> Vec<UpstreamCall> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_log_shows_every_decision_that_was_not_the_default() {
        let mut call = UpstreamCall {
            service: "catalog",
            operation: "GET /products/{id}",
            started: Instant::now(),
            latency: Duration::from_millis(3),
            outcome: CallOutcome::Ok,
            decisions: crate::CallTrace::default().decisions(),
        };
        assert_eq!(call.to_string(), "catalog GET /products/{id} ok 3ms");
        call.outcome = CallOutcome::Failed("circuit_open");
        call.decisions = CallDecisions {
            cache: CacheStatus::Stale,
            attempts: 2,
            hedges: 1,
            instance: Some("127.0.0.1:5012".into()),
            breaker: BreakerState::HalfOpen,
        };
        assert_eq!(
            call.to_string(),
            "catalog GET /products/{id} circuit_open 3ms cache=stale attempts=2 hedges=1 instance=127.0.0.1:5012 breaker=half_open"
        );
    }
}
