//! `/api/v1/calls`: call records from the store, joined with the live-call
//! registry, and hanging up a live call.
//!
//! A call appears in JSON as its [`CallRecord`] fields plus `live` (the
//! registry has it) and `live_state` (its current state while live, else
//! `null`). A call that is live but has no record yet (its first write failed
//! or is in flight) is shown from the registry's summary.

use crate::call::command::CallCommand;
use crate::call::registry::{CallSummary, RegistryError};
use crate::call::state::CallState;
use crate::http::HttpState;
use crate::http::error::ApiError;
use crate::ids::CallId;
use crate::store::CallRecord;
use crate::store::events::CallEvent;
use crate::store::turns::TurnRecord;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;

/// One call as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    /// The stored record (flattened into this object).
    #[serde(flatten)]
    pub record: CallRecord,
    /// True while the call is in the live-call registry.
    pub live: bool,
    /// The registry's state while live; `None` (`null`) otherwise.
    pub live_state: Option<CallState>,
    /// The transcript, turn by turn with timings (only in `GET /api/v1/calls/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turns: Option<Vec<TurnRecord>>,
    /// Events of the call (e.g. Twilio status changes), oldest first (only
    /// in `GET /api/v1/calls/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<CallEvent>>,
}

/// Query of `GET /api/v1/calls`.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    /// Most records to return; default [`DEFAULT_LIMIT`], capped at [`MAX_LIMIT`].
    pub limit: Option<u32>,
}

/// Records returned when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest `limit` honoured; larger values are lowered to it.
pub const MAX_LIMIT: u32 = 500;

/// `GET /api/v1/calls?limit=N`: recent calls, newest first.
///
/// Inputs: `limit` (default 50, values above 500 count as 500). Output:
/// `200 {"calls": [CallView…]}`. Status: 400 when `limit` is not a
/// non-negative integer, 500 when the store fails.
pub async fn list(
    State(st): State<HttpState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(params) =
        params.map_err(|_| ApiError::BadRequest("limit must be a non-negative integer".into()))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let records = st.store.list_calls(limit).await?;
    let live: HashMap<CallId, CallState> = st
        .registry
        .list()
        .into_iter()
        .map(|s| (s.id, s.state))
        .collect();
    let calls: Vec<CallView> = records
        .into_iter()
        .map(|record| {
            let live_state = live.get(&record.id).copied();
            CallView {
                record,
                live: live_state.is_some(),
                live_state,
                turns: None,
                events: None,
            }
        })
        .collect();
    Ok(Json(json!({ "calls": calls })))
}

/// `GET /api/v1/calls/{id}`: one call.
///
/// Inputs: `id`, a call id (UUID). Output: `200` with a [`CallView`]
/// including `turns`, the transcript with per-turn timings, and `events`
/// (by call id or by the record's Twilio CallSid).
/// Status: 400 when `id` is not a UUID, 404 when neither the store nor the
/// registry knows it, 500 when the store fails.
pub async fn get(
    State(st): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<CallView>, ApiError> {
    let id = parse_id(&id)?;
    let live = st.registry.get(id);
    let record = match (st.store.get_call(id).await?, &live) {
        (Some(r), _) => r,
        (None, Some(summary)) => record_from_summary(summary),
        (None, None) => return Err(not_found(id)),
    };
    let live_state = live.map(|s| s.state);
    let turns = st.store.list_turns(id).await?;
    let events = st.store.events_for_call(Some(id), record.twilio_call_sid.as_deref()).await?;
    Ok(Json(CallView {
        record,
        live: live_state.is_some(),
        live_state,
        turns: Some(turns),
        events: Some(events),
    }))
}

/// `POST /api/v1/calls/{id}/hangup`: ends a live call (BYE when answered,
/// else a final error response), recorded with reason `api`.
///
/// Inputs: `id`, a call id (UUID); no body. Output: `202
/// {"status":"hanging_up"}` once the command is in the call's mailbox (the
/// call ends asynchronously). Status: 400 for a malformed id, 404 when no
/// such call exists, 409 when the call exists but has ended or is ending,
/// 500 when the store fails.
pub async fn hangup(
    State(st): State<HttpState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    match st.registry.send(
        id,
        CallCommand::Hangup {
            reason: "api".into(),
        },
    ) {
        Ok(()) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "status": "hanging_up" })),
        )),
        Err(RegistryError::Gone(_)) => Err(not_live(id)),
        Err(RegistryError::NotFound(_)) => match st.store.get_call(id).await? {
            Some(_) => Err(not_live(id)),
            None => Err(not_found(id)),
        },
    }
}

/// The id from the path, or 400.
fn parse_id(text: &str) -> Result<CallId, ApiError> {
    CallId::parse(text).map_err(|_| ApiError::BadRequest("call id must be a UUID".into()))
}

fn not_found(id: CallId) -> ApiError {
    ApiError::NotFound(format!("no call {id}"))
}

fn not_live(id: CallId) -> ApiError {
    ApiError::Conflict(format!("call {id} is not live"))
}

/// A record built from a live call's summary, for a call not stored yet.
fn record_from_summary(s: &CallSummary) -> CallRecord {
    CallRecord {
        id: s.id,
        sip_call_id: s.sip_call_id.clone(),
        from_uri: s.from.clone(),
        did: s.did.clone(),
        app: Some(s.app.clone()),
        state: s.state.as_str().to_owned(),
        invited_at: s.started_at,
        ..CallRecord::default()
    }
}
