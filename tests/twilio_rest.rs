//! `skald twilio update-webhook`, `skald twilio status` and
//! `skald call --via twilio` against a local server that plays Twilio's
//! REST API (version 2010-04-01) as its reference documents it: it checks
//! the method, the path, HTTP Basic auth (Account SID + Auth Token, or API
//! key SID + secret), the form content type and every form field, records
//! what it received, and answers with JSON shaped like Twilio's examples,
//! including its error documents (401 code 20003, 404 code 20404).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "auth-token-5f3c9a";
const KEY: &str = "SK0123456789abcdef0123456789abcdef";
const SECRET: &str = "key-secret-7d1e0b";
const NUMBER: &str = "+15005550006";
const PN: &str = "PN0123456789abcdef0123456789abcdef";
const OLD_VOICE_URL: &str = "https://demo.twilio.com/welcome/voice/";
const PUBLIC: &str = "https://voice.example.com";
const CALLEE: &str = "+14155551212";

/// One request as the fake received it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    /// Path without the query.
    path: String,
    query: Vec<(String, String)>,
    /// Basic-auth user name, if the header decoded.
    user: Option<String>,
    content_type: Option<String>,
    /// Decoded form body, keys in order (repeats kept).
    form: Vec<(String, String)>,
}

impl Req {
    fn field(&self, key: &str) -> Vec<&str> {
        self.form.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
    fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The fake account.
struct Account {
    requests: Vec<Req>,
    voice_url: String,
    voice_method: String,
    status_callback: String,
    calls: Vec<Value>,
}

/// A fake Twilio REST API on 127.0.0.1.
struct Twilio {
    addr: SocketAddr,
    state: Arc<Mutex<Account>>,
    /// Serves until dropped.
    _rt: tokio::runtime::Runtime,
}

impl Twilio {
    fn start() -> Twilio {
        let calls = vec![
            call_json("CA11111111111111111111111111111111", CALLEE, NUMBER, "inbound", "completed", "15", "Tue, 31 Aug 2010 20:36:29 +0000"),
            call_json("CA22222222222222222222222222222222", NUMBER, "+14155559999", "outbound-api", "busy", "0", "Wed, 01 Sep 2010 09:00:00 +0000"),
            call_json("CA33333333333333333333333333333333", "+14155550000", "+14155550001", "inbound", "completed", "7", "Thu, 02 Sep 2010 10:00:00 +0000"),
        ];
        let state = Arc::new(Mutex::new(Account {
            requests: Vec::new(),
            voice_url: OLD_VOICE_URL.into(),
            voice_method: "GET".into(),
            status_callback: String::new(),
            calls,
        }));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Twilio { addr, state, _rt: rt }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Req> {
        self.state.lock().unwrap().requests.clone()
    }

    fn voice_url(&self) -> String {
        self.state.lock().unwrap().voice_url.clone()
    }
}

fn call_json(sid: &str, from: &str, to: &str, direction: &str, status: &str, duration: &str, start: &str) -> Value {
    json!({
        "account_sid": SID, "annotation": null, "answered_by": null, "api_version": "2010-04-01",
        "caller_name": null, "date_created": start, "date_updated": start, "direction": direction,
        "duration": duration, "end_time": start, "forwarded_from": null, "from": from,
        "from_formatted": from, "group_sid": null, "parent_call_sid": null, "phone_number_sid": PN,
        "price": "-0.03000", "price_unit": "USD", "sid": sid, "start_time": start, "status": status,
        "to": to, "to_formatted": to, "trunk_sid": null, "queue_time": "0",
        "uri": format!("/2010-04-01/Accounts/{SID}/Calls/{sid}.json"),
        "subresource_uris": {"recordings": format!("/2010-04-01/Accounts/{SID}/Calls/{sid}/Recordings.json")}
    })
}

fn number_json(a: &Account) -> Value {
    json!({
        "account_sid": SID, "address_requirements": "none", "address_sid": null, "api_version": "2010-04-01",
        "beta": false, "capabilities": {"voice": true, "sms": false, "mms": false, "fax": false},
        "date_created": "Thu, 30 Jul 2015 23:19:04 +0000", "date_updated": "Thu, 30 Jul 2015 23:19:04 +0000",
        "friendly_name": "(500) 555-0006", "identity_sid": null, "phone_number": NUMBER, "origin": "twilio",
        "sid": PN, "sms_application_sid": "", "sms_fallback_method": "POST", "sms_fallback_url": "",
        "sms_method": "POST", "sms_url": "", "status_callback": a.status_callback,
        "status_callback_method": "POST", "trunk_sid": null,
        "uri": format!("/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers/{PN}.json"),
        "voice_application_sid": null, "voice_caller_id_lookup": false, "voice_fallback_method": "POST",
        "voice_fallback_url": null, "voice_method": a.voice_method, "voice_url": a.voice_url,
        "emergency_status": "Active", "status": "in-use", "bundle_sid": null
    })
}

/// Twilio's error document.
fn error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code, "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16()
    });
    (status, axum::Json(body)).into_response()
}

fn page(key: &str, items: Vec<Value>, page_size: usize) -> Value {
    json!({
        key: items, "end": items.len().saturating_sub(1), "first_page_uri": "", "next_page_uri": null,
        "page": 0, "page_size": page_size, "previous_page_uri": null, "start": 0, "uri": ""
    })
}

fn decode_basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
    let (u, p) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

async fn handle(
    State(state): State<Arc<Mutex<Account>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let query: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let form: Vec<(String, String)> = if method == Method::POST {
        serde_urlencoded::from_bytes(&body).unwrap_or_default()
    } else {
        Vec::new()
    };
    let creds = decode_basic(&headers);
    let req = Req {
        method: method.to_string(),
        path: uri.path().to_string(),
        query,
        user: creds.as_ref().map(|c| c.0.clone()),
        content_type,
        form,
    };
    if req.path == "/slow/2010-04-01/Accounts/AC1/IncomingPhoneNumbers.json" {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
    let mut a = state.lock().unwrap();
    a.requests.push(req.clone());

    let authorized = matches!(&creds, Some((u, p)) if (u == SID && p == TOKEN) || (u == KEY && p == SECRET));
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let not_found = || error(StatusCode::NOT_FOUND, 20404, &format!("The requested resource {} was not found", uri.path()));
    let Some(rest) = req.path.strip_prefix(&format!("/2010-04-01/Accounts/{SID}/")) else {
        return not_found();
    };
    let page_size = match req.query("PageSize").map(str::parse::<usize>) {
        None => 50,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, 20001, "Invalid PageSize"),
    };
    if method == Method::POST && req.content_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return error(StatusCode::BAD_REQUEST, 20001, "Expected a form body");
    }
    let known = |allowed: &[&str]| req.form.iter().all(|(k, _)| allowed.contains(&k.as_str()));
    match (method.as_str(), rest) {
        ("GET", "IncomingPhoneNumbers.json") => {
            // Twilio's PhoneNumber filter matches partial numbers too.
            let matches = req.query("PhoneNumber").is_none_or(|p| NUMBER.contains(p));
            let items = if matches { vec![number_json(&a)] } else { vec![] };
            axum::Json(page("incoming_phone_numbers", items, page_size)).into_response()
        }
        ("POST", r) if r.starts_with("IncomingPhoneNumbers/") => {
            if r != format!("IncomingPhoneNumbers/{PN}.json") {
                return not_found();
            }
            if !known(&["VoiceUrl", "VoiceMethod", "StatusCallback", "StatusCallbackMethod"]) {
                return error(StatusCode::BAD_REQUEST, 20001, "Unexpected parameter");
            }
            for m in req.field("VoiceMethod").into_iter().chain(req.field("StatusCallbackMethod")) {
                if m != "GET" && m != "POST" {
                    return error(StatusCode::BAD_REQUEST, 21603, "Method must be GET or POST");
                }
            }
            if let Some(v) = req.field("VoiceUrl").first() {
                a.voice_url = v.to_string();
            }
            if let Some(v) = req.field("VoiceMethod").first() {
                a.voice_method = v.to_string();
            }
            if let Some(v) = req.field("StatusCallback").first() {
                a.status_callback = v.to_string();
            }
            axum::Json(number_json(&a)).into_response()
        }
        ("GET", "Calls.json") => {
            let items: Vec<Value> = a
                .calls
                .iter()
                .filter(|c| req.query("To").is_none_or(|t| c["to"] == t))
                .filter(|c| req.query("From").is_none_or(|f| c["from"] == f))
                .take(page_size)
                .cloned()
                .collect();
            axum::Json(page("calls", items, page_size)).into_response()
        }
        ("POST", "Calls.json") => {
            let allowed = ["To", "From", "Twiml", "Url", "StatusCallback", "StatusCallbackMethod", "StatusCallbackEvent"];
            if !known(&allowed) {
                return error(StatusCode::BAD_REQUEST, 20001, "Unexpected parameter");
            }
            let (Some(to), Some(from)) = (req.field("To").first().copied(), req.field("From").first().copied()) else {
                return error(StatusCode::BAD_REQUEST, 21201, "No 'To' number is specified");
            };
            if req.field("Twiml").is_empty() && req.field("Url").is_empty() {
                return error(StatusCode::BAD_REQUEST, 21205, "Url parameter is required");
            }
            for e in req.field("StatusCallbackEvent") {
                if !["initiated", "ringing", "answered", "completed"].contains(&e) {
                    return error(StatusCode::BAD_REQUEST, 21626, "Invalid StatusCallbackEvent");
                }
            }
            let sid = format!("CA{:032x}", 0xfeed_0000 + a.calls.len());
            let mut c = call_json(&sid, from, to, "outbound-api", "queued", "", "");
            c["duration"] = Value::Null;
            c["start_time"] = Value::Null;
            c["end_time"] = Value::Null;
            a.calls.insert(0, c.clone());
            (StatusCode::CREATED, axum::Json(c)).into_response()
        }
        _ => not_found(),
    }
}

/// A temp config aimed at the fake; `extra` goes under `twilio:`.
struct Cfg {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn config(twilio: &Twilio, extra: &str) -> Cfg {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skald.yaml");
    let yaml = format!(
        "routes:\n  default: front\napplications:\n  front: {{type: echo}}\n  other: {{type: echo}}\n\
         twilio:\n  api_base_url: {}\n{extra}",
        twilio.base_url()
    );
    std::fs::write(&path, yaml).unwrap();
    Cfg { _dir: dir, path }
}

enum Creds {
    Token(&'static str),
    ApiKey,
    None,
}

fn skald(cfg: &Cfg, creds: Creds, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skald"));
    cmd.args(args).arg("--config").arg(&cfg.path);
    for k in ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET"] {
        cmd.env_remove(k);
    }
    match creds {
        Creds::Token(t) => {
            cmd.env("TWILIO_ACCOUNT_SID", SID).env("TWILIO_AUTH_TOKEN", t);
        }
        Creds::ApiKey => {
            cmd.env("TWILIO_ACCOUNT_SID", SID).env("TWILIO_API_KEY", KEY).env("TWILIO_API_SECRET", SECRET);
        }
        Creds::None => {}
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn form_urlencoded(r: &Req) -> bool {
    r.content_type.as_deref() == Some("application/x-www-form-urlencoded")
}

#[test]
fn update_webhook_points_the_number_at_this_server() {
    let tw = Twilio::start();
    let cfg = config(&tw, &format!("  public_url: {PUBLIC}/\n"));
    let out = skald(&cfg, Creds::Token(TOKEN), &["twilio", "update-webhook", "--number", NUMBER]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("updated {NUMBER} ({PN})")), "{stdout}");
    assert!(stdout.contains("https://voice.example.com/api/v1/sip/inbound/webhook (POST)"), "{stdout}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));

    let reqs = tw.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let find = &reqs[0];
    assert_eq!((find.method.as_str(), find.path.as_str()), ("GET", format!("/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers.json").as_str()));
    assert_eq!(find.query("PhoneNumber"), Some(NUMBER));
    let update = &reqs[1];
    assert_eq!(update.method, "POST");
    assert_eq!(update.path, format!("/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers/{PN}.json"));
    assert!(form_urlencoded(update), "{update:?}");
    for r in &reqs {
        assert_eq!(r.user.as_deref(), Some(SID), "Basic auth user is the Account SID");
    }
    let fields: Vec<(&str, &str)> = update.form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        fields,
        [
            ("VoiceUrl", "https://voice.example.com/api/v1/sip/inbound/webhook"),
            ("VoiceMethod", "POST"),
            ("StatusCallback", "https://voice.example.com/api/v1/twilio/status"),
            ("StatusCallbackMethod", "POST"),
        ]
    );
    assert_eq!(tw.voice_url(), "https://voice.example.com/api/v1/sip/inbound/webhook");
}

#[test]
fn api_key_authenticates_as_the_key_and_the_flag_sets_the_public_url() {
    let tw = Twilio::start();
    let cfg = config(&tw, "");
    let args = ["twilio", "update-webhook", "--number", NUMBER, "--public-url", "https://other.example.net"];
    let out = skald(&cfg, Creds::ApiKey, &args);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
    let reqs = tw.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for r in &reqs {
        assert_eq!(r.user.as_deref(), Some(KEY), "Basic auth user is the API key SID");
        assert!(r.path.starts_with(&format!("/2010-04-01/Accounts/{SID}/")), "account stays in the path");
    }
    assert_eq!(reqs[1].field("VoiceUrl"), ["https://other.example.net/api/v1/sip/inbound/webhook"]);
}

#[test]
fn bad_credentials_report_twilio_error_20003_without_the_secret() {
    let tw = Twilio::start();
    let cfg = config(&tw, &format!("  public_url: {PUBLIC}\n"));
    let wrong = "wrong-token-93b1";
    let out = skald(&cfg, Creds::Token(wrong), &["twilio", "update-webhook", "--number", NUMBER]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("Twilio API error 20003: Authenticate (HTTP 401)"), "{stderr}");
    assert!(!stdout.contains(wrong) && !stderr.contains(wrong), "secret printed");
    assert!(tw.requests().iter().all(|r| r.method == "GET"), "no update after a failed lookup");
    assert_eq!(tw.voice_url(), OLD_VOICE_URL);
}

#[test]
fn unknown_number_missing_credentials_and_missing_public_url_fail_clearly() {
    let tw = Twilio::start();
    let with_url = config(&tw, &format!("  public_url: {PUBLIC}\n"));
    let out = skald(&with_url, Creds::Token(TOKEN), &["twilio", "update-webhook", "--number", "+15005550001"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has no phone number +15005550001"), "{stderr}");
    assert_eq!(tw.requests().len(), 1, "only the lookup");

    let out = skald(&with_url, Creds::None, &["twilio", "update-webhook", "--number", NUMBER]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("TWILIO_ACCOUNT_SID"), "{stderr}");

    let without_url = config(&tw, "");
    let out = skald(&without_url, Creds::Token(TOKEN), &["twilio", "update-webhook", "--number", NUMBER]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--public-url") && stderr.contains("twilio.public_url"), "{stderr}");

    let out = skald(&with_url, Creds::Token(TOKEN), &["twilio", "update-webhook", "--number", "5005550006"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not an E.164"), "{stderr}");
    assert_eq!(tw.requests().len(), 1, "nothing reached Twilio after the lookup");
}

#[test]
fn status_shows_the_configuration_warns_when_elsewhere_and_lists_recent_calls() {
    let tw = Twilio::start();
    let cfg = config(&tw, &format!("  public_url: {PUBLIC}\n"));
    let out = skald(&cfg, Creds::Token(TOKEN), &["twilio", "status", "--number", NUMBER]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("number {NUMBER} ({PN})")), "{stdout}");
    assert!(stdout.contains(&format!("voice url:        {OLD_VOICE_URL} (GET)")), "{stdout}");
    assert!(stderr.contains("warning:") && stderr.contains("does not point at this server"), "{stderr}");
    assert!(stderr.contains("https://voice.example.com/api/v1/sip/inbound/webhook"), "{stderr}");
    // Calls to and from the number, newest first; not the unrelated one.
    let ca1 = stdout.find("CA11111111111111111111111111111111").expect(&stdout);
    let ca2 = stdout.find("CA22222222222222222222222222222222").expect(&stdout);
    assert!(ca2 < ca1, "newest first: {stdout}");
    assert!(!stdout.contains("CA3333"), "{stdout}");
    let line1 = stdout.lines().find(|l| l.contains("CA1111")).unwrap();
    for col in [CALLEE, NUMBER, "completed", "15s"] {
        assert!(line1.contains(col), "{line1}");
    }

    let calls: Vec<Req> = tw.requests().into_iter().filter(|r| r.path.ends_with("/Calls.json")).collect();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert!(calls.iter().all(|r| r.method == "GET" && r.query("PageSize") == Some("10")));
    assert!(calls.iter().any(|r| r.query("To") == Some(NUMBER)));
    assert!(calls.iter().any(|r| r.query("From") == Some(NUMBER)));

    // Once pointed here, no warning.
    let out = skald(&cfg, Creds::Token(TOKEN), &["twilio", "update-webhook", "--number", NUMBER]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = skald(&cfg, Creds::Token(TOKEN), &["twilio", "status", "--number", NUMBER, "--limit", "1"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(stdout.contains("https://voice.example.com/api/v1/twilio/status (POST)"), "{stdout}");
    assert!(stdout.contains("CA2222") && !stdout.contains("CA1111"), "--limit 1: {stdout}");
}

/// The elements and attributes of a TwiML document, as (path, attributes).
fn parse_twiml(xml: &str) -> Vec<(String, Vec<(String, String)>)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let describe = |e: &quick_xml::events::BytesStart<'_>| {
        let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
        let attrs: Vec<(String, String)> = e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (String::from_utf8(a.key.as_ref().to_vec()).unwrap(), a.unescape_value().unwrap().into_owned())
            })
            .collect();
        (name, attrs)
    };
    loop {
        match reader.read_event().expect("TwiML is well-formed XML") {
            Event::Start(e) => {
                let (name, attrs) = describe(&e);
                stack.push(name);
                out.push((stack.join("/"), attrs));
            }
            Event::Empty(e) => {
                let (name, attrs) = describe(&e);
                let path = stack.iter().cloned().chain([name]).collect::<Vec<_>>().join("/");
                out.push((path, attrs));
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    out
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn call_via_twilio_creates_a_call_whose_twiml_streams_to_this_server() {
    let tw = Twilio::start();
    let cfg = config(&tw, &format!("  public_url: {PUBLIC}\n"));
    let out = skald(&cfg, Creds::Token(TOKEN), &["call", "--via", "twilio", "--to", CALLEE, "--from", NUMBER]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let reqs = tw.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", format!("/2010-04-01/Accounts/{SID}/Calls.json").as_str()));
    assert_eq!(r.user.as_deref(), Some(SID));
    assert!(form_urlencoded(r), "{r:?}");
    assert_eq!(r.field("To"), [CALLEE]);
    assert_eq!(r.field("From"), [NUMBER]);
    assert_eq!(r.field("StatusCallback"), ["https://voice.example.com/api/v1/twilio/status"]);
    assert_eq!(r.field("StatusCallbackMethod"), ["POST"]);
    assert_eq!(r.field("StatusCallbackEvent"), ["initiated", "ringing", "answered", "completed"]);
    assert!(r.field("Url").is_empty());
    let twiml = r.field("Twiml");
    assert_eq!(twiml.len(), 1);
    let els = parse_twiml(twiml[0]);
    assert_eq!(
        els,
        [
            ("Response".into(), vec![]),
            ("Response/Connect".into(), vec![]),
            ("Response/Connect/Stream".into(), attrs(&[("url", "wss://voice.example.com/api/v1/twilio/media-stream")])),
            ("Response/Connect/Stream/Parameter".into(), attrs(&[("name", "app"), ("value", "front")])),
            ("Response/Connect/Stream/Parameter".into(), attrs(&[("name", "did"), ("value", NUMBER)])),
            ("Response/Connect/Stream/Parameter".into(), attrs(&[("name", "from"), ("value", CALLEE)])),
            ("Response/Connect/Stream/Parameter".into(), attrs(&[("name", "direction"), ("value", "outbound")])),
        ]
    );
    let created = format!("CA{:032x}", 0xfeed_0000u64 + 3);
    assert!(stdout.contains(&format!("call {created} queued")), "{stdout}");

    // --app picks the application; an http public URL streams over ws.
    let args = ["call", "--via", "twilio", "--to", CALLEE, "--from", NUMBER, "--app", "other", "--public-url", "http://127.0.0.1:8080"];
    let out = skald(&cfg, Creds::Token(TOKEN), &args);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let reqs = tw.requests();
    let els = parse_twiml(reqs[1].field("Twiml")[0]);
    assert_eq!(els[2].1, attrs(&[("url", "ws://127.0.0.1:8080/api/v1/twilio/media-stream")]));
    assert_eq!(els[3].1, attrs(&[("name", "app"), ("value", "other")]));
    assert_eq!(reqs[1].field("StatusCallback"), ["http://127.0.0.1:8080/api/v1/twilio/status"]);
}

#[test]
fn call_via_twilio_refuses_bad_input_before_any_request() {
    let tw = Twilio::start();
    let cfg = config(&tw, &format!("  public_url: {PUBLIC}\n"));
    let cases: [(&[&str], &str); 5] = [
        (&["call", "--via", "twilio", "--from", NUMBER], "--to"),
        (&["call", "--via", "twilio", "--to", CALLEE], "--from"),
        (&["call", "--via", "twilio", "--to", "4155551212", "--from", NUMBER], "not an E.164"),
        (&["call", "--via", "twilio", "--to", CALLEE, "--from", NUMBER, "--app", "nope"], "unknown application `nope`"),
        (&["call", "--via", "twilio", "sip:a@127.0.0.1", "--to", CALLEE, "--from", NUMBER], "not a SIP URI"),
    ];
    for (args, says) in cases {
        let out = skald(&cfg, Creds::Token(TOKEN), args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(tw.requests().is_empty(), "{:#?}", tw.requests());
}

#[test]
fn library_client_types_twilio_errors() {
    use skald::transports::twilio::rest::{Auth, RestError, TwilioClient};
    let tw = Twilio::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = TwilioClient::new(&tw.base_url(), SID, Auth::AuthToken(TOKEN.into())).unwrap();
    let err = rt
        .block_on(client.update_voice_webhook("PNffffffffffffffffffffffffffffffff", "https://x/y", "https://x/z"))
        .unwrap_err();
    let RestError::Api { status, code, message, more_info } = err else { panic!("{err:?}") };
    assert_eq!((status, code), (404, Some(20404)));
    assert!(message.contains("PNffff") && message.contains("was not found"), "{message}");
    assert_eq!(more_info.as_deref(), Some("https://www.twilio.com/docs/errors/20404"));

    let number = rt.block_on(client.find_number(NUMBER)).unwrap();
    assert_eq!((number.sid.as_str(), number.voice_url.as_deref()), (PN, Some(OLD_VOICE_URL)));
    let calls = rt.block_on(client.recent_calls(None, 50)).unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].duration.as_deref(), Some("15"));

    let bad = TwilioClient::new(&tw.base_url(), SID, Auth::ApiKey { sid: KEY.into(), secret: "nope".into() }).unwrap();
    let err = rt.block_on(bad.list_numbers(5)).unwrap_err();
    assert!(matches!(err, RestError::Api { status: 401, code: Some(20003), .. }), "{err:?}");

    // Nobody listening: a transport error, not an API error.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone = TwilioClient::new(&format!("http://127.0.0.1:{port}"), SID, Auth::AuthToken(TOKEN.into())).unwrap();
    let err = rt.block_on(gone.list_numbers(5)).unwrap_err();
    assert!(matches!(err, RestError::Transport(_)), "{err:?}");

    // A server that does not answer in time: a timeout, after the timeout.
    let slow = TwilioClient::new(&format!("{}/slow", tw.base_url()), "AC1", Auth::AuthToken(TOKEN.into()))
        .unwrap()
        .with_timeout(std::time::Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    let err = rt.block_on(slow.list_numbers(5)).unwrap_err();
    assert!(matches!(err, RestError::Timeout(_)), "{err:?}");
    let waited = t0.elapsed();
    assert!(waited >= std::time::Duration::from_millis(300) && waited < std::time::Duration::from_secs(3), "{waited:?}");
}
