//! `/api/v1/calls`: call records from the store, joined with the live-call
//! registry, placing outbound calls, and hanging up a live call.
//!
//! A call appears in JSON as its [`CallRecord`] fields plus `live` (the
//! registry has it) and `live_state` (its current state while live, else
//! `null`). A call that is live but has no record yet (its first write failed
//! or is in flight) is shown from the registry's summary.
//!
//! Roles (see [`crate::http::auth`]): reading needs a viewer, hanging up a
//! supervisor allowed on the call's queue, dialing an admin. Every call
//! action is recorded on the call as a `supervisor.action` event
//! `{action, by, role}` (`audit`).

use crate::call::command::CallCommand;
use crate::call::registry::{CallSummary, RegistryError};
use crate::call::state::CallState;
use crate::http::HttpState;
use crate::http::auth::{Principal, Role};
use crate::http::error::{ApiError, ErrorBody};
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

/// One call as the API shows it: the fields of its call record (`id`,
/// `sip_call_id`, `direction`, `from_uri`, `to_uri`, `did`, `state`,
/// `invited_at`, `answered_at`, `ended_at`, `end_reason`, …) plus the
/// fields below.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallView {
    /// The stored record (flattened into this object).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub record: CallRecord,
    /// True while the call is in the live-call registry.
    pub live: bool,
    /// The registry's state while live (`ringing`, `answered`, `on_hold`,
    /// `transferring`, `ending`, `ended`); `None` (`null`) otherwise.
    #[schema(value_type = Option<String>)]
    pub live_state: Option<CallState>,
    /// The transcript, turn by turn with timings (only in `GET /api/v1/calls/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub turns: Option<Vec<TurnRecord>>,
    /// Events of the call (e.g. Twilio status changes, supervisor actions),
    /// oldest first (only in `GET /api/v1/calls/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub events: Option<Vec<CallEvent>>,
}

/// Answer of `GET /api/v1/calls`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallList {
    /// Recent calls, newest first.
    pub calls: Vec<CallView>,
}

/// Answer of `POST /api/v1/calls`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DialAccepted {
    /// The new call's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: CallId,
}

/// Answer of `POST /api/v1/calls/{id}/hangup`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HangupAccepted {
    /// Always `hanging_up`.
    pub status: String,
}

/// Query of `GET /api/v1/calls`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Most records to return; default 50, capped at 500.
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
#[utoipa::path(
    get,
    path = "/api/v1/calls",
    tag = "calls",
    params(ListParams),
    responses(
        (status = 200, description = "Recent calls, newest first", body = CallList),
        (status = 400, description = "`limit` is not a non-negative integer", body = ErrorBody),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("viewer"))),
)]
pub async fn list(
    State(st): State<HttpState>,
    _who: Principal,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<CallList>, ApiError> {
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
    Ok(Json(CallList { calls }))
}

/// `GET /api/v1/calls/{id}`: one call.
///
/// Inputs: `id`, a call id (UUID). Output: `200` with a [`CallView`]
/// including `turns`, the transcript with per-turn timings, and `events`
/// (by call id or by the record's Twilio CallSid).
/// Status: 400 when `id` is not a UUID, 404 when neither the store nor the
/// registry knows it, 500 when the store fails.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{id}",
    tag = "calls",
    params(("id" = String, Path, description = "Call id (UUID)")),
    responses(
        (status = 200, description = "The call with its transcript and events", body = CallView),
        (status = 400, description = "`id` is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 404, description = "No such call", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("viewer"))),
)]
pub async fn get(
    State(st): State<HttpState>,
    _who: Principal,
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
    #[schema(value_type = Option<Object>)]
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
/// Needs the admin role (403 otherwise).
#[utoipa::path(
    post,
    path = "/api/v1/calls",
    tag = "calls",
    request_body = DialRequest,
    responses(
        (status = 202, description = "The INVITE is sent", body = DialAccepted),
        (status = 400, description = "Malformed body, unknown application or trunk, bad `to`", body = ErrorBody),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 500, description = "SIP failed", body = ErrorBody),
        (status = 503, description = "Shutting down, no SIP stack or no free RTP port", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("admin"))),
)]
pub async fn dial(
    State(st): State<HttpState>,
    who: Principal,
    body: Result<Json<DialRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    use crate::call::service::{DialError, trunk_target};
    who.require(Role::Admin)?;
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
        Ok(id) => {
            audit(&st, id, &who, "dial", json!({ "to": req.to, "app": req.app })).await;
            Ok((StatusCode::ACCEPTED, Json(DialAccepted { id })))
        }
        Err(e @ (DialError::UnknownApp(_) | DialError::UnknownTrunk(_) | DialError::BadNumber(_))) => {
            Err(ApiError::BadRequest(e.to_string()))
        }
        Err(DialError::Invite(crate::transports::sip_rtp::InviteError::BadUri(u))) => {
            Err(ApiError::BadRequest(format!("bad SIP URI `{u}`")))
        }
        Err(e @ (DialError::Draining | DialError::Invite(crate::transports::sip_rtp::InviteError::NoPorts(_)))) => {
            Err(ApiError::Unavailable(e.to_string()))
        }
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
/// 500 when the store fails. Needs a supervisor allowed on the call's queue
/// (403 otherwise); recorded as a `supervisor.action` event.
#[utoipa::path(
    post,
    path = "/api/v1/calls/{id}/hangup",
    tag = "calls",
    params(("id" = String, Path, description = "Call id (UUID)")),
    responses(
        (status = 202, description = "The hang-up is under way", body = HangupAccepted),
        (status = 400, description = "`id` is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 403, description = "Not a supervisor, or not one of this call's queue", body = ErrorBody),
        (status = 404, description = "No such call", body = ErrorBody),
        (status = 409, description = "The call has ended or is ending", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("supervisor"))),
)]
pub async fn hangup(
    State(st): State<HttpState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = permitted(&st, &who, &id)?;
    if let Err(e) = st.registry.send(id, CallCommand::Hangup { reason: "api".into() }) {
        return Err(send_failed(&st, id, e).await);
    }
    audit(&st, id, &who, "hangup", json!({})).await;
    Ok((StatusCode::ACCEPTED, Json(HangupAccepted { status: "hanging_up".into() })))
}

/// Records a call action by `who` on call `id`: a `supervisor.action`
/// event `{action, by, role, …details}` stored on the call and published
/// on the event bus. A store failure is logged; the action stands.
pub(crate) async fn audit(st: &HttpState, id: CallId, who: &Principal, action: &str, details: serde_json::Value) {
    let mut data = json!({ "action": action, "by": who.name, "role": who.role.as_str() });
    if let (Some(d), serde_json::Value::Object(extra)) = (data.as_object_mut(), details) {
        d.extend(extra);
    }
    tracing::info!(call_id = %id, action, by = %who.name, role = %who.role, "supervisor action");
    let event = CallEvent {
        call_id: Some(id),
        twilio_call_sid: None,
        kind: "supervisor.action".into(),
        at: crate::call::service::now_ms(),
        data,
    };
    if let Err(e) = st.store.add_event(&event).await {
        tracing::error!(error = %e, "cannot store the audit event of a call action");
    }
    st.events.publish(event.call_id, &event.kind, event.at, event.data);
}

/// The checks before acting on call `id` (the path's text): a supervisor
/// (401/403), a UUID (400), and a queue `who` may act on (403; a call
/// that never joined a queue is open to every supervisor).
pub(crate) fn permitted(st: &HttpState, who: &Principal, id: &str) -> Result<CallId, ApiError> {
    who.require(Role::Supervisor)?;
    let id = parse_id(id)?;
    if let Some(summary) = st.registry.get(id)
        && !who.may_act_on(summary.queue.as_deref())
    {
        return Err(ApiError::Forbidden(format!("`{}` may not act on calls of this queue", who.name)));
    }
    Ok(id)
}

/// 409 for a call that is gone or ending, 404 for one never seen.
pub(crate) async fn send_failed(st: &HttpState, id: CallId, e: RegistryError) -> ApiError {
    match e {
        RegistryError::Gone(_) => not_live(id),
        RegistryError::NotFound(_) => match st.store.get_call(id).await {
            Ok(Some(_)) => not_live(id),
            Ok(None) => not_found(id),
            Err(e) => e.into(),
        },
    }
}

/// The id from the path, or 400.
pub(crate) fn parse_id(text: &str) -> Result<CallId, ApiError> {
    CallId::parse(text).map_err(|_| ApiError::BadRequest("call id must be a UUID".into()))
}

pub(crate) fn not_found(id: CallId) -> ApiError {
    ApiError::NotFound(format!("no call {id}"))
}

pub(crate) fn not_live(id: CallId) -> ApiError {
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

/// `GET /api/v1/calls/{id}/recording`: the call's recording as WAV (the
/// record's `recording_path`; stereo for voice agents: caller left, agent
/// right).
///
/// Inputs: `id`, a call id (UUID). Output: `200 audio/wav`. Status: 400 for
/// a malformed id, 404 when there is no such call or it has no recording
/// (or its file is gone), 409 while the call is live (the file is still
/// being written), 500 when the store fails. A viewer may fetch it, like
/// the transcript it goes with.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{id}/recording",
    tag = "calls",
    params(("id" = String, Path, description = "Call id (UUID)")),
    responses(
        (status = 200, description = "The recording", content_type = "audio/wav"),
        (status = 400, description = "`id` is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 404, description = "No such call, or no recording", body = ErrorBody),
        (status = 409, description = "The call is live; its recording is still being written", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("viewer"))),
)]
pub async fn recording(
    State(st): State<HttpState>,
    _who: Principal,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    use axum::http::header;
    let id = parse_id(&id)?;
    let record = st.store.get_call(id).await?;
    if st.registry.get(id).is_some() {
        return Err(ApiError::Conflict(format!("call {id} is live; its recording is still being written")));
    }
    let record = record.ok_or_else(|| not_found(id))?;
    let Some(path) = record.recording_path else {
        return Err(ApiError::NotFound(format!("call {id} has no recording")));
    };
    let wav = tokio::fs::read(&path).await.map_err(|e| {
        tracing::warn!(error = %e, call_id = %id, "recording file unreadable");
        ApiError::NotFound(format!("the recording of call {id} is gone"))
    })?;
    let disposition = format!("inline; filename=\"skald-{id}.wav\"");
    Ok((
        [
            (header::CONTENT_TYPE, "audio/wav".to_owned()),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        wav,
    ))
}
