//! The scenarios: which BFF, which request, and what a correct answer is.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode, header};

/// The user every GraphQL scenario acts as. The demo's data is seeded deterministically; this
/// user has at least ten orders, so the web page is full.
pub const USER: &str = "u-3";
/// The product the partner scenario reads.
pub const PRODUCT: &str = "p-7";

const HOME: &str = include_str!("../../bffs/mobile/operations/Home.graphql");
/// The web order history: a page of 10 orders with their items, each item's product and its stock.
pub const ORDERS_PAGE: &str = "query OrdersPage { me { name orders(first: 10) { edges { node { id status createdAt \
items { quantity product { id name price stock { available } } } } } } } }";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    MobileHome,
    WebOrdersPage,
    PartnerProduct,
    AuthReject,
    LargeToken,
    /// The same large document every time: parsed once, then the parse cache's hit path.
    LargeDocumentHit,
    /// A large document that differs on every request (a comment): the parse cache's miss path.
    LargeDocumentMiss,
    /// The partner product read with the response cache and coalescing on, as the shipped config
    /// has them: a popular product page, answered from the cache once the first read stored it
    /// (catalog reads are public, so every caller shares the entry). The other scenarios turn
    /// both off, since one caller on every connection would flatter the BFF.
    ProductPage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bff {
    Mobile,
    Web,
    Partner,
}

impl Bff {
    pub fn name(self) -> &'static str {
        match self {
            Bff::Mobile => "mobile",
            Bff::Web => "web",
            Bff::Partner => "partner",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Bff::Mobile, Bff::Web, Bff::Partner].into_iter().find(|b| b.name() == name)
    }
}

/// Tokens minted by the demo identity service (in the demo's process) for the scenarios.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub mobile: String,
    pub web: String,
    /// A mobile token just under the gateway's 8 KiB limit (about 7.5 KiB): many group claims.
    pub large: String,
    /// A correctly signed mobile token that expired two minutes ago (past the 30 s leeway).
    pub expired: String,
}

/// One request, as the load generator sends it over and over.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Each request's GraphQL document ends with a comment of its own, so no two are alike.
    pub vary: bool,
    pub expect: StatusCode,
    /// The correct answer's body, normalised ([`crate::load::normalise`]): the baseline's answer,
    /// set once both servers are up. Without one, only the status is checked.
    pub reference: Option<serde_json::Value>,
}

impl RequestSpec {
    /// The body of the next request.
    pub fn body(&self) -> Bytes {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        if !self.vary {
            return self.body.clone();
        }
        // `{"query":"..."}`: the comment goes at the end of the document.
        let text = String::from_utf8_lossy(&self.body);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        match text.strip_suffix("\"}") {
            Some(open) => Bytes::from(format!("{open} #{n}\"}}")),
            None => self.body.clone(),
        }
    }
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::MobileHome,
        Scenario::WebOrdersPage,
        Scenario::PartnerProduct,
        Scenario::AuthReject,
        Scenario::LargeToken,
        Scenario::LargeDocumentHit,
        Scenario::LargeDocumentMiss,
        Scenario::ProductPage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::MobileHome => "mobile-home",
            Scenario::WebOrdersPage => "web-orders-page",
            Scenario::PartnerProduct => "partner-product",
            Scenario::AuthReject => "auth-reject",
            Scenario::LargeToken => "large-token",
            Scenario::LargeDocumentHit => "large-document-hit",
            Scenario::LargeDocumentMiss => "large-document-miss",
            Scenario::ProductPage => "product-page",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn bff(self) -> Bff {
        match self {
            Scenario::WebOrdersPage => Bff::Web,
            Scenario::PartnerProduct | Scenario::ProductPage => Bff::Partner,
            _ => Bff::Mobile,
        }
    }

    /// Whether the BFF runs with its response cache and coalescing on.
    pub fn shares_answers(self) -> bool {
        self == Scenario::ProductPage
    }

    pub fn request(self, tokens: &Tokens) -> RequestSpec {
        let bearer = |token: &str| (header::AUTHORIZATION, header_value(&format!("Bearer {token}")));
        let json = (header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let graphql = |query: &str| Bytes::from(serde_json::json!({ "query": query }).to_string());
        let post = |token: &str, body: Bytes, expect: StatusCode| RequestSpec {
            method: Method::POST,
            path: "/graphql".to_owned(),
            headers: vec![bearer(token), json.clone()],
            body,
            vary: false,
            expect,
            reference: None,
        };
        match self {
            Scenario::MobileHome => post(&tokens.mobile, graphql(HOME), StatusCode::OK),
            Scenario::LargeToken => post(&tokens.large, graphql(HOME), StatusCode::OK),
            Scenario::LargeDocumentHit => post(&tokens.mobile, graphql(&large_document()), StatusCode::OK),
            Scenario::LargeDocumentMiss => {
                RequestSpec { vary: true, ..post(&tokens.mobile, graphql(&large_document()), StatusCode::OK) }
            }
            Scenario::AuthReject => post(&tokens.expired, graphql(HOME), StatusCode::UNAUTHORIZED),
            Scenario::WebOrdersPage => post(&tokens.web, graphql(ORDERS_PAGE), StatusCode::OK),
            Scenario::PartnerProduct | Scenario::ProductPage => RequestSpec {
                method: Method::GET,
                path: format!("/v1/products/{PRODUCT}"),
                headers: vec![(
                    HeaderName::from_static("x-api-key"),
                    HeaderValue::from_static(bff_platform::DEMO_PARTNER_API_KEY),
                )],
                body: Bytes::new(),
                vary: false,
                expect: StatusCode::OK,
                reference: None,
            },
        }
    }
}

fn header_value(value: &str) -> HeaderValue {
    // Tokens are base64url and dots: always a valid header value.
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The 30 long aliases of the user's name in [`large_document`].
pub fn large_document_aliases() -> Vec<String> {
    let pad = "x".repeat(440);
    (0..30).map(|i| format!("{pad}{i:02}")).collect()
}

/// The home screen asked for with long aliases, close to the mobile BFF's 16 KiB document limit
/// and inside its token, alias and cost limits: what parsing and validation cost at size.
pub fn large_document() -> String {
    let aliases: Vec<String> = large_document_aliases().iter().map(|alias| format!("{alias}: name")).collect();
    format!(
        "query LargeHome {{ home {{ user {{ id {} avatarUrl(width: 96) }} recentOrders(first: 3) {{ id status total currency }} \
recommendations(first: 5) {{ id name price }} }} }}",
        aliases.join(" ")
    )
}
