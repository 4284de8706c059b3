use std::time::Duration;

use bytes::Bytes;

use crate::CallContext;

/// What a call asks of its backend, independent of the transport that carries it.
#[derive(Debug, Clone)]
pub enum Target {
    /// JSON over HTTP: `method /segment/segment?query`. Each segment is percent-encoded by the
    /// transport, so an id from a client can only ever name one resource at its place.
    Rest { method: http::Method, path: Vec<String>, query: Vec<(&'static str, String)>, body: Option<Bytes> },
    /// One unary RPC: the full method path (`/pkg.Service/Method`) and the encoded request message.
    Grpc { path: &'static str, message: Bytes },
}

/// May a cache layer answer this call from a stored response, and for how long?
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CachePolicy {
    /// Always ask the backend.
    #[default]
    NoStore,
    /// Shared by every caller with the same identity for up to this long.
    Private(Duration),
    /// The same for everyone (catalog data, say) for up to this long.
    Public(Duration),
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
    /// Sending it twice has the effect of sending it once (reads, and writes with a key).
    pub idempotent: bool,
    pub cache: CachePolicy,
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
            cache: CachePolicy::NoStore,
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
            cache: CachePolicy::NoStore,
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
            cache: CachePolicy::NoStore,
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

    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }
}

/// What travels down an [`Upstream`](crate::Upstream) stack: the call and the request it serves.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub cx: CallContext,
    pub call: Call,
    /// Set by the deadline layer: how long this attempt may take. Transports tell the backend.
    pub budget: Option<Duration>,
}
