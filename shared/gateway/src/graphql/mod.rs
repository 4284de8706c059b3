//! GraphQL execution for the GraphQL BFFs: request parsing with branded rejections, abuse
//! limits checked on the one parse before anything runs ([`limits`]), the request context handed
//! to resolvers, scope guards, request-scoped memoisation, and the mapping of resolver errors to
//! stable codes.

pub mod limits;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ErrorExtensionValues, ObjectType, Schema, SchemaBuilder, ServerError, SubscriptionType, Value};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{Html, IntoResponse, Response};
use bff_upstream::UpstreamError;
use http::StatusCode;
use serde::Deserialize;
use tokio::sync::OnceCell;

pub use limits::{CostModel, QueryLimits};

use crate::config::{Problems, Validate, join};
use crate::{GatewayError, RequestContext};

/// Deepest nesting the parser follows before refusing a document (async-graphql's own guard
/// against stack exhaustion, below our depth limit's ceiling).
const MAX_PARSER_RECURSION: usize = 64;

/// `[graphql]`: what a GraphQL BFF exposes beyond its schema, and the limits on what it runs.
/// Introspection, "did you mean" suggestions and GraphiQL help an attacker map the API as much
/// as they help a developer, so all three are off unless the config turns them on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphQlConfig {
    pub introspection: bool,
    pub suggestions: bool,
    pub graphiql: bool,
    pub limits: QueryLimits,
}

impl Validate for GraphQlConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        self.limits.validate(&join(path, "limits"), problems);
    }
}

/// The own keys of a BFF whose only own section is `[graphql]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphQlKeys {
    #[serde(default)]
    pub graphql: GraphQlConfig,
}

impl Validate for GraphQlKeys {
    fn validate(&self, _path: &str, problems: &mut Problems) {
        self.graphql.validate("graphql", problems);
    }
}

/// Applies `config` to a schema under construction: introspection and suggestions as configured,
/// the parser's recursion guard, and the directive limit (which async-graphql also checks).
pub fn configure<Q, M, S>(builder: SchemaBuilder<Q, M, S>, config: &GraphQlConfig) -> SchemaBuilder<Q, M, S> {
    let mut builder =
        builder.limit_recursive_depth(MAX_PARSER_RECURSION).limit_directives(config.limits.max_directives_per_field);
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    if !config.suggestions {
        builder = builder.disable_suggestions();
    }
    builder
}

/// A GraphQL request body: one request (`{"query", "operationName", "variables"}`) or a batch
/// (a JSON array of them).
pub enum GraphQlRequest {
    Single(Box<async_graphql::Request>),
    Batch(Vec<async_graphql::Request>),
}

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
        let not_a_request =
            |e: serde_json::Error| GatewayError::BadRequest(format!("the body is not a GraphQL request: {e}"));
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            serde_json::from_slice(&body).map(Self::Batch).map_err(not_a_request)
        } else {
            serde_json::from_slice(&body).map(|request| Self::Single(Box::new(request))).map_err(not_a_request)
        }
    }
}

/// One GraphQL schema served with its limits and cost model.
pub struct Endpoint<Q, M, S> {
    schema: Schema<Q, M, S>,
    model: Arc<CostModel>,
    limits: QueryLimits,
    introspection: bool,
}

impl<Q, M, S> Clone for Endpoint<Q, M, S> {
    fn clone(&self) -> Self {
        Self {
            schema: self.schema.clone(),
            model: self.model.clone(),
            limits: self.limits.clone(),
            introspection: self.introspection,
        }
    }
}

impl<Q, M, S> Endpoint<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    /// `schema` (built through [`configure`] with the same `config`), costed by `model`.
    pub fn new(schema: Schema<Q, M, S>, config: &GraphQlConfig, model: CostModel) -> Self {
        Self { schema, model: Arc::new(model), limits: config.limits.clone(), introspection: config.introspection }
    }

    /// Runs a request or a batch. Each operation is checked against the limits on its one parse
    /// before async-graphql validates or runs it; `prepare` adds per-operation data (data loaders,
    /// memos) to each. A single request refused before it ran answers 400.
    pub async fn execute(
        &self,
        cx: RequestContext,
        request: GraphQlRequest,
        prepare: impl Fn(async_graphql::Request) -> async_graphql::Request,
    ) -> Response {
        match request {
            GraphQlRequest::Single(request) => {
                let _ = cx.log.operation.set(operation_label(request.operation_name.as_deref()).to_owned());
                let (response, refused) = self.execute_one(&cx, *request, &prepare).await;
                let status = if refused { StatusCode::BAD_REQUEST } else { StatusCode::OK };
                (status, axum::Json(response)).into_response()
            }
            GraphQlRequest::Batch(requests) => {
                let _ = cx.log.operation.set("(batch)".to_owned());
                if requests.len() > self.limits.max_batch {
                    let message = format!(
                        "the batch of {} operations exceeds the limit of {} (graphql.limits.max_batch)",
                        requests.len(),
                        self.limits.max_batch
                    );
                    return GatewayError::QueryRefused { code: "BATCH_TOO_LARGE", message }.into_response();
                }
                let runs = requests.into_iter().map(|request| self.execute_one(&cx, request, &prepare));
                let responses: Vec<_> = futures::future::join_all(runs).await.into_iter().map(|(r, _)| r).collect();
                axum::Json(responses).into_response()
            }
        }
    }

    async fn execute_one(
        &self,
        cx: &RequestContext,
        mut request: async_graphql::Request,
        prepare: &impl Fn(async_graphql::Request) -> async_graphql::Request,
    ) -> (async_graphql::Response, bool) {
        let document = match self.check(cx, &request) {
            Ok(document) => document,
            Err(refusal) => {
                let mut error = ServerError::new(refusal.message, None);
                error.extensions.get_or_insert_with(ErrorExtensionValues::default).set("code", refusal.code);
                set_request_id(&mut error, &cx.request_id);
                return (async_graphql::Response::from_errors(vec![error]), true);
            }
        };
        let operation_name = request.operation_name.clone();
        request.set_parsed_query(document.clone());
        let mut response = self.schema.execute(prepare(request.data(cx.clone()))).await;
        for error in &mut response.errors {
            brand(error, &cx.request_id);
            null_errored_field(&mut response.data, &error.path);
        }
        cap_errors(&mut response.errors, self.limits.max_errors, &cx.request_id);
        order::restore_selection_order(&mut response.data, &document, operation_name.as_deref());
        (response, false)
    }

    /// The size limits, then the one parse, then the shape and cost limits. Every refusal here
    /// costs a bounded, small amount of CPU: nothing is expanded or executed.
    fn check(
        &self,
        cx: &RequestContext,
        request: &async_graphql::Request,
    ) -> Result<ExecutableDocument, limits::Refusal> {
        let limits = &self.limits;
        let query = &request.query;
        if query.len() > limits.max_document_bytes {
            return Err(limits::Refusal {
                code: "DOCUMENT_TOO_LARGE",
                message: format!(
                    "the document of {} bytes exceeds the limit of {} (graphql.limits.max_document_bytes)",
                    query.len(),
                    limits.max_document_bytes
                ),
            });
        }
        let tokens = limits::count_tokens(query, limits.max_tokens);
        if tokens > limits.max_tokens {
            return Err(limits::Refusal {
                code: "TOO_MANY_TOKENS",
                message: format!("the document has more than {} tokens (graphql.limits.max_tokens)", limits.max_tokens),
            });
        }
        let document = async_graphql::parser::parse_query(query).map_err(|e| limits::Refusal {
            code: "GRAPHQL_PARSE_FAILED",
            message: format!("the document does not parse: {e}"),
        })?;
        let cost = limits::analyze(
            &document,
            request.operation_name.as_deref(),
            &request.variables,
            &self.model,
            limits,
            self.introspection,
        )?;
        cx.log.cost.fetch_add(cost, std::sync::atomic::Ordering::Relaxed);
        Ok(document)
    }
}

/// Keeps at most `max` errors: the first `max - 1` and one that counts the rest, so a document
/// full of mistakes cannot make a response of megabytes.
fn cap_errors(errors: &mut Vec<ServerError>, max: usize, request_id: &str) {
    if errors.len() <= max {
        return;
    }
    let kept = max.saturating_sub(1);
    let omitted = errors.len() - kept;
    errors.truncate(kept);
    let mut summary = ServerError::new(format!("{omitted} more errors omitted (graphql.limits.max_errors)"), None);
    summary.extensions.get_or_insert_with(ErrorExtensionValues::default).set("code", "TOO_MANY_ERRORS");
    set_request_id(&mut summary, request_id);
    errors.push(summary);
}

/// A field or mutation that needs an OAuth scope: `#[graphql(guard = "RequireScope(\"orders\")")]`
/// where the field is defined. Checked before the resolver runs, so a missing scope makes no
/// backend call; the error is `FORBIDDEN`, names the scope, and carries the field's path.
pub struct RequireScope(pub &'static str);

impl async_graphql::Guard for RequireScope {
    async fn check(&self, ctx: &async_graphql::Context<'_>) -> async_graphql::Result<()> {
        request_context(ctx)?.require_scope(self.0)?;
        Ok(())
    }
}

/// Values one request has already loaded, by key: however many aliases or fragments ask for the
/// same backend datum, it is fetched once and shared. Lives in one request's data; never shared
/// between requests, so one caller can never see another's data.
pub struct RequestMemo<K, V> {
    cells: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for RequestMemo<K, V> {
    fn default() -> Self {
        Self { cells: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash, V: Clone> RequestMemo<K, V> {
    /// The value for `key`: loaded by `load` the first time, shared afterwards (concurrent askers
    /// wait for the one load).
    pub async fn get_or_load<F: Future<Output = V>>(&self, key: K, load: impl FnOnce() -> F) -> V {
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cells.entry(key).or_default().clone()
        };
        cell.get_or_init(load).await.clone()
    }
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

    pub fn restore_selection_order(data: &mut Value, document: &ExecutableDocument, operation_name: Option<&str>) {
        if matches!(data, Value::Null) {
            return;
        }
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
        reorder(data, &[&operation.node.selection_set.node], document);
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
            // No path: validation errors (and variable coercion), about the document the client sent.
            None if error.path.is_empty() => "GRAPHQL_VALIDATION_FAILED",
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

/// The routes a GraphQL BFF serves without credentials: GraphiQL on `GET /graphql` when
/// `config` turns it on (it holds no data; its queries still need a token).
pub fn public_routes(config: &GraphQlConfig) -> axum::Router {
    let routes = axum::Router::new();
    if config.graphiql {
        routes.route("/graphql", axum::routing::get(|| async { graphiql("/graphql") }))
    } else {
        routes
    }
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
