//! `/api/v1/calls`: call records from the store, joined with the live-call
//! registry, placing outbound calls, and hanging up a live call.
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

/// Body of `POST /api/v1/calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialRequest {
    /// Callee: a phone number (`+15551234567`, with `trunk`) or a SIP URI.
    pub to: String,
    /// Trunk (a name under `trunks:`) to call through; without one, `to`
    /// must be a SIP URI called directly.
    #[serde(default)]
    pub trunk: Option<String>,
    /// Application to run once answered.
    pub app: String,
    /// Caller ID (From user part); default: the trunk's `caller_id`, else `skald`.
    #[serde(default)]
    pub from: Option<String>,
    /// The conversation's starting point: the agent resumes from its intent
    /// and slots.
    #[serde(default)]
    pub context: Option<crate::agent::context::CallContext>,
}

/// Ring timeout of a call placed without a trunk.
const DIRECT_RING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `POST /api/v1/calls`: places an outbound call.
///
/// Input: JSON [`DialRequest`] `{to, trunk?, app, from?, context?}`.
/// Output: `202 {"id": "<call id>"}` once the INVITE is sent; the call's
/// progress shows in `GET /api/v1/calls/{id}`. Status: 400 for a malformed
/// body, an unknown application or trunk, or a `to` that is not a phone
/// number (with a trunk) or a SIP URI; 503 while skald is shutting down (or
/// runs without a SIP stack) or has no free RTP port; 500 when SIP fails.
pub async fn dial(
    State(st): State<HttpState>,
    body: Result<Json<DialRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    use crate::call::service::{DialError, trunk_target};
    let Json(req) = body.map_err(|e| ApiError::BadRequest(format!("body: {}", e.body_text())))?;
    if !st.config.applications.contains_key(&req.app) {
        return Err(ApiError::BadRequest(format!("unknown application `{}`", req.app)));
    }
    if let Some(from) = &req.from
        && (from.is_empty() || !from.chars().all(|c| c.is_ascii_alphanumeric() || "+-_.".contains(c)))
    {
        return Err(ApiError::BadRequest(format!("`{from}` is not a caller ID (digits, letters, + - _ .)")));
    }
    match &req.trunk {
        Some(name) => {
            let trunk = st
                .config
                .trunks
                .get(name)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown trunk `{name}`")))?;
            trunk_target(trunk, &req.to).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        }
        None => {
            let lower = req.to.to_ascii_lowercase();
            if !(lower.starts_with("sip:") || lower.starts_with("sips:")) || !req.to.contains('@') {
                return Err(ApiError::BadRequest(format!(
                    "`{}` is not a SIP URI; give a trunk to call a phone number",
                    req.to
                )));
            }
        }
    }
    if st.ready.draining.load(std::sync::atomic::Ordering::Acquire) {
        return Err(ApiError::Unavailable("not taking calls: shutting down".into()));
    }
    let Some(calls) = st.calls.clone() else {
        return Err(ApiError::Unavailable("no SIP stack in this instance".into()));
    };
    let res = match &req.trunk {
        Some(trunk) => calls.dial_trunk(trunk, &req.to, &req.app, req.from.as_deref(), req.context).await,
        None => {
            let from = req.from.as_deref().unwrap_or("skald");
            calls.dial(&req.to, from, &req.app, DIRECT_RING_TIMEOUT, None).await
        }
    };
    match res {
        Ok(id) => Ok((StatusCode::ACCEPTED, Json(json!({ "id": id })))),
        Err(e @ (DialError::UnknownApp(_) | DialError::UnknownTrunk(_) | DialError::BadNumber(_))) => {
            Err(ApiError::BadRequest(e.to_string()))
        }
        Err(DialError::Sip(crate::sip::driver::SipError::BadUri(u))) => {
            Err(ApiError::BadRequest(format!("bad SIP URI `{u}`")))
        }
        Err(e @ (DialError::Draining | DialError::Ports(_))) => Err(ApiError::Unavailable(e.to_string())),
        Err(e) => Err(ApiError::Internal(format!("dial: {e}"))),
    }
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
