//! `GET /api/v1/twilio/media-stream`: the WebSocket Twilio opens for a
//! `<Connect><Stream>` (bidirectional Media Streams).
//!
//! The upgrade request is signed by Twilio like a webhook
//! (`X-Twilio-Signature` over the URL, no POST parameters); it is checked
//! before the upgrade. The accepted socket is handed to the call layer
//! ([`crate::call::service::CallServices::run_stream`]) as a stream of data
//! frames and a sink of frames (`split`, shared with `/api/v1/talk`);
//! Ping/Pong and Close are handled here.

use super::HttpState;
use super::error::ApiError;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::Extension;
use crate::transports::ws::{WsInput, WsOutput};
use futures_util::{Sink, SinkExt, Stream, StreamExt, future};
use std::net::SocketAddr;

/// Largest text frame accepted (a 20 ms media message is ~300 bytes; a
/// `start` with parameters a few KiB).
const MAX_MESSAGE: usize = 64 * 1024;

/// Upgrades to the Media Streams WebSocket. 403 when the signature check
/// fails, 503 when calls cannot be taken (socket-free tests, shutdown).
#[utoipa::path(
    get,
    path = super::twilio::MEDIA_STREAM_PATH,
    tag = "twilio",
    responses(
        (status = 101, description = "WebSocket: Twilio Media Streams messages"),
        (status = 403, description = "`X-Twilio-Signature` missing or wrong", body = super::error::ErrorBody),
        (status = 503, description = "Not taking calls", body = super::error::ErrorBody),
    ),
    security(("twilio_signature" = [])),
    extensions(("x-skald-role" = json!("public"))),
)]
pub async fn media_stream(
    State(state): State<HttpState>,
    headers: HeaderMap,
    uri: Uri,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    super::twilio::verify_request(&state.config.twilio, &headers, &uri, &[]).map_err(|e| {
        tracing::warn!(reason = %e, "media stream upgrade rejected");
        ApiError::Forbidden("signature check failed".into())
    })?;
    let Some(calls) = state.calls.clone() else {
        return Err(ApiError::Unavailable("calls are not taken here".into()));
    };
    if state.ready.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    let remote = peer.map(|Extension(ConnectInfo(a))| a.to_string()).unwrap_or_default();
    Ok(ws.max_message_size(MAX_MESSAGE).on_upgrade(move |socket: WebSocket| async move {
        let (rx, tx) = split(socket);
        calls.run_stream(remote, rx, tx).await;
    }))
}

/// The socket as the call layer takes it: a stream of data frames (Ping,
/// Pong and Close stay here) and a sink of frames.
pub(super) fn split(
    socket: WebSocket,
) -> (
    impl Stream<Item = Result<WsInput, axum::Error>> + Unpin + Send,
    impl Sink<WsOutput> + Unpin + Send,
) {
    let (sink, stream) = socket.split();
    let rx = stream.filter_map(|m| {
        future::ready(match m {
            Ok(Message::Text(t)) => Some(Ok(WsInput::Text(t.to_string()))),
            Ok(Message::Binary(b)) => Some(Ok(WsInput::Binary(b.to_vec()))),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_)) => None,
            Err(e) => Some(Err(e)),
        })
    });
    let tx = sink.with(|f: WsOutput| {
        future::ready(Ok::<_, axum::Error>(match f {
            WsOutput::Text(t) => Message::Text(t.into()),
            WsOutput::Binary(b) => Message::Binary(b.into()),
        }))
    });
    (Box::pin(rx), Box::pin(tx))
}
