//! GraphQL over HTTP (the GraphQL-over-HTTP specification): `POST` with a JSON body, `GET` with
//! the parameters in the query string (queries only), and the response media type chosen from
//! `Accept`.
//!
//! With `application/graphql-response+json` the status says what happened: 400 (and no `data`)
//! when the request could not be run at all (the document does not parse or validate, a limit
//! refused it, a persisted query is unknown), 405 for a mutation sent by `GET`, 200 otherwise.
//! With `application/json`, kept for older clients, every well-formed request answers 200 and
//! the errors say the rest. Without `Accept`, or with only wildcards, the answer is
//! `application/json`, as the specification asks for clients that predate the new type.

use async_graphql::Variables;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::GatewayError;

pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const APPLICATION_JSON: &str = "application/json";

/// The media type of the response, negotiated from `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMedia {
    GraphQlResponseJson,
    Json,
}

impl ResponseMedia {
    /// The best of the two types `accept` allows: the highest quality, the new type on a tie.
    pub fn negotiate(headers: &HeaderMap) -> Result<Self, GatewayError> {
        let values: Vec<&str> = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
        if values.is_empty() {
            return Ok(Self::Json);
        }
        let mut best: Option<(u16, Self)> = None;
        for range in values.iter().flat_map(|v| v.split(',')) {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let quality = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0) as u16);
            let candidate = match media.as_str() {
                GRAPHQL_RESPONSE_JSON => Self::GraphQlResponseJson,
                APPLICATION_JSON | "application/*" | "*/*" => Self::Json,
                _ => continue,
            };
            let better = match best {
                None => true,
                Some((q, current)) => {
                    quality > q || (quality == q && candidate == Self::GraphQlResponseJson && current == Self::Json)
                }
            };
            if quality > 0 && better {
                best = Some((quality, candidate));
            }
        }
        best.map(|(_, media)| media).ok_or_else(|| {
            GatewayError::NotAcceptable(format!(
                "this endpoint answers with `{GRAPHQL_RESPONSE_JSON}` or `{APPLICATION_JSON}`; `Accept` allows neither"
            ))
        })
    }

    pub fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::GraphQlResponseJson => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        })
    }

    /// The status of a request refused before it ran.
    pub fn refused_status(self, status: StatusCode) -> StatusCode {
        match self {
            Self::GraphQlResponseJson => status,
            Self::Json if status == StatusCode::METHOD_NOT_ALLOWED => status,
            Self::Json => StatusCode::OK,
        }
    }
}

/// A GraphQL request body: one request (`{"query", "operationName", "variables", "extensions"}`)
/// or a batch (a JSON array of them).
pub enum GraphQlRequest {
    Single(Box<async_graphql::Request>),
    Batch(Vec<async_graphql::Request>),
}

/// A GraphQL request as it came over HTTP: what to run, how it came, how to answer.
pub struct GraphQlHttpRequest {
    pub request: GraphQlRequest,
    pub media: ResponseMedia,
    /// Sent with `GET`: only queries may run (a `GET` must not change anything).
    pub via_get: bool,
}

/// The parameters of a `GET`, each a string as the specification has them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GetParameters {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for GraphQlHttpRequest {
    type Rejection = GatewayError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let media = ResponseMedia::negotiate(request.headers())?;
        // HEAD is served by the GET route: it is a GET without a body in the answer, never a POST.
        if request.method() == Method::GET || request.method() == Method::HEAD {
            let request = from_query_string(request.uri().query().unwrap_or_default())?;
            return Ok(Self { request: GraphQlRequest::Single(Box::new(request)), media, via_get: true });
        }
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with(APPLICATION_JSON));
        if !is_json {
            return Err(GatewayError::UnsupportedMediaType(
                "send the GraphQL request as `Content-Type: application/json`".into(),
            ));
        }
        let limit = crate::inbound::body_limit::BodyLimit::of(&request);
        let body = Bytes::from_request(request, state).await.map_err(|e| crate::rest::body_rejection(e, limit))?;
        let not_a_request =
            |e: serde_json::Error| GatewayError::BadRequest(format!("the body is not a GraphQL request: {e}"));
        let request = if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            serde_json::from_slice(&body).map(GraphQlRequest::Batch).map_err(not_a_request)?
        } else {
            serde_json::from_slice(&body).map(|r| GraphQlRequest::Single(Box::new(r))).map_err(not_a_request)?
        };
        Ok(Self { request, media, via_get: false })
    }
}

fn from_query_string(query: &str) -> Result<async_graphql::Request, GatewayError> {
    let parameters: GetParameters = serde_urlencoded::from_str(query)
        .map_err(|e| GatewayError::BadRequest(format!("the query string is not a GraphQL request: {e}")))?;
    let mut request = async_graphql::Request::new(parameters.query.unwrap_or_default());
    if let Some(name) = parameters.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = parameters.variables.filter(|v| !v.is_empty()) {
        let value: serde_json::Value = serde_json::from_str(&variables)
            .map_err(|e| GatewayError::BadRequest(format!("`variables` is not JSON: {e}")))?;
        if !(value.is_object() || value.is_null()) {
            return Err(GatewayError::BadRequest("`variables` must be a JSON object".into()));
        }
        request = request.variables(Variables::from_json(value));
    }
    if let Some(extensions) = parameters.extensions.filter(|e| !e.is_empty()) {
        request.extensions = serde_json::from_str(&extensions)
            .map_err(|e| GatewayError::BadRequest(format!("`extensions` is not a JSON object: {e}")))?;
    }
    Ok(request)
}

/// Whether a request on the GraphQL path is a browser navigating to GraphiQL: browsers list
/// `text/html` first when they navigate (GraphiQL links may carry `query` to pre-fill the
/// editor), and GraphQL clients never ask for HTML.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.trim_start().to_ascii_lowercase().starts_with("text/html"))
}
