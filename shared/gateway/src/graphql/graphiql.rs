//! GraphiQL, served entirely by the BFF: the page and every script and stylesheet it loads are
//! compiled into the binary (vendored from the npm registry by `assets/graphiql/vendor.sh`,
//! versions and checksums in `assets/graphiql/LICENSES.md`), so it works on a machine with no
//! internet and loads nothing from a CDN. The page has a header editor where a developer pastes
//! `{"Authorization": "Bearer <token>"}`; the page itself holds no data, and its queries need a
//! token like any other. A link may pre-fill the editors with `?query=`, `?variables=` and
//! `?headers=`.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use crate::GatewayError;

/// Only this origin's files run or load: no inline script or style, nothing from elsewhere. The
/// stylesheet embeds its fonts and icons as `data:` URLs. `'self'` covers the same-host
/// WebSocket that subscriptions use.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; font-src 'self' data:; \
     style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const PAGE: &str = include_str!("../../assets/graphiql/index.html");

/// The vendored files, by the name the page loads them under.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("init.js", "text/javascript", include_bytes!("../../assets/graphiql/init.js")),
    ("graphiql.min.js", "text/javascript", include_bytes!("../../assets/graphiql/graphiql.min.js")),
    ("graphiql.min.css", "text/css", include_bytes!("../../assets/graphiql/graphiql.min.css")),
    ("react.production.min.js", "text/javascript", include_bytes!("../../assets/graphiql/react.production.min.js")),
    (
        "react-dom.production.min.js",
        "text/javascript",
        include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
    ),
];

/// The GraphiQL page.
pub fn page() -> Response {
    let mut response = axum::response::Html(PAGE).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /graphql/assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(name, _, _)| *name == file) else {
        return GatewayError::NotFound(format!("no GraphiQL asset `{}`", file.chars().take(64).collect::<String>()))
            .into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change only with the binary; an hour keeps a developer's reloads fast.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}
