//! A call's context and its SIP header codec.
//!
//! [`CallContext`] is what one agent knows about a conversation that the
//! next one needs (who called, which number, the intent, collected slots, a
//! summary, why it was escalated, a transcript reference): a versioned,
//! compact JSON document (`"v": 1`; empty fields are left out).
//!
//! On a transfer or a Twilio `<Dial><Sip>` it travels in SIP headers
//! (DESIGN.md, "Context in SIP headers"):
//! - `X-Skald-Context`: [`CallContext::encode_signed`], i.e.
//!   `base64url(JSON) "." base64url(HMAC-SHA256(key, base64url(JSON)))`
//!   (no padding), so a receiving skald holding the same key can trust it;
//! - `User-to-User` (RFC 7433): the same JSON, hex-encoded, with
//!   `;encoding=hex`, for peers that read only UUI (unsigned: informative).
//!
//! Header space is tight: Twilio allows at most 1024 characters for the
//! whole header part of a `<Sip>` URI (everything after `?`). When the inline
//! headers would exceed [`MAX_HEADER_PART`], [`sip_uri_with_headers`] sends
//! `X-Skald-Context-Ref` + `X-Skald-Context-Token` instead, naming a copy
//! kept in a [`ContextStore`] for [`CONTEXT_TTL`] and served by
//! `GET /api/v1/context/{ref}?token=…`.
//!
//! Header rules (Twilio `<Sip>`): custom headers start with `X-` (not
//! `X-Twilio`) or are `User-to-User`; values are percent-encoded here; the
//! `&` between headers is escaped to `&amp;` by the TwiML writer, not here.
//!
//! The codec is pure; only [`ContextStore::put`]/[`ContextStore::get`] read
//! the clock (their `_at` twins take `now` for tests).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type HmacSha256 = Hmac<Sha256>;

/// The context format version this code writes and reads.
pub const CONTEXT_VERSION: u32 = 1;

/// Longest header part (after `?`) of a `<Sip>` URI that Twilio accepts.
pub const MAX_HEADER_PART: usize = 1024;

/// How long a by-reference context can be fetched.
pub const CONTEXT_TTL: Duration = Duration::from_secs(600);

/// Longest encoded context [`CallContext::decode_signed`] looks at (network
/// input is bounded before it is decoded).
pub const MAX_ENCODED_LEN: usize = 64 * 1024;

/// Most contexts a [`ContextStore`] holds; the oldest go first beyond it.
const MAX_STORED: usize = 10_000;

/// Header carrying the signed context inline.
pub const HEADER_CONTEXT: &str = "X-Skald-Context";
/// Header naming a by-reference context.
pub const HEADER_CONTEXT_REF: &str = "X-Skald-Context-Ref";
/// Header carrying the token that unlocks a by-reference context.
pub const HEADER_CONTEXT_TOKEN: &str = "X-Skald-Context-Token";
/// RFC 7433 user-to-user information.
pub const HEADER_UUI: &str = "User-to-User";

/// Characters percent-encoded in a SIP URI header value: all but
/// alphanumerics and `-_.~` (a subset of RFC 3261 `hvalue`'s unreserved set,
/// so the result is valid in any SIP URI).
const HVALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// What one agent hands the next about a call. Every field but `v` is
/// optional and left out of the JSON when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallContext {
    /// Format version, [`CONTEXT_VERSION`].
    pub v: u32,
    /// The caller's number or URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The number the caller dialed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    /// Conversation language (BCP 47, e.g. `en`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// What the caller wants, as the last agent understood it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// Collected slot values by slot name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slots: BTreeMap<String, String>,
    /// A short summary of the conversation so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Why the call was escalated, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_reason: Option<String>,
    /// Service tier of the caller (routing hint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Agents that handled the call before, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_agents: Vec<String>,
    /// Where the transcript so far can be read (e.g. a call API URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_ref: Option<String>,
    /// Twilio CallSid of the call this context belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_sid: Option<String>,
    /// Other `X-…` SIP headers that came with the call, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// Why an encoded context was refused. Each variant is a distinct cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// Not `payload.signature` in base64url, or longer than [`MAX_ENCODED_LEN`].
    #[error("malformed context encoding")]
    BadFormat,
    /// The HMAC does not match (tampered, or signed with another key).
    #[error("context signature does not verify")]
    BadSignature,
    /// The signed payload is not a context JSON document.
    #[error("context payload is not valid JSON: {0}")]
    BadJson(String),
    /// The document's `v` is not one this code reads.
    #[error("unsupported context version {0}")]
    UnsupportedVersion(u32),
}

/// Why [`ContextStore::lookup`] found nothing to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No such reference, or it expired.
    #[error("unknown or expired context reference")]
    Unknown,
    /// The reference exists but the token is wrong.
    #[error("wrong token for context reference")]
    BadToken,
}

/// By-reference contexts kept in memory for [`CONTEXT_TTL`]: a cheap-clone
/// handle (an `Arc` inside), shared by the webhook that stores and the API
/// that serves them. Not shared across instances.
#[derive(Debug, Clone, Default)]
pub struct ContextStore {
    /// Reference → entry; expired entries are dropped on every `put`.
    inner: Arc<Mutex<HashMap<String, Stored>>>,
}

/// One by-reference context.
#[derive(Debug)]
struct Stored {
    /// The context.
    ctx: CallContext,
    /// The secret that unlocks it.
    token: String,
    /// When it was stored (the oldest are evicted first when full).
    stored_at: Instant,
}

impl Default for CallContext {
    fn default() -> Self {
        CallContext {
            v: CONTEXT_VERSION,
            caller: None,
            did: None,
            language: None,
            intent: None,
            slots: BTreeMap::new(),
            summary: None,
            escalation_reason: None,
            tier: None,
            previous_agents: Vec::new(),
            transcript_ref: None,
            call_sid: None,
            headers: BTreeMap::new(),
        }
    }
}

impl CallContext {
    /// The compact JSON document.
    pub fn to_json(&self) -> String {
        // Serializing strings and maps into JSON cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `base64url(JSON) "." base64url(HMAC-SHA256(key, base64url(JSON)))`,
    /// without padding: the `X-Skald-Context` value.
    pub fn encode_signed(&self, key: &[u8]) -> String {
        let payload = URL_SAFE_NO_PAD.encode(self.to_json());
        let sig = URL_SAFE_NO_PAD.encode(mac(key, &payload).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// Reads an [`CallContext::encode_signed`] value, checking the signature
    /// (constant time) before looking at the payload.
    pub fn decode_signed(value: &str, key: &[u8]) -> Result<CallContext, ContextError> {
        if value.len() > MAX_ENCODED_LEN {
            return Err(ContextError::BadFormat);
        }
        let (payload, sig) = value.trim().split_once('.').ok_or(ContextError::BadFormat)?;
        if payload.is_empty() || sig.is_empty() {
            return Err(ContextError::BadFormat);
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| ContextError::BadFormat)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| ContextError::BadFormat)?;
        mac(key, payload).verify_slice(&sig).map_err(|_| ContextError::BadSignature)?;
        Self::from_json(&json)
    }

    /// Parses a context document, checking its version first (a future
    /// version may change field types).
    pub fn from_json(json: &[u8]) -> Result<CallContext, ContextError> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let Version { v } = serde_json::from_slice(json).map_err(|e| ContextError::BadJson(e.to_string()))?;
        if v != CONTEXT_VERSION {
            return Err(ContextError::UnsupportedVersion(v));
        }
        serde_json::from_slice(json).map_err(|e| ContextError::BadJson(e.to_string()))
    }
}

impl ContextStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `ctx` for [`CONTEXT_TTL`]; returns its (reference, token).
    pub fn put(&self, ctx: CallContext) -> (String, String) {
        self.put_at(ctx, Instant::now())
    }

    /// The context under `reference` when `token` matches and it has not
    /// expired.
    pub fn get(&self, reference: &str, token: &str) -> Option<CallContext> {
        self.lookup(reference, token).ok()
    }

    /// Like [`ContextStore::get`], telling an unknown reference from a wrong
    /// token.
    pub fn lookup(&self, reference: &str, token: &str) -> Result<CallContext, LookupError> {
        self.lookup_at(reference, token, Instant::now())
    }

    /// [`ContextStore::put`] at time `now`.
    pub fn put_at(&self, ctx: CallContext, now: Instant) -> (String, String) {
        let reference = uuid::Uuid::new_v4().simple().to_string();
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
        let mut map = self.lock();
        map.retain(|_, s| now.saturating_duration_since(s.stored_at) < CONTEXT_TTL);
        while map.len() >= MAX_STORED {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.stored_at).map(|(k, _)| k.clone()) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(reference.clone(), Stored { ctx, token: token.clone(), stored_at: now });
        (reference, token)
    }

    /// [`ContextStore::lookup`] at time `now`.
    pub fn lookup_at(&self, reference: &str, token: &str, now: Instant) -> Result<CallContext, LookupError> {
        let map = self.lock();
        let stored = map
            .get(reference)
            .filter(|s| now.saturating_duration_since(s.stored_at) < CONTEXT_TTL)
            .ok_or(LookupError::Unknown)?;
        if !constant_time_eq(stored.token.as_bytes(), token.as_bytes()) {
            return Err(LookupError::BadToken);
        }
        Ok(stored.ctx.clone())
    }

    /// The map; a poisoned lock (a panic elsewhere) still holds valid data.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stored>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The context as header (name, value) pairs, the first of these forms
/// that `fits`:
/// 1. `X-Skald-Context` (signed) and `User-to-User` (RFC 7433 hex, for peers
///    that read only UUI);
/// 2. `X-Skald-Context` alone (UUI is informative; a receiving skald reads
///    the signed header);
/// 3. `X-Skald-Context-Ref` and `X-Skald-Context-Token` from `by_ref`
///    (which stores the context and returns its reference and token, e.g.
///    [`ContextStore::put`]).
fn context_header_forms(
    ctx: &CallContext,
    key: &[u8],
    fits: impl Fn(&[(&'static str, String)]) -> bool,
    by_ref: impl FnOnce(&CallContext) -> (String, String),
) -> Vec<(&'static str, String)> {
    let signed = ctx.encode_signed(key);
    let full = vec![(HEADER_CONTEXT, signed.clone()), (HEADER_UUI, format!("{};encoding=hex", hex::encode(ctx.to_json())))];
    if fits(&full) {
        return full;
    }
    let alone = vec![(HEADER_CONTEXT, signed)];
    if fits(&alone) {
        return alone;
    }
    let (reference, token) = by_ref(ctx);
    vec![(HEADER_CONTEXT_REF, reference), (HEADER_CONTEXT_TOKEN, token)]
}

/// `uri` with the context appended as SIP URI headers (after `?`, or after
/// `&` when `uri` already has headers), in the first form of
/// `context_header_forms` that keeps the whole header part within
/// [`MAX_HEADER_PART`] characters (percent-encoded, as sent).
pub fn sip_uri_with_headers(
    uri: &str,
    ctx: &CallContext,
    key: &[u8],
    by_ref: impl FnOnce(&CallContext) -> (String, String),
) -> String {
    let (base, existing) = match uri.split_once('?') {
        Some((b, h)) => (b, Some(h)),
        None => (uri, None),
    };
    let join = |pairs: &[(&'static str, String)]| {
        let part = pairs.iter().map(|(n, v)| format!("{n}={}", pct(v))).collect::<Vec<_>>().join("&");
        match existing {
            Some(h) if !h.is_empty() => format!("{h}&{part}"),
            _ => part,
        }
    };
    let pairs = context_header_forms(ctx, key, |p| join(p).len() <= MAX_HEADER_PART, by_ref);
    format!("{base}?{}", join(&pairs))
}

/// The context as INVITE headers (name, value), in the first form of
/// `context_header_forms` whose header lines (`Name: value`, without
/// CRLF) total at most [`MAX_HEADER_PART`] characters, so the INVITE stays
/// well within a UDP datagram (RFC 3261 §18.1.1).
pub fn invite_headers(
    ctx: &CallContext,
    key: &[u8],
    by_ref: impl FnOnce(&CallContext) -> (String, String),
) -> Vec<(String, String)> {
    let fits = |p: &[(&'static str, String)]| p.iter().map(|(n, v)| n.len() + 2 + v.len()).sum::<usize>() <= MAX_HEADER_PART;
    context_header_forms(ctx, key, fits, by_ref).into_iter().map(|(n, v)| (n.to_string(), v)).collect()
}

/// The inline header part for `ctx`:
/// `X-Skald-Context=<signed>&User-to-User=<hex JSON>%3Bencoding%3Dhex`.
pub fn inline_headers(ctx: &CallContext, key: &[u8]) -> String {
    let full = context_header_forms(ctx, key, |_| true, |_| (String::new(), String::new()));
    full.iter().map(|(n, v)| format!("{n}={}", pct(v))).collect::<Vec<_>>().join("&")
}

/// True for a header name Twilio lets through on `<Sip>` and reports as
/// `SipHeader_…`: `X-…` but not `X-Twilio…`, or `User-to-User`.
pub fn is_custom_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (lower.starts_with("x-") && !lower.starts_with("x-twilio")) || lower == "user-to-user"
}

/// Percent-encodes a SIP URI header value.
fn pct(value: &str) -> String {
    utf8_percent_encode(value, HVALUE).to_string()
}

/// The keyed MAC over the base64url payload.
fn mac(key: &[u8], payload: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    m.update(payload.as_bytes());
    m
}

/// Compares two secrets without an early exit on the first difference (the
/// length is not secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test key";

    fn sample() -> CallContext {
        CallContext {
            caller: Some("+15550001".into()),
            did: Some("+15550100".into()),
            language: Some("en".into()),
            intent: Some("book_appointment".into()),
            slots: [("day".to_string(), "tuesday".to_string())].into(),
            summary: Some("Wants a cleaning; asked for a human.".into()),
            escalation_reason: Some("caller asked".into()),
            tier: Some("gold".into()),
            previous_agents: vec!["front-desk".into()],
            transcript_ref: Some("/api/v1/calls/x".into()),
            call_sid: Some("CA123".into()),
            headers: [("X-Customer".to_string(), "42".to_string())].into(),
            ..CallContext::default()
        }
    }

    /// A context small enough to travel inline.
    fn small() -> CallContext {
        CallContext {
            caller: Some("+15550001".into()),
            did: Some("+15550100".into()),
            intent: Some("book".into()),
            slots: [("day".to_string(), "tuesday".to_string())].into(),
            ..CallContext::default()
        }
    }

    #[test]
    fn round_trip_and_compact_json() {
        let ctx = sample();
        let enc = ctx.encode_signed(KEY);
        assert!(enc.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{enc}");
        assert_eq!(CallContext::decode_signed(&enc, KEY), Ok(ctx));
        // Empty fields are left out.
        assert_eq!(CallContext::default().to_json(), r#"{"v":1}"#);
    }

    #[test]
    fn tampering_and_wrong_key_are_rejected() {
        let enc = sample().encode_signed(KEY);
        let (payload, sig) = enc.split_once('.').unwrap();
        // Another payload under the old signature.
        let mut forged = sample();
        forged.tier = Some("platinum".into());
        let forged_payload = forged.encode_signed(KEY);
        let forged_payload = forged_payload.split_once('.').unwrap().0;
        assert_eq!(
            CallContext::decode_signed(&format!("{forged_payload}.{sig}"), KEY),
            Err(ContextError::BadSignature)
        );
        // A flipped signature character.
        let mut bad_sig: Vec<u8> = sig.bytes().collect();
        bad_sig[0] = if bad_sig[0] == b'A' { b'B' } else { b'A' };
        let bad_sig = String::from_utf8(bad_sig).unwrap();
        assert_eq!(
            CallContext::decode_signed(&format!("{payload}.{bad_sig}"), KEY),
            Err(ContextError::BadSignature)
        );
        assert_eq!(CallContext::decode_signed(&enc, b"other key"), Err(ContextError::BadSignature));
    }

    #[test]
    fn each_failure_has_its_own_error() {
        for bad in ["", "nodot", ".sig", "payload.", "p@y.sig", "cGF5.s!g"] {
            assert_eq!(CallContext::decode_signed(bad, KEY), Err(ContextError::BadFormat), "{bad:?}");
        }
        let signed = |json: &str| {
            let payload = URL_SAFE_NO_PAD.encode(json);
            let sig = URL_SAFE_NO_PAD.encode(mac(KEY, &payload).finalize().into_bytes());
            format!("{payload}.{sig}")
        };
        assert!(matches!(CallContext::decode_signed(&signed("not json"), KEY), Err(ContextError::BadJson(_))));
        assert!(matches!(
            CallContext::decode_signed(&signed(r#"{"v":1,"slots":[1]}"#), KEY),
            Err(ContextError::BadJson(_))
        ));
        assert_eq!(
            CallContext::decode_signed(&signed(r#"{"v":2,"caller":7}"#), KEY),
            Err(ContextError::UnsupportedVersion(2))
        );
        let long = "a".repeat(MAX_ENCODED_LEN + 1);
        assert_eq!(CallContext::decode_signed(&long, KEY), Err(ContextError::BadFormat));
    }

    /// Grows the summary one character at a time: the header part is the
    /// full inline form while it fits 1024 characters, then the signed
    /// header alone while that fits, then a reference, each switch exactly
    /// when the previous form would be longer.
    #[test]
    fn inline_until_1024_then_signed_only_then_by_reference() {
        let uri = "sip:agent@sip.example.com";
        let mut stage = 0;
        let mut switches = Vec::new();
        for n in 0..1500 {
            let ctx = CallContext { summary: Some("s".repeat(n)), ..small() };
            let full = inline_headers(&ctx, KEY);
            let signed = format!("X-Skald-Context={}", pct(&ctx.encode_signed(KEY)));
            let mut stored = false;
            let out = sip_uri_with_headers(uri, &ctx, KEY, |_| {
                stored = true;
                ("r".into(), "t".into())
            });
            let part = out.strip_prefix(&format!("{uri}?")).unwrap();
            let now = if stored {
                assert_eq!(part, "X-Skald-Context-Ref=r&X-Skald-Context-Token=t");
                assert!(signed.len() > MAX_HEADER_PART);
                2
            } else if part == full {
                assert!(part.len() <= MAX_HEADER_PART);
                0
            } else {
                assert_eq!(part, signed);
                assert!(full.len() > MAX_HEADER_PART && part.len() <= MAX_HEADER_PART);
                1
            };
            assert!(now >= stage, "back to an earlier form at n={n}");
            if now > stage {
                switches.push((now, n));
                stage = now;
            }
        }
        assert_eq!(switches.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2], "{switches:?}");
    }

    #[test]
    fn inline_headers_decode_back() {
        let ctx = small();
        let out = sip_uri_with_headers("sip:a@b.example?X-Existing=1", &ctx, KEY, |_| unreachable!());
        let (base, part) = out.split_once('?').unwrap();
        assert_eq!(base, "sip:a@b.example");
        let headers: Vec<(&str, &str)> = part.split('&').map(|h| h.split_once('=').unwrap()).collect();
        assert_eq!(headers[0], ("X-Existing", "1"));
        assert_eq!(headers[1].0, HEADER_CONTEXT);
        let value = percent_encoding::percent_decode_str(headers[1].1).decode_utf8().unwrap();
        assert_eq!(CallContext::decode_signed(&value, KEY).unwrap(), ctx);
        assert_eq!(headers[2].0, HEADER_UUI);
        let uui = percent_encoding::percent_decode_str(headers[2].1).decode_utf8().unwrap();
        let hex_json = uui.strip_suffix(";encoding=hex").unwrap();
        assert_eq!(CallContext::from_json(&hex::decode(hex_json).unwrap()).unwrap(), ctx);
        assert!(!headers[2].1.contains(';'), "`;` must be percent-encoded inside a header value");
    }

    #[test]
    fn store_checks_token_and_expiry() {
        let store = ContextStore::new();
        let t0 = Instant::now();
        let (r, token) = store.put_at(sample(), t0);
        assert_eq!(store.lookup_at(&r, &token, t0 + Duration::from_secs(599)), Ok(sample()));
        assert_eq!(store.lookup_at(&r, "wrong", t0), Err(LookupError::BadToken));
        assert_eq!(store.lookup_at("nope", &token, t0), Err(LookupError::Unknown));
        assert_eq!(store.lookup_at(&r, &token, t0 + CONTEXT_TTL), Err(LookupError::Unknown));
        // Expired entries are dropped on the next put.
        let (r2, t2) = store.put_at(CallContext::default(), t0 + CONTEXT_TTL);
        assert_eq!(store.lock().len(), 1);
        assert_eq!(store.lookup_at(&r2, &t2, t0 + CONTEXT_TTL), Ok(CallContext::default()));
        // The wall-clock API finds a fresh entry.
        let (r3, t3) = store.put(sample());
        assert_eq!(store.get(&r3, &t3), Some(sample()));
    }

    #[test]
    fn custom_header_names() {
        assert!(is_custom_header("X-Skald-Context"));
        assert!(is_custom_header("user-to-user"));
        assert!(!is_custom_header("X-Twilio-Foo"));
        assert!(!is_custom_header("Contact"));
    }
}
