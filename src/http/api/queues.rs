//! `GET /api/v1/queues`: the contact center now — each queue's waiting
//! calls in service order (position, time waited, the agent ringing) and
//! every human agent's presence. Served from the contact center's task
//! ([`crate::call::contact`]); 404 when no `queues_file` is configured.

use crate::call::contact::CenterSnapshot;
use crate::http::HttpState;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::State;

/// `GET /api/v1/queues` (viewer). Errors: 404 without a contact center,
/// 503 when its task has stopped (shutting down).
#[utoipa::path(
    get,
    path = "/api/v1/queues",
    tag = "queues",
    responses(
        (status = 200, description = "Queues with their waiting calls, and agents' presence", body = CenterSnapshot),
        (status = 401, description = "No valid token or session", body = ErrorBody),
        (status = 404, description = "No contact center is configured (`queues_file`)", body = ErrorBody),
        (status = 503, description = "The contact center has stopped", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("viewer"))),
)]
pub async fn list(State(st): State<HttpState>, _who: Principal) -> Result<Json<CenterSnapshot>, ApiError> {
    let Some(cc) = st.calls.as_ref().and_then(|c| c.contact.clone()) else {
        return Err(ApiError::NotFound("no contact center is configured (queues_file)".into()));
    };
    cc.snapshot().await.map(Json).ok_or(ApiError::Unavailable("the contact center has stopped".into()))
}
