//! What every BFF does the same way: authentication, identity propagation, request ids, limits,
//! errors, health.

use bff_platform::{Stack, StackConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{HOME_QUERY, TestStack, at};

/// A token the identity service did not issue: signed by `key` under key id `kid`.
fn forged_token(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, issuer: &str, audience: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({ "iss": issuer, "sub": "u-1", "aud": audience, "exp": now + 300, "iat": now });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn rogue_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(include_bytes!("fixtures/rogue-signing-key.pem")).unwrap()
}

#[tokio::test]
async fn bad_bearer_tokens_get_401_with_a_graphql_error() {
    let t = TestStack::start().await;
    let demo = &t.stack.demo;
    let issuer = demo.issuer();
    let rs256 = Algorithm::RS256;
    let cases = [
        ("missing", None),
        ("expired", Some(demo.mint_token("u-1", "mobile", "", -120))),
        ("wrongly signed", Some(forged_token(&rogue_key(), rs256, Some("demo-2026"), &issuer, "mobile"))),
        ("unknown key id", Some(forged_token(&rogue_key(), rs256, Some("rogue"), &issuer, "mobile"))),
        ("no key id", Some(forged_token(&rogue_key(), rs256, None, &issuer, "mobile"))),
        ("wrong issuer", Some(forged_token(&rogue_key(), rs256, Some("demo-2026"), "https://evil.example", "mobile"))),
        (
            "HS256 with a guessable secret",
            Some(forged_token(
                &EncodingKey::from_secret(b"secret"),
                Algorithm::HS256,
                Some("demo-2026"),
                &issuer,
                "mobile",
            )),
        ),
        ("wrong audience", Some(demo.mint_token("u-1", "web", "", 300))),
        ("garbage", Some("not-a-jwt".to_owned())),
    ];
    for (case, token) in cases {
        let reply = t.graphql(t.stack.mobile, token.as_deref(), HOME_QUERY, json!({})).await;
        assert_eq!(reply.status, 401, "{case}: {:#}", reply.body);
        assert_eq!(reply.error_codes(), ["UNAUTHENTICATED"], "{case}");
        assert_eq!(reply.body["errors"][0]["extensions"]["requestId"].as_str(), reply.header("x-request-id"), "{case}");
        assert!(reply.body.get("data").is_none(), "{case}");
    }
    // Refused at the edge: no backend saw any of these requests.
    for service in ["users", "orders", "recommendations"] {
        assert_eq!(t.call_count(service).await, 0, "{service}");
    }
}

#[tokio::test]
async fn tokens_for_one_bff_do_not_open_another() {
    let t = TestStack::start().await;
    let mobile_token = t.token("u-1", "mobile");
    let reply = t.graphql(t.stack.web, Some(&mobile_token), "{ me { id } }", json!({})).await;
    assert_eq!(reply.status, 401);
    let reply = t.get(t.stack.partner, "/v1/orders", &[("authorization", &format!("Bearer {mobile_token}"))]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    // A user token minted for the partner audience still is not a partner credential.
    let user_token = t.token("u-1", "partner");
    let reply = t.get(t.stack.partner, "/v1/orders", &[("authorization", &format!("Bearer {user_token}"))]).await;
    assert_eq!(reply.status, 403, "{:#}", reply.body);
    assert_eq!(reply.body["code"], "FORBIDDEN");
    assert_eq!(t.call_count("orders").await, 0);
}

/// The stage itself, on a bare router whose handler reports the headers it was given: even code
/// that did copy inbound headers upstream would find no client-sent identity.
#[tokio::test]
async fn the_strip_stage_removes_client_identity_headers_before_handlers() {
    bff_upstream::tls::install_default_provider();
    use axum::routing::get;
    use bff_gateway::inbound::stage::StageLayer;
    use bff_gateway::inbound::strip_identity::StripIdentityHeaders;

    let echo = axum::Router::new()
        .route(
            "/",
            get(|headers: http::HeaderMap| async move {
                let names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
                axum::Json(names)
            }),
        )
        .layer(StageLayer::new(StripIdentityHeaders));
    let (addr, _server) =
        bff_platform::spawn_server(echo, "127.0.0.1:0".parse().unwrap(), std::future::pending()).await.unwrap();
    let reply = TestStack::reply(
        reqwest::Client::new()
            .get(TestStack::url(addr, "/"))
            .header("x-user-id", "u-999")
            .header("X-Client-Id", "evil")
            .header("x-user-scopes", "admin")
            .header("x-kept", "yes"),
    )
    .await;
    let names: Vec<&str> = reply.body.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(names.contains(&"x-kept"), "{names:?}");
    for identity in ["x-user-id", "x-client-id", "x-user-scopes"] {
        assert!(!names.contains(&identity), "{identity} reached the handler: {names:?}");
    }
}

/// A BFF's own stage, added at the stack's named point, runs inside the core's stages: it sees
/// the request id, and its refusals are rendered in the BFF's format and reach no route.
#[tokio::test]
async fn a_bff_stage_runs_at_its_named_point() {
    use bff_gateway::inbound::InboundStack;
    use bff_gateway::{Authenticator, ErrorFormat, GatewayError, RequestId};

    let t = TestStack::start().await;
    let config = bff_platform::partner_config(
        &t.stack.demo,
        "127.0.0.1:0".parse().unwrap(),
        std::time::Duration::from_secs(2),
        bff_platform::DEMO_PARTNER_API_KEY,
    );
    let authenticator = std::sync::Arc::new(
        Authenticator::from_config(&config.auth, bff_gateway::limits::Limits::unlimited()).unwrap(),
    );
    let routed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = routed.clone();
    let public = axum::Router::new().route(
        "/open",
        axum::routing::get(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { "routed" }
        }),
    );
    let closed_on_sundays =
        axum::middleware::from_fn(|request: axum::extract::Request, next: axum::middleware::Next| async move {
            assert!(request.extensions().get::<RequestId>().is_some(), "the stage runs before the request id");
            if request.headers().contains_key("x-sunday") {
                return axum::response::IntoResponse::into_response(GatewayError::Forbidden(
                    "closed on sundays".into(),
                ));
            }
            next.run(request).await
        });
    let router = InboundStack::new(&config.server, ErrorFormat::Problem, authenticator)
        .routes(axum::Router::new(), public)
        .before_authentication("closed on sundays", closed_on_sundays)
        .build();
    let (addr, _server) =
        bff_platform::spawn_server(router, "127.0.0.1:0".parse().unwrap(), std::future::pending()).await.unwrap();
    let refused = t.get(addr, "/open", &[("x-sunday", "1")]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["code"], "FORBIDDEN");
    assert_eq!(refused.body["request_id"].as_str(), refused.header("x-request-id"));
    assert_eq!(routed.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(t.get(addr, "/open", &[]).await.status, 200);
    assert_eq!(routed.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A stage is ready only when what is below it is: a concurrency limit under the gateway's stages
/// is felt above them, which is what lets tower's limits and load shedding compose.
#[tokio::test]
async fn stages_propagate_readiness() {
    use bff_gateway::inbound::access_log::AccessLog;
    use bff_gateway::inbound::stage::StageLayer;
    use bff_gateway::inbound::strip_identity::StripIdentityHeaders;
    use futures::FutureExt;
    use tower::{ServiceBuilder, ServiceExt};

    let handler = tower::service_fn(|_: axum::extract::Request| async {
        Ok::<_, std::convert::Infallible>(axum::response::Response::new(axum::body::Body::empty()))
    });
    let service = ServiceBuilder::new()
        .layer(StageLayer::new(AccessLog::default()))
        .layer(StageLayer::new(StripIdentityHeaders))
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .service(handler);
    let mut first = service.clone();
    first.ready().await.unwrap();
    let mut second = service.clone();
    assert!(second.ready().now_or_never().is_none(), "ready although the only slot is taken");
    drop(first);
    assert!(second.ready().now_or_never().is_some(), "not ready after the slot was given back");
}

#[tokio::test]
async fn client_sent_identity_headers_never_reach_a_backend() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    let request = t
        .http
        .post(TestStack::url(t.stack.mobile, "/graphql"))
        .bearer_auth(&token)
        .header("x-user-id", "u-999")
        .header("x-client-id", "evil")
        .header("x-user-scopes", "admin")
        .json(&json!({ "query": HOME_QUERY }));
    let reply = TestStack::reply(request).await;
    assert_eq!(at(&reply.body, "/data/home/user/id"), "u-1");
    for service in ["users", "orders", "recommendations"] {
        let calls = t.recent_calls(service).await;
        assert_eq!(calls.len(), 1, "{service}");
        let headers = &calls[0]["headers"];
        assert_eq!(headers["x-user-id"], "u-1", "{service}: {headers:#}");
        assert_eq!(headers["x-client-id"], "mobile", "{service}: {headers:#}");
        assert_eq!(headers["x-user-scopes"], "profile orders", "{service}: {headers:#}");
        assert!(headers.get("authorization").is_none(), "{service} saw the raw credential");
    }
    // No trace of what the client sent, under any header name.
    let seen = t.calls().await.to_string();
    for sent in ["u-999", "evil", "admin"] {
        assert!(!seen.contains(sent), "a backend saw the client-sent `{sent}`: {seen}");
    }

    // A partner never acts as a user, whatever it sends.
    let reply = t
        .get(t.stack.partner, "/v1/orders", &[("x-api-key", bff_platform::DEMO_PARTNER_API_KEY), ("x-user-id", "u-1")])
        .await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    let call = t.recent_calls("orders").await.pop().unwrap();
    assert!(call["headers"].get("x-user-id").is_none(), "{:#}", call["headers"]);
    assert_eq!(call["headers"]["x-client-id"], bff_platform::DEMO_PARTNER_CLIENT_ID);
    assert!(call["headers"].get("x-api-key").is_none());
}

#[tokio::test]
async fn request_ids_are_kept_when_well_formed_and_forwarded() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    let send = |id: &'static str| {
        t.http
            .post(TestStack::url(t.stack.mobile, "/graphql"))
            .bearer_auth(&token)
            .header("x-request-id", id)
            .json(&json!({ "query": "{ home { user { id name } } }" }))
    };
    let reply = TestStack::reply(send("trace-abc-123")).await;
    assert_eq!(reply.header("x-request-id"), Some("trace-abc-123"));
    let call = t.recent_calls("users").await.pop().unwrap();
    assert_eq!(call["headers"]["x-request-id"], "trace-abc-123");

    let reply = TestStack::reply(send("bad id with spaces")).await;
    let minted = reply.header("x-request-id").unwrap().to_owned();
    assert_ne!(minted, "bad id with spaces");
    assert!(bff_gateway::inbound::request_id::is_well_formed_request_id(&minted));
    let call = t.recent_calls("users").await.pop().unwrap();
    assert_eq!(call["headers"]["x-request-id"], minted.as_str());
}

#[tokio::test]
async fn the_orders_grpc_backend_gets_identity_and_request_id_as_metadata() {
    let t = TestStack::start().await;
    let token = t.token("u-3", "mobile");
    let reply = t.graphql(t.stack.mobile, Some(&token), "{ home { recentOrders { id } } }", json!({})).await;
    let call = t.recent_calls("orders").await.pop().unwrap();
    assert_eq!(call["headers"]["x-user-id"], "u-3");
    assert_eq!(call["headers"]["x-request-id"].as_str(), reply.header("x-request-id"));
    assert!(call["path"].as_str().unwrap().ends_with("/ListOrders"));
}

#[tokio::test]
async fn oversized_bodies_get_a_branded_413_before_any_backend_call() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    let huge = format!("{{ home {{ user {{ id }} }} }} #{}", "x".repeat(400 * 1024));
    let reply = t.graphql(t.stack.mobile, Some(&token), &huge, json!({})).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.error_codes(), ["PAYLOAD_TOO_LARGE"]);
    assert_eq!(t.call_count("users").await, 0);
}

#[tokio::test]
async fn malformed_graphql_gets_bad_request_codes() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    let reply = t.graphql(t.stack.mobile, Some(&token), "{ home { user { id ", json!({})).await;
    assert_eq!((reply.status.as_u16(), reply.error_codes()), (400, vec!["GRAPHQL_PARSE_FAILED".to_owned()]));
    assert!(reply.body.get("data").is_none_or(Value::is_null), "{:#}", reply.body);
    let reply = t.graphql(t.stack.mobile, Some(&token), "{ home { user { internalRiskScore } } }", json!({})).await;
    assert_eq!(reply.error_codes(), ["GRAPHQL_VALIDATION_FAILED"]);
    let not_json = t
        .http
        .post(TestStack::url(t.stack.mobile, "/graphql"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json");
    let reply = TestStack::reply(not_json).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_codes(), ["BAD_REQUEST"]);
    assert_eq!(t.call_count("users").await, 0);
}

#[tokio::test]
async fn internal_user_fields_never_appear_in_any_response() {
    let t = TestStack::start().await;
    // The users service does send them...
    let raw: Value =
        reqwest::get(TestStack::url(t.stack.demo.addrs.users, "/users/u-1")).await.unwrap().json().await.unwrap();
    assert!(raw.get("internal_risk_score").is_some(), "the demo no longer sends internal fields: {raw:#}");
    // ...and no BFF passes them on.
    let mobile = t.graphql(t.stack.mobile, Some(&t.token("u-1", "mobile")), HOME_QUERY, json!({})).await;
    let web = t.graphql(t.stack.web, Some(&t.token("u-1", "web")), crate::support::ME_QUERY, json!({})).await;
    let partner =
        t.get(t.stack.partner, "/v1/products/p-1", &[("x-api-key", bff_platform::DEMO_PARTNER_API_KEY)]).await;
    for (bff, body) in [("mobile", &mobile.body), ("web", &web.body), ("partner", &partner.body)] {
        assert!(body.get("errors").is_none(), "{bff}: {body:#}");
        // The answer, not the gateway's report beside it (`extensions.rateLimit.cost` is the
        // operation's GraphQL cost).
        let text = body.get("data").unwrap_or(body).to_string();
        for internal in ["internal", "risk", "kyc", "cost", "supplier"] {
            assert!(!text.contains(internal), "{bff} exposed `{internal}`: {text}");
        }
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_branded_errors() {
    let t = TestStack::start().await;
    let reply = t.get(t.stack.partner, "/v2/nothing", &[]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    assert_eq!(reply.body["code"], "NOT_FOUND");
    assert_eq!(reply.body["request_id"].as_str(), reply.header("x-request-id"));

    let reply = TestStack::reply(t.http.delete(TestStack::url(t.stack.mobile, "/graphql"))).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.error_codes(), ["METHOD_NOT_ALLOWED"]);
}

#[tokio::test]
async fn health_and_readiness() {
    let t = TestStack::start().await;
    for (bff, addr) in [("mobile", t.stack.mobile), ("web", t.stack.web), ("partner", t.stack.partner)] {
        let live = t.get(addr, "/healthz", &[]).await;
        assert_eq!(live.status, 200, "{bff}");
        let ready = t.get(addr, "/readyz", &[]).await;
        assert_eq!(ready.status, 200, "{bff}: {:#}", ready.body);
        assert_eq!(ready.body["status"], "ready");
        let verbose = t.get(addr, "/readyz?verbose", &[]).await;
        let text = verbose.body.as_str().unwrap();
        assert!(text.ends_with("readyz check passed\n"), "{bff}: {text}");
        assert!(!text.contains("[-]"), "{bff}: {text}");
    }
    // Probes are not business calls: the demo does not record them.
    assert_eq!(t.call_count("users").await, 0);
    assert_eq!(t.call_count("orders").await, 0);
}

/// A backend nobody listens for is reported, as information; the replica stays ready.
#[tokio::test]
async fn readiness_reports_a_dead_backend_without_failing() {
    let t = TestStack::start().await;
    let (_reserved, dead) = crate::support::refusing_addr();
    let mut config = bff_platform::mobile_config(
        &t.stack.demo,
        "127.0.0.1:0".parse().unwrap(),
        std::time::Duration::from_millis(300),
    );
    config.upstreams.get_mut("users").unwrap().url = bff_demo::http_url(dead).parse().unwrap();
    let (addr, _server) = bff_platform::spawn_server(
        mobile_bff::app(config).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        std::future::pending(),
    )
    .await
    .unwrap();
    let ready = t.get(addr, "/readyz", &[]).await;
    assert_eq!(ready.status, 200, "{:#}", ready.body);
    let verbose = t.get(addr, "/readyz?verbose", &[]).await;
    let text = verbose.body.as_str().unwrap();
    assert!(text.contains("[-]backend:users failed: unavailable"), "{text}");
    assert!(text.contains("[+]backend:orders ok"), "{text}");
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() {
    let stack = Stack::start(StackConfig::ephemeral()).await.unwrap();
    let http = reqwest::Client::new();
    let control = TestStack::url(stack.demo.addrs.control, "/faults/users");
    http.put(control).json(&json!({ "latency_ms": 300 })).send().await.unwrap();
    let token = stack.demo.mint_token("u-1", "mobile", "profile", 300);
    let request = http
        .post(TestStack::url(stack.mobile, "/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": "{ home { user { id name } } }" }))
        .send();
    let in_flight = tokio::spawn(request);
    // Shut down only once the request is inside: the users service has recorded it.
    let calls = TestStack::url(stack.demo.addrs.control, "/calls");
    for attempt in 0.. {
        let recorded: Value = http.get(&calls).send().await.unwrap().json().await.unwrap();
        if recorded["users"]["count"] == 1 {
            break;
        }
        assert!(attempt < 500, "the request never reached the users service");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mobile = stack.mobile;
    stack.shutdown().await;
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["home"]["user"]["id"], "u-1");
    // And it no longer accepts new connections.
    assert!(http.get(TestStack::url(mobile, "/healthz")).send().await.is_err());
}
