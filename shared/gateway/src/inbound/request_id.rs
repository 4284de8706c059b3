//! The request id: a well-formed client `X-Request-Id` is kept, anything else is replaced by a
//! minted UUIDv7 (unique, and sortable by time in log searches). Every stage and handler below
//! reads it as [`RequestId`]; the response echoes it (tower-http's `PropagateRequestId`, inside
//! this stage); every backend call carries it.

use std::sync::Arc;

use bff_upstream::headers::REQUEST_ID;
use http::{HeaderName, HeaderValue};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower_http::request_id::PropagateRequestIdLayer;

use super::stage::{RequestStage, RequestStageLayer};
use crate::RequestId;

/// Longest client-sent request id we keep; longer ones are replaced, not truncated.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Printable ASCII id characters only: an id ends up in logs and in headers to backends.
pub fn is_well_formed_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[derive(Debug, Clone, Copy)]
pub struct AssignRequestId;

impl RequestStage for AssignRequestId {
    fn apply<B>(&self, request: &mut http::Request<B>) {
        let kept = request.headers().get(REQUEST_ID).filter(|v| v.to_str().is_ok_and(is_well_formed_request_id));
        let (id, value) = match kept {
            Some(value) => (Arc::<str>::from(value.to_str().unwrap_or_default()), value.clone()),
            None => {
                let minted = uuid::Uuid::now_v7().to_string();
                let value = HeaderValue::try_from(minted.as_str()).unwrap_or(HeaderValue::from_static("-"));
                (Arc::from(minted), value)
            }
        };
        request.headers_mut().insert(REQUEST_ID, value);
        request.extensions_mut().insert(RequestId(id));
    }
}

/// The request id assigned on the way in and echoed on the way out.
pub(crate) fn layer()
-> ServiceBuilder<Stack<PropagateRequestIdLayer, Stack<RequestStageLayer<AssignRequestId>, Identity>>> {
    ServiceBuilder::new()
        .layer(RequestStageLayer::new(AssignRequestId))
        .layer(PropagateRequestIdLayer::new(HeaderName::from_static(REQUEST_ID)))
}

#[cfg(test)]
mod tests {
    use axum::extract::Request;
    use axum::response::IntoResponse;
    use tower::ServiceExt;

    use super::*;
    use crate::inbound::stage::testing::get;

    async fn seen_and_echoed(headers: &[(&str, &str)]) -> (String, String, String) {
        let handler = tower::service_fn(|request: Request| async move {
            let extension = request.extensions().get::<RequestId>().map(|id| id.0.to_string()).unwrap_or_default();
            let header = request.headers()[REQUEST_ID].to_str().unwrap_or_default().to_owned();
            Ok::<_, std::convert::Infallible>(format!("{extension} {header}").into_response())
        });
        let response = layer().service(handler).oneshot(get(headers)).await.unwrap();
        let echoed = response.headers()[REQUEST_ID].to_str().unwrap_or_default().to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap_or_default();
        let body = String::from_utf8_lossy(&body).into_owned();
        let (extension, header) = body.split_once(' ').unwrap_or_default();
        (extension.to_owned(), header.to_owned(), echoed)
    }

    #[tokio::test]
    async fn a_well_formed_client_id_is_kept_seen_below_and_echoed() {
        let seen = seen_and_echoed(&[("x-request-id", "client-abc.1:2")]).await;
        assert_eq!(seen, ("client-abc.1:2".into(), "client-abc.1:2".into(), "client-abc.1:2".into()));
    }

    #[tokio::test]
    async fn a_missing_or_hostile_id_is_replaced_by_a_minted_uuid_v7() {
        for headers in
            [vec![], vec![("x-request-id", "has spaces\tand tabs")], vec![("x-request-id", &*"a".repeat(129))]]
        {
            let (extension, header, echoed) = seen_and_echoed(&headers).await;
            let uuid = uuid::Uuid::parse_str(&extension).expect("a minted UUID");
            assert_eq!(uuid.get_version_num(), 7);
            assert_eq!((&header, &echoed), (&extension, &extension));
        }
    }
}
