//! The OpenAPI description of the HTTP API, served at
//! `GET /api/v1/openapi.json`.
//!
//! It is generated from the code: every handler carries a
//! `#[utoipa::path]` (method, path, parameters, answers, security) and
//! [`super::routes()`] builds the router and this document from the same
//! list, so a route cannot be served without being described. Each
//! operation declares its `security` (`[{}]` for the open ones) and its
//! least role as the extension `x-skald-role` (`public`, `viewer`,
//! `supervisor`, `admin`). WebSocket routes appear as `GET` answering 101.

use super::HttpState;
use super::auth::{Auth, Principal};
use super::error::ErrorBody;
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::OnceLock;
use utoipa::Modify;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

/// Path of the document.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The document's fixed parts; paths are added by [`super::routes()`].
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "skald",
        description = "skald's HTTP API: call records and actions, the live event stream, Twilio's webhooks. \
            Every route but health, login and Twilio's signed ones needs `Authorization: Bearer <token>` \
            or the session cookie of `POST /api/v1/login`."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "calls", description = "Call records and call actions"),
        (name = "events", description = "The live event stream"),
        (name = "auth", description = "Browser login sessions"),
        (name = "context", description = "By-reference call contexts (transfers)"),
        (name = "twilio", description = "Twilio's webhooks and Media Streams (signed by Twilio)"),
        (name = "livekit", description = "LiveKit's webhooks (signed by the LiveKit project)"),
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "meta", description = "This description"),
    )
)]
pub struct ApiDoc;

/// Adds the security schemes the operations refer to.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`SKALD_ADMIN_TOKEN` or a token of `http.tokens`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::auth::SESSION_COOKIE,
                "Session cookie set by `POST /api/v1/login`",
            ))),
        );
        components.add_security_scheme(
            "context_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The `X-Skald-Context-Token` that came with a context reference",
            ))),
        );
        components.add_security_scheme(
            "twilio_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Twilio-Signature",
                "Twilio's request signature (HMAC-SHA1 with the account's Auth Token)",
            ))),
        );
        components.add_security_scheme(
            "livekit_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "A JWT signed with the LiveKit project's API secret whose `sha256` claim is the body's hash",
            ))),
        );
    }
}

/// The API description as JSON text (built once).
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        super::routes(&Auth::default())
            .into_openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    })
}

/// `GET /api/v1/openapi.json`: this API's OpenAPI description.
#[utoipa::path(
    get,
    path = OPENAPI_PATH,
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI document", body = Object),
        (status = 401, description = "No valid token or session", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])),
    extensions(("x-skald-role" = json!("viewer"))),
)]
pub async fn openapi_json(_state: axum::extract::State<HttpState>, _who: Principal) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document parses, names every route of the module's table, and
    /// each operation declares its security and least role.
    #[test]
    fn document_describes_every_route_with_its_security() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{doc}");
        let paths = doc["paths"].as_object().unwrap();
        let mut ops: Vec<String> = Vec::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                ops.push(format!("{} {path}", method.to_uppercase()));
                let security = op["security"].as_array().unwrap_or_else(|| panic!("{method} {path}: no security"));
                let role = op["x-skald-role"].as_str().unwrap_or_else(|| panic!("{method} {path}: no x-skald-role"));
                let open = security.iter().all(|s| s.as_object().is_some_and(|o| o.is_empty() || o.contains_key("twilio_signature") || o.contains_key("livekit_signature")));
                assert_eq!(open, role == "public", "{method} {path}: security {security:?} vs role {role}");
                for s in security.iter().flat_map(|s| s.as_object().unwrap().keys()) {
                    assert!(doc["components"]["securitySchemes"].get(s).is_some(), "{method} {path}: unknown scheme {s}");
                }
            }
        }
        ops.sort();
        let mut expected = vec![
            "GET /health/live",
            "GET /health/ready",
            "GET /metrics",
            "GET /api/v1/openapi.json",
            "POST /api/v1/login",
            "POST /api/v1/logout",
            "GET /api/v1/calls",
            "POST /api/v1/calls",
            "GET /api/v1/calls/{id}",
            "POST /api/v1/calls/{id}/hangup",
            "GET /api/v1/calls/{id}/recording",
            "GET /api/v1/agents",
            "GET /api/v1/queues",
            "POST /api/v1/calls/{id}/supervise",
            "GET /api/v1/calls/{id}/audio",
            "POST /api/v1/calls/{id}/transfer",
            "GET /api/v1/talk",
            "GET /api/v1/twilio/media-stream",
            "GET /api/v1/events",
            "GET /api/v1/context/{reference}",
            "POST /api/v1/sip/inbound/webhook",
            "POST /api/v1/twilio/status",
            "POST /api/v1/livekit/webhook",
        ];
        expected.sort();
        assert_eq!(ops, expected);
    }
}
