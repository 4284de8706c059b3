use bff_upstream::{Call, CallContext, Probe, Upstream, UpstreamConfig, UpstreamError};
use serde::{Deserialize, Serialize};

use crate::Member;

const SERVICE: &str = "users";

/// A user as BFFs may show it. The users service also sends internal fields (risk scores, notes);
/// they are not here, so they are dropped on decode. Every member but the id is only there when
/// asked for (`fields=`).
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub name: Member<String>,
    #[serde(default)]
    pub email: Member<String>,
    #[serde(default)]
    pub avatar_url: Member<Option<String>>,
}

impl User {
    pub fn name(&self) -> Result<&str, UpstreamError> {
        self.name.required(SERVICE, "name").map(String::as_str)
    }

    pub fn email(&self) -> Result<&str, UpstreamError> {
        self.email.required(SERVICE, "email").map(String::as_str)
    }

    pub fn avatar_url(&self) -> Result<Option<&str>, UpstreamError> {
        self.avatar_url.required(SERVICE, "avatar_url").map(Option::as_deref)
    }
}

/// A change to the user's own profile: only the members that are set change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProfileChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

/// The users service: `GET /users/{id}` (with `fields=a,b` to ask for only some members) and
/// `PATCH /users/{id}`.
#[derive(Debug, Clone)]
pub struct UsersClient(Upstream);

impl UsersClient {
    pub fn new(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        Upstream::rest(SERVICE, config).map(Self)
    }

    /// One user with `fields` (the id always comes; empty means every member).
    pub async fn get(&self, cx: &CallContext, id: &str, fields: &[&str]) -> Result<User, UpstreamError> {
        self.0.json(cx, Call::get("GET /users/{id}", ["users", id]).fields(fields)).await
    }

    /// Changes the user's profile; answers with the whole updated user.
    pub async fn update(&self, cx: &CallContext, id: &str, change: &ProfileChange) -> Result<User, UpstreamError> {
        let call = Call::send_json(http::Method::PATCH, "PATCH /users/{id}", ["users", id], change)
            .map_err(|e| UpstreamError::InvalidArgument { service: SERVICE, reason: e.to_string() })?;
        self.0.json(cx, call).await
    }
}

impl Probe for UsersClient {
    async fn probe(&self) -> Result<(), String> {
        crate::rest_ready(&self.0).await
    }
}
