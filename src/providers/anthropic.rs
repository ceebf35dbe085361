//! Anthropic Messages API with streaming and tool use.
//!
//! Wire protocol (Anthropic docs "Messages", "Streaming Messages", "Tool
//! use"): `POST {base_url}/v1/messages` with `x-api-key`,
//! `anthropic-version: 2023-06-01` and `stream: true`. System messages go in
//! the top-level `system` field; tools are `{name, description,
//! input_schema}`; an assistant turn's tool calls are `tool_use` content
//! blocks and their results `tool_result` blocks in the next user turn
//! (consecutive messages of one role are merged, so parallel results share
//! one user turn as the API requires).
//!
//! The reply is SSE with named events: `message_start`,
//! `content_block_start` (a `text` block, or a `tool_use` block with `id` and
//! `name`), `content_block_delta` (`text_delta.text`,
//! `input_json_delta.partial_json`), `content_block_stop` (a tool call is
//! complete), `message_delta` (`stop_reason`), `message_stop`, `ping`, and
//! `error` (`overloaded_error`, `api_error`, …). Unknown events and delta
//! types (thinking, citations) are ignored, as the docs ask.
//!
//! [`MessagesDecoder`] is the sans-IO half; [`AnthropicMessages`] the HTTP edge.

use super::llm::{self, LlmConfig, LlmConfigError, SseEvent, StreamDecoder};
use super::{ChatMessage, LlmEvent, LlmProvider, ProviderError, Role, ToolSpec};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// The API version skald speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// An Anthropic Messages endpoint.
pub struct AnthropicMessages {
    /// Where and how to ask.
    ep: llm::Endpoint,
}

impl AnthropicMessages {
    /// A provider for `cfg` with the resolved key (see
    /// [`LlmConfig::resolve_api_key`]).
    pub fn new(cfg: &LlmConfig, api_key: Option<String>) -> Result<Self, LlmConfigError> {
        Ok(Self { ep: llm::Endpoint::new(cfg, api_key, "/v1/messages")? })
    }

    /// The JSON request body for `messages` and `tools`.
    pub fn request_body(&self, messages: &[ChatMessage], tools: &[ToolSpec]) -> Value {
        let system: Vec<&str> = messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let mut body = json!({
            "model": self.ep.model,
            "max_tokens": self.ep.max_tokens,
            "messages": wire_messages(messages),
            "stream": true,
        });
        if !system.is_empty() {
            body["system"] = json!(system.join("\n\n"));
        }
        if let Some(t) = self.ep.temperature {
            body["temperature"] = json!(t.min(1.0));
        }
        if !tools.is_empty() {
            body["tools"] = tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
                .collect();
        }
        body
    }
}

#[async_trait]
impl LlmProvider for AnthropicMessages {
    fn name(&self) -> &str {
        &self.ep.name
    }

    async fn stream(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
    ) -> Result<mpsc::Receiver<Result<LlmEvent, ProviderError>>, ProviderError> {
        let mut request = self
            .ep
            .client
            .post(&self.ep.url)
            .timeout(self.ep.timeout)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&self.request_body(messages, tools));
        if let Some(key) = &self.ep.api_key {
            request = request.header("x-api-key", key);
        }
        let response = llm::send(request).await?;
        Ok(llm::spawn_pump(response, MessagesDecoder::new()))
    }
}

/// The conversation without system messages, as Anthropic turns of content
/// blocks; consecutive turns of one role merged; empty text dropped.
fn wire_messages(messages: &[ChatMessage]) -> Vec<Value> {
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System => continue,
            Role::User => ("user", text_block(&m.content)),
            Role::Tool => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.as_deref().unwrap_or_default(),
                    "content": m.content,
                })],
            ),
            Role::Assistant => {
                let mut blocks = text_block(&m.content);
                blocks.extend(m.tool_calls.iter().map(|c| {
                    let input = serde_json::from_str::<Value>(&c.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input})
                }));
                ("assistant", blocks)
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

fn text_block(text: &str) -> Vec<Value> {
    if text.trim().is_empty() {
        Vec::new()
    } else {
        vec![json!({"type": "text", "text": text})]
    }
}

/// A `tool_use` block being assembled.
#[derive(Debug)]
struct ToolUse {
    id: String,
    name: String,
    /// Concatenated `partial_json`.
    json: String,
    /// `input` from `content_block_start`, used when no deltas arrive.
    initial: Value,
}

/// Sans-IO decoder of a Messages SSE stream (see the module docs).
#[derive(Debug, Default)]
pub struct MessagesDecoder {
    /// Open tool-use blocks by content-block index.
    tool_uses: HashMap<u64, ToolUse>,
    /// `stop_reason` from `message_delta`.
    stop_reason: Option<String>,
    /// `Done` was returned.
    done: bool,
}

impl MessagesDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Why the model stopped (`end_turn`, `tool_use`, `max_tokens`), once known.
    pub fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }

    /// One `data:` payload (its `type` names the event).
    pub fn handle_data(&mut self, data: &str) -> Result<Vec<LlmEvent>, ProviderError> {
        if self.done {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::Retryable(format!("unparseable stream event ({e}): {data}"))
        })?;
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        let mut out = Vec::new();
        match v.get("type").and_then(Value::as_str).unwrap_or_default() {
            "content_block_start" => {
                let block = &v["content_block"];
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => push_text(&mut out, block.get("text")),
                    Some("tool_use") => {
                        let s = |k: &str| {
                            block
                                .get(k)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let initial = block.get("input").cloned().unwrap_or_else(|| json!({}));
                        self.tool_uses.insert(
                            index,
                            ToolUse {
                                id: s("id"),
                                name: s("name"),
                                json: String::new(),
                                initial,
                            },
                        );
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = &v["delta"];
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => push_text(&mut out, delta.get("text")),
                    Some("input_json_delta") => {
                        let Some(tool) = self.tool_uses.get_mut(&index) else {
                            return Err(ProviderError::Fatal(format!(
                                "{} {index}: input_json_delta for an unknown block",
                                llm::MALFORMED_TOOL_CALL
                            )));
                        };
                        tool.json.push_str(
                            delta
                                .get("partial_json")
                                .and_then(Value::as_str)
                                .unwrap_or_default(),
                        );
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(tool) = self.tool_uses.remove(&index) {
                    let arguments = if tool.json.trim().is_empty() {
                        tool.initial.to_string()
                    } else {
                        tool.json
                    };
                    let arguments = llm::validate_tool_call(&tool.id, &tool.name, &arguments)?;
                    if tool.id.is_empty() {
                        return Err(ProviderError::Fatal(format!(
                            "{} {}: no id",
                            llm::MALFORMED_TOOL_CALL,
                            tool.name
                        )));
                    }
                    out.push(LlmEvent::ToolCall {
                        id: tool.id,
                        name: tool.name,
                        arguments,
                    });
                }
            }
            "message_delta" => {
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_owned());
                }
            }
            "message_stop" => {
                self.done = true;
                out.push(LlmEvent::Done);
            }
            "error" => return Err(stream_error(&v["error"])),
            _ => {} // message_start, ping, unknown
        }
        Ok(out)
    }
}

fn push_text(out: &mut Vec<LlmEvent>, text: Option<&Value>) {
    if let Some(text) = text.and_then(Value::as_str)
        && !text.is_empty()
    {
        out.push(LlmEvent::Text(text.to_owned()));
    }
}

/// An `error` event's `error` object.
fn stream_error(error: &Value) -> ProviderError {
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let text = format!("{kind}: {message}");
    match kind {
        "overloaded_error" | "api_error" | "timeout_error" => ProviderError::Retryable(text),
        "rate_limit_error" => ProviderError::RateLimited { retry_after: None },
        "authentication_error" | "permission_error" => ProviderError::Auth(text),
        _ => ProviderError::Fatal(text),
    }
}

impl StreamDecoder for MessagesDecoder {
    fn handle_event(&mut self, event: &SseEvent) -> Result<Vec<LlmEvent>, ProviderError> {
        self.handle_data(&event.data)
    }

    fn handle_end(&mut self) -> Result<Vec<LlmEvent>, ProviderError> {
        if self.done {
            Ok(Vec::new())
        } else {
            Err(ProviderError::Retryable(
                "stream ended before message_stop".to_owned(),
            ))
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ToolCallMsg;

    #[test]
    fn text_and_tool_use_blocks() {
        let mut d = MessagesDecoder::new();
        let mut out = Vec::new();
        for data in [
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"m","stop_reason":null,"usage":{"input_tokens":5,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"lookup","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"order\":"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" 42}"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"now","input":{}}}"#,
            r#"{"type":"content_block_stop","index":2}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":20}}"#,
            r#"{"type":"message_stop"}"#,
        ] {
            out.extend(d.handle_data(data).unwrap());
        }
        assert_eq!(
            out,
            vec![
                LlmEvent::Text("Checking".into()),
                LlmEvent::ToolCall {
                    id: "toolu_1".into(),
                    name: "lookup".into(),
                    arguments: r#"{"order": 42}"#.into()
                },
                LlmEvent::ToolCall {
                    id: "toolu_2".into(),
                    name: "now".into(),
                    arguments: "{}".into()
                },
                LlmEvent::Done,
            ]
        );
        assert_eq!(d.stop_reason(), Some("tool_use"));
        assert!(d.is_done());
    }

    #[test]
    fn errors_map_by_type_and_early_end_is_retryable() {
        let mut d = MessagesDecoder::new();
        let e = d.handle_data(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(
            e,
            Err(ProviderError::Retryable(
                "overloaded_error: Overloaded".into()
            ))
        );
        let e = d.handle_data(
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#,
        );
        assert!(matches!(e, Err(ProviderError::Fatal(_))));
        let e = d.handle_data(
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}"#,
        );
        assert!(matches!(e, Err(ProviderError::RateLimited { .. })));
        assert!(matches!(d.handle_end(), Err(ProviderError::Retryable(_))));
        let mut d = MessagesDecoder::new();
        d.handle_data(r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#).unwrap();
        d.handle_data(r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\": tru"}}"#).unwrap();
        let Err(ProviderError::Fatal(m)) =
            d.handle_data(r#"{"type":"content_block_stop","index":0}"#)
        else {
            panic!("malformed input accepted")
        };
        assert!(m.contains("malformed tool call"));
    }

    #[test]
    fn conversation_maps_to_blocks_with_merged_tool_results() {
        let calls = vec![
            ToolCallMsg {
                id: "toolu_1".into(),
                name: "a".into(),
                arguments: r#"{"x":1}"#.into(),
            },
            ToolCallMsg {
                id: "toolu_2".into(),
                name: "b".into(),
                arguments: String::new(),
            },
        ];
        let msgs = [
            ChatMessage::system("sys"),
            ChatMessage::user("hi"),
            ChatMessage::assistant_tool_calls("One moment.", calls),
            ChatMessage::tool_result("toolu_1", "r1"),
            ChatMessage::tool_result("toolu_2", "r2"),
        ];
        assert_eq!(
            Value::Array(wire_messages(&msgs)),
            json!([
                {"role":"user","content":[{"type":"text","text":"hi"}]},
                {"role":"assistant","content":[
                    {"type":"text","text":"One moment."},
                    {"type":"tool_use","id":"toolu_1","name":"a","input":{"x":1}},
                    {"type":"tool_use","id":"toolu_2","name":"b","input":{}}]},
                {"role":"user","content":[
                    {"type":"tool_result","tool_use_id":"toolu_1","content":"r1"},
                    {"type":"tool_result","tool_use_id":"toolu_2","content":"r2"}]},
            ])
        );
    }
}
