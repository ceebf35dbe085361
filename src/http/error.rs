//! The API's error type: every failed request answers
//! `{"error": {"code": "...", "message": "..."}}` with a matching status, and
//! never shows internals (database errors are logged, not sent).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error a handler returns; its [`IntoResponse`] picks the status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad_request`: malformed path or query (the text says what).
    #[error("{0}")]
    BadRequest(String),
    /// 403 `forbidden`: the request is not authorized (a bad webhook
    /// signature, a wrong token). The text says which, never a secret.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`: no such call or route.
    #[error("{0}")]
    NotFound(String),
    /// 409 `conflict`: the request does not fit the resource's state (e.g.
    /// hanging up a call that has ended).
    #[error("{0}")]
    Conflict(String),
    /// 503 `unavailable`: a dependency (the store) does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// 503 `timeout`: the request took longer than the API's time limit.
    #[error("request timed out")]
    Timeout,
    /// 500 `internal`: a bug or an unexpected store error. The detail is
    /// logged; the client sees only "internal error".
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(format!("store: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error in HTTP handler");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let body = json!({ "error": { "code": self.code(), "message": message } });
        (self.status(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value) {
        let resp = e.into_response();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn internal_errors_hide_details() {
        let (status, body) = body_of(ApiError::Internal("secret sqlite path".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            json!({"error": {"code": "internal", "message": "internal error"}})
        );
    }

    #[tokio::test]
    async fn each_variant_maps_to_its_status_and_code() {
        for (e, status, code) in [
            (ApiError::BadRequest("x".into()), 400, "bad_request"),
            (ApiError::Forbidden("x".into()), 403, "forbidden"),
            (ApiError::NotFound("x".into()), 404, "not_found"),
            (ApiError::Conflict("x".into()), 409, "conflict"),
            (ApiError::Unavailable("x".into()), 503, "unavailable"),
            (ApiError::Timeout, 503, "timeout"),
        ] {
            let (s, body) = body_of(e).await;
            assert_eq!(s.as_u16(), status);
            assert_eq!(body["error"]["code"], code);
            assert!(body["error"]["message"].is_string());
        }
    }
}
