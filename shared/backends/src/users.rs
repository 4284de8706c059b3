use bff_upstream::{Call, CallContext, Probe, Upstream, UpstreamConfig, UpstreamError};
use serde::Deserialize;

/// A user as BFFs may show it. The users service also sends internal fields (risk scores, notes);
/// they are not here, so they are dropped on decode.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub avatar_url: Option<String>,
}

/// The users service: `GET /users/{id}`.
#[derive(Debug, Clone)]
pub struct UsersClient(Upstream);

impl UsersClient {
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        Upstream::rest("users", config).map(Self)
    }

    pub async fn get(&self, cx: &CallContext, id: &str) -> Result<User, UpstreamError> {
        self.0.json(cx, Call::get("GET /users/{id}", ["users", id])).await
    }
}

impl Probe for UsersClient {
    async fn probe(&self) -> Result<(), String> {
        crate::rest_ready(&self.0).await
    }
}
