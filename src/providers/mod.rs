//! Provider traits: speech-to-text, language model and text-to-speech.
//!
//! Every provider streams and can be cancelled by dropping what it returned.
//! Errors are typed so the pipeline can decide: retry ([`ProviderError::Retryable`],
//! [`ProviderError::RateLimited`]), fall back (everything else), or tell the
//! operator ([`ProviderError::Auth`]). The local, offline implementations live
//! in [`local`]; cloud ones (Deepgram streaming WebSocket, OpenAI-compatible
//! SSE chat completions with tool calls, Anthropic Messages, ElevenLabs
//! WebSocket, OpenAI TTS) implement the same traits.
//!
//! Audio crossing these traits is mono PCM16; STT input is always 16 kHz
//! (the pipeline's internal rate); TTS output carries its own rate.

pub mod anthropic;
pub mod cloud;
pub mod deepgram;
pub mod elevenlabs;
pub mod failover;
pub mod llm;
pub mod local;
pub mod openai_chat;
pub mod openai_tts;
pub mod standin;
pub mod tts_cache;
pub mod wer;

use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::mpsc;

/// Why a provider call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// A transient failure (network, 5xx, model busy): retrying may work.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The request can never succeed (bad input, missing model, 4xx).
    #[error("fatal: {0}")]
    Fatal(String),
    /// Credentials missing or rejected (401/403).
    #[error("authentication: {0}")]
    Auth(String),
    /// Over quota (429); retry after the given time if known.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited {
        /// `Retry-After`, when the provider said.
        retry_after: Option<Duration>,
    },
    /// The caller cancelled (barge-in, hangup).
    #[error("cancelled")]
    Cancelled,
}

/// A piece of recognized speech.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// Text, trimmed, normal casing/punctuation as the model gives it.
    pub text: String,
    /// Start of the speech it covers, ms from the start of the stream.
    pub start_ms: u64,
    /// End of the speech it covers, ms from the start of the stream.
    pub end_ms: u64,
    /// Model confidence in 0..=1, when the model reports one.
    pub confidence: Option<f32>,
}

/// What an STT stream reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    /// A partial hypothesis of the current utterance (may change).
    Interim(Transcript),
    /// The final text of an utterance.
    Final(Transcript),
}

/// A speech-to-text engine; [`SttProvider::open`] starts one stream per call.
#[async_trait]
pub trait SttProvider: Send + Sync {
    /// Short name for records and metrics (`moonshine`, `deepgram`).
    fn name(&self) -> &str;
    /// Opens a recognition stream. Errors: `Auth`, `Retryable`, `Fatal`.
    async fn open(&self) -> Result<Box<dyn SttStream>, ProviderError>;
}

/// One recognition stream (one call). Dropping it cancels it.
#[async_trait]
pub trait SttStream: Send {
    /// Feeds caller audio: mono PCM16 at 16 kHz, any length (20 ms frames
    /// typically). Cheap: must not block on inference.
    async fn send_audio(&mut self, pcm: &[i16]) -> Result<(), ProviderError>;
    /// The caller's turn ended (endpointing from the VAD/turn detector): emit
    /// the `Final` for the audio sent since the last one. An utterance with no
    /// speech yields a `Final` with empty text.
    async fn end_utterance(&mut self) -> Result<(), ProviderError>;
    /// Drops audio sent since the last `Final` (a false start).
    async fn discard_utterance(&mut self) -> Result<(), ProviderError>;
    /// A hint, not an end: the caller's voice just stopped inside their
    /// utterance (the VAD's first quiet window; they may go on). A stream
    /// that transcribes in pieces may close one here. Default: nothing.
    async fn word_gap(&mut self) {}
    /// Next event; `None` when the stream has ended. Cancel-safe.
    async fn next_event(&mut self) -> Option<Result<SttEvent, ProviderError>>;
}

/// Chat roles (OpenAI-compatible).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The caller.
    User,
    /// The agent.
    Assistant,
    /// A tool result.
    Tool,
}

/// One message of a conversation.
///
/// Tool turns round-trip: an assistant message carries the tool calls the
/// model made ([`ChatMessage::tool_calls`]), and each result comes back as a
/// [`Role::Tool`] message naming the call it answers
/// ([`ChatMessage::tool_call_id`]). Each provider translates this into its
/// own wire shape (OpenAI `tool_calls`/`tool` messages, Anthropic
/// `tool_use`/`tool_result` blocks).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said (for the agent: what the caller actually heard; for a
    /// tool result: the result text, usually JSON).
    pub content: String,
    /// Tool calls the assistant made in this turn (assistant messages only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallMsg>,
    /// The call this message answers (tool results only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// Instructions for the model.
    pub fn system(content: impl Into<String>) -> Self {
        Self::plain(Role::System, content.into())
    }

    /// What the caller said.
    pub fn user(content: impl Into<String>) -> Self {
        Self::plain(Role::User, content.into())
    }

    /// What the agent said.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::plain(Role::Assistant, content.into())
    }

    /// An assistant turn that called tools (with any text said before them).
    pub fn assistant_tool_calls(content: impl Into<String>, tool_calls: Vec<ToolCallMsg>) -> Self {
        Self {
            tool_calls,
            ..Self::plain(Role::Assistant, content.into())
        }
    }

    /// The result of the tool call `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::plain(Role::Tool, content.into())
        }
    }

    fn plain(role: Role, content: String) -> Self {
        Self {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool call the assistant made, kept in the conversation so its result
/// can follow it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCallMsg {
    /// Call id from the provider (`call_…`, `toolu_…`).
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as JSON text.
    pub arguments: String,
}

/// A tool the model may call (JSON Schema parameters).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolSpec {
    /// Tool name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// What a streaming completion yields.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// More text of the reply.
    Text(String),
    /// A complete tool call.
    ToolCall {
        /// Call id, echoed in the tool result.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments as JSON text.
        arguments: String,
    },
    /// The reply is complete.
    Done,
}

/// A language model with streaming chat completions.
#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// Short name (`openai`, `anthropic`, `ollama`).
    fn name(&self) -> &str;
    /// Streams a reply to `messages`. Drop the receiver to cancel.
    async fn stream(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
    ) -> Result<mpsc::Receiver<Result<LlmEvent, ProviderError>>, ProviderError>;
}

/// A chunk of synthesized speech.
#[derive(Debug, Clone, PartialEq)]
pub struct TtsAudio {
    /// Mono PCM16 samples.
    pub pcm: Vec<i16>,
    /// Their rate, Hz.
    pub sample_rate: u32,
}

/// A text-to-speech engine.
#[async_trait]
pub trait TtsProvider: Send + Sync {
    /// Short name (`piper`, `elevenlabs`).
    fn name(&self) -> &str;
    /// Synthesizes `text` (one sentence or more), streaming audio chunks as
    /// they are ready; the channel closes after the last chunk. Drop the
    /// receiver to cancel (barge-in). Errors: `Fatal` for unusable text or a
    /// broken model, `Retryable` for transient failures.
    async fn synthesize(&self, text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError>;
}
