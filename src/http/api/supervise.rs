//! Supervisor actions on a live call: listen, whisper, barge in, take over
//! (`POST /api/v1/calls/{id}/supervise`), the supervisor's audio socket
//! (`GET /api/v1/calls/{id}/audio?session=S`, WebSocket) and transfers
//! (`POST /api/v1/calls/{id}/transfer`).
//!
//! Audio on the socket, both ways: binary messages of 16 kHz mono PCM16
//! little-endian, one 20 ms frame (320 samples, 640 bytes) per message from
//! the server; the client sends its microphone the same way (any whole
//! number of samples per message; 20 ms messages keep the delay lowest).
//! Text messages from the server are JSON status: `{"type":"mode","mode":
//! "listen"}` on attach and on every mode change, `{"type":"left"}` when
//! the session was left through the API, `{"type":"ended"}` when the call
//! ended; the server then closes the socket. Closing the socket ends the
//! session (event `supervisor.left`); the call goes on.
//!
//! How audio flows in each mode: see [`crate::call::actor::supervise`].
//! Every accepted action is recorded as a `supervisor.action` event
//! `{action, by, role, session, text?}` (or `{action: "transfer", target,
//! mode}`), stored on the call and published on the event bus.

use super::calls::{audit, permitted, send_failed};
use crate::agent::escalation::TransferMode;
use crate::call::actor::supervise::{FRAME, SessionInfo, SuperviseAction, SuperviseError, SupervisorLink, SupervisorOut};
use crate::call::command::{CallCommand, Reply};
use crate::http::HttpState;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, ErrorBody};
use crate::ids::CallId;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a handler waits for the call's actor to answer.
const ACTOR_REPLY: Duration = Duration::from_secs(5);

/// Body of `POST /api/v1/calls/{id}/supervise`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuperviseRequest {
    /// `listen`, `whisper`, `barge`, `takeover` or `leave`.
    #[schema(value_type = String, example = "listen")]
    pub action: SuperviseAction,
    /// Whisper only: an instruction typed to an LLM agent, in force for
    /// the rest of the call (409 for a flow agent or a bridged person).
    #[serde(default)]
    pub text: Option<String>,
    /// The session to change (from an earlier answer); absent: a new one.
    /// `leave` needs it.
    #[serde(default)]
    pub session: Option<String>,
}

/// Answer of `POST /api/v1/calls/{id}/supervise`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SuperviseAccepted {
    /// Session id.
    pub session: String,
    /// The session's mode now (`leave` once ended).
    pub mode: String,
    /// Where the session's audio socket connects:
    /// `/api/v1/calls/{id}/audio?session=<id>`.
    pub audio: String,
}

/// Query of `GET /api/v1/calls/{id}/audio`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AudioQuery {
    /// The session (from `POST /api/v1/calls/{id}/supervise`).
    pub session: Option<String>,
}

/// Body of `POST /api/v1/calls/{id}/transfer`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    /// `sip:`/`sips:` URI, or a phone number dialed through the first trunk.
    pub target: String,
    /// `cold` (default: REFER; skald bridges if the caller's side refuses)
    /// or `warm` (skald calls the target first, briefs them, then bridges).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "cold")]
    pub mode: TransferMode,
}

/// Answer of `POST /api/v1/calls/{id}/transfer`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TransferAccepted {
    /// Always `transferring`.
    pub status: String,
}

/// `POST /api/v1/calls/{id}/supervise`: starts, changes or ends a
/// supervisor's session on a live call: SIP, Twilio Media Streams or a
/// browser's talk socket.
///
/// Input: JSON [`SuperviseRequest`] `{action, text?, session?}`. Output:
/// `200 {"session", "mode", "audio"}`; connect the audio socket at `audio`.
/// Status: 400 for a malformed id or body (or `text` with another action
/// than `whisper`); 404 for no such call or session; 409 when the call has
/// ended or is ending, is not answered yet, or the action does not fit
/// its state (whisper text to a flow agent, takeover of a bridged call, barge
/// on a call without an agent). Needs a supervisor allowed on the call's
/// queue (403 otherwise); recorded as a `supervisor.action` event.
#[utoipa::path(
    post,
    path = "/api/v1/calls/{id}/supervise",
    tag = "calls",
    params(("id" = String, Path, description = "Call id (UUID)")),
    request_body = SuperviseRequest,
    responses(
        (status = 200, description = "The session and where its audio socket connects", body = SuperviseAccepted),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 403, description = "Not a supervisor, or not one of this call's queue", body = ErrorBody),
        (status = 404, description = "No such call or session", body = ErrorBody),
        (status = 409, description = "The call has ended, or the action does not fit its state", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("supervisor"))),
)]
pub async fn supervise(
    State(st): State<HttpState>,
    who: Principal,
    Path(id): Path<String>,
    body: Result<Json<SuperviseRequest>, JsonRejection>,
) -> Result<Json<SuperviseAccepted>, ApiError> {
    let id = permitted(&st, &who, &id)?;
    let Json(req) = body.map_err(|e| ApiError::BadRequest(format!("body: {}", e.body_text())))?;
    if req.text.is_some() && req.action != SuperviseAction::Whisper {
        return Err(ApiError::BadRequest("`text` goes with `whisper` only".into()));
    }
    let (reply, rx) = Reply::new();
    let cmd = CallCommand::Supervise {
        session: req.session.clone(),
        mode: req.action,
        text: req.text.clone(),
        by: who.name.clone(),
        reply,
    };
    let SessionInfo { session, mode } = ask(&st, id, cmd, rx).await?;
    let mut details = json!({ "session": session });
    if let Some(t) = &req.text {
        details["text"] = json!(t);
    }
    audit(&st, id, &who, req.action.as_str(), details).await;
    Ok(Json(SuperviseAccepted {
        audio: format!("/api/v1/calls/{id}/audio?session={session}"),
        session,
        mode: mode.as_str().into(),
    }))
}

/// `GET /api/v1/calls/{id}/audio?session=S` (WebSocket): a supervisor's
/// audio for session `S`; see the module doc for the messages.
///
/// Status before the upgrade: 400 for a malformed id, a missing `session`
/// or a request that is not a WebSocket upgrade; 404 for no such call or
/// session; 409 when the call has ended or the session already has a
/// socket. Needs a supervisor allowed on the call's queue (403 otherwise).
#[utoipa::path(
    get,
    path = "/api/v1/calls/{id}/audio",
    tag = "calls",
    params(("id" = String, Path, description = "Call id (UUID)"), AudioQuery),
    responses(
        (status = 101, description = "WebSocket: binary 20 ms frames of 16 kHz mono PCM16 LE both ways; JSON status text frames"),
        (status = 400, description = "Malformed id, no `session`, or not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 403, description = "Not a supervisor, or not one of this call's queue", body = ErrorBody),
        (status = 404, description = "No such call or session", body = ErrorBody),
        (status = 409, description = "The call has ended, or the session has a socket already", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("supervisor"))),
)]
pub async fn audio(
    State(st): State<HttpState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<AudioQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let id = permitted(&st, &who, &id)?;
    let session = q.session.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::BadRequest("`session` is required".into()))?;
    let ws = ws.map_err(|_| ApiError::BadRequest("not a WebSocket upgrade".into()))?;
    let (reply, rx) = Reply::new();
    let link = ask(&st, id, CallCommand::SuperviseAttach { session, reply }, rx).await?;
    Ok(ws.on_upgrade(move |socket| pump(socket, link)))
}

/// `POST /api/v1/calls/{id}/transfer`: transfers a live call: a SIP call
/// by REFER or a bridged second leg, a Twilio Media Streams call by
/// Twilio's REST API (`<Dial>`); a browser call cannot be transferred (a
/// `transfer.failed` event, the agent tells the caller).
///
/// Input: JSON [`TransferBody`] `{target, mode?}`. Output: `202
/// {"status":"transferring"}` once the command is in the call's mailbox;
/// the transfer's progress shows as `transfer.*` events. Status: 400 for a
/// malformed id or body or a target that is neither a SIP URI nor a phone
/// number; 404 for no such call; 409 when it has ended or is ending. Needs
/// a supervisor allowed on the call's queue (403 otherwise); recorded as a
/// `supervisor.action` event.
#[utoipa::path(
    post,
    path = "/api/v1/calls/{id}/transfer",
    tag = "calls",
    params(("id" = String, Path, description = "Call id (UUID)")),
    request_body = TransferBody,
    responses(
        (status = 202, description = "The transfer is under way", body = TransferAccepted),
        (status = 400, description = "Malformed id or body, bad target", body = ErrorBody),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 403, description = "Not a supervisor, or not one of this call's queue", body = ErrorBody),
        (status = 404, description = "No such call", body = ErrorBody),
        (status = 409, description = "The call has ended or is ending", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("supervisor"))),
)]
pub async fn transfer(
    State(st): State<HttpState>,
    who: Principal,
    Path(id): Path<String>,
    body: Result<Json<TransferBody>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = permitted(&st, &who, &id)?;
    let Json(req) = body.map_err(|e| ApiError::BadRequest(format!("body: {}", e.body_text())))?;
    let target = req.target.trim().to_string();
    if !is_transfer_target(&target) {
        return Err(ApiError::BadRequest(format!("`{target}` is neither a SIP URI nor a phone number")));
    }
    match st.registry.send(id, CallCommand::Transfer { target: target.clone(), mode: req.mode }) {
        Ok(()) => {
            let mode = if req.mode == TransferMode::Warm { "warm" } else { "cold" };
            audit(&st, id, &who, "transfer", json!({ "target": target, "mode": mode })).await;
            Ok((StatusCode::ACCEPTED, Json(TransferAccepted { status: "transferring".into() })))
        }
        Err(e) => Err(send_failed(&st, id, e).await),
    }
}

/// Sends `cmd` to call `id` and waits (bounded) for the actor's answer.
async fn ask<T>(
    st: &HttpState,
    id: CallId,
    cmd: CallCommand,
    rx: oneshot::Receiver<Result<T, SuperviseError>>,
) -> Result<T, ApiError> {
    if let Err(e) = st.registry.send(id, cmd) {
        return Err(send_failed(st, id, e).await);
    }
    match tokio::time::timeout(ACTOR_REPLY, rx).await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(SuperviseError::UnknownSession(s)))) => Err(ApiError::NotFound(format!("no supervision session `{s}` on call {id}"))),
        Ok(Ok(Err(SuperviseError::NotPossible(why)))) => Err(ApiError::Conflict(why)),
        // The actor dropped the command: the call is ending, or not answered yet.
        Ok(Err(_)) => Err(ApiError::Conflict(format!("call {id} is not live (ended, ending or not answered)"))),
        Err(_) => Err(ApiError::Conflict(format!("call {id} did not answer in time"))),
    }
}

/// A SIP URI with a host, or a phone number (`+`, digits, separators).
fn is_transfer_target(t: &str) -> bool {
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        return t.split_once(':').is_some_and(|(_, rest)| !rest.is_empty() && !rest.contains(char::is_whitespace));
    }
    let digits = t.chars().filter(char::is_ascii_digit).count();
    digits >= 3 && t.chars().all(|c| c.is_ascii_digit() || "+-(). ".contains(c))
}

/// Moves audio between the socket and the call until either side ends.
async fn pump(mut socket: WebSocket, mut link: SupervisorLink) {
    let mut left = false;
    loop {
        tokio::select! {
            out = link.audio.recv() => {
                let msg = match out {
                    Some(SupervisorOut::Audio(frame)) => Message::Binary(pcm_bytes(&frame).into()),
                    Some(SupervisorOut::Status(v)) => {
                        left |= v["type"] == "left";
                        Message::Text(v.to_string().into())
                    }
                    None => {
                        if !left {
                            let _ = socket.send(Message::Text(json!({ "type": "ended" }).to_string().into())).await;
                        }
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                };
                if socket.send(msg).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    // Larger messages are cut to a whole number of frames' worth.
                    let samples = pcm_samples(&b[..b.len().min(MAX_MIC_BYTES)]);
                    if !samples.is_empty() {
                        // Full: the call is behind; the frame is dropped.
                        let _ = link.mic.try_send(samples);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// PCM16 little-endian bytes of `samples`.
pub fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Samples of PCM16 little-endian `bytes` (an odd last byte is ignored).
pub fn pcm_samples(bytes: &[u8]) -> Vec<i16> {
    bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// Most microphone bytes taken from one message (10 frames, 200 ms).
pub const MAX_MIC_BYTES: usize = 10 * FRAME * 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm_is_little_endian_both_ways() {
        let s = [1i16, -2, 0x1234];
        let b = pcm_bytes(&s);
        assert_eq!(b, [1, 0, 0xfe, 0xff, 0x34, 0x12]);
        assert_eq!(pcm_samples(&b), s);
        assert_eq!(pcm_samples(&b[..5]), [1, -2]);
    }

    #[test]
    fn transfer_targets_are_sip_uris_or_numbers() {
        for ok in ["sip:bob@example.com", "sips:alice@10.0.0.1:5061", "+1 (555) 010-0123", "1000"] {
            assert!(is_transfer_target(ok), "{ok}");
        }
        for bad in ["", "sip:", "bob", "sip:bob @x", "12", "http://x"] {
            assert!(!is_transfer_target(bad), "{bad}");
        }
    }

    #[test]
    fn the_request_body_names_its_action() {
        let r: SuperviseRequest = serde_json::from_str(r#"{"action":"whisper","text":"offer a discount"}"#).unwrap();
        assert_eq!((r.action, r.text.as_deref(), r.session), (SuperviseAction::Whisper, Some("offer a discount"), None));
        assert!(serde_json::from_str::<SuperviseRequest>(r#"{"action":"shout"}"#).is_err());
        let t: TransferBody = serde_json::from_str(r#"{"target":"sip:a@b"}"#).unwrap();
        assert_eq!(t.mode, TransferMode::Cold);
        let t: TransferBody = serde_json::from_str(r#"{"target":"sip:a@b","mode":"warm"}"#).unwrap();
        assert_eq!(t.mode, TransferMode::Warm);
    }
}
