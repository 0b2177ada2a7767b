//! `GET /dashboard`: the web page of `dashboard/`, embedded at build time
//! (see `build.rs`). Nothing it loads comes from another host. A binary
//! built before the assets serves a page that says how to build them.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>weir dashboard not built</title>\
<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>The dashboard was not built into this binary</h1>\
<p>This weir binary was compiled before the dashboard's assets existed. Build them and then weir:</p>\
<pre>make dashboard      # npm ci && npm run build in dashboard/\ncargo build --release</pre>\
<p>(<code>make run</code> and <code>make test</code> do both.) The usage API works without the page: \
<code>GET /v1/usage</code>.</p></body>";

/// Only what the page itself loads may run or be fetched: no other host;
/// and no other site may frame the page (an admin's clicks on it change
/// tiers).
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                      connect-src 'self'; frame-ancestors 'none'";

fn asset_response(name: &str) -> Option<Response> {
    let (_, bytes) = ASSETS.iter().find(|(n, _)| *n == name)?;
    let kind = match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Browsers take each asset as its declared type, never a guessed one.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Some(response)
}

/// `GET /dashboard`.
pub async fn index() -> Response {
    asset_response("index.html").unwrap_or_else(|| (StatusCode::OK, Html(NOT_BUILT)).into_response())
}

/// `GET /dashboard/{path}`.
pub async fn asset(Path(path): Path<String>) -> Response {
    match asset_response(&path) {
        Some(response) => response,
        None => super::error::not_found().await.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[tokio::test]
    async fn the_page_is_the_dashboard_or_says_how_to_build_it() {
        let response = index().await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let page = String::from_utf8_lossy(&body);
        let built = ASSETS.iter().any(|(name, _)| *name == "index.html");
        let expected = if built {
            "/dashboard/app.js"
        } else {
            "make dashboard"
        };
        assert!(page.contains(expected), "{page}");
    }

    #[tokio::test]
    async fn assets_may_not_be_framed_or_sniffed() {
        let Some(response) = ASSETS.first().and_then(|(name, _)| asset_response(name)) else {
            return; // A binary built without the page serves no asset.
        };
        let headers = response.headers();
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    }

    #[tokio::test]
    async fn unknown_assets_are_not_found() {
        let response = asset(Path("../Cargo.toml".to_string())).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
