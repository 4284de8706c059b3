//! The OpenAPI 3.1 document of each version, generated from the code: the route table
//! ([`ROUTES`]) gives the operations and their scopes, the version's representation types give
//! the schemas (utoipa's `ToSchema`), and the query parameters are the very schemas requests are
//! validated against. Served at `/v1/openapi.json` and `/v2/openapi.json` and kept in `schemas/`
//! by a drift test.

use bff_gateway::GatewayError;
use bff_gateway::graphql::FieldMap;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::{RefOr, schema::Schema};

use crate::routes::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Operation, ROUTES};
use crate::version::Version;

const TOKEN_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,127}$";
const SCOPES: [(&str, &str); 3] = [
    ("catalog:read", "Read products and their stock"),
    ("orders:read", "Read the orders this client placed"),
    ("orders:write", "Place orders"),
];

/// The document of version `V`; `token_url` is where OAuth2 clients get their tokens.
pub fn document<V: Version>(token_url: &str) -> Value {
    let mut schemas = Vec::new();
    collect::<V::Product>(&mut schemas);
    collect::<V::Stock>(&mut schemas);
    collect::<V::Order>(&mut schemas);
    collect::<V::OrderList>(&mut schemas);
    collect::<V::NewOrder>(&mut schemas);
    let mut components: serde_json::Map<String, Value> =
        schemas.into_iter().map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or_default())).collect();
    components.insert("Problem".into(), problem_schema());
    components.insert("Violation".into(), violation_schema());

    // The query parameters' schemas read the resources' members from here.
    let schemas = json!({ "components": { "schemas": components } });
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let path = format!("/{}{}", V::NAME, route.path);
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[route.method.as_str().to_ascii_lowercase()] = operation::<V>(route.operation, route.scope, &schemas);
    }
    let deprecated = !V::HEADERS.is_empty();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Shop partner API",
            "version": V::NAME,
            "description": format!(
                "Version {} of the partner API.{} Errors are RFC 9457 problem details with a stable `code` and the \
                 `request_id`. The version may also be chosen with `Accept: {}` on the unversioned paths.",
                V::NAME,
                if deprecated { " Deprecated: see the `Sunset` header of every response, and move to v2." } else { "" },
                V::MEDIA_TYPE,
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas["components"]["schemas"],
            "securitySchemes": {
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" },
                "oauth2": {
                    "type": "oauth2",
                    "flows": { "clientCredentials": {
                        "tokenUrl": token_url,
                        "scopes": SCOPES.iter().map(|(s, d)| ((*s).to_owned(), json!(d))).collect::<serde_json::Map<_, _>>(),
                    } },
                },
            },
        },
    })
}

fn collect<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    let name = T::name().into_owned();
    if !schemas.iter().any(|(n, _)| *n == name) {
        schemas.push((name, T::schema()));
    }
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    for (name, schema) in nested {
        if !schemas.iter().any(|(n, _)| *n == name) {
            schemas.push((name, schema));
        }
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The schema a `POST /orders` body must match.
pub fn body_schema<V: Version>() -> Value {
    schema_ref(&V::NewOrder::name())
}

/// The query parameters `operation` takes, as one object schema: unknown ones are refused.
/// `document` holds the component schemas; `fields` accepts exactly the members of the resource
/// the operation returns (nested ones by dots), so a fieldset the document allows is one the
/// handlers serve.
pub fn query_schema(operation: Operation, document: &Value) -> Value {
    let fields = |resource: &str| {
        let names = member_paths(document, resource).iter().map(|path| path.replace('.', "\\.")).collect::<Vec<_>>();
        let member = format!("(?:{})", names.join("|"));
        json!({
            "type": "string",
            "pattern": format!("^{member}(?:,{member}){{0,{}}}$", MAX_FIELDS - 1),
            "description": format!(
                "A sparse fieldset: the members to return, comma-separated, nested ones by dots \
                 (`id,name,stock.available`), at most {MAX_FIELDS}. The backends are asked only for these."
            ),
        })
    };
    let mut properties = serde_json::Map::new();
    if operation == Operation::ListOrders {
        properties.insert(
            "limit".into(),
            json!({ "type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE,
                    "description": "Orders per page." }),
        );
        properties.insert(
            "cursor".into(),
            json!({ "type": "string", "maxLength": 128, "pattern": TOKEN_PATTERN,
                    "description": "Where the page starts: the cursor of the previous page's next link." }),
        );
    }
    if let Some(resource) = operation.fieldset_of() {
        properties.insert("fields".into(), fields(resource));
    }
    json!({ "type": "object", "properties": properties, "additionalProperties": false })
}

/// Every member of component `schema` a fieldset may name: each property and, below an object
/// that requires none of its members (`stock`), each of its own as `outer.inner`. An object with
/// required members (`price`, a `Money`) is selected whole: a part of it would break its schema.
pub fn member_paths(document: &Value, schema: &str) -> Vec<String> {
    fn walk(document: &Value, schema: &Value, prefix: &str, depth: usize, out: &mut Vec<String>) {
        for (name, member) in schema["properties"].as_object().into_iter().flatten() {
            let path = format!("{prefix}{name}");
            out.push(path.clone());
            let member = resolve(document, member);
            let partial_is_valid = member["required"].as_array().is_none_or(Vec::is_empty);
            if depth < MAX_FIELD_DEPTH && partial_is_valid {
                walk(document, member, &format!("{path}."), depth + 1, out);
            }
        }
    }
    let mut paths = Vec::new();
    walk(document, resolve(document, &document["components"]["schemas"][schema]), "", 1, &mut paths);
    paths
}

/// Most members one fieldset names (a bound on the work a query makes, far above what any
/// resource has).
const MAX_FIELDS: usize = 32;
/// How deep a fieldset reaches (`stock.available` is 2).
const MAX_FIELD_DEPTH: usize = 3;

fn operation<V: Version>(operation: Operation, scope: &str, schemas: &Value) -> Value {
    let (id, summary, success, resource) = match operation {
        Operation::GetProduct => ("getProduct", "A product of the catalog", "200", "Product"),
        Operation::GetStock => ("getStock", "A product's stock level", "200", "Stock"),
        Operation::ListOrders => ("listOrders", "The orders this client placed, newest first", "200", "OrderList"),
        Operation::GetOrder => ("getOrder", "One order this client placed", "200", "Order"),
        Operation::CreateOrder => ("createOrder", "Place an order", "201", "Order"),
    };
    let mut parameters: Vec<Value> = Vec::new();
    if matches!(operation, Operation::GetProduct | Operation::GetStock | Operation::GetOrder) {
        parameters.push(json!({
            "name": "id", "in": "path", "required": true,
            "schema": { "type": "string", "maxLength": 128, "pattern": TOKEN_PATTERN },
        }));
    }
    let query = query_schema(operation, schemas);
    for (name, schema) in query["properties"].as_object().into_iter().flatten() {
        parameters.push(json!({ "name": name, "in": "query", "required": false, "schema": schema }));
    }
    let mut headers = serde_json::Map::new();
    for (name, _) in V::HEADERS {
        let title = match *name {
            "deprecation" => "Deprecation",
            "sunset" => "Sunset",
            _ => "Link",
        };
        headers.insert(title.into(), json!({ "schema": { "type": "string" }, "description": "This version is deprecated (RFC 9745, RFC 8594)." }));
    }
    if operation == Operation::ListOrders {
        headers.insert(
            "Link".into(),
            json!({ "schema": { "type": "string" }, "description": "`rel=\"next\"`: the next page." }),
        );
    }
    if operation == Operation::GetProduct {
        headers.insert(
            "Partial-Response".into(),
            json!({ "schema": { "type": "string" }, "description": "Present when an optional backend could not answer and its members were left out: \
                     `stock; backend=\"inventory\"; code=\"UPSTREAM_TIMEOUT\"` (the member, the backend, and the error code it \
                     would have failed with). The product itself comes from the catalog, which is required: when it cannot \
                     answer, the request fails (504 for a timeout, 502 or 503 otherwise)." }),
        );
    }
    if operation == Operation::CreateOrder {
        headers.insert("Location".into(), json!({ "schema": { "type": "string" } }));
        headers.insert("Idempotency-Replayed".into(), json!({ "schema": { "const": "true" }, "description": "This is the stored answer to an earlier request with the same key." }));
        parameters.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "Makes a retry safe: the same key with the same body returns the first answer and places \
                            nothing new (for 24 hours); with another body, 422; while the first is running, 409.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 255 },
        }));
    }
    // Every answer says what is left of each limit that applied (draft-ietf-httpapi-ratelimit-headers).
    let rate_limit_headers = json!({
        "RateLimit-Policy": { "schema": { "type": "string" }, "description": "The limits that apply: `\"plan:full\";q=100;w=2`." },
        "RateLimit": { "schema": { "type": "string" }, "description": "What is left of each: `\"plan:full\";r=99;t=1`." },
    });
    for (name, header) in rate_limit_headers.as_object().into_iter().flatten() {
        headers.insert(name.clone(), header.clone());
    }
    let problem = |description: &str| json!({ "description": description, "content": { "application/problem+json": { "schema": schema_ref("Problem") } } });
    let mut responses = serde_json::Map::new();
    responses.insert(
        success.into(),
        json!({
            "description": summary,
            "headers": headers,
            "content": { "application/json": { "schema": schema_ref(resource) } },
        }),
    );
    let malformed = match operation {
        Operation::ListOrders => {
            "A malformed request (`errors` names each bad parameter), or a `cursor` this API did not issue"
        }
        Operation::CreateOrder => {
            "A malformed request (a body that is not JSON, a bad `Idempotency-Key`), or an order the orders \
             service refused, such as one for a product it does not sell"
        }
        _ => "A malformed request: `errors` names each bad parameter",
    };
    let mut errors = vec![
        ("400", malformed),
        ("401", "No valid credential"),
        ("403", "The credential lacks the scope, or the plan does not include the route"),
        ("406", "`Accept` names a version this API does not serve (`supported` lists those it does)"),
        (
            "429",
            "A limit is used up (`RATE_LIMITED`: the plan's or the API's, named in `violated-policies`), or too \
             many failed authentication attempts (`TOO_MANY_FAILED_ATTEMPTS`); `Retry-After` says when to retry",
        ),
        ("502", "A backend failed"),
        ("503", "A backend or this service is unavailable"),
        ("504", "A backend or the request timed out"),
    ];
    if operation != Operation::ListOrders {
        errors.push(("404", "No such resource"));
    }
    if operation == Operation::CreateOrder {
        errors.extend([
            ("409", "A request with this Idempotency-Key is still running"),
            ("413", "The body is too large"),
            ("415", "The body is not JSON"),
            ("422", "The body breaks the schema (`errors` lists each member by JSON pointer), or the Idempotency-Key was used with another body"),
        ]);
    }
    for (status, description) in errors {
        responses.insert(status.into(), problem(description));
    }
    responses["429"]["headers"] = json!({
        "Retry-After": { "schema": { "type": "integer" }, "description": "Seconds until the request would be admitted." },
    });
    for (name, header) in rate_limit_headers.as_object().into_iter().flatten() {
        responses["429"]["headers"][name] = header.clone();
    }
    responses.insert("default".into(), problem("Any other error"));
    let mut operation_object = json!({
        "operationId": id,
        "summary": summary,
        "parameters": parameters,
        "security": [ { "apiKey": [scope] }, { "oauth2": [scope] } ],
        "responses": responses,
    });
    if operation == Operation::CreateOrder {
        operation_object["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": body_schema::<V>() } },
        });
    }
    if !V::HEADERS.is_empty() {
        operation_object["deprecated"] = json!(true);
    }
    operation_object
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "code", "request_id"],
        "properties": {
            "type": { "type": "string" },
            "title": { "type": "string" },
            "status": { "type": "integer" },
            "detail": { "type": "string" },
            "code": { "type": "string", "description": "Stable; switch on this." },
            "source": { "enum": ["gateway", "backend"],
                        "description": "Who made the error: the gateway, or a backend whose failure it relays." },
            "request_id": { "type": "string" },
            "errors": { "type": "array", "items": schema_ref("Violation"),
                        "description": "With VALIDATION_FAILED and BAD_REQUEST: each violation." },
            "supported": { "type": "array", "items": { "type": "string" },
                           "description": "With UNSUPPORTED_VERSION: the media types this API serves." },
            "violated-policies": { "type": "array", "items": { "type": "string" },
                                   "description": "With RATE_LIMITED: the limit that refused the request." },
        },
    })
}

fn violation_schema() -> Value {
    json!({
        "type": "object",
        "required": ["detail"],
        "properties": {
            "pointer": { "type": "string", "description": "A JSON pointer into the body." },
            "parameter": { "type": "string", "description": "A query parameter's name." },
            "detail": { "type": "string" },
        },
    })
}

/// The schema `schema` stands for, through `$ref`s and nullable unions.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return resolve(document, &document["components"]["schemas"][name]);
    }
    for union in ["oneOf", "anyOf"] {
        if let Some(variant) = schema[union].as_array().and_then(|v| v.iter().find(|s| s["type"] != "null")) {
            return resolve(document, variant);
        }
    }
    schema
}

/// Fails unless `map` names exactly the members component `schema` has: a member added to a
/// representation cannot be served from a backend answer that never asked for it.
pub fn check_field_map(document: &Value, schema: &str, map: &FieldMap) -> Result<(), GatewayError> {
    let component = resolve(document, &document["components"]["schemas"][schema]);
    let members: Vec<&str> =
        component["properties"].as_object().into_iter().flatten().map(|(k, _)| k.as_str()).collect();
    let fail = |why: String| Err(GatewayError::Internal(format!("field map of {schema}: {why}")));
    if let Some(unmapped) = members.iter().find(|m| !map.names().any(|n| n == **m)) {
        return fail(format!("`{unmapped}` is in the schema but not mapped to backend fields"));
    }
    if let Some(stale) = map.names().find(|n| !members.contains(n)) {
        return fail(format!("`{stale}` is mapped but not in the schema"));
    }
    Ok(())
}

/// Whether `path` (`["stock", "available"]`) names a member of component `schema` that a
/// fieldset may select ([`member_paths`]).
pub fn has_member(document: &Value, schema: &str, path: &[String]) -> bool {
    let path = path.join(".");
    member_paths(document, schema).contains(&path)
}
