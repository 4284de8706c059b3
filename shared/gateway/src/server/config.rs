//! `[server]`: the listener, connection hygiene and the limits every request meets. CORS
//! (`[server.cors]`) and trusted proxies are read here too, since they are about who may connect,
//! but their types and their stages live with their concerns in [`crate::inbound`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Problems, Validate, join};
use crate::inbound::client_addr::IpBlock;
use crate::inbound::cors::CorsConfig;

/// Whole-request budget when the config says nothing.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body we read when the config says nothing: generous for GraphQL documents.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 256 * 1024;
/// How long in-flight requests may take to finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long a replica keeps serving, already reporting itself not ready, after a shutdown
/// signal: zero stops at once; behind a load balancer, its probe interval or a little more.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::ZERO;
/// Requests one BFF serves at once; past it, new ones get an immediate 503 `OVERLOADED`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 256;
/// What the 503 `OVERLOADED` tells clients to wait before trying again.
pub const DEFAULT_OVERLOAD_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Open client connections one BFF holds; past it, new ones wait in the kernel's accept queue.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// How long a client may take to send a request's headers (HTTP/1).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may sit with no request in flight and no bytes moving.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Concurrent streams one HTTP/2 connection may open.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Largest request head (request line and headers), HTTP/1 and HTTP/2 alike.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// Longest any server duration may be: past it, a setting is a mistake (and deadlines overflow).
const MAX_SERVER_DURATION: Duration = Duration::from_secs(3600);
/// Most connections or requests a setting may allow: far past what one process serves.
const MAX_SERVER_COUNT: usize = 1_000_000;
/// hyper refuses HTTP/1 read buffers smaller than this.
const MIN_HEADER_BYTES: usize = 8192;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the BFF listens. No default: a deployment that lost it must not come up somewhere
    /// else; validation reports it missing.
    pub listen: Option<SocketAddr>,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`. Off when unset; keep it off the
    /// public network (a loopback or pod-internal address).
    pub admin_listen: Option<SocketAddr>,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    pub max_concurrent_requests: usize,
    #[serde(with = "humantime_serde")]
    pub overload_retry_after: Duration,
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    pub max_header_bytes: usize,
    /// Terminate TLS here (`[server.tls]`); without it the BFF speaks plain HTTP, for a load
    /// balancer that terminates TLS in front of it.
    pub tls: Option<TlsConfig>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed. From anyone else,
    /// the connection's peer is the client, whatever the header says.
    pub trusted_proxies: Vec<IpBlock>,
    /// Client addresses (or CIDR blocks) whose answers carry `Server-Timing` (the gateway's own
    /// time, the time waiting on backends, the total): it reveals how the BFF works inside, so
    /// it is for a company's own developers, never everyone. None by default.
    pub server_timing_for: Vec<IpBlock>,
    /// Browser origins allowed to call this BFF (`[server.cors]`); none by default.
    pub cors: Option<CorsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: None,
            admin_listen: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            drain_delay: DEFAULT_DRAIN_DELAY,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            overload_retry_after: DEFAULT_OVERLOAD_RETRY_AFTER,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            tls: None,
            trusted_proxies: Vec::new(),
            server_timing_for: Vec::new(),
            cors: None,
        }
    }
}

impl ServerConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self { listen: Some(listen), ..Self::default() }
    }

    /// The address to bind. A validated config always has one; a config built in code without
    /// one binds an ephemeral loopback port.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

impl Validate for ServerConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        problems.check(path, "listen", self.listen.is_some(), "must be set: the address this BFF listens on");
        problems.check(
            path,
            "admin_listen",
            self.admin_listen.is_none() || self.admin_listen != self.listen,
            "must differ from `listen`: metrics and probes get a listener of their own",
        );
        for (field, value) in [
            ("request_timeout", self.request_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("overload_retry_after", self.overload_retry_after),
        ] {
            let ok = !value.is_zero() && value <= MAX_SERVER_DURATION;
            problems.check(path, field, ok, "must be between 1ms and 1h");
        }
        for (field, value) in [("shutdown_grace", self.shutdown_grace), ("drain_delay", self.drain_delay)] {
            problems.check(path, field, value <= MAX_SERVER_DURATION, "must be at most 1h");
        }
        problems.check(path, "body_limit_bytes", self.body_limit_bytes >= 1024, "must be at least 1024");
        for (field, value) in
            [("max_concurrent_requests", self.max_concurrent_requests), ("max_connections", self.max_connections)]
        {
            problems.check(path, field, (1..=MAX_SERVER_COUNT).contains(&value), "must be between 1 and 1000000");
        }
        problems.check(
            path,
            "http2_max_concurrent_streams",
            self.http2_max_concurrent_streams >= 1,
            "must be at least 1",
        );
        problems.check(
            path,
            "max_header_bytes",
            (MIN_HEADER_BYTES..=u32::MAX as usize).contains(&self.max_header_bytes),
            "must be at least 8192",
        );
        if let Some(tls) = &self.tls
            && let Err(error) = super::tls::server_config(tls)
        {
            problems.push(join(path, "tls"), error);
        }
        if let Some(cors) = &self.cors {
            cors.validate(&join(path, "cors"), problems);
        }
    }
}

/// A certificate chain and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_with_only_its_listener_is_the_documented_defaults() {
        let config: ServerConfig = toml::from_str("listen = \"0.0.0.0:8080\"").unwrap();
        assert_eq!(config.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(config.max_header_bytes, DEFAULT_MAX_HEADER_BYTES);
        let mut problems = Problems::default();
        config.validate("server", &mut problems);
        assert!(problems.keys().is_empty());
        // The listener has no default.
        let mut problems = Problems::default();
        toml::from_str::<ServerConfig>("").unwrap().validate("server", &mut problems);
        assert_eq!(problems.keys(), ["server.listen"]);
    }

    #[test]
    fn out_of_range_values_are_reported_by_key_path() {
        let config: ServerConfig =
            toml::from_str("listen = \"127.0.0.1:0\"\nrequest_timeout = \"0s\"\nmax_header_bytes = 100").unwrap();
        let mut problems = Problems::default();
        config.validate("server", &mut problems);
        assert_eq!(problems.keys(), ["server.request_timeout", "server.max_header_bytes"]);
    }
}
