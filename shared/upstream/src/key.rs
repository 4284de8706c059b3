//! The one key under which the cache stores an answer and concurrent calls share one.
//!
//! It is made from what the transports put on the wire, never from a description of the call
//! that could drift from it: the method, the path segments and query pairs (the `fields` asked
//! for among them), the body, or the gRPC method and its encoded message (field mask included);
//! and, unless the call is declared public, every forwarded header that can change the answer
//! ([`CallContext::answer_headers`](crate::CallContext), the same function the transports send).
//! Each part is length-prefixed, so no two different calls can spell the same key.

use std::sync::Arc;

use crate::{Target, UpstreamRequest};

/// Whose answer a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This caller's: the identity headers are part of the key.
    Caller,
    /// Everyone's: for calls declared public, whose answers do not depend on who asks.
    Public,
}

/// An answer's key; the full bytes, not a hash of them, so two keys are equal only when the
/// calls are.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AnswerKey(Arc<[u8]>);

impl std::fmt::Debug for AnswerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnswerKey({} bytes)", self.0.len())
    }
}

impl AnswerKey {
    pub fn of(request: &UpstreamRequest, scope: Scope) -> Self {
        let mut key = Vec::with_capacity(128);
        let mut part = |bytes: &[u8]| {
            key.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
            key.extend_from_slice(bytes);
        };
        match &request.call.target {
            Target::Rest { method, path, query, body } => {
                part(b"rest");
                part(method.as_str().as_bytes());
                part(&path.len().to_le_bytes());
                for segment in path {
                    part(segment.as_bytes());
                }
                part(&query.len().to_le_bytes());
                for (name, value) in query {
                    part(name.as_bytes());
                    part(value.as_bytes());
                }
                part(body.as_deref().unwrap_or_default());
            }
            Target::Grpc { path, message } => {
                part(b"grpc");
                part(path.as_bytes());
                part(message);
            }
        }
        match scope {
            Scope::Public => part(b"public"),
            Scope::Caller => {
                part(b"caller");
                for (name, value) in request.cx.answer_headers() {
                    part(name.as_bytes());
                    part(value.as_bytes());
                }
            }
        }
        Self(key.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Call, CallContext, Credential, Identity};

    fn user(id: &str, scopes: &[&str]) -> Arc<Identity> {
        Arc::new(Identity {
            user_id: Some(id.to_owned()),
            client_id: "mobile".to_owned(),
            credential: Credential::User,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: None,
        })
    }

    fn request(cx: CallContext, call: Call) -> UpstreamRequest {
        UpstreamRequest::new(cx, call)
    }

    #[test]
    fn every_forwarded_header_that_can_change_the_answer_is_in_the_caller_key() {
        let call = || Call::get("GET /products/{id}", ["products", "p-1"]);
        let key = |cx: CallContext, scope| AnswerKey::of(&request(cx, call()), scope);
        let alice = key(CallContext::new("r1").with_identity(user("alice", &["profile"])), Scope::Caller);
        // Another request id changes nothing the backend answers from.
        assert_eq!(alice, key(CallContext::new("r2").with_identity(user("alice", &["profile"])), Scope::Caller));
        // Another user, or the same user with other scopes: another answer.
        assert_ne!(alice, key(CallContext::new("r1").with_identity(user("bob", &["profile"])), Scope::Caller));
        assert_ne!(alice, key(CallContext::new("r1").with_identity(user("alice", &["orders"])), Scope::Caller));
        assert_ne!(alice, key(CallContext::new("r1"), Scope::Caller), "anonymous is someone else too");
        // Declared public: one answer for everyone, and never the key of a caller's own.
        let public = key(CallContext::new("r1").with_identity(user("alice", &[])), Scope::Public);
        assert_eq!(public, key(CallContext::new("r2").with_identity(user("bob", &[])), Scope::Public));
        assert_ne!(public, key(CallContext::new("r1"), Scope::Caller));
    }

    #[test]
    fn what_is_asked_for_is_in_the_key() {
        let cx = || CallContext::new("r");
        let key = |call: Call| AnswerKey::of(&request(cx(), call), Scope::Public);
        let one = key(Call::get("GET /products/{id}", ["products", "p-1"]));
        assert_ne!(one, key(Call::get("GET /products/{id}", ["products", "p-2"])));
        assert_ne!(one, key(Call::get("GET /products/{id}", ["products", "p-1"]).fields(&["name"])));
        // Segments are not joined text: `a/b` as one segment is not `a` then `b`.
        assert_ne!(key(Call::get("t", ["products", "a/b"])), key(Call::get("t", ["products", "a", "b"])));
        let grpc = |id: &str| {
            // prost encodes a bare `String` as a message with the string in field 1.
            key(Call::grpc("GetOrder", "/shop.orders.v1.OrdersService/GetOrder", &id.to_owned()))
        };
        assert_ne!(grpc("o-1"), grpc("o-2"));
        assert_eq!(grpc("o-1"), grpc("o-1"));
    }
}
