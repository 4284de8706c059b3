//! The catalog service: single and batch product reads, with optional field selection.
//!
//! Products are wide (about forty fields) on purpose, so field selection by the BFFs makes a
//! visible difference and the recorded `fields` show what each BFF asked for.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::control::fields_param;
use crate::{Version, data};

/// What the catalog says about caching its answers: the same for everyone, for a minute.
const CACHE_CONTROL: (axum::http::HeaderName, &str) = (axum::http::header::CACHE_CONTROL, "public, max-age=60");

/// Most ids one batch request may carry.
const MAX_BATCH: usize = 100;

type QueryResult = Result<Query<HashMap<String, String>>, QueryRejection>;

pub(crate) fn router(version: Version) -> Router {
    Router::new()
        .route("/products", get(move |query| batch(version, query)))
        .route("/products/{id}", get(move |id, query| one(version, id, query)))
}

/// The product with only the requested fields (plus the id); all fields when none are asked for.
/// A canary's product names say so.
fn select(version: Version, n: u64, fields: &[String]) -> Value {
    let mut product = data::product(n);
    if version == Version::Canary
        && let Some(Value::String(name)) = product.get_mut("name")
    {
        name.push_str(" (canary)");
    }
    if fields.is_empty() {
        return Value::Object(product);
    }
    let selected: Map<String, Value> =
        product.into_iter().filter(|(name, _)| name == "id" || fields.iter().any(|f| f == name)).collect();
    Value::Object(selected)
}

async fn one(version: Version, Path(id): Path<String>, query: QueryResult) -> Response {
    let Ok(Query(query)) = query else {
        return crate::json_error(StatusCode::BAD_REQUEST, "malformed query string");
    };
    match data::product_index(&id) {
        Some(n) => ([CACHE_CONTROL], Json(select(version, n, &fields_param(query.get("fields").map(String::as_str)))))
            .into_response(),
        None => crate::json_error(StatusCode::NOT_FOUND, "no such product"),
    }
}

async fn batch(version: Version, query: QueryResult) -> Response {
    let Ok(Query(query)) = query else {
        return crate::json_error(StatusCode::BAD_REQUEST, "malformed query string");
    };
    let Some(ids) = query.get("ids") else {
        return crate::json_error(StatusCode::BAD_REQUEST, "ids is required (comma-separated product ids)");
    };
    let mut wanted: Vec<&str> = Vec::new();
    for id in ids.split(',').map(str::trim).filter(|id| !id.is_empty()) {
        if !wanted.contains(&id) {
            wanted.push(id);
        }
        // Checked as ids arrive so a huge list costs no more than the limit.
        if wanted.len() > MAX_BATCH {
            return crate::json_error(StatusCode::BAD_REQUEST, &format!("at most {MAX_BATCH} ids per request"));
        }
    }
    let fields = fields_param(query.get("fields").map(String::as_str));
    let items: Vec<Value> =
        wanted.into_iter().filter_map(data::product_index).map(|n| select(version, n, &fields)).collect();
    ([CACHE_CONTROL], Json(json!({ "items": items }))).into_response()
}
