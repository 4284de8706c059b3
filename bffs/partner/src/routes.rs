//! The partner API's routes and their one set of handlers, generic over the [`Version`] that
//! writes their answers.
//!
//! | route (under `/v1` and `/v2`) | scope | backend |
//! |---|---|---|
//! | `GET /products/{id}?fields=` | `catalog:read` | catalog (REST), inventory (gRPC) in v2 |
//! | `GET /products/{id}/stock` | `catalog:read` | inventory (gRPC) |
//! | `GET /orders?limit=&cursor=&fields=` | `orders:read` | orders (gRPC) |
//! | `GET /orders/{id}?fields=` | `orders:read` | orders (gRPC) |
//! | `POST /orders` (`Idempotency-Key`) | `orders:write` | orders (gRPC) |

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use bff_backends::{CatalogClient, InventoryClient, NewOrderLine, OrdersClient};
use bff_gateway::graphql::{BackendFields, FieldMap};
use bff_gateway::rest::idempotency::{self, Claim, Idempotency, StoredResponse};
use bff_gateway::rest::{JsonSchema, Path};
use bff_gateway::{GatewayError, RequestContext};
use bff_upstream::UpstreamError;
use serde_json::Value;

use crate::model;
use crate::openapi;
use crate::version::Version;

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
/// Ids and cursors are short tokens; anything else is refused at the edge.
const MAX_TOKEN_LEN: usize = 128;

bff_gateway::backends! {
    /// Every backend this BFF calls, by its `[upstreams.NAME]`: the config must name exactly
    /// these, and `/readyz?verbose` probes each. Shared by every request.
    pub struct Backends {
        catalog: CatalogClient,
        inventory: InventoryClient,
        orders: OrdersClient,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    GetProduct,
    GetStock,
    ListOrders,
    GetOrder,
    CreateOrder,
}

impl Operation {
    /// The backends its handler calls (the route table shows them).
    pub fn backends(self) -> &'static [&'static str] {
        match self {
            Self::GetProduct => &["catalog", "inventory (v2 `stock`, optional)"],
            Self::GetStock => &["inventory"],
            Self::ListOrders | Self::GetOrder | Self::CreateOrder => &["orders"],
        }
    }

    /// The resource whose members `?fields=` selects, for the operations that take one.
    pub fn fieldset_of(self) -> Option<&'static str> {
        match self {
            Self::GetProduct => Some("Product"),
            Self::ListOrders | Self::GetOrder => Some("Order"),
            Self::GetStock | Self::CreateOrder => None,
        }
    }
}

/// One route of the API, in every version: what access control and the OpenAPI documents read.
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    /// The template below the version prefix.
    pub path: &'static str,
    pub operation: Operation,
    pub scope: &'static str,
}

impl Route {
    /// `GET /v1/products/{id}`: how plans name the route.
    pub fn name(&self, version: &str) -> String {
        format!("{} /{version}{}", self.method, self.path)
    }
}

/// Every route with the scope it needs. A route served but missing here is refused to everyone.
pub const ROUTES: &[Route] = &[
    Route { method: Method::GET, path: "/products/{id}", operation: Operation::GetProduct, scope: "catalog:read" },
    Route { method: Method::GET, path: "/products/{id}/stock", operation: Operation::GetStock, scope: "catalog:read" },
    Route { method: Method::GET, path: "/orders", operation: Operation::ListOrders, scope: "orders:read" },
    Route { method: Method::POST, path: "/orders", operation: Operation::CreateOrder, scope: "orders:write" },
    Route { method: Method::GET, path: "/orders/{id}", operation: Operation::GetOrder, scope: "orders:read" },
];

/// One version's API: the backends, its published document and the schemas it enforces.
pub struct Api<V> {
    backends: Backends,
    idempotency: Arc<Idempotency>,
    document: Value,
    new_order: JsonSchema,
    queries: HashMap<Operation, JsonSchema>,
    version: PhantomData<V>,
}

impl<V: Version> Api<V> {
    pub fn new(backends: Backends, idempotency: Arc<Idempotency>, token_url: &str) -> Result<Self, GatewayError> {
        let document = openapi::document::<V>(token_url);
        openapi::check_field_map(&document, "Product", &V::PRODUCT_FIELDS)?;
        openapi::check_field_map(&document, "Order", &V::ORDER_FIELDS)?;
        let components = &document["components"];
        let new_order = JsonSchema::new(&openapi::body_schema::<V>(), components)?;
        let queries = ROUTES
            .iter()
            .map(|route| {
                Ok((route.operation, JsonSchema::new(&openapi::query_schema(route.operation, &document), components)?))
            })
            .collect::<Result<_, GatewayError>>()?;
        Ok(Self { backends, idempotency, document, new_order, queries, version: PhantomData })
    }

    pub fn document(&self) -> &Value {
        &self.document
    }

    /// `raw` checked against `operation`'s published query schema. That schema also refuses a
    /// fieldset naming a member the resource does not have; the refusal then names the member.
    fn query(&self, operation: Operation, raw: Option<&str>) -> Result<Value, GatewayError> {
        let schema = self
            .queries
            .get(&operation)
            .ok_or_else(|| GatewayError::Internal(format!("{operation:?} has no query schema")))?;
        schema.query(raw).map_err(|error| match operation.fieldset_of() {
            Some(resource) => self.name_unknown_member(error, raw, resource),
            None => error,
        })
    }

    fn name_unknown_member(&self, error: GatewayError, raw: Option<&str>, resource: &str) -> GatewayError {
        let GatewayError::Invalid { unprocessable, message, mut violations } = error else { return error };
        let fields = serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or_default())
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(name, _)| name == "fields"))
            .map(|(_, value)| value);
        let unknown = fields.as_deref().and_then(|fields| {
            fields.split(',').filter(|name| !name.is_empty()).find(|name| !is_member(&self.document, resource, name))
        });
        let Some(unknown) = unknown else { return GatewayError::Invalid { unprocessable, message, violations } };
        let only = violations.len() == 1;
        for violation in violations.iter_mut().filter(|v| v.parameter.as_deref() == Some("fields")) {
            violation.detail = format!("unknown member `{unknown}`");
        }
        let message = match only {
            true => format!("`{unknown}` is not a member of {resource}"),
            false => format!("`{unknown}` is not a member of {resource}; `errors` lists each problem"),
        };
        GatewayError::Invalid { unprocessable, message, violations }
    }
}

fn is_member(document: &Value, resource: &str, name: &str) -> bool {
    openapi::has_member(document, resource, &name.split('.').map(str::to_owned).collect::<Vec<_>>())
}

/// The routes of version `V`, relative to its prefix.
pub fn routes<V: Version>(api: Arc<Api<V>>) -> Router {
    by_path(|operation| operation_service(api.clone(), operation))
}

/// One router with a route per path of the table, each path's operations from `service`.
pub fn by_path(service: impl Fn(Operation) -> MethodRouter) -> Router {
    let mut paths: Vec<(&str, MethodRouter)> = Vec::new();
    for route in ROUTES {
        let handler = service(route.operation);
        match paths.iter_mut().find(|(path, _)| *path == route.path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(handler),
            None => paths.push((route.path, handler)),
        }
    }
    paths.into_iter().fold(Router::new(), |router, (path, handler)| router.route(path, handler))
}

/// `operation` as version `V` serves it, its responses carrying the version's headers.
pub fn operation_service<V: Version>(api: Arc<Api<V>>, operation: Operation) -> MethodRouter {
    let handler: MethodRouter<Arc<Api<V>>> = match operation {
        Operation::GetProduct => get(get_product::<V>),
        Operation::GetStock => get(get_stock::<V>),
        Operation::ListOrders => get(list_orders::<V>),
        Operation::GetOrder => get(get_order::<V>),
        Operation::CreateOrder => post(create_order::<V>),
    };
    handler.with_state(api).layer(axum::middleware::map_response(version_headers::<V>))
}

async fn version_headers<V: Version>(mut response: Response) -> Response {
    for (name, value) in V::HEADERS {
        response.headers_mut().append(*name, HeaderValue::from_static(value));
    }
    response
}

/// A sparse fieldset: the members selected (`stock.available` as `["stock", "available"]`),
/// or every member when the client gave none.
struct Fieldset {
    paths: Option<Vec<Vec<String>>>,
    /// As the client wrote it, for the next page's link.
    raw: Option<String>,
}

impl Fieldset {
    /// `?fields=` checked against the members `map` names and, below them, the published
    /// schema of resource `schema`: an unknown name is a 400 naming it.
    fn parse(query: &Value, map: &FieldMap, document: &Value, schema: &str) -> Result<Self, GatewayError> {
        let Some(raw) = query["fields"].as_str() else { return Ok(Self { paths: None, raw: None }) };
        let mut paths = Vec::new();
        for name in raw.split(',') {
            let path: Vec<String> = name.split('.').map(str::to_owned).collect();
            let known = map.select_names([path[0].as_str()]).is_ok() && openapi::has_member(document, schema, &path);
            if !known {
                return Err(GatewayError::Invalid {
                    unprocessable: false,
                    message: format!("`{name}` is not a member of {schema}"),
                    violations: vec![bff_gateway::error::Violation {
                        pointer: None,
                        parameter: Some("fields".into()),
                        detail: format!("unknown member `{name}`"),
                    }],
                });
            }
            paths.push(path);
        }
        Ok(Self { paths: Some(paths), raw: Some(raw.to_owned()) })
    }

    fn selects(&self, member: &str) -> bool {
        self.paths.as_ref().is_none_or(|paths| paths.iter().any(|p| p[0] == member))
    }

    /// The backend fields the selection needs (never none: a call with no field asks for all,
    /// so the id alone is asked for when nothing else is).
    fn backend_fields(&self, map: &FieldMap) -> Vec<&'static str> {
        let selected = match &self.paths {
            Some(paths) => map.select_names(paths.iter().map(|p| p[0].as_str())),
            None => map.select_names(map.names()),
        };
        match selected {
            Ok(BackendFields::Only(fields)) if fields.is_empty() => vec!["id"],
            Ok(fields) => fields.as_slice().to_vec(),
            Err(_) => vec![],
        }
    }

    /// `value` with only the selected members. A selected member that is missing means
    /// `service` did not return what it was asked for: a fault, never silently dropped (unless it
    /// is one of the `omitted` members, left out and said so in `Partial-Response`).
    fn apply(&self, mut value: Value, service: &'static str, omitted: &[&str]) -> Result<Value, GatewayError> {
        let Some(paths) = &self.paths else { return Ok(value) };
        let kept = prune(&mut value, paths, 0);
        let allowed = |path: &Vec<String>| omitted.contains(&path[0].as_str());
        if let Some(missing) = paths.iter().find(|p| !has_path(&kept, p) && !allowed(p)) {
            return Err(UpstreamError::BadBody {
                service,
                reason: format!("`{}` was selected but not returned", missing.join(".")),
            }
            .into());
        }
        Ok(kept)
    }
}

fn prune(value: &mut Value, paths: &[Vec<String>], depth: usize) -> Value {
    let Value::Object(object) = value else { return value.take() };
    let mut kept = serde_json::Map::new();
    for (name, member) in object.iter_mut() {
        let below: Vec<Vec<String>> = paths.iter().filter(|p| p.get(depth) == Some(name)).cloned().collect();
        if below.is_empty() {
            continue;
        }
        if below.iter().any(|p| p.len() == depth + 1) {
            kept.insert(name.clone(), member.take());
        } else {
            kept.insert(name.clone(), prune(member, &below, depth + 1));
        }
    }
    Value::Object(kept)
}

fn has_path(value: &Value, path: &[String]) -> bool {
    path.iter().try_fold(value, |value, name| value.get(name)).is_some()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn serialize(value: impl serde::Serialize) -> Result<Value, GatewayError> {
    serde_json::to_value(value).map_err(|e| GatewayError::Internal(format!("serialising a response: {e}")))
}

async fn get_product<V: Version>(
    State(api): State<Arc<Api<V>>>,
    cx: RequestContext,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, GatewayError> {
    let id = token("product id", &id)?;
    let query = api.query(Operation::GetProduct, query.as_deref())?;
    let fields = Fieldset::parse(&query, &V::PRODUCT_FIELDS, &api.document, "Product")?;
    let catalog_fields = fields.backend_fields(&V::PRODUCT_FIELDS);
    let wants_stock = V::PRODUCT_STOCK.is_some_and(|member| fields.selects(member));
    let catalog = api.backends.catalog.get(cx.upstream(), id, &catalog_fields);
    // The catalog is required: its failure fails the answer. The inventory is optional: when it
    // cannot answer, the product goes out without its stock, and `Partial-Response` says so.
    let stock = async {
        match wants_stock {
            true => Ok(Some(optional(stock_of(&api.backends, &cx, id).await)?)),
            false => Ok(None),
        }
    };
    let (product, stock) =
        futures::future::try_join(async { catalog.await.map_err(GatewayError::from) }, stock).await?;
    let mut product = model::Product::from_catalog(product)?;
    let omitted = match stock {
        Some(Err(code)) => Some(code),
        Some(Ok(stock)) => {
            product.stock = Some(stock);
            None
        }
        None => None,
    };
    let members: &[&str] = if omitted.is_some() { &["stock"] } else { &[] };
    let body = fields.apply(serialize(V::Product::from(product))?, "catalog", members)?;
    let mut response = json_response(StatusCode::OK, &body);
    if let Some(code) = omitted {
        let partial = format!("stock; backend=\"inventory\"; code=\"{}\"", code.as_str());
        if let Ok(value) = HeaderValue::from_str(&partial) {
            response.headers_mut().insert(PARTIAL_RESPONSE, value);
        }
    }
    Ok(response)
}

/// Names the members left out of an answer because an optional backend could not answer.
pub const PARTIAL_RESPONSE: &str = "partial-response";

/// The result of an optional branch: its value, or the error code it was left out for when its
/// backend did not answer. Any other failure (the caller's fault, a missing product) still fails.
fn optional<T>(result: Result<T, GatewayError>) -> Result<Result<T, bff_gateway::ErrorCode>, GatewayError> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(GatewayError::Upstream(error)) if error.backend_did_not_answer() => {
            let code = GatewayError::Upstream(error).code();
            Ok(Err(code))
        }
        Err(error) => Err(error),
    }
}

async fn stock_of(backends: &Backends, cx: &RequestContext, id: &str) -> Result<model::Stock, GatewayError> {
    let level = backends
        .inventory
        .stock(cx.upstream(), &[id])
        .await?
        .into_iter()
        .find(|level| level.product_id == id)
        .ok_or_else(|| GatewayError::NotFound(format!("no stock is tracked for product `{id}`")))?;
    Ok(model::Stock { product_id: level.product_id, available: level.available })
}

async fn get_stock<V: Version>(
    State(api): State<Arc<Api<V>>>,
    cx: RequestContext,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, GatewayError> {
    let id = token("product id", &id)?;
    api.query(Operation::GetStock, query.as_deref())?;
    let stock = stock_of(&api.backends, &cx, id).await?;
    Ok(json_response(StatusCode::OK, &serialize(V::Stock::from(stock))?))
}

fn order_fields<V: Version>(api: &Api<V>, query: &Value) -> Result<(Fieldset, Vec<&'static str>), GatewayError> {
    let fields = Fieldset::parse(query, &V::ORDER_FIELDS, &api.document, "Order")?;
    let backend = fields.backend_fields(&V::ORDER_FIELDS);
    Ok((fields, backend))
}

async fn list_orders<V: Version>(
    State(api): State<Arc<Api<V>>>,
    cx: RequestContext,
    RawQuery(query): RawQuery,
) -> Result<Response, GatewayError> {
    let owner = cx.owner()?;
    let query = api.query(Operation::ListOrders, query.as_deref())?;
    let limit = query["limit"].as_u64().map_or(DEFAULT_PAGE_SIZE, |l| l as u32);
    let cursor = query["cursor"].as_str();
    let (fields, backend) = order_fields(&api, &query)?;
    let page = api.backends.orders.list(cx.upstream(), &owner, limit, cursor, &backend).await?;
    let items = page
        .orders
        .into_iter()
        .map(|order| fields.apply(serialize(V::Order::from(model::Order::from_backend(order)?))?, "orders", &[]))
        .collect::<Result<Vec<_>, GatewayError>>()?;
    let next_link = page.next_page_token.as_ref().map(|cursor| {
        let mut params = vec![("limit", limit.to_string()), ("cursor", cursor.clone())];
        params.extend(fields.raw.clone().map(|raw| ("fields", raw)));
        let encoded = serde_urlencoded::to_string(params).unwrap_or_default();
        format!("/{}/orders?{encoded}", V::NAME)
    });
    let page = model::Page { items, next_cursor: page.next_page_token, next_link: next_link.clone() };
    let mut response = json_response(StatusCode::OK, &serialize(V::OrderList::from(page))?);
    if let Some(link) = next_link.and_then(|link| HeaderValue::from_str(&format!("<{link}>; rel=\"next\"")).ok()) {
        response.headers_mut().append(header::LINK, link);
    }
    Ok(response)
}

async fn get_order<V: Version>(
    State(api): State<Arc<Api<V>>>,
    cx: RequestContext,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, GatewayError> {
    let owner = cx.owner()?;
    let id = token("order id", &id)?;
    let query = api.query(Operation::GetOrder, query.as_deref())?;
    let (fields, backend) = order_fields(&api, &query)?;
    let order = api.backends.orders.get(cx.upstream(), &owner, id, &backend).await?;
    let body = fields.apply(serialize(V::Order::from(model::Order::from_backend(order)?))?, "orders", &[])?;
    Ok(json_response(StatusCode::OK, &body))
}

/// Places an order owned by the calling partner. With an `Idempotency-Key` a retry returns the
/// first answer instead of placing another order (see [`bff_gateway::idempotency`]).
async fn create_order<V: Version>(
    State(api): State<Arc<Api<V>>>,
    cx: RequestContext,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let owner = cx.owner()?;
    api.query(Operation::CreateOrder, query.as_deref())?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    if !is_json {
        return Err(GatewayError::UnsupportedMediaType("send the order as `Content-Type: application/json`".into()));
    }
    let value = api.new_order.body(&body)?;
    // The schema has passed: a body it accepts always reads.
    let order: V::NewOrder = serde_json::from_value(value.clone())
        .map_err(|e| GatewayError::Internal(format!("a body the schema accepts does not read: {e}")))?;
    let order: model::NewOrder = order.into();
    let key = match headers.get(idempotency::IDEMPOTENCY_KEY_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .filter(|key| !key.is_empty() && key.len() <= idempotency::MAX_KEY_LEN)
                .ok_or_else(|| {
                    GatewayError::BadRequest("`Idempotency-Key` must be 1 to 255 visible characters".into())
                })?
                .to_owned(),
        ),
    };
    let Some(key) = key else { return place(&api, &cx, &owner, order, None).await.map(|r| r.into_response(false)) };
    let route = format!("POST /{}/orders", V::NAME);
    let canonical = idempotency::canonical_json(&value);
    match api.idempotency.claim(&owner, &key, &[route.as_bytes(), canonical.as_bytes()]).await? {
        Claim::Replay(stored) => Ok(stored.into_response(true)),
        Claim::Run(claimed) => match place(&api, &cx, &owner, order, Some(claimed.backend_key(&key))).await {
            Ok(stored) => {
                api.idempotency.complete(claimed, stored.clone()).await?;
                Ok(stored.into_response(false))
            }
            Err(error) => {
                // A refusal is the answer to this request and is kept; a failure on our side
                // or a backend's is not, so the client may retry with the same key.
                if error.status().is_server_error() {
                    api.idempotency.release(claimed).await?;
                } else {
                    let (parts, body) = error.to_problem(&cx.request_id).into_parts();
                    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
                    let stored = StoredResponse {
                        status: parts.status.as_u16(),
                        headers: vec![("content-type".into(), "application/problem+json".into())],
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    api.idempotency.complete(claimed, stored).await?;
                }
                Err(error)
            }
        },
    }
}

async fn place<V: Version>(
    api: &Api<V>,
    cx: &RequestContext,
    owner: &str,
    order: model::NewOrder,
    key: Option<String>,
) -> Result<StoredResponse, GatewayError> {
    let lines = order.lines.into_iter().map(|(product_id, quantity)| NewOrderLine { product_id, quantity }).collect();
    let order = api.backends.orders.create(cx.upstream(), owner, lines, key).await?;
    let location = format!("/{}/orders/{}", V::NAME, order.id);
    let body = serialize(V::Order::from(model::Order::from_backend(order)?))?;
    Ok(StoredResponse {
        status: StatusCode::CREATED.as_u16(),
        headers: vec![("content-type".into(), "application/json".into()), ("location".into(), location)],
        body: body.to_string(),
    })
}

/// `value` if it is a plausible id (short, printable, no separators), else a 400 that names
/// `what`; a malformed id never reaches a backend.
fn token<'a>(what: &str, value: &'a str) -> Result<&'a str, GatewayError> {
    let ok = value.len() <= MAX_TOKEN_LEN
        && value.bytes().any(|b| b.is_ascii_alphanumeric())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'=' | b':'));
    if ok { Ok(value) } else { Err(GatewayError::BadRequest(format!("`{what}` is not a valid id"))) }
}
