//! The recommendations service: `GET /users/{id}/recommendations?limit=N`, deterministic per user.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::data;

const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 50;

pub(crate) fn router() -> Router {
    Router::new().route("/users/{id}/recommendations", get(for_user))
}

async fn for_user(Path(id): Path<String>, query: Result<Query<HashMap<String, String>>, QueryRejection>) -> Response {
    let Ok(Query(query)) = query else {
        return crate::json_error(StatusCode::BAD_REQUEST, "malformed query string");
    };
    // A limit above the maximum is clamped rather than refused: asking for "as many as you have"
    // is a reasonable request.
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(limit) => limit.min(MAX_LIMIT),
            Err(_) => {
                return crate::json_error(StatusCode::BAD_REQUEST, "limit must be a non-negative integer");
            }
        },
    };
    let Some(user) = data::user_index(&id) else {
        return crate::json_error(StatusCode::NOT_FOUND, "no such user");
    };
    Json(json!({ "items": data::recommendations(user, limit) })).into_response()
}
