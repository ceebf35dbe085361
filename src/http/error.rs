//! The API's error type: every failed request answers
//! `{"error": {"code": "...", "message": "..."}}` with a matching status, and
//! never shows internals (database errors are logged, not sent).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error a handler returns; its [`IntoResponse`] picks the status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad_request`: malformed path or query (the text says what).
    #[error("{0}")]
    BadRequest(String),
    /// 401 `unauthorized`: no valid credential (no token, a wrong token, an
    /// ended session); answered with `WWW-Authenticate: Bearer
    /// realm="skald"`. The text says which, never a secret.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`: the request is not allowed (a bad webhook
    /// signature, a wrong context token, a role too low for the action).
    /// The text says which, never a secret.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`: no such call or route.
    #[error("{0}")]
    NotFound(String),
    /// 409 `conflict`: the request does not fit the resource's state (e.g.
    /// hanging up a call that has ended).
    #[error("{0}")]
    Conflict(String),
    /// 429 `too_many_requests`: this address sent too many wrong tokens;
    /// answered with `Retry-After`.
    #[error("too many failed attempts; retry in {retry_after_s} s")]
    TooManyRequests {
        /// Seconds until the address may try again.
        retry_after_s: u64,
    },
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
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooManyRequests { .. } => "too_many_requests",
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
        let mut resp = (self.status(), Json(body)).into_response();
        match &self {
            ApiError::Unauthorized(_) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="skald""#));
            }
            ApiError::TooManyRequests { retry_after_s } => {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            _ => {}
        }
        resp
    }
}

/// The JSON of every error answer, for the API description.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// `error` of an [`ErrorBody`].
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `bad_request`, `unauthorized`,
    /// `forbidden`, `not_found`, `conflict`, `too_many_requests`,
    /// `unavailable`, `timeout`, `internal`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
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
            (ApiError::Unauthorized("x".into()), 401, "unauthorized"),
            (ApiError::Forbidden("x".into()), 403, "forbidden"),
            (ApiError::TooManyRequests { retry_after_s: 5 }, 429, "too_many_requests"),
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

    #[test]
    fn unauthorized_and_429_carry_their_headers() {
        let resp = ApiError::Unauthorized("x".into()).into_response();
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], r#"Bearer realm="skald""#);
        let resp = ApiError::TooManyRequests { retry_after_s: 42 }.into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "42");
    }
}
