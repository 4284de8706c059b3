//! The users service: `GET /users/{id}` for the seeded users `u-1`..`u-1000`.

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::data;

pub(crate) fn router() -> Router {
    Router::new().route("/users/{id}", get(get_user))
}

async fn get_user(Path(id): Path<String>) -> Response {
    match data::user_index(&id) {
        Some(n) => Json(data::user(n)).into_response(),
        None => crate::json_error(StatusCode::NOT_FOUND, "no such user"),
    }
}
