//! Authentication on API routes (probes stay open): the request's credentials verified into an
//! [`Identity`], from headers alone, so a request without valid credentials is refused before its
//! body is read. A client address past its failed attempts is refused before any verification.
//! An authenticated response gets `Cache-Control: no-store` unless the handler set a policy.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bff_upstream::Identity;
use http::HeaderValue;

use super::client_addr::ClientAddr;
use super::stage::{Downstream, Next, Stage};
use crate::{Authenticator, RequestLog};

/// Picks out the requests a handler authenticates itself (see
/// [`InboundStack::authenticates_itself`](super::InboundStack::authenticates_itself)).
pub type SelfAuthenticating = Arc<dyn Fn(&Request) -> bool + Send + Sync>;

/// Marks a request that skipped authentication because its handler authenticates it (a WebSocket
/// upgrade, the GraphiQL page): a stage after authentication finds this instead of an identity.
#[derive(Debug, Clone, Copy)]
pub struct SelfAuthenticated;

#[derive(Clone)]
pub struct Authenticate {
    pub authenticator: Arc<Authenticator>,
    pub skip: Option<SelfAuthenticating>,
}

impl Stage for Authenticate {
    async fn run<S: Downstream>(&self, mut request: Request, next: Next<S>) -> Response {
        if self.skip.as_ref().is_some_and(|skip| skip(&request)) {
            request.extensions_mut().insert(SelfAuthenticated);
            return next.run(request).await;
        }
        let client = request.extensions().get::<ClientAddr>().map(|addr| addr.0);
        let started = std::time::Instant::now();
        let verified = self.authenticator.authenticate(request.headers(), client);
        let verified = tracing::Instrument::instrument(verified, crate::telemetry::traces::phase("authenticate")).await;
        if let Some(log) = request.extensions().get::<Arc<RequestLog>>() {
            log.record_phase("auth", started.elapsed());
        }
        match verified {
            Ok(identity) => {
                if let Some(log) = request.extensions().get::<Arc<RequestLog>>() {
                    let _ = log.principal.set(identity.to_string());
                }
                request.extensions_mut().insert(Arc::<Identity>::new(identity));
                let mut response = next.run(request).await;
                // One caller's data must not land in a shared cache, unless a handler said how
                // it may be cached.
                response
                    .headers_mut()
                    .entry(http::header::CACHE_CONTROL)
                    .or_insert(HeaderValue::from_static("no-store"));
                response
            }
            Err(error) => error.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ApiKeyEntry, ApiKeys};
    use crate::error::{ErrorCode, PendingError};
    use crate::inbound::stage::testing::{get, run};

    fn stage() -> Authenticate {
        let entry = ApiKeyEntry {
            client_id: "acme".into(),
            sha256: ApiKeys::hash("key-1"),
            scopes: vec!["catalog:read".into()],
            revoked: false,
        };
        let keys = ApiKeys::new(&[entry]).unwrap();
        Authenticate {
            authenticator: Arc::new(Authenticator::new(None, Some(keys), crate::limits::Limits::unlimited())),
            skip: None,
        }
    }

    async fn who(request: Request) -> Response {
        let identity = request.extensions().get::<Arc<Identity>>().map(|i| i.to_string()).unwrap_or_default();
        identity.into_response()
    }

    #[tokio::test]
    async fn a_valid_key_reaches_the_handler_as_an_identity_with_no_store() {
        let response = run(stage(), who, get(&[("x-api-key", "key-1")])).await;
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"client:acme");
    }

    #[tokio::test]
    async fn a_refusal_never_reaches_the_handler() {
        let handler = |_: Request| async { panic!("the handler ran") };
        for headers in
            [vec![], vec![("x-api-key", "wrong")], vec![("x-api-key", "key-1"), ("authorization", "Bearer x")]]
        {
            let response = run(stage(), handler, get(&headers)).await;
            assert_eq!(response.status(), 401);
            let code = response.extensions().get::<PendingError>().map(|e| e.0.code());
            assert_eq!(code, Some(ErrorCode::Unauthenticated));
        }
    }
}
