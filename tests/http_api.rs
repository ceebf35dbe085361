//! The HTTP API through `Router::oneshot` (no sockets): every route, every
//! status code it documents, and the JSON shapes. Uses a temporary SQLite
//! store and a real `CallRegistry` with fake live calls (an mpsc mailbox
//! stands in for the call actor).

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skald::call::command::CallCommand;
use skald::call::registry::{CallRegistry, CallSummary};
use skald::call::state::CallState;
use skald::http::{HttpState, Readiness, router};
use skald::ids::CallId;
use skald::observability::{Dir, Metrics};
use skald::store::{CallRecord, Store};
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tower::ServiceExt;

/// The admin token of these routers (`SKALD_ADMIN_TOKEN`).
const ADMIN: &str = "http-api-test-admin-token";

/// A default config whose admin token is [`ADMIN`].
fn config_with_admin(mut config: skald::config::Config) -> std::sync::Arc<skald::config::Config> {
    config.http.admin_token = Some(ADMIN.into());
    std::sync::Arc::new(config)
}

/// The state of a router over these parts.
fn state(store: &Store, registry: &CallRegistry, metrics: &Metrics, ready: &Readiness, config: skald::config::Config) -> HttpState {
    let config = config_with_admin(config);
    HttpState {
        store: store.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
        auth: skald::http::auth::Auth::from_config(&config.http),
        config,
        calls: None,
        events: skald::events::EventBus::new(),
        contexts: skald::agent::context::ContextStore::new(),
    }
}

struct Harness {
    app: Router,
    store: Store,
    registry: CallRegistry,
    ready: Readiness,
    metrics: Metrics,
    _dir: tempfile::TempDir,
}

/// A router over a fresh store, with every readiness flag up.
async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/calls.db", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    let registry = CallRegistry::new();
    let ready = Readiness::default();
    ready.sip_bound.store(true, Ordering::Release);
    ready.store_open.store(true, Ordering::Release);
    let metrics = Metrics::new();
    let app = router(state(&store, &registry, &metrics, &ready, skald::config::Config::default()));
    Harness {
        app,
        store,
        registry,
        ready,
        metrics,
        _dir: dir,
    }
}

/// Sends one request as the admin; returns status, content type and body text.
async fn send(app: &Router, method: Method, uri: &str) -> (StatusCode, String, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

/// Like `send`, but the body must be JSON.
async fn send_json(app: &Router, method: Method, uri: &str) -> (StatusCode, Value) {
    let (status, ctype, body) = send(app, method, uri).await;
    assert_eq!(ctype, "application/json", "{uri}: {body}");
    (status, serde_json::from_str(&body).unwrap())
}

fn record(invited_at: i64) -> CallRecord {
    CallRecord {
        id: CallId::new(),
        sip_call_id: format!("c{invited_at}@192.0.2.1"),
        direction: "inbound".into(),
        from_uri: "sip:+15550001@192.0.2.1".into(),
        to_uri: "sip:1000@198.51.100.2".into(),
        did: "1000".into(),
        remote_addr: "192.0.2.1:5060".into(),
        app: Some("echo".into()),
        state: "answered".into(),
        invited_at,
        ..Default::default()
    }
}

/// Registers `id` as live; the receiver is the fake actor's mailbox.
fn make_live(reg: &CallRegistry, id: CallId, state: CallState) -> mpsc::Receiver<CallCommand> {
    let (tx, rx) = mpsc::channel(4);
    let summary = CallSummary {
        id,
        sip_call_id: "live@192.0.2.1".into(),
        from: "+15550001".into(),
        did: "1000".into(),
        app: "echo".into(),
        state,
        started_at: 1_000,
        queue: None,
    };
    reg.insert(summary, tx);
    rx
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn live_is_always_ok() {
    let h = harness().await;
    h.ready.draining.store(true, Ordering::Release);
    let (status, body) = send_json(&h.app, Method::GET, "/health/live").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn ready_when_sip_store_and_not_draining() {
    let h = harness().await;
    let (status, body) = send_json(&h.app, Method::GET, "/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "ready", "checks": {"sip": true, "store": true, "accepting": true}})
    );
}

#[tokio::test]
async fn not_ready_names_the_failing_part() {
    let h = harness().await;

    h.ready.sip_bound.store(false, Ordering::Release);
    let (status, body) = send_json(&h.app, Method::GET, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(
        body["checks"],
        json!({"sip": false, "store": true, "accepting": true})
    );
    h.ready.sip_bound.store(true, Ordering::Release);

    h.ready.draining.store(true, Ordering::Release);
    let (status, body) = send_json(&h.app, Method::GET, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["checks"],
        json!({"sip": true, "store": true, "accepting": false})
    );
    h.ready.draining.store(false, Ordering::Release);

    h.ready.store_open.store(false, Ordering::Release);
    let (status, body) = send_json(&h.app, Method::GET, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["checks"]["store"], false);
    h.ready.store_open.store(true, Ordering::Release);

    // Flag up but the database no longer answers.
    h.store.close().await;
    let (status, body) = send_json(&h.app, Method::GET, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["checks"],
        json!({"sip": true, "store": false, "accepting": true})
    );
}

#[tokio::test]
async fn metrics_page_is_openmetrics_text() {
    let h = harness().await;
    h.metrics.call_started();
    h.metrics.sip_message(Dir::In, "INVITE", None);
    let (status, ctype, body) = send(&h.app, Method::GET, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ctype,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.contains("skald_active_calls 1"), "{body}");
    assert!(
        body.contains("skald_sip_messages_total{direction=\"in\",method=\"INVITE\",status=\"\"} 1")
    );
    assert!(body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn list_calls_newest_first_with_live_flags() {
    let h = harness().await;
    let old = record(1_000);
    let new = record(2_000);
    h.store.insert_call(&old).await.unwrap();
    h.store.insert_call(&new).await.unwrap();
    let _mailbox = make_live(&h.registry, new.id, CallState::Answered);

    let (status, body) = send_json(&h.app, Method::GET, "/api/v1/calls").await;
    assert_eq!(status, StatusCode::OK);
    let calls = body["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], new.id.to_string());
    assert_eq!(calls[0]["live"], true);
    assert_eq!(calls[0]["live_state"], "answered");
    assert_eq!(calls[1]["id"], old.id.to_string());
    assert_eq!(calls[1]["live"], false);
    assert_eq!(calls[1]["live_state"], Value::Null);
    // Every record field is present, flattened.
    for field in [
        "sip_call_id",
        "direction",
        "from_uri",
        "to_uri",
        "did",
        "state",
        "invited_at",
    ] {
        assert!(
            calls[1].get(field).is_some(),
            "missing {field}: {}",
            calls[1]
        );
    }
    assert_eq!(calls[1]["invited_at"], 1_000);

    let (_, body) = send_json(&h.app, Method::GET, "/api/v1/calls?limit=1").await;
    assert_eq!(body["calls"].as_array().unwrap().len(), 1);
    let (status, body) = send_json(&h.app, Method::GET, "/api/v1/calls?limit=100000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["calls"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn list_calls_rejects_bad_limit() {
    let h = harness().await;
    for uri in ["/api/v1/calls?limit=abc", "/api/v1/calls?limit=-1"] {
        let (status, body) = send_json(&h.app, Method::GET, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_error(&body, "bad_request");
    }
}

#[tokio::test]
async fn store_failure_is_500_without_details() {
    let h = harness().await;
    h.store.close().await;
    let (status, body) = send_json(&h.app, Method::GET, "/api/v1/calls").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        json!({"error": {"code": "internal", "message": "internal error"}})
    );
}

#[tokio::test]
async fn get_call_shows_record_and_live_state() {
    let h = harness().await;
    let rec = record(5_000);
    h.store.insert_call(&rec).await.unwrap();
    let uri = format!("/api/v1/calls/{}", rec.id);

    let (status, body) = send_json(&h.app, Method::GET, &uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], rec.id.to_string());
    assert_eq!(body["from_uri"], rec.from_uri);
    assert_eq!(body["state"], "answered");
    assert_eq!(body["sip_status"], Value::Null);
    assert_eq!(body["live"], false);
    assert_eq!(body["live_state"], Value::Null);

    let _mailbox = make_live(&h.registry, rec.id, CallState::OnHold);
    let (_, body) = send_json(&h.app, Method::GET, &uri).await;
    assert_eq!(body["live"], true);
    assert_eq!(body["live_state"], "on_hold");
}

#[tokio::test]
async fn get_live_call_without_record_uses_registry() {
    let h = harness().await;
    let id = CallId::new();
    let _mailbox = make_live(&h.registry, id, CallState::Ringing);
    let (status, body) = send_json(&h.app, Method::GET, &format!("/api/v1/calls/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], id.to_string());
    assert_eq!(body["live"], true);
    assert_eq!(body["live_state"], "ringing");
    assert_eq!(body["sip_call_id"], "live@192.0.2.1");
}

#[tokio::test]
async fn get_call_400_and_404() {
    let h = harness().await;
    let (status, body) = send_json(&h.app, Method::GET, "/api/v1/calls/not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");

    let uri = format!("/api/v1/calls/{}", CallId::new());
    let (status, body) = send_json(&h.app, Method::GET, &uri).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
}

#[tokio::test]
async fn hangup_live_call_sends_command() {
    let h = harness().await;
    let rec = record(1);
    h.store.insert_call(&rec).await.unwrap();
    let mut mailbox = make_live(&h.registry, rec.id, CallState::Answered);

    let uri = format!("/api/v1/calls/{}/hangup", rec.id);
    let (status, body) = send_json(&h.app, Method::POST, &uri).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({"status": "hanging_up"}));
    assert_eq!(
        mailbox.try_recv().unwrap(),
        CallCommand::Hangup {
            reason: "api".into()
        }
    );
}

#[tokio::test]
async fn hangup_404_unknown_and_400_malformed() {
    let h = harness().await;
    let uri = format!("/api/v1/calls/{}/hangup", CallId::new());
    let (status, body) = send_json(&h.app, Method::POST, &uri).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");

    let (status, body) = send_json(&h.app, Method::POST, "/api/v1/calls/123/hangup").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");
}

#[tokio::test]
async fn hangup_409_when_call_is_over_or_ending() {
    let h = harness().await;
    // Record exists, call no longer in the registry.
    let ended = record(1);
    h.store.insert_call(&ended).await.unwrap();
    let uri = format!("/api/v1/calls/{}/hangup", ended.id);
    let (status, body) = send_json(&h.app, Method::POST, &uri).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "conflict");

    // Still registered, but its actor's mailbox is closed (ending).
    let ending = record(2);
    h.store.insert_call(&ending).await.unwrap();
    drop(make_live(&h.registry, ending.id, CallState::Ending));
    let uri = format!("/api/v1/calls/{}/hangup", ending.id);
    let (status, body) = send_json(&h.app, Method::POST, &uri).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "conflict");
}

#[tokio::test]
async fn unknown_route_is_json_404() {
    let h = harness().await;
    let (status, body) = send_json(&h.app, Method::GET, "/api/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
}

/// A router whose config has the `echo` app and a trunk `carrier`.
async fn dial_harness() -> Harness {
    let mut h = harness().await;
    let yaml = "trunks:\n  carrier:\n    uri: sip:127.0.0.1:5999\n    caller_id: \"+15550123\"\n";
    let config = skald::config::Config::parse(yaml, std::path::Path::new("t.yaml")).unwrap();
    h.app = router(state(&h.store, &h.registry, &h.metrics, &h.ready, config));
    h
}

/// POSTs `body` to `/api/v1/calls`; returns status and JSON.
async fn post_dial(app: &Router, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/calls")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn dial_rejects_bad_requests_with_400() {
    let h = dial_harness().await;
    let cases = [
        ("not json", "body"),
        (r#"{"to": "+15551234", "trunk": "carrier"}"#, "app"),
        (r#"{"to": "+15551234", "trunk": "carrier", "app": "echo", "extra": 1}"#, "extra"),
        (r#"{"to": "+15551234", "trunk": "carrier", "app": "nope"}"#, "unknown application `nope`"),
        (r#"{"to": "+15551234", "trunk": "nope", "app": "echo"}"#, "unknown trunk `nope`"),
        (r#"{"to": "+1 555 1234", "trunk": "carrier", "app": "echo"}"#, "not a phone number"),
        (r#"{"to": "call me", "trunk": "carrier", "app": "echo"}"#, "not a phone number"),
        (r#"{"to": "+15551234", "app": "echo"}"#, "not a SIP URI"),
        (r#"{"to": "+15551234", "trunk": "carrier", "app": "echo", "from": "a b"}"#, "caller ID"),
        (r#"{"to": "+15551234", "trunk": "carrier", "app": "echo", "context": {"v": "x"}}"#, "body"),
    ];
    for (body, why) in cases {
        let (status, v) = post_dial(&h.app, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(why), "{body}: {msg}");
    }
}

#[tokio::test]
async fn dial_answers_503_when_not_taking_calls() {
    let h = dial_harness().await;
    let ok = r#"{"to": "+15551234", "trunk": "carrier", "app": "echo"}"#;
    // No SIP stack behind this router.
    let (status, v) = post_dial(&h.app, ok).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    // Draining: refused before any SIP.
    h.ready.draining.store(true, Ordering::Release);
    let (status, v) = post_dial(&h.app, ok).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("shutting down"), "{v}");
    // A bad request is still a bad request while draining.
    let (status, _) = post_dial(&h.app, r#"{"to": "+1", "trunk": "nope", "app": "echo"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
