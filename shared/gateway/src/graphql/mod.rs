//! GraphQL execution for the GraphQL BFFs: request parsing with branded rejections, abuse
//! limits checked on the one parse before anything runs ([`limits`]), the request context handed
//! to resolvers, scope guards, request-scoped memoisation, and the mapping of resolver errors to
//! stable codes.

mod documents;
pub mod graphiql;
pub mod limits;
pub mod over_http;
pub mod scalars;
pub mod trim;
pub mod ws;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{ErrorExtensionValues, ObjectType, Schema, SchemaBuilder, ServerError, SubscriptionType, Value};
use axum::response::{IntoResponse, Response};
use bff_upstream::UpstreamError;
use http::StatusCode;
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::limits::{Decision, Limits, Policy, gcra};
pub use documents::{
    DEFAULT_APQ_STORE_BYTES, DEFAULT_DOCUMENT_CACHE_BYTES, PersistedQueriesConfig, PersistedQueryMode,
};
pub use limits::{CostModel, QueryLimits};
pub use over_http::{GraphQlHttpRequest, GraphQlRequest, ResponseMedia};
pub use trim::{BackendFields, FieldMap};
pub use ws::SubscriptionLimits;

use crate::config::{Problems, Validate, join};
use crate::{ErrorCode, GatewayError, RequestContext};

/// Deepest nesting the parser follows before refusing a document (async-graphql's own guard
/// against stack exhaustion, below our depth limit's ceiling).
const MAX_PARSER_RECURSION: usize = 64;

/// `[graphql]`: what a GraphQL BFF exposes beyond its schema, and the limits on what it runs.
/// Introspection, "did you mean" suggestions and GraphiQL help an attacker map the API as much
/// as they help a developer, so all three are off unless the config turns them on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphQlConfig {
    pub introspection: bool,
    pub suggestions: bool,
    pub graphiql: bool,
    /// Ask backends only for the fields clients select (see [`trim`]); on unless turned off.
    pub trim_fields: bool,
    /// Bytes of document text the parse cache holds.
    pub document_cache_bytes: u64,
    pub limits: QueryLimits,
    pub persisted_queries: PersistedQueriesConfig,
    pub subscriptions: SubscriptionLimits,
}

impl Default for GraphQlConfig {
    fn default() -> Self {
        Self {
            introspection: false,
            suggestions: false,
            graphiql: false,
            trim_fields: true,
            document_cache_bytes: DEFAULT_DOCUMENT_CACHE_BYTES,
            limits: QueryLimits::default(),
            persisted_queries: PersistedQueriesConfig::default(),
            subscriptions: SubscriptionLimits::default(),
        }
    }
}

impl Validate for GraphQlConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        self.limits.validate(&join(path, "limits"), problems);
        self.persisted_queries.validate(&join(path, "persisted_queries"), problems);
        self.subscriptions.validate(&join(path, "subscriptions"), problems);
    }

    fn shared_store_users(&self, path: &str, users: &mut Vec<String>) {
        self.persisted_queries.shared_store_users(&join(path, "persisted_queries"), users);
    }
}

/// The own keys of a BFF whose only own section is `[graphql]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphQlKeys {
    pub graphql: GraphQlConfig,
}

impl Validate for GraphQlKeys {
    fn validate(&self, _path: &str, problems: &mut Problems) {
        self.graphql.validate("graphql", problems);
    }

    fn shared_store_users(&self, _path: &str, users: &mut Vec<String>) {
        self.graphql.shared_store_users("graphql", users);
    }
}

/// Applies `config` to a schema under construction: introspection and suggestions as configured,
/// the parser's recursion guard, the directive limit (which async-graphql also checks), and
/// whether resolvers trim.
pub fn configure<Q, M, S>(builder: SchemaBuilder<Q, M, S>, config: &GraphQlConfig) -> SchemaBuilder<Q, M, S> {
    let mut builder = builder
        .limit_recursive_depth(MAX_PARSER_RECURSION)
        .limit_directives(config.limits.max_directives_per_field)
        .data(trim::Trimming(config.trim_fields));
    if !config.introspection {
        builder = builder.disable_introspection();
    }
    if !config.suggestions {
        builder = builder.disable_suggestions();
    }
    builder
}

/// One GraphQL schema served with its limits and cost model.
pub struct Endpoint<Q, M, S> {
    schema: Schema<Q, M, S>,
    /// The same schema in async-graphql's fast validation mode, for documents whose full
    /// validation passed before and cannot fail now (see [`documents::Document`]).
    revalidating: Schema<Q, M, S>,
    model: Arc<CostModel>,
    limits: QueryLimits,
    introspection: bool,
    documents: documents::Documents,
    /// Where each operation's cost is spent from its caller's budget.
    budget: Option<Arc<Limits>>,
}

impl<Q, M, S> Clone for Endpoint<Q, M, S> {
    fn clone(&self) -> Self {
        Self {
            schema: self.schema.clone(),
            revalidating: self.revalidating.clone(),
            model: self.model.clone(),
            limits: self.limits.clone(),
            introspection: self.introspection,
            documents: self.documents.clone(),
            budget: self.budget.clone(),
        }
    }
}

impl<Q, M, S> Endpoint<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    /// The schema `builder` makes (through [`configure`] with the same `config`), costed by
    /// `model`. It is built twice: once as it is, and once in fast validation mode for the
    /// documents that passed the full validation before and cannot fail it now.
    pub fn new(builder: impl Fn() -> SchemaBuilder<Q, M, S>, config: &GraphQlConfig, model: CostModel) -> Self {
        Self {
            schema: builder().finish(),
            revalidating: builder().validation_mode(async_graphql::ValidationMode::Fast).finish(),
            model: Arc::new(model),
            limits: config.limits.clone(),
            introspection: config.introspection,
            documents: documents::Documents::new(&config.persisted_queries, config.document_cache_bytes),
            budget: None,
        }
    }

    /// Spends each operation's cost from its caller's `[limits] cost` budget, and counts the
    /// `[[limits.routes]]` limits on operations, before anything runs.
    pub fn with_limits(mut self, limits: &Arc<Limits>) -> Self {
        if let Some(budget) = limits.cost_policy()
            && budget.quota().burst < self.limits.max_cost
        {
            tracing::warn!(
                burst = budget.quota().burst,
                max_cost = self.limits.max_cost,
                "limits.cost burst is below graphql.limits.max_cost: the costliest operations can never run"
            );
        }
        if limits.has_operation_limits() && !self.documents.is_safelist() {
            tracing::warn!(
                "[[limits.routes]] operation limits key on the name a document gives its operation, which a \
                 client chooses unless graphql.persisted_queries.mode = \"safelist\""
            );
        }
        self.budget = Some(limits.clone());
        self
    }

    /// Shares automatic persisted queries through `store` when `[graphql.persisted_queries]
    /// shared = true`.
    pub fn with_shared_store(mut self, store: Option<&Arc<crate::store::Redis>>) -> Self {
        self.documents.use_store(store);
        self
    }

    pub fn schema(&self) -> &Schema<Q, M, S> {
        &self.schema
    }

    /// The schema a request of `document` runs on, and whether it is the fast one: fully
    /// validating, unless the document passed that validation before and cannot fail it now.
    fn schema_for(&self, document: &documents::Document) -> (&Schema<Q, M, S>, bool) {
        if document.validated_before() { (&self.revalidating, true) } else { (&self.schema, false) }
    }

    /// Runs a request or a batch. Each operation is checked against the limits on its one parse
    /// before async-graphql validates or runs it; then the whole request's cost is spent from the
    /// caller's budget at once (or, for a dry run, only reported); `prepare` adds per-operation
    /// data (data loaders, memos) to each. The status and media type follow GraphQL over HTTP
    /// ([`http`]).
    pub async fn execute(&self, cx: RequestContext, http: GraphQlHttpRequest, prepare: &Prepare) -> Response {
        let GraphQlHttpRequest { request, media, via_get } = http;
        let respond = |status: StatusCode, body: Vec<u8>| {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(http::header::CONTENT_TYPE, media.content_type());
            response
        };
        let (requests, batch) = match request {
            GraphQlRequest::Single(request) => (vec![*request], false),
            GraphQlRequest::Batch(requests) => {
                let _ = cx.log.operation.set("(batch)".to_owned());
                if requests.len() > self.limits.max_batch {
                    let message = format!(
                        "the batch of {} operations exceeds the limit of {} (graphql.limits.max_batch)",
                        requests.len(),
                        self.limits.max_batch
                    );
                    return GatewayError::QueryRefused { code: ErrorCode::BatchTooLarge, message }.into_response();
                }
                (requests, true)
            }
        };
        let dry_run = requests.iter().any(asks_for_dry_run);
        // Persisted texts from the shared store all at once: a slow store costs a batch one wait.
        let filled = requests.into_iter().map(|mut request| async move {
            self.documents.fill_from_shared(&mut request).await;
            request
        });
        let mut checked: Vec<_> = futures::future::join_all(filled)
            .await
            .into_iter()
            .map(|mut request| {
                let outcome = self.check(&cx, &mut request, via_get, false);
                (request, outcome)
            })
            .collect();
        if let [(request, outcome)] = checked.as_slice()
            && !batch
        {
            // The name the document gives the operation, which a client cannot leave out.
            let named = outcome.as_ref().ok().and_then(|c| c.operation.as_deref());
            let _ = cx.log.operation.set(operation_label(named.or(request.operation_name.as_deref())).to_owned());
        }
        let passed: Vec<&Checked> = checked.iter().filter_map(|(_, outcome)| outcome.as_ref().ok()).collect();
        let spent = match self.spend(&cx, &passed, !dry_run, false).await {
            Ok(spent) => spent,
            Err(refused) => return refused.into_response(),
        };
        let mut answer = if dry_run {
            // What each operation would cost, and nothing run; one that would be refused says so.
            let mut status = StatusCode::OK;
            let mut reports: Vec<serde_json::Value> = checked
                .into_iter()
                .map(|(_, outcome)| match outcome {
                    Ok(_) => serde_json::json!({ "extensions": { "rateLimit": spent.report(true) } }),
                    Err(refusal) => {
                        status = media.refused_status(refusal.code.status());
                        serde_json::json!({ "errors": refused(refusal, &cx.request_id).errors })
                    }
                })
                .collect();
            let body = match (batch, reports.pop()) {
                (false, Some(report)) => report,
                (_, last) => {
                    status = StatusCode::OK;
                    reports.extend(last);
                    serde_json::Value::Array(reports)
                }
            };
            respond(status, serde_json::to_vec(&body).unwrap_or_default())
        } else if batch {
            let runs = checked.into_iter().map(|(request, checked)| self.execute_one(&cx, request, checked, prepare));
            let mut responses: Vec<_> = futures::future::join_all(runs).await.into_iter().map(|(r, _)| r).collect();
            for response in &mut responses {
                spent.annotate(response);
            }
            respond(StatusCode::OK, serde_json::to_vec(&responses).unwrap_or_default())
        } else {
            let Some((request, checked)) = checked.pop() else { return StatusCode::OK.into_response() };
            let (mut response, not_run) = self.execute_one(&cx, request, checked, prepare).await;
            let status = match not_run {
                Some(status) => media.refused_status(status),
                None => StatusCode::OK,
            };
            // A request that never ran has no `data` at all (not null), as the specification says.
            let body = match not_run {
                Some(_) => serde_json::to_vec(&serde_json::json!({ "errors": response.errors })),
                None => {
                    spent.annotate(&mut response);
                    serde_json::to_vec(&response)
                }
            };
            let mut answer = respond(status, body.unwrap_or_default());
            if status == StatusCode::METHOD_NOT_ALLOWED {
                answer.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            }
            answer
        };
        spent.write_headers(answer.headers_mut());
        answer
    }

    /// Spends the cost of every operation that passed its checks from the caller's budget, all
    /// at once (`spend` false: only looks), or the refusal to send instead.
    async fn spend(
        &self,
        cx: &RequestContext,
        passed: &[&Checked],
        spend: bool,
        over_socket: bool,
    ) -> Result<Spent, Refused> {
        let nothing = Spent { cost: 0, budget: None, decision: None };
        if passed.is_empty() {
            // Nothing will run: nothing to spend, and no reason to ask a shared store.
            return Ok(nothing);
        }
        let cost = passed.iter().map(|c| c.cost).sum();
        let (Some(limits), Ok(identity)) = (&self.budget, cx.principal()) else {
            return Ok(Spent { cost, ..nothing });
        };
        let operations: Vec<&str> = passed.iter().filter_map(|c| c.operation.as_deref()).collect();
        if let Some(budget) = limits.cost_policy()
            && cost > budget.quota().burst
        {
            // It could never be admitted: waiting would not help, so this is no 429.
            let message = format!(
                "this request costs {cost}, more than the budget's burst of {} (limits.cost)",
                budget.quota().burst
            );
            let error = GatewayError::QueryRefused { code: ErrorCode::QueryTooCostly, message };
            return Err(Refused { error, decision: None });
        }
        let decision = limits.spend_cost(identity, &operations, cost, spend, over_socket).await;
        cx.log.record_limit(&decision);
        if let Some(error) = decision.refusal() {
            return Err(Refused { error, decision: Some(decision) });
        }
        let budget = limits
            .cost_policy()
            .and_then(|policy| decision.states.iter().find(|(spent_from, _)| Arc::ptr_eq(spent_from, policy)).cloned());
        Ok(Spent { cost, budget, decision: Some(decision) })
    }

    /// One operation, checked already; the status is set when it did not run.
    async fn execute_one(
        &self,
        cx: &RequestContext,
        mut request: async_graphql::Request,
        checked: Result<Checked, limits::Refusal>,
        prepare: &Prepare,
    ) -> (async_graphql::Response, Option<StatusCode>) {
        let document = match checked {
            Ok(checked) => checked.document,
            Err(refusal) => {
                let status = refusal.code.status();
                return (refused(refusal, &cx.request_id), Some(status));
            }
        };
        let operation_name = request.operation_name.clone();
        request.set_parsed_query(document.tree());
        let (schema, fast) = self.schema_for(&document);
        cx.log.validations.record(fast);
        let execution = schema.execute(prepare(cx, request.data(cx.clone())));
        let timed = Phase::start(&cx.log, "execute");
        let mut response =
            tracing::Instrument::instrument(execution, crate::telemetry::traces::phase("graphql.execute")).await;
        drop(timed);
        // Errors without a path are about the document (validation, variables): it never ran.
        let not_run = response.data == Value::Null
            && !response.errors.is_empty()
            && response.errors.iter().all(|e| e.path.is_empty());
        if !not_run {
            // It ran, so it passed validation.
            document.passed_validation();
        }
        for error in &mut response.errors {
            brand(error, &cx.request_id);
            null_errored_field(&mut response.data, &error.path);
        }
        cap_errors(&mut response.errors, self.limits.max_errors, &cx.request_id);
        order::restore_selection_order(&mut response.data, &document, operation_name.as_deref());
        (response, not_run.then_some(StatusCode::BAD_REQUEST))
    }

    /// A subscription (or any operation) sent over a socket: the same checks, then a stream of
    /// responses, each branded like any other.
    /// A subscription spends its cost once, when it is subscribed to.
    pub fn execute_stream(
        &self,
        cx: RequestContext,
        mut request: async_graphql::Request,
        prepare: Prepare,
    ) -> futures::stream::BoxStream<'static, async_graphql::Response> {
        use futures::StreamExt as _;
        let checked = match self.check(&cx, &mut request, false, true) {
            Ok(checked) => checked,
            Err(refusal) => {
                return futures::stream::once(std::future::ready(refused(refusal, &cx.request_id))).boxed();
            }
        };
        // Fully validated every time: a subscription is rare next to queries.
        request.set_parsed_query(checked.document.tree());
        let endpoint = self.clone();
        futures::stream::once(async move {
            let request_id = cx.request_id.clone();
            if let Err(Refused { error, .. }) = endpoint.spend(&cx, &[&checked], true, true).await {
                let limited = limits::Refusal { code: error.code(), message: error.public_message() };
                let mut response = refused(limited, &request_id);
                if let (Some(after), Some(error)) = (error.retry_after(), response.errors.first_mut()) {
                    let seconds = crate::error::seconds_up(after);
                    error.extensions.get_or_insert_with(ErrorExtensionValues::default).set("retryAfter", seconds);
                }
                return futures::stream::once(std::future::ready(response)).boxed();
            }
            let max_errors = endpoint.limits.max_errors;
            endpoint
                .schema
                .execute_stream(prepare(&cx, request.data(cx.clone())))
                .map(move |mut response| {
                    for error in &mut response.errors {
                        brand(error, &request_id);
                        null_errored_field(&mut response.data, &error.path);
                    }
                    cap_errors(&mut response.errors, max_errors, &request_id);
                    response
                })
                .boxed()
        })
        .flatten()
        .boxed()
    }

    /// The document (persisted or sent, parsed once per text), then the shape and cost limits.
    /// Every refusal here costs a bounded, small amount of CPU: nothing is expanded or executed.
    fn check(
        &self,
        cx: &RequestContext,
        request: &mut async_graphql::Request,
        via_get: bool,
        streaming: bool,
    ) -> Result<Checked, limits::Refusal> {
        let _span = crate::telemetry::traces::phase("graphql.check").entered();
        let _timed = Phase::start(&cx.log, "parse");
        let (document, hash) = self.documents.resolve(request, &self.limits)?;
        // The access line names the document by its hash (the first of a batch).
        let _ = cx.log.document.set(hex::encode(&hash[..8]));
        let refuse = |code: ErrorCode, message: &str| Err(limits::Refusal { code, message: message.to_owned() });
        match operation_kind(&document, request.operation_name.as_deref()) {
            Some(OperationType::Mutation | OperationType::Subscription) if via_get => {
                return refuse(ErrorCode::MethodNotAllowed, "only queries may be sent with GET; send this with POST");
            }
            Some(OperationType::Subscription) if !streaming => {
                return refuse(
                    ErrorCode::SubscriptionOverHttp,
                    "subscriptions run over WebSocket (graphql-transport-ws) on this path",
                );
            }
            _ => {}
        }
        let cost = limits::analyze(
            &document,
            request.operation_name.as_deref(),
            &request.variables,
            &self.model,
            &self.limits,
            self.introspection,
        )?;
        cx.log.cost.fetch_add(cost, std::sync::atomic::Ordering::Relaxed);
        let operation = selected_operation(&document, request.operation_name.as_deref()).map(str::to_owned);
        Ok(Checked { document, cost, operation })
    }
}

/// One operation past its checks: its document, its cost, and the name the document gives the
/// operation that runs (never the client's word alone: a limit on `Home` must not be evaded by
/// leaving `operationName` out).
struct Checked {
    document: Arc<documents::Document>,
    cost: u64,
    operation: Option<String>,
}

/// What a request spent from its caller's budget.
struct Spent {
    cost: u64,
    /// The budget as the spend left it; `None` when none applies (none configured, or no caller).
    budget: Option<(Arc<Policy>, gcra::Outcome)>,
    /// Every limit the spend was decided on, for the headers.
    decision: Option<Decision>,
}

/// A request refused before it ran: the error, and the decision that refused it (for the
/// `RateLimit` headers) when a limit did.
struct Refused {
    error: GatewayError,
    decision: Option<Decision>,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if let Some(decision) = &self.decision {
            decision.write_headers(response.headers_mut());
        }
        response
    }
}

impl Spent {
    /// `extensions.rateLimit`: what the request cost, what is left of the budget, and when it is
    /// whole again (GitHub's `rateLimit` names). Built as the response's own value: a request
    /// pays for no JSON tree converted into it.
    fn report(&self, dry_run: bool) -> Value {
        use async_graphql::Name;
        let mut report = async_graphql::indexmap::IndexMap::with_capacity(5);
        report.insert(Name::new("cost"), Value::from(self.cost));
        if let Some((policy, outcome)) = &self.budget {
            report.insert(Name::new("limit"), Value::from(policy.quota().burst));
            report.insert(Name::new("remaining"), Value::from(outcome.remaining));
            let reset_at = std::time::SystemTime::now() + outcome.reset;
            report.insert(Name::new("resetAt"), Value::from(humantime::format_rfc3339_seconds(reset_at).to_string()));
        }
        if dry_run {
            report.insert(Name::new("dryRun"), Value::from(true));
        }
        Value::Object(report)
    }

    fn annotate(&self, response: &mut async_graphql::Response) {
        response.extensions.insert("rateLimit".to_owned(), self.report(false));
    }

    fn write_headers(&self, headers: &mut http::HeaderMap) {
        if let Some(decision) = &self.decision {
            decision.write_headers(headers);
        }
    }
}

/// Whether a request asks only what it would cost: `extensions.rateLimit.dryRun = true`.
fn asks_for_dry_run(request: &async_graphql::Request) -> bool {
    match request.extensions.get("rateLimit") {
        Some(Value::Object(fields)) => fields.get("dryRun") == Some(&Value::Boolean(true)),
        _ => false,
    }
}

/// The name of the operation `name` selects in `document`, as the document writes it.
fn selected_operation<'a>(document: &'a ExecutableDocument, name: Option<&str>) -> Option<&'a str> {
    use async_graphql::parser::types::DocumentOperations;
    match &document.operations {
        // The parser keeps only an anonymous operation as `Single`: it has no name.
        DocumentOperations::Single(_) => None,
        DocumentOperations::Multiple(operations) => match name {
            Some(name) => operations.get_key_value(name).map(|(key, _)| key.as_str()),
            None if operations.len() == 1 => operations.keys().next().map(|key| key.as_str()),
            None => None,
        },
    }
}

/// The kind of operation `name` selects in `document`; `None` when that is ambiguous (validation
/// then says so).
fn operation_kind(document: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    use async_graphql::parser::types::DocumentOperations;
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => Some(operation.node.ty),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name).map(|o| o.node.ty),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next().map(|o| o.node.ty)
        }
        _ => None,
    }
}

/// A response with only the refusal's error, and no `data`.
fn refused(refusal: limits::Refusal, request_id: &str) -> async_graphql::Response {
    let mut error = ServerError::new(refusal.message, None);
    error.extensions.get_or_insert_with(ErrorExtensionValues::default).set("code", refusal.code.as_str());
    set_request_id(&mut error, request_id);
    async_graphql::Response::from_errors(vec![error])
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
    summary.extensions.get_or_insert_with(ErrorExtensionValues::default).set("code", ErrorCode::TooManyErrors.as_str());
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

    /// The keys `sets` select, found once for a value, however many items a list of it holds.
    fn reorder(value: &mut Value, sets: &[&SelectionSet], document: &ExecutableDocument) {
        if !matches!(value, Value::List(_) | Value::Object(_)) {
            return;
        }
        let mut keys = Vec::new();
        for set in sets {
            collect(set, document, &mut keys, 0);
        }
        reorder_by(value, &keys, document);
    }

    fn reorder_by(value: &mut Value, keys: &[(&Name, Vec<&SelectionSet>)], document: &ExecutableDocument) {
        match value {
            Value::List(items) => items.iter_mut().for_each(|item| reorder_by(item, keys, document)),
            Value::Object(fields) => {
                // Fields that finished in the query's order (most, most of the time) stay where
                // they are: only their sub-selections are looked at.
                if !in_order(fields, keys) {
                    let mut unordered = std::mem::take(fields);
                    let mut ordered = IndexMap::with_capacity(unordered.len());
                    for (key, _) in keys {
                        if let Some(field) = unordered.shift_remove(*key) {
                            ordered.insert((*key).clone(), field);
                        }
                    }
                    // Anything the walk did not name keeps its place at the end rather than vanish.
                    ordered.extend(unordered);
                    *fields = ordered;
                }
                for (key, subsets) in keys {
                    if let Some(field) = fields.get_mut(*key) {
                        reorder(field, subsets, document);
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether `fields` holds the keys of `keys` it has in `keys`' order, and nothing else.
    fn in_order(fields: &IndexMap<Name, Value>, keys: &[(&Name, Vec<&SelectionSet>)]) -> bool {
        let mut expected = keys.iter().filter(|(key, _)| fields.contains_key(*key));
        fields.keys().all(|key| expected.next().is_some_and(|(name, _)| *name == key))
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

    #[cfg(test)]
    mod tests {
        use async_graphql::{Name, Value};

        fn keys(value: &Value) -> Vec<&str> {
            match value {
                Value::Object(fields) => fields.keys().map(Name::as_str).collect(),
                _ => Vec::new(),
            }
        }

        /// An object with its fields in exactly this order.
        fn object(fields: Vec<(&str, Value)>) -> Value {
            Value::Object(fields.into_iter().map(|(key, value)| (Name::new(key), value)).collect())
        }

        /// As async-graphql may write it: every object's fields in the order they finished.
        fn shuffled_response() -> Value {
            let item = |id: &str| object(vec![("name", Value::from(format!("n-{id}"))), ("id", Value::from(id))]);
            let user = object(vec![("name", Value::from("A")), ("id", Value::from("u"))]);
            object(vec![("home", object(vec![("orders", Value::List(vec![item("1"), item("2")])), ("user", user)]))])
        }

        #[test]
        fn fields_come_back_in_the_query_order_at_every_depth_and_in_every_list_item() {
            let document = async_graphql::parser::parse_query(
                "query Home { home { user { id ...Named } orders { id name } } } fragment Named on User { name }",
            )
            .expect("parses");
            let mut data = shuffled_response();
            super::restore_selection_order(&mut data, &document, Some("Home"));
            let Value::Object(root) = &data else { panic!("an object") };
            let home = &root["home"];
            assert_eq!(keys(home), ["user", "orders"]);
            let Value::Object(home) = home else { panic!("an object") };
            assert_eq!(keys(&home["user"]), ["id", "name"], "a fragment's fields take the spread's place");
            let Value::List(orders) = &home["orders"] else { panic!("a list") };
            for order in orders {
                assert_eq!(keys(order), ["id", "name"]);
            }
        }

        #[test]
        fn an_object_already_in_order_still_has_its_children_put_in_order() {
            let document =
                async_graphql::parser::parse_query("{ home { orders { id name } user { id name } } }").expect("parses");
            let mut data = shuffled_response();
            super::restore_selection_order(&mut data, &document, None);
            let Value::Object(root) = &data else { panic!("an object") };
            let Value::Object(home) = &root["home"] else { panic!("an object") };
            assert_eq!(keys(&root["home"]), ["orders", "user"], "already in order");
            assert_eq!(keys(&home["user"]), ["id", "name"]);
            let Value::List(orders) = &home["orders"] else { panic!("a list") };
            assert!(orders.iter().all(|order| keys(order) == ["id", "name"]));
        }

        #[test]
        fn a_key_the_query_does_not_name_is_kept_at_the_end() {
            let document = async_graphql::parser::parse_query("{ a b }").expect("parses");
            let mut data = object(vec![("extra", Value::from(1)), ("b", Value::from(2)), ("a", Value::from(3))]);
            super::restore_selection_order(&mut data, &document, None);
            assert_eq!(keys(&data), ["a", "b", "extra"]);
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
    let gateway_error = error.source::<GatewayError>().map(|e| (e.code(), e.public_message(), e.source()));
    let upstream_error = || {
        error.source::<UpstreamError>().map(|e| {
            let e = GatewayError::Upstream(e.clone());
            (e.code(), e.public_message(), e.source())
        })
    };
    let code = match gateway_error.or_else(upstream_error) {
        Some((code, message, source)) => {
            error.message = message;
            error.extensions.get_or_insert_with(ErrorExtensionValues::default).set("source", source);
            code
        }
        None => match error.extensions.as_ref().and_then(|x| x.get("code")) {
            Some(_) => return set_request_id(error, request_id),
            // No path: validation errors (and variable coercion), about the document the client sent.
            None if error.path.is_empty() => ErrorCode::GraphQlValidationFailed,
            None => {
                tracing::error!(request_id = &**request_id, message = %error.message, "unbranded resolver error");
                error.message = "internal error".to_owned();
                ErrorCode::Internal
            }
        },
    };
    let extensions = error.extensions.get_or_insert_with(ErrorExtensionValues::default);
    extensions.set("code", code.as_str());
    if extensions.get("source").is_none() {
        extensions.set("source", "gateway");
    }
    set_request_id(error, request_id);
}

fn set_request_id(error: &mut ServerError, request_id: &str) {
    error.extensions.get_or_insert_with(ErrorExtensionValues::default).set("requestId", Value::from(request_id));
}

/// Per-operation data a BFF adds to each operation it runs (data loaders, memos), given the
/// request's context.
pub type Prepare = Arc<dyn Fn(&RequestContext, async_graphql::Request) -> async_graphql::Request + Send + Sync>;

/// What one GraphQL BFF serves on `/graphql`.
pub struct GraphQlService<Q, M, S> {
    pub endpoint: Endpoint<Q, M, S>,
    pub prepare: Prepare,
    pub graphiql: bool,
    /// Subscriptions over WebSocket on the same path, when the schema has any.
    pub subscriptions: Option<ws::Subscriptions>,
}

impl<Q, M, S> GraphQlService<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    /// Whether a request to `/graphql` authenticates itself (a WebSocket upgrade, whose
    /// credentials come in `connection_init`) or needs none (a browser loading GraphiQL, which
    /// holds no data). Every other request on the path goes through authentication first.
    pub fn authenticates_itself(&self) -> impl Fn(&axum::extract::Request) -> bool + Clone + Send + Sync + 'static {
        let (graphiql, subscriptions) = (self.graphiql, self.subscriptions.is_some());
        move |request| {
            request.method() == http::Method::GET
                && request.uri().path() == "/graphql"
                && ((subscriptions && ws::is_upgrade(request.headers()))
                    || (graphiql && over_http::wants_html(request.headers())))
        }
    }

    /// `api`: `GET`/`POST /graphql` (queries, mutations, WebSocket upgrades, the GraphiQL page);
    /// `public`: GraphiQL's files, when it is on.
    pub fn routes(self) -> (axum::Router, axum::Router) {
        let public = if self.graphiql {
            axum::Router::new().route("/graphql/assets/{file}", axum::routing::get(graphiql::asset))
        } else {
            axum::Router::new()
        };
        let api = axum::Router::new()
            .route("/graphql", axum::routing::get(Self::handle).post(Self::handle))
            // Shared, not cloned per request: one reference count instead of one per field.
            .with_state(Arc::new(self));
        (api, public)
    }

    async fn handle(
        axum::extract::State(service): axum::extract::State<Arc<Self>>,
        request: axum::extract::Request,
    ) -> Response {
        use axum::extract::{FromRequest, FromRequestParts};
        let (mut parts, body) = request.into_parts();
        let is_get = parts.method == http::Method::GET;
        if is_get
            && let Some(subscriptions) = &service.subscriptions
            && ws::is_upgrade(&parts.headers)
        {
            let upgrade = match axum::extract::WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
                Ok(upgrade) => upgrade,
                Err(rejection) => return rejection.into_response(),
            };
            let request_id =
                parts.extensions.get::<crate::RequestId>().map_or_else(|| Arc::from("-"), |id| id.0.clone());
            let client = parts.extensions.get::<crate::inbound::client_addr::ClientAddr>().map(|addr| addr.0);
            let draining = parts.extensions.get::<crate::server::Draining>().cloned();
            let socket = ws::Socket { request_id, client, draining };
            return ws::upgrade(
                upgrade,
                service.endpoint.clone(),
                service.prepare.clone(),
                subscriptions.clone(),
                socket,
            );
        }
        if is_get && service.graphiql && over_http::wants_html(&parts.headers) {
            return graphiql::page();
        }
        let cx = match RequestContext::from_request_parts(&mut parts, &()).await {
            Ok(cx) => cx,
            Err(error) => return error.into_response(),
        };
        let request = axum::extract::Request::from_parts(parts, body);
        match GraphQlHttpRequest::from_request(request, &()).await {
            Ok(graphql) => service.endpoint.execute(cx, graphql, &service.prepare).await,
            Err(error) => error.into_response(),
        }
    }
}

/// The [`RequestContext`] that [`execute`] put into every request.
pub fn request_context<'a>(ctx: &async_graphql::Context<'a>) -> Result<&'a RequestContext, GatewayError> {
    ctx.data::<RequestContext>().map_err(|e| GatewayError::Internal(e.message))
}

/// Longest id argument sent on to a backend.
const MAX_ID_ARGUMENT_LEN: usize = 64;
/// Longest idempotency key a client may choose.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// `value` as an id to send a backend: refused (before any backend call) unless it is a short
/// token of letters, digits, `-` and `_`, the shape every id this platform issues has.
pub fn id_argument<'a>(argument: &str, value: &'a str) -> Result<&'a str, GatewayError> {
    let well_formed = !value.is_empty()
        && value.len() <= MAX_ID_ARGUMENT_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if well_formed {
        Ok(value)
    } else {
        Err(GatewayError::BadRequest(format!("`{argument}` is not an id this API issued")))
    }
}

/// `value` as an idempotency key chosen by the client: 1 to 128 visible ASCII characters,
/// surrounding whitespace ignored.
pub fn idempotency_key(value: &str) -> Result<&str, GatewayError> {
    let key = value.trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(GatewayError::BadRequest(format!(
            "`idempotencyKey` must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(key)
}

/// `value` as a page size, refused (before any backend call) when outside `1..=max`.
pub fn page_size(argument: &str, value: i32, max: u32) -> Result<u32, GatewayError> {
    u32::try_from(value)
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| GatewayError::BadRequest(format!("`{argument}` must be between 1 and {max}")))
}

/// Adds the time until it is dropped to a phase of the request's log (for `Server-Timing`).
struct Phase<'a> {
    log: &'a crate::RequestLog,
    name: &'static str,
    started: std::time::Instant,
}

impl<'a> Phase<'a> {
    fn start(log: &'a crate::RequestLog, name: &'static str) -> Self {
        Self { log, name, started: std::time::Instant::now() }
    }
}

impl Drop for Phase<'_> {
    fn drop(&mut self) {
        self.log.record_phase(self.name, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    use super::{Endpoint, GraphQlConfig, documents};
    use crate::graphql::limits::CostModel;

    struct Query;

    #[Object]
    impl Query {
        async fn greeting(&self) -> &str {
            "hello"
        }
    }

    #[test]
    fn a_document_runs_fully_validated_until_it_has_passed_once() {
        let build = || Schema::build(Query, EmptyMutation, EmptySubscription);
        let model = CostModel::from_sdl(&build().finish().sdl()).expect("costed");
        let endpoint = Endpoint::new(build, &GraphQlConfig::default(), model);
        let parse = |text| documents::Document::new(async_graphql::parser::parse_query(text).expect("parses"));
        let strict = |endpoint: &Endpoint<_, _, _>, document| {
            let (schema, fast) = endpoint.schema_for(document);
            assert_eq!(fast, std::ptr::eq(schema, &endpoint.revalidating), "the flag names the schema");
            std::ptr::eq(schema, &endpoint.schema)
        };

        let greeting = parse("{ greeting }");
        assert!(strict(&endpoint, &greeting), "not validated yet");
        greeting.passed_validation();
        assert!(!strict(&endpoint, &greeting), "passed once");

        let with_variables = parse("query Q($x: Boolean!) { greeting @skip(if: $x) }");
        with_variables.passed_validation();
        assert!(strict(&endpoint, &with_variables), "variables reach the validation");
    }
}
