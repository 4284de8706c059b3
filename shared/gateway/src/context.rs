use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use bff_upstream::{CallContext, CallRecorder, Identity};
use http::request::Parts;

use crate::GatewayError;
use crate::limits::{Decision, Policy, Source};

/// The request's id: the client's `X-Request-Id` when well formed, else one we made.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// When the whole request must be done; upstream calls are cut short to fit inside it.
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline(pub Instant);

/// What the access log line reports beyond method, path and status; filled in as the request
/// passes through the stack.
#[derive(Debug, Default)]
pub struct RequestLog {
    /// The route template that matched (`/v1/orders/{id}`), never the raw path.
    pub route: OnceLock<String>,
    pub principal: OnceLock<String>,
    pub operation: OnceLock<String>,
    /// The GraphQL document's SHA-256, its first 8 bytes in hex.
    pub document: OnceLock<String>,
    /// The GraphQL cost of what the request ran (summed over a batch), as the limits computed it.
    pub cost: AtomicU64,
    /// The limit closest to refusing the request (or the one that did), with what was left of
    /// it, and where it was decided.
    pub limit: Mutex<Option<LimitRecord>>,
    pub upstream: CallRecorder,
    /// Time spent in each phase (`auth`, `parse`, `execute`), summed over a batch, for
    /// `Server-Timing`.
    pub phases: Mutex<Vec<(&'static str, Duration)>>,
    /// How the GraphQL operations it ran were validated, for the metrics.
    pub validations: Validations,
}

/// The GraphQL operations one request validated, by how: every rule (`full`), or only what a
/// document without variables that passed every rule before can still fail (`fast`).
#[derive(Debug, Default)]
pub struct Validations {
    full: AtomicU32,
    fast: AtomicU32,
}

impl Validations {
    pub fn record(&self, fast: bool) {
        let counter = if fast { &self.fast } else { &self.full };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(full, fast)`.
    pub fn counts(&self) -> (u32, u32) {
        (self.full.load(Ordering::Relaxed), self.fast.load(Ordering::Relaxed))
    }
}

/// Phases one request records at most (each is summed into its entry).
const MAX_PHASES: usize = 8;

/// The access log's account of a limit decision.
#[derive(Debug, Clone)]
pub struct LimitRecord {
    pub policy: Arc<Policy>,
    pub remaining: u64,
    pub admitted: bool,
    pub source: Source,
}

impl RequestLog {
    /// Adds `spent` to phase `name`.
    pub fn record_phase(&self, name: &'static str, spent: Duration) {
        let mut phases = self.phases.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, total)) = phases.iter_mut().find(|(phase, _)| *phase == name) {
            *total += spent;
        } else if phases.len() < MAX_PHASES {
            phases.push((name, spent));
        }
    }

    /// Notes `decision` if it is the stricter of what the request met so far (a GraphQL request
    /// meets two: its request limits, then its cost).
    pub fn record_limit(&self, decision: &Decision) {
        let Some((policy, outcome)) = decision.deciding() else { return };
        let mut limit = self.limit.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stricter = match &*limit {
            None => true,
            Some(seen) => seen.admitted && (!decision.admitted || outcome.remaining < seen.remaining),
        };
        if stricter {
            *limit = Some(LimitRecord {
                policy: policy.clone(),
                remaining: outcome.remaining,
                admitted: decision.admitted,
                source: decision.source,
            });
        }
    }
}

/// Everything a handler or resolver needs to call backends on behalf of this request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: Arc<str>,
    pub log: Arc<RequestLog>,
    upstream: CallContext,
}

impl RequestContext {
    /// The context handed to every backend call.
    pub fn upstream(&self) -> &CallContext {
        &self.upstream
    }

    /// The verified caller; routes behind authentication always have one.
    pub fn principal(&self) -> Result<&Identity, GatewayError> {
        self.upstream.identity().ok_or_else(|| GatewayError::Unauthenticated("authentication required".into()))
    }

    /// The end user, for operations that only make sense for one.
    pub fn user_id(&self) -> Result<&str, GatewayError> {
        self.principal()?
            .user_id
            .as_deref()
            .ok_or_else(|| GatewayError::Forbidden("this operation needs a user token".into()))
    }

    /// The owner of the caller's data, as backends store it (see [`Identity::owner`]).
    pub fn owner(&self) -> Result<String, GatewayError> {
        self.principal()?.owner().ok_or_else(|| GatewayError::Forbidden("this operation needs a user token".into()))
    }

    pub fn require_scope(&self, scope: &str) -> Result<&Identity, GatewayError> {
        let principal = self.principal()?;
        if principal.has_scope(scope) {
            Ok(principal)
        } else {
            Err(GatewayError::Forbidden(format!("requires scope `{scope}`")))
        }
    }

    /// The context of a long-lived connection (a subscription socket): its id, the identity it
    /// authenticated as, and no deadline (each stream lives as long as its subscriber).
    pub fn for_connection(request_id: Arc<str>, identity: Arc<Identity>) -> Self {
        let log = Arc::new(RequestLog::default());
        let upstream = CallContext::new(request_id.clone()).with_recorder(log.upstream.clone()).with_identity(identity);
        Self { request_id, log, upstream }
    }

    /// The context of a request from its extensions, for middleware that runs before extractors.
    pub fn from_extensions(extensions: &http::Extensions) -> Result<Self, GatewayError> {
        let missing =
            |what: &str| GatewayError::Internal(format!("{what} missing: is the middleware stack installed?"));
        let request_id = extensions.get::<RequestId>().ok_or_else(|| missing("request id"))?.0.clone();
        let log = extensions.get::<Arc<RequestLog>>().cloned().unwrap_or_default();
        let mut upstream = CallContext::new(request_id.clone()).with_recorder(log.upstream.clone());
        if let Some(RequestDeadline(deadline)) = extensions.get::<RequestDeadline>() {
            upstream = upstream.with_deadline(*deadline);
        }
        if let Some(identity) = extensions.get::<Arc<Identity>>() {
            upstream = upstream.with_identity(identity.clone());
        }
        Ok(Self { request_id, log, upstream })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_extensions(&parts.extensions)
    }
}
