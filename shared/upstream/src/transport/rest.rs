use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use tower::Service;
use url::Url;

use crate::{Answer, CacheControl, Target, UpstreamConfig, UpstreamError, UpstreamRequest, headers};

/// How many idle connections per backend host we keep warm.
const POOL_MAX_IDLE_PER_HOST: usize = 64;
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How much of an error body we read to explain a rejection.
const MAX_REJECTION_MESSAGE: usize = 200;
/// Largest response body we buffer; a backend sending more is broken, not generous.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Longest `Retry-After` we pass on: a backend asking for more is wrong, and clients would give up.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The names of the headers every call carries, made at compile time: a name made from a `&str`
/// at each call is a copy each time.
const OUTBOUND: [http::HeaderName; 6] = [
    http::HeaderName::from_static(headers::REQUEST_ID),
    http::HeaderName::from_static(headers::USER_ID),
    http::HeaderName::from_static(headers::USER_SCOPES),
    http::HeaderName::from_static(headers::CLIENT_ID),
    http::HeaderName::from_static("traceparent"),
    http::HeaderName::from_static("tracestate"),
];
const REQUEST_TIMEOUT_MS: http::HeaderName = http::HeaderName::from_static(headers::REQUEST_TIMEOUT_MS);

/// Whether `segment` can only ever be read as itself: not empty, no control characters (tabs,
/// CR, LF and the rest, which some parsers strip and some log forgers use), and not `.` or `..`
/// once percent-decoded (as often as a chain of proxies might) and trimmed of whitespace.
pub(crate) fn is_safe_segment(segment: &str) -> bool {
    if segment.is_empty() || segment.chars().any(char::is_control) {
        return false;
    }
    if !segment.contains('%') {
        // Nothing to decode: the segment reads as itself (the loop below would stop at once).
        return !matches!(segment.trim(), "." | "..") && !segment.trim().is_empty();
    }
    let mut decoded = segment.to_owned();
    // Percent-encoding nests; each pass shortens the text, so this ends.
    for _ in 0..4 {
        let next = percent_decode(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
    }
    !matches!(decoded.trim(), "" | "." | "..") && !decoded.chars().any(char::is_control)
}

/// `%XX` sequences decoded (lossily), the rest kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The transport of one instance of a JSON-over-HTTP backend: the bottom of its stack.
#[derive(Debug, Clone)]
pub struct RestTransport {
    service: &'static str,
    base: Url,
    timeout: Duration,
    expose_errors: bool,
    http: reqwest::Client,
}

impl RestTransport {
    /// The transport of the instance at `base`.
    pub fn new(service: &'static str, config: &UpstreamConfig, base: &Url) -> Result<Self, UpstreamError> {
        let config_error = |reason: String| UpstreamError::Config { service, reason };
        let tls =
            crate::transport::tls::client_config(config.ca_file.as_deref(), &[b"http/1.1"]).map_err(config_error)?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .tls_backend_preconfigured(tls)
            // Backends never redirect; following one would send identity headers somewhere new.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| config_error(error_chain(&e)))?;
        Ok(Self { service, base: base.clone(), timeout: config.timeout, expose_errors: config.expose_errors, http })
    }

    /// Readiness: does the backend answer `GET /segment/segment` with a success status in time?
    pub(crate) async fn probe(&self, path: &[&str]) -> Result<(), UpstreamError> {
        let url = self.url(path)?;
        let exchange = async {
            let response = self.http.get(url).send().await.map_err(|e| self.transport_error(&e))?;
            self.check_status(response).await.map(drop)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(UpstreamError::Timeout { service: self.service, after: self.timeout }))
    }

    fn build(&self, request: UpstreamRequest) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let remaining = request.remaining();
        let Target::Rest { method, path, query, body } = request.call.target else {
            return Err(UpstreamError::Config { service: self.service, reason: "a gRPC call sent to REST".into() });
        };
        // Checked before anything is sent: a bad path is no call at all.
        let mut url = self.url(&path)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut builder = self.http.request(method, url);
        if let Some(body) = body {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json").body(body);
        }
        if let Some(budget) = remaining {
            builder = builder.header(REQUEST_TIMEOUT_MS.clone(), budget.as_millis().max(1).to_string());
        }
        for (name, value) in request.cx.outbound_headers() {
            // Never send the call with an identity value missing: the backend could take the
            // caller for someone else.
            let value = http::HeaderValue::from_str(&value).map_err(|_| UpstreamError::Config {
                service: self.service,
                reason: format!("`{name}` is not representable as a header"),
            })?;
            builder = match OUTBOUND.iter().find(|known| known.as_str() == name) {
                Some(known) => builder.header(known.clone(), value),
                None => builder.header(name, value),
            };
        }
        Ok(builder)
    }

    /// The URL of `path` below the base. Each segment is percent-encoded (`/`, `?`, `#` and `%`
    /// included), and segments that are or could become navigation are refused (see
    /// [`is_safe_segment`]), so a segment that came from a client can only ever name one resource
    /// at its place, whatever a proxy or backend on the way decodes or trims.
    fn url(&self, path: &[impl AsRef<str>]) -> Result<Url, UpstreamError> {
        if let Some(bad) = path.iter().map(AsRef::as_ref).find(|s| !is_safe_segment(s)) {
            return Err(UpstreamError::InvalidArgument {
                service: self.service,
                reason: format!("{:?} cannot be a path segment", bad.chars().take(64).collect::<String>()),
            });
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| UpstreamError::Config {
                service: self.service,
                reason: "base URL cannot have a path".into(),
            })?
            .pop_if_empty()
            .extend(path.iter().map(AsRef::as_ref));
        Ok(url)
    }

    fn transport_error(&self, error: &reqwest::Error) -> UpstreamError {
        let service = self.service;
        if error.is_connect() {
            // The connection never came up (refused, timed out, TLS refused): the request never left.
            UpstreamError::Unavailable { service, reason: error_chain(error) }
        } else if error.is_timeout() {
            UpstreamError::Timeout { service, after: self.timeout }
        } else {
            UpstreamError::Failed { service, detail: error_chain(error) }
        }
    }

    /// The body of a successful response, or the error its status means.
    async fn check_status(&self, response: reqwest::Response) -> Result<Answer, UpstreamError> {
        let service = self.service;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        // Every line of the header counts; one that cannot be read makes the answer unstorable.
        let mut cache_control = CacheControl::default();
        for value in response.headers().get_all(http::header::CACHE_CONTROL) {
            match value.to_str() {
                Ok(value) => cache_control = cache_control.and(CacheControl::parse(value)),
                Err(_) => cache_control = CacheControl { max_age: None, no_store: true, private: true },
            }
        }
        let body = self.read_body(response).await?;
        if status.is_success() {
            return Ok(Answer { body, cache_control });
        }
        Err(match status {
            StatusCode::NOT_FOUND => UpstreamError::NotFound { service },
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                UpstreamError::Overloaded { service, retry_after }
            }
            StatusCode::GATEWAY_TIMEOUT => UpstreamError::Timeout { service, after: self.timeout },
            // Our own credentials with the backend failed: the gateway's problem, not the client's.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                UpstreamError::Failed { service, detail: format!("HTTP {status}") }
            }
            status if status.is_client_error() => {
                let message = if self.expose_errors {
                    rejection_message(&body)
                } else {
                    crate::error::GENERIC_REJECTION.to_owned()
                };
                UpstreamError::Rejected { service, message }
            }
            _ => UpstreamError::Failed { service, detail: format!("HTTP {status}") },
        })
    }

    /// The whole body, refusing one over [`MAX_RESPONSE_BYTES`] as soon as it shows.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, UpstreamError> {
        let too_large = || UpstreamError::BadBody {
            service: self.service,
            reason: format!("response body exceeds {MAX_RESPONSE_BYTES} bytes"),
        };
        if response.content_length().is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
            return Err(too_large());
        }
        let mut body = Joined::default();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(&e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            body.push(chunk);
        }
        Ok(body.into_bytes())
    }
}

/// A body's chunks, joined: one that comes in a single chunk (most do) is kept as it came, not
/// copied.
#[derive(Default)]
struct Joined {
    first: Option<Bytes>,
    rest: Vec<u8>,
}

impl Joined {
    fn len(&self) -> usize {
        self.first.as_ref().map_or(self.rest.len(), Bytes::len)
    }

    fn push(&mut self, chunk: Bytes) {
        match self.first.take() {
            None if self.rest.is_empty() => self.first = Some(chunk),
            earlier => {
                self.rest.extend_from_slice(earlier.as_deref().unwrap_or_default());
                self.rest.extend_from_slice(&chunk);
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        self.first.unwrap_or_else(|| Bytes::from(self.rest))
    }
}

impl Service<UpstreamRequest> for RestTransport {
    type Response = Answer;
    type Error = UpstreamError;
    type Future = BoxFuture<'static, Result<Answer, UpstreamError>>;

    /// reqwest's pool is always ready; connection limits belong to the layers above.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let builder = this.build(request)?;
            let response = builder.send().await.map_err(|e| this.transport_error(&e))?;
            this.check_status(response).await
        })
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

pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
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

    fn client(base: &str) -> RestTransport {
        let base: Url = base.parse().unwrap();
        RestTransport::new("test", &UpstreamConfig::new(base.clone()), &base).unwrap()
    }

    #[test]
    fn path_segments_are_percent_encoded_so_ids_cannot_escape_their_resource() {
        let client = client("http://127.0.0.1:1");
        let url = client.url(&["products", "../admin?x=1#y"]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:1/products/..%2Fadmin%3Fx=1%23y");
        // A `%` that is not navigation stays the literal id it was.
        let url = client.url(&["products", "50%off", "stock"]).unwrap();
        assert_eq!(url.path(), "/products/50%25off/stock");
        // Navigation, and what any decoder or trimmer on the way would turn into navigation.
        for navigation in
            ["..", ".", "", "%2e%2e", ".%2E", "%252e%252e", " .. ", "\t..", "..\r\n", "a\nb", "\u{0}", "%0a"]
        {
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
    fn a_body_in_one_chunk_is_kept_and_one_in_several_is_joined_in_order() {
        let chunk = Bytes::from_static(b"{\"id\":\"p-1\"}");
        let mut one = Joined::default();
        one.push(chunk.clone());
        assert_eq!(one.len(), chunk.len());
        let kept = one.into_bytes();
        assert_eq!(kept.as_ptr(), chunk.as_ptr(), "not copied");
        let mut several = Joined::default();
        for part in [&b"{\"id\""[..], b":", b"", b"\"p-1\"}"] {
            several.push(Bytes::copy_from_slice(part));
        }
        assert_eq!(several.len(), chunk.len());
        assert_eq!(several.into_bytes(), chunk);
        assert_eq!(Joined::default().into_bytes(), Bytes::new());
    }

    #[test]
    fn segments_without_escapes_are_judged_as_the_escaping_path_would() {
        for segment in ["u-1", "p 7", " . ", "...", ".a", "a.", "..", ".", " ", "x\ty"] {
            let escaped = segment.replace(' ', "%20").replace('.', "%2E");
            assert_eq!(is_safe_segment(segment), is_safe_segment(&escaped), "{segment:?}");
        }
    }

    #[test]
    fn rejection_messages_come_from_the_body_and_are_bounded() {
        assert_eq!(rejection_message(br#"{"message":"unknown product p-9"}"#), "unknown product p-9");
        assert_eq!(rejection_message(b"<html>"), "invalid request");
        let long = format!(r#"{{"detail":"{}"}}"#, "x".repeat(1000));
        assert_eq!(rejection_message(long.as_bytes()).len(), MAX_REJECTION_MESSAGE);
    }
}
