//! Stand-in providers for load tests: no model, no network, instant.
//!
//! An operator sizing a deployment selects them per application
//! (`stt: {fixed: {text: …}}`, `tts: {tone: {ms: …}}` or
//! `tts: {wav: {file: …}}`), and an LLM agent's `llm: [{kind: echo}]`
//! ([`EchoLlm`]); everything else of the call stays real (the
//! media path, Silero VAD, turn-taking, barge-in, pacing, records). So a
//! load generator measures skald's own cost per call, comparable with any
//! other server on the same load.
//!
//! When no application uses the local model for STT (or TTS), the model is
//! not loaded at all and [`NotLoaded`] stands in its place.

use super::{
    ChatMessage, LlmEvent, LlmProvider, ProviderError, Role, SttEvent, SttProvider, SttStream, ToolSpec, Transcript,
    TtsAudio, TtsProvider,
};
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Settings of [`FixedStt`].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FixedSttConfig {
    /// The transcript of every turn.
    pub text: String,
}

/// Settings of [`CannedTts::tone`].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ToneConfig {
    /// Length of every reply's audio, ms.
    pub ms: u32,
    /// Tone frequency, Hz.
    pub hz: u32,
}

impl Default for ToneConfig {
    fn default() -> Self {
        ToneConfig { ms: 1500, hz: 440 }
    }
}

/// Settings of [`CannedTts::wav`].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WavConfig {
    /// WAV file of any rate and channels; relative to the config directory.
    pub file: std::path::PathBuf,
}

/// STT that hears `text` in every turn: each `end_utterance` yields one
/// `Final` with it at once.
pub struct FixedStt {
    /// The transcript.
    pub text: String,
}

struct FixedStream {
    text: String,
    tx: mpsc::Sender<Result<SttEvent, ProviderError>>,
    rx: mpsc::Receiver<Result<SttEvent, ProviderError>>,
}

#[async_trait]
impl SttProvider for FixedStt {
    fn name(&self) -> &str {
        "fixed"
    }
    async fn open(&self) -> Result<Box<dyn SttStream>, ProviderError> {
        let (tx, rx) = mpsc::channel(8);
        Ok(Box::new(FixedStream { text: self.text.clone(), tx, rx }))
    }
}

#[async_trait]
impl SttStream for FixedStream {
    async fn send_audio(&mut self, _pcm: &[i16]) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn end_utterance(&mut self) -> Result<(), ProviderError> {
        let t = Transcript { text: self.text.clone(), start_ms: 0, end_ms: 0, confidence: Some(1.0) };
        let _ = self.tx.try_send(Ok(SttEvent::Final(t)));
        Ok(())
    }
    async fn discard_utterance(&mut self) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn next_event(&mut self) -> Option<Result<SttEvent, ProviderError>> {
        self.rx.recv().await
    }
}

/// TTS that answers every sentence with the same audio (16 kHz mono): a
/// tone of [`ToneConfig::ms`] ([`CannedTts::tone`]), or a WAV file's audio
/// ([`CannedTts::wav`]).
pub struct CannedTts {
    /// The audio, 16 kHz mono.
    audio: Arc<Vec<i16>>,
    /// `tone` or `wav`.
    name: &'static str,
}

impl CannedTts {
    /// A sine tone at `cfg.hz`, `cfg.ms` long, about −12 dBFS, with 10 ms
    /// fades (no clicks).
    pub fn tone(cfg: &ToneConfig) -> CannedTts {
        const RATE: f64 = crate::pipeline::SAMPLE_RATE as f64;
        let n = (cfg.ms as usize) * 16;
        let fade = 160usize;
        let audio = (0..n)
            .map(|i| {
                let edge = i.min(n - 1 - i);
                let g = (edge as f64 / fade as f64).min(1.0);
                ((2.0 * std::f64::consts::PI * cfg.hz as f64 * i as f64 / RATE).sin() * 8000.0 * g) as i16
            })
            .collect();
        CannedTts { audio: Arc::new(audio), name: "tone" }
    }

    /// The audio of WAV file `path` (any rate; resampled to 16 kHz).
    /// Errors: unreadable or not a WAV file.
    pub fn wav(path: &std::path::Path) -> Result<CannedTts, String> {
        let audio = crate::pipeline::wav::load_prompt(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(CannedTts { audio: Arc::new(audio), name: "wav" })
    }
}

#[async_trait]
impl TtsProvider for CannedTts {
    fn name(&self) -> &str {
        self.name
    }
    async fn synthesize(&self, _text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Ok(TtsAudio { pcm: self.audio.as_ref().clone(), sample_rate: crate::pipeline::SAMPLE_RATE }));
        Ok(rx)
    }
}

/// In place of a local model that was not loaded because no application
/// uses it: every use is a `Fatal` error naming it.
pub struct NotLoaded(pub &'static str);

#[async_trait]
impl SttProvider for NotLoaded {
    fn name(&self) -> &str {
        self.0
    }
    async fn open(&self) -> Result<Box<dyn SttStream>, ProviderError> {
        Err(ProviderError::Fatal(format!("{} is not loaded (every application uses a stand-in)", self.0)))
    }
}

#[async_trait]
impl TtsProvider for NotLoaded {
    fn name(&self) -> &str {
        self.0
    }
    async fn synthesize(&self, _text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
        Err(ProviderError::Fatal(format!("{} is not loaded (every application uses a stand-in)", self.0)))
    }
}

/// An LLM that says back the caller's last words ("You said: …"), at
/// once, with no model and no network (`llm: [{kind: echo}]` in an LLM
/// agent file): the whole LLM-agent path (conversation, sentences, TTS,
/// records) runs at no inference cost. Calls no tools.
pub struct EchoLlm;

#[async_trait]
impl LlmProvider for EchoLlm {
    fn name(&self) -> &str {
        "echo"
    }

    async fn stream(
        &self,
        messages: &[ChatMessage],
        _tools: &[ToolSpec],
    ) -> Result<mpsc::Receiver<Result<LlmEvent, ProviderError>>, ProviderError> {
        let said = messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.trim()).unwrap_or("");
        let reply = if said.is_empty() { "I heard nothing.".to_string() } else { format!("You said: {said}") };
        let (tx, rx) = mpsc::channel(2);
        // Capacity 2 holds both events: the sends cannot fail but on a
        // dropped receiver, which cancels.
        let _ = tx.try_send(Ok(LlmEvent::Text(reply)));
        let _ = tx.try_send(Ok(LlmEvent::Done));
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fixed_stt_hears_its_text_at_each_turn_end() {
        let stt = FixedStt { text: "book a cleaning".into() };
        let mut s = stt.open().await.unwrap();
        s.send_audio(&[0; 320]).await.unwrap();
        s.end_utterance().await.unwrap();
        match s.next_event().await {
            Some(Ok(SttEvent::Final(t))) => assert_eq!(t.text, "book a cleaning"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_tone_reply_is_as_long_as_configured() {
        let tts = CannedTts::tone(&ToneConfig { ms: 1200, hz: 440 });
        let mut rx = tts.synthesize("anything").await.unwrap();
        let a = rx.recv().await.unwrap().unwrap();
        assert_eq!((a.pcm.len(), a.sample_rate), (1200 * 16, 16_000));
        assert!(a.pcm.iter().map(|s| s.unsigned_abs()).max().unwrap() > 7000, "audible");
        assert!(rx.recv().await.is_none(), "one chunk");
        assert!(matches!(NotLoaded("piper").synthesize("x").await, Err(ProviderError::Fatal(m)) if m.contains("piper")));
    }

    #[tokio::test]
    async fn echo_says_back_the_last_caller_words() {
        let messages = [
            ChatMessage::system("be brief"),
            ChatMessage { role: Role::User, content: "first".into(), tool_calls: Vec::new(), tool_call_id: None },
            ChatMessage { role: Role::Assistant, content: "You said: first".into(), tool_calls: Vec::new(), tool_call_id: None },
            ChatMessage { role: Role::User, content: " I need a cleaning ".into(), tool_calls: Vec::new(), tool_call_id: None },
        ];
        let mut rx = EchoLlm.stream(&messages, &[]).await.unwrap();
        assert_eq!(rx.recv().await, Some(Ok(LlmEvent::Text("You said: I need a cleaning".into()))));
        assert_eq!(rx.recv().await, Some(Ok(LlmEvent::Done)));
        assert_eq!(rx.recv().await, None);
        let mut rx = EchoLlm.stream(&messages[..1], &[]).await.unwrap();
        assert_eq!(rx.recv().await, Some(Ok(LlmEvent::Text("I heard nothing.".into()))));
    }
}
