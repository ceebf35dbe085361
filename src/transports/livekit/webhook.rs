//! LiveKit webhooks: `POST` with a JSON `WebhookEvent` body and an
//! `Authorization` header holding a JWT signed with the project's API
//! secret whose `sha256` claim is the base64 SHA-256 of the body (LiveKit
//! docs "Webhooks"). Verified here with the official `livekit-api`
//! receiver; anything that does not verify is refused and has no effect.

use livekit_api::access_token::TokenVerifier;
use livekit_api::webhooks::{WebhookError, WebhookReceiver};

/// What a verified webhook said, in skald's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// The event (`room_started`, `participant_joined`, …).
    pub event: String,
    /// Its id (LiveKit retries with the same id).
    pub id: String,
    /// The room's name, when the event is about a room.
    pub room: Option<String>,
    /// The participant's identity, when about a participant.
    pub participant: Option<String>,
    /// The participant's attributes (`sip.*` for phone participants).
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Unix seconds the event was created.
    pub created_at: i64,
}

/// Verifies a webhook: the token in `authorization` (with or without the
/// `Bearer ` prefix) must verify with `verifier` and its `sha256` claim
/// must match `body`. Errors: the reason it was refused (bad token, bad
/// hash, a body that is not a `WebhookEvent`).
pub fn verify(verifier: &TokenVerifier, body: &str, authorization: &str) -> Result<Webhook, WebhookError> {
    let token = authorization.strip_prefix("Bearer ").unwrap_or(authorization).trim();
    let ev = WebhookReceiver::new(verifier.clone()).receive(body, token)?;
    let participant = ev.participant.as_ref();
    Ok(Webhook {
        event: ev.event.clone(),
        id: ev.id.clone(),
        room: ev.room.as_ref().map(|r| r.name.clone()),
        participant: participant.map(|p| p.identity.clone()),
        attributes: participant.map(|p| p.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
        created_at: ev.created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use livekit_api::access_token::AccessToken;
    use sha2::{Digest, Sha256};

    const KEY: &str = "APIwebhook";
    const SECRET: &str = "webhook-secret-of-thirty-two-chars";

    fn signed(body: &str, secret: &str) -> String {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()));
        AccessToken::with_api_key(KEY, secret).with_sha256(&hash).to_jwt().unwrap()
    }

    #[test]
    fn a_signed_webhook_verifies_and_a_tampered_one_does_not() {
        let body = r#"{"event":"participant_joined","id":"EV_1","createdAt":"1733580000","room":{"name":"call-1"},"participant":{"identity":"sip_+15550123","attributes":{"sip.phoneNumber":"+15550123"}}}"#;
        let v = TokenVerifier::with_api_key(KEY, SECRET);
        let w = verify(&v, body, &format!("Bearer {}", signed(body, SECRET))).unwrap();
        assert_eq!(w.event, "participant_joined");
        assert_eq!(w.room.as_deref(), Some("call-1"));
        assert_eq!(w.participant.as_deref(), Some("sip_+15550123"));
        assert_eq!(w.attributes["sip.phoneNumber"], "+15550123");
        assert_eq!(w.created_at, 1_733_580_000);
        let tampered = body.replace("+15550123", "+15550999");
        assert!(matches!(verify(&v, &tampered, &signed(body, SECRET)), Err(WebhookError::InvalidSignature)));
        assert!(verify(&v, body, &signed(body, "another-secret-of-thirty-two-chars")).is_err());
        assert!(verify(&v, body, "").is_err());
    }
}
