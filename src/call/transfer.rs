//! Call context across transfers: reading it from an incoming INVITE, and
//! handing it on when the agent transfers the caller (REFER, RFC 3515).
//!
//! In: an INVITE may carry `X-Skald-Context` (signed inline context, trusted
//! when its HMAC verifies with `SKALD_CONTEXT_KEY`) or `X-Skald-Context-Ref`
//! (a URL of the sending skald's `GET /api/v1/context/{ref}`) with
//! `X-Skald-Context-Token`; a context that does not verify or cannot be
//! fetched is ignored with a warning, and the call goes on as a fresh call.
//!
//! Out: a cold transfer REFERs the caller to the target with the context in
//! the Refer-To URI's headers (`?X-Skald-Context=…&User-to-User=…`), which
//! the transferee copies into its INVITE (RFC 3515 §2.1); a context too
//! large for the header budget goes by reference instead.

use crate::agent::context::{
    CallContext, ContextStore, HEADER_CONTEXT, HEADER_CONTEXT_REF, HEADER_CONTEXT_TOKEN, sip_uri_with_headers,
};
use super::voice::VoiceAgent;
use crate::agent::escalation::TransferRequest;
use crate::store::CallRecord;
use std::time::Duration;

/// How long fetching a by-reference context may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// What an incoming INVITE said about its context.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextIn {
    /// No context headers.
    None,
    /// A signed inline context that verified.
    Inline(Box<CallContext>),
    /// A context to fetch: (URL, token).
    ByRef(String, String),
    /// Context headers that failed (bad signature, bad format): ignored.
    Rejected(String),
}

/// Looks for context headers among an INVITE's `headers` (name, value).
pub fn context_from_headers(headers: &[(String, String)], key: &[u8]) -> ContextIn {
    let get = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim());
    if let Some(v) = get(HEADER_CONTEXT) {
        return match CallContext::decode_signed(v, key) {
            Ok(ctx) => ContextIn::Inline(Box::new(ctx)),
            Err(e) => ContextIn::Rejected(format!("{HEADER_CONTEXT}: {e}")),
        };
    }
    match (get(HEADER_CONTEXT_REF), get(HEADER_CONTEXT_TOKEN)) {
        (Some(r), Some(t)) if r.starts_with("http://") || r.starts_with("https://") => {
            ContextIn::ByRef(r.to_string(), t.to_string())
        }
        (Some(r), _) => ContextIn::Rejected(format!("{HEADER_CONTEXT_REF} `{r}` is not a fetchable URL with a token")),
        _ => ContextIn::None,
    }
}

/// LiveKit SIP reports a participant's SIP headers as attributes named
/// `sip.h.<header name, lowercase>` (its `headers_to_attributes` /
/// `include_headers` trunk settings); this reads the call context from
/// them exactly as from an INVITE ([`context_from_headers`]).
pub fn context_from_livekit_attributes<'a>(
    attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
    key: &[u8],
) -> ContextIn {
    let headers: Vec<(String, String)> = attributes
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("sip.h.")?.to_string(), v.to_string())))
        .collect();
    context_from_headers(&headers, key)
}

/// Fetches a by-reference context from the skald that issued it. Errors:
/// the request fails, times out, or answers non-200 / not a context.
pub async fn fetch_context(url: &str, token: &str) -> Result<CallContext, String> {
    let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().map_err(|e| e.to_string())?;
    let resp = client.get(url).query(&[("token", token)]).send().await.map_err(|e| format!("fetch: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("fetch: HTTP {}", resp.status()));
    }
    let text = resp.text().await.map_err(|e| format!("fetch: {e}"))?;
    CallContext::from_json(text.as_bytes()).map_err(|e| format!("fetch: {e}"))
}

/// The Refer-To URI for a transfer of the call with context `ctx` to
/// `target`: inline headers when they fit, else a reference stored in
/// `contexts` and served at `{api_base}/api/v1/context/{ref}`.
pub fn refer_to(target: &str, ctx: &CallContext, key: &[u8], contexts: &ContextStore, api_base: &str) -> String {
    sip_uri_with_headers(target, ctx, key, |c| {
        let (reference, token) = contexts.put(c.clone());
        (format!("{}/api/v1/context/{reference}", api_base.trim_end_matches('/')), token)
    })
}

/// The context handed on with a transfer: what came in (`base`), the
/// call's caller and DID (from `record`), where to read the transcript
/// (`transcript_ref`, a call API URL), and what the agent learned (goal,
/// slots, summary; the LLM's own summary when it wrote one). The agent is
/// added to `previous_agents` once, however often this is built (a queued
/// call builds it for every offer).
pub(crate) fn outgoing_context(
    base: Option<&CallContext>,
    record: &CallRecord,
    transcript_ref: String,
    voice: Option<&VoiceAgent>,
    req: &TransferRequest,
) -> CallContext {
    let mut ctx = base.cloned().unwrap_or_default();
    ctx.v = crate::agent::context::CONTEXT_VERSION;
    ctx.caller = Some(record.from_uri.clone());
    ctx.did = Some(record.did.clone());
    ctx.transcript_ref = Some(transcript_ref);
    if let Some(v) = voice {
        if let Some(l) = v.llm_context() {
            ctx.intent = l.intent.or(ctx.intent);
            ctx.summary = l.summary.or(ctx.summary);
            ctx.escalation_reason = l.escalation_reason.or(ctx.escalation_reason);
        }
        ctx.intent = v.goal().map(str::to_string).or(ctx.intent);
        ctx.slots.extend(v.slots().iter().map(|(k, v)| (k.clone(), v.clone())));
        if ctx.previous_agents.last().map(String::as_str) != Some(v.agent_name()) {
            ctx.previous_agents.push(v.agent_name().to_string());
        }
    }
    ctx.summary = req.summary.clone().or(ctx.summary);
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"shared-context-key";

    fn ctx() -> CallContext {
        let mut c = CallContext { v: 1, intent: Some("book".into()), ..Default::default() };
        c.slots.insert("visit_type".into(), "cleaning".into());
        c
    }

    #[test]
    fn inline_context_verifies_and_a_tampered_one_is_rejected() {
        let value = ctx().encode_signed(KEY);
        let h = vec![("x-skald-context".to_string(), value.clone())];
        assert_eq!(context_from_headers(&h, KEY), ContextIn::Inline(Box::new(ctx())));
        let mut bad = value.into_bytes();
        bad[5] ^= 1;
        let h = vec![("X-Skald-Context".to_string(), String::from_utf8(bad).unwrap())];
        assert!(matches!(context_from_headers(&h, KEY), ContextIn::Rejected(_)));
        let h = vec![("X-Skald-Context".to_string(), ctx().encode_signed(b"another key"))];
        assert!(matches!(context_from_headers(&h, KEY), ContextIn::Rejected(_)));
        assert_eq!(context_from_headers(&[], KEY), ContextIn::None);
    }

    #[test]
    fn livekit_sip_attributes_carry_the_context() {
        let value = ctx().encode_signed(KEY);
        let attrs = [("sip.callID", "abc"), ("sip.h.x-skald-context", value.as_str()), ("x-skald-context", "ignored")];
        assert_eq!(context_from_livekit_attributes(attrs, KEY), ContextIn::Inline(Box::new(ctx())));
        let attrs = [("sip.h.x-skald-context-ref", "http://a.example/api/v1/context/r1"), ("sip.h.x-skald-context-token", "t1")];
        assert_eq!(
            context_from_livekit_attributes(attrs, KEY),
            ContextIn::ByRef("http://a.example/api/v1/context/r1".into(), "t1".into())
        );
        // Without the prefix an attribute is not a SIP header.
        assert_eq!(context_from_livekit_attributes([("x-skald-context", value.as_str())], KEY), ContextIn::None);
    }

    #[test]
    fn by_reference_needs_a_url_and_a_token() {
        let h = vec![
            ("X-Skald-Context-Ref".to_string(), "http://a.example/api/v1/context/r1".to_string()),
            ("X-Skald-Context-Token".to_string(), "t1".to_string()),
        ];
        assert_eq!(context_from_headers(&h, KEY), ContextIn::ByRef("http://a.example/api/v1/context/r1".into(), "t1".into()));
        let h = vec![("X-Skald-Context-Ref".to_string(), "r1".to_string())];
        assert!(matches!(context_from_headers(&h, KEY), ContextIn::Rejected(_)));
    }

    #[test]
    fn a_large_context_is_referred_by_url() {
        let store = ContextStore::new();
        let mut big = ctx();
        big.summary = Some("word ".repeat(400));
        let uri = refer_to("sip:tier2@b.example", &big, KEY, &store, "http://a.example:8080/");
        assert!(uri.starts_with("sip:tier2@b.example?X-Skald-Context-Ref=http%3A%2F%2Fa.example%3A8080%2Fapi%2Fv1%2Fcontext%2F"), "{uri}");
        let small = refer_to("sip:tier2@b.example", &ctx(), KEY, &store, "http://a.example:8080");
        assert!(small.starts_with("sip:tier2@b.example?X-Skald-Context="), "{small}");
    }
}
