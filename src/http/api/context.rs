//! `/api/v1/context/{ref}`: by-reference call contexts, for a skald (or any
//! peer) that received `X-Skald-Context-Ref` and `X-Skald-Context-Token`
//! headers instead of an inline context (see [`crate::agent::context`]).

use crate::agent::context::{CallContext, LookupError};
use crate::http::HttpState;
use crate::http::error::ApiError;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

/// Query of `GET /api/v1/context/{ref}`.
#[derive(Debug, Deserialize)]
pub struct ContextQuery {
    /// The `X-Skald-Context-Token` that came with the reference.
    pub token: Option<String>,
}

/// `GET /api/v1/context/{ref}?token=…`: one stored context.
///
/// Inputs: `ref` (the `X-Skald-Context-Ref` value) and `token`. Output:
/// `200` with the [`CallContext`] JSON. Status: 404 when the reference is
/// unknown or expired (contexts live 10 minutes), 403 when the token is
/// missing or wrong.
pub async fn get(
    State(st): State<HttpState>,
    Path(reference): Path<String>,
    Query(q): Query<ContextQuery>,
) -> Result<Json<CallContext>, ApiError> {
    let token = q.token.unwrap_or_default();
    match st.contexts.lookup(&reference, &token) {
        Ok(ctx) => Ok(Json(ctx)),
        Err(LookupError::Unknown) => Err(ApiError::NotFound("no such context (unknown or expired)".into())),
        Err(LookupError::BadToken) => Err(ApiError::Forbidden("wrong context token".into())),
    }
}
