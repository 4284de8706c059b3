//! The core's inbound stack, as every BFF serves it: overload protection, connection hygiene, and
//! refusing a request before its body is read.

use std::net::SocketAddr;
use std::time::Duration;

use bff_gateway::config::ServerConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestStack, rss_bytes};

/// Serves `router` under `server`'s limits on a free port until the test ends.
async fn serve(router: axum::Router, mut server: ServerConfig) -> SocketAddr {
    server.listen = Some("127.0.0.1:0".parse().unwrap());
    let (addr, _task) = bff_platform::spawn_server_with(router, &server, std::future::pending()).await.unwrap();
    addr
}

/// A mobile BFF against `t`'s demo with `tweak` applied to its server settings, on a free port.
/// Coalescing is off, so each admitted request is one backend call the tests can count.
async fn mobile_with(t: &TestStack, tweak: impl FnOnce(&mut ServerConfig)) -> SocketAddr {
    let mut config = bff_platform::mobile_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(5));
    tweak(&mut config.server);
    for (_, upstream) in config.upstreams.0.iter_mut() {
        upstream.coalesce = false;
    }
    serve(mobile_bff::app(config.clone()).unwrap(), config.server).await
}

/// At ten times the concurrency limit with a slow backend, every request is answered: at
/// most `limit` are served, the rest get an immediate 503 `OVERLOADED` with `Retry-After`, all of
/// which arrive before any served request could finish, and memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_requests_are_shed_at_once() {
    const LIMIT: usize = 32;
    let t = TestStack::start().await;
    let addr = mobile_with(&t, |server| server.max_concurrent_requests = LIMIT).await;
    let token = t.token("u-1", "mobile");
    // Warm the JWKS so the burst measures the stack, not the first key fetch.
    let warm = t.graphql(addr, Some(&token), "{ home { user { id name } } }", json!({})).await;
    assert_eq!(warm.status, 200, "{:#}", warm.body);
    // Long enough that every request of the burst is in before the first served one finishes.
    const BACKEND_LATENCY: Duration = Duration::from_secs(2);
    t.set_faults("users", json!({ "latency_ms": BACKEND_LATENCY.as_millis() as u64 })).await;
    let calls_before = t.call_count("users").await;

    let rss_before = rss_bytes();
    let requests = (0..LIMIT * 10).map(|_| {
        let request = t
            .http
            .post(TestStack::url(addr, "/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": "{ home { user { id name } } }" }));
        async move {
            let started = std::time::Instant::now();
            let reply = TestStack::reply(request).await;
            (started.elapsed(), reply)
        }
    });
    let replies = futures::future::join_all(requests).await;
    let rss_after = rss_bytes();

    let served = replies.iter().filter(|(_, r)| r.status == 200).count();
    let shed: Vec<_> = replies.iter().filter(|(_, r)| r.status == 503).collect();
    assert_eq!(served + shed.len(), LIMIT * 10, "every request gets 200 or 503");
    assert!(served > 0 && served <= LIMIT, "served {served} with a limit of {LIMIT}");
    for (elapsed, reply) in &shed {
        assert_eq!(reply.error_codes(), ["OVERLOADED"], "{:#}", reply.body);
        assert_eq!(reply.header("retry-after"), Some("1"));
        // Shed at once, not queued behind the slow backend.
        assert!(*elapsed < BACKEND_LATENCY, "a 503 took {elapsed:?}");
    }
    // The backend saw only what was admitted.
    assert_eq!(t.call_count("users").await - calls_before, served as u64);
    let mut shed_ms: Vec<u128> = shed.iter().map(|(elapsed, _)| elapsed.as_millis()).collect();
    shed_ms.sort_unstable();
    let grown = rss_after.saturating_sub(rss_before);
    println!(
        "overload: {served} served, {} shed (503 in {} ms median, {} ms max); RSS {} -> {} MiB (+{} MiB) for {} requests",
        shed.len(),
        shed_ms[shed_ms.len() / 2],
        shed_ms[shed_ms.len() - 1],
        rss_before >> 20,
        rss_after >> 20,
        grown >> 20,
        LIMIT * 10
    );
    assert!(grown < 64 << 20, "RSS grew by {} MiB", grown >> 20);
}

/// A client that sends its headers a byte at a time is cut off at the header-read timeout.
#[tokio::test]
async fn a_connection_that_dribbles_its_headers_is_closed() {
    let t = TestStack::start().await;
    let addr = mobile_with(&t, |server| server.header_read_timeout = Duration::from_millis(300)).await;

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut sink = Vec::new();
        read.read_to_end(&mut sink).await
    });
    write.write_all(b"GET /healthz HTTP/1.1\r\nhost: bff\r\n").await.unwrap();
    // Forty bytes over four seconds, never finishing the head: far past the 300 ms allowed.
    let mut sent = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if reader.is_finished() || write.write_all(b"x").await.is_err() {
            break;
        }
        sent += 1;
    }
    assert!(reader.is_finished(), "still open after dribbling {sent} bytes");
    assert!(sent < 40, "the server never closed the connection");
}

/// Raw HTTP/1.1: the status of a request whose head is sent but whose body never is. A server
/// that read the body first would never answer.
async fn status_without_sending_the_body(addr: SocketAddr, head: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut response))
        .await
        .expect("answered without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&response[..n]);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text}"))
}

#[tokio::test]
async fn requests_are_refused_before_their_body_is_read() {
    let t = TestStack::start().await;
    let mobile = t.stack.mobile;
    let head = |length: usize, auth: &str| {
        format!(
            "POST /graphql HTTP/1.1\r\nhost: bff\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n{auth}\r\n"
        )
    };
    // Declared over the limit: 413 whoever asks.
    assert_eq!(status_without_sending_the_body(mobile, &head(10 << 20, "")).await, 413);
    // Within the limit but unauthenticated: 401, the body still unsent.
    assert_eq!(status_without_sending_the_body(mobile, &head(1000, "")).await, 401);
    let partner = t.stack.partner;
    let head = "POST /v1/orders HTTP/1.1\r\nhost: bff\r\ncontent-type: application/json\r\ncontent-length: 1000\r\nx-api-key: wrong\r\n\r\n";
    assert_eq!(status_without_sending_the_body(partner, head).await, 401);
    assert_eq!(t.call_count("users").await + t.call_count("orders").await, 0);
}

/// A streamed body (chunked, no `Content-Length`) is cut at the limit, with the same branded 413.
#[tokio::test]
async fn a_streamed_body_is_cut_at_the_limit() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    let mut stream = tokio::net::TcpStream::connect(t.stack.mobile).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: bff\r\ncontent-type: application/json\r\nauthorization: Bearer {token}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // 1 MiB in 16 KiB chunks, four times the limit; the server may stop reading (and close) early.
    let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
    for _ in 0..64 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("PAYLOAD_TOO_LARGE"), "{text}");
    assert_eq!(t.call_count("users").await, 0);
}

/// The overload stage is part of the core's shared stack, not of any one BFF: all three shed in
/// their own error format, with no line of BFF code for it.
#[tokio::test]
async fn a_stage_of_the_shared_stack_is_seen_by_all_three_bffs() {
    let t = TestStack::start().await;
    let demo = &t.stack.demo;
    let listen = "127.0.0.1:0".parse().unwrap();
    let timeout = Duration::from_secs(5);
    let mut mobile = bff_platform::mobile_config(demo, listen, timeout);
    let mut web = bff_platform::web_config(demo, listen, timeout);
    let mut partner = bff_platform::partner_config(demo, listen, timeout, bff_platform::DEMO_PARTNER_API_KEY);
    for server in [&mut mobile.server, &mut web.server, &mut partner.server] {
        server.max_concurrent_requests = 1;
    }
    let mobile = serve(mobile_bff::app(mobile.clone()).unwrap(), mobile.server).await;
    let web = serve(web_bff::app(web.clone()).unwrap(), web.server).await;
    let partner = serve(partner_bff::app(partner.clone()).unwrap(), partner.server).await;
    for service in ["users", "catalog"] {
        t.set_faults(service, json!({ "latency_ms": 1000 })).await;
    }
    let (mobile_token, web_token) = (t.token("u-1", "mobile"), t.token("u-1", "web"));
    let graphql = |addr: SocketAddr, token: &str, query: &str| {
        t.http.post(TestStack::url(addr, "/graphql")).bearer_auth(token).json(&json!({ "query": query }))
    };
    let product = || {
        t.http.get(TestStack::url(partner, "/v1/products/p-1")).header("x-api-key", bff_platform::DEMO_PARTNER_API_KEY)
    };
    let home = "{ home { user { id name } } }";
    for (bff, backend, first, second) in [
        ("mobile", "users", graphql(mobile, &mobile_token, home), graphql(mobile, &mobile_token, home)),
        ("web", "users", graphql(web, &web_token, "{ me { name } }"), graphql(web, &web_token, "{ me { name } }")),
        ("partner", "catalog", product(), product()),
    ] {
        let before = t.call_count(backend).await;
        let slow = tokio::spawn(TestStack::reply(first));
        // The first request holds the only slot once its backend has it (and sleeps on it).
        for attempt in 0.. {
            if t.call_count(backend).await > before {
                break;
            }
            assert!(attempt < 1000, "{bff}: the first request never reached {backend}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let shed = TestStack::reply(second).await;
        assert_eq!(shed.status, 503, "{bff}: {:#}", shed.body);
        // Busy to its limit, it is still alive and ready: the probes are outside the limit.
        let addr = if bff == "mobile" {
            mobile
        } else if bff == "web" {
            web
        } else {
            partner
        };
        assert_eq!(t.get(addr, "/healthz", &[]).await.status, 200, "{bff}");
        assert_eq!(t.get(addr, "/readyz", &[]).await.status, 200, "{bff}");
        assert_eq!(shed.header("retry-after"), Some("1"), "{bff}");
        match bff {
            "partner" => {
                assert_eq!(shed.header("content-type"), Some("application/problem+json"));
                assert_eq!(shed.body["code"], "OVERLOADED");
                assert_eq!(shed.body["request_id"].as_str(), shed.header("x-request-id"));
            }
            _ => {
                assert_eq!(shed.error_codes(), ["OVERLOADED"], "{bff}");
                assert_eq!(shed.body["errors"][0]["extensions"]["requestId"].as_str(), shed.header("x-request-id"));
            }
        }
        assert_eq!(slow.await.unwrap().status, 200, "{bff}");
    }
}

/// A keep-alive connection with nothing in flight is closed after the idle timeout.
#[tokio::test]
async fn an_idle_connection_is_closed() {
    let t = TestStack::start().await;
    let addr = mobile_with(&t, |server| server.idle_timeout = Duration::from_millis(300)).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: bff\r\n\r\n").await.unwrap();
    let mut received = Vec::new();
    // Reads the answer, then waits: the server closes the connection rather than the test.
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received)).await;
    assert!(closed.is_ok(), "the idle connection was never closed");
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
}

/// Past the connection cap, a new client waits in the kernel's queue: it is served only once
/// another connection closes.
#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let t = TestStack::start().await;
    let addr = mobile_with(&t, |server| server.max_connections = 2).await;
    let first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nhost: bff\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = vec![0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut answer)).await;
    assert!(early.is_err(), "served past the cap of 2 connections");
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut answer))
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
}

/// On the shutdown signal a replica first reports itself draining while it still serves, so a
/// load balancer stops sending before it stops accepting.
#[tokio::test]
async fn a_draining_replica_is_not_ready_but_still_answers() {
    let t = TestStack::start().await;
    let mut config = bff_platform::mobile_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
    config.server.drain_delay = Duration::from_secs(1);
    config.server.listen = Some("127.0.0.1:0".parse().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) =
        bff_platform::spawn_server_with(mobile_bff::app(config.clone()).unwrap(), &config.server, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    assert_eq!(t.get(addr, "/readyz", &[]).await.status, 200);
    stop.send(()).unwrap();
    let ready = t.get(addr, "/readyz", &[]).await;
    assert_eq!(ready.status, 503, "{:#}", ready.body);
    assert_eq!(ready.body["failed"], json!(["not-draining"]));
    assert_eq!(t.get(addr, "/healthz", &[]).await.status, 200);
    server.await.unwrap().unwrap();
    assert!(t.http.get(TestStack::url(addr, "/healthz")).send().await.is_err(), "still accepting after the drain");
}

/// A request head past `max_header_bytes` is refused by the server itself; the handler never
/// sees it.
#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let t = TestStack::start().await;
    let addr = mobile_with(&t, |server| server.max_header_bytes = 16 * 1024).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("GET /healthz HTTP/1.1\r\nhost: bff\r\nx-filler: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = stream.write_all(head.as_bytes()).await;
    let mut response = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    // The server ends the connection: with a 431, or, when the kernel resets the connection on the
    // unread rest of the head, before the client reads it.
    assert!(ended.is_ok(), "the server neither answered nor closed the connection");
    let text = String::from_utf8_lossy(&response);
    assert!(!text.starts_with("HTTP/1.1 200"), "a 64 KiB head was served: {text}");
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
    // And it goes on serving: an empty answer was a refusal, not a crash.
    assert_eq!(t.get(addr, "/healthz", &[]).await.status, 200);
}

/// A probe at the slot after authentication: answers at once with what it sees, never reading
/// the body or calling what is below it.
#[derive(Clone)]
struct SeenAfterAuthentication;

impl bff_gateway::inbound::stage::Stage for SeenAfterAuthentication {
    async fn run<S: bff_gateway::inbound::stage::Downstream>(
        &self,
        request: axum::extract::Request,
        _next: bff_gateway::inbound::stage::Next<S>,
    ) -> axum::response::Response {
        let identity = request.extensions().get::<std::sync::Arc<bff_gateway::Identity>>();
        let route = request.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
        let identity_headers: Vec<&str> =
            bff_upstream::headers::IDENTITY.into_iter().filter(|name| request.headers().contains_key(*name)).collect();
        axum::Json(json!({
            "user": identity.and_then(|i| i.user_id.clone()),
            "client": identity.map(|i| i.client_id.clone()),
            "route": route,
            "identity_headers": identity_headers,
        }))
        .into_response()
    }
}

use axum::response::IntoResponse as _;

/// Sends `head` and the first bytes of a body it declares longer, then reads the answer: one
/// that comes back was given before anything waited for the rest of the body.
async fn answer_before_the_body(addr: SocketAddr, head: &str) -> serde_json::Value {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{head}content-length: 1000\r\nconnection: close\r\n\r\n{{\"query\":").as_bytes())
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            buffer.extend_from_slice(&chunk[..n]);
            if n == 0 || buffer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buffer).into_owned();
    assert!(read.is_ok(), "no answer while the body was incomplete: {text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

/// In all three BFFs, a stage at the slot after authentication sees the verified identity and
/// the route template, and runs before anything reads the body (the request's body never
/// arrives in full, and the answer comes anyway).
#[tokio::test]
async fn a_stage_after_authentication_sees_identity_and_route_before_the_body() {
    use bff_gateway::inbound::stage::StageLayer;

    let t = TestStack::start().await;
    let listen = "127.0.0.1:0".parse().unwrap();
    let probe = || StageLayer::new(SeenAfterAuthentication);
    let mobile = mobile_bff::stack(bff_platform::mobile_config(&t.stack.demo, listen, Duration::from_secs(2))).unwrap();
    let web = web_bff::stack(bff_platform::web_config(&t.stack.demo, listen, Duration::from_secs(2))).unwrap();
    let partner = partner_bff::stack(bff_platform::partner_config(
        &t.stack.demo,
        listen,
        Duration::from_secs(2),
        bff_platform::DEMO_PARTNER_API_KEY,
    ))
    .unwrap();
    let server = ServerConfig::new(listen);
    let mobile = serve(mobile.after_authentication("probe", probe()).build(), server.clone()).await;
    let web = serve(web.after_authentication("probe", probe()).build(), server.clone()).await;
    let partner = serve(partner.after_authentication("probe", probe()).build(), server).await;

    for (addr, audience) in [(mobile, "mobile"), (web, "web")] {
        let token = t.token("u-7", audience);
        // Client-sent identity headers are gone before any stage of the BFF's can read them.
        let head = format!(
            "POST /graphql HTTP/1.1\r\nhost: bff\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\nx-user-id: u-999\r\nx-user-scopes: admin\r\n"
        );
        let seen = answer_before_the_body(addr, &head).await;
        assert_eq!(seen["user"], "u-7", "{audience}: {seen}");
        assert_eq!(seen["route"], "/graphql", "{audience}: {seen}");
        assert_eq!(seen["identity_headers"], json!([]), "{audience}: {seen}");
    }
    let key = bff_platform::DEMO_PARTNER_API_KEY;
    let head =
        format!("POST /v2/orders HTTP/1.1\r\nhost: bff\r\nx-api-key: {key}\r\ncontent-type: application/json\r\n");
    let seen = answer_before_the_body(partner, &head).await;
    assert_eq!((seen["client"].as_str(), seen["route"].as_str()), (Some("demo-partner"), Some("/v2/orders")), "{seen}");
    assert!(seen["user"].is_null());
    // Nothing below the slot ran: no backend was called for any of them.
    assert_eq!(t.call_count("orders").await, 0);
}

/// The request deadline (`[server] request_timeout`) holds whatever the handler waits on: here a
/// client that sends its headers and then too little of the body it declared. The answer is 504
/// `REQUEST_TIMEOUT` at the deadline, not a connection held open.
#[tokio::test]
async fn a_request_past_its_deadline_gets_request_timeout() {
    let t = TestStack::start().await;
    let timeout = Duration::from_millis(300);
    let addr = mobile_with(&t, |server| server.request_timeout = timeout).await;
    let token = t.token("u-1", "mobile");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: bff\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"query\":"
    );
    let started = std::time::Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.unwrap().unwrap();
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
    assert!(elapsed >= timeout && elapsed < Duration::from_secs(2), "{elapsed:?}");
}
