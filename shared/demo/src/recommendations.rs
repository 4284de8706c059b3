//! The recommendations service: `GET /users/{id}/recommendations?limit=N`, deterministic per
//! user, and `GET /products/{id}/similar?limit=N`, deterministic per product.

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
    Router::new().route("/users/{id}/recommendations", get(for_user)).route("/products/{id}/similar", get(similar))
}

type QueryResult = Result<Query<HashMap<String, String>>, QueryRejection>;

async fn for_user(Path(id): Path<String>, query: QueryResult) -> Response {
    let limit = match limit(query) {
        Ok(limit) => limit,
        Err(why) => return crate::json_error(StatusCode::BAD_REQUEST, why),
    };
    let Some(user) = data::user_index(&id) else {
        return crate::json_error(StatusCode::NOT_FOUND, "no such user");
    };
    Json(json!({ "items": data::recommendations(user, limit) })).into_response()
}

async fn similar(Path(id): Path<String>, query: QueryResult) -> Response {
    let limit = match limit(query) {
        Ok(limit) => limit,
        Err(why) => return crate::json_error(StatusCode::BAD_REQUEST, why),
    };
    let Some(product) = data::product_index(&id) else {
        return crate::json_error(StatusCode::NOT_FOUND, "no such product");
    };
    Json(json!({ "items": data::similar_products(product, limit) })).into_response()
}

/// The `limit` parameter, or why it is refused.
fn limit(query: QueryResult) -> Result<usize, &'static str> {
    let Ok(Query(query)) = query else {
        return Err("malformed query string");
    };
    // A limit above the maximum is clamped rather than refused: asking for "as many as you have"
    // is a reasonable request.
    match query.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(limit) => Ok(limit.min(MAX_LIMIT)),
            Err(_) => Err("limit must be a non-negative integer"),
        },
    }
}
