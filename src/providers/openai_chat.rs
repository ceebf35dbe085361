//! OpenAI-compatible chat completions with streaming and tool calls: OpenAI,
//! Ollama (`http://localhost:11434/v1`), vLLM and the llama.cpp server.
//!
//! Wire protocol (OpenAI API reference, "Create chat completion" and the
//! "chat completion chunk" object): `POST {base_url}/chat/completions` with
//! `stream: true`, `Authorization: Bearer` when a key is configured. The reply
//! is SSE: each `data:` line is a `chat.completion.chunk`; the stream ends
//! with `data: [DONE]`. `choices[0].delta.content` carries text;
//! `choices[0].delta.tool_calls[]` carries tool-call deltas keyed by `index`
//! (the first delta of a call has `id` and `function.name`, later ones append
//! `function.arguments` fragments); `finish_reason` (`tool_calls`, `stop`,
//! `length`) closes the choice. A chunk with empty `choices` carries usage.
//! A chunk with an `error` object reports a failure mid-stream.
//!
//! [`ChatCompletionsDecoder`] is the sans-IO half; [`OpenAiChat`] the HTTP edge.

use super::llm::{self, LlmConfig, LlmConfigError, SseEvent, StreamDecoder};
use super::{ChatMessage, LlmEvent, LlmProvider, ProviderError, Role, ToolSpec};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio::sync::mpsc;

/// An OpenAI-compatible chat-completions endpoint.
pub struct OpenAiChat {
    /// Where and how to ask.
    ep: llm::Endpoint,
}

impl OpenAiChat {
    /// A provider for `cfg` with the resolved key (see
    /// [`LlmConfig::resolve_api_key`]).
    pub fn new(cfg: &LlmConfig, api_key: Option<String>) -> Result<Self, LlmConfigError> {
        Ok(Self { ep: llm::Endpoint::new(cfg, api_key, "/chat/completions")? })
    }

    /// The JSON request body for `messages` and `tools`.
    pub fn request_body(&self, messages: &[ChatMessage], tools: &[ToolSpec]) -> Value {
        let mut body = json!({
            "model": self.ep.model,
            "messages": messages.iter().map(wire_message).collect::<Vec<_>>(),
            "stream": true,
            "max_tokens": self.ep.max_tokens,
        });
        if let Some(t) = self.ep.temperature {
            body["temperature"] = json!(t);
        }
        if !tools.is_empty() {
            body["tools"] = tools
                .iter()
                .map(|t| {
                    json!({
                        "type": "function",
                        "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                    })
                })
                .collect();
        }
        body
    }
}

#[async_trait]
impl LlmProvider for OpenAiChat {
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
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&self.request_body(messages, tools));
        if let Some(key) = &self.ep.api_key {
            request = request.bearer_auth(key);
        }
        let response = llm::send(request).await?;
        Ok(llm::spawn_pump(response, ChatCompletionsDecoder::new()))
    }
}

/// One message in OpenAI's shape.
fn wire_message(m: &ChatMessage) -> Value {
    match m.role {
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": m.tool_call_id.as_deref().unwrap_or_default(),
            "content": m.content,
        }),
        Role::Assistant if !m.tool_calls.is_empty() => json!({
            "role": "assistant",
            "content": if m.content.is_empty() { Value::Null } else { json!(m.content) },
            "tool_calls": m.tool_calls.iter().map(|c| json!({
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            })).collect::<Vec<_>>(),
        }),
        role => json!({"role": role, "content": m.content}),
    }
}

/// A tool call being assembled from deltas.
#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Sans-IO decoder of a chat-completions SSE stream (see the module docs).
///
/// Tool calls are emitted, in `index` order, when the choice finishes (any
/// `finish_reason`: some servers say `stop` after tool calls) or at
/// `[DONE]`. A stream that ends without `[DONE]` is complete if a
/// `finish_reason` was seen, otherwise it is a `Retryable` error.
#[derive(Debug, Default)]
pub struct ChatCompletionsDecoder {
    /// Calls under assembly, by `index`.
    calls: BTreeMap<u64, PartialCall>,
    /// A `finish_reason` arrived.
    finished: bool,
    /// `Done` was returned.
    done: bool,
}

impl ChatCompletionsDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// One `data:` payload.
    pub fn handle_data(&mut self, data: &str) -> Result<Vec<LlmEvent>, ProviderError> {
        if self.done {
            return Ok(Vec::new());
        }
        if data.trim() == "[DONE]" {
            return self.complete();
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::Retryable(format!("unparseable stream chunk ({e}): {data}"))
        })?;
        if let Some(error) = chunk.get("error") {
            return Err(stream_error(error));
        }
        let mut out = Vec::new();
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            })
        else {
            return Ok(out); // usage-only chunk
        };
        if let Some(delta) = choice.get("delta") {
            for field in ["content", "refusal"] {
                if let Some(text) = delta.get(field).and_then(Value::as_str)
                    && !text.is_empty()
                {
                    out.push(LlmEvent::Text(text.to_owned()));
                }
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, call) in calls.iter().enumerate() {
                    let index = call
                        .get("index")
                        .and_then(Value::as_u64)
                        .unwrap_or(position as u64);
                    let partial = self.calls.entry(index).or_default();
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        partial.id.push_str(id);
                    }
                    if let Some(f) = call.get("function") {
                        if let Some(name) = f.get("name").and_then(Value::as_str) {
                            partial.name.push_str(name);
                        }
                        if let Some(args) = f.get("arguments").and_then(Value::as_str) {
                            partial.arguments.push_str(args);
                        }
                    }
                }
            }
        }
        if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
            self.finished = true;
            out.extend(self.take_calls()?);
        }
        Ok(out)
    }

    /// `[DONE]`: any calls still pending, then `Done`.
    fn complete(&mut self) -> Result<Vec<LlmEvent>, ProviderError> {
        let mut out = self.take_calls()?;
        out.push(LlmEvent::Done);
        self.done = true;
        Ok(out)
    }

    fn take_calls(&mut self) -> Result<Vec<LlmEvent>, ProviderError> {
        std::mem::take(&mut self.calls)
            .into_iter()
            .map(|(index, c)| {
                let id = if c.id.is_empty() {
                    format!("call_{index}")
                } else {
                    c.id
                };
                let arguments = llm::validate_tool_call(&id, &c.name, &c.arguments)?;
                Ok(LlmEvent::ToolCall {
                    id,
                    name: c.name,
                    arguments,
                })
            })
            .collect()
    }
}

impl StreamDecoder for ChatCompletionsDecoder {
    fn handle_event(&mut self, event: &SseEvent) -> Result<Vec<LlmEvent>, ProviderError> {
        self.handle_data(&event.data)
    }

    fn handle_end(&mut self) -> Result<Vec<LlmEvent>, ProviderError> {
        if self.done {
            Ok(Vec::new())
        } else if self.finished {
            self.complete()
        } else {
            Err(ProviderError::Retryable(
                "stream ended before the reply was complete".to_owned(),
            ))
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

/// An `error` object inside the stream.
fn stream_error(error: &Value) -> ProviderError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string());
    let kind = error
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let code = error.get("code").map(|c| c.to_string()).unwrap_or_default();
    if kind.contains("rate_limit") || code.contains("rate_limit") {
        ProviderError::RateLimited { retry_after: None }
    } else if kind.contains("server_error") || kind.contains("overloaded") || kind.is_empty() {
        ProviderError::Retryable(format!("stream error: {message}"))
    } else {
        ProviderError::Fatal(format!("stream error ({kind}): {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ToolCallMsg;

    fn decode(lines: &[&str]) -> Vec<Result<Vec<LlmEvent>, ProviderError>> {
        let mut d = ChatCompletionsDecoder::new();
        lines.iter().map(|l| d.handle_data(l)).collect()
    }

    #[test]
    fn text_then_done() {
        let got = decode(&[
            r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}"#,
            "[DONE]",
        ]);
        let flat: Vec<LlmEvent> = got.into_iter().flat_map(Result::unwrap).collect();
        assert_eq!(flat, vec![LlmEvent::Text("Hi".into()), LlmEvent::Done]);
    }

    #[test]
    fn tool_call_fragments_assemble_by_index() {
        let mut d = ChatCompletionsDecoder::new();
        let first = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":""}}]},"finish_reason":null}]}"#;
        assert!(d.handle_data(first).unwrap().is_empty());
        for frag in [r#"{"ord"#, r#"er": "#, r#"42}"#] {
            let chunk = json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":frag}}]},"finish_reason":null}]});
            assert!(d.handle_data(&chunk.to_string()).unwrap().is_empty());
        }
        let end = d
            .handle_data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#)
            .unwrap();
        assert_eq!(
            end,
            vec![LlmEvent::ToolCall {
                id: "call_1".into(),
                name: "lookup".into(),
                arguments: r#"{"order": 42}"#.into()
            }]
        );
        assert_eq!(d.handle_data("[DONE]").unwrap(), vec![LlmEvent::Done]);
    }

    #[test]
    fn stream_end_after_finish_reason_completes_but_early_end_is_retryable() {
        let mut d = ChatCompletionsDecoder::new();
        d.handle_data(
            r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}"#,
        )
        .unwrap();
        assert_eq!(d.handle_end().unwrap(), vec![LlmEvent::Done]);
        let mut d = ChatCompletionsDecoder::new();
        d.handle_data(r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}"#)
            .unwrap();
        assert!(matches!(d.handle_end(), Err(ProviderError::Retryable(_))));
    }

    #[test]
    fn malformed_arguments_and_stream_errors() {
        let got = decode(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{\"a\":"}}]},"finish_reason":"tool_calls"}]}"#,
        ]);
        let Err(ProviderError::Fatal(m)) = &got[0] else {
            panic!("{got:?}")
        };
        assert!(m.contains("malformed tool call"));
        let got =
            decode(&[r#"{"error":{"message":"The server had an error","type":"server_error"}}"#]);
        assert!(matches!(got[0], Err(ProviderError::Retryable(_))));
        let got = decode(&["not json"]);
        assert!(matches!(got[0], Err(ProviderError::Retryable(_))));
    }

    #[test]
    fn messages_round_trip_tool_calls_in_openai_shape() {
        let call = ToolCallMsg {
            id: "call_1".into(),
            name: "lookup".into(),
            arguments: r#"{"order":42}"#.into(),
        };
        assert_eq!(
            wire_message(&ChatMessage::assistant_tool_calls("", vec![call])),
            json!({"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"order\":42}"}}]})
        );
        assert_eq!(
            wire_message(&ChatMessage::tool_result("call_1", "shipped")),
            json!({"role":"tool","tool_call_id":"call_1","content":"shipped"})
        );
        assert_eq!(
            wire_message(&ChatMessage::system("be brief")),
            json!({"role":"system","content":"be brief"})
        );
    }
}
