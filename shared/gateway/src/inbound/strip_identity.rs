//! Drops any identity header the client sent (`x-user-id`, `x-user-scopes`, `x-client-id`): only
//! the gateway sets those, from verified credentials, so a backend can trust them.

use axum::extract::Request;
use axum::response::Response;

use super::stage::{Downstream, Next, Stage};

#[derive(Debug, Clone, Copy)]
pub struct StripIdentityHeaders;

impl Stage for StripIdentityHeaders {
    async fn run<S: Downstream>(&self, mut request: Request, next: Next<S>) -> Response {
        for name in bff_upstream::headers::IDENTITY {
            if request.headers_mut().remove(name).is_some() {
                tracing::debug!(header = name, "dropped a client-sent identity header");
            }
        }
        next.run(request).await
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;
    use crate::inbound::stage::testing::{get, run};

    #[tokio::test]
    async fn no_client_sent_identity_header_reaches_the_handler() {
        let sent = [("x-user-id", "admin"), ("x-user-scopes", "admin"), ("x-client-id", "root"), ("x-other", "kept")];
        let response = run(
            StripIdentityHeaders,
            |request: Request| async move {
                let names: Vec<&str> = request.headers().keys().map(|n| n.as_str()).collect();
                names.join(",").into_response()
            },
            get(&sent),
        )
        .await;
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"x-other");
    }
}
