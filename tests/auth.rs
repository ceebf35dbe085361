//! Access control of the HTTP API, driven by its own OpenAPI description:
//! every operation it lists is tried without a token (401 unless it is one
//! of the documented open ones), with a wrong token (401), as a viewer (403
//! on every call action) and as a supervisor limited to a queue; the login
//! cookie, logout, the wrong-token limit (429), the event stream's upgrade
//! and the audit event of a supervisor's hang-up.
//!
//! Most tests use `Router::oneshot` over a temporary store and a registry
//! with fake live calls; the last ones run a real `skald serve` with a real
//! SIP caller (sipp).

mod common;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use common::{ADMIN_TOKEN, Skald, example_config, free_port, http_raw, scenario, sipp};
use http_body_util::BodyExt;
use serde_json::Value;
use skald::call::command::CallCommand;
use skald::call::registry::{CallRegistry, CallSummary};
use skald::call::state::CallState;
use skald::config::{Config, Role, TokenConfig};
use skald::http::auth::Auth;
use skald::http::{HttpState, Readiness, router};
use skald::ids::CallId;
use skald::observability::Metrics;
use skald::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tower::ServiceExt;

const ADMIN: &str = "auth-test-admin-token";
const VIEWER: &str = "auth-test-viewer-token";
const BILLING_SUP: &str = "auth-test-billing-supervisor-token";

struct Harness {
    app: Router,
    registry: CallRegistry,
    events: skald::events::EventBus,
    _dir: tempfile::TempDir,
}

fn token(name: &str, role: Role, secret: &str, queues: &[&str]) -> TokenConfig {
    // Deserialized like the config file would be, then resolved as `load` does.
    let yaml = format!("name: {name}\nrole: {}\ntoken_env: UNUSED\nqueues: {queues:?}\n", role.as_str());
    let mut t: TokenConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    t.token = Some(secret.into());
    t
}

/// A router with an admin, a viewer `vic` and a supervisor `sam` limited
/// to queue `billing`.
async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/calls.db", dir.path().display())).await.unwrap();
    let mut config = Config::default();
    config.http.admin_token = Some(ADMIN.into());
    config.http.tokens = vec![
        token("vic", Role::Viewer, VIEWER, &[]),
        token("sam", Role::Supervisor, BILLING_SUP, &["billing"]),
    ];
    // A reverse proxy pair in front (192.0.2.8–15).
    config.http.trusted_proxies = vec!["192.0.2.8/29".parse().unwrap()];
    let ready = Readiness::default();
    ready.sip_bound.store(true, Ordering::Release);
    ready.store_open.store(true, Ordering::Release);
    let registry = CallRegistry::new();
    let events = skald::events::EventBus::new();
    let app = router(HttpState {
        store: store.clone(),
        registry: registry.clone(),
        metrics: Metrics::new(),
        ready,
        auth: Auth::from_config(&config.http),
        config: Arc::new(config),
        calls: None,
        contexts: skald::agent::context::ContextStore::new(),
        events: events.clone(),
    });
    Harness { app, registry, events, _dir: dir }
}

/// A distinct client address per call, so wrong tokens of one test step do
/// not add up to a block unless the test wants them to.
fn next_ip() -> SocketAddr {
    static N: AtomicU8 = AtomicU8::new(1);
    SocketAddr::from(([198, 51, 100, N.fetch_add(1, Ordering::Relaxed)], 40000))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends one request from `from` with `bearer` (when given), extra headers
/// and a JSON body (empty: none).
async fn send(app: &Router, method: &Method, uri: &str, bearer: Option<&str>, extra: &[(&str, &str)], from: SocketAddr) -> Answer {
    send_body(app, method, uri, bearer, extra, "", from).await
}

async fn send_body(
    app: &Router,
    method: &Method,
    uri: &str,
    bearer: Option<&str>,
    extra: &[(&str, &str)],
    json: &str,
    from: SocketAddr,
) -> Answer {
    let mut req = Request::builder().method(method.clone()).uri(uri);
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    if !json.is_empty() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let mut req = req.body(Body::from(json.to_owned())).unwrap();
    req.extensions_mut().insert(ConnectInfo(from));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// One operation of the OpenAPI document.
#[derive(Debug)]
struct Op {
    method: Method,
    /// Path with its parameters filled in.
    uri: String,
    /// `x-skald-role`: `public`, `viewer`, `supervisor` or `admin`.
    role: String,
    /// It answers 101: a WebSocket.
    websocket: bool,
}

/// Every operation of `/api/v1/openapi.json`, fetched as the admin.
async fn operations(app: &Router) -> Vec<Op> {
    let a = send(app, &Method::GET, "/api/v1/openapi.json", Some(ADMIN), &[], next_ip()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let doc = a.json();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            let uri = path.replace("{id}", &CallId::new().to_string()).replace("{reference}", "no-such-ref");
            assert!(!uri.contains('{'), "unfilled path parameter in {path}");
            let role = op["x-skald-role"].as_str().unwrap_or_else(|| panic!("{method} {path}: no x-skald-role")).to_owned();
            assert!(op["security"].is_array(), "{method} {path}: no security");
            let websocket = op["responses"].get("101").is_some();
            ops.push(Op { method: method.to_uppercase().parse().unwrap(), uri, role, websocket });
        }
    }
    assert!(ops.len() >= 15, "{ops:?}");
    ops
}

fn assert_unauthorized(a: &Answer, what: &str) {
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}: {}", a.body);
    assert_eq!(a.json()["error"]["code"], "unauthorized", "{what}: {}", a.body);
    assert_eq!(a.headers[header::WWW_AUTHENTICATE], r#"Bearer realm="skald""#, "{what}");
}

/// Registers `id` as live; the receiver is the fake actor's mailbox.
fn make_live(reg: &CallRegistry, id: CallId) -> mpsc::Receiver<CallCommand> {
    let (tx, rx) = mpsc::channel(4);
    let summary = CallSummary {
        id,
        sip_call_id: "live@192.0.2.1".into(),
        from: "+15550001".into(),
        did: "1000".into(),
        app: "echo".into(),
        state: CallState::Answered,
        started_at: 1_000,
        queue: None,
    };
    reg.insert(summary, tx);
    rx
}

#[tokio::test]
async fn every_operation_needs_a_token_except_the_open_ones() {
    let h = harness().await;
    let ops = operations(&h.app).await;
    let mut open: Vec<String> = ops.iter().filter(|o| o.role == "public").map(|o| format!("{} {}", o.method, o.uri)).collect();
    open.sort();
    assert_eq!(
        open,
        [
            "GET /api/v1/twilio/media-stream",
            "GET /health/live",
            "GET /health/ready",
            "POST /api/v1/livekit/webhook",
            "POST /api/v1/login",
            "POST /api/v1/sip/inbound/webhook",
            "POST /api/v1/twilio/status",
        ],
        "only health, login and the routes signed by Twilio or LiveKit are open"
    );
    for op in &ops {
        let what = format!("{} {}", op.method, op.uri);
        let anonymous = send(&h.app, &op.method, &op.uri, None, &[], next_ip()).await;
        let wrong = send(&h.app, &op.method, &op.uri, Some("not-a-token"), &[], next_ip()).await;
        if op.role == "public" {
            assert_ne!(anonymous.status, StatusCode::UNAUTHORIZED, "{what} is documented as open: {}", anonymous.body);
            continue;
        }
        assert_unauthorized(&anonymous, &what);
        assert_unauthorized(&wrong, &format!("{what} (wrong token)"));
        // A stale session cookie is no credential either.
        let cookie = send(&h.app, &op.method, &op.uri, None, &[("cookie", "skald_session=00ff")], next_ip()).await;
        assert_unauthorized(&cookie, &format!("{what} (unknown session)"));
    }
}

#[tokio::test]
async fn viewers_read_but_every_call_action_is_403() {
    let h = harness().await;
    for op in operations(&h.app).await {
        let what = format!("{} {}", op.method, op.uri);
        let a = send(&h.app, &op.method, &op.uri, Some(VIEWER), &[], next_ip()).await;
        match op.role.as_str() {
            // Twilio's routes check Twilio's signature, not API tokens.
            "public" => {}
            "supervisor" | "admin" => {
                // A supervisor's audio socket is a GET (WebSocket upgrade) but no read.
                assert!(op.method != Method::GET || op.websocket, "{what}: a read needs no more than a viewer");
                assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}: {}", a.body);
                assert_eq!(a.json()["error"]["code"], "forbidden", "{what}");
            }
            _ => assert!(
                ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&a.status),
                "{what} as a viewer: {} {}",
                a.status,
                a.body
            ),
        }
    }
    // The reads themselves.
    let a = send(&h.app, &Method::GET, "/api/v1/calls", Some(VIEWER), &[], next_ip()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = send(&h.app, &Method::GET, "/metrics", Some(VIEWER), &[], next_ip()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn a_queue_supervisor_hangs_up_and_the_action_is_audited() {
    let h = harness().await;
    let mut live = h.events.subscribe();
    let id = CallId::new();
    let mut mailbox = make_live(&h.registry, id);
    let uri = format!("/api/v1/calls/{id}/hangup");
    // Supervisor actions are allowed; placing calls is not.
    let a = send(&h.app, &Method::POST, &uri, Some(BILLING_SUP), &[], next_ip()).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(mailbox.try_recv().unwrap(), CallCommand::Hangup { reason: "api".into() });
    let dial = r#"{"to": "sip:bob@127.0.0.1:5999", "app": "echo"}"#;
    let a = send_body(&h.app, &Method::POST, "/api/v1/calls", Some(BILLING_SUP), &[], dial, next_ip()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    // The admin may dial (here: no SIP stack behind the router, so 503 after the check).
    let a = send_body(&h.app, &Method::POST, "/api/v1/calls", Some(ADMIN), &[], dial, next_ip()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);

    // The audit event: live on the bus and stored on the call.
    let ev = live.try_recv().unwrap();
    assert_eq!((ev.kind.as_str(), ev.call_id), ("supervisor.action", Some(id)));
    assert_eq!(ev.data["action"], "hangup");
    assert_eq!(ev.data["by"], "sam");
    assert_eq!(ev.data["role"], "supervisor");
    let a = send(&h.app, &Method::GET, &format!("/api/v1/calls/{id}"), Some(VIEWER), &[], next_ip()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let events = a.json()["events"].as_array().cloned().unwrap();
    assert!(
        events.iter().any(|e| e["kind"] == "supervisor.action" && e["data"]["by"] == "sam" && e["data"]["action"] == "hangup"),
        "{events:?}"
    );
}

#[tokio::test]
async fn login_sets_a_session_cookie_and_logout_ends_it() {
    let h = harness().await;
    let ip = next_ip();
    let a = send_body(&h.app, &Method::POST, "/api/v1/login", None, &[], r#"{"token": "wrong"}"#, ip).await;
    assert_unauthorized(&a, "login with a wrong token");
    let a = send_body(&h.app, &Method::POST, "/api/v1/login", None, &[], "{}", ip).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);

    let body = format!(r#"{{"token": "{VIEWER}"}}"#);
    let a = send_body(&h.app, &Method::POST, "/api/v1/login", None, &[], &body, ip).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let set = a.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.split("; ").any(|p| p == attr), "{set}");
    }
    let pair = set.split(';').next().unwrap().to_owned();
    let (name, id) = pair.split_once('=').unwrap();
    assert_eq!(name, "skald_session");
    assert_eq!(id.len(), 64, "a 256-bit id in hex: {id}");

    let cookie = [("cookie", pair.as_str())];
    let a = send(&h.app, &Method::GET, "/api/v1/calls", None, &cookie, ip).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // The cookie carries the viewer's role, no more.
    let a = send(&h.app, &Method::POST, &format!("/api/v1/calls/{}/hangup", CallId::new()), None, &cookie, ip).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    // Not from another site's page.
    let cross = [("cookie", pair.as_str()), ("host", "skald.example"), ("origin", "https://evil.example")];
    let a = send(&h.app, &Method::GET, "/api/v1/calls", None, &cross, ip).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);

    let a = send(&h.app, &Method::POST, "/api/v1/logout", None, &cookie, ip).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    assert!(a.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let a = send(&h.app, &Method::GET, "/api/v1/calls", None, &cookie, ip).await;
    assert_unauthorized(&a, "after logout");
}

#[tokio::test]
async fn ten_wrong_tokens_from_one_address_get_429() {
    let h = harness().await;
    let ip = next_ip();
    for i in 0..10 {
        let (method, uri, body) = if i % 2 == 0 {
            (Method::GET, "/api/v1/calls", "")
        } else {
            (Method::POST, "/api/v1/login", r#"{"token": "guess"}"#)
        };
        let a = send_body(&h.app, &method, uri, Some("guess").filter(|_| body.is_empty()), &[], body, ip).await;
        assert_unauthorized(&a, &format!("attempt {i}"));
    }
    // Blocked now, even with the right token, on the API and the login.
    let a = send(&h.app, &Method::GET, "/api/v1/calls", Some(ADMIN), &[], ip).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "too_many_requests");
    let retry: u64 = a.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body = format!(r#"{{"token": "{ADMIN}"}}"#);
    let a = send_body(&h.app, &Method::POST, "/api/v1/login", None, &[], &body, ip).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    // Health stays open; other addresses are not affected.
    let a = send(&h.app, &Method::GET, "/health/live", None, &[], ip).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(&h.app, &Method::GET, "/api/v1/calls", Some(ADMIN), &[], next_ip()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

/// Behind a trusted reverse proxy (`http.trusted_proxies`) wrong tokens
/// count against the client the proxies name in `X-Forwarded-For`, not
/// against the proxy; from an untrusted peer the header is ignored.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_blocked_not_the_proxy() {
    let h = harness().await;
    let proxy = SocketAddr::from(([192, 0, 2, 10], 40000));
    let via = |client: &str| format!("{client}, 192.0.2.11");
    for i in 0..10 {
        let a = send(&h.app, &Method::GET, "/api/v1/calls", Some("guess"), &[("x-forwarded-for", &via("203.0.113.7"))], proxy).await;
        assert_unauthorized(&a, &format!("attempt {i}"));
    }
    let a = send(&h.app, &Method::GET, "/api/v1/calls", Some(ADMIN), &[("x-forwarded-for", &via("203.0.113.7"))], proxy).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "the guessing client is blocked: {}", a.body);
    let a = send(&h.app, &Method::GET, "/api/v1/calls", Some(ADMIN), &[("x-forwarded-for", &via("203.0.113.8"))], proxy).await;
    assert_eq!(a.status, StatusCode::OK, "another client behind the same proxy is not: {}", a.body);
    // Not a trusted proxy: the header cannot move the blame elsewhere.
    let peer = next_ip();
    for i in 0..10 {
        let xff = format!("203.0.113.{}", 20 + i);
        let a = send(&h.app, &Method::GET, "/api/v1/calls", Some("guess"), &[("x-forwarded-for", &xff)], peer).await;
        assert_unauthorized(&a, &format!("attempt {i}"));
    }
    let a = send(&h.app, &Method::GET, "/api/v1/calls", Some(ADMIN), &[("x-forwarded-for", "203.0.113.99")], peer).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
}

/// The config example with a supervisor limited to `billing` and a viewer,
/// their tokens in the environment.
fn config_with_tokens() -> String {
    let tokens = "http:\n  listen: 127.0.0.1:8080\n  tokens:\n    \
        - {name: sam, role: supervisor, token_env: SKALD_TEST_SUP_TOKEN, queues: [billing]}\n    \
        - {name: vic, role: viewer, token_env: SKALD_TEST_VIEWER_TOKEN}\n";
    let example = example_config();
    let start = example.find("http:\n").expect("http section in the example");
    let end = start + example[start..].find("\n\n").expect("end of the http section");
    format!("{}{tokens}{}", &example[..start], &example[end + 1..])
}

const SUP_ENV: [(&str, &str); 2] =
    [("SKALD_TEST_SUP_TOKEN", "e2e-supervisor-token-0123"), ("SKALD_TEST_VIEWER_TOKEN", "e2e-viewer-token-0123")];

/// The event stream's WebSocket upgrade needs a token or a session, like
/// the rest of the API (a real server, a real WebSocket client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_needs_a_token() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let skald = Skald::start_with_env(&config_with_tokens(), &SUP_ENV);
    let url = format!("ws://127.0.0.1:{}/api/v1/events", skald.http_port);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("anonymous upgrade accepted: {:?}", other.map(|_| ())),
    }
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("authorization", "Bearer wrong".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("upgrade with a wrong token accepted: {:?}", other.map(|_| ())),
    }
    // A viewer's browser session: the cookie of the login.
    let login = http_raw(skald.http_port, "POST", "/api/v1/login", &[], r#"{"token": "e2e-viewer-token-0123"}"#).unwrap();
    assert_eq!(login.status, 204, "{}", login.body);
    let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("viewer session upgrades");
    let hello = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("skald.events.v1"), "{hello:?}");
    // The metrics page too.
    assert_eq!(http_raw(skald.http_port, "GET", "/metrics", &[], "").unwrap().status, 401);
    let viewer = [("Authorization", "Bearer e2e-viewer-token-0123")];
    assert_eq!(http_raw(skald.http_port, "GET", "/metrics", &viewer, "").unwrap().status, 200);
}

/// A supervisor hangs up a real SIP call: the caller gets a BYE, the viewer
/// was refused before, and the call's record names who did it.
#[test]
fn a_supervisor_hangup_of_a_real_call_is_an_audited_event() {
    let skald = Skald::start_with_env(&config_with_tokens(), &SUP_ENV);
    let dir = tempfile::tempdir().unwrap();
    let template = std::fs::read_to_string(scenario("uac_wait_bye.xml")).unwrap();
    let sf = dir.path().join("uac_wait_bye.xml");
    let text = [("PTS", "0"), ("MEDIA_PORT", "[media_port]"), ("ANSWER_RE", "m=audio"), ("BYE_TIMEOUT", "20000"), ("MEDIA", "")]
        .iter()
        .fold(template, |s, (k, v)| s.replace(&format!("@{k}@"), v));
    std::fs::write(&sf, text).unwrap();
    let target = format!("127.0.0.1:{}", skald.sip_port);
    let sf = sf.display().to_string();
    let caller = std::thread::spawn(move || {
        let (p, mp) = (free_port().to_string(), free_port().to_string());
        sipp(&[&target, "-s", "echo", "-i", "127.0.0.1", "-p", &p, "-mp", &mp, "-m", "1", "-sf", &sf], Duration::from_secs(30))
    });
    let live = skald.wait_live(Duration::from_secs(10));
    let id = live["id"].as_str().unwrap().to_string();
    let hangup = format!("/api/v1/calls/{id}/hangup");

    let viewer = [("Authorization", "Bearer e2e-viewer-token-0123")];
    let r = http_raw(skald.http_port, "POST", &hangup, &viewer, "").unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(http_raw(skald.http_port, "POST", &hangup, &[], "").unwrap().status, 401);
    let sup = [("Authorization", "Bearer e2e-supervisor-token-0123")];
    let r = http_raw(skald.http_port, "POST", &hangup, &sup, "").unwrap();
    assert_eq!(r.status, 202, "{}", r.body);

    let out = caller.join().unwrap();
    common::assert_sipp_ok(&out, &skald);
    let c = &skald.wait_ended(1, Duration::from_secs(10))[0];
    assert_eq!(c["end_reason"], "api");
    let call = skald.get_json(&format!("/api/v1/calls/{id}"));
    let audits: Vec<&Value> =
        call["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "supervisor.action").collect();
    assert_eq!(audits.len(), 1, "{call:#}");
    assert_eq!(audits[0]["data"], serde_json::json!({"action": "hangup", "by": "sam", "role": "supervisor"}));
    // The admin token of the harness is still accepted beside the named ones.
    let admin = format!("Bearer {ADMIN_TOKEN}");
    assert_eq!(http_raw(skald.http_port, "GET", "/api/v1/openapi.json", &[("Authorization", &admin)], "").unwrap().status, 200);
}
