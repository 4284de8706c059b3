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
pub const KID: &str = "demo-2026";
/// The key the demo rotates to (see [`crate::Demo::rotate_keys`]); just as throwaway.
const NEXT_SIGNING_KEY: &[u8] = include_bytes!("../keys/demo-signing-key-2027.pem");
pub const NEXT_KID: &str = "demo-2027";

/// Client-credentials tokens are for the partner BFF.
const PARTNER_AUDIENCE: &str = "partner";
const CLIENT_TOKEN_TTL_S: i64 = 3600;

/// Signs every token the demo hands out and publishes the matching public keys. Keys can be
/// rotated at run time, as an identity provider does: a new key published, then signed with, then
/// the old one withdrawn.
pub(crate) struct Signer {
    keys: Vec<(String, EncodingKey, Jwk)>,
    rotation: std::sync::RwLock<Rotation>,
    issuer: String,
}

#[derive(Clone)]
struct Rotation {
    published: Vec<String>,
    signing: String,
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
        let mut keys = Vec::new();
        for (kid, pem) in [(KID, DEMO_SIGNING_KEY), (NEXT_KID, NEXT_SIGNING_KEY)] {
            let key = EncodingKey::from_rsa_pem(pem)?;
            let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
            jwk.common.key_id = Some(kid.to_owned());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            keys.push((kid.to_owned(), key, jwk));
        }
        let rotation = Rotation { published: vec![KID.to_owned()], signing: KID.to_owned() };
        let signer = Self { keys, rotation: std::sync::RwLock::new(rotation), issuer };
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
        let signing = self.rotation().signing;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(signing.clone());
        jsonwebtoken::encode(&header, &claims, self.key(&signing))
    }

    fn rotation(&self) -> Rotation {
        self.rotation.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn key(&self, kid: &str) -> &EncodingKey {
        // `rotate` only accepts kids of `keys`, and `new` signs with the first.
        let (_, key, _) = self.keys.iter().find(|(k, _, _)| k == kid).unwrap_or(&self.keys[0]);
        key
    }

    /// Publishes `published` in the JWKS and signs new tokens with `signing`; unknown kids are an
    /// error naming them.
    pub(crate) fn rotate(&self, published: &[&str], signing: &str) -> Result<(), String> {
        let known = |kid: &str| self.keys.iter().any(|(k, _, _)| k == kid);
        if let Some(unknown) = published.iter().chain([&signing]).find(|kid| !known(kid)) {
            return Err(format!("the demo has no key `{unknown}`"));
        }
        let rotation =
            Rotation { published: published.iter().map(|k| (*k).to_owned()).collect(), signing: signing.to_owned() };
        *self.rotation.write().unwrap_or_else(std::sync::PoisonError::into_inner) = rotation;
        Ok(())
    }

    /// Signs `header` and `claims` exactly as given (JSON), with the key named `kid`: for tests
    /// that need tokens no well-behaved issuer would mint (critical headers, odd types).
    pub(crate) fn sign_raw(&self, header: &serde_json::Value, claims: &serde_json::Value, kid: &str) -> String {
        let encode = |value: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string().as_bytes())
        };
        let message = format!("{}.{}", encode(header), encode(claims));
        // Signing with a valid RSA key does not fail.
        #[allow(clippy::expect_used)]
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), self.key(kid), Algorithm::RS256).expect("an RSA key signs");
        format!("{message}.{signature}")
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
    let published = state.signer.rotation().published;
    let keys =
        state.signer.keys.iter().filter(|(kid, _, _)| published.contains(kid)).map(|(_, _, jwk)| jwk.clone()).collect();
    Json(JwkSet { keys })
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
