//! A panicking handler becomes a branded 500 (tower-http's `CatchPanic` with this answer); the
//! panic message is logged, never sent.

use std::any::Any;

use axum::response::{IntoResponse, Response};

use crate::GatewayError;

pub(crate) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    GatewayError::Internal(format!("handler panicked: {detail}")).into_response()
}
