//! The attacks the BFFs survive, one test each, against the real demo servers. Each asserts the
//! status and the stable code a hostile request gets, and that no backend was called for it.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use bff_demo::{KID, NEXT_KID};
use serde_json::{Value, json};

use crate::support::{HOME_QUERY, PROMPT, TestStack, at, raw_get};

const BACKENDS: [&str; 5] = ["users", "orders", "recommendations", "catalog", "inventory"];

/// Every call the domain backends have recorded (identity not included).
async fn backend_calls(t: &TestStack) -> u64 {
    let calls = t.calls().await;
    BACKENDS.iter().map(|service| calls[service]["count"].as_u64().unwrap_or(0)).sum()
}

pub async fn serve(router: Router) -> SocketAddr {
    let (addr, _server) =
        bff_platform::spawn_server(router, "127.0.0.1:0".parse().unwrap(), std::future::pending()).await.unwrap();
    addr
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Claims the demo would sign for a mobile user, to tamper with.
fn claims(t: &TestStack) -> Value {
    json!({ "iss": t.stack.demo.issuer(), "sub": "u-1", "aud": "mobile", "exp": now() + 300, "iat": now(), "scope": "profile orders" })
}

/// A request with `token` to mobile's home screen: the reply's status and error codes.
async fn home_with(t: &TestStack, token: &str) -> (u16, Vec<String>) {
    let reply = t.graphql(t.stack.mobile, Some(token), HOME_QUERY, json!({})).await;
    (reply.status.as_u16(), reply.error_codes())
}

fn unauthenticated() -> (u16, Vec<String>) {
    (401, vec!["UNAUTHENTICATED".to_owned()])
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused_before_any_backend_call() {
    let t = TestStack::start().await;
    let demo = &t.stack.demo;
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let valid = demo.sign_raw(&json!({ "alg": "RS256", "kid": KID }), &claims(&t), KID);
    assert_eq!(home_with(&t, &valid).await.0, 200, "the baseline token is accepted");
    t.reset().await;

    let mut tampered_claims = claims(&t);
    tampered_claims["sub"] = json!("u-2");
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(&tampered_claims), parts[2]);
    let alg_none = format!("{}.{}.", b64(&json!({ "alg": "none", "kid": KID })), b64(&claims(&t)));
    // HS256 keyed with the public key, the classic algorithm-confusion forgery.
    let jwks: Value = t.http.get(demo.jwks_url()).send().await.unwrap().json().await.unwrap();
    let public = jwks["keys"][0]["n"].as_str().unwrap().as_bytes().to_vec();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(KID.to_owned());
    let hs256 =
        jsonwebtoken::encode(&hs_header, &claims(&t), &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
    let with = |field: &str, value: Value| {
        let mut c = claims(&t);
        c[field] = value;
        demo.sign_raw(&json!({ "alg": "RS256", "kid": KID }), &c, KID)
    };
    let cases = [
        ("alg none", alg_none),
        ("HS256 with the RS public key", hs256),
        ("expired", with("exp", json!(now() - 120))),
        ("not yet valid", with("nbf", json!(now() + 3600))),
        ("wrong iss", with("iss", json!("https://evil.example"))),
        ("wrong aud", with("aud", json!("web"))),
        (
            "wrong typ (an ID token)",
            demo.sign_raw(&json!({ "alg": "RS256", "kid": KID, "typ": "id+jwt" }), &claims(&t), KID),
        ),
        (
            "unknown crit",
            demo.sign_raw(&json!({ "alg": "RS256", "kid": KID, "crit": ["x-bank"], "x-bank": 1 }), &claims(&t), KID),
        ),
        ("tampered payload", tampered),
        ("oversized", format!("{valid}{}", "A".repeat(9 * 1024))),
    ];
    for (name, token) in cases {
        assert_eq!(home_with(&t, &token).await, unauthenticated(), "{name}");
        assert_eq!(backend_calls(&t).await, 0, "{name} reached a backend");
    }
    // An access token's own `typ` values pass.
    for typ in ["JWT", "at+jwt", "application/at+jwt"] {
        let token = demo.sign_raw(&json!({ "alg": "RS256", "kid": KID, "typ": typ }), &claims(&t), KID);
        assert_eq!(home_with(&t, &token).await.0, 200, "typ {typ}");
    }
    t.reset().await;
    let _ = home_with(&t, &with("exp", json!(now() - 120))).await;
    assert_eq!(backend_calls(&t).await, 0);
}

#[tokio::test]
async fn a_flood_of_unknown_key_ids_hits_identity_a_bounded_number_of_times() {
    let t = TestStack::start().await;
    // Keys are loaded at start; count only what the flood causes.
    assert_eq!(home_with(&t, &t.token("u-1", "mobile")).await.0, 200);
    t.reset().await;
    let t = &t;
    // The key id is looked up before any signature work, so these need no valid signature.
    let payload = t.token("u-1", "mobile").split('.').nth(1).unwrap().to_owned();
    let floods = (0..200).map(|i| {
        use base64::Engine as _;
        let header = json!({ "alg": "RS256", "kid": format!("made-up-{i}") }).to_string();
        let token = format!("{}.{payload}.c2ln", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header));
        async move { home_with(t, &token).await }
    });
    let started = Instant::now();
    let replies = futures::future::join_all(floods).await;
    // Refused as unknown keys, and past 20 failures from this address (the devstack's
    // `[limits] failed_authentication`), refused unread.
    let locked_out = (429, vec!["TOO_MANY_FAILED_ATTEMPTS".to_owned()]);
    assert!(replies.iter().all(|r| *r == unauthenticated() || *r == locked_out), "{:?}", &replies[..3]);
    // The lockout is checked before and counted after verification: what was in flight when the
    // 20th failure landed still finishes its check.
    let counted = replies.iter().filter(|r| **r == unauthenticated()).count();
    assert!((20..200).contains(&counted), "{counted} failures before the lockout");
    assert!(started.elapsed() < PROMPT * 2, "{:?}", started.elapsed());
    // The refetch cooldown (30 s here) allows one early fetch for the whole flood.
    assert!(t.call_count("identity").await <= 1, "identity called {} times", t.call_count("identity").await);
    assert_eq!(backend_calls(t).await, 0);
}

#[tokio::test]
async fn keys_rotate_without_a_restart_and_removed_keys_stop_working() {
    let t = TestStack::start().await;
    let mut config = bff_platform::mobile_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
    config.auth.jwt.jwks_refresh_interval = Duration::from_secs(1);
    config.auth.jwt.jwks_refetch_cooldown = Duration::from_secs(1);
    let addr = serve(mobile_bff::app(config).unwrap()).await;
    let old = t.token("u-1", "mobile");
    let t = &t;
    let home = |token: String| async move { t.graphql(addr, Some(&token), HOME_QUERY, json!({})).await };
    assert_eq!(home(old.clone()).await.status, 200);

    // The provider publishes a new key and signs with it: accepted at once (an unknown kid
    // triggers the early refetch), no restart.
    t.stack.demo.rotate_keys(&[KID, NEXT_KID], NEXT_KID).unwrap();
    let new = t.token("u-1", "mobile");
    let reply = home(new.clone()).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);

    // The provider withdraws the old key: tokens signed with it stop working once the keys
    // refresh (1 s here), while the new key keeps working.
    t.stack.demo.rotate_keys(&[NEXT_KID], NEXT_KID).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = home(old.clone()).await;
        if reply.status == 401 {
            assert_eq!(reply.error_codes(), ["UNAUTHENTICATED"]);
            break;
        }
        assert!(Instant::now() < deadline, "the removed key still works after 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(home(new).await.status, 200);
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() {
    let t = TestStack::start().await;
    let mut config = bff_platform::mobile_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
    config.auth.jwt.leeway = Duration::ZERO;
    let addr = serve(mobile_bff::app(config).unwrap()).await;
    let token = t.stack.demo.mint_token("u-1", "mobile", "profile", 2);
    // Verified, then served again from the verified-token cache.
    for _ in 0..2 {
        assert_eq!(t.graphql(addr, Some(&token), HOME_QUERY, json!({})).await.status, 200);
    }
    // `exp` has second granularity: three seconds are past it whatever the minting second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reply = t.graphql(addr, Some(&token), HOME_QUERY, json!({})).await;
    assert_eq!(reply.status, 401, "{:#}", reply.body);
    assert_eq!(reply.error_codes(), ["UNAUTHENTICATED"]);
}

#[tokio::test]
async fn with_identity_down_valid_tokens_are_served_from_the_kept_keys_without_waiting() {
    let t = TestStack::start().await;
    let mut config = bff_platform::mobile_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
    config.auth.jwt.jwks_refresh_interval = Duration::from_secs(1);
    // A hundred home screens in 2.5 s are past the devstack's budget; the budget is not on trial.
    config.limits.cost = None;
    let addr = serve(mobile_bff::app(config).unwrap()).await;
    let token = t.token("u-1", "mobile");
    assert_eq!(t.graphql(addr, Some(&token), HOME_QUERY, json!({})).await.status, 200);
    t.set_faults("identity", json!({ "hang": true })).await;
    // Across several failed refreshes, every request is served, promptly.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let started = Instant::now();
        let replies = futures::future::join_all(
            (0..10).map(|_| async { t.graphql(addr, Some(&token), HOME_QUERY, json!({})).await }),
        )
        .await;
        assert!(replies.iter().all(|r| r.status == 200), "{:#}", replies[0].body);
        assert!(started.elapsed() < Duration::from_millis(800), "waited {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(t.get(addr, "/readyz", &[]).await.status, 200, "kept keys keep the replica ready");
}

#[tokio::test]
async fn a_missing_scope_is_forbidden_on_its_field_with_no_backend_call() {
    let t = TestStack::start().await;
    let no_scope = t.stack.demo.mint_token("u-1", "mobile", "", 300);
    let reply = t.graphql(t.stack.mobile, Some(&no_scope), HOME_QUERY, json!({})).await;
    assert_eq!(reply.error_codes(), ["FORBIDDEN", "FORBIDDEN", "FORBIDDEN"], "{:#}", reply.body);
    let messages: Vec<&str> =
        reply.body["errors"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert!(
        messages.contains(&"requires scope `profile`") && messages.contains(&"requires scope `orders`"),
        "{messages:?}"
    );
    let paths: Vec<&Value> = reply.body["errors"].as_array().unwrap().iter().map(|e| &e["path"]).collect();
    assert!(paths.contains(&&json!(["home", "recentOrders"])), "{paths:?}");

    let profile_only = t.stack.demo.mint_token("u-1", "web", "profile", 300);
    let reply = t
        .graphql(t.stack.web, Some(&profile_only), "{ me { name orders { edges { node { id } } } } }", json!({}))
        .await;
    assert_eq!(reply.error_codes(), ["FORBIDDEN"]);
    assert_eq!(reply.body["errors"][0]["path"], json!(["me", "orders"]));
    assert!(at(&reply.body, "/data/me/name").is_string());
    assert_eq!(t.call_count("orders").await, 0);
    assert_eq!(t.call_count("recommendations").await, 0);
    assert_eq!(t.call_count("users").await, 1, "only the permitted profile was fetched");
}

#[tokio::test]
async fn owner_namespaces_do_not_collide() {
    let t = TestStack::start().await;
    // The partner places an order with its API key: owned by `key:demo-partner`.
    let created = t
        .http
        .post(TestStack::url(t.stack.partner, "/v1/orders"))
        .header("x-api-key", bff_platform::DEMO_PARTNER_API_KEY)
        .json(&json!({ "items": [{ "product_id": "p-1", "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // Users whose subject spells the partner's owner see none of it.
    for sub in ["key:demo-partner", "client:demo-partner", "partner:demo-partner", "demo-partner"] {
        let token = t.token(sub, "web");
        let reply =
            t.graphql(t.stack.web, Some(&token), "{ me { orders { edges { node { id } } } } }", json!({})).await;
        assert_eq!(at(&reply.body, "/data/me/orders/edges"), &json!([]), "sub {sub}");
    }
    // And the same partner through OAuth is another owner again.
    let form =
        [("grant_type", "client_credentials"), ("client_id", "demo-partner"), ("client_secret", "demo-partner-secret")];
    let token: Value = t
        .http
        .post(format!("{}/oauth/token", t.stack.demo.issuer()))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reply = t
        .get(
            t.stack.partner,
            "/v1/orders",
            &[("authorization", &format!("Bearer {}", token["access_token"].as_str().unwrap()))],
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["items"], json!([]));
}

#[tokio::test]
async fn revoked_keys_and_plans_are_enforced() {
    let t = TestStack::start().await;
    let mut config = bff_platform::partner_config(
        &t.stack.demo,
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(2),
        bff_platform::DEMO_PARTNER_API_KEY,
    );
    let mut revoked = config.auth.api_keys[0].clone();
    revoked.client_id = "former-partner".into();
    revoked.sha256 = bff_gateway::auth::ApiKeys::hash("revoked-key");
    revoked.revoked = true;
    config.auth.api_keys.push(revoked);
    let mut limited = config.auth.api_keys[0].clone();
    limited.client_id = "catalog-partner".into();
    limited.sha256 = bff_gateway::auth::ApiKeys::hash("catalog-key");
    config.auth.api_keys.push(limited);
    config.own.client_plans.insert("catalog-partner".into(), "catalog-only".into());
    let mut planless = config.auth.api_keys[0].clone();
    planless.client_id = "no-plan-partner".into();
    planless.sha256 = bff_gateway::auth::ApiKeys::hash("no-plan-key");
    config.auth.api_keys.push(planless);
    let addr = serve(partner_bff::app(config).unwrap()).await;

    let reply = t.get(addr, "/v1/products/p-1", &[("x-api-key", "revoked-key")]).await;
    assert_eq!((reply.status.as_u16(), reply.body["code"].as_str()), (401, Some("UNAUTHENTICATED")));
    assert!(reply.body["detail"].as_str().unwrap().contains("revoked"), "{:#}", reply.body);
    assert_eq!(t.get(addr, "/v1/products/p-1", &[("x-api-key", "catalog-key")]).await.status, 200);
    let reply = t.get(addr, "/v1/orders", &[("x-api-key", "catalog-key")]).await;
    assert_eq!((reply.status.as_u16(), reply.body["code"].as_str()), (403, Some("FORBIDDEN")));
    assert!(reply.body["detail"].as_str().unwrap().contains("plan"), "{:#}", reply.body);
    let reply = t.get(addr, "/v1/products/p-1", &[("x-api-key", "no-plan-key")]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(t.call_count("orders").await, 0);
    assert_eq!(t.call_count("catalog").await, 1, "only the permitted call");
}

#[tokio::test]
async fn spoofed_identity_headers_and_forwarded_addresses_are_ignored() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    let reply = TestStack::reply(
        t.http
            .post(TestStack::url(t.stack.mobile, "/graphql"))
            .bearer_auth(&token)
            .header("x-user-id", "u-2")
            .header("x-client-id", "admin")
            .header("x-user-scopes", "admin")
            .json(&json!({ "query": "{ home { user { id name } } }" })),
    )
    .await;
    assert_eq!(at(&reply.body, "/data/home/user/id"), "u-1");

    // Failed attempts are counted against the peer, whatever X-Forwarded-For claims.
    let mut config = bff_platform::partner_config(
        &t.stack.demo,
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(2),
        bff_platform::DEMO_PARTNER_API_KEY,
    );
    config.limits.failed_authentication = bff_gateway::limits::Quota::new(5, Duration::from_secs(60), 5);
    let addr = serve(partner_bff::app(config.clone()).unwrap()).await;
    for i in 0..5 {
        let forwarded = format!("198.51.100.{i}");
        let reply = t.get(addr, "/v1/products/p-1", &[("x-api-key", "guess"), ("x-forwarded-for", &forwarded)]).await;
        assert_eq!(reply.status, 401);
    }
    let reply = t.get(addr, "/v1/products/p-1", &[("x-api-key", "guess"), ("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!((reply.status.as_u16(), reply.body["code"].as_str()), (429, Some("TOO_MANY_FAILED_ATTEMPTS")));
    assert!(reply.header("retry-after").is_some());
    // Even the right key waits out the window: the source is locked out, not the key.
    let reply = t.get(addr, "/v1/products/p-1", &[("x-api-key", bff_platform::DEMO_PARTNER_API_KEY)]).await;
    assert_eq!(reply.status, 429);

    // Behind a trusted proxy, the forwarded address is the client, so one client's lockout is
    // not another's.
    config.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let addr = serve(partner_bff::app(config).unwrap()).await;
    for _ in 0..5 {
        t.get(addr, "/v1/products/p-1", &[("x-api-key", "guess"), ("x-forwarded-for", "198.51.100.1")]).await;
    }
    let locked = t.get(addr, "/v1/products/p-1", &[("x-api-key", "guess"), ("x-forwarded-for", "198.51.100.1")]).await;
    assert_eq!(locked.status, 429);
    let other = t.get(addr, "/v1/products/p-1", &[("x-api-key", "guess"), ("x-forwarded-for", "198.51.100.2")]).await;
    assert_eq!(other.status, 401);
    assert_eq!(t.call_count("catalog").await, 0);
}

/// A GraphQL attack on mobile: the status, the codes, and no backend call.
async fn refused(t: &TestStack, query: &str) -> (u16, Vec<String>) {
    let started = Instant::now();
    let reply = t.graphql(t.stack.mobile, Some(&t.token("u-1", "mobile")), query, json!({})).await;
    assert!(started.elapsed() < PROMPT, "{:?}", started.elapsed());
    assert!(reply.body.get("data").is_none_or(Value::is_null), "{:#}", reply.body);
    (reply.status.as_u16(), reply.error_codes())
}

fn code(code: &str) -> (u16, Vec<String>) {
    (400, vec![code.to_owned()])
}

#[tokio::test]
async fn explosive_and_oversized_documents_are_refused_cheaply() {
    let t = TestStack::start().await;
    // Each fragment spreads the next one twice: 2^26 fields from 1.5 KB.
    let mut doubling = String::from("query { home { ...F26 } } fragment F0 on Home { user { id } } ");
    for i in 1..=26 {
        doubling.push_str(&format!("fragment F{i} on Home {{ ...F{p} ...F{p} }} ", p = i - 1));
    }
    assert_eq!(refused(&t, &doubling).await, code("TOO_MANY_FIELDS"));
    // The same explosion in a fragment no operation uses: validation would still walk it.
    let unused = doubling.replacen("query { home { ...F26 } }", "query { home { user { id } } }", 1);
    assert_eq!(refused(&t, &unused).await, code("TOO_MANY_FIELDS"));
    // Wide instead of deep: every fragment spreads all the ones before it.
    let mut wide = String::from("query { home { ...W12 } } fragment W0 on Home { user { id } } ");
    for i in 1..=12 {
        let spreads: String = (0..i).map(|j| format!("...W{j} ")).collect();
        wide.push_str(&format!("fragment W{i} on Home {{ {spreads}}} "));
    }
    assert_eq!(refused(&t, &wide).await, code("TOO_MANY_FIELDS"));
    // A cycle.
    let cycle = "query { home { ...A } } fragment A on Home { ...B } fragment B on Home { ...A }";
    assert_eq!(refused(&t, cycle).await, code("GRAPHQL_VALIDATION_FAILED"));
    // Depth, whatever the field names.
    let deep = format!("{{ {}x{} }}", "a { ".repeat(20), " }".repeat(20));
    assert_eq!(refused(&t, &deep).await, code("QUERY_TOO_DEEP"));
    // Cost from a page size.
    assert_eq!(refused(&t, "{ home { recentOrders(first: 100000) { id } } }").await, code("QUERY_TOO_COSTLY"));
    let variable = "query($n: Int!) { home { ...R } } fragment R on Home { recentOrders(first: $n) { id } }";
    let reply = t.graphql(t.stack.mobile, Some(&t.token("u-1", "mobile")), variable, json!({ "n": 100000 })).await;
    assert_eq!(reply.error_codes(), ["QUERY_TOO_COSTLY"], "a page size hidden in a variable and a fragment");
    // Tokens, directives, size.
    let tokens = format!("{{ home {{ user {{ {} }} }} }}", "id ".repeat(3000));
    assert_eq!(refused(&t, &tokens).await, code("TOO_MANY_TOKENS"));
    let directives = format!("{{ home {{ user {{ id {} }} }} }}", "@include(if: true) ".repeat(10));
    assert_eq!(refused(&t, &directives).await, code("TOO_MANY_DIRECTIVES"));
    let large = format!("{{ home {{ user {{ id }} }} }} # {}", "x".repeat(20 * 1024));
    assert_eq!(refused(&t, &large).await, code("DOCUMENT_TOO_LARGE"));
    let huge = format!("{{ home {{ user {{ id }} }} }} # {}", "x".repeat(1024 * 1024));
    assert_eq!(refused(&t, &huge).await, (413, vec!["PAYLOAD_TOO_LARGE".to_owned()]));
    // Aliases: 200 copies of the home screen.
    let aliases: String = (0..100).map(|i| format!("a{i}: home {{ user {{ name }} }} ")).collect();
    assert_eq!(refused(&t, &format!("{{ {aliases} }}")).await, code("TOO_MANY_ROOT_FIELDS"));
    let nested: String = (0..100).map(|i| format!("a{i}: user {{ name }} ")).collect();
    assert_eq!(refused(&t, &format!("{{ home {{ {nested} }} }}")).await, code("TOO_MANY_ALIASES"));
    assert_eq!(backend_calls(&t).await, 0);
}

#[tokio::test]
async fn aliases_fetch_each_backend_datum_once() {
    let t = TestStack::start().await;
    let aliases: String = (0..10).map(|i| format!("a{i}: home {{ user {{ name }} recentOrders {{ id }} }} ")).collect();
    let reply =
        t.graphql(t.stack.mobile, Some(&t.token("u-1", "mobile")), &format!("{{ {aliases} }}"), json!({})).await;
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
    assert_eq!(at(&reply.body, "/data/a9/user/name"), at(&reply.body, "/data/a0/user/name"));
    assert_eq!((t.call_count("users").await, t.call_count("orders").await), (1, 1));
    t.reset().await;
    let aliases: String = (0..10).map(|i| format!("a{i}: me {{ name }} ")).collect();
    let reply = t.graphql(t.stack.web, Some(&t.token("u-1", "web")), &format!("{{ {aliases} }}"), json!({})).await;
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
    assert_eq!(t.call_count("users").await, 1);
}

#[tokio::test]
async fn batches_errors_and_introspection_are_bounded() {
    let t = TestStack::start().await;
    let token = t.token("u-1", "mobile");
    let batch: Vec<Value> = (0..1000).map(|_| json!({ "query": "{ home { user { id } } }" })).collect();
    let reply =
        TestStack::reply(t.http.post(TestStack::url(t.stack.mobile, "/graphql")).bearer_auth(&token).json(&batch))
            .await;
    assert_eq!((reply.status.as_u16(), reply.error_codes()), (400, vec!["BATCH_TOO_LARGE".to_owned()]));
    // A small batch runs, each operation under the same limits.
    let batch = json!([{ "query": "{ home { user { id name } } }" }, { "query": "{ home { recentOrders(first: 100000) { id } } }" }]);
    let reply =
        TestStack::reply(t.http.post(TestStack::url(t.stack.mobile, "/graphql")).bearer_auth(&token).json(&batch))
            .await;
    assert_eq!(reply.status, 200);
    assert_eq!(at(&reply.body, "/0/data/home/user/id"), "u-1");
    assert_eq!(reply.body[1]["errors"][0]["extensions"]["code"], "QUERY_TOO_COSTLY");
    // A document full of unknown directives gets a bounded error list.
    let flood: String = (0..150).map(|i| format!("id @nope{i} ")).collect();
    let reply =
        t.graphql(t.stack.mobile, Some(&token), &format!("{{ home {{ user {{ {flood} }} }} }}"), json!({})).await;
    let codes = reply.error_codes();
    assert_eq!(codes.len(), 20, "{codes:?}");
    assert_eq!(codes.last().map(String::as_str), Some("TOO_MANY_ERRORS"));

    // The production config: no introspection, no suggestions, no GraphiQL.
    let config = bff_platform::mobile_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
    let mut production = config.clone();
    production.own.graphql = Default::default();
    let addr = serve(mobile_bff::app(production).unwrap()).await;
    let reply = t.graphql(addr, Some(&token), "{ __schema { types { name } } }", json!({})).await;
    assert_eq!((reply.status.as_u16(), reply.error_codes()), (400, vec!["INTROSPECTION_DISABLED".to_owned()]));
    let reply = t.graphql(addr, Some(&token), "{ home { usr { id } } }", json!({})).await;
    assert!(!reply.body.to_string().contains("Did you mean"), "{:#}", reply.body);
    // No GraphiQL: a browser's GET is a query like any other, and needs a token.
    assert_eq!(t.get(addr, "/graphql", &[("accept", "text/html")]).await.status, 401);
    // The devstack's config has them on.
    let reply = t.graphql(t.stack.mobile, Some(&token), "{ __schema { queryType { name } } }", json!({})).await;
    assert_eq!(at(&reply.body, "/data/__schema/queryType/name"), "Query");
    assert_eq!(backend_calls(&t).await, 1, "only the one good batch operation");
}

#[tokio::test]
async fn hostile_partner_ids_never_reach_a_backend() {
    let t = TestStack::start().await;
    let key = ("x-api-key", bff_platform::DEMO_PARTNER_API_KEY);
    for path in [
        "/v1/products/..%2F..%2Fadmin",
        "/v1/products/%2e%2e",
        "/v1/products/%2E%2E/stock",
        "/v1/products/.%2e",
        "/v1/products/%252e%252e",
        "/v1/products/p-1%09",
        "/v1/products/%20..%20",
        "/v1/products/p-1%0d%0aX-Injected:%201",
        "/v1/orders/%00",
        "/v1/products/p-1%2Fstock",
    ] {
        let status = raw_get(t.stack.partner, path, &[key]).await;
        assert!(matches!(status, 400 | 404), "{path}: {status}");
    }
    assert_eq!(backend_calls(&t).await, 0);
}

#[tokio::test]
async fn responses_carry_security_headers_and_cors_is_strict() {
    let t = TestStack::start().await;
    let reply = t.graphql(t.stack.mobile, Some(&t.token("u-1", "mobile")), HOME_QUERY, json!({})).await;
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("server"), None);
    assert_eq!(t.get(t.stack.mobile, "/healthz", &[]).await.header("x-content-type-options"), Some("nosniff"));

    let mut config = bff_platform::web_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), Duration::from_secs(2));
    config.server.cors = Some(bff_gateway::config::CorsConfig {
        allowed_origins: vec!["https://app.example.com".into()],
        allow_credentials: true,
        max_age: Duration::from_secs(600),
    });
    let addr = serve(web_bff::app(config).unwrap()).await;
    let preflight = |origin: &'static str| {
        t.http
            .request(reqwest::Method::OPTIONS, TestStack::url(addr, "/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    assert_eq!(backend_calls(&t).await, 3, "only the home screen's calls");

    // A wildcard with credentials does not pass validation.
    let text = include_str!("../../bffs/web/config.example.toml").to_owned()
        + "\n[server.cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\n";
    let error = bff_gateway::config::from_toml::<web_bff::Web>(&text, std::path::Path::new("web.toml"), [])
        .unwrap_err()
        .to_string();
    assert!(error.contains("server.cors.allowed_origins"), "{error}");
}

/// The 8 KiB limit on a token: a correctly signed token over it is refused for its size, before
/// any signature work (the refusal says so), and one just under it is accepted.
#[tokio::test]
async fn a_correctly_signed_token_over_8_kib_is_refused_for_its_size() {
    const LIMIT: usize = 8 * 1024;
    let t = TestStack::start().await;
    let demo = &t.stack.demo;
    let padded = |pad: usize| {
        let mut c = claims(&t);
        c["pad"] = json!("x".repeat(pad));
        demo.sign_raw(&json!({ "alg": "RS256", "kid": KID }), &c, KID)
    };
    // The largest padding whose token still fits, found by the token's own length.
    let base = padded(0).len();
    let mut pad = (LIMIT - base) * 3 / 4;
    while padded(pad + 1).len() <= LIMIT {
        pad += 1;
    }
    let (fits, over) = (padded(pad), padded(pad + 64));
    assert!(fits.len() <= LIMIT && fits.len() > LIMIT - 8, "{}", fits.len());
    assert!(over.len() > LIMIT);
    assert_eq!(home_with(&t, &fits).await.0, 200, "a token just under the limit is accepted");
    t.reset().await;
    let reply = t.graphql(t.stack.mobile, Some(&over), HOME_QUERY, json!({})).await;
    assert_eq!((reply.status.as_u16(), reply.error_codes()), unauthenticated());
    assert_eq!(reply.body["errors"][0]["message"], "invalid token: too long", "{:#}", reply.body);
    assert_eq!(backend_calls(&t).await, 0);
}

/// A correctly signed token whose subject, client or scopes could not travel as a header or serve
/// as a key (empty, huge, spaces, control characters) is refused with 401 before anything is
/// called: a signature does not make a malformed identity usable.
#[tokio::test]
async fn a_signed_token_with_a_malformed_identity_is_refused() {
    let t = TestStack::start().await;
    let demo = &t.stack.demo;
    let with = |field: &str, value: Value| {
        let mut c = claims(&t);
        c[field] = value;
        demo.sign_raw(&json!({ "alg": "RS256", "kid": KID }), &c, KID)
    };
    let cases = [
        ("empty subject", with("sub", json!(""))),
        ("subject with a newline", with("sub", json!("u-1\nx-user-id: u-2"))),
        ("subject with a space", with("sub", json!("u 1"))),
        ("a 300-byte subject", with("sub", json!("u".repeat(300)))),
        ("client id with a control character", with("azp", json!("mobile\u{7}"))),
        ("a scope with a control character", with("scope", json!("profile orders\u{1}"))),
    ];
    for (name, token) in cases {
        let reply = t.graphql(t.stack.mobile, Some(&token), HOME_QUERY, json!({})).await;
        assert_eq!((reply.status.as_u16(), reply.error_codes()), unauthenticated(), "{name}: {:#}", reply.body);
        let message = reply.body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("invalid token: malformed"), "{name}: {message}");
    }
    assert_eq!(backend_calls(&t).await, 0);
    // The well-formed token of the same claims still works.
    assert_eq!(home_with(&t, &with("sub", json!("auth0|u-1"))).await.0, 200);
}
