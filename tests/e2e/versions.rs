//! The partner API's versions: v1 and v2 from one set of handlers, version by media type, the
//! published OpenAPI documents (snapshots, an OpenAPI validator, and every response of these
//! tests checked against its operation's schema), sparse fieldsets down to the backends, and
//! idempotent order creation in process and across two replicas sharing Redis.

use std::net::SocketAddr;
use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use crate::attacks::serve;
use crate::support::{Reply, TestStack, at};

const KEY: (&str, &str) = ("x-api-key", bff_platform::DEMO_PARTNER_API_KEY);
const TOKEN_URL: &str = "http://127.0.0.1:5000/oauth/token";

/// Talks to one partner BFF and checks every answer against the schema its own published
/// document gives the operation and status.
pub struct Partner<'a> {
    t: &'a TestStack,
    addr: SocketAddr,
    documents: Vec<(&'static str, Value)>,
}

impl<'a> Partner<'a> {
    pub async fn new(t: &'a TestStack, addr: SocketAddr) -> Self {
        let mut documents = Vec::new();
        for version in ["v1", "v2"] {
            let reply = t.get(addr, &format!("/{version}/openapi.json"), &[]).await;
            assert_eq!(reply.status, 200, "the {version} document is public");
            documents.push((version, reply.body));
        }
        Self { t, addr, documents }
    }

    /// `method path` (as `template` in `version`'s document) with the demo partner's key.
    pub async fn call(
        &self,
        method: Method,
        version: &str,
        template: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.t.http.request(method.clone(), TestStack::url(self.addr, path)).header(KEY.0, KEY.1);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = TestStack::reply(request).await;
        self.conforms(&reply, &method, version, template);
        reply
    }

    /// `POST /v2/orders` with `headers` and `body`, checked like any other answer.
    pub async fn place(&self, headers: &[(&str, &str)], body: Value) -> Reply {
        self.call(Method::POST, "v2", "/orders", "/v2/orders", headers, Some(body)).await
    }

    pub async fn get(&self, version: &str, template: &str, path: &str) -> Reply {
        self.call(Method::GET, version, template, path, &[], None).await
    }

    pub fn conforms(&self, reply: &Reply, method: &Method, version: &str, template: &str) {
        let document = &self.documents.iter().find(|(v, _)| *v == version).unwrap().1;
        let operation = &document["paths"][format!("/{version}{template}")][method.as_str().to_ascii_lowercase()];
        assert!(operation.is_object(), "{method} /{version}{template} is not in the {version} document");
        let status = reply.status.as_str();
        let response = match operation["responses"].get(status) {
            Some(response) => response,
            None => &operation["responses"]["default"],
        };
        let content_type = reply.header("content-type").unwrap_or_default().split(';').next().unwrap().to_owned();
        let schema = &response["content"][&content_type]["schema"];
        assert!(schema.is_object(), "{method} {template} {status}: the document has no `{content_type}` answer");
        let mut root = schema.clone();
        root["components"] = document["components"].clone();
        let validator = jsonschema::draft202012::new(&root).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&reply.body).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{method} {template} {status} breaks its schema: {errors:#?}\n{:#}", reply.body);
    }
}

/// Another partner BFF against the stack's demo backends, its example config changed by `edit`.
async fn replica(t: &TestStack, edit: impl FnOnce(&mut partner_bff::Config)) -> SocketAddr {
    let mut config = bff_platform::partner_config(
        &t.stack.demo,
        "127.0.0.1:0".parse().unwrap(),
        std::time::Duration::from_secs(2),
        bff_platform::DEMO_PARTNER_API_KEY,
    );
    edit(&mut config);
    serve(partner_bff::app(config).unwrap()).await
}

fn calls_to(calls: &Value, service: &str, suffix: &str) -> Vec<Value> {
    calls[service]["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["path"].as_str().unwrap().ends_with(suffix))
        .cloned()
        .collect()
}

fn fields_of(call: &Value) -> Vec<&str> {
    call["fields"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect()
}

#[tokio::test]
async fn v1_and_v2_serve_the_same_data_in_their_own_shapes() {
    let t = TestStack::start().await;
    let p = Partner::new(&t, t.stack.partner).await;
    let v1 = p.get("v1", "/products/{id}", "/v1/products/p-42").await;
    let v2 = p.get("v2", "/products/{id}", "/v2/products/p-42").await;
    assert_eq!((v1.status.as_u16(), v2.status.as_u16()), (200, 200));
    assert_eq!(v1.body["id"], v2.body["id"]);
    assert_eq!(v1.body["image_url"], v2.body["imageUrl"]);
    assert_eq!(v1.body["review_count"], v2.body["reviewCount"]);
    // Money: minor units in v1, an exact decimal string in v2.
    let cents = v1.body["price_cents"].as_i64().unwrap();
    assert_eq!(v2.body["price"]["amount"], format!("{}.{:02}", cents / 100, cents % 100));
    assert_eq!(v2.body["price"]["currency"], v1.body["currency"]);
    // v2 embeds stock; v1 keeps its own stock route.
    let stock = p.get("v1", "/products/{id}/stock", "/v1/products/p-42/stock").await;
    assert_eq!(v2.body["stock"]["available"], stock.body["available"]);
    assert_eq!(v2.body["stock"]["inStock"], stock.body["in_stock"]);

    // v1 says it is going away, on its refusals too; v2 does not.
    let missing = p.get("v1", "/products/{id}", "/v1/products/p-999999").await;
    assert_eq!((missing.status.as_u16(), missing.header("deprecation")), (404, Some("@1796083200")));
    assert_eq!(v1.header("deprecation"), Some("@1796083200"));
    assert_eq!(v1.header("sunset"), Some("Wed, 01 Dec 2027 00:00:00 GMT"));
    assert!(v1.header("link").unwrap().contains("</v2/openapi.json>"));
    assert!(v1.header("link").unwrap().contains("deprecation"));
    assert_eq!((v2.header("deprecation"), v2.header("sunset")), (None, None));

    // An order placed through v2 reads the same through v1.
    let placed = p.place(&[], json!({ "lines": [{ "productId": "p-3", "quantity": 2 }] })).await;
    assert_eq!(placed.status, 201, "{:#}", placed.body);
    let id = placed.body["id"].as_str().unwrap();
    assert_eq!(placed.header("location"), Some(format!("/v2/orders/{id}").as_str()));
    let old = p.get("v1", "/orders/{id}", &format!("/v1/orders/{id}")).await;
    assert_eq!(old.body["status"], placed.body["status"]);
    assert_eq!(old.body["items"][0]["product_id"], "p-3");
    assert_eq!(placed.body["items"][0]["productId"], "p-3");
    let total = old.body["total_cents"].as_i64().unwrap();
    assert_eq!(placed.body["total"]["amount"], format!("{}.{:02}", total / 100, total % 100));
}

#[tokio::test]
async fn the_version_can_be_chosen_by_media_type() {
    let t = TestStack::start().await;
    let p = Partner::new(&t, t.stack.partner).await;
    let accept = |version: &'static str| [("accept", version)];
    let v2 = p
        .call(Method::GET, "v2", "/products/{id}", "/products/p-7", &accept("application/vnd.shop.v2+json"), None)
        .await;
    assert_eq!(v2.status, 200, "{:#}", v2.body);
    assert!(v2.body["price"]["amount"].is_string());
    assert_eq!(v2.header("vary"), Some("accept"));
    let v1 = p
        .call(Method::GET, "v1", "/products/{id}", "/products/p-7", &accept("application/vnd.shop.v1+json"), None)
        .await;
    assert!(v1.body["price_cents"].is_i64(), "{:#}", v1.body);
    assert!(v1.header("deprecation").is_some());
    // No version asked for: the latest.
    let latest = p.call(Method::GET, "v2", "/products/{id}", "/products/p-7", &[], None).await;
    assert_eq!(latest.body, v2.body);

    // A version this API does not serve: 406, with the ones it does; no backend call.
    t.reset().await;
    let refused = p
        .call(Method::GET, "v2", "/products/{id}", "/products/p-7", &accept("application/vnd.shop.v9+json"), None)
        .await;
    assert_eq!((refused.status.as_u16(), refused.body["code"].as_str()), (406, Some("UNSUPPORTED_VERSION")));
    assert_eq!(refused.body["supported"], json!(["application/vnd.shop.v1+json", "application/vnd.shop.v2+json"]));
    let missing = t.get(t.stack.partner, "/v9/products/p-7", &[KEY]).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body["detail"].as_str().unwrap().contains("v1 and v2"), "{:#}", missing.body);
    // A served version with a route it does not have is just not found.
    let unknown_route = t.get(t.stack.partner, "/v2/nothing/here", &[KEY]).await;
    assert_eq!(unknown_route.status, 404);
    assert!(!unknown_route.body["detail"].as_str().unwrap().contains("no version"), "{:#}", unknown_route.body);
    assert_eq!(t.call_count("catalog").await, 0);
}

#[tokio::test]
async fn sparse_fieldsets_trim_the_answer_and_the_backend_calls() {
    let t = TestStack::start().await;
    let p = Partner::new(&t, t.stack.partner).await;
    t.reset().await;
    let reply = p.get("v2", "/products/{id}", "/v2/products/p-5?fields=id,name,stock.available").await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    let members: Vec<&String> = reply.body.as_object().unwrap().keys().collect();
    assert_eq!(members, ["id", "name", "stock"]);
    assert_eq!(reply.body["stock"].as_object().unwrap().keys().collect::<Vec<_>>(), ["available"]);
    let calls = t.calls().await;
    assert_eq!(calls["catalog"]["count"], 1);
    assert_eq!(fields_of(&calls["catalog"]["recent"][0]), ["name"]);
    assert_eq!(calls["inventory"]["count"], 1);

    // Not selecting stock: inventory is not called.
    t.reset().await;
    let reply = p.get("v1", "/products/{id}", "/v1/products/p-5?fields=price_cents,currency").await;
    assert_eq!(reply.body.as_object().unwrap().len(), 2, "{:#}", reply.body);
    let calls = t.calls().await;
    assert_eq!(fields_of(&calls["catalog"]["recent"][0]), ["currency", "price_cents"]);
    assert_eq!(calls["inventory"]["count"], 0);

    // Orders: the gRPC read mask.
    let placed = p.place(&[], json!({ "lines": [{ "productId": "p-2", "quantity": 1 }] })).await;
    let id = placed.body["id"].as_str().unwrap();
    t.reset().await;
    let reply = p.get("v2", "/orders/{id}", &format!("/v2/orders/{id}?fields=id,status")).await;
    assert_eq!(reply.body.as_object().unwrap().keys().collect::<Vec<_>>(), ["id", "status"]);
    assert_eq!(fields_of(&calls_to(&t.calls().await, "orders", "/GetOrder")[0]), ["status"]);

    // An unknown member: 400 naming it, and no backend call.
    t.reset().await;
    for (version, path, name) in [
        ("v2", "/v2/products/p-5?fields=id,price_cents", "price_cents"),
        ("v1", "/v1/products/p-5?fields=stock", "stock"),
        ("v2", "/v2/products/p-5?fields=stock.nope", "stock.nope"),
    ] {
        let reply = p.get(version, "/products/{id}", path).await;
        assert_eq!(reply.status, 400, "{path}: {:#}", reply.body);
        assert_eq!(at(&reply.body, "/errors/0/parameter"), "fields");
        assert!(reply.body["detail"].as_str().unwrap().contains(name), "{:#}", reply.body);
    }
    let reply = p.get("v2", "/orders", "/v2/orders?limit=1000&colour=red").await;
    assert_eq!(reply.status, 400, "{:#}", reply.body);
    let named: Vec<&str> =
        reply.body["errors"].as_array().unwrap().iter().filter_map(|e| e["parameter"].as_str()).collect();
    assert!(named.contains(&"limit"), "{:#}", reply.body);
    assert!(reply.body["errors"].to_string().contains("colour"), "{:#}", reply.body);
    let calls = t.calls().await;
    assert_eq!((calls["catalog"]["count"].as_u64(), calls["orders"]["count"].as_u64()), (Some(0), Some(0)));
}

#[tokio::test]
async fn lists_page_by_cursor_with_next_links() {
    let t = TestStack::start().await;
    let p = Partner::new(&t, t.stack.partner).await;
    for n in 0..5 {
        let body = json!({ "lines": [{ "productId": format!("p-{}", n + 1), "quantity": 1 }] });
        assert_eq!(p.place(&[], body).await.status, 201);
    }
    let mut seen = Vec::new();
    let mut next = Some("/v2/orders?limit=2&fields=id".to_owned());
    while let Some(path) = next.take() {
        let page = p.get("v2", "/orders", &path).await;
        assert_eq!(page.status, 200, "{:#}", page.body);
        assert!(page.body["data"].as_array().unwrap().len() <= 2);
        seen.extend(page.body["data"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        next = page.body["links"]["next"].as_str().map(str::to_owned);
        if seen.len() == 2 {
            // An order placed mid-way lands at the head: the pages that follow neither repeat
            // nor skip an order.
            let body = json!({ "lines": [{ "productId": "p-9", "quantity": 1 }] });
            assert_eq!(p.place(&[], body).await.status, 201);
        }
        if let Some(link) = &next {
            assert_eq!(page.header("link"), Some(format!("<{link}>; rel=\"next\"").as_str()));
        }
        assert!(seen.len() <= 5, "pagination does not end");
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (5, 5), "{seen:?}");
    // v1 pages the same orders in its own shape.
    let v1 = p.get("v1", "/orders", "/v1/orders?limit=2").await;
    assert!(v1.body["next_cursor"].is_string(), "{:#}", v1.body);
    assert!(v1.header("link").unwrap().contains("rel=\"next\""));
}

#[tokio::test]
async fn an_idempotent_post_replayed_concurrently_creates_one_order() {
    let t = TestStack::start().await;
    let p = Partner::new(&t, t.stack.partner).await;
    let body = json!({ "lines": [{ "productId": "p-9", "quantity": 3 }] });
    let key = [("idempotency-key", "replay-ten-times")];
    let replies = futures::future::join_all((0..10).map(|_| p.place(&key, body.clone()))).await;
    let created: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert!(!created.is_empty());
    for reply in &replies {
        // Concurrent retries are told the first is still running; none is placed twice.
        assert!(
            reply.status == 201 || (reply.status == 409 && reply.body["code"] == "IDEMPOTENCY_KEY_IN_USE"),
            "{:#}",
            reply.body
        );
    }
    assert!(created.iter().all(|r| r.body == created[0].body), "every success is the one order");
    assert_eq!(calls_to(&t.calls().await, "orders", "/CreateOrder").len(), 1);

    // Replayed afterwards: the same status, headers and body, marked as a replay.
    let replay = p.place(&key, body.clone()).await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.body, created[0].body);
    assert_eq!(replay.header("location"), created[0].header("location"));
    assert_eq!(replay.header("idempotency-replayed"), Some("true"));
    // The same order written differently (member order, whitespace) is the same request.
    let rewritten = t
        .http
        .post(TestStack::url(t.stack.partner, "/v2/orders"))
        .header(KEY.0, KEY.1)
        .header(key[0].0, key[0].1)
        .header("content-type", "application/json")
        .body(r#"{ "lines" : [ { "quantity": 3, "productId": "p-9" } ] }"#);
    let rewritten = TestStack::reply(rewritten).await;
    p.conforms(&rewritten, &Method::POST, "v2", "/orders");
    assert_eq!((rewritten.status.as_u16(), rewritten.header("idempotency-replayed")), (201, Some("true")));
    // A request that failed on our side (a 5xx) is not kept: its key may be retried at once.
    t.set_faults("orders", json!({ "error_rate": 1.0 })).await;
    let retry_key = [("idempotency-key", "after-a-failure")];
    let failed = p.place(&retry_key, body.clone()).await;
    assert!(failed.status.is_server_error(), "{:#}", failed.body);
    t.set_faults("orders", json!({ "error_rate": 0.0 })).await;
    let retried = p.place(&retry_key, body.clone()).await;
    assert_eq!((retried.status.as_u16(), retried.header("idempotency-replayed")), (201, None), "{:#}", retried.body);
    // A create with an idempotency key is idempotent, so the outbound side retried the injected
    // 503 once before giving up: two attempts for the failure.
    let creates = calls_to(&t.calls().await, "orders", "/CreateOrder").len();
    assert_eq!(creates, 4, "first order, the failure (two attempts), the client's retry");
    // The same key with another order: 422, nothing placed.
    let changed = json!({ "lines": [{ "productId": "p-9", "quantity": 4 }] });
    let reused = p.place(&key, changed).await;
    assert_eq!((reused.status.as_u16(), reused.body["code"].as_str()), (422, Some("IDEMPOTENCY_KEY_REUSED")));
    assert_eq!(calls_to(&t.calls().await, "orders", "/CreateOrder").len(), 4, "nothing new");
}

#[tokio::test]
async fn two_replicas_sharing_redis_replay_each_others_answers() {
    let url = crate::support::shared_redis().await;
    let t = TestStack::start().await;
    let shared = |config: &mut partner_bff::Config| {
        config.redis = bff_gateway::config::RedisConfig::new(url.clone());
        config.own.idempotency.shared = true;
    };
    let (first, second) = (replica(&t, shared).await, replica(&t, shared).await);
    let (a, b) = (Partner::new(&t, first).await, Partner::new(&t, second).await);
    // A key of this run only: Redis outlives test runs.
    let key = format!("shared-{}", crate::support::unique());
    let headers = [("idempotency-key", key.as_str())];
    let body = json!({ "lines": [{ "productId": "p-11", "quantity": 1 }] });
    let placed = a.place(&headers, body.clone()).await;
    assert_eq!(placed.status, 201, "{:#}", placed.body);
    let replay = b.place(&headers, body).await;
    assert_eq!(replay.status, 201, "{:#}", replay.body);
    assert_eq!(replay.body, placed.body);
    assert_eq!(replay.header("idempotency-replayed"), Some("true"));
    let reused = b.place(&headers, json!({ "lines": [{ "productId": "p-12", "quantity": 1 }] })).await;
    assert_eq!(reused.status, 422);
    assert_eq!(calls_to(&t.calls().await, "orders", "/CreateOrder").len(), 1);
}

#[tokio::test]
async fn an_unreachable_redis_refuses_keyed_orders_and_nothing_else() {
    let t = TestStack::start().await;
    let (_socket, refusing) = crate::support::refusing_addr();
    let addr = replica(&t, |config| {
        config.redis = bff_gateway::config::RedisConfig::new(format!("redis://{refusing}"));
        config.own.idempotency.shared = true;
    })
    .await;
    let p = Partner::new(&t, addr).await;
    let body = json!({ "lines": [{ "productId": "p-13", "quantity": 1 }] });
    let started = std::time::Instant::now();
    let keyed = p.place(&[("idempotency-key", "k-down")], body.clone()).await;
    assert_eq!(
        (keyed.status.as_u16(), keyed.body["code"].as_str()),
        (503, Some("UPSTREAM_UNAVAILABLE")),
        "{:#}",
        keyed.body
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "waited {:?} on an unreachable Redis",
        started.elapsed()
    );
    assert_eq!(t.call_count("orders").await, 0, "an order was placed without its key being recorded");
    // Requests that need no record are served as ever.
    assert_eq!(p.place(&[], body).await.status, 201);
    assert_eq!(p.get("v2", "/products/{id}", "/v2/products/p-13").await.status, 200);
}

/// The published documents are what the code generates, and a real OpenAPI validator accepts
/// them. On drift the snapshot is rewritten and the test fails: review and commit it.
#[test]
fn the_openapi_documents_match_the_snapshots_and_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let documents = [
        ("partner.v1.openapi.json", partner_bff::openapi::document::<partner_bff::v1::V1>(TOKEN_URL)),
        ("partner.v2.openapi.json", partner_bff::openapi::document::<partner_bff::v2::V2>(TOKEN_URL)),
    ];
    let mut drifted = Vec::new();
    for (name, document) in &documents {
        let path = root.join("schemas").join(name);
        let text = serde_json::to_string_pretty(document).unwrap() + "\n";
        if std::fs::read_to_string(&path).unwrap_or_default() != text {
            std::fs::write(&path, &text).unwrap();
            drifted.push(path.display().to_string());
        }
    }
    assert!(drifted.is_empty(), "{drifted:?} drifted from the code and were rewritten: review and commit them");
    for (name, _) in &documents {
        let output = std::process::Command::new("python3")
            .args(["-m", "openapi_spec_validator"])
            .arg(root.join("schemas").join(name))
            .output()
            .expect("python3 runs");
        let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(
            !printed.contains("No module named"),
            "the OpenAPI validator is missing: `python3 -m pip install openapi-spec-validator==0.7.2` (.ci/run installs it)"
        );
        assert!(output.status.success(), "{name} is not a valid OpenAPI document:\n{printed}");
    }
}

/// A representation member without a field map entry (or the reverse) stops the BFF at build.
#[test]
fn field_maps_must_cover_exactly_the_published_members() {
    use bff_gateway::graphql::FieldMap;
    use partner_bff::version::Version as _;
    let document = partner_bff::openapi::document::<partner_bff::v2::V2>(TOKEN_URL);
    assert!(partner_bff::openapi::check_field_map(&document, "Product", &partner_bff::v2::V2::PRODUCT_FIELDS).is_ok());
    let missing = FieldMap::new("Product", &[("id", &[]), ("name", &["name"])]);
    let error = partner_bff::openapi::check_field_map(&document, "Product", &missing).unwrap_err();
    let error = format!("{error:?}");
    assert!(error.contains("not mapped"), "{error}");
    let stale = FieldMap::new(
        "Order",
        &[("id", &[]), ("status", &["status"]), ("total", &[]), ("createdAt", &[]), ("items", &[]), ("gone", &[])],
    );
    let error = partner_bff::openapi::check_field_map(&document, "Order", &stale).unwrap_err();
    let error = format!("{error:?}");
    assert!(error.contains("`gone` is mapped but not in the schema"), "{error}");
}

/// However badly a body breaks the schema, the refusal is bounded: at most 20 violations, each
/// detail short (a validator quotes the client's value), and no backend call.
#[tokio::test]
async fn a_refusal_lists_a_bounded_number_of_short_violations() {
    let t = TestStack::start().await;
    let p = Partner::new(&t, t.stack.partner).await;
    let long_id = "x".repeat(2000);
    let lines: Vec<Value> = (0..500).map(|_| json!({ "productId": long_id, "quantity": -1, "junk": true })).collect();
    let reply = p.place(&[], json!({ "lines": lines })).await;
    assert_eq!(reply.status, 413, "the body limit (64 KiB in the example config) comes first: {:#}", reply.body);
    let lines: Vec<Value> =
        (0..60).map(|_| json!({ "productId": "x".repeat(300), "quantity": -1, "junk": true })).collect();
    let reply = p.place(&[], json!({ "lines": lines })).await;
    assert_eq!(reply.status, 422, "{:#}", reply.body);
    let errors = reply.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 20);
    assert!(errors.iter().all(|e| e["detail"].as_str().unwrap().chars().count() <= 161), "{errors:#?}");
    assert_eq!(t.call_count("orders").await, 0);
}

/// A key is remembered for `[idempotency] ttl`, then it may place a new order.
#[tokio::test]
async fn idempotency_keys_expire_after_their_ttl() {
    let t = TestStack::start().await;
    let addr = replica(&t, |config| config.own.idempotency.ttl = std::time::Duration::from_millis(300)).await;
    let p = Partner::new(&t, addr).await;
    let body = json!({ "lines": [{ "productId": "p-14", "quantity": 1 }] });
    let key = [("idempotency-key", "short-lived")];
    let first = p.place(&key, body.clone()).await;
    let replay = p.place(&key, body.clone()).await;
    assert_eq!((first.status.as_u16(), replay.header("idempotency-replayed")), (201, Some("true")));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let after = p.place(&key, body).await;
    assert_eq!((after.status.as_u16(), after.header("idempotency-replayed")), (201, None));
    assert_ne!(after.body["id"], first.body["id"]);
    assert_eq!(calls_to(&t.calls().await, "orders", "/CreateOrder").len(), 2);
}
