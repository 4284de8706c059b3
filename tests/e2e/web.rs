use std::collections::HashSet;

use serde_json::{Value, json};

use crate::support::{ME_QUERY, TestStack, at};

#[tokio::test]
async fn me_with_orders_products_and_stock_in_one_batch_per_backend() {
    let t = TestStack::start().await;
    let user_id = t.user_with_orders(11).await;
    let reply = t.graphql(t.stack.web, Some(&t.token(&user_id, "web")), ME_QUERY, json!({})).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
    // However many items, one call each to users, orders, catalog and inventory.
    for service in ["users", "orders", "catalog", "inventory"] {
        assert_eq!(t.call_count(service).await, 1, "{service}");
    }
    let me = at(&reply.body, "/data/me");
    assert_eq!(me["id"], user_id.as_str());
    let user: Value = reqwest::get(TestStack::url(t.stack.demo.addrs.users, &format!("/users/{user_id}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], user["name"]);
    assert_eq!(me["email"], user["email"]);

    let edges = me["orders"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 10);
    assert_eq!(me["orders"]["pageInfo"]["hasNextPage"], true);
    let items: Vec<&Value> = edges.iter().flat_map(|e| e["node"]["items"].as_array().unwrap()).collect();
    assert!(!items.is_empty());
    for item in &items {
        assert!(item["quantity"].as_i64().unwrap() >= 1);
        let product = &item["product"];
        assert!(product["id"].as_str().unwrap().starts_with("p-"), "{item:#}");
        assert!(product["price"].as_str().unwrap().parse::<i64>().unwrap() > 0);
        assert!(product["stock"]["available"].is_i64());
    }

    // The one catalog call is the batch endpoint, for every distinct product at once.
    let catalog_call = t.recent_calls("catalog").await.pop().unwrap();
    assert_eq!(catalog_call["path"], "/products", "{catalog_call:#}");
    let distinct: HashSet<&str> = items.iter().map(|i| i["product"]["id"].as_str().unwrap()).collect();
    assert!(distinct.len() > 1);
}

#[tokio::test]
async fn orders_page_through_with_the_end_cursor() {
    let t = TestStack::start().await;
    let user_id = t.user_with_orders(15).await;
    let token = t.token(&user_id, "web");
    let query = "query($cursor: String) { me { orders(first: 10, after: $cursor) { edges { node { id } } pageInfo { hasNextPage endCursor } } } }";
    let first = t.graphql(t.stack.web, Some(&token), query, json!({})).await;
    let cursor = at(&first.body, "/data/me/orders/pageInfo/endCursor").as_str().unwrap().to_owned();
    let second = t.graphql(t.stack.web, Some(&token), query, json!({ "cursor": cursor })).await;
    let ids = |reply: &Value| -> Vec<String> {
        reply["data"]["me"]["orders"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (a, b) = (ids(&first.body), ids(&second.body));
    assert_eq!(a.len(), 10);
    assert!(!b.is_empty());
    assert!(a.iter().all(|id| !b.contains(id)), "pages overlap: {a:?} {b:?}");
    // Exactly the orders service's own order, page after page.
    let all = t.orders_of(&user_id, 20).await;
    let expected: Vec<String> = all.orders.iter().map(|o| o.id.clone()).take(a.len() + b.len()).collect();
    assert_eq!([a, b].concat(), expected);

    let bad = t.graphql(t.stack.web, Some(&token), query, json!({ "cursor": "not a cursor" })).await;
    assert_eq!(bad.error_codes(), ["BAD_REQUEST"], "{:#}", bad.body);
}

#[tokio::test]
async fn a_failing_catalog_nulls_products_but_keeps_orders() {
    let t = TestStack::start().await;
    let user_id = t.user_with_orders(2).await;
    t.set_faults("catalog", json!({ "error_rate": 1.0 })).await;
    let reply = t.graphql(t.stack.web, Some(&t.token(&user_id, "web")), ME_QUERY, json!({})).await;
    let edges = at(&reply.body, "/data/me/orders/edges").as_array().unwrap();
    assert!(!edges.is_empty());
    assert!(edges.iter().flat_map(|e| e["node"]["items"].as_array().unwrap()).all(|i| i["product"].is_null()));
    // One error per item, capped: past `max_errors` the rest are counted in one last error.
    let codes = reply.error_codes();
    let (last, each) = codes.split_last().unwrap();
    assert!(each.iter().all(|c| c == "UPSTREAM_UNAVAILABLE"), "{codes:?}");
    assert!(codes.len() <= 20 && (last == "UPSTREAM_UNAVAILABLE" || last == "TOO_MANY_ERRORS"), "{codes:?}");
    // The batch failed; its items share that one failure. A 503 of a read is retried once (the
    // retry budget allows it), so two attempts. Stock was asked for beside the products, in one
    // batch, not after them.
    assert_eq!(t.call_count("catalog").await, 2);
    assert_eq!(t.call_count("inventory").await, 1);
}

#[tokio::test]
async fn graphiql_is_served_without_a_token() {
    let t = TestStack::start().await;
    // A browser navigating asks for HTML first.
    let page = t.http.get(TestStack::url(t.stack.web, "/graphql")).header("accept", "text/html,*/*;q=0.8");
    let response = page.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    let html = response.text().await.unwrap();
    assert!(html.contains("/graphql/assets/graphiql.min.js") && !html.contains("https://"), "{html}");
    // Every file the page loads is served here: nothing comes from a CDN.
    for asset in
        ["graphiql.min.js", "graphiql.min.css", "react.production.min.js", "react-dom.production.min.js", "init.js"]
    {
        let response = reqwest::get(TestStack::url(t.stack.web, &format!("/graphql/assets/{asset}"))).await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.bytes().await.unwrap().len() > 500, "{asset}");
    }
    // Without the browser's Accept, GET is a query, which needs a token.
    assert_eq!(reqwest::get(TestStack::url(t.stack.web, "/graphql")).await.unwrap().status(), 401);
}
