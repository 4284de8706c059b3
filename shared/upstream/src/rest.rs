use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::context::{CallOutcome, UpstreamCall};
use crate::{CallContext, UpstreamConfig, UpstreamError};

/// How many idle connections per backend host we keep warm.
const POOL_MAX_IDLE_PER_HOST: usize = 64;
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How much of an error body we read to explain a rejection.
const MAX_REJECTION_MESSAGE: usize = 200;
/// Largest response body we buffer; a backend sending more is broken, not generous.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A JSON-over-HTTP backend.
#[derive(Debug, Clone)]
pub struct RestClient {
    service: &'static str,
    base: Url,
    timeout: Duration,
    http: reqwest::Client,
}

impl RestClient {
    pub fn new(service: &'static str, config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            // Backends never redirect; following one would send identity headers somewhere new.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UpstreamError::Config { service, reason: e.to_string() })?;
        Ok(Self { service, base: config.url.clone(), timeout: config.timeout, http })
    }

    /// `GET /segment/segment?query` and decode a JSON body. Each path segment is percent-encoded,
    /// so an id from a client can never change which resource is addressed.
    pub async fn get<T: DeserializeOwned>(
        &self,
        cx: &CallContext,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, UpstreamError> {
        self.send(cx, Method::GET, path, |request| request.query(query)).await
    }

    /// `POST /segment/segment` with a JSON body and decode a JSON body.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        cx: &CallContext,
        path: &[&str],
        body: &B,
    ) -> Result<T, UpstreamError> {
        self.send(cx, Method::POST, path, |request| request.json(body)).await
    }

    /// Readiness: does the backend answer `GET /segment/segment` with a success status in time?
    pub async fn probe(&self, path: &[&str]) -> Result<(), UpstreamError> {
        let url = self.url(path)?;
        let response = tokio::time::timeout(self.timeout, self.http.get(url).send())
            .await
            .map_err(|_| UpstreamError::Timeout { service: self.service, after: self.timeout })?
            .map_err(|e| self.transport_error(&e))?;
        self.check_status(response).await.map(drop)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        cx: &CallContext,
        method: Method,
        path: &[&str],
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<T, UpstreamError> {
        // Checked before anything is sent: a bad path or a spent deadline is no call at all.
        let url = self.url(path)?;
        let budget = cx.budget(self.service, self.timeout)?;
        let operation = format!("{method} {}", url.path());
        let mut request = build(self.http.request(method, url));
        for (name, value) in cx.outbound_headers() {
            // As for gRPC: never send the call with an identity value missing.
            let value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| UpstreamError::Config {
                service: self.service,
                reason: format!("`{name}` is not representable as a header"),
            })?;
            request = request.header(name, value);
        }
        let started = Instant::now();
        let exchange = async {
            let response = request.send().await.map_err(|e| self.transport_error(&e))?;
            let body = self.check_status(response).await?;
            serde_json::from_slice::<T>(&body)
                .map_err(|e| UpstreamError::BadBody { service: self.service, reason: e.to_string() })
        };
        let result = tokio::time::timeout(budget, exchange)
            .await
            .unwrap_or(Err(UpstreamError::Timeout { service: self.service, after: budget }));
        let outcome = match &result {
            Ok(_) => CallOutcome::Ok,
            Err(e) => CallOutcome::Failed(e.kind()),
        };
        cx.record(UpstreamCall { service: self.service, operation, latency: started.elapsed(), outcome });
        result
    }

    /// The URL of `path` below the base. Each segment is percent-encoded (`/`, `?`, `#` and `%`
    /// included), and the segments URL parsers treat as navigation (`.`, `..`, empty) are refused,
    /// so a segment that came from a client can only ever name one resource at its place.
    fn url(&self, path: &[&str]) -> Result<Url, UpstreamError> {
        if let Some(bad) = path.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(UpstreamError::InvalidArgument {
                service: self.service,
                reason: format!("`{bad}` cannot be a path segment"),
            });
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| UpstreamError::Config {
                service: self.service,
                reason: "base URL cannot have a path".into(),
            })?
            .pop_if_empty()
            .extend(path);
        Ok(url)
    }

    fn transport_error(&self, error: &reqwest::Error) -> UpstreamError {
        if error.is_timeout() {
            UpstreamError::Timeout { service: self.service, after: self.timeout }
        } else {
            UpstreamError::Unavailable { service: self.service, reason: error_chain(error) }
        }
    }

    /// The body of a successful response, or the error its status means.
    async fn check_status(&self, response: reqwest::Response) -> Result<Bytes, UpstreamError> {
        let service = self.service;
        let status = response.status();
        let body = self.read_body(response).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(match status {
            StatusCode::NOT_FOUND => UpstreamError::NotFound { service },
            StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {
                UpstreamError::Rejected { service, message: rejection_message(&body) }
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::TOO_MANY_REQUESTS => {
                UpstreamError::Unavailable { service, reason: format!("HTTP {status}") }
            }
            StatusCode::GATEWAY_TIMEOUT => UpstreamError::Timeout { service, after: self.timeout },
            _ => UpstreamError::Failed { service, detail: format!("HTTP {status}") },
        })
    }
}

impl RestClient {
    /// The whole body, refusing one over [`MAX_RESPONSE_BYTES`] as soon as it shows.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, UpstreamError> {
        let too_large = || UpstreamError::BadBody {
            service: self.service,
            reason: format!("response body exceeds {MAX_RESPONSE_BYTES} bytes"),
        };
        if response.content_length().is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(&e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }
}

/// The `message` (or `detail`) of a JSON error body, cut short; a fixed text otherwise.
fn rejection_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("detail")))
        .and_then(|v| v.as_str())
        .unwrap_or("invalid request");
    message.chars().take(MAX_REJECTION_MESSAGE).collect()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> RestClient {
        RestClient::new("test", &UpstreamConfig::new(base.parse().unwrap())).unwrap()
    }

    #[test]
    fn path_segments_are_percent_encoded_so_ids_cannot_escape_their_resource() {
        let client = client("http://127.0.0.1:1");
        let url = client.url(&["products", "../admin?x=1#y"]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:1/products/..%2Fadmin%3Fx=1%23y");
        // `%2e%2e` would be `..` to a URL parser; escaped, it stays the literal id it was.
        let url = client.url(&["products", "%2e%2e", "stock"]).unwrap();
        assert_eq!(url.path(), "/products/%252e%252e/stock");
        for navigation in ["..", ".", ""] {
            let error = client.url(&["products", navigation]).unwrap_err();
            assert_eq!(error.kind(), "invalid_argument", "{navigation:?}");
        }
    }

    #[test]
    fn a_base_path_is_kept() {
        let url = client("http://127.0.0.1:1/api/").url(&["users", "u-1"]).unwrap();
        assert_eq!(url.path(), "/api/users/u-1");
        let url = client("http://127.0.0.1:1/api").url(&["users", "u-1"]).unwrap();
        assert_eq!(url.path(), "/api/users/u-1");
    }

    #[test]
    fn rejection_messages_come_from_the_body_and_are_bounded() {
        assert_eq!(rejection_message(br#"{"message":"unknown product p-9"}"#), "unknown product p-9");
        assert_eq!(rejection_message(b"<html>"), "invalid request");
        let long = format!(r#"{{"detail":"{}"}}"#, "x".repeat(1000));
        assert_eq!(rejection_message(long.as_bytes()).len(), MAX_REJECTION_MESSAGE);
    }
}
