//! Extractors for REST BFFs whose rejections are gateway errors (problem+json), not axum's
//! plain-text ones.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::GatewayError;

/// `axum::Json` with a branded 400.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = GatewayError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = BodyLimit::of(&request);
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(GatewayError::BadRequest("send the body as `Content-Type: application/json`".into()))
            }
            Err(JsonRejection::BytesRejection(rejection)) => Err(body_rejection(rejection, limit)),
            Err(rejection) => Err(GatewayError::BadRequest(rejection.body_text())),
        }
    }
}

/// `axum::extract::Path` with a branded 400.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection: PathRejection| GatewayError::BadRequest(rejection.body_text()))
    }
}

/// `axum::extract::Query` with a branded 400.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| GatewayError::BadRequest(rejection.body_text()))
    }
}

/// The body limit the inbound stack enforces, for extractors to name when a body hits it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

impl BodyLimit {
    pub(crate) fn of(request: &Request) -> usize {
        request.extensions().get::<BodyLimit>().map_or(0, |limit| limit.0)
    }
}

/// A body that could not be read: cut at the stack's limit (413), or broken off (400).
pub(crate) fn body_rejection(rejection: BytesRejection, limit: usize) -> GatewayError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        GatewayError::PayloadTooLarge { limit }
    } else {
        GatewayError::BadRequest(format!("could not read the request body: {}", rejection.body_text()))
    }
}
