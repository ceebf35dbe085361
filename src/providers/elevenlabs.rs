//! ElevenLabs streaming text-to-speech over the WebSocket input-streaming API
//! (ElevenLabs API reference "Text to Speech → WebSocket",
//! `wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/stream-input`).
//!
//! Wire protocol as used here, one socket per [`TtsProvider::synthesize`]:
//! - connect with the `xi-api-key` header and the query
//!   `model_id=…&output_format=ulaw_8000|pcm_16000|pcm_22050|pcm_24000`; an
//!   HTTP answer instead of the upgrade is mapped to [`ProviderError`].
//! - send the initializing message `{"text":" ","voice_settings":{…}}`, then
//!   the text `{"text":"Hello there. ","flush":true}` (text ends with a
//!   space; `flush` makes the server generate now instead of waiting for
//!   more text), then the end-of-input message `{"text":""}`.
//! - receive `{"audio":"<base64>","isFinal":null,"normalizedAlignment":{…},…}`
//!   chunks and finally `{"isFinal":true}`; base64 audio is µ-law 8 kHz or
//!   PCM16LE at the format's rate, decoded here to [`TtsAudio`].
//! - a message with an `error` (or a `message` without audio), a close frame
//!   other than a normal close, or a lost connection before `isFinal` is an
//!   error item on the channel, after the audio that came before it.
//!
//! Decoding is sans-IO ([`Decoder`]); the socket lives in a task per request.

use crate::providers::cloud::{self, Pcm16Le};
use crate::providers::{ProviderError, TtsAudio, TtsProvider};
use crate::rtp::codec::g711::Law;
use async_trait::async_trait;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue, protocol::frame::coding::CloseCode};

/// Audio chunks buffered before the socket task waits for the pipeline.
const CHANNEL_CAPACITY: usize = 32;

/// The output formats skald can play without a decoder beyond G.711.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputFormat {
    /// µ-law 8 kHz: the phone's own codec, least bandwidth.
    #[serde(rename = "ulaw_8000")]
    Ulaw8000,
    /// PCM16LE 16 kHz: the pipeline's rate.
    #[serde(rename = "pcm_16000")]
    Pcm16000,
    /// PCM16LE 22.05 kHz.
    #[serde(rename = "pcm_22050")]
    Pcm22050,
    /// PCM16LE 24 kHz.
    #[serde(rename = "pcm_24000")]
    Pcm24000,
}

impl OutputFormat {
    /// The `output_format` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ulaw8000 => "ulaw_8000",
            Self::Pcm16000 => "pcm_16000",
            Self::Pcm22050 => "pcm_22050",
            Self::Pcm24000 => "pcm_24000",
        }
    }

    /// Sample rate of the decoded audio, Hz.
    pub fn sample_rate(self) -> u32 {
        match self {
            Self::Ulaw8000 => 8_000,
            Self::Pcm16000 => 16_000,
            Self::Pcm22050 => 22_050,
            Self::Pcm24000 => 24_000,
        }
    }
}

/// Voice settings sent in the initializing message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoiceSettings {
    /// 0..=1: higher is more consistent, lower more expressive.
    pub stability: f32,
    /// 0..=1: adherence to the original voice.
    pub similarity_boost: f32,
    /// Speaking rate, 1.0 normal.
    pub speed: f32,
}

impl Default for VoiceSettings {
    fn default() -> Self {
        Self { stability: 0.5, similarity_boost: 0.8, speed: 1.0 }
    }
}

/// ElevenLabs settings (`tts.elevenlabs` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ElevenLabsConfig {
    /// API root (`/v1/text-to-speech/{voice}/stream-input` is appended);
    /// overridable for tests.
    pub base_url: String,
    /// Voice id.
    pub voice_id: String,
    /// Model id (`eleven_flash_v2_5` has the lowest latency).
    pub model_id: String,
    /// Audio format asked for.
    pub output_format: OutputFormat,
    /// Voice settings of the initializing message.
    pub voice_settings: VoiceSettings,
    /// Name of the environment variable holding the API key.
    pub api_key_env: String,
    /// Give up on connecting after this long (`Retryable`).
    pub connect_timeout_ms: u64,
    /// Fail when no message arrives for this long (`Retryable`).
    pub response_timeout_ms: u64,
}

impl Default for ElevenLabsConfig {
    fn default() -> Self {
        Self {
            base_url: "wss://api.elevenlabs.io".into(),
            voice_id: "21m00Tcm4TlvDq8ikWAM".into(),
            model_id: "eleven_flash_v2_5".into(),
            output_format: OutputFormat::Ulaw8000,
            voice_settings: VoiceSettings::default(),
            api_key_env: "ELEVENLABS_API_KEY".into(),
            connect_timeout_ms: 5_000,
            response_timeout_ms: 10_000,
        }
    }
}

impl ElevenLabsConfig {
    /// The stream-input URL with its query.
    pub fn url(&self) -> Result<reqwest::Url, ProviderError> {
        let bad = |e: String| ProviderError::Fatal(format!("elevenlabs: bad base_url/voice_id: {e}"));
        let mut url = reqwest::Url::parse(&self.base_url).map_err(|e| bad(e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| bad(self.base_url.clone()))?
            .pop_if_empty()
            .extend(["v1", "text-to-speech", &self.voice_id, "stream-input"]);
        url.query_pairs_mut()
            .append_pair("model_id", &self.model_id)
            .append_pair("output_format", self.output_format.as_str());
        Ok(url)
    }
}

/// ElevenLabs as a [`TtsProvider`].
#[derive(Debug, Clone)]
pub struct ElevenLabsTts {
    /// Endpoint, voice and format.
    config: ElevenLabsConfig,
}

impl ElevenLabsTts {
    /// A provider; nothing is checked or connected until `synthesize`.
    pub fn new(config: ElevenLabsConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl TtsProvider for ElevenLabsTts {
    fn name(&self) -> &str {
        "elevenlabs"
    }

    /// Connects, sends the init, text and end-of-input messages, and streams
    /// the decoded audio from a task. Connect failures (401 → `Auth`, 429,
    /// 5xx, timeouts) are returned here; failures after that are the last
    /// item on the channel. Dropping the receiver closes the socket.
    async fn synthesize(&self, text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let text = text.trim();
        if text.is_empty() {
            return Ok(rx);
        }
        let cfg = &self.config;
        let key = cloud::api_key(&cfg.api_key_env)?;
        let mut request = cfg
            .url()?
            .as_str()
            .into_client_request()
            .map_err(|e| ProviderError::Fatal(format!("elevenlabs: bad URL: {e}")))?;
        let key = HeaderValue::from_str(&key)
            .map_err(|_| ProviderError::Auth("elevenlabs: API key is not a valid header value".into()))?;
        request.headers_mut().insert("xi-api-key", key);
        let connect = tokio_tungstenite::connect_async(request);
        let (mut ws, _) = tokio::time::timeout(Duration::from_millis(cfg.connect_timeout_ms), connect)
            .await
            .map_err(|_| ProviderError::Retryable("elevenlabs: connect timed out".into()))?
            .map_err(|e| cloud::ws_connect_error("elevenlabs", e))?;
        let init = serde_json::json!({ "text": " ", "voice_settings": cfg.voice_settings });
        let body = serde_json::json!({ "text": format!("{text} "), "flush": true });
        for msg in [init.to_string(), body.to_string(), r#"{"text":""}"#.to_owned()] {
            ws.send(Message::Text(msg.into()))
                .await
                .map_err(|e| ProviderError::Retryable(format!("elevenlabs: send: {e}")))?;
        }
        let timeout = Duration::from_millis(cfg.response_timeout_ms);
        let mut decoder = Decoder::new(cfg.output_format);
        tokio::spawn(async move {
            let result = stream_audio(&mut ws, &mut decoder, timeout, &tx).await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "elevenlabs synthesis failed");
                let _ = tx.send(Err(e)).await;
            }
            let _ = ws.close(None).await;
        });
        Ok(rx)
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads messages until `isFinal`, sending decoded audio; `Ok` also when the
/// receiver went away (cancelled).
async fn stream_audio(
    ws: &mut Ws,
    decoder: &mut Decoder,
    timeout: Duration,
    tx: &mpsc::Sender<Result<TtsAudio, ProviderError>>,
) -> Result<(), ProviderError> {
    loop {
        let msg = tokio::select! {
            () = tx.closed() => return Ok(()),
            msg = tokio::time::timeout(timeout, ws.next()) => msg,
        };
        let msg = msg.map_err(|_| ProviderError::Retryable(format!("elevenlabs: no answer for {timeout:?}")))?;
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Err(match &frame {
                    Some(f) if f.code == CloseCode::Normal => {
                        ProviderError::Retryable("elevenlabs: closed before the final message".into())
                    }
                    _ => cloud::ws_close_error("elevenlabs", frame.as_ref()),
                });
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ProviderError::Retryable(format!("elevenlabs: {e}"))),
            None => return Err(ProviderError::Retryable("elevenlabs: connection lost".into())),
        };
        let chunk = decoder.handle_message(&text)?;
        if let Some(audio) = chunk.audio
            && tx.send(Ok(audio)).await.is_err()
        {
            return Ok(());
        }
        if chunk.is_final {
            return Ok(());
        }
    }
}

/// What one server message amounted to.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Decoded audio, when the message carried any.
    pub audio: Option<TtsAudio>,
    /// `isFinal: true`: the synthesis is complete.
    pub is_final: bool,
}

/// Sans-IO: ElevenLabs server messages → PCM16 chunks.
#[derive(Debug)]
pub struct Decoder {
    /// The format asked for in the URL.
    format: OutputFormat,
    /// For PCM formats: a half sample split across messages.
    pcm: Pcm16Le,
}

impl Decoder {
    /// A decoder for `format`.
    pub fn new(format: OutputFormat) -> Self {
        Self { format, pcm: Pcm16Le::default() }
    }

    /// Decodes one text message. Errors: an error message (`Auth` when it
    /// names the key or authentication, `RateLimited` for quota, otherwise
    /// `Retryable`), or audio that is not base64 (`Retryable`).
    pub fn handle_message(&mut self, text: &str) -> Result<Chunk, ProviderError> {
        let msg: ServerMessage = serde_json::from_str(text)
            .map_err(|e| ProviderError::Retryable(format!("elevenlabs: malformed message: {e}")))?;
        let audio_b64 = msg.audio.as_deref().filter(|a| !a.is_empty());
        if msg.error.is_some() || (msg.message.is_some() && audio_b64.is_none() && msg.is_final != Some(true)) {
            return Err(classify_error(&msg));
        }
        let audio = match audio_b64 {
            Some(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| ProviderError::Retryable(format!("elevenlabs: audio is not base64: {e}")))?;
                let pcm = match self.format {
                    OutputFormat::Ulaw8000 => {
                        let mut pcm = Vec::with_capacity(bytes.len());
                        Law::Mu.decode(&bytes, &mut pcm);
                        pcm
                    }
                    _ => self.pcm.decode(&bytes),
                };
                (!pcm.is_empty()).then_some(TtsAudio { pcm, sample_rate: self.format.sample_rate() })
            }
            None => None,
        };
        Ok(Chunk { audio, is_final: msg.is_final == Some(true) })
    }
}

fn classify_error(msg: &ServerMessage) -> ProviderError {
    let text = [msg.error.as_deref(), msg.message.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(": ");
    let lower = text.to_ascii_lowercase();
    let full = format!("elevenlabs: {text}");
    if lower.contains("auth") || lower.contains("api key") || lower.contains("api_key") {
        ProviderError::Auth(full)
    } else if lower.contains("quota") || lower.contains("rate limit") || lower.contains("too many") {
        ProviderError::RateLimited { retry_after: None }
    } else {
        ProviderError::Retryable(full)
    }
}

/// A server message (the fields skald reads; alignment is ignored).
#[derive(Debug, Deserialize)]
struct ServerMessage {
    #[serde(default)]
    audio: Option<String>,
    #[serde(default, rename = "isFinal")]
    is_final: Option<bool>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn ulaw_chunks_decode_at_8_khz() {
        let mut d = Decoder::new(OutputFormat::Ulaw8000);
        let msg = serde_json::json!({"audio": b64(&[0xff, 0x00, 0x80]), "isFinal": null,
            "normalizedAlignment": {"chars": ["H"], "charStartTimesMs": [0], "charDurationsMs": [10]}});
        let chunk = d.handle_message(&msg.to_string()).unwrap();
        let audio = chunk.audio.unwrap();
        assert_eq!(audio.sample_rate, 8000);
        assert_eq!(audio.pcm, vec![Law::Mu.decode_sample(0xff), Law::Mu.decode_sample(0), Law::Mu.decode_sample(0x80)]);
        assert!(!chunk.is_final);
        let last = d.handle_message(r#"{"isFinal":true}"#).unwrap();
        assert_eq!(last, Chunk { audio: None, is_final: true });
    }

    #[test]
    fn pcm_chunks_carry_half_samples() {
        let mut d = Decoder::new(OutputFormat::Pcm16000);
        let a = d.handle_message(&format!(r#"{{"audio":"{}"}}"#, b64(&[1, 0, 2]))).unwrap();
        let b = d.handle_message(&format!(r#"{{"audio":"{}"}}"#, b64(&[0]))).unwrap();
        assert_eq!(a.audio.unwrap(), TtsAudio { pcm: vec![1], sample_rate: 16000 });
        assert_eq!(b.audio.unwrap(), TtsAudio { pcm: vec![2], sample_rate: 16000 });
    }

    #[test]
    fn error_messages_are_classified() {
        let mut d = Decoder::new(OutputFormat::Pcm16000);
        let auth = d.handle_message(r#"{"message":"Invalid API key","error":"invalid_api_key","code":1008}"#);
        assert!(matches!(auth, Err(ProviderError::Auth(_))));
        let quota = d.handle_message(r#"{"message":"You exceeded your quota","error":"quota_exceeded"}"#);
        assert!(matches!(quota, Err(ProviderError::RateLimited { .. })));
        let other = d.handle_message(r#"{"message":"Input timeout exceeded","error":"input_timeout_exceeded"}"#);
        assert!(matches!(other, Err(ProviderError::Retryable(_))));
        assert!(d.handle_message("[1]").is_err());
    }

    #[test]
    fn url_has_voice_model_and_format() {
        let cfg = ElevenLabsConfig { base_url: "ws://127.0.0.1:9/".into(), voice_id: "v1d".into(), ..Default::default() };
        assert_eq!(
            cfg.url().unwrap().as_str(),
            "ws://127.0.0.1:9/v1/text-to-speech/v1d/stream-input?model_id=eleven_flash_v2_5&output_format=ulaw_8000"
        );
    }
}
