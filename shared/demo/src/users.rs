//! The users service: `GET /users/{id}` for the seeded users `u-1`..`u-1000`, with `fields=a,b`
//! to ask for only some members (the id always comes), and `PATCH /users/{id}` to change the
//! profile's `name` and `avatar_url`. Changes live in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::control::fields_param;
use crate::data;

const MAX_NAME_CHARS: usize = 100;
const MAX_URL_CHARS: usize = 500;

/// Profile changes by user index.
type Changes = Arc<Mutex<HashMap<u64, Map<String, Value>>>>;

pub(crate) fn router() -> Router {
    Router::new().route("/users/{id}", get(get_user).patch(update_user)).with_state(Changes::default())
}

fn current(changes: &Changes, n: u64) -> Map<String, Value> {
    let Value::Object(mut user) = data::user(n) else { return Map::new() };
    if let Some(changed) = changes.lock().unwrap_or_else(PoisonError::into_inner).get(&n) {
        user.extend(changed.clone());
    }
    user
}

async fn get_user(
    State(changes): State<Changes>,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return crate::json_error(StatusCode::BAD_REQUEST, "malformed query string");
    };
    let Some(n) = data::user_index(&id) else {
        return crate::json_error(StatusCode::NOT_FOUND, "no such user");
    };
    let fields = fields_param(query.get("fields").map(String::as_str));
    let mut user = current(&changes, n);
    if !fields.is_empty() {
        user.retain(|name, _| name == "id" || fields.iter().any(|f| f == name));
    }
    // A profile is personal: whoever caches it may keep it for its own caller only.
    ([(axum::http::header::CACHE_CONTROL, "private, max-age=60")], Json(Value::Object(user))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileChange {
    name: Option<String>,
    avatar_url: Option<String>,
}

async fn update_user(
    State(changes): State<Changes>,
    Path(id): Path<String>,
    body: Result<Json<ProfileChange>, JsonRejection>,
) -> Response {
    let Some(n) = data::user_index(&id) else {
        return crate::json_error(StatusCode::NOT_FOUND, "no such user");
    };
    let Ok(Json(change)) = body else {
        return crate::json_error(StatusCode::BAD_REQUEST, "the body must be {\"name\"?, \"avatar_url\"?}");
    };
    let mut changed = Map::new();
    if let Some(name) = change.name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return crate::json_error(
                StatusCode::BAD_REQUEST,
                &format!("name must be 1 to {MAX_NAME_CHARS} characters"),
            );
        }
        changed.insert("name".to_owned(), Value::from(name));
    }
    if let Some(url) = change.avatar_url {
        if !url.starts_with("https://") || url.len() > MAX_URL_CHARS {
            return crate::json_error(
                StatusCode::BAD_REQUEST,
                &format!("avatar_url must be an https URL of at most {MAX_URL_CHARS} characters"),
            );
        }
        changed.insert("avatar_url".to_owned(), Value::from(url));
    }
    changes.lock().unwrap_or_else(PoisonError::into_inner).entry(n).or_default().extend(changed);
    Json(Value::Object(current(&changes, n))).into_response()
}
