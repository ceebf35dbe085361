//! Tools an LLM agent may call: the built-ins, HTTP tools defined in YAML,
//! argument checking against a tool's JSON schema, and the executors.
//!
//! Built-ins ([`BuiltinTool`]) have fixed schemas. Most map to agent steps
//! without IO (`end_call` hangs up, `transfer`/`warm_transfer` transfer,
//! `send_dtmf` sends digits); `confirm_appointment` and `detect_voicemail`
//! and every HTTP tool come back to the call layer as
//! [`AgentStep::RunTool`](super::llm_agent::AgentStep::RunTool), which runs
//! them with [`execute`] (or its own voicemail detector) and answers with
//! the result.
//!
//! Argument checking ([`validate_args`]) is deliberately small: the
//! schema's `required` names, `type` of each property (`string`, `integer`,
//! `number`, `boolean`, `object`, `array`, `null`), `enum` and string
//! `pattern`. It runs before any tool is executed, so a model that invents
//! arguments gets an error it can correct instead of a wrong request.
//!
//! [`run_http_tool`] is the one IO edge of the agent module: method, URL
//! template (`{arg}` replaced by the percent-encoded argument), the other
//! arguments as a JSON body (POST, PUT, PATCH) or query string (GET,
//! DELETE), a per-tool timeout, and a bounded response body.

use super::graph::LlmAgentDef;
use crate::providers::ToolSpec;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Name of the tool the model uses to report an intent (added to agents
/// whose edges have `intent:` conditions).
pub const SET_INTENT: &str = "set_intent";

/// Largest HTTP tool response read (bytes); the rest is dropped.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Characters escaped in a URL path segment substituted from an argument.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The tools every agent can list by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinTool {
    /// Blind transfer: `{target?, reason}`; without a target the graph's
    /// `tool: transfer` or `human_request` edge decides where.
    Transfer,
    /// Warm transfer with a spoken summary for the receiver: `{target, summary}`.
    WarmTransfer,
    /// Hang up: `{reason}`.
    EndCall,
    /// Send DTMF digits to the far end (IVR navigation): `{digits}`.
    SendDtmf,
    /// Confirm an appointment: `{date, time, name}` (no IO; see [`confirm_appointment`]).
    ConfirmAppointment,
    /// Ask the call layer whether a voicemail greeting is playing: `{}`.
    DetectVoicemail,
}

impl BuiltinTool {
    /// Every built-in, in documentation order.
    pub const ALL: [BuiltinTool; 6] = [
        BuiltinTool::Transfer,
        BuiltinTool::WarmTransfer,
        BuiltinTool::EndCall,
        BuiltinTool::SendDtmf,
        BuiltinTool::ConfirmAppointment,
        BuiltinTool::DetectVoicemail,
    ];

    /// The built-in with this name.
    pub fn from_name(name: &str) -> Option<BuiltinTool> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Its name as the model sees it.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinTool::Transfer => "transfer",
            BuiltinTool::WarmTransfer => "warm_transfer",
            BuiltinTool::EndCall => "end_call",
            BuiltinTool::SendDtmf => "send_dtmf",
            BuiltinTool::ConfirmAppointment => "confirm_appointment",
            BuiltinTool::DetectVoicemail => "detect_voicemail",
        }
    }

    /// Its fixed description and JSON schema.
    pub fn spec(self) -> ToolSpec {
        let (description, parameters) = match self {
            BuiltinTool::Transfer => (
                "Transfer the caller to a person or another line. Leave `target` out to use the default destination.",
                json!({"type": "object", "properties": {
                    "target": {"type": "string", "description": "SIP URI or phone number"},
                    "reason": {"type": "string", "description": "why the caller is transferred"}},
                    "required": ["reason"]}),
            ),
            BuiltinTool::WarmTransfer => (
                "Transfer the caller after briefing the person who answers with a summary.",
                json!({"type": "object", "properties": {
                    "target": {"type": "string", "description": "SIP URI or phone number"},
                    "summary": {"type": "string", "description": "what the receiver needs to know"}},
                    "required": ["target", "summary"]}),
            ),
            BuiltinTool::EndCall => (
                "End the call once the caller has nothing more to ask.",
                json!({"type": "object", "properties": {
                    "reason": {"type": "string"}}, "required": ["reason"]}),
            ),
            BuiltinTool::SendDtmf => (
                "Send touch-tone digits on the line (0-9, *, #, A-D).",
                json!({"type": "object", "properties": {
                    "digits": {"type": "string", "pattern": "^[0-9*#A-D]+$"}}, "required": ["digits"]}),
            ),
            BuiltinTool::ConfirmAppointment => (
                "Confirm an appointment for the caller.",
                json!({"type": "object", "properties": {
                    "date": {"type": "string", "description": "YYYY-MM-DD"},
                    "time": {"type": "string", "description": "HH:MM, 24-hour"},
                    "name": {"type": "string", "description": "the caller's name"}},
                    "required": ["date", "time", "name"]}),
            ),
            BuiltinTool::DetectVoicemail => (
                "Check whether the call reached a voicemail greeting instead of a person.",
                json!({"type": "object", "properties": {}}),
            ),
        };
        ToolSpec { name: self.name().into(), description: description.into(), parameters }
    }
}

/// The `set_intent` tool: the model reports what the caller wants, one of
/// `intents` (the names used by the agent's `intent:` conditions).
pub fn set_intent_spec(intents: &[String]) -> ToolSpec {
    ToolSpec {
        name: SET_INTENT.into(),
        description: "Report what the caller wants as soon as it is clear.".into(),
        parameters: json!({"type": "object", "properties": {
            "intent": {"type": "string", "enum": intents}}, "required": ["intent"]}),
    }
}

/// HTTP methods an HTTP tool may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET (arguments not in the URL go to the query string).
    Get,
    /// POST (arguments not in the URL go to a JSON body).
    Post,
    /// PUT (JSON body).
    Put,
    /// PATCH (JSON body).
    Patch,
    /// DELETE (query string).
    Delete,
}

impl HttpMethod {
    fn has_body(self) -> bool {
        matches!(self, HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch)
    }
}

/// An HTTP tool as written under `http_tools.<name>:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpToolFile {
    pub(crate) method: HttpMethod,
    pub(crate) url: String,
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) parameters: Option<Value>,
    #[serde(default = "default_tool_timeout_ms")]
    pub(crate) timeout_ms: u64,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
}

fn default_tool_timeout_ms() -> u64 {
    5_000
}

/// A validated HTTP tool.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpToolDef {
    /// Its name (the key under `http_tools`).
    pub name: String,
    /// Method.
    pub method: HttpMethod,
    /// URL template: `{arg}` is replaced by that argument, percent-encoded.
    pub url: String,
    /// For the model.
    pub description: String,
    /// JSON schema of the arguments (an object schema).
    pub parameters: Value,
    /// Bound on the whole request.
    pub timeout: Duration,
    /// Extra request headers (static values).
    pub headers: BTreeMap<String, String>,
}

impl HttpToolDef {
    /// The tool as the model sees it.
    pub fn spec(&self) -> ToolSpec {
        ToolSpec { name: self.name.clone(), description: self.description.clone(), parameters: self.parameters.clone() }
    }

    /// Names of the `{arg}` placeholders of the URL template, in order.
    pub fn url_placeholders(&self) -> Vec<String> {
        placeholders(&self.url)
    }
}

/// `{name}` placeholders of a template.
pub(crate) fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        out.push(rest[open + 1..open + close].trim().to_string());
        rest = &rest[open + close + 1..];
    }
    out
}

/// Checks a tool's `parameters` schema at load: an object schema whose
/// `properties` is a map and whose `required` names listed properties.
pub(crate) fn check_schema(schema: &Value) -> Result<(), String> {
    let Value::Object(map) = schema else { return Err("must be a JSON schema object".into()) };
    if map.get("type").and_then(Value::as_str) != Some("object") {
        return Err("must have `type: object`".into());
    }
    let props = match map.get("properties") {
        None => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => return Err("`properties` must be a map".into()),
    };
    for (name, p) in props.into_iter().flatten() {
        if let Some(t) = p.get("type")
            && !t.as_str().is_some_and(|t| TYPES.contains(&t))
        {
            return Err(format!("property `{name}`: `type` must be one of {}", TYPES.join(", ")));
        }
        if let Some(pat) = p.get("pattern") {
            let ok = pat.as_str().is_some_and(|s| regex::Regex::new(s).is_ok());
            if !ok {
                return Err(format!("property `{name}`: `pattern` is not a valid regex"));
            }
        }
    }
    match map.get("required") {
        None => Ok(()),
        Some(Value::Array(req)) => {
            for r in req {
                let Some(r) = r.as_str() else { return Err("`required` lists property names".into()) };
                if !props.is_some_and(|p| p.contains_key(r)) {
                    return Err(format!("`required` names `{r}`, which is not under `properties`"));
                }
            }
            Ok(())
        }
        Some(_) => Err("`required` must be a list".into()),
    }
}

const TYPES: [&str; 7] = ["string", "integer", "number", "boolean", "object", "array", "null"];

/// Checks `args` against an object `schema`: an object, every `required`
/// property present, each present property of its `type`, in its `enum`,
/// matching its `pattern`. Unknown properties are allowed.
pub fn validate_args(schema: &Value, args: &Value) -> Result<(), String> {
    let Value::Object(args) = args else { return Err("arguments must be a JSON object".into()) };
    for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(r) = r.as_str()
            && args.get(r).is_none_or(Value::is_null)
        {
            return Err(format!("missing required argument `{r}`"));
        }
    }
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return Ok(()) };
    for (name, value) in args {
        let Some(p) = props.get(name) else { continue };
        if let Some(t) = p.get("type").and_then(Value::as_str) {
            let ok = match t {
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "object" => value.is_object(),
                "array" => value.is_array(),
                "null" => value.is_null(),
                _ => true,
            };
            if !ok {
                return Err(format!("argument `{name}` must be of type {t}, got {value}"));
            }
        }
        if let Some(choices) = p.get("enum").and_then(Value::as_array)
            && !choices.contains(value)
        {
            return Err(format!("argument `{name}` must be one of {}", Value::Array(choices.clone())));
        }
        if let (Some(pat), Some(s)) = (p.get("pattern").and_then(Value::as_str), value.as_str()) {
            let ok = regex::Regex::new(pat).is_ok_and(|re| re.is_match(s));
            if !ok {
                return Err(format!("argument `{name}` does not match {pat}"));
            }
        }
    }
    Ok(())
}

/// The built-in `confirm_appointment`: checks its arguments and confirms
/// without IO: `{"confirmed": true, "date", "time", "name"}`.
pub fn confirm_appointment(args: &Value) -> Result<Value, String> {
    validate_args(&BuiltinTool::ConfirmAppointment.spec().parameters, args)?;
    Ok(json!({"confirmed": true, "date": args["date"], "time": args["time"], "name": args["name"]}))
}

/// Runs a tool the agent returned as `RunTool` for the call layer: an HTTP
/// tool of `def`, or `confirm_appointment`. `detect_voicemail` needs the
/// call's audio and is the call layer's own; any other name is an error.
pub async fn execute(def: &LlmAgentDef, name: &str, args: &Value) -> Result<Value, String> {
    if let Some(http) = def.http_tool(name) {
        return run_http_tool(http, args).await;
    }
    match BuiltinTool::from_name(name) {
        Some(BuiltinTool::ConfirmAppointment) => confirm_appointment(args),
        Some(other) => Err(format!("`{}` is not run by the tool executor", other.name())),
        None => Err(format!("unknown tool `{name}`")),
    }
}

/// Calls an HTTP tool: validates `args` against its schema, fills the URL
/// template, sends the rest as a JSON body (POST/PUT/PATCH) or query string
/// (GET/DELETE), within the tool's timeout. The reply's JSON (or its text as
/// a JSON string) is the result; a non-2xx status, a timeout or a transport
/// error is `Err` with a short reason the model can read.
pub async fn run_http_tool(def: &HttpToolDef, args: &Value) -> Result<Value, String> {
    validate_args(&def.parameters, args)?;
    let mut rest = args.as_object().cloned().unwrap_or_default();
    let mut url = String::with_capacity(def.url.len());
    let mut tail = def.url.as_str();
    while let Some(open) = tail.find('{') {
        let Some(close) = tail[open..].find('}') else { break };
        let name = tail[open + 1..open + close].trim();
        let value = match rest.remove(name) {
            Some(Value::String(s)) => s,
            Some(Value::Null) | None => return Err(format!("missing argument `{name}` for the URL")),
            Some(v) => v.to_string(),
        };
        url.push_str(&tail[..open]);
        url.extend(utf8_percent_encode(&value, SEGMENT));
        tail = &tail[open + close + 1..];
    }
    url.push_str(tail);

    let client = client()?;
    let method = match def.method {
        HttpMethod::Get => reqwest::Method::GET,
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
        HttpMethod::Delete => reqwest::Method::DELETE,
    };
    let mut req = client.request(method, &url).timeout(def.timeout);
    for (k, v) in &def.headers {
        req = req.header(k, v);
    }
    if def.method.has_body() {
        req = req.json(&Value::Object(rest));
    } else if !rest.is_empty() {
        let query: Vec<(String, String)> = rest
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect();
        req = req.query(&query);
    }
    let ms = def.timeout.as_millis();
    let transport = |e: reqwest::Error| {
        if e.is_timeout() { format!("`{}` timed out after {ms} ms", def.name) } else { format!("`{}` failed: {e}", def.name) }
    };
    let mut resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        let room = MAX_RESPONSE_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        let snippet: String = text.chars().take(200).collect();
        return Err(format!("`{}` returned HTTP {}: {snippet}", def.name, status.as_u16()));
    }
    Ok(serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(text.into_owned())))
}

/// The shared HTTP client for tools (connection pooling across calls).
fn client() -> Result<reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let c = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    Ok(CLIENT.get_or_init(|| c).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::{Path, Query};
    use axum::routing::{get, post};

    fn tool(method: HttpMethod, url: String, timeout_ms: u64) -> HttpToolDef {
        HttpToolDef {
            name: "t".into(),
            method,
            url,
            description: "d".into(),
            parameters: json!({"type": "object", "properties": {
                "id": {"type": "string"}, "qty": {"type": "integer"}}, "required": ["id"]}),
            timeout: Duration::from_millis(timeout_ms),
            headers: BTreeMap::from([("x-tool".to_string(), "yes".to_string())]),
        }
    }

    async fn serve() -> String {
        let app = Router::new()
            .route(
                "/orders/{id}",
                get(|Path(id): Path<String>, Query(q): Query<BTreeMap<String, String>>| async move {
                    axum::Json(json!({"method": "GET", "id": id, "query": q}))
                })
                .post(|Path(id): Path<String>, headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                    let h = headers.get("x-tool").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    axum::Json(json!({"method": "POST", "id": id, "body": body, "header": h}))
                }),
            )
            .route("/slow/{id}", get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }))
            .route("/fail/{id}", post(|| async { (axum::http::StatusCode::BAD_GATEWAY, "upstream down") }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn http_tool_substitutes_url_and_sends_body_or_query() {
        let base = serve().await;
        let t = tool(HttpMethod::Post, format!("{base}/orders/{{id}}"), 2000);
        let r = run_http_tool(&t, &json!({"id": "A 1/2", "qty": 3})).await.unwrap();
        assert_eq!(r, json!({"method": "POST", "id": "A 1/2", "body": {"qty": 3}, "header": "yes"}));
        let t = tool(HttpMethod::Get, format!("{base}/orders/{{id}}"), 2000);
        let r = run_http_tool(&t, &json!({"id": "42", "qty": 2})).await.unwrap();
        assert_eq!(r, json!({"method": "GET", "id": "42", "query": {"qty": "2"}}));
    }

    #[tokio::test]
    async fn http_tool_errors_timeout_status_and_bad_args() {
        let base = serve().await;
        let t = tool(HttpMethod::Get, format!("{base}/slow/{{id}}"), 200);
        let started = std::time::Instant::now();
        let e = run_http_tool(&t, &json!({"id": "1"})).await.unwrap_err();
        assert!(e.contains("timed out after 200 ms"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let t = tool(HttpMethod::Post, format!("{base}/fail/{{id}}"), 2000);
        let e = run_http_tool(&t, &json!({"id": "1"})).await.unwrap_err();
        assert!(e.contains("HTTP 502") && e.contains("upstream down"), "{e}");
        let e = run_http_tool(&t, &json!({"qty": 1})).await.unwrap_err();
        assert_eq!(e, "missing required argument `id`");
        let e = run_http_tool(&t, &json!({"id": "1", "qty": "many"})).await.unwrap_err();
        assert!(e.contains("`qty` must be of type integer"), "{e}");
    }

    #[test]
    fn builtin_schemas_validate_arguments() {
        let dtmf = BuiltinTool::SendDtmf.spec().parameters;
        assert!(validate_args(&dtmf, &json!({"digits": "12*#A"})).is_ok());
        assert!(validate_args(&dtmf, &json!({"digits": "12x"})).is_err());
        assert!(validate_args(&dtmf, &json!({})).is_err());
        assert!(validate_args(&dtmf, &json!("12")).is_err());
        for t in BuiltinTool::ALL {
            assert_eq!(BuiltinTool::from_name(t.name()), Some(t));
            check_schema(&t.spec().parameters).unwrap();
        }
        let intent = set_intent_spec(&["billing".into()]).parameters;
        assert!(validate_args(&intent, &json!({"intent": "billing"})).is_ok());
        assert!(validate_args(&intent, &json!({"intent": "sales"})).is_err());
    }

    #[test]
    fn confirm_appointment_needs_all_fields() {
        let ok = confirm_appointment(&json!({"date": "2025-03-05", "time": "14:00", "name": "Anna"})).unwrap();
        assert_eq!(ok, json!({"confirmed": true, "date": "2025-03-05", "time": "14:00", "name": "Anna"}));
        assert!(confirm_appointment(&json!({"date": "2025-03-05"})).is_err());
    }

    #[test]
    fn schema_check_at_load() {
        assert!(check_schema(&json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})).is_ok());
        assert!(check_schema(&json!({"type": "string"})).is_err());
        assert!(check_schema(&json!({"type": "object", "required": ["a"]})).is_err());
        assert!(check_schema(&json!({"type": "object", "properties": {"a": {"type": "text"}}})).is_err());
        assert_eq!(placeholders("http://x/{a}/b/{ c }"), vec!["a".to_string(), "c".to_string()]);
    }
}
