//! Every error code a client can see, once, with its HTTP status, who raises it, and whether it
//! carries `Retry-After`. Rendering reads the status from here, and the README's table of codes
//! is generated from here by a test. A new code is one line.

use http::StatusCode;

/// Who raises a code: the gateway itself, a backend (relayed), or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaisedBy {
    Gateway,
    Backend,
    Either,
}

/// Whether an answer with this code says when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Never,
    Always,
    /// When the backend said.
    WhenKnown,
}

macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])+ $variant:ident = ($code:literal, $status:literal, $by:ident, $retry:ident), )+) => {
        /// A stable, documented error code (`extensions.code` in GraphQL, `code` in problem+json).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl ErrorCode {
            /// Every code, in the README's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)+ }
            }

            /// The status of an answer with this code. For the GraphQL codes, the status under
            /// `application/graphql-response+json`; `application/json` answers 200.
            pub fn status(self) -> StatusCode {
                let status = match self { $(ErrorCode::$variant => $status,)+ };
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }

            pub const fn raised_by(self) -> RaisedBy {
                match self { $(ErrorCode::$variant => RaisedBy::$by,)+ }
            }

            pub const fn retry_after(self) -> RetryAfter {
                match self { $(ErrorCode::$variant => RetryAfter::$retry,)+ }
            }

            /// What the code means, for the README's table.
            pub fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => concat!($($doc),+).trim(),)+ }
            }
        }
    };
}

error_codes! {
    /// No credential, or one that does not verify.
    Unauthenticated = ("UNAUTHENTICATED", 401, Gateway, Never),
    /// A verified caller without the scope, plan or kind of credential this needs.
    Forbidden = ("FORBIDDEN", 403, Gateway, Never),
    /// A malformed request, or one a backend refused as such.
    BadRequest = ("BAD_REQUEST", 400, Either, Never),
    /// No such route, or no such resource at the backend.
    NotFound = ("NOT_FOUND", 404, Either, Never),
    /// The path exists, the method does not (a GraphQL mutation by GET included).
    MethodNotAllowed = ("METHOD_NOT_ALLOWED", 405, Gateway, Never),
    /// `Accept` allows none of the media types this endpoint answers with.
    NotAcceptable = ("NOT_ACCEPTABLE", 406, Gateway, Never),
    /// `Accept` names an API version this BFF does not serve; the answer lists those it does.
    UnsupportedVersion = ("UNSUPPORTED_VERSION", 406, Gateway, Never),
    /// The body's `Content-Type` is not one this endpoint reads.
    UnsupportedMediaType = ("UNSUPPORTED_MEDIA_TYPE", 415, Gateway, Never),
    /// A JSON body that breaks the published schema; `errors` lists each violation.
    ValidationFailed = ("VALIDATION_FAILED", 422, Gateway, Never),
    /// An `Idempotency-Key` sent again with a different request.
    IdempotencyKeyReused = ("IDEMPOTENCY_KEY_REUSED", 422, Gateway, Never),
    /// An `Idempotency-Key` whose first request is still running.
    IdempotencyKeyInUse = ("IDEMPOTENCY_KEY_IN_USE", 409, Gateway, Never),
    /// A body over `[server] body_limit_bytes`.
    PayloadTooLarge = ("PAYLOAD_TOO_LARGE", 413, Gateway, Never),
    /// The whole request ran past `[server] request_timeout`.
    RequestTimeout = ("REQUEST_TIMEOUT", 504, Gateway, Never),
    /// This client address failed to authenticate too often (`[limits] failed_authentication`).
    TooManyFailedAttempts = ("TOO_MANY_FAILED_ATTEMPTS", 429, Gateway, Always),
    /// A limit of `[limits]` (or a partner plan's) is used up; the answer names it, and
    /// `RateLimit` says what is left of each limit that applied.
    RateLimited = ("RATE_LIMITED", 429, Gateway, Always),
    /// This replica serves `max_concurrent_requests` already; refused at once, never queued.
    Overloaded = ("OVERLOADED", 503, Gateway, Always),
    /// A backend did not answer within its budget.
    UpstreamTimeout = ("UPSTREAM_TIMEOUT", 504, Backend, Never),
    /// A backend (or a store the gateway keeps state in) is unreachable or overloaded.
    UpstreamUnavailable = ("UPSTREAM_UNAVAILABLE", 503, Backend, WhenKnown),
    /// A backend failed, or answered with something that does not decode.
    UpstreamError = ("UPSTREAM_ERROR", 502, Backend, Never),
    /// Something broke inside the gateway; the detail is logged, never sent.
    Internal = ("INTERNAL", 500, Gateway, Never),
    /// A GraphQL document over `max_document_bytes`.
    DocumentTooLarge = ("DOCUMENT_TOO_LARGE", 400, Gateway, Never),
    /// A GraphQL document over `max_tokens`.
    TooManyTokens = ("TOO_MANY_TOKENS", 400, Gateway, Never),
    /// A GraphQL operation over `max_depth`.
    QueryTooDeep = ("QUERY_TOO_DEEP", 400, Gateway, Never),
    /// A GraphQL operation over `max_cost`.
    QueryTooCostly = ("QUERY_TOO_COSTLY", 400, Gateway, Never),
    /// A GraphQL operation over `max_aliases`.
    TooManyAliases = ("TOO_MANY_ALIASES", 400, Gateway, Never),
    /// A GraphQL operation over `max_root_fields`.
    TooManyRootFields = ("TOO_MANY_ROOT_FIELDS", 400, Gateway, Never),
    /// A GraphQL operation over `max_fields` once fragments are expanded.
    TooManyFields = ("TOO_MANY_FIELDS", 400, Gateway, Never),
    /// A GraphQL field over `max_directives_per_field`.
    TooManyDirectives = ("TOO_MANY_DIRECTIVES", 400, Gateway, Never),
    /// A GraphQL batch over `max_batch` operations.
    BatchTooLarge = ("BATCH_TOO_LARGE", 400, Gateway, Never),
    /// The errors past `max_errors`, summed up in one.
    TooManyErrors = ("TOO_MANY_ERRORS", 200, Gateway, Never),
    /// A GraphQL document that does not parse.
    GraphQlParseFailed = ("GRAPHQL_PARSE_FAILED", 400, Gateway, Never),
    /// A GraphQL document that does not validate against the schema (or its variables).
    GraphQlValidationFailed = ("GRAPHQL_VALIDATION_FAILED", 400, Gateway, Never),
    /// Introspection asked for where `[graphql] introspection = false`.
    IntrospectionDisabled = ("INTROSPECTION_DISABLED", 400, Gateway, Never),
    /// An automatic persisted query's hash this replica does not know: send the query with it.
    PersistedQueryNotFound = ("PERSISTED_QUERY_NOT_FOUND", 400, Gateway, Never),
    /// A persisted query whose text does not hash to the hash sent with it.
    PersistedQueryHashMismatch = ("PERSISTED_QUERY_HASH_MISMATCH", 400, Gateway, Never),
    /// A persisted query sent where persisted queries are off.
    PersistedQueryNotSupported = ("PERSISTED_QUERY_NOT_SUPPORTED", 400, Gateway, Never),
    /// An operation outside the safelist, where only the manifest's operations run.
    OperationNotInSafelist = ("OPERATION_NOT_IN_SAFELIST", 400, Gateway, Never),
    /// A subscription sent over HTTP; subscriptions run over WebSocket on the same path.
    SubscriptionOverHttp = ("SUBSCRIPTION_OVER_HTTP", 400, Gateway, Never),
    /// A WebSocket connection past `max_per_connection` subscriptions.
    TooManySubscriptions = ("TOO_MANY_SUBSCRIPTIONS", 429, Gateway, Never),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The README's table of codes, as Markdown.
pub fn markdown_table() -> String {
    let mut table = String::from("| code | status | raised by | `Retry-After` | meaning |\n|---|---|---|---|---|\n");
    for code in ErrorCode::ALL {
        let by = match code.raised_by() {
            RaisedBy::Gateway => "gateway",
            RaisedBy::Backend => "backend",
            RaisedBy::Either => "gateway or backend",
        };
        let retry = match code.retry_after() {
            RetryAfter::Never => "",
            RetryAfter::Always => "yes",
            RetryAfter::WhenKnown => "when the backend sent one",
        };
        table.push_str(&format!("| `{code}` | {} | {by} | {retry} | {} |\n", code.status().as_u16(), code.meaning()));
    }
    table
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_is_defined_once() {
        let names: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "a code string is used by two variants");
        assert!(names.iter().all(|n| n.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')));
    }

    /// The README's table is this module's: on a mismatch the table is rewritten (review and
    /// commit it) and the test fails.
    #[test]
    fn the_readme_table_lists_every_code_with_its_status() {
        const START: &str = "<!-- error codes: generated from shared/gateway/src/error/codes.rs -->\n";
        const END: &str = "<!-- end of error codes -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let start = readme.find(START).expect("the README marks its table of error codes") + START.len();
        let end = start + readme[start..].find(END).expect("the table's end marker");
        let table = markdown_table();
        if readme[start..end] != table {
            std::fs::write(path, format!("{}{table}{}", &readme[..start], &readme[end..])).unwrap();
            panic!("README.md's table of error codes was out of date and has been rewritten; review and commit it");
        }
        for code in ErrorCode::ALL {
            let row = format!("| `{code}` | {} |", code.status().as_u16());
            assert!(readme.contains(&row), "README lacks {row}");
        }
    }
}
