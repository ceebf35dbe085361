//! `/api/v1/context/{ref}`: by-reference call contexts, for a skald (or any
//! peer) that received `X-Skald-Context-Ref` and `X-Skald-Context-Token`
//! headers instead of an inline context (see [`crate::agent::context`]).
//!
//! The context's own token (`?token=`) is this route's authorization: the
//! skald fetching it during a transfer holds no API token of this one.
//! Without it, the request needs an API principal like every other route
//! (401 otherwise), and is still answered only with the right token.

use crate::agent::context::{CallContext, LookupError};
use crate::http::HttpState;
use crate::http::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap};
use serde::Deserialize;
use std::time::Instant;

/// Query of `GET /api/v1/context/{ref}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContextQuery {
    /// The `X-Skald-Context-Token` that came with the reference.
    pub token: Option<String>,
}

/// `GET /api/v1/context/{ref}?token=…`: one stored context.
///
/// Inputs: `ref` (the `X-Skald-Context-Ref` value) and `token`. Output:
/// `200` with the [`CallContext`] JSON. Status: 401 with neither a context
/// token nor an API principal, 404 when the reference is unknown or expired
/// (contexts live 10 minutes), 403 when the token is missing or wrong, 429
/// after too many wrong tokens from the address.
#[utoipa::path(
    get,
    path = "/api/v1/context/{reference}",
    tag = "context",
    params(("reference" = String, Path, description = "The `X-Skald-Context-Ref` value"), ContextQuery),
    responses(
        (status = 200, description = "The call context (skald.context JSON)", body = Object),
        (status = 401, description = "Neither a context token nor an API token", body = ErrorBody),
        (status = 403, description = "Wrong context token", body = ErrorBody),
        (status = 404, description = "Unknown or expired reference", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this address", body = ErrorBody),
    ),
    security(("context_token" = []), ("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("viewer"))),
)]
pub async fn get(
    State(st): State<HttpState>,
    Path(reference): Path<String>,
    Query(q): Query<ContextQuery>,
    headers: HeaderMap,
    ext: Extensions,
) -> Result<Json<CallContext>, ApiError> {
    let ip = st.auth.client_ip(&ext, &headers);
    let now = Instant::now();
    let token = match q.token.filter(|t| !t.is_empty()) {
        Some(t) => {
            st.auth.check_blocked(ip, now)?;
            t
        }
        None => {
            st.auth.authenticate(&headers, ip, now)?;
            String::new()
        }
    };
    match st.contexts.lookup(&reference, &token) {
        Ok(ctx) => Ok(Json(ctx)),
        Err(LookupError::Unknown) => Err(ApiError::NotFound("no such context (unknown or expired)".into())),
        Err(LookupError::BadToken) => {
            if !token.is_empty() {
                st.auth.record_failure(ip, now);
            }
            Err(ApiError::Forbidden("wrong context token".into()))
        }
    }
}
