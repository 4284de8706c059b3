//! What the router answers for a path no route serves, or a known path with the wrong method:
//! branded errors, like every other refusal.

use axum::extract::Request;

use crate::GatewayError;

pub async fn not_found(request: Request) -> GatewayError {
    GatewayError::NotFound(format!("no route for {} {}", request.method(), request.uri().path()))
}

pub async fn method_not_allowed() -> GatewayError {
    GatewayError::MethodNotAllowed
}
