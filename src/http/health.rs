//! Liveness, readiness and the metrics page: what an orchestrator or a
//! Prometheus scraper asks.

use super::HttpState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use std::sync::atomic::Ordering;

/// `GET /health/live`: the process answers HTTP.
///
/// Inputs: none. Output: `200 {"status":"ok"}`, always.
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
pub async fn metrics(State(st): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            crate::observability::Metrics::CONTENT_TYPE,
        )],
        st.metrics.render(),
    )
}
