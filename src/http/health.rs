//! Liveness, readiness and the metrics page: what an orchestrator or a
//! Prometheus scraper asks.

use super::HttpState;
use super::auth::Principal;
use super::error::ErrorBody;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use std::sync::atomic::Ordering;

/// `GET /health/live`: the process answers HTTP.
///
/// Inputs: none. Output: `200 {"status":"ok"}`, always.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Object)),
    security(()),
    extensions(("x-skald-role" = json!("public"))),
)]
pub async fn live() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// `GET /health/ready`: skald takes calls.
///
/// Inputs: the readiness flags and a store ping (≤ 2 s). Output:
/// `{"status": "ready"|"not_ready", "checks": {"sip": bool, "store": bool,
/// "accepting": bool}}`: `sip` is true when the SIP sockets are bound,
/// `store` when the store is open and answers, `accepting` false while
/// draining for shutdown. Status: 200 when all three are true, else 503.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready: `{\"status\":\"ready\",\"checks\":{…}}`", body = Object),
        (status = 503, description = "Not ready; `checks` names the failing part", body = Object),
    ),
    security(()),
    extensions(("x-skald-role" = json!("public"))),
)]
pub async fn ready(State(st): State<HttpState>) -> impl IntoResponse {
    let sip = st.ready.sip_bound.load(Ordering::Acquire);
    let accepting = !st.ready.draining.load(Ordering::Acquire);
    let store = st.ready.store_open.load(Ordering::Acquire) && st.store.ping().await;
    let ok = sip && store && accepting;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": { "sip": sip, "store": store, "accepting": accepting },
    });
    (status, Json(body))
}

/// `GET /metrics`: every skald metric in the OpenMetrics text format.
///
/// Inputs: none. Output: `200`, content type
/// `application/openmetrics-text; version=1.0.0; charset=utf-8`, the text of
/// [`Metrics::render`](crate::observability::Metrics::render).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Every metric, OpenMetrics text", body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "No valid token or session", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("viewer"))),
)]
pub async fn metrics(State(st): State<HttpState>, _who: Principal) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            crate::observability::Metrics::CONTENT_TYPE,
        )],
        st.metrics.render(),
    )
}
