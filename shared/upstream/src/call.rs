use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::CallContext;
use crate::key::{AnswerKey, Scope};
use crate::trace::CallTrace;

/// What a call asks of its backend, independent of the transport that carries it.
#[derive(Debug, Clone)]
pub enum Target {
    /// JSON over HTTP: `method /segment/segment?query`. Each segment is percent-encoded by the
    /// transport, so an id from a client can only ever name one resource at its place.
    Rest { method: http::Method, path: Vec<String>, query: Vec<(&'static str, String)>, body: Option<Bytes> },
    /// One unary RPC: the full method path (`/pkg.Service/Method`) and the encoded request message.
    Grpc { path: &'static str, message: Bytes },
}

/// One backend call, as data: every layer between a typed client and the wire can read it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation as a template: `GET /users/{id}`, `ListOrders`. Logs, metrics and spans use
    /// this, never the concrete path, so their labels stay bounded.
    pub operation: &'static str,
    pub target: Target,
    /// The fields asked for, when the backend can trim its answer; empty means all.
    pub fields: Vec<String>,
    /// Sending it twice has the effect of sending it once (reads, and writes with a key): only
    /// these are retried after a failure that reached the backend, or hedged.
    pub idempotent: bool,
    /// It changes nothing: only reads are answered from the cache, coalesced or mirrored; a
    /// successful call that is not a read is a mutation, and drops its caller's cached reads.
    pub read: bool,
}

impl Call {
    /// An idempotent `GET`.
    pub fn get(operation: &'static str, path: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let path = path.into_iter().map(Into::into).collect();
        Self {
            operation,
            target: Target::Rest { method: http::Method::GET, path, query: Vec::new(), body: None },
            fields: Vec::new(),
            idempotent: true,
            read: true,
        }
    }

    /// A request with a JSON body (`POST`, `PATCH`, ...). Not idempotent unless marked so.
    pub fn send_json(
        method: http::Method,
        operation: &'static str,
        path: impl IntoIterator<Item = impl Into<String>>,
        body: &impl serde::Serialize,
    ) -> Result<Self, serde_json::Error> {
        let path = path.into_iter().map(Into::into).collect();
        let body = Some(Bytes::from(serde_json::to_vec(body)?));
        Ok(Self {
            operation,
            target: Target::Rest { method, path, query: Vec::new(), body },
            fields: Vec::new(),
            idempotent: false,
            read: false,
        })
    }

    /// A unary RPC with an encoded request. Not idempotent unless marked so: the typed client
    /// knows which RPCs are reads.
    pub fn grpc(operation: &'static str, path: &'static str, message: &impl prost::Message) -> Self {
        Self {
            operation,
            target: Target::Grpc { path, message: Bytes::from(message.encode_to_vec()) },
            fields: Vec::new(),
            idempotent: false,
            read: false,
        }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        if let Target::Rest { query, .. } = &mut self.target {
            query.push((name, value.into()));
        }
        self
    }

    /// Asks only for `fields` (REST backends get `fields=a,b`; gRPC messages carry their own
    /// field mask, which the typed client sets).
    pub fn fields(mut self, fields: &[&str]) -> Self {
        self.fields = fields.iter().map(|f| (*f).to_owned()).collect();
        if let Target::Rest { query, .. } = &mut self.target
            && !fields.is_empty()
        {
            query.push(("fields", fields.join(",")));
        }
        self
    }

    /// Marks a write safe to send twice (a cancellation, a create with an idempotency key).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Marks a call (a gRPC read) as one that changes nothing: idempotent, and cacheable.
    pub fn read_only(mut self) -> Self {
        self.idempotent = true;
        self.read = true;
        self
    }
}

/// What travels down an [`Upstream`](crate::Upstream) stack: the call and the request it serves.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub cx: CallContext,
    pub call: Call,
    /// Set by the budget layer: when this call must be over. Transports tell the backend how long
    /// that leaves; the balancer ends an attempt there itself, so a hang counts against the
    /// instance that hung.
    pub deadline: Option<Instant>,
    /// What the layers decided for this call (cache status, attempts, instance), for its record.
    /// Shared by the attempts of one call.
    pub trace: CallTrace,
    /// An instance the balancer should not pick (a hedge goes somewhere else than its first try).
    pub avoid_instance: Option<usize>,
    /// The key, and its scope, under which the cache will store this call's answer: coalescing
    /// shares the call under the same one. Unset, coalescing uses the caller's key.
    pub shared_as: Option<(AnswerKey, Scope)>,
}

impl UpstreamRequest {
    pub fn new(cx: CallContext, call: Call) -> Self {
        Self { cx, call, deadline: None, trace: CallTrace::default(), avoid_instance: None, shared_as: None }
    }

    /// The time left until the call's deadline, if it has one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }
}

/// A backend's answer: the body, and what the backend said about caching it.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub body: Bytes,
    pub cache_control: CacheControl,
}

impl Answer {
    pub fn new(body: Bytes) -> Self {
        Self { body, cache_control: CacheControl::default() }
    }
}

/// The directives of a `Cache-Control` response header the cache obeys. gRPC answers carry none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `max-age`: store for at most this long (the configured TTL still caps it).
    pub max_age: Option<Duration>,
    /// `no-store` or `no-cache`: never answer from a stored copy.
    pub no_store: bool,
    /// `private`: only for the caller it was sent to, even when the call is declared public.
    pub private: bool,
}

impl CacheControl {
    /// Both sets of directives at once (two lines of the header): the stricter of each.
    pub fn and(self, other: Self) -> Self {
        let max_age = match (self.max_age, other.max_age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self { max_age, no_store: self.no_store || other.no_store, private: self.private || other.private }
    }

    /// Parses a `Cache-Control` value; unknown directives are ignored, as RFC 9111 asks.
    pub fn parse(value: &str) -> Self {
        let mut parsed = Self::default();
        for directive in value.split(',').map(str::trim) {
            let (name, argument) = directive.split_once('=').unwrap_or((directive, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "no-store" | "no-cache" => parsed.no_store = true,
                "private" => parsed.private = true,
                "max-age" => {
                    // An unreadable max-age means stale (RFC 9111 section 4.2.1): never store it.
                    let seconds = argument.trim().trim_matches('"').parse::<u64>().unwrap_or(0);
                    parsed.max_age = Some(Duration::from_secs(seconds));
                }
                _ => {}
            }
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives_are_read_as_rfc_9111_says() {
        let parsed = CacheControl::parse("public, max-age=30");
        assert_eq!(parsed, CacheControl { max_age: Some(Duration::from_secs(30)), no_store: false, private: false });
        assert!(CacheControl::parse("private, max-age=5").private);
        assert!(CacheControl::parse("No-Store").no_store);
        assert!(CacheControl::parse("no-cache").no_store);
        assert_eq!(CacheControl::parse("max-age=soon").max_age, Some(Duration::ZERO), "unreadable means stale");
        assert_eq!(CacheControl::parse("s-maxage=9, foo"), CacheControl::default());
        // Two lines of the header: the stricter of each directive.
        let both = CacheControl::parse("max-age=60").and(CacheControl::parse("private, max-age=5"));
        assert_eq!(both, CacheControl { max_age: Some(Duration::from_secs(5)), no_store: false, private: true });
    }
}
