//! Twilio's HTTP side: the inbound voice webhook (answers TwiML) and the
//! call status callback, both signed with `X-Twilio-Signature`.
//!
//! `POST /api/v1/sip/inbound/webhook` ([`inbound_webhook`]) decides, by the
//! called number (`To`), what Twilio does with a call:
//! 0. a number in `livekit.twilio_dids` → `<Dial><Sip>` to LiveKit SIP
//!    (`sip:NUMBER@livekit.sip_host;transport=tcp`, with the inbound
//!    trunk's credentials), the call's context in SIP headers as in 1.;
//! 1. a number in `twilio.dial_sip` → `<Dial><Sip>` to that URI, the call's
//!    context in SIP headers (inline or by reference, see
//!    [`crate::agent::context`]);
//! 2. a number with no route (no DID entry and no `routes.default`) →
//!    `<Say>` a polite sentence, `<Hangup/>`;
//! 3. any other → `<Connect><Stream>` to this server's Media Streams
//!    endpoint (`wss://HOST/api/v1/twilio/media-stream`) with the
//!    parameters the stream handler reads: `app`, `did`, `from`,
//!    `direction` (`inbound`), `call_sid`, and `context` (a signed
//!    [`CallContext`]) when the call brought one.
//!
//! Context in: on SIP-originated calls Twilio passes the INVITE's custom
//! headers as `SipHeader_<name>` parameters. A `X-Skald-Context` that
//! verifies with the context key, or a `X-Skald-Context-Ref` +
//! `X-Skald-Context-Token` pair this instance holds, is the call's context;
//! other custom headers (`X-…`, `User-to-User`) go into its `headers` map. A
//! context that does not verify is ignored (logged) and the call goes on
//! with a fresh one.
//!
//! `POST /api/v1/twilio/status` ([`status_callback`]) stores each call
//! status change as a `twilio.status` event ([`CallEvent`]) keyed by CallSid.
//!
//! Signatures: `verify_request` checks `X-Twilio-Signature` over the URL
//! Twilio requested (`public_url`) and every form parameter. A bad or
//! missing signature answers 403 and does nothing else.

use crate::agent::context::{
    CallContext, HEADER_CONTEXT, HEADER_CONTEXT_REF, HEADER_CONTEXT_TOKEN, is_custom_header, sip_uri_with_headers,
};
use crate::config::{Config, TwilioConfig};
use crate::http::HttpState;
use crate::http::error::ApiError;
use crate::call::service::now_ms;
use crate::observability::Pii;
use crate::store::events::CallEvent;
use crate::transports::twilio::{signature, twiml};
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;

/// Path of the Media Streams WebSocket that `<Connect><Stream>` points at.
pub const MEDIA_STREAM_PATH: &str = "/api/v1/twilio/media-stream";
/// Path of the voice webhook (a number's Voice URL).
pub const WEBHOOK_PATH: &str = "/api/v1/sip/inbound/webhook";
/// Path of the call status callback.
pub const STATUS_PATH: &str = "/api/v1/twilio/status";

/// What an unrouted number hears before the hang-up.
pub const UNKNOWN_NUMBER_TEXT: &str =
    "Sorry, this number is not in service. Please check the number and try again. Goodbye.";

/// Prefix of the form parameters that carry the INVITE's custom SIP headers.
const SIP_HEADER_PREFIX: &str = "SipHeader_";

/// Why a Twilio request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request has no (or a non-text) `X-Twilio-Signature` header.
    #[error("missing X-Twilio-Signature header")]
    Missing,
    /// Validation is on but no Auth Token is configured to check with.
    #[error("no Twilio auth token configured to validate signatures")]
    NoAuthToken,
    /// The signature does not match the URL and parameters.
    #[error("X-Twilio-Signature does not match (signed URL assumed: {url})")]
    Mismatch {
        /// The URL the signature was checked against.
        url: String,
    },
}

/// The URL Twilio requested (and signed): `twilio.public_url` (trailing `/`
/// trimmed) + path and query; else scheme from `X-Forwarded-Proto` (default
/// `http`) + `://` + host from `X-Forwarded-Host` or `Host` + path and query.
pub(crate) fn public_url(cfg: &TwilioConfig, headers: &HeaderMap, uri: &Uri) -> String {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    format!("{}{path}", public_base(cfg, headers, uri))
}

/// Checks `X-Twilio-Signature` of a request to `uri` with form `params`
/// (empty for a GET such as the Media Streams upgrade). `Ok` when
/// `twilio.validate_signature` is off.
pub(crate) fn verify_request(
    cfg: &TwilioConfig,
    headers: &HeaderMap,
    uri: &Uri,
    params: &[(String, String)],
) -> Result<(), SignatureError> {
    if !cfg.validate_signature {
        return Ok(());
    }
    let Some(token) = cfg.auth_token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(SignatureError::NoAuthToken);
    };
    let Some(given) = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()) else {
        return Err(SignatureError::Missing);
    };
    let url = public_url(cfg, headers, uri);
    // A Media Streams upgrade is signed over the `wss://` URL of the TwiML.
    let ws_url = url.replacen("https://", "wss://", 1).replacen("http://", "ws://", 1);
    if signature::is_valid(&url, params, token, given) || signature::is_valid(&ws_url, params, token, given) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch { url })
    }
}

/// `POST /api/v1/sip/inbound/webhook`: Twilio's voice webhook for a number.
///
/// Input: Twilio's form-encoded parameters (`CallSid`, `From`, `To`,
/// `AccountSid`, `SipHeader_…`, …), signed. Output: `200` TwiML
/// (`Content-Type: text/xml`) as described in the module doc. Status: 400
/// when the body is not form-encoded, 403 when the signature is missing or
/// wrong or `AccountSid` is not the configured account.
#[utoipa::path(
    post,
    path = WEBHOOK_PATH,
    tag = "twilio",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Twilio's voice webhook parameters"),
    responses(
        (status = 200, description = "TwiML", body = String, content_type = "text/xml"),
        (status = 400, description = "Not form-encoded", body = crate::http::error::ErrorBody),
        (status = 403, description = "`X-Twilio-Signature` missing or wrong, or another account", body = crate::http::error::ErrorBody),
    ),
    security(("twilio_signature" = [])),
    extensions(("x-skald-role" = json!("public"))),
)]
pub async fn inbound_webhook(
    State(st): State<HttpState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = signed_params(&st.config.twilio, &headers, &uri, &body, "voice webhook")?;
    let get = |name: &str| param(&params, name).unwrap_or_default();
    let (to, from, call_sid) = (get("To"), get("From"), get("CallSid"));
    let key = context_key(&st.config);
    let (mut ctx, brought) = incoming_context(&st, &params, &key);
    ctx.caller.get_or_insert_with(|| from.to_owned());
    ctx.did.get_or_insert_with(|| to.to_owned());
    if !call_sid.is_empty() {
        ctx.call_sid = Some(call_sid.to_owned());
    }

    let (decision, xml) = if let Some(target) = livekit_sip_target(&st.config, to) {
        let uri = sip_uri_with_headers(&target, &ctx, &key, |c| st.contexts.put(c.clone()));
        let lk = &st.config.livekit;
        let credentials = lk.sip_username.as_deref().zip(lk.sip_password.as_deref());
        tracing::info!(did = %Pii(to), from = %Pii(from), call_sid, target, "Twilio call: <Dial><Sip> to LiveKit SIP");
        ("livekit-sip", twiml::dial_sip_auth(&uri, credentials))
    } else if let Some(target) = dial_sip_target(&st.config, to) {
        let uri = sip_uri_with_headers(target, &ctx, &key, |c| st.contexts.put(c.clone()));
        tracing::info!(did = %Pii(to), from = %Pii(from), call_sid, target, "Twilio call: <Dial><Sip>");
        ("dial-sip", twiml::dial_sip(&uri))
    } else if let Some(app) = st.config.route(to) {
        let stream_url = format!("{}{MEDIA_STREAM_PATH}", ws_base(&public_base(&st.config.twilio, &headers, &uri)));
        let encoded = brought.then(|| ctx.encode_signed(&key));
        let mut stream_params =
            vec![("app", app), ("did", to), ("from", from), ("direction", "inbound"), ("call_sid", call_sid)];
        if let Some(c) = &encoded {
            stream_params.push(("context", c));
        }
        tracing::info!(did = %Pii(to), from = %Pii(from), call_sid, app, "Twilio call: <Connect><Stream>");
        ("stream", twiml::connect_stream(&stream_url, &stream_params))
    } else {
        tracing::warn!(did = %Pii(to), from = %Pii(from), call_sid, "Twilio call to a number with no route: <Say>, <Hangup>");
        ("unrouted", twiml::say_hangup(UNKNOWN_NUMBER_TEXT))
    };
    record(
        &st,
        call_sid,
        "twilio.inbound",
        serde_json::json!({ "to": to, "from": from, "decision": decision, "context": brought }),
    )
    .await;
    Ok(([(header::CONTENT_TYPE, "text/xml")], xml).into_response())
}

/// `POST /api/v1/twilio/status`: Twilio's call status callback.
///
/// Input: Twilio's form-encoded parameters (`CallSid`, `CallStatus`,
/// `CallDuration`, `Timestamp`, `SequenceNumber`, …), signed. Every
/// parameter is stored as the `data` of a `twilio.status` event for that
/// CallSid (shown in `GET /api/v1/calls/{id}` of the call with that
/// CallSid); call records are not changed. Output: `204`. Status: 400 when
/// the body is not form-encoded or has no `CallSid`, 403 as for the webhook,
/// 500 when the store fails.
#[utoipa::path(
    post,
    path = STATUS_PATH,
    tag = "twilio",
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Twilio's status callback parameters"),
    responses(
        (status = 204, description = "Stored as a `twilio.status` event"),
        (status = 400, description = "Not form-encoded or no `CallSid`", body = crate::http::error::ErrorBody),
        (status = 403, description = "`X-Twilio-Signature` missing or wrong, or another account", body = crate::http::error::ErrorBody),
        (status = 500, description = "The store failed", body = crate::http::error::ErrorBody),
    ),
    security(("twilio_signature" = [])),
    extensions(("x-skald-role" = json!("public"))),
)]
pub async fn status_callback(
    State(st): State<HttpState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let params = signed_params(&st.config.twilio, &headers, &uri, &body, "status callback")?;
    let Some(call_sid) = param(&params, "CallSid").filter(|s| !s.is_empty()) else {
        return Err(ApiError::BadRequest("CallSid is missing".into()));
    };
    let data: serde_json::Map<String, serde_json::Value> =
        params.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    tracing::debug!(call_sid, status = param(&params, "CallStatus").unwrap_or_default(), "Twilio call status");
    let event = CallEvent {
        call_id: None,
        twilio_call_sid: Some(call_sid.to_owned()),
        kind: "twilio.status".into(),
        at: now_ms(),
        data: data.into(),
    };
    st.store.add_event(&event).await?;
    st.events.publish(None, &event.kind, event.at, event.data);
    Ok(StatusCode::NO_CONTENT)
}

/// The form parameters of a Twilio POST whose signature (and account)
/// checks out; 400 for a body that is not a form, 403 (logged) otherwise.
fn signed_params(
    cfg: &TwilioConfig,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    what: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| ApiError::BadRequest("body must be application/x-www-form-urlencoded".into()))?;
    if let Err(e) = verify_request(cfg, headers, uri, &params) {
        tracing::warn!(reason = %e, "Twilio {what} refused: bad signature");
        return Err(ApiError::Forbidden("invalid Twilio signature".into()));
    }
    if let (Some(expected), Some(got)) = (cfg.account_sid.as_deref(), param(&params, "AccountSid"))
        && expected != got
    {
        tracing::warn!(account_sid = got, "Twilio {what} refused: not this account");
        return Err(ApiError::Forbidden("wrong Twilio account".into()));
    }
    Ok(params)
}

/// The context the call brought in its SIP headers (second value `true`),
/// or a fresh one. Custom headers other than the context's own go into
/// `headers`.
fn incoming_context(st: &HttpState, params: &[(String, String)], key: &[u8]) -> (CallContext, bool) {
    let sip_headers: Vec<(&str, &str)> = params
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(SIP_HEADER_PREFIX)?, v.as_str())))
        .filter(|(name, _)| is_custom_header(name))
        .collect();
    let header = |name: &str| sip_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
    let mut brought = None;
    if let Some(value) = header(HEADER_CONTEXT) {
        match CallContext::decode_signed(value, key) {
            Ok(ctx) => brought = Some(ctx),
            Err(e) => tracing::warn!(error = %e, "ignoring the call's X-Skald-Context"),
        }
    }
    if brought.is_none()
        && let (Some(r), Some(t)) = (header(HEADER_CONTEXT_REF), header(HEADER_CONTEXT_TOKEN))
    {
        match st.contexts.lookup(r, t) {
            Ok(ctx) => brought = Some(ctx),
            Err(e) => tracing::warn!(error = %e, "ignoring the call's X-Skald-Context-Ref"),
        }
    }
    let found = brought.is_some();
    let mut ctx = brought.unwrap_or_default();
    let ours = [HEADER_CONTEXT, HEADER_CONTEXT_REF, HEADER_CONTEXT_TOKEN];
    for (name, value) in sip_headers {
        if !ours.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            ctx.headers.insert(name.to_owned(), value.to_owned());
        }
    }
    let brought = found || !ctx.headers.is_empty();
    (ctx, brought)
}

/// The LiveKit SIP URI of a called number in `livekit.twilio_dids` (with or
/// without its `+`): `sip:NUMBER@SIP_HOST;transport=tcp` (TCP: the context
/// headers make the INVITE too big for UDP).
fn livekit_sip_target(cfg: &Config, did: &str) -> Option<String> {
    let host = cfg.livekit.sip_host.as_deref().filter(|h| !h.is_empty())?;
    let bare = did.trim_start_matches('+');
    cfg.livekit.twilio_dids.iter().any(|d| d.trim_start_matches('+') == bare).then(|| format!("sip:{did}@{host};transport=tcp"))
}

/// The `dial_sip` target of a called number (with or without its `+`).
fn dial_sip_target<'a>(cfg: &'a Config, did: &str) -> Option<&'a str> {
    let alt = match did.strip_prefix('+') {
        Some(rest) => rest.to_owned(),
        None => format!("+{did}"),
    };
    let map = &cfg.twilio.dial_sip;
    map.get(did).or_else(|| map.get(&alt)).map(String::as_str)
}

/// The key that signs and verifies call contexts: the configured one, else
/// a random one for this process (a config not made by `Config::load`).
fn context_key(cfg: &Config) -> Vec<u8> {
    static FALLBACK: OnceLock<[u8; 32]> = OnceLock::new();
    match &cfg.context_key {
        Some(k) => k.as_bytes().to_vec(),
        None => FALLBACK.get_or_init(rand::random).to_vec(),
    }
}

/// `scheme://host` (or the configured public URL) without a trailing `/`.
fn public_base(cfg: &TwilioConfig, headers: &HeaderMap, uri: &Uri) -> String {
    if let Some(base) = cfg.public_url.as_deref().filter(|b| !b.is_empty()) {
        return base.trim_end_matches('/').to_owned();
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = first("x-forwarded-proto").unwrap_or("http");
    let host = first("x-forwarded-host")
        .or_else(|| first("host"))
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// `https://…` → `wss://…`, `http://…` → `ws://…`.
fn ws_base(base: &str) -> String {
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    }
}

/// The first value of a form parameter.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Stores an event for a CallSid; a store failure is logged, not returned
/// (Twilio's call must not fail because the event log did).
async fn record(st: &HttpState, call_sid: &str, kind: &str, data: serde_json::Value) {
    let event = CallEvent {
        call_id: None,
        twilio_call_sid: (!call_sid.is_empty()).then(|| call_sid.to_owned()),
        kind: kind.to_owned(),
        at: now_ms(),
        data,
    };
    if let Err(e) = st.store.add_event(&event).await {
        tracing::warn!(error = %e, kind, "could not store a call event");
    }
    st.events.publish(None, &event.kind, event.at, event.data);
}


#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn public_url_from_config_or_proxy_headers() {
        let uri: Uri = "/api/v1/sip/inbound/webhook?x=1".parse().unwrap();
        let mut cfg = TwilioConfig { public_url: Some("https://voice.example.com/".into()), ..Default::default() };
        let h = headers(&[("host", "internal:8080")]);
        assert_eq!(public_url(&cfg, &h, &uri), "https://voice.example.com/api/v1/sip/inbound/webhook?x=1");
        cfg.public_url = None;
        assert_eq!(public_url(&cfg, &h, &uri), "http://internal:8080/api/v1/sip/inbound/webhook?x=1");
        let h = headers(&[("host", "internal:8080"), ("x-forwarded-proto", "https, http"), ("x-forwarded-host", "a.example")]);
        assert_eq!(public_url(&cfg, &h, &uri), "https://a.example/api/v1/sip/inbound/webhook?x=1");
        assert_eq!(ws_base("https://a.example"), "wss://a.example");
        assert_eq!(ws_base("http://a.example:8080"), "ws://a.example:8080");
    }

    #[test]
    fn verify_request_errors() {
        let uri: Uri = "/hook".parse().unwrap();
        let h = headers(&[("host", "h.example")]);
        let mut cfg = TwilioConfig::default();
        assert_eq!(verify_request(&cfg, &h, &uri, &[]), Err(SignatureError::NoAuthToken));
        cfg.auth_token = Some("tok".into());
        assert_eq!(verify_request(&cfg, &h, &uri, &[]), Err(SignatureError::Missing));
        let sig = signature::expected_signature("http://h.example/hook", &[], "tok");
        let signed = headers(&[("host", "h.example"), ("x-twilio-signature", &sig)]);
        assert_eq!(verify_request(&cfg, &signed, &uri, &[]), Ok(()));
        let p = [("A".to_string(), "1".to_string())];
        assert_eq!(
            verify_request(&cfg, &signed, &uri, &p),
            Err(SignatureError::Mismatch { url: "http://h.example/hook".into() })
        );
        cfg.validate_signature = false;
        assert_eq!(verify_request(&cfg, &h, &uri, &p), Ok(()));
    }
}
