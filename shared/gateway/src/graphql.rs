//! GraphQL execution for the GraphQL BFFs: request parsing with branded rejections, the request
//! context handed to resolvers, and the mapping of resolver errors to stable codes.

use std::sync::Arc;

use async_graphql::{ErrorExtensionValues, ObjectType, Schema, ServerError, SubscriptionType, Value};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{Html, IntoResponse, Response};
use bff_upstream::UpstreamError;

use crate::{GatewayError, RequestContext};

/// A GraphQL request body (`{"query", "operationName", "variables"}`).
pub struct GraphQlRequest(pub async_graphql::Request);

impl<S: Send + Sync> FromRequest<S> for GraphQlRequest {
    type Rejection = GatewayError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(GatewayError::BadRequest(
                "send the GraphQL request as `Content-Type: application/json`".into(),
            ));
        }
        let limit = crate::rest::BodyLimit::of(&request);
        let body = Bytes::from_request(request, state).await.map_err(|e| crate::rest::body_rejection(e, limit))?;
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|e| GatewayError::BadRequest(format!("the body is not a GraphQL request: {e}")))
    }
}

/// Runs one request: records its operation name for the access log, gives resolvers the
/// [`RequestContext`], and brands every error with a stable `extensions.code` and the request id.
/// Per-request data resolvers need (data loaders, say) is added to `request` by the caller.
pub async fn execute<Q, M, S>(schema: &Schema<Q, M, S>, cx: RequestContext, request: async_graphql::Request) -> Response
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let _ = cx.log.operation.set(operation_label(request.operation_name.as_deref()).to_owned());
    let request_id = cx.request_id.clone();
    let (query, operation_name) = (request.query.clone(), request.operation_name.clone());
    let mut response = schema.execute(request.data(cx)).await;
    for error in &mut response.errors {
        brand(error, &request_id);
        null_errored_field(&mut response.data, &error.path);
    }
    order::restore_selection_order(&mut response.data, &query, operation_name.as_deref());
    axum::Json(response).into_response()
}

/// async-graphql resolves sibling fields concurrently and writes them in the order they finish
/// (async-graphql#612). The spec asks for the order of the query, and clients, caches and diffs
/// are better served by responses that are the same bytes every time: this puts them back.
mod order {
    use async_graphql::indexmap::IndexMap;
    use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet};
    use async_graphql::{Name, Value};

    /// Fragments nest no deeper than this in a valid document; the guard only stops a loop.
    const MAX_FRAGMENT_DEPTH: usize = 32;

    pub fn restore_selection_order(data: &mut Value, query: &str, operation_name: Option<&str>) {
        if matches!(data, Value::Null) {
            return;
        }
        let Ok(document) = async_graphql::parser::parse_query(query) else { return };
        let operation = match (&document.operations, operation_name) {
            (DocumentOperations::Single(operation), _) => operation,
            (DocumentOperations::Multiple(operations), Some(name)) => match operations.get(name) {
                Some(operation) => operation,
                None => return,
            },
            (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
                match operations.values().next() {
                    Some(operation) => operation,
                    None => return,
                }
            }
            _ => return,
        };
        reorder(data, &[&operation.node.selection_set.node], &document);
    }

    fn reorder(value: &mut Value, sets: &[&SelectionSet], document: &ExecutableDocument) {
        match value {
            Value::List(items) => items.iter_mut().for_each(|item| reorder(item, sets, document)),
            Value::Object(fields) => {
                let mut keys = Vec::new();
                for set in sets {
                    collect(set, document, &mut keys, 0);
                }
                let mut unordered = std::mem::take(fields);
                let mut ordered = IndexMap::with_capacity(unordered.len());
                for (key, subsets) in keys {
                    if let Some(mut field) = unordered.shift_remove(key) {
                        reorder(&mut field, &subsets, document);
                        ordered.insert(key.clone(), field);
                    }
                }
                // Anything the walk did not name keeps its place at the end rather than vanish.
                ordered.extend(unordered);
                *fields = ordered;
            }
            _ => {}
        }
    }

    /// The response keys `set` selects, in order, each with every sub-selection merged under it.
    fn collect<'a>(
        set: &'a SelectionSet,
        document: &'a ExecutableDocument,
        keys: &mut Vec<(&'a Name, Vec<&'a SelectionSet>)>,
        depth: usize,
    ) {
        if depth > MAX_FRAGMENT_DEPTH {
            return;
        }
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let key = &field.node.response_key().node;
                    let subset = &field.node.selection_set.node;
                    match keys.iter_mut().find(|(seen, _)| *seen == key) {
                        Some((_, subsets)) => subsets.push(subset),
                        None => keys.push((key, vec![subset])),
                    }
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                        collect(&fragment.node.selection_set.node, document, keys, depth + 1);
                    }
                }
                Selection::InlineFragment(inline) => {
                    collect(&inline.node.selection_set.node, document, keys, depth + 1)
                }
            }
        }
    }
}

/// Longest operation name the access log keeps.
const MAX_LOGGED_OPERATION_NAME: usize = 64;

/// The operation name as the access log shows it: a GraphQL name of bounded length, or a fixed
/// word. The client chooses it, so anything else is not repeated into logs.
fn operation_label(name: Option<&str>) -> &str {
    match name {
        None => "anonymous",
        Some(name)
            if name.len() <= MAX_LOGGED_OPERATION_NAME
                && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            name
        }
        Some(_) => "(invalid)",
    }
}

/// async-graphql leaves a field that failed out of its object; the spec wants it there as `null`
/// (clients tell "failed" from "not asked for" by it). Only the exact path of an error is filled,
/// so fields skipped by `@skip`/`@include` stay absent.
fn null_errored_field(data: &mut Value, path: &[async_graphql::PathSegment]) {
    use async_graphql::PathSegment;
    let Some((last, parents)) = path.split_last() else { return };
    let mut node = data;
    for segment in parents {
        node = match (segment, node) {
            (PathSegment::Field(name), Value::Object(fields)) => match fields.get_mut(name.as_str()) {
                Some(child) => child,
                None => return,
            },
            (PathSegment::Index(i), Value::List(items)) => match items.get_mut(*i) {
                Some(child) => child,
                None => return,
            },
            _ => return,
        };
    }
    if let (PathSegment::Field(name), Value::Object(fields)) = (last, node) {
        fields.entry(async_graphql::Name::new(name)).or_insert(Value::Null);
    }
}

/// Gives the error its code and a client-safe message, and adds the request id.
fn brand(error: &mut ServerError, request_id: &Arc<str>) {
    let gateway_error = error.source::<GatewayError>().map(|e| (e.code(), e.public_message()));
    let upstream_error = || {
        error.source::<UpstreamError>().map(|e| {
            let e = GatewayError::Upstream(e.clone());
            (e.code(), e.public_message())
        })
    };
    let code = match gateway_error.or_else(upstream_error) {
        Some((code, message)) => {
            error.message = message;
            code
        }
        None => match error.extensions.as_ref().and_then(|x| x.get("code")) {
            Some(_) => return set_request_id(error, request_id),
            // No path: parse and validation errors, about the document the client sent.
            None if error.path.is_empty() => "BAD_REQUEST",
            None => {
                tracing::error!(request_id = &**request_id, message = %error.message, "unbranded resolver error");
                error.message = "internal error".to_owned();
                "INTERNAL"
            }
        },
    };
    error.extensions.get_or_insert_with(ErrorExtensionValues::default).set("code", code);
    set_request_id(error, request_id);
}

fn set_request_id(error: &mut ServerError, request_id: &str) {
    error.extensions.get_or_insert_with(ErrorExtensionValues::default).set("requestId", Value::from(request_id));
}

/// GraphiQL, pointed at `endpoint`.
pub fn graphiql(endpoint: &str) -> Html<String> {
    Html(async_graphql::http::GraphiQLSource::build().endpoint(endpoint).finish())
}

/// The [`RequestContext`] that [`execute`] put into every request.
pub fn request_context<'a>(ctx: &async_graphql::Context<'a>) -> Result<&'a RequestContext, GatewayError> {
    ctx.data::<RequestContext>().map_err(|e| GatewayError::Internal(e.message))
}

/// `value` as a page size, refused (before any backend call) when outside `1..=max`.
pub fn page_size(argument: &str, value: i32, max: u32) -> Result<u32, GatewayError> {
    u32::try_from(value)
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| GatewayError::BadRequest(format!("`{argument}` must be between 1 and {max}")))
}
