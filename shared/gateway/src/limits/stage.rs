//! The inbound stage that enforces request limits, after authentication and after a BFF's own
//! stages there: the caller, the client address and the route template are known, and no body
//! has been read. A refused request gets 429 `RATE_LIMITED` with `Retry-After`; every answer of a
//! limited route carries `RateLimit-Policy` and `RateLimit`. The decision goes in the access log.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use bff_upstream::Identity;

use super::{Limits, Policy};
use crate::RequestLog;
use crate::inbound::client_addr::ClientAddr;
use crate::inbound::stage::{Downstream, Next, Stage};

/// Limits a BFF's own stage after authentication asks this stage to check as well, keyed by the
/// caller (a partner plan's quota), so that every limit of a request is one decision.
#[derive(Debug, Clone, Default)]
pub struct OwnLimits(pub Vec<Arc<Policy>>);

#[derive(Clone)]
pub struct RateLimit(pub Arc<Limits>);

impl Stage for RateLimit {
    async fn run<S: Downstream>(&self, request: Request, next: Next<S>) -> Response {
        let extensions = request.extensions();
        let own = extensions.get::<OwnLimits>().map(|own| own.0.clone()).unwrap_or_default();
        let keys = self.0.request_keys(
            extensions.get::<Arc<Identity>>().map(|identity| &**identity),
            extensions.get::<ClientAddr>().map(|addr| addr.0),
            !own.is_empty(),
        );
        let template = extensions.get::<MatchedPath>().cloned();
        let checks = self.0.request_checks(request.method(), template.as_ref().map(MatchedPath::as_str), &keys, &own);
        if checks.is_empty() {
            return next.run(request).await;
        }
        let decision = self.0.limiter.decide(&checks, true).await;
        drop(checks);
        if let Some(log) = request.extensions().get::<Arc<RequestLog>>() {
            log.record_limit(&decision);
        }
        let mut response = match decision.refusal() {
            None => next.run(request).await,
            Some(refusal) => refusal.into_response(),
        };
        decision.write_headers(response.headers_mut());
        response
    }
}
