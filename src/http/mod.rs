//! HTTP: health, metrics and the call API (axum).
//!
//! Routes (handlers document their inputs, outputs and status codes; the
//! least role each needs is in brackets, see [`auth`]):
//!
//! | route | handler |
//! |---|---|
//! | `GET /health/live` (open) | [`health::live`] |
//! | `GET /health/ready` (open) | [`health::ready`] |
//! | `GET /metrics` (viewer) | [`health::metrics`] |
//! | `GET /api/v1/openapi.json` (viewer) | [`openapi::openapi_json`] |
//! | `POST /api/v1/login` (open) | [`auth::login`] |
//! | `POST /api/v1/logout` (viewer) | [`auth::logout`] |
//! | `GET /api/v1/calls?limit=N` (viewer) | [`api::calls::list`] |
//! | `POST /api/v1/calls` (admin) | [`api::calls::dial`] |
//! | `GET /api/v1/calls/{id}` (viewer) | [`api::calls::get`] |
//! | `POST /api/v1/calls/{id}/hangup` (supervisor) | [`api::calls::hangup`] |
//! | `GET /api/v1/calls/{id}/recording` (viewer) | [`api::calls::recording`] |
//! | `GET /api/v1/agents` (viewer) | [`api::agents::list`] |
//! | `GET /api/v1/queues` (viewer) | [`api::queues::list`] |
//! | `GET /agent/gui`, `/agent/gui/assets/{file}` (open, static; not in the OpenAPI) | [`ui`] |
//! | `POST /api/v1/calls/{id}/supervise` (supervisor) | [`api::supervise::supervise`] |
//! | `GET /api/v1/calls/{id}/audio?session=S` (WebSocket) (supervisor) | [`api::supervise::audio`] |
//! | `POST /api/v1/calls/{id}/transfer` (supervisor) | [`api::supervise::transfer`] |
//! | `GET /api/v1/talk?app=NAME` (WebSocket) (supervisor) | [`talk_ws::talk`] |
//! | `GET /api/v1/twilio/media-stream` (WebSocket, Twilio-signed) | [`media_ws::media_stream`] |
//! | `GET /api/v1/events[?call_id=ID]` (WebSocket) (viewer) | [`events_ws::events`] |
//! | `GET /api/v1/context/{ref}?token=…` [context token or viewer] | [`api::context::get`] |
//! | `POST /api/v1/sip/inbound/webhook` (Twilio-signed) | [`twilio::inbound_webhook`] |
//! | `POST /api/v1/twilio/status` (Twilio-signed) | [`twilio::status_callback`] |
//! | `POST /api/v1/livekit/webhook` (LiveKit-signed) | [`livekit::webhook`] |
//!
//! [`routes()`] is the one list: it builds both the router and the OpenAPI
//! description ([`openapi`]), so they cannot drift apart.
//!
//! Errors are JSON `{"error": {"code", "message"}}` ([`error::ApiError`]),
//! also for unknown routes (404). Every request is traced (`tower-http`
//! `TraceLayer`); `/api` requests that take longer than [`API_TIMEOUT`]
//! answer 503 `timeout`. This module knows calls only through the store and
//! the call registry, never through SIP or RTP.

pub mod api;
pub mod auth;
pub mod error;
pub mod events_ws;
pub mod health;
pub mod livekit;
pub mod media_ws;
pub mod openapi;
pub mod talk_ws;
pub mod twilio;
pub mod ui;

use crate::call::registry::CallRegistry;
use crate::observability::Metrics;
use crate::store::Store;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use error::ApiError;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// API tokens, login sessions and the wrong-token limiter.
    pub auth: auth::Auth,
}

/// Time limit of one `/api` request.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// The router of every route in [`routes()`], with the JSON 404 fallback and
/// request tracing.
pub fn router(state: HttpState) -> Router {
    let (routes, _) = routes(&state.auth).split_for_parts();
    routes
        .merge(ui::router())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every route with its description: the one list the router and
/// `/api/v1/openapi.json` are both made from. Routes above a
/// `route_layer(require)` need a principal ([`auth::require_principal`]);
/// the others check their own credential (Twilio's signature, the login's
/// token, the context token).
pub fn routes(auth: &auth::Auth) -> OpenApiRouter<HttpState> {
    let require = axum::middleware::from_fn_with_state(auth.clone(), auth::require_principal);
    let api = OpenApiRouter::new()
        .routes(routes!(api::calls::list, api::calls::dial))
        .routes(routes!(api::calls::get))
        .routes(routes!(api::calls::hangup))
        .routes(routes!(api::calls::recording))
        .routes(routes!(api::agents::list))
        .routes(routes!(api::queues::list))
        .routes(routes!(api::supervise::supervise))
        .routes(routes!(api::supervise::transfer))
        .routes(routes!(auth::logout))
        .routes(routes!(openapi::openapi_json))
        .route_layer(require.clone())
        .routes(routes!(auth::login))
        .routes(routes!(api::context::get))
        .routes(routes!(twilio::inbound_webhook))
        .routes(routes!(twilio::status_callback))
        .routes(routes!(livekit::webhook));
    let untimed = OpenApiRouter::new()
        .routes(routes!(events_ws::events))
        .routes(routes!(api::supervise::audio))
        .routes(routes!(talk_ws::talk))
        .routes(routes!(health::metrics))
        .route_layer(require)
        .routes(routes!(media_ws::media_stream))
        .routes(routes!(health::live))
        .routes(routes!(health::ready));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(untimed)
        .merge(with_timeout(api, API_TIMEOUT))
}

/// Wraps `routes` so a request running longer than `limit` answers
/// [`ApiError::Timeout`].
fn with_timeout<S: Clone + Send + Sync + 'static>(routes: OpenApiRouter<S>, limit: Duration) -> OpenApiRouter<S> {
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
        let slow = Router::new().route("/slow", axum::routing::get(std::future::pending::<()>));
        let app = Router::from(with_timeout(slow.into(), Duration::from_millis(20)));
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
