//! OpenAI text-to-speech over HTTP with a streamed body (OpenAI API reference
//! "Audio → Create speech": `POST {base}/audio/speech`).
//!
//! Request: `Authorization: Bearer KEY`, JSON
//! `{"model","input","voice","response_format":"pcm"}` (+ `instructions`,
//! `speed` when set). With `pcm` the body is raw little-endian PCM16 mono at
//! 24 kHz, sent chunked as it is generated; each body chunk becomes a
//! [`TtsAudio`] as it arrives (a byte left over from an odd split waits for
//! the next chunk). Works with any OpenAI-compatible server (`base_url`).
//!
//! Errors: the status before the body (401/403 `Auth`, 429 `RateLimited`
//! with `Retry-After`, 5xx `Retryable`, other 4xx `Fatal`) and a first byte
//! later than [`OpenAiTtsConfig::first_byte_timeout_ms`] (`Retryable`) are
//! returned by `synthesize`; a stall longer than
//! [`OpenAiTtsConfig::chunk_timeout_ms`] or a broken body mid-stream is the
//! last item on the channel.

use crate::providers::cloud::{self, Pcm16Le};
use crate::providers::{ProviderError, TtsAudio, TtsProvider};
use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::mpsc;

/// OpenAI's `pcm` format rate.
pub const PCM_RATE: u32 = 24_000;

/// Audio chunks buffered before the body reader waits for the pipeline.
const CHANNEL_CAPACITY: usize = 32;

/// OpenAI TTS settings (`tts.openai` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiTtsConfig {
    /// API root (`/audio/speech` is appended); overridable for tests and
    /// compatible servers.
    pub base_url: String,
    /// Model (`gpt-4o-mini-tts`, `tts-1`).
    pub model: String,
    /// Voice (`alloy`, `coral`, …).
    pub voice: String,
    /// Style instructions (gpt-4o-mini-tts only).
    pub instructions: Option<String>,
    /// Speaking rate 0.25..=4.0, when not 1.
    pub speed: Option<f32>,
    /// Name of the environment variable holding the API key.
    pub api_key_env: String,
    /// Give up when the response has not started after this long.
    pub first_byte_timeout_ms: u64,
    /// Give up when the body stalls for this long.
    pub chunk_timeout_ms: u64,
}

impl Default for OpenAiTtsConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini-tts".into(),
            voice: "alloy".into(),
            instructions: None,
            speed: None,
            api_key_env: "OPENAI_API_KEY".into(),
            first_byte_timeout_ms: 5_000,
            chunk_timeout_ms: 5_000,
        }
    }
}

/// OpenAI TTS as a [`TtsProvider`].
#[derive(Debug, Clone)]
pub struct OpenAiTts {
    /// Endpoint, model, voice and timeouts.
    config: OpenAiTtsConfig,
    /// Shared connection pool.
    client: reqwest::Client,
}

/// The request body.
#[derive(Debug, Serialize)]
struct SpeechRequest<'a> {
    model: &'a str,
    input: &'a str,
    voice: &'a str,
    response_format: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speed: Option<f32>,
}

impl OpenAiTts {
    /// A provider with its own connection pool.
    pub fn new(config: OpenAiTtsConfig) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.first_byte_timeout_ms))
            .build()
            .map_err(|e| ProviderError::Fatal(format!("openai-tts: HTTP client: {e}")))?;
        Ok(Self { config, client })
    }

    fn endpoint(&self) -> String {
        format!("{}/audio/speech", self.config.base_url.trim_end_matches('/'))
    }
}

#[async_trait]
impl TtsProvider for OpenAiTts {
    fn name(&self) -> &str {
        "openai-tts"
    }

    async fn synthesize(&self, text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let text = text.trim();
        if text.is_empty() {
            return Ok(rx);
        }
        let cfg = &self.config;
        let key = cloud::api_key(&cfg.api_key_env)?;
        let body = SpeechRequest {
            model: &cfg.model,
            input: text,
            voice: &cfg.voice,
            response_format: "pcm",
            instructions: cfg.instructions.as_deref(),
            speed: cfg.speed,
        };
        let first_byte = Duration::from_millis(cfg.first_byte_timeout_ms);
        let send = self.client.post(self.endpoint()).bearer_auth(key).json(&body).send();
        let response = tokio::time::timeout(first_byte, send)
            .await
            .map_err(|_| ProviderError::Retryable(format!("openai-tts: no response within {first_byte:?}")))?
            .map_err(|e| ProviderError::Retryable(format!("openai-tts: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let retry = cloud::retry_after(response.headers());
            let detail = tokio::time::timeout(first_byte, response.text()).await.ok().and_then(Result::ok);
            return Err(cloud::status_error("openai-tts", status.as_u16(), retry, &detail.unwrap_or_default()));
        }
        let stall = Duration::from_millis(cfg.chunk_timeout_ms);
        tokio::spawn(async move {
            if let Err(e) = stream_body(response, stall, &tx).await {
                tracing::warn!(error = %e, "openai-tts synthesis failed");
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(rx)
    }
}

/// Streams the body as PCM chunks until it ends; `Ok` also when the receiver
/// went away.
async fn stream_body(
    response: reqwest::Response,
    stall: Duration,
    tx: &mpsc::Sender<Result<TtsAudio, ProviderError>>,
) -> Result<(), ProviderError> {
    let mut body = response.bytes_stream();
    let mut pcm = Pcm16Le::default();
    loop {
        let next = tokio::select! {
            () = tx.closed() => return Ok(()),
            next = tokio::time::timeout(stall, body.next()) => next,
        };
        let chunk = match next {
            Err(_) => return Err(ProviderError::Retryable(format!("openai-tts: body stalled for {stall:?}"))),
            Ok(None) => {
                if pcm.has_carry() {
                    tracing::debug!("openai-tts: body ended in the middle of a sample");
                }
                return Ok(());
            }
            Ok(Some(Err(e))) => return Err(ProviderError::Retryable(format!("openai-tts: body: {e}"))),
            Ok(Some(Ok(bytes))) => bytes,
        };
        let samples = pcm.decode(&chunk);
        if samples.is_empty() {
            continue;
        }
        if tx.send(Ok(TtsAudio { pcm: samples, sample_rate: PCM_RATE })).await.is_err() {
            return Ok(());
        }
    }
}
