//! HTTP: health, metrics and the call API (axum).
//!
//! Routes (handlers document their inputs, outputs and status codes):
//!
//! | route | handler |
//! |---|---|
//! | `GET /health/live` | [`health::live`] |
//! | `GET /health/ready` | [`health::ready`] |
//! | `GET /metrics` | [`health::metrics`] |
//! | `GET /api/v1/calls?limit=N` | [`api::calls::list`] |
//! | `POST /api/v1/calls` | [`api::calls::dial`] |
//! | `GET /api/v1/calls/{id}` | [`api::calls::get`] |
//! | `POST /api/v1/calls/{id}/hangup` | [`api::calls::hangup`] |
//! | `GET /api/v1/twilio/media-stream` (WebSocket) | [`media_ws::media_stream`] |
//! | `GET /api/v1/events[?call_id=ID]` (WebSocket) | [`events_ws::events`] |
//! | `GET /api/v1/context/{ref}?token=…` | [`api::context::get`] |
//! | `POST /api/v1/sip/inbound/webhook` (Twilio, signed) | [`twilio::inbound_webhook`] |
//! | `POST /api/v1/twilio/status` (Twilio, signed) | [`twilio::status_callback`] |
//!
//! Errors are JSON `{"error": {"code", "message"}}` ([`error::ApiError`]),
//! also for unknown routes (404). Every request is traced (`tower-http`
//! `TraceLayer`); `/api` requests that take longer than [`API_TIMEOUT`]
//! answer 503 `timeout`. This module knows calls only through the store and
//! the call registry, never through SIP or RTP.

pub mod api;
pub mod error;
pub mod events_ws;
pub mod health;
pub mod media_ws;
pub mod twilio;

use crate::call::registry::CallRegistry;
use crate::observability::Metrics;
use crate::store::Store;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::{get, post};
use error::ApiError;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;

/// Readiness flags set by the subsystems as they come up.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// SIP sockets are bound.
    pub sip_bound: Arc<AtomicBool>,
    /// Store is open.
    pub store_open: Arc<AtomicBool>,
    /// Set on shutdown: ready turns false while draining.
    pub draining: Arc<AtomicBool>,
}

/// Everything handlers need.
#[derive(Clone)]
pub struct HttpState {
    /// Call records.
    pub store: Store,
    /// Live calls.
    pub registry: CallRegistry,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness.
    pub ready: Readiness,
    /// Validated configuration (routes, Twilio settings).
    pub config: Arc<crate::config::Config>,
    /// Call services, to hand accepted Media Streams sockets to a new call
    /// (`None` in socket-free router tests: media streams answer 503).
    pub calls: Option<Arc<crate::call::service::CallServices>>,
    /// By-reference call contexts (`X-Skald-Context-Ref`) stored by the
    /// Twilio webhook and served by `GET /api/v1/context/{ref}`.
    pub contexts: crate::agent::context::ContextStore,
    /// Live event bus (`GET /api/v1/events`).
    pub events: crate::events::EventBus,
}

/// Time limit of one `/api` request.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// The router: `/health/live`, `/health/ready`, `/metrics`, `/api/v1/calls…`.
pub fn router(state: HttpState) -> Router {
    let api = Router::new()
        .route("/api/v1/calls", get(api::calls::list).post(api::calls::dial))
        .route("/api/v1/calls/{id}", get(api::calls::get))
        .route("/api/v1/calls/{id}/hangup", post(api::calls::hangup))
        .route("/api/v1/context/{reference}", get(api::context::get))
        .route(twilio::WEBHOOK_PATH, post(twilio::inbound_webhook))
        .route(twilio::STATUS_PATH, post(twilio::status_callback));
    Router::new()
        .route(twilio::MEDIA_STREAM_PATH, get(media_ws::media_stream))
        .route("/api/v1/events", get(events_ws::events))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .merge(with_timeout(api, API_TIMEOUT))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Wraps `routes` so a request running longer than `limit` answers
/// [`ApiError::Timeout`].
fn with_timeout<S: Clone + Send + Sync + 'static>(routes: Router<S>, limit: Duration) -> Router<S> {
    routes.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                ApiError::Timeout
            }))
            .layer(tower::timeout::TimeoutLayer::new(limit)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// A never-finishing handler under a 20 ms limit ends in 503 `timeout`
    /// (no timing is asserted, only the outcome).
    #[tokio::test]
    async fn slow_requests_time_out_with_json_503() {
        let slow = Router::new().route("/slow", get(std::future::pending::<()>));
        let app = with_timeout(slow, Duration::from_millis(20));
        let resp = app
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "timeout");
    }
}
