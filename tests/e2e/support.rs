//! Starting the platform on ephemeral ports and talking to it as a client would.

use std::net::SocketAddr;
use std::time::Duration;

use bff_platform::{Stack, StackConfig};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub const HOME_QUERY: &str = "query Home { home { user { id name avatarUrl } recentOrders(first: 3) { id status total } recommendations(first: 5) { id name price } } }";

pub const ME_QUERY: &str = "query Me($cursor: String) { me { id name email orders(first: 10, after: $cursor) { edges { node { id status createdAt items { quantity product { id name price stock { available } } } } } pageInfo { hasNextPage endCursor } } } }";

pub struct TestStack {
    pub stack: Stack,
    pub http: reqwest::Client,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `extensions.code` of each GraphQL error, in order.
    pub fn error_codes(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors.iter().map(|e| e["extensions"]["code"].as_str().unwrap_or("<none>").to_owned()).collect()
            })
            .unwrap_or_default()
    }
}

impl TestStack {
    pub async fn start() -> Self {
        Self::start_with(StackConfig::ephemeral()).await
    }

    pub async fn start_with(config: StackConfig) -> Self {
        let stack = Stack::start(config).await.expect("the stack starts on ephemeral ports");
        Self { stack, http: reqwest::Client::new() }
    }

    pub fn url(addr: SocketAddr, path: &str) -> String {
        format!("{}{path}", bff_demo::http_url(addr))
    }

    /// A token from the demo identity service, valid for five minutes.
    pub fn token(&self, sub: &str, audience: &str) -> String {
        self.stack.demo.mint_token(sub, audience, "profile orders", 300)
    }

    pub async fn graphql(&self, addr: SocketAddr, token: Option<&str>, query: &str, variables: Value) -> Reply {
        // The specification's own media type: a request that cannot run answers 4xx.
        let mut request = self
            .http
            .post(Self::url(addr, "/graphql"))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::reply(request).await
    }

    pub async fn reply(request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, headers, body }
    }

    pub async fn get(&self, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.get(Self::url(addr, path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::reply(request).await
    }

    /// What the demo backends recorded: `{"<service>": {"count", "recent": [...]}}`.
    pub async fn calls(&self) -> Value {
        self.http.get(Self::url(self.stack.demo.addrs.control, "/calls")).send().await.unwrap().json().await.unwrap()
    }

    pub async fn call_count(&self, service: &str) -> u64 {
        self.calls().await[service]["count"].as_u64().unwrap_or_else(|| panic!("no call record for {service}"))
    }

    /// Every recorded call to `service`, newest last.
    pub async fn recent_calls(&self, service: &str) -> Vec<Value> {
        self.calls().await[service]["recent"].as_array().cloned().unwrap_or_default()
    }

    /// The orders service's own first page for `user_id`, read directly over gRPC.
    pub async fn orders_of(&self, user_id: &str, page_size: u32) -> bff_backends::OrdersPage {
        let config =
            bff_upstream::UpstreamConfig::new(bff_demo::http_url(self.stack.demo.addrs.orders).parse().unwrap());
        let orders = bff_backends::OrdersClient::new(&config).unwrap();
        let owner = format!("user:{user_id}");
        orders.list(&bff_upstream::CallContext::new("test"), &owner, page_size, None, &[]).await.unwrap()
    }

    /// The first demo user with at least `min` orders (the seeded data decides who), then resets
    /// the call records so the lookup does not count.
    pub async fn user_with_orders(&self, min: u32) -> String {
        for n in 1..=50 {
            let user_id = format!("u-{n}");
            if self.orders_of(&user_id, min).await.orders.len() == min as usize {
                self.reset().await;
                return user_id;
            }
        }
        panic!("no demo user among the first 50 has {min} orders");
    }

    pub async fn reset(&self) {
        let response = self.http.post(Self::url(self.stack.demo.addrs.control, "/reset")).send().await.unwrap();
        assert!(response.status().is_success(), "reset: {}", response.status());
    }

    pub async fn set_faults(&self, service: &str, faults: Value) {
        let url = Self::url(self.stack.demo.addrs.control, &format!("/faults/{service}"));
        let response = self.http.put(url).json(&faults).send().await.unwrap();
        assert!(response.status().is_success(), "faults for {service}: {}", response.status());
    }
}

/// The status of `GET path` sent byte for byte as given, with no client-side URL normalisation.
pub async fn raw_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status_line = response.lines().next().unwrap_or_default();
    status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no status: {response}"))
}

/// A path-wise view of a JSON value, for messages.
pub fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
    value.pointer(pointer).unwrap_or_else(|| panic!("no {pointer} in {value:#}"))
}

/// Generous bound for "answers promptly" on a busy two-core machine.
pub const PROMPT: Duration = Duration::from_secs(2);

/// This process's resident memory, from `/proc/self/status`.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS in kB");
    kib * 1024
}

/// A loopback address that refuses connections for as long as the socket lives: bound, so no
/// other process is handed the port, but not listening.
pub fn refusing_addr() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// The project's Redis (`REDIS_URL`, else 127.0.0.1:6379), or a failure that says how to start one.
pub async fn shared_redis() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let reachable = match redis::Client::open(url.as_str()) {
        Ok(client) => client.get_multiplexed_async_connection().await.is_ok(),
        Err(_) => false,
    };
    assert!(
        reachable,
        "this test needs Redis at {url} (set REDIS_URL to use another); start one with \
         `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no`"
    );
    url
}

/// A string no other run of these tests has used: Redis outlives test runs.
pub fn unique() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{nanos:x}-{:x}", std::process::id())
}
