//! The agent control page at `/agent/gui`: a static single page (HTML, JS
//! modules, CSS) compiled into the binary, so skald serves it with no build
//! step, no separate server and no internet access (no CDN).
//!
//! This module owns only the static files and their response headers. The
//! page holds no data: it is public (it shows a login form) and everything
//! it shows comes from the protected API (`/api/v1/…`, a token or the
//! login session cookie). A browser that is not logged in gets 401 from the
//! API and the page asks for a token, which it sends once to
//! `POST /api/v1/login`; from then on the `HttpOnly` session cookie
//! authenticates its requests and WebSockets.
//!
//! | route | answer |
//! |---|---|
//! | `GET /agent/gui` | `index.html` |
//! | `GET /agent/gui/` | redirect to `/agent/gui` |
//! | `GET /agent/gui/assets/{file}` | one of [`ASSETS`], else 404 |
//!
//! Every answer carries a strict [`CSP`] (scripts, styles and workers from
//! this origin only; connections to this origin and its WebSockets; media
//! from this origin or `blob:`), `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and
//! `Cache-Control: no-cache` (the browser revalidates, so a new skald's
//! page is never mixed with an old one's scripts). These routes are not
//! API operations and so are not in the OpenAPI description.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::error::ApiError;

/// The page's path.
pub const PAGE: &str = "/agent/gui";

/// `Content-Security-Policy` of every answer of this module.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; worker-src 'self'; \
     connect-src 'self' ws: wss:; media-src 'self' blob:; img-src 'self' data:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// File name under `/agent/gui/assets/`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// The page itself.
const INDEX: &[u8] = include_bytes!("assets/index.html");

/// Every file under `/agent/gui/assets/`.
pub const ASSETS: &[Asset] = &[
    Asset { name: "app.js", content_type: JS, body: include_bytes!("assets/app.js") },
    Asset { name: "api.js", content_type: JS, body: include_bytes!("assets/api.js") },
    Asset { name: "audio.js", content_type: JS, body: include_bytes!("assets/audio.js") },
    Asset { name: "pcm-worklet.js", content_type: JS, body: include_bytes!("assets/pcm-worklet.js") },
    Asset { name: "style.css", content_type: "text/css; charset=utf-8", body: include_bytes!("assets/style.css") },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", body: include_bytes!("assets/favicon.svg") },
];

/// `Content-Type` of the JavaScript modules.
const JS: &str = "text/javascript; charset=utf-8";

/// The page's routes (merged into [`super::router`] beside the API).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(PAGE, get(index))
        .route("/agent/gui/", get(|| async { Redirect::permanent(PAGE) }))
        .route("/agent/gui/assets/{file}", get(asset))
}

/// `GET /agent/gui`: the page.
async fn index() -> Response {
    respond("text/html; charset=utf-8", INDEX)
}

/// `GET /agent/gui/assets/{file}`: an embedded file, or 404.
async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => respond(a.content_type, a.body),
        None => ApiError::NotFound(format!("no asset `{file}`")).into_response(),
    }
}

/// 200 with `body`, its type and the page's security headers.
fn respond(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("permissions-policy", HeaderValue::from_static("microphone=(self), camera=(), geolocation=()"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_asset_is_served_with_its_type_and_the_csp() {
        let app: Router = router();
        for a in ASSETS {
            let resp = app
                .clone()
                .oneshot(Request::get(format!("/agent/gui/assets/{}", a.name)).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{}", a.name);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], a.content_type);
            assert_eq!(resp.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        }
        let resp = app.oneshot(Request::get("/agent/gui/assets/../mod.rs").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }

    /// The page references only embedded files (no CDN, nothing missing).
    #[test]
    fn the_page_loads_only_embedded_files() {
        let page = std::str::from_utf8(INDEX).unwrap();
        for part in page.split("assets/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
            assert!(ASSETS.iter().any(|a| a.name == name), "index.html names a missing asset `{name}`");
        }
        for a in ASSETS.iter().chain([&Asset { name: "index.html", content_type: "", body: INDEX }]) {
            let text = String::from_utf8_lossy(a.body).replace(' ', "");
            for remote in ["src=\"http", "href=\"http", "from\"http", "from'http", "import(\"http", "url(http", "src=\"//", "href=\"//"] {
                assert!(!text.contains(remote), "{} loads from the network ({remote})", a.name);
            }
        }
    }
}
