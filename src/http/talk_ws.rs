//! `GET /api/v1/talk?app=NAME` (WebSocket): talk to a voice application
//! from the control page's microphone.
//!
//! The conversation is a call like any other (transport `browser` in its
//! record, listed live, with a transcript and a hangup API); the wire
//! protocol is [`crate::transports::browser`]'s: binary 20 ms frames of
//! 16 kHz mono PCM16 LE both ways, JSON text messages `transcript` and
//! `clear` from skald, `stop` and `dtmf` from the page. The call ends when
//! the socket closes (`stream-closed`), the page sends `stop`
//! (`remote-stop`), the agent hangs up or the API does.
//!
//! Checked before the upgrade, so a plain `GET` gets the same answer and the
//! page can show it: the principal (a supervisor or admin), the
//! application (404 when there is none of that name, 400 when it is not a
//! voice agent), whether calls are taken (503).

use super::HttpState;
use super::auth::{Principal, Role};
use super::error::{ApiError, ErrorBody};
use crate::call::voice::VoiceConfig;
use axum::Extension;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use serde::Deserialize;
use std::net::SocketAddr;

/// Largest message accepted (a 20 ms frame is 640 bytes).
const MAX_MESSAGE: usize = 64 * 1024;

/// Query of `GET /api/v1/talk`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TalkQuery {
    /// The voice application to talk to (`applications:` in the config).
    pub app: Option<String>,
}

/// Upgrades to a conversation with voice application `app`; see the module
/// doc for the messages.
#[utoipa::path(
    get,
    path = "/api/v1/talk",
    tag = "calls",
    params(TalkQuery),
    responses(
        (status = 101, description = "WebSocket: binary 20 ms frames of 16 kHz mono PCM16 LE both ways; JSON text frames `transcript` and `clear` from skald, `stop` and `dtmf` from the page"),
        (status = 400, description = "No `app`, an application that is not a voice agent, or not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 403, description = "Not a supervisor", body = ErrorBody),
        (status = 404, description = "No such application", body = ErrorBody),
        (status = 503, description = "Not taking calls", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("supervisor"))),
)]
pub async fn talk(
    State(state): State<HttpState>,
    who: Principal,
    Query(q): Query<TalkQuery>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    who.require(Role::Supervisor)?;
    let app = q.app.filter(|a| !a.is_empty()).ok_or_else(|| ApiError::BadRequest("`app` is required".into()))?;
    match VoiceConfig::for_app(&state.config, &app) {
        Ok(Some(_)) => {}
        Ok(None) if state.config.applications.contains_key(&app) => {
            return Err(ApiError::BadRequest(format!("application `{app}` is not a voice agent")));
        }
        Ok(None) => return Err(ApiError::NotFound(format!("no application `{app}`"))),
        Err(e) => return Err(ApiError::Unavailable(format!("application `{app}` cannot run: {e}"))),
    }
    let Some(calls) = state.calls.clone() else {
        return Err(ApiError::Unavailable("calls are not taken here".into()));
    };
    if state.ready.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    let ws = ws.map_err(|_| ApiError::BadRequest("not a WebSocket upgrade".into()))?;
    let remote = peer.map(|Extension(ConnectInfo(a))| a.to_string()).unwrap_or_default();
    tracing::info!(%app, user = %who.name, "talk in the browser");
    Ok(ws.max_message_size(MAX_MESSAGE).on_upgrade(move |socket: WebSocket| async move {
        let (rx, tx) = super::media_ws::split(socket);
        calls.run_browser(remote, &app, &who.name, rx, tx).await;
    }))
}
