//! `GET /api/v1/events` (WebSocket): the live event stream.
//!
//! On connect the server sends `{"type":"hello","schema":"skald.events.v1"}`,
//! then one text frame per event ([`crate::events::LiveEvent`] as JSON:
//! `v`, `seq`, `at`, `call_id`, `kind`, `data`). `?call_id=ID` limits the
//! stream to one call. A subscriber too slow to keep up is sent
//! `{"type":"lagged","missed":N}` and goes on with the newest events; the
//! calls are never slowed down by it. Frames from the client are ignored
//! (Ping is answered by the WebSocket layer); the stream ends when the
//! client closes or skald shuts down.

use super::HttpState;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use crate::events::SCHEMA;
use crate::ids::CallId;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this call's events.
    pub call_id: Option<String>,
}

/// Upgrades to the live event stream. 400 for a malformed `call_id`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(EventsQuery),
    responses(
        (status = 101, description = "WebSocket: a `hello` frame, then one JSON text frame per event (skald.events.v1)"),
        (status = 400, description = "Malformed `call_id` or not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "No valid token or session", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("viewer"))),
)]
pub async fn events(
    State(state): State<HttpState>,
    _who: Principal,
    Query(q): Query<EventsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let filter = match q.call_id.as_deref() {
        Some(id) => Some(CallId::parse(id).map_err(|_| ApiError::BadRequest(format!("bad call id `{id}`")))?),
        None => None,
    };
    let rx = state.events.subscribe();
    Ok(ws.on_upgrade(move |socket| stream(socket, rx, filter)))
}

async fn stream(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::events::LiveEvent>>,
    filter: Option<CallId>,
) {
    let hello = serde_json::json!({ "type": "hello", "schema": SCHEMA }).to_string();
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let text = match ev {
                    Ok(e) if filter.is_some_and(|id| e.call_id != Some(id)) => continue,
                    Ok(e) => serde_json::to_string(&*e).unwrap_or_default(),
                    Err(RecvError::Lagged(n)) => serde_json::json!({ "type": "lagged", "missed": n }).to_string(),
                    Err(RecvError::Closed) => break,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
