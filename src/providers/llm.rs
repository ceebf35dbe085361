//! Shared parts of the cloud LLM providers: configuration, the SSE line
//! parser, HTTP error mapping, the stream pump, the retry/timeout/fallback
//! wrapper [`FallbackLlm`] and the [`SentenceChunker`] that turns streamed
//! tokens into sentences for TTS.
//!
//! The wire protocols live in [`super::openai_chat`] (OpenAI-compatible chat
//! completions: OpenAI, Ollama, vLLM, llama.cpp server) and
//! [`super::anthropic`] (Anthropic Messages). Each splits into a sans-IO
//! decoder (SSE events in, [`LlmEvent`]s out, unit-tested without sockets)
//! and a thin reqwest edge that feeds it bytes through [`SseParser`].
//!
//! # Server-sent events
//! [`SseParser`] follows the WHATWG "event stream interpretation": lines end
//! in CR, LF or CRLF; `:` starts a comment; `data:` lines of one event are
//! joined with LF; a blank line dispatches the event. One leniency: a
//! complete `data:` line still pending when the stream ends is dispatched
//! (some servers omit the final blank line); a partial line never is.
//!
//! # Errors
//! HTTP status → [`ProviderError`]: 401/403 → `Auth`, 429 → `RateLimited`
//! (with `Retry-After`/`retry-after-ms`), 408/409 and 5xx (incl. Anthropic's
//! 529) → `Retryable`, other 4xx → `Fatal` with the provider's own message.
//! A connection that breaks mid-stream, or a stream that ends before the
//! reply is complete, is a `Retryable` error on the channel. A tool call whose
//! arguments are not a JSON object is `Fatal("malformed tool call …")`: the
//! agent layer re-asks the model, then falls back to a fixed phrase.
//!
//! # Fallback policy ([`FallbackLlm`])
//! Providers are tried in order. A provider is *committed* once its first
//! event arrives: until then every failure (an error before the first event,
//! a stream that closes empty, the first-token timeout) is recorded and the
//! next attempt starts; after it, errors go to the caller, because the caller
//! may already have heard part of the reply. An error the provider reported
//! as `Retryable` or `RateLimited` is retried once on the same provider after
//! a backoff (`Retry-After` when given, unless longer than
//! [`FallbackLlm::with_max_retry_wait`]: a caller on the phone cannot wait
//! that long, so the next provider is tried instead). A first-token timeout
//! is not retried on the same provider: a stalled provider gets the next one
//! its chance sooner. `Auth` and `Fatal` move on at once; `Cancelled` stops.
//! The overall timeout bounds one attempt from request to last event.

use super::anthropic::AnthropicMessages;
use super::openai_chat::OpenAiChat;
use super::{ChatMessage, LlmEvent, LlmProvider, ProviderError, ToolSpec};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Events buffered between a provider's HTTP stream and its consumer.
pub(crate) const CHANNEL_CAPACITY: usize = 64;

/// Which wire protocol a configured LLM speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmKind {
    /// OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp server).
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// No model: says back the caller's last words at once
    /// ([`super::standin::EchoLlm`]), for load tests; `model` is not needed.
    Echo,
}

/// One configured LLM (an entry of the fallback list). The key itself never
/// sits in a file: `api_key_env` names the environment variable holding it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// Wire protocol.
    pub kind: LlmKind,
    /// Name for records and reports (`ollama`, `openai`); defaults to the kind.
    #[serde(default)]
    pub name: Option<String>,
    /// API root: `https://api.openai.com/v1`, `http://localhost:11434/v1`
    /// (OpenAI-compatible; `/chat/completions` is appended) or
    /// `https://api.anthropic.com` (`/v1/messages` is appended). Defaults to
    /// the vendor's public endpoint.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Model id (`gpt-4o-mini`, `llama3.2`, `claude-sonnet-4-5`); required
    /// but for `echo`.
    #[serde(default)]
    pub model: String,
    /// Environment variable holding the API key; none for local servers
    /// (Ollama, llama.cpp) that need no key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Upper bound on one request, from sending it to the last event, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long to wait for the first event before trying the next provider, ms.
    #[serde(default = "default_first_token_timeout_ms")]
    pub first_token_timeout_ms: u64,
    /// Reply length limit, tokens (required by Anthropic).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature (0..=2; Anthropic accepts 0..=1 and gets it
    /// clamped); the provider's default when absent.
    #[serde(default)]
    pub temperature: Option<f32>,
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_first_token_timeout_ms() -> u64 {
    5_000
}

fn default_max_tokens() -> u32 {
    1024
}

/// Why an [`LlmConfig`] cannot be turned into a provider.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LlmConfigError {
    /// `api_key_env` names a variable that is not set (or is empty).
    #[error("LLM {name}: environment variable {var} (api_key_env) is not set")]
    MissingKey {
        /// The provider's name.
        name: String,
        /// The variable.
        var: String,
    },
    /// A value is out of range or malformed.
    #[error("LLM {name}: {reason}")]
    Invalid {
        /// The provider's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("LLM {name}: HTTP client: {reason}")]
    Client {
        /// The provider's name.
        name: String,
        /// reqwest's reason.
        reason: String,
    },
}

impl LlmConfig {
    /// The name for records: `name`, or the kind (`openai`, `anthropic`).
    pub fn display_name(&self) -> &str {
        match (&self.name, self.kind) {
            (Some(n), _) => n,
            (None, LlmKind::Openai) => "openai",
            (None, LlmKind::Anthropic) => "anthropic",
            (None, LlmKind::Echo) => "echo",
        }
    }

    /// `base_url` without a trailing slash, or the vendor's default.
    pub fn base_url(&self) -> String {
        let url = match (&self.base_url, self.kind) {
            (Some(u), _) => u.as_str(),
            (None, LlmKind::Openai) => "https://api.openai.com/v1",
            (None, LlmKind::Anthropic) => "https://api.anthropic.com",
            (None, LlmKind::Echo) => "http://localhost",
        };
        url.trim_end_matches('/').to_owned()
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The first-token timeout.
    pub fn first_token_timeout(&self) -> Duration {
        Duration::from_millis(self.first_token_timeout_ms)
    }

    /// Checks ranges (no I/O).
    pub fn validate(&self) -> Result<(), LlmConfigError> {
        let invalid = |reason: &str| {
            Err(LlmConfigError::Invalid {
                name: self.display_name().to_owned(),
                reason: reason.to_owned(),
            })
        };
        if self.kind == LlmKind::Echo {
            // No model, no server: nothing to check.
            return Ok(());
        }
        if self.model.trim().is_empty() {
            return invalid("model is empty");
        }
        let url = self.base_url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return invalid("base_url must start with http:// or https://");
        }
        if self.timeout_ms == 0 || self.first_token_timeout_ms == 0 {
            return invalid("timeouts must be > 0");
        }
        if self.max_tokens == 0 {
            return invalid("max_tokens must be > 0");
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return invalid("temperature must be within 0..=2");
        }
        Ok(())
    }

    /// Looks up the key through `env` (pass `|v| std::env::var(v).ok()` in
    /// production, a map in tests). `Ok(None)` when no key is configured.
    pub fn resolve_api_key(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, LlmConfigError> {
        let Some(var) = &self.api_key_env else {
            return Ok(None);
        };
        match env(var) {
            Some(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_owned())),
            _ => Err(LlmConfigError::MissingKey {
                name: self.display_name().to_owned(),
                var: var.clone(),
            }),
        }
    }

    /// Validates the config, resolves the key and builds the provider.
    pub fn build(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Arc<dyn LlmProvider>, LlmConfigError> {
        self.validate()?;
        let key = self.resolve_api_key(env)?;
        Ok(match self.kind {
            LlmKind::Openai => Arc::new(OpenAiChat::new(self, key)?),
            LlmKind::Anthropic => Arc::new(AnthropicMessages::new(self, key)?),
            LlmKind::Echo => Arc::new(super::standin::EchoLlm),
        })
    }
}

/// An HTTP client for one provider: connect timeout bounded by the first-token
/// timeout, rustls.
pub(crate) fn http_client(cfg: &LlmConfig) -> Result<reqwest::Client, LlmConfigError> {
    reqwest::Client::builder()
        .connect_timeout(cfg.first_token_timeout().min(Duration::from_secs(10)))
        .build()
        .map_err(|e| LlmConfigError::Client {
            name: cfg.display_name().to_owned(),
            reason: e.to_string(),
        })
}

// ---------------------------------------------------------------------------
// SSE
// ---------------------------------------------------------------------------

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; `None` means the default type (`message`).
    pub event: Option<String>,
    /// The `data:` lines joined with LF.
    pub data: String,
}

/// Sans-IO server-sent-events parser: [`SseParser::handle_bytes`] in,
/// [`SseParser::poll_event`] out. Chunk boundaries may fall anywhere, even
/// inside a UTF-8 sequence or between CR and LF.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, unterminated line.
    line: Vec<u8>,
    /// The last byte seen was CR (an LF right after it is not a new line).
    after_cr: bool,
    /// Fields of the event being built.
    event: Option<String>,
    data: Option<String>,
    /// Events ready for [`SseParser::poll_event`].
    ready: std::collections::VecDeque<SseEvent>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds received bytes.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.handle_line(&String::from_utf8_lossy(&line));
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                }
            }
        }
    }

    /// The stream ended: a partial line is dropped, a complete but
    /// undispatched event is dispatched.
    pub fn handle_end(&mut self) {
        self.line.clear();
        self.dispatch();
    }

    /// The next complete event, if any.
    pub fn poll_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    fn handle_line(&mut self, line: &str) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {} // id, retry and unknown fields do not matter here
        }
    }

    fn dispatch(&mut self) {
        let event = self.event.take();
        if let Some(data) = self.data.take() {
            self.ready.push_back(SseEvent {
                event: event.filter(|e| !e.is_empty()),
                data,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP edge shared by the providers
// ---------------------------------------------------------------------------

/// A provider's sans-IO stream decoder: SSE events in, [`LlmEvent`]s out.
pub(crate) trait StreamDecoder: Send + 'static {
    /// One SSE event; returns what it completes. An error ends the stream.
    fn handle_event(&mut self, event: &SseEvent) -> Result<Vec<LlmEvent>, ProviderError>;
    /// The server closed the stream; returns what is still owed or why the
    /// reply is incomplete.
    fn handle_end(&mut self) -> Result<Vec<LlmEvent>, ProviderError>;
    /// [`LlmEvent::Done`] has been returned; nothing more to read.
    fn is_done(&self) -> bool;
}

/// Sends `request` and maps a non-success status to a [`ProviderError`].
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    Err(status_error(status.as_u16(), retry_after, &body))
}

/// Maps an HTTP error status and body to a [`ProviderError`].
pub(crate) fn status_error(
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> ProviderError {
    let message = format!("HTTP {status}: {}", error_message(body));
    match status {
        401 | 403 => ProviderError::Auth(message),
        429 => ProviderError::RateLimited { retry_after },
        408 | 409 | 500..=599 => ProviderError::Retryable(message),
        _ => ProviderError::Fatal(message),
    }
}

/// The provider's error message: `error.message` (OpenAI, Anthropic),
/// `error` as a string (Ollama), else the body, shortened.
pub(crate) fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(m) = v.pointer("/error/message").and_then(|m| m.as_str()) {
            return m.to_owned();
        }
        if let Some(m) = v.get("error").and_then(|m| m.as_str()) {
            return m.to_owned();
        }
    }
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_owned(),
    }
}

/// `retry-after-ms` (OpenAI) or `Retry-After` in seconds. HTTP dates are
/// ignored (no provider here sends them).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = value("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    value("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn transport_error(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Retryable(format!("timed out: {e}"))
    } else if e.is_connect() {
        ProviderError::Retryable(format!("cannot connect: {e}"))
    } else if e.is_body() || e.is_decode() {
        ProviderError::Retryable(format!("connection lost mid-stream: {e}"))
    } else {
        ProviderError::Retryable(format!("request failed: {e}"))
    }
}

/// Reads `response` as SSE on a task, decodes it and streams the events.
/// Dropping the receiver stops the task and closes the connection.
pub(crate) fn spawn_pump(
    mut response: reqwest::Response,
    mut decoder: impl StreamDecoder,
) -> mpsc::Receiver<Result<LlmEvent, ProviderError>> {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    tokio::spawn(async move {
        let mut parser = SseParser::new();
        loop {
            let chunk = tokio::select! {
                _ = tx.closed() => return,
                chunk = response.chunk() => chunk,
            };
            let ended = match chunk {
                Ok(Some(bytes)) => {
                    parser.handle_bytes(&bytes);
                    false
                }
                Ok(None) => {
                    parser.handle_end();
                    true
                }
                Err(e) => {
                    let _ = tx.send(Err(transport_error(e))).await;
                    return;
                }
            };
            while let Some(event) = parser.poll_event() {
                if !forward(&tx, decoder.handle_event(&event)).await || decoder.is_done() {
                    return;
                }
            }
            if ended {
                forward(&tx, decoder.handle_end()).await;
                return;
            }
        }
    });
    rx
}

/// Sends decoded events; false when the stream must stop (error or
/// receiver gone).
async fn forward(
    tx: &mpsc::Sender<Result<LlmEvent, ProviderError>>,
    decoded: Result<Vec<LlmEvent>, ProviderError>,
) -> bool {
    match decoded {
        Ok(events) => {
            for event in events {
                if tx.send(Ok(event)).await.is_err() {
                    return false;
                }
            }
            true
        }
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            false
        }
    }
}

/// How every malformed-tool-call error message starts (see
/// [`is_malformed_tool_call`]).
pub const MALFORMED_TOOL_CALL: &str = "malformed tool call";

/// The model produced a tool call that cannot be run (no name, or arguments
/// that are not a JSON object). The agent layer answers this with one re-ask
/// ([`malformed_tool_call_reask`]) and then a fallback phrase; it is `Fatal`
/// only in the sense that resending the same request will not help.
pub fn is_malformed_tool_call(error: &ProviderError) -> bool {
    matches!(error, ProviderError::Fatal(m) if m.starts_with(MALFORMED_TOOL_CALL))
}

/// The message to append before re-asking after a malformed tool call:
/// tells the model what was wrong. `None` for any other error.
pub fn malformed_tool_call_reask(error: &ProviderError) -> Option<ChatMessage> {
    let ProviderError::Fatal(detail) = error else {
        return None;
    };
    is_malformed_tool_call(error).then(|| {
        ChatMessage::user(format!(
            "(system note: your last tool call could not be run: {detail}. \
             Call the tool again with arguments that are one valid JSON object \
             matching its schema, or answer without the tool.)"
        ))
    })
}

/// Checks a finished tool call: a name, and arguments that are a JSON object
/// (empty arguments mean `{}`). Returns the arguments to emit.
pub(crate) fn validate_tool_call(
    id: &str,
    name: &str,
    arguments: &str,
) -> Result<String, ProviderError> {
    if name.trim().is_empty() {
        return Err(ProviderError::Fatal(format!(
            "{MALFORMED_TOOL_CALL} {id}: no tool name"
        )));
    }
    if arguments.trim().is_empty() {
        return Ok("{}".to_owned());
    }
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(serde_json::Value::Object(_)) => Ok(arguments.to_owned()),
        Ok(_) => Err(ProviderError::Fatal(format!(
            "{MALFORMED_TOOL_CALL} {id} ({name}): arguments are not a JSON object: {arguments}"
        ))),
        Err(e) => Err(ProviderError::Fatal(format!(
            "{MALFORMED_TOOL_CALL} {id} ({name}): arguments are not valid JSON ({e}): {arguments}"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Fallback
// ---------------------------------------------------------------------------

/// One entry of a [`FallbackLlm`]: a provider and its timeouts.
#[derive(Clone)]
pub struct FallbackEntry {
    /// The provider.
    pub provider: Arc<dyn LlmProvider>,
    /// Time from the request to its first event before giving up on it.
    pub first_token_timeout: Duration,
    /// Time from the request to its last event.
    pub overall_timeout: Duration,
}

impl FallbackEntry {
    /// An entry with the given timeouts.
    pub fn new(
        provider: Arc<dyn LlmProvider>,
        first_token_timeout: Duration,
        overall_timeout: Duration,
    ) -> Self {
        Self {
            provider,
            first_token_timeout,
            overall_timeout,
        }
    }
}

/// Which provider answered a [`FallbackLlm`] request, and why the earlier
/// attempts failed (one line per failed attempt, `name: reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmReport {
    /// The provider whose stream the caller receives.
    pub provider: String,
    /// Failed attempts before it, in order.
    pub failures: Vec<String>,
}

/// Every provider failed: the last error and all attempts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("all LLM providers failed: {}", failures.join("; "))]
pub struct LlmFailure {
    /// The last error (what a single provider would have returned).
    pub error: ProviderError,
    /// Failed attempts, in order.
    pub failures: Vec<String>,
}

/// Tries providers in order with timeouts and one retry (see the module
/// docs for the policy). Also an [`LlmProvider`] itself.
pub struct FallbackLlm {
    /// Providers in order of preference.
    entries: Vec<FallbackEntry>,
    /// Wait before retrying a failed provider when it gave no `Retry-After`.
    backoff: Duration,
    /// Longest `Retry-After` worth waiting for before moving on.
    max_retry_wait: Duration,
}

impl FallbackLlm {
    /// A fallback list (backoff 250 ms, max retry wait 2 s).
    pub fn new(entries: Vec<FallbackEntry>) -> Self {
        Self {
            entries,
            backoff: Duration::from_millis(250),
            max_retry_wait: Duration::from_secs(2),
        }
    }

    /// Builds every configured provider, in order.
    pub fn from_configs(
        configs: &[LlmConfig],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LlmConfigError> {
        let entries = configs
            .iter()
            .map(|c| {
                Ok(FallbackEntry::new(
                    c.build(&env)?,
                    c.first_token_timeout(),
                    c.timeout(),
                ))
            })
            .collect::<Result<Vec<_>, LlmConfigError>>()?;
        Ok(Self::new(entries))
    }

    /// Sets the wait before a retry when the provider gave no `Retry-After`.
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the longest `Retry-After` worth waiting for.
    pub fn with_max_retry_wait(mut self, wait: Duration) -> Self {
        self.max_retry_wait = wait;
        self
    }

    /// Names of the providers, in order.
    pub fn provider_names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.provider.name()).collect()
    }

    /// Streams a reply from the first provider that starts one; reports which
    /// one and why the others failed.
    pub async fn stream_with_report(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
    ) -> Result<(mpsc::Receiver<Result<LlmEvent, ProviderError>>, LlmReport), LlmFailure> {
        let mut failures = Vec::new();
        let mut last = ProviderError::Fatal("no LLM provider configured".to_owned());
        for entry in &self.entries {
            let name = entry.provider.name();
            let mut retried = false;
            loop {
                let error = match self.attempt(entry, messages, tools).await {
                    Ok(rx) => {
                        let report = LlmReport {
                            provider: name.to_owned(),
                            failures,
                        };
                        return Ok((rx, report));
                    }
                    Err(e) => e,
                };
                failures.push(format!("{name}: {}", error.describe()));
                let wait = match &error.error {
                    ProviderError::Cancelled => {
                        return Err(LlmFailure {
                            error: ProviderError::Cancelled,
                            failures,
                        });
                    }
                    ProviderError::Retryable(_) if !error.timed_out => Some(self.backoff),
                    ProviderError::RateLimited { retry_after } => {
                        Some(retry_after.unwrap_or(self.backoff))
                            .filter(|w| *w <= self.max_retry_wait)
                    }
                    _ => None,
                };
                last = error.error;
                match wait {
                    Some(wait) if !retried => {
                        retried = true;
                        tokio::time::sleep(wait).await;
                    }
                    _ => break,
                }
            }
        }
        Err(LlmFailure {
            error: last,
            failures,
        })
    }

    /// One request to one provider, up to its first event.
    async fn attempt(
        &self,
        entry: &FallbackEntry,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
    ) -> Result<mpsc::Receiver<Result<LlmEvent, ProviderError>>, AttemptError> {
        let start = Instant::now();
        let first_deadline = start + entry.first_token_timeout.min(entry.overall_timeout);
        let overall_deadline = start + entry.overall_timeout;
        let timed_out = || AttemptError {
            error: ProviderError::Retryable(format!(
                "no first token within {} ms",
                entry.first_token_timeout.as_millis()
            )),
            timed_out: true,
        };
        let reported = |error| AttemptError {
            error,
            timed_out: false,
        };
        let mut upstream =
            tokio::time::timeout_at(first_deadline, entry.provider.stream(messages, tools))
                .await
                .map_err(|_| timed_out())?
                .map_err(reported)?;
        let first = match tokio::time::timeout_at(first_deadline, upstream.recv()).await {
            Err(_) => return Err(timed_out()),
            Ok(None) => {
                return Err(reported(ProviderError::Retryable(
                    "stream closed before any event".to_owned(),
                )));
            }
            Ok(Some(Err(e))) => return Err(reported(e)),
            Ok(Some(Ok(event))) => event,
        };
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let overall_ms = entry.overall_timeout.as_millis();
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => return,
                    next = tokio::time::timeout_at(overall_deadline, upstream.recv()) => next,
                };
                let item = match next {
                    Ok(Some(item)) => item,
                    Ok(None) => return,
                    Err(_) => Err(ProviderError::Retryable(format!(
                        "reply not complete within {overall_ms} ms"
                    ))),
                };
                let stop = !matches!(item, Ok(LlmEvent::Text(_) | LlmEvent::ToolCall { .. }));
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// Why one attempt failed.
struct AttemptError {
    error: ProviderError,
    /// The first-token timeout fired (not retried on the same provider).
    timed_out: bool,
}

impl AttemptError {
    fn describe(&self) -> String {
        if self.timed_out {
            match &self.error {
                ProviderError::Retryable(m) => format!("timeout: {m}"),
                e => e.to_string(),
            }
        } else {
            self.error.to_string()
        }
    }
}

#[async_trait]
impl LlmProvider for FallbackLlm {
    fn name(&self) -> &str {
        "fallback"
    }

    async fn stream(
        &self,
        messages: &[ChatMessage],
        tools: &[ToolSpec],
    ) -> Result<mpsc::Receiver<Result<LlmEvent, ProviderError>>, ProviderError> {
        self.stream_with_report(messages, tools)
            .await
            .map(|(rx, _)| rx)
            .map_err(|f| f.error)
    }
}

// ---------------------------------------------------------------------------
// Sentence chunking for TTS
// ---------------------------------------------------------------------------

/// Turns streamed reply text into sentences for TTS, so speech starts after
/// the first sentence instead of after the whole reply. Sans-IO:
/// [`SentenceChunker::push`] text in, complete sentences out;
/// [`SentenceChunker::finish`] returns the rest.
///
/// A sentence ends at `.`, `!`, `?` or `…` (plus closing quotes/brackets)
/// followed by whitespace, or at a line break; not after a decimal point
/// (`3.5`), a common abbreviation (`Dr.`, `e.g.`) or a single initial (`J.`).
#[derive(Debug, Default, Clone)]
pub struct SentenceChunker {
    /// Text not yet returned.
    pending: String,
}

impl SentenceChunker {
    /// An empty chunker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds streamed text; returns the sentences it completes, trimmed.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        while let Some(end) = self.boundary() {
            let rest = self.pending.split_off(end);
            let sentence = std::mem::replace(&mut self.pending, rest);
            let sentence = sentence.trim();
            if !sentence.is_empty() {
                out.push(sentence.to_owned());
            }
        }
        out
    }

    /// The reply ended: the remaining text, if any.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_owned())
    }

    /// Drops pending text (barge-in).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Byte index just past the first sentence end followed by whitespace.
    fn boundary(&self) -> Option<usize> {
        let chars: Vec<(usize, char)> = self.pending.char_indices().collect();
        for (k, &(i, c)) in chars.iter().enumerate() {
            if c == '\n' {
                return Some(i + 1);
            }
            if !matches!(c, '.' | '!' | '?' | '…') {
                continue;
            }
            let mut j = k + 1;
            while j < chars.len()
                && matches!(
                    chars[j].1,
                    '"' | '\'' | ')' | ']' | '”' | '’' | '.' | '!' | '?'
                )
            {
                j += 1;
            }
            let &(next_i, next) = chars.get(j)?;
            if !next.is_whitespace() {
                continue;
            }
            if c == '.' && self.is_abbreviation(i) {
                continue;
            }
            return Some(next_i);
        }
        None
    }

    /// The word ending at the `.` at byte `dot` is an abbreviation or initial.
    fn is_abbreviation(&self, dot: usize) -> bool {
        const ABBREVIATIONS: &[&str] = &[
            "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no",
            "approx", "mt",
        ];
        let word = self.pending[..dot]
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("");
        let word = word.trim_start_matches(['(', '"', '\'']);
        let lower = word.to_lowercase();
        (word.chars().count() == 1 && word.chars().all(|c| c.is_uppercase()))
            || ABBREVIATIONS.contains(&lower.as_str())
    }
}

/// One configured LLM endpoint, as both wire protocols use it: name,
/// request URL, model, key, limits and the shared HTTP client.
pub(crate) struct Endpoint {
    /// Name for records (`openai`, `ollama`, `anthropic`).
    pub(crate) name: String,
    /// `{base_url}{path}`.
    pub(crate) url: String,
    /// Model id.
    pub(crate) model: String,
    /// The key; `None` for servers that need none.
    pub(crate) api_key: Option<String>,
    /// Reply length limit, tokens.
    pub(crate) max_tokens: u32,
    /// Sampling temperature, when configured.
    pub(crate) temperature: Option<f32>,
    /// Bound on one request.
    pub(crate) timeout: Duration,
    /// Shared connection pool.
    pub(crate) client: reqwest::Client,
}

impl Endpoint {
    /// The endpoint of `cfg` at `path` (e.g. `/chat/completions`) with the
    /// resolved key. Errors: the HTTP client cannot be built.
    pub(crate) fn new(cfg: &LlmConfig, api_key: Option<String>, path: &str) -> Result<Self, LlmConfigError> {
        Ok(Endpoint {
            name: cfg.display_name().to_owned(),
            url: format!("{}{path}", cfg.base_url()),
            model: cfg.model.clone(),
            api_key,
            max_tokens: cfg.max_tokens,
            temperature: cfg.temperature,
            timeout: cfg.timeout(),
            client: http_client(cfg)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(parser: &mut SseParser) -> Vec<SseEvent> {
        std::iter::from_fn(|| parser.poll_event()).collect()
    }

    #[test]
    fn sse_splits_events_on_blank_lines_and_joins_data_lines() {
        let mut p = SseParser::new();
        p.handle_bytes(
            b"event: ping\ndata: {}\n\n: comment\ndata: a\ndata: b\n\ndata:no-space\n\n",
        );
        assert_eq!(
            events(&mut p),
            vec![
                SseEvent {
                    event: Some("ping".into()),
                    data: "{}".into()
                },
                SseEvent {
                    event: None,
                    data: "a\nb".into()
                },
                SseEvent {
                    event: None,
                    data: "no-space".into()
                },
            ]
        );
    }

    #[test]
    fn sse_handles_any_chunking_and_line_ending() {
        let stream = "event: x\r\ndata: héllo\r\n\r\ndata: [DONE]\r\r";
        let whole = {
            let mut p = SseParser::new();
            p.handle_bytes(stream.as_bytes());
            events(&mut p)
        };
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].data, "héllo");
        assert_eq!(whole[1].data, "[DONE]");
        for size in 1..stream.len() {
            let mut p = SseParser::new();
            let mut got = Vec::new();
            for chunk in stream.as_bytes().chunks(size) {
                p.handle_bytes(chunk);
                got.extend(events(&mut p));
            }
            assert_eq!(got, whole, "chunk size {size}");
        }
    }

    #[test]
    fn sse_events_without_data_are_not_dispatched_and_partial_lines_are_dropped_at_end() {
        let mut p = SseParser::new();
        p.handle_bytes(b"event: lonely\n\ndata: complete\ndata: {\"trunc");
        assert!(events(&mut p).is_empty());
        p.handle_end();
        assert_eq!(
            events(&mut p),
            vec![SseEvent {
                event: None,
                data: "complete".into()
            }]
        );
    }

    #[test]
    fn status_mapping() {
        assert!(matches!(
            status_error(401, None, ""),
            ProviderError::Auth(_)
        ));
        assert!(matches!(
            status_error(403, None, ""),
            ProviderError::Auth(_)
        ));
        assert_eq!(
            status_error(429, Some(Duration::from_secs(3)), ""),
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(
            status_error(529, None, ""),
            ProviderError::Retryable(_)
        ));
        assert!(matches!(
            status_error(503, None, ""),
            ProviderError::Retryable(_)
        ));
        let fatal = status_error(
            400,
            None,
            r#"{"error":{"message":"bad model","type":"invalid_request_error"}}"#,
        );
        assert_eq!(fatal, ProviderError::Fatal("HTTP 400: bad model".into()));
        assert_eq!(
            error_message(r#"{"error":"model 'x' not found"}"#),
            "model 'x' not found"
        );
    }

    #[test]
    fn retry_after_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn tool_call_validation() {
        assert_eq!(validate_tool_call("c", "f", "").unwrap(), "{}");
        assert_eq!(
            validate_tool_call("c", "f", r#"{"a":1}"#).unwrap(),
            r#"{"a":1}"#
        );
        for bad in [r#"{"a":"#, "[1]", "nope"] {
            let Err(ProviderError::Fatal(m)) = validate_tool_call("c", "f", bad) else {
                panic!("{bad} accepted")
            };
            assert!(m.starts_with("malformed tool call"), "{m}");
            let err = ProviderError::Fatal(m.clone());
            assert!(is_malformed_tool_call(&err));
            let reask = malformed_tool_call_reask(&err).unwrap();
            assert_eq!(reask.role, crate::providers::Role::User);
            assert!(reask.content.contains(&m), "{}", reask.content);
        }
        assert!(validate_tool_call("c", " ", "{}").is_err());
        let other = ProviderError::Fatal("HTTP 400: bad".into());
        assert!(!is_malformed_tool_call(&other));
        assert_eq!(malformed_tool_call_reask(&other), None);
        assert_eq!(malformed_tool_call_reask(&ProviderError::Cancelled), None);
    }

    #[test]
    fn config_parses_with_defaults_and_resolves_key_from_env() {
        let cfg: LlmConfig = serde_yaml_ng::from_str(
            "kind: openai\nbase_url: http://localhost:11434/v1/\nmodel: llama3.2\napi_key_env: OLLAMA_KEY\n",
        )
        .unwrap();
        assert_eq!(cfg.kind, LlmKind::Openai);
        assert_eq!(cfg.base_url(), "http://localhost:11434/v1");
        assert_eq!(cfg.timeout_ms, 30_000);
        assert_eq!(cfg.first_token_timeout_ms, 5_000);
        assert_eq!(cfg.max_tokens, 1024);
        assert_eq!(cfg.temperature, None);
        cfg.validate().unwrap();
        assert_eq!(
            cfg.resolve_api_key(|v| (v == "OLLAMA_KEY").then(|| "k".into()))
                .unwrap(),
            Some("k".into())
        );
        assert!(matches!(
            cfg.resolve_api_key(|_| None),
            Err(LlmConfigError::MissingKey { .. })
        ));
        assert!(cfg.build(|_| None).is_err());
        assert_eq!(cfg.build(|_| Some("k".into())).unwrap().name(), "openai");

        let cfg: LlmConfig =
            serde_yaml_ng::from_str("kind: anthropic\nmodel: claude\nname: claude\n").unwrap();
        assert_eq!(cfg.base_url(), "https://api.anthropic.com");
        assert_eq!(cfg.resolve_api_key(|_| None).unwrap(), None);
        assert_eq!(cfg.build(|_| None).unwrap().name(), "claude");

        assert!(
            serde_yaml_ng::from_str::<LlmConfig>("kind: openai\nmodel: m\napi_key: sk-secret\n")
                .is_err()
        );
        assert!(serde_yaml_ng::from_str::<LlmConfig>("kind: gemini\nmodel: m\n").is_err());
        let echo: LlmConfig = serde_yaml_ng::from_str("kind: echo\n").unwrap();
        assert_eq!(echo.display_name(), "echo");
        assert_eq!(echo.build(|_| None).unwrap().name(), "echo");
        let no_model: LlmConfig = serde_yaml_ng::from_str("kind: openai\n").unwrap();
        assert!(matches!(no_model.validate(), Err(LlmConfigError::Invalid { reason, .. }) if reason == "model is empty"));
        let bad: LlmConfig =
            serde_yaml_ng::from_str("kind: openai\nmodel: m\ntemperature: 7\n").unwrap();
        assert!(bad.validate().is_err());
        let bad: LlmConfig =
            serde_yaml_ng::from_str("kind: openai\nmodel: m\nbase_url: localhost:1\n").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn chunker_splits_sentences_across_tokens() {
        let mut c = SentenceChunker::new();
        let mut out = Vec::new();
        for token in [
            "Hello",
            " Dr",
            ". Smith",
            "! Your",
            " total is",
            " 3.5 dollars",
            ". Shall",
            " I",
            " go on?",
            " ",
        ] {
            out.extend(c.push(token));
        }
        assert_eq!(
            out,
            vec![
                "Hello Dr. Smith!",
                "Your total is 3.5 dollars.",
                "Shall I go on?"
            ]
        );
        assert_eq!(c.finish(), None);
        assert_eq!(c.push("Tail without end"), Vec::<String>::new());
        assert_eq!(c.finish().as_deref(), Some("Tail without end"));
    }

    #[test]
    fn chunker_keeps_closing_quotes_and_splits_lines() {
        let mut c = SentenceChunker::new();
        assert_eq!(
            c.push("He said \"yes.\" Then\nJ. R. left"),
            vec!["He said \"yes.\"", "Then"]
        );
        assert_eq!(c.finish().as_deref(), Some("J. R. left"));
    }
}
