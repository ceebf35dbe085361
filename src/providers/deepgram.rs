//! Deepgram streaming speech-to-text over its live WebSocket API
//! (`wss://api.deepgram.com/v1/listen`, Deepgram docs "Live Audio",
//! "Finalize", "KeepAlive", "Close Stream", "Endpointing").
//!
//! Wire protocol as used here:
//! - connect with `Authorization: Token KEY` and the query
//!   `model=…&encoding=linear16&sample_rate=16000&channels=1&interim_results=true&endpointing=…`
//!   (+ `language`, `punctuate`, `smart_format`); an HTTP answer instead of
//!   the upgrade (401, 429, 5xx) is mapped to [`ProviderError`].
//! - audio goes out as binary frames of little-endian PCM16 at 16 kHz.
//! - `{"type":"KeepAlive"}` is sent whenever nothing was sent for
//!   [`DeepgramConfig::keepalive_ms`] (Deepgram closes an idle stream after
//!   about 10 s), `{"type":"Finalize"}` when skald's turn detector ends (or
//!   discards) an utterance, `{"type":"CloseStream"}` when the stream is
//!   dropped.
//! - `Results` messages carry `channel.alternatives[0].transcript`,
//!   `is_final`, `speech_final`, `from_finalize`, `start`, `duration`;
//!   `Metadata`, `SpeechStarted` and `UtteranceEnd` are ignored; a close frame
//!   or an `Error` message before we closed is a stream error.
//!
//! The contract with the pipeline ([`SttStream::end_utterance`]: exactly one
//! `Final` per ended utterance, empty when nothing was said) is kept by the
//! sans-IO [`Utterances`]: it joins the `is_final` segments of an utterance
//! and closes it when the `from_finalize` result of its `Finalize` arrives,
//! or after [`DeepgramConfig::finalize_timeout_ms`] (Deepgram sends no
//! `from_finalize` result when nothing was buffered). Deepgram's own
//! `speech_final` endpointing does not end a turn: skald's VAD does.
//!
//! One tokio task per stream owns the socket (the I/O edge); the
//! [`SttStream`] handle talks to it over a bounded command queue. Audio
//! policy: when the queue is full (the network stalled for
//! [`AUDIO_QUEUE_FRAMES`] frames), `send_audio` fails with `Retryable` so a
//! failover can take over instead of the call hearing nothing.

use crate::providers::cloud::{self, pcm16_to_le_bytes};
use crate::providers::{ProviderError, SttEvent, SttProvider, SttStream, Transcript};
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};

/// Commands queued between the stream handle and its socket task: 250 is
/// about 5 s of 20 ms frames.
pub const AUDIO_QUEUE_FRAMES: usize = 250;

/// Events buffered for the pipeline before the socket task waits.
const EVENT_QUEUE: usize = 64;

/// How long a dropped stream waits for Deepgram to close after `CloseStream`.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Deepgram settings (`stt.deepgram` in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepgramConfig {
    /// Live endpoint; overridable for tests and self-hosted Deepgram.
    pub base_url: String,
    /// Model (`nova-3`, `nova-2-phonecall`).
    pub model: String,
    /// BCP-47 language, when not the model's default.
    pub language: Option<String>,
    /// Deepgram's endpointing silence in ms (`endpointing=`); `None` sends
    /// `endpointing=false`. Only shapes `speech_final`; turns end on skald's VAD.
    pub endpointing_ms: Option<u32>,
    /// Add punctuation and capitalization.
    pub punctuate: bool,
    /// Format numbers, dates and the like.
    pub smart_format: bool,
    /// Name of the environment variable holding the API key.
    pub api_key_env: String,
    /// Send `KeepAlive` after this long without sending anything.
    pub keepalive_ms: u64,
    /// Give up on connecting after this long (`Retryable`).
    pub connect_timeout_ms: u64,
    /// Close an utterance this long after its `Finalize` if Deepgram sent no
    /// `from_finalize` result.
    pub finalize_timeout_ms: u64,
}

impl Default for DeepgramConfig {
    fn default() -> Self {
        Self {
            base_url: "wss://api.deepgram.com/v1/listen".into(),
            model: "nova-3".into(),
            language: None,
            endpointing_ms: Some(300),
            punctuate: true,
            smart_format: false,
            api_key_env: "DEEPGRAM_API_KEY".into(),
            keepalive_ms: 5_000,
            connect_timeout_ms: 5_000,
            finalize_timeout_ms: 1_500,
        }
    }
}

impl DeepgramConfig {
    /// The WebSocket URL with every query parameter.
    pub fn url(&self) -> Result<reqwest::Url, ProviderError> {
        let mut url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| ProviderError::Fatal(format!("deepgram: bad base_url {}: {e}", self.base_url)))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("model", &self.model)
                .append_pair("encoding", "linear16")
                .append_pair("sample_rate", "16000")
                .append_pair("channels", "1")
                .append_pair("interim_results", "true")
                .append_pair("punctuate", bool_str(self.punctuate))
                .append_pair("smart_format", bool_str(self.smart_format));
            match self.endpointing_ms {
                Some(ms) => q.append_pair("endpointing", &ms.to_string()),
                None => q.append_pair("endpointing", "false"),
            };
            if let Some(lang) = &self.language {
                q.append_pair("language", lang);
            }
        }
        Ok(url)
    }
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Deepgram as an [`SttProvider`]: each [`SttProvider::open`] is one
/// WebSocket (one call).
#[derive(Debug, Clone)]
pub struct DeepgramStt {
    /// Endpoint, model and timing.
    config: DeepgramConfig,
}

impl DeepgramStt {
    /// A provider; nothing is checked or connected until `open`.
    pub fn new(config: DeepgramConfig) -> Self {
        Self { config }
    }

    /// Connects and starts the socket task; the concrete stream type.
    pub async fn open_stream(&self) -> Result<DeepgramStream, ProviderError> {
        let key = cloud::api_key(&self.config.api_key_env)?;
        let url = self.config.url()?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ProviderError::Fatal(format!("deepgram: bad URL: {e}")))?;
        let auth = HeaderValue::from_str(&format!("Token {key}"))
            .map_err(|_| ProviderError::Auth("deepgram: API key is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", auth);
        let connect = tokio_tungstenite::connect_async(request);
        let (ws, _) = tokio::time::timeout(Duration::from_millis(self.config.connect_timeout_ms), connect)
            .await
            .map_err(|_| ProviderError::Retryable("deepgram: connect timed out".into()))?
            .map_err(|e| cloud::ws_connect_error("deepgram", e))?;
        let (cmd_tx, cmd_rx) = mpsc::channel(AUDIO_QUEUE_FRAMES);
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let task = SocketTask {
            keepalive: Duration::from_millis(self.config.keepalive_ms.max(1)),
            utterances: Utterances::new(Duration::from_millis(self.config.finalize_timeout_ms)),
        };
        tokio::spawn(task.run(ws, cmd_rx, event_tx));
        Ok(DeepgramStream { commands: cmd_tx, events, failed: false })
    }
}

#[async_trait]
impl SttProvider for DeepgramStt {
    fn name(&self) -> &str {
        "deepgram"
    }

    async fn open(&self) -> Result<Box<dyn SttStream>, ProviderError> {
        Ok(Box::new(self.open_stream().await?))
    }
}

/// One Deepgram recognition stream. Dropping it sends `CloseStream`.
#[derive(Debug)]
pub struct DeepgramStream {
    /// To the socket task.
    commands: mpsc::Sender<Command>,
    /// From the socket task: events, then at most one error, then closed.
    events: mpsc::Receiver<Result<SttEvent, ProviderError>>,
    /// An error was already returned by a command (the task is gone).
    failed: bool,
}

/// What the handle asks of the socket task.
#[derive(Debug)]
enum Command {
    /// Little-endian PCM16 16 kHz bytes and their sample count.
    Audio(Vec<u8>, usize),
    /// End the utterance (`Finalize`, then one `Final`).
    End,
    /// Drop the utterance (`Finalize`, its results swallowed).
    Discard,
}

impl DeepgramStream {
    fn command(&mut self, cmd: Command) -> Result<(), ProviderError> {
        match self.commands.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.failed = true;
                Err(ProviderError::Retryable("deepgram: send queue full (network stalled)".into()))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.failed = true;
                Err(ProviderError::Retryable("deepgram: connection closed".into()))
            }
        }
    }
}

#[async_trait]
impl SttStream for DeepgramStream {
    async fn send_audio(&mut self, pcm: &[i16]) -> Result<(), ProviderError> {
        if pcm.is_empty() {
            return Ok(());
        }
        self.command(Command::Audio(pcm16_to_le_bytes(pcm), pcm.len()))
    }

    async fn end_utterance(&mut self) -> Result<(), ProviderError> {
        self.command(Command::End)
    }

    async fn discard_utterance(&mut self) -> Result<(), ProviderError> {
        self.command(Command::Discard)
    }

    async fn next_event(&mut self) -> Option<Result<SttEvent, ProviderError>> {
        let item = self.events.recv().await;
        if item.is_none() && !self.failed {
            // The task ended without reporting (it panicked): say so once.
            self.failed = true;
            return Some(Err(ProviderError::Retryable("deepgram: stream ended".into())));
        }
        item
    }
}

/// The socket side of a stream.
struct SocketTask {
    /// Idle time before a `KeepAlive`.
    keepalive: Duration,
    /// Results → one `Final` per utterance.
    utterances: Utterances,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl SocketTask {
    async fn run(
        mut self,
        mut ws: Ws,
        mut commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Result<SttEvent, ProviderError>>,
    ) {
        let mut last_sent = tokio::time::Instant::now();
        let result = loop {
            let deadline = self.utterances.poll_timeout().map(tokio::time::Instant::from_std);
            let step = tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => {
                        last_sent = tokio::time::Instant::now();
                        self.handle_command(&mut ws, cmd).await
                    }
                    None => break Ok(()),
                },
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => self.utterances.handle_message(&text, Instant::now()),
                    Some(Ok(Message::Close(frame))) => Err(cloud::ws_close_error("deepgram", frame.as_ref())),
                    Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(ProviderError::Retryable(format!("deepgram: {e}"))),
                    None => Err(ProviderError::Retryable("deepgram: connection lost".into())),
                },
                () = tokio::time::sleep_until(last_sent + self.keepalive) => {
                    last_sent = tokio::time::Instant::now();
                    send_json(&mut ws, r#"{"type":"KeepAlive"}"#).await
                }
                () = sleep_until_opt(deadline) => {
                    self.utterances.handle_timeout(Instant::now());
                    Ok(())
                }
            };
            while let Some(event) = self.utterances.poll_event() {
                if events.send(Ok(event)).await.is_err() {
                    break;
                }
            }
            if let Err(e) = step {
                break Err(e);
            }
        };
        match result {
            // The handle was dropped: ask Deepgram to flush and close.
            Ok(()) => {
                if send_json(&mut ws, r#"{"type":"CloseStream"}"#).await.is_ok() {
                    let drain = async { while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_close() { break; }
                    } };
                    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "deepgram stream failed");
                let _ = events.send(Err(e)).await;
            }
        }
    }

    async fn handle_command(&mut self, ws: &mut Ws, cmd: Command) -> Result<(), ProviderError> {
        match cmd {
            Command::Audio(bytes, samples) => {
                self.utterances.handle_audio(samples);
                ws.send(Message::Binary(bytes.into()))
                    .await
                    .map_err(|e| ProviderError::Retryable(format!("deepgram: send: {e}")))
            }
            Command::End => {
                self.utterances.end_utterance(Instant::now());
                send_json(ws, r#"{"type":"Finalize"}"#).await
            }
            Command::Discard => {
                self.utterances.discard_utterance(Instant::now());
                send_json(ws, r#"{"type":"Finalize"}"#).await
            }
        }
    }
}

async fn send_json(ws: &mut Ws, text: &str) -> Result<(), ProviderError> {
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| ProviderError::Retryable(format!("deepgram: send: {e}")))
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sans-IO: Deepgram's results in, one `Final` per ended utterance out.
///
/// Inputs: `handle_audio` (samples sent), `handle_message` (a server text
/// message), `end_utterance` / `discard_utterance` (a `Finalize` was sent),
/// `handle_timeout`. Outputs: `poll_event` until `None`, then `poll_timeout`
/// for when to call `handle_timeout`.
///
/// Results arrive in audio order, so the `from_finalize` result closes the
/// oldest utterance still waiting for one. While a discarded utterance is
/// waiting, its results (interim and final) are swallowed. An `is_final`
/// segment that arrives with no utterance waiting belongs to the one in
/// progress; interims carry the utterance's final segments so far plus the
/// newest hypothesis.
#[derive(Debug)]
pub struct Utterances {
    /// How long to wait for a `from_finalize` result.
    finalize_timeout: Duration,
    /// `is_final` segments not yet given to a `Final`.
    segments: Vec<Transcript>,
    /// Ended or discarded utterances waiting for their `from_finalize`, oldest first.
    waiting: VecDeque<Waiting>,
    /// Audio sent so far, ms (for the times of an empty `Final`).
    audio_ms: u64,
    /// Samples sent so far at 16 kHz.
    samples: u64,
    /// Ready for the pipeline.
    out: VecDeque<SttEvent>,
}

/// One `Finalize` whose results have not all arrived.
#[derive(Debug)]
struct Waiting {
    /// Swallow the results instead of emitting a `Final`.
    discard: bool,
    /// Close with what arrived when this passes.
    deadline: Instant,
    /// Stream position when the utterance ended, ms.
    at_ms: u64,
}

impl Utterances {
    /// An assembler closing utterances after `finalize_timeout` at the latest.
    pub fn new(finalize_timeout: Duration) -> Self {
        Self {
            finalize_timeout,
            segments: Vec::new(),
            waiting: VecDeque::new(),
            audio_ms: 0,
            samples: 0,
            out: VecDeque::new(),
        }
    }

    /// `samples` more audio at 16 kHz went to Deepgram.
    pub fn handle_audio(&mut self, samples: usize) {
        self.samples += samples as u64;
        self.audio_ms = self.samples / 16;
    }

    /// The turn ended: a `Final` follows (from the `from_finalize` result or
    /// the timeout).
    pub fn end_utterance(&mut self, now: Instant) {
        self.waiting.push_back(Waiting { discard: false, deadline: now + self.finalize_timeout, at_ms: self.audio_ms });
    }

    /// The utterance was a false start: its results are swallowed.
    pub fn discard_utterance(&mut self, now: Instant) {
        self.waiting.push_back(Waiting { discard: true, deadline: now + self.finalize_timeout, at_ms: self.audio_ms });
    }

    /// One text message from Deepgram. Errors: an `Error` message.
    pub fn handle_message(&mut self, text: &str, now: Instant) -> Result<(), ProviderError> {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
            tracing::debug!("deepgram: ignoring a message that is not JSON");
            return Ok(());
        };
        match value.get("type").and_then(|t| t.as_str()) {
            Some("Results") => {
                match serde_json::from_value::<Results>(value) {
                    Ok(results) => self.handle_results(&results, now),
                    Err(e) => tracing::debug!(error = %e, "deepgram: ignoring malformed Results"),
                }
                Ok(())
            }
            Some("Error") => {
                let desc = ["description", "message", "err_msg", "variant"]
                    .iter()
                    .find_map(|k| value.get(*k).and_then(|v| v.as_str()))
                    .unwrap_or("unknown error");
                Err(ProviderError::Retryable(format!("deepgram: {desc}")))
            }
            // Metadata, SpeechStarted, UtteranceEnd: turns end on skald's VAD.
            _ => Ok(()),
        }
    }

    /// Closes utterances whose `from_finalize` is overdue.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.waiting.front().is_some_and(|w| w.deadline <= now) {
            self.close_oldest();
        }
    }

    /// The next event for the pipeline.
    pub fn poll_event(&mut self) -> Option<SttEvent> {
        self.out.pop_front()
    }

    /// When `handle_timeout` is due, if an utterance is waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.front().map(|w| w.deadline)
    }

    fn handle_results(&mut self, r: &Results, _now: Instant) {
        let Some(alt) = r.channel.alternatives.first() else {
            return;
        };
        let segment = Transcript {
            text: alt.transcript.trim().to_owned(),
            start_ms: secs_to_ms(r.start),
            end_ms: secs_to_ms(r.start + r.duration),
            confidence: alt.confidence,
        };
        let discarding = self.waiting.front().is_some_and(|w| w.discard);
        if !r.is_final {
            if !discarding && !segment.text.is_empty() {
                let mut parts = self.segments.clone();
                parts.push(segment);
                self.out.push_back(SttEvent::Interim(join(&parts, 0)));
            }
            return;
        }
        if !segment.text.is_empty() {
            self.segments.push(segment);
        }
        if r.from_finalize && !self.waiting.is_empty() {
            self.close_oldest();
        }
    }

    /// Emits (or swallows) the oldest waiting utterance with the segments so far.
    fn close_oldest(&mut self) {
        let Some(w) = self.waiting.pop_front() else {
            return;
        };
        let parts = std::mem::take(&mut self.segments);
        if !w.discard {
            self.out.push_back(SttEvent::Final(join(&parts, w.at_ms)));
        }
    }
}

/// Joins segments into one transcript; empty (at `at_ms`) when there are none.
fn join(parts: &[Transcript], at_ms: u64) -> Transcript {
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return Transcript { text: String::new(), start_ms: at_ms, end_ms: at_ms, confidence: None };
    };
    let text = parts.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join(" ");
    let confs: Vec<f32> = parts.iter().filter_map(|p| p.confidence).collect();
    let confidence = (!confs.is_empty()).then(|| confs.iter().sum::<f32>() / confs.len() as f32);
    Transcript { text, start_ms: first.start_ms, end_ms: last.end_ms, confidence }
}

fn secs_to_ms(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 { (s * 1000.0).round() as u64 } else { 0 }
}

/// A `Results` message (the fields skald reads).
#[derive(Debug, Deserialize)]
struct Results {
    #[serde(default)]
    is_final: bool,
    #[serde(default)]
    from_finalize: bool,
    #[serde(default)]
    start: f64,
    #[serde(default)]
    duration: f64,
    channel: ResultsChannel,
}

#[derive(Debug, Deserialize)]
struct ResultsChannel {
    #[serde(default)]
    alternatives: Vec<Alternative>,
}

#[derive(Debug, Deserialize)]
struct Alternative {
    #[serde(default)]
    transcript: String,
    #[serde(default)]
    confidence: Option<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(text: &str, is_final: bool, from_finalize: bool, start: f64, duration: f64) -> String {
        serde_json::json!({
            "type": "Results", "channel_index": [0, 1], "start": start, "duration": duration,
            "is_final": is_final, "speech_final": is_final, "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.9, "words": []}]},
            "metadata": {"request_id": "r"}
        })
        .to_string()
    }

    fn drain(u: &mut Utterances) -> Vec<SttEvent> {
        std::iter::from_fn(|| u.poll_event()).collect()
    }

    #[test]
    fn final_segments_join_into_one_final_per_utterance() {
        let now = Instant::now();
        let mut u = Utterances::new(Duration::from_secs(1));
        u.handle_audio(32_000);
        u.handle_message(&results("hello", false, false, 0.0, 0.5), now).unwrap();
        u.handle_message(&results("hello there", true, false, 0.0, 1.0), now).unwrap();
        // Deepgram's own endpointing (speech_final) does not end the turn.
        u.handle_message(&results("how are", false, false, 1.0, 0.5), now).unwrap();
        let ev = drain(&mut u);
        assert_eq!(ev.len(), 2);
        assert!(matches!(&ev[1], SttEvent::Interim(t) if t.text == "hello there how are"));
        u.end_utterance(now);
        u.handle_message(r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":1.9}"#, now).unwrap();
        u.handle_message(&results("how are you", true, true, 1.0, 1.0), now).unwrap();
        let ev = drain(&mut u);
        let [SttEvent::Final(t)] = ev.as_slice() else { panic!("{ev:?}") };
        assert_eq!(t.text, "hello there how are you");
        assert_eq!((t.start_ms, t.end_ms), (0, 2000));
        assert!(u.poll_timeout().is_none());
    }

    #[test]
    fn silent_utterance_gets_an_empty_final_at_the_timeout() {
        let now = Instant::now();
        let mut u = Utterances::new(Duration::from_millis(500));
        u.handle_audio(16_000);
        u.end_utterance(now);
        assert_eq!(u.poll_timeout(), Some(now + Duration::from_millis(500)));
        u.handle_timeout(now + Duration::from_millis(499));
        assert!(u.poll_event().is_none());
        u.handle_timeout(now + Duration::from_millis(500));
        let ev = drain(&mut u);
        let [SttEvent::Final(t)] = ev.as_slice() else { panic!("{ev:?}") };
        assert_eq!((t.text.as_str(), t.start_ms, t.end_ms), ("", 1000, 1000));
    }

    #[test]
    fn discarded_utterance_is_swallowed_and_the_next_one_is_not() {
        let now = Instant::now();
        let mut u = Utterances::new(Duration::from_secs(1));
        u.handle_message(&results("uh", true, false, 0.0, 0.3), now).unwrap();
        u.discard_utterance(now);
        u.handle_message(&results("um", false, false, 0.3, 0.2), now).unwrap();
        u.handle_message(&results("um", true, true, 0.3, 0.2), now).unwrap();
        assert!(u.poll_event().is_none());
        u.handle_message(&results("yes", true, false, 1.0, 0.4), now).unwrap();
        u.end_utterance(now);
        u.handle_message(&results("", true, true, 1.4, 0.1), now).unwrap();
        let ev = drain(&mut u);
        let [SttEvent::Final(t)] = ev.as_slice() else { panic!("{ev:?}") };
        assert_eq!(t.text, "yes");
    }

    #[test]
    fn error_messages_fail_and_unknown_ones_are_ignored() {
        let now = Instant::now();
        let mut u = Utterances::new(Duration::from_secs(1));
        assert!(u.handle_message("not json", now).is_ok());
        assert!(u.handle_message(r#"{"type":"SpeechStarted","channel":[0],"timestamp":1.2}"#, now).is_ok());
        assert!(u.handle_message(r#"{"type":"Results","channel":{}}"#, now).is_ok());
        let err = u.handle_message(r#"{"type":"Error","description":"boom","variant":"x"}"#, now);
        assert!(matches!(err, Err(ProviderError::Retryable(m)) if m.contains("boom")));
    }

    #[test]
    fn url_carries_the_documented_parameters() {
        let cfg = DeepgramConfig { language: Some("en-US".into()), endpointing_ms: None, ..Default::default() };
        let url = cfg.url().unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["encoding"], "linear16");
        assert_eq!(q["sample_rate"], "16000");
        assert_eq!(q["channels"], "1");
        assert_eq!(q["interim_results"], "true");
        assert_eq!(q["endpointing"], "false");
        assert_eq!(q["model"], "nova-3");
        assert_eq!(q["language"], "en-US");
    }
}
