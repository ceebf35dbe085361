//! Twilio's webhooks through `Router::oneshot` (no sockets): the signed
//! voice webhook's three answers (`<Connect><Stream>`, `<Dial><Sip>`,
//! `<Say><Hangup/>`), signature checks behind a proxy and with a configured
//! public URL, call context in and out of SIP headers (inline and by
//! reference), and the status callback's events.
//!
//! Signatures are computed here with the hmac/sha1/base64 crates, following
//! Twilio's documented algorithm, not with skald's own function.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::Value;
use skald::agent::context::{CallContext, ContextStore};
use skald::call::registry::CallRegistry;
use skald::config::Config;
use skald::http::{HttpState, Readiness, router};
use skald::ids::CallId;
use skald::observability::Metrics;
use skald::store::{CallRecord, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = "twilio-auth-token";
/// The admin API token of the router (`SKALD_ADMIN_TOKEN`).
const ADMIN: &str = "twilio-webhook-test-admin-token";
const CONTEXT_KEY: &str = "shared-context-key";
const WEBHOOK: &str = "/api/v1/sip/inbound/webhook";
const STATUS: &str = "/api/v1/twilio/status";
const HOST: &str = "skald.internal:8080";
const ROUTED: &str = "+15550100";
const DIAL: &str = "+15550199";
const SIP_TARGET: &str = "sip:agent@sip.example.com";
/// A number whose calls go to LiveKit SIP, and the project's SIP host.
const LIVEKIT_DID: &str = "+15550177";
const LIVEKIT_SIP_HOST: &str = "abc123.sip.livekit.cloud";

struct Harness {
    app: Router,
    store: Store,
    _dir: tempfile::TempDir,
}

/// A router whose config routes `ROUTED` to `echo`, has no default route,
/// dials `DIAL` over SIP, and validates signatures with `TOKEN`.
async fn harness(public_url: Option<&str>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/calls.db", dir.path().display())).await.unwrap();
    let mut config = Config::default();
    config.routes.default = None;
    config.routes.dids.insert(ROUTED.into(), "echo".into());
    config.twilio.auth_token = Some(TOKEN.into());
    config.twilio.public_url = public_url.map(str::to_owned);
    config.twilio.dial_sip.insert(DIAL.into(), SIP_TARGET.into());
    config.livekit.sip_host = Some(LIVEKIT_SIP_HOST.into());
    config.livekit.twilio_dids = vec![LIVEKIT_DID.into()];
    config.livekit.sip_username = Some("lk-trunk-user".into());
    config.livekit.sip_password = Some("lk-trunk-pass".into());
    config.context_key = Some(CONTEXT_KEY.into());
    config.http.admin_token = Some(ADMIN.into());
    let app = router(HttpState {
        auth: skald::http::auth::Auth::from_config(&config.http),
        store: store.clone(),
        registry: CallRegistry::new(),
        metrics: Metrics::new(),
        ready: Readiness::default(),
        config: Arc::new(config),
        calls: None,
        events: skald::events::EventBus::new(),
        contexts: ContextStore::new(),
    });
    Harness { app, store, _dir: dir }
}

/// Twilio's algorithm: Base64(HMAC-SHA1(token, url + name1 value1 + …)),
/// parameters sorted by name.
fn twilio_signature(url: &str, params: &[(String, String)], token: &str) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in &sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn call_params(to: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("CallSid", "CA11111111111111111111111111111111"),
        ("From", "+15550001"),
        ("To", to),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    p
}

/// POSTs `params` form-encoded to `path` with `headers`; returns status,
/// content type and body.
async fn post(
    app: &Router,
    path: &str,
    params: &[(String, String)],
    headers: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = serde_urlencoded::to_string(params).unwrap();
    send(app, req.body(Body::from(body)).unwrap()).await
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String, String) {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String, String) {
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

/// A signed webhook POST as Twilio sends it to `http://HOST`.
async fn signed_webhook(app: &Router, params: &[(String, String)]) -> (StatusCode, String, String) {
    let sig = twilio_signature(&format!("http://{HOST}{WEBHOOK}"), params, TOKEN);
    post(app, WEBHOOK, params, &[("host", HOST), ("x-twilio-signature", &sig)]).await
}

/// One element of a TwiML document.
#[derive(Debug)]
struct El {
    path: String,
    attrs: BTreeMap<String, String>,
    text: String,
}

/// Every element in document order, `/`-joined paths, text unescaped.
fn elements(xml: &str) -> Vec<El> {
    let mut r = Reader::from_str(xml);
    let (mut stack, mut out, mut open) = (Vec::<String>::new(), Vec::<El>::new(), Vec::<usize>::new());
    loop {
        match r.read_event().unwrap() {
            Event::Start(e) => {
                stack.push(String::from_utf8(e.name().as_ref().to_vec()).unwrap());
                out.push(el(&stack, &e));
                open.push(out.len() - 1);
            }
            Event::Empty(e) => {
                stack.push(String::from_utf8(e.name().as_ref().to_vec()).unwrap());
                out.push(el(&stack, &e));
                stack.pop();
            }
            Event::End(_) => {
                stack.pop();
                open.pop();
            }
            Event::Text(t) => out[*open.last().unwrap()].text.push_str(&t.decode().unwrap()),
            Event::GeneralRef(g) => {
                let name = g.decode().unwrap();
                let s = quick_xml::escape::resolve_predefined_entity(&name).unwrap();
                out[*open.last().unwrap()].text.push_str(s);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn el(stack: &[String], e: &quick_xml::events::BytesStart<'_>) -> El {
    let attrs = e
        .attributes()
        .map(|a| {
            let a = a.unwrap();
            (String::from_utf8(a.key.as_ref().to_vec()).unwrap(), a.unescape_value().unwrap().into_owned())
        })
        .collect();
    El { path: stack.join("/"), attrs, text: String::new() }
}

/// The Stream URL and the Parameters of a `<Connect><Stream>` answer.
fn stream_of(xml: &str) -> (String, BTreeMap<String, String>) {
    let els = elements(xml);
    let paths: Vec<&str> = els.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(&paths[..3], ["Response", "Response/Connect", "Response/Connect/Stream"], "{xml}");
    assert!(paths[3..].iter().all(|p| *p == "Response/Connect/Stream/Parameter"), "{xml}");
    let params = els[3..].iter().map(|e| (e.attrs["name"].clone(), e.attrs["value"].clone())).collect();
    (els[2].attrs["url"].clone(), params)
}

/// The `<Sip>` text of a `<Dial><Sip>` answer.
fn sip_of(xml: &str) -> String {
    let els = elements(xml);
    let paths: Vec<&str> = els.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["Response", "Response/Dial", "Response/Dial/Sip"], "{xml}");
    els[2].text.clone()
}

/// The SIP URI headers of `uri`, percent-decoded.
fn uri_headers(uri: &str) -> BTreeMap<String, String> {
    let (_, part) = uri.split_once('?').unwrap();
    part.split('&')
        .map(|h| {
            let (k, v) = h.split_once('=').unwrap();
            (k.to_owned(), percent_encoding::percent_decode_str(v).decode_utf8().unwrap().into_owned())
        })
        .collect()
}

fn forbidden(status: StatusCode, body: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], "forbidden");
}

#[tokio::test]
async fn routed_number_connects_a_media_stream() {
    let h = harness(None).await;
    let params = call_params(ROUTED, &[]);
    let (status, ctype, xml) = signed_webhook(&h.app, &params).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert_eq!(ctype, "text/xml");
    let (url, p) = stream_of(&xml);
    assert_eq!(url, format!("ws://{HOST}/api/v1/twilio/media-stream"));
    let expected: BTreeMap<String, String> = [
        ("app", "echo"),
        ("did", ROUTED),
        ("from", "+15550001"),
        ("direction", "inbound"),
        ("call_sid", "CA11111111111111111111111111111111"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(p, expected, "no context came in, so no `context` parameter");
}

#[tokio::test]
async fn bad_or_missing_signature_is_403() {
    let h = harness(None).await;
    let params = call_params(ROUTED, &[]);
    let sig = twilio_signature(&format!("http://{HOST}{WEBHOOK}"), &params, TOKEN);
    let mut changed = params.clone();
    changed[2].1 = "+15550002".into();
    let (status, _, body) = post(&h.app, WEBHOOK, &changed, &[("host", HOST), ("x-twilio-signature", &sig)]).await;
    forbidden(status, &body);
    let (status, _, body) = post(&h.app, WEBHOOK, &params, &[("host", HOST)]).await;
    forbidden(status, &body);
    let wrong_token = twilio_signature(&format!("http://{HOST}{WEBHOOK}"), &params, "other");
    let (status, _, body) =
        post(&h.app, WEBHOOK, &params, &[("host", HOST), ("x-twilio-signature", &wrong_token)]).await;
    forbidden(status, &body);
    // Nothing happened: no event was recorded for the call.
    assert!(h.store.events_for_call(None, Some(&params[1].1)).await.unwrap().is_empty());
    // The unchanged request passes (the 403s were the signature's doing).
    let (status, _, _) = post(&h.app, WEBHOOK, &params, &[("host", HOST), ("x-twilio-signature", &sig)]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn behind_a_tls_proxy_the_https_url_is_checked() {
    let h = harness(None).await;
    let params = call_params(ROUTED, &[]);
    let sig = twilio_signature("https://voice.example.com/api/v1/sip/inbound/webhook", &params, TOKEN);
    let headers = [("x-forwarded-proto", "https"), ("host", "voice.example.com"), ("x-twilio-signature", &sig)];
    let (status, _, xml) = post(&h.app, WEBHOOK, &params, &headers).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert_eq!(stream_of(&xml).0, "wss://voice.example.com/api/v1/twilio/media-stream");
    // Without the proxy's header the URL is http://…, which was not signed.
    let (status, _, body) =
        post(&h.app, WEBHOOK, &params, &[("host", "voice.example.com"), ("x-twilio-signature", &sig)]).await;
    forbidden(status, &body);
}

#[tokio::test]
async fn configured_public_url_is_what_is_signed() {
    let h = harness(Some("https://pub.example.com/")).await;
    let params = call_params(ROUTED, &[]);
    let sig = twilio_signature("https://pub.example.com/api/v1/sip/inbound/webhook?tenant=a", &params, TOKEN);
    let uri = format!("{WEBHOOK}?tenant=a");
    let (status, _, xml) = post(&h.app, &uri, &params, &[("host", HOST), ("x-twilio-signature", &sig)]).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert_eq!(stream_of(&xml).0, "wss://pub.example.com/api/v1/twilio/media-stream");
    // The Host-derived URL is not accepted when a public URL is configured.
    let local_sig = twilio_signature(&format!("http://{HOST}{WEBHOOK}?tenant=a"), &params, TOKEN);
    let (status, _, body) = post(&h.app, &uri, &params, &[("host", HOST), ("x-twilio-signature", &local_sig)]).await;
    forbidden(status, &body);
}

#[tokio::test]
async fn unknown_number_hears_a_sentence_and_hangs_up() {
    let h = harness(None).await;
    let (status, ctype, xml) = signed_webhook(&h.app, &call_params("+19990000", &[])).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert_eq!(ctype, "text/xml");
    let els = elements(&xml);
    let paths: Vec<&str> = els.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["Response", "Response/Say", "Response/Hangup"], "{xml}");
    assert!(els[1].text.starts_with("Sorry"), "{xml}");
}

#[tokio::test]
async fn dial_sip_number_carries_the_context_inline() {
    let h = harness(None).await;
    let params = call_params(DIAL, &[]);
    let (status, ctype, xml) = signed_webhook(&h.app, &params).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert_eq!(ctype, "text/xml");
    assert!(xml.contains("&amp;User-to-User="), "{xml}");
    let uri = sip_of(&xml);
    assert!(uri.starts_with(&format!("{SIP_TARGET}?X-Skald-Context=")), "{uri}");
    let headers = uri_headers(&uri);
    assert_eq!(headers.keys().collect::<Vec<_>>(), ["User-to-User", "X-Skald-Context"]);
    let ctx = CallContext::decode_signed(&headers["X-Skald-Context"], CONTEXT_KEY.as_bytes()).unwrap();
    assert_eq!(ctx.caller.as_deref(), Some("+15550001"));
    assert_eq!(ctx.did.as_deref(), Some(DIAL));
    assert_eq!(ctx.call_sid.as_deref(), Some("CA11111111111111111111111111111111"));
    let hex_json = headers["User-to-User"].strip_suffix(";encoding=hex").unwrap();
    let uui: Value = serde_json::from_slice(&hex::decode(hex_json).unwrap()).unwrap();
    assert_eq!(uui["v"], 1);
    assert_eq!(uui["did"], DIAL);
}

/// A number marked for LiveKit: Twilio dials LiveKit SIP over TCP with the
/// inbound trunk's credentials and the call's context headers.
#[tokio::test]
async fn a_livekit_number_is_dialled_into_livekit_sip_with_the_context() {
    let h = harness(None).await;
    let (status, _, xml) = signed_webhook(&h.app, &call_params(LIVEKIT_DID, &[])).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let sip = elements(&xml).into_iter().find(|e| e.path.ends_with("Sip")).expect("a <Sip>");
    assert_eq!(sip.attrs.get("username").map(String::as_str), Some("lk-trunk-user"), "{xml}");
    assert_eq!(sip.attrs.get("password").map(String::as_str), Some("lk-trunk-pass"), "{xml}");
    let uri = sip_of(&xml);
    assert!(uri.starts_with(&format!("sip:{LIVEKIT_DID}@{LIVEKIT_SIP_HOST};transport=tcp?X-Skald-Context=")), "{uri}");
    assert!(uri.len() <= 1024, "Twilio's limit on a <Sip> URI: {} characters", uri.len());
    let ctx = CallContext::decode_signed(&uri_headers(&uri)["X-Skald-Context"], CONTEXT_KEY.as_bytes()).unwrap();
    assert_eq!(ctx.did.as_deref(), Some(LIVEKIT_DID));
    assert_eq!(ctx.call_sid.as_deref(), Some("CA11111111111111111111111111111111"));
}

#[tokio::test]
async fn large_context_travels_by_reference_and_is_fetched() {
    let h = harness(None).await;
    let big = "y".repeat(1500);
    let params = call_params(DIAL, &[("SipHeader_X-Crm-Notes", &big), ("SipHeader_X-Twilio-Ignored", "1")]);
    let (status, _, xml) = signed_webhook(&h.app, &params).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let uri = sip_of(&xml);
    assert!(uri.len() < 200, "{uri}");
    let headers = uri_headers(&uri);
    assert_eq!(headers.keys().collect::<Vec<_>>(), ["X-Skald-Context-Ref", "X-Skald-Context-Token"]);
    let (r, t) = (&headers["X-Skald-Context-Ref"], &headers["X-Skald-Context-Token"]);

    let (status, ctype, body) = get(&h.app, &format!("/api/v1/context/{r}?token={t}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ctype, "application/json");
    let ctx: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ctx["headers"]["X-Crm-Notes"], big.as_str());
    assert!(ctx["headers"].get("X-Twilio-Ignored").is_none(), "{body}");
    assert_eq!(ctx["did"], DIAL);

    let (status, _, body) = get(&h.app, &format!("/api/v1/context/{r}?token=wrong")).await;
    forbidden(status, &body);
    // No context token: an API principal is needed (401), and even the
    // admin gets the context only with its token (403).
    let (status, _, body) = get(&h.app, &format!("/api/v1/context/{r}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let req = Request::get(format!("/api/v1/context/{r}")).header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
    let (status, _, body) = send(&h.app, req.body(Body::empty()).unwrap()).await;
    forbidden(status, &body);
    let (status, _, _) = get(&h.app, &format!("/api/v1/context/nope?token={t}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn signed_context_header_resumes_and_tampered_one_is_ignored() {
    let h = harness(None).await;
    let incoming = CallContext {
        caller: Some("+15550777".into()),
        intent: Some("billing".into()),
        summary: Some("Disputes the March invoice.".into()),
        previous_agents: vec!["front-desk".into()],
        ..CallContext::default()
    };
    let value = incoming.encode_signed(CONTEXT_KEY.as_bytes());
    let params = call_params(
        ROUTED,
        &[("SipHeader_X-Skald-Context", &value), ("SipHeader_X-Customer-Id", "42")],
    );
    let (status, _, xml) = signed_webhook(&h.app, &params).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let (_, p) = stream_of(&xml);
    let ctx = CallContext::decode_signed(&p["context"], CONTEXT_KEY.as_bytes()).unwrap();
    assert_eq!(ctx.intent.as_deref(), Some("billing"));
    assert_eq!(ctx.summary, incoming.summary);
    assert_eq!(ctx.previous_agents, ["front-desk"]);
    assert_eq!(ctx.caller.as_deref(), Some("+15550777"), "the original caller is kept");
    assert_eq!(ctx.did.as_deref(), Some(ROUTED));
    assert_eq!(ctx.call_sid.as_deref(), Some("CA11111111111111111111111111111111"));
    assert_eq!(ctx.headers, BTreeMap::from([("X-Customer-Id".to_string(), "42".to_string())]));

    // One character of the payload changed: ignored, the call still goes on.
    let mut tampered: Vec<char> = value.chars().collect();
    tampered[5] = if tampered[5] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let params = call_params(ROUTED, &[("SipHeader_X-Skald-Context", &tampered)]);
    let (status, _, xml) = signed_webhook(&h.app, &params).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let (_, p) = stream_of(&xml);
    assert!(!p.contains_key("context"), "a context that does not verify must not be passed on: {p:?}");
    assert_eq!(p["from"], "+15550001");

    // Signed with another key: ignored too.
    let foreign = incoming.encode_signed(b"another instance");
    let params = call_params(ROUTED, &[("SipHeader_X-Skald-Context", &foreign)]);
    let (status, _, xml) = signed_webhook(&h.app, &params).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!stream_of(&xml).1.contains_key("context"));
}

#[tokio::test]
async fn status_callback_stores_events_shown_on_the_call() {
    let h = harness(None).await;
    let sid = "CA22222222222222222222222222222222";
    let record = CallRecord {
        id: CallId::new(),
        sip_call_id: String::new(),
        direction: "inbound".into(),
        did: ROUTED.into(),
        state: "answered".into(),
        invited_at: 1_700_000_000_000,
        transport: Some("twilio-stream".into()),
        twilio_call_sid: Some(sid.into()),
        ..CallRecord::default()
    };
    h.store.insert_call(&record).await.unwrap();
    let status_params = |status: &str, seq: &str| -> Vec<(String, String)> {
        [
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("CallSid", sid),
            ("CallStatus", status),
            ("CallDuration", "42"),
            ("SequenceNumber", seq),
            ("Timestamp", "Tue, 14 Jan 2025 10:00:00 +0000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let url = format!("http://{HOST}{STATUS}");
    for (st, seq) in [("in-progress", "1"), ("completed", "2")] {
        let p = status_params(st, seq);
        let sig = twilio_signature(&url, &p, TOKEN);
        let (status, _, body) = post(&h.app, STATUS, &p, &[("host", HOST), ("x-twilio-signature", &sig)]).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    // A bad signature stores nothing.
    let p = status_params("failed", "3");
    let sig = twilio_signature(&url, &status_params("completed", "3"), TOKEN);
    let (status, _, body) = post(&h.app, STATUS, &p, &[("host", HOST), ("x-twilio-signature", &sig)]).await;
    forbidden(status, &body);

    let req = Request::get(format!("/api/v1/calls/{}", record.id)).header(header::AUTHORIZATION, format!("Bearer {ADMIN}"));
    let (status, _, body) = send(&h.app, req.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let events = v["events"].as_array().unwrap();
    let statuses: Vec<&str> = events.iter().map(|e| e["data"]["CallStatus"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["in-progress", "completed"], "{body}");
    assert!(events.iter().all(|e| e["kind"] == "twilio.status" && e["twilio_call_sid"] == sid));
    assert_eq!(events[1]["data"]["CallDuration"], "42");
    assert_eq!(events[1]["data"]["SequenceNumber"], "2");
    // The record itself is untouched.
    assert_eq!(v["state"], "answered");
}
