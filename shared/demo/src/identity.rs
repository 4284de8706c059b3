//! The identity service: an RS256 token issuer with a JWKS endpoint, OAuth2 client credentials
//! for partners, and (in dev) a token-minting endpoint.
//!
//! BFFs verify tokens against the JWKS exactly as they would against a real identity provider, so
//! the demo exercises the real verification path (key ids, issuer, audience, expiry, scopes).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::PartnerClient;

/// A throwaway key generated for this demo and committed on purpose: it signs tokens only the demo
/// backends and local BFFs trust. Never use it (or anything signed with it) outside local runs.
const DEMO_SIGNING_KEY: &[u8] = include_bytes!("../keys/demo-signing-key.pem");
pub(crate) const KID: &str = "demo-2026";

/// Client-credentials tokens are for the partner BFF.
const PARTNER_AUDIENCE: &str = "partner";
const CLIENT_TOKEN_TTL_S: i64 = 3600;

/// Signs every token the demo hands out and publishes the matching public key.
pub(crate) struct Signer {
    key: EncodingKey,
    jwks: JwkSet,
    issuer: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

impl Signer {
    pub(crate) fn new(issuer: String) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = EncodingKey::from_rsa_pem(DEMO_SIGNING_KEY)?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
        jwk.common.key_id = Some(KID.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let signer = Self { key, jwks: JwkSet { keys: vec![jwk] }, issuer };
        // Sign once now so a broken key fails `Demo::start` instead of a later request.
        signer.mint("probe", "probe", "", 60, None)?;
        Ok(signer)
    }

    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    pub(crate) fn mint(
        &self,
        sub: &str,
        aud: &str,
        scope: &str,
        ttl_s: i64,
        client_id: Option<&str>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let claims = Claims {
            iss: &self.issuer,
            sub,
            aud,
            exp: now.saturating_add(ttl_s),
            iat: now,
            scope: (!scope.is_empty()).then_some(scope),
            client_id,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

#[derive(Clone)]
struct IdentityState {
    signer: Arc<Signer>,
    clients: Arc<Vec<PartnerClient>>,
}

pub(crate) fn router(signer: Arc<Signer>, clients: Vec<PartnerClient>, dev_tokens: bool) -> Router {
    let mut router =
        Router::new().route("/.well-known/jwks.json", get(jwks)).route("/oauth/token", post(client_credentials));
    if dev_tokens {
        router = router.route("/dev/token", post(dev_token));
    }
    router.with_state(IdentityState { signer, clients: Arc::new(clients) })
}

async fn jwks(State(state): State<IdentityState>) -> Json<JwkSet> {
    Json(state.signer.jwks.clone())
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (status, Json(json!({ "error": error, "error_description": description }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        // RFC 6749 5.2: a 401 for client authentication names the scheme the client should use.
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"demo\""));
    }
    response
}

/// `client_id:client_secret` from an HTTP Basic `Authorization` header, if there is one.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// OAuth2 client credentials grant (RFC 6749 4.4).
async fn client_credentials(
    State(state): State<IdentityState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        );
    };
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
    }
    let credentials = basic_credentials(&headers)
        .or_else(|| Some((form.get("client_id")?.clone(), form.get("client_secret")?.clone())));
    let client = credentials
        .and_then(|(id, secret)| state.clients.iter().find(|c| c.client_id == id && c.client_secret == secret));
    let Some(client) = client else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client or wrong secret");
    };
    let requested: Vec<&str> = form.get("scope").map(|s| s.split_whitespace().collect()).unwrap_or_default();
    let granted: Vec<&str> = if requested.is_empty() {
        client.scopes.iter().map(String::as_str).collect()
    } else {
        let mut granted: Vec<&str> = Vec::new();
        for scope in requested {
            if client.scopes.iter().any(|s| s == scope) && !granted.contains(&scope) {
                granted.push(scope);
            }
        }
        granted
    };
    let scope = granted.join(" ");
    let token = match state.signer.mint(
        &client.client_id,
        PARTNER_AUDIENCE,
        &scope,
        CLIENT_TOKEN_TTL_S,
        Some(&client.client_id),
    ) {
        Ok(token) => token,
        Err(error) => return signing_failed(&error),
    };
    let mut response = Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": CLIENT_TOKEN_TTL_S,
        "scope": scope,
    }))
    .into_response();
    // RFC 6749 5.1: token responses must not be cached.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
struct DevTokenRequest {
    sub: String,
    aud: String,
    #[serde(default)]
    scope: String,
    #[serde(default = "default_ttl")]
    ttl_s: i64,
}

fn default_ttl() -> i64 {
    3600
}

/// Any token a developer or test wants, signed by the real key; only served when enabled.
async fn dev_token(State(state): State<IdentityState>, body: Result<Json<DevTokenRequest>, JsonRejection>) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return crate::json_error(StatusCode::BAD_REQUEST, &format!("invalid request: {}", rejection.body_text()));
        }
    };
    match state.signer.mint(&request.sub, &request.aud, &request.scope, request.ttl_s, None) {
        Ok(token) => Json(json!({ "access_token": token, "token_type": "Bearer" })).into_response(),
        Err(error) => signing_failed(&error),
    }
}

fn signing_failed(error: &jsonwebtoken::errors::Error) -> Response {
    tracing::error!(%error, "demo identity could not sign a token");
    crate::json_error(StatusCode::INTERNAL_SERVER_ERROR, "could not sign the token")
}
