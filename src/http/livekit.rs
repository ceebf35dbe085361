//! `POST /api/v1/livekit/webhook`: LiveKit's webhooks (room and
//! participant events of the project skald bridges calls into).
//!
//! LiveKit signs each one: the `Authorization` header holds a JWT signed
//! with the project's API secret whose `sha256` claim is the base64 SHA-256
//! of the body ([`crate::transports::livekit::webhook`]). A request that
//! does not verify gets 401 and has no effect. A verified one is published
//! on the live event stream as `livekit.<event>` (`livekit.room_started`,
//! `livekit.participant_joined`, …).

use super::HttpState;
use super::error::ApiError;
use crate::transports::livekit::webhook;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use livekit_api::access_token::TokenVerifier;
use serde_json::json;

/// Path of the webhook (what to enter in LiveKit's `webhook.urls`).
pub const WEBHOOK_PATH: &str = "/api/v1/livekit/webhook";

/// `POST /api/v1/livekit/webhook`: one LiveKit webhook.
///
/// Input: LiveKit's `WebhookEvent` JSON, `Authorization: <JWT>` signed by
/// the project (`LIVEKIT_API_KEY`/`LIVEKIT_API_SECRET`). Output: `200`, and
/// a `livekit.<event>` live event with the room, the participant and its
/// attributes. Status: 401 when the signature or the body's hash does not
/// verify; 503 when LiveKit is not configured.
#[utoipa::path(
    post,
    path = WEBHOOK_PATH,
    tag = "livekit",
    request_body(content = String, content_type = "application/webhook+json", description = "LiveKit's WebhookEvent"),
    responses(
        (status = 200, description = "Verified and published"),
        (status = 401, description = "Signature or body hash does not verify", body = crate::http::error::ErrorBody),
        (status = 503, description = "LIVEKIT_API_KEY / LIVEKIT_API_SECRET not set", body = crate::http::error::ErrorBody),
    ),
    security(("livekit_signature" = [])),
    extensions(("x-skald-role" = json!("public"))),
)]
pub async fn webhook(State(st): State<HttpState>, headers: HeaderMap, body: String) -> Result<StatusCode, ApiError> {
    let lk = &st.config.livekit;
    let (Some(key), Some(secret)) = (lk.api_key.as_deref(), lk.api_secret.as_deref()) else {
        return Err(ApiError::Unavailable("LiveKit is not configured (LIVEKIT_API_KEY, LIVEKIT_API_SECRET)".into()));
    };
    let auth = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let w = webhook::verify(&TokenVerifier::with_api_key(key, secret), &body, auth).map_err(|e| {
        tracing::warn!(error = %e, "LiveKit webhook refused");
        ApiError::Unauthorized(format!("LiveKit webhook: {e}"))
    })?;
    tracing::info!(event = %w.event, room = ?w.room, participant = ?w.participant, "LiveKit webhook");
    let data = json!({
        "id": w.id, "room": w.room, "participant": w.participant, "attributes": w.attributes, "created_at": w.created_at,
    });
    st.events.publish(None, &format!("livekit.{}", w.event), crate::call::service::now_ms(), data);
    Ok(StatusCode::OK)
}
