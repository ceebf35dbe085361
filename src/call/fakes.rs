//! Stand-in providers for tests of the voice agent and the call actor:
//! speech recognition that yields scripted transcripts (or fails), speech
//! synthesis that records what it was asked and gives 2 s of audio per
//! sentence (or fails).

use crate::providers::{ProviderError, SttEvent, SttProvider, SttStream, Transcript, TtsAudio, TtsProvider};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// STT whose every utterance fails, or yields the next line of
/// `script` (then `text`); `ended` counts utterances ended.
pub struct FakeStt {
    pub fail: bool,
    pub text: String,
    pub script: Arc<Mutex<VecDeque<String>>>,
    pub ended: Arc<std::sync::atomic::AtomicUsize>,
}
struct FakeStream {
    fail: bool,
    text: String,
    script: Arc<Mutex<VecDeque<String>>>,
    ended: Arc<std::sync::atomic::AtomicUsize>,
    tx: mpsc::Sender<Result<SttEvent, ProviderError>>,
    rx: mpsc::Receiver<Result<SttEvent, ProviderError>>,
}
#[async_trait]
impl SttProvider for FakeStt {
    fn name(&self) -> &str {
        "fake"
    }
    async fn open(&self) -> Result<Box<dyn SttStream>, ProviderError> {
        let (tx, rx) = mpsc::channel(8);
        Ok(Box::new(FakeStream {
            fail: self.fail,
            text: self.text.clone(),
            script: self.script.clone(),
            ended: self.ended.clone(),
            tx,
            rx,
        }))
    }
}
#[async_trait]
impl SttStream for FakeStream {
    async fn send_audio(&mut self, _pcm: &[i16]) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn end_utterance(&mut self) -> Result<(), ProviderError> {
        self.ended.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ev = if self.fail {
            Err(ProviderError::Retryable("recognizer unavailable".into()))
        } else {
            let text = self.script.lock().unwrap().pop_front().unwrap_or_else(|| self.text.clone());
            Ok(SttEvent::Final(Transcript { text, start_ms: 0, end_ms: 0, confidence: None }))
        };
        let _ = self.tx.send(ev).await;
        Ok(())
    }
    async fn discard_utterance(&mut self) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn next_event(&mut self) -> Option<Result<SttEvent, ProviderError>> {
        self.rx.recv().await
    }
}

/// TTS that records what it was asked and fails when `fail`.
pub struct FakeTts {
    pub fail: bool,
    pub said: Mutex<Vec<String>>,
}
#[async_trait]
impl TtsProvider for FakeTts {
    fn name(&self) -> &str {
        "fake"
    }
    async fn synthesize(&self, text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
        self.said.lock().unwrap().push(text.to_string());
        let (tx, rx) = mpsc::channel(2);
        let item = if self.fail {
            Err(ProviderError::Fatal("voice broken".into()))
        } else {
            // 2 s per sentence: long enough to talk over.
            Ok(TtsAudio { pcm: vec![1000; 32_000], sample_rate: 16_000 })
        };
        let _ = tx.try_send(item);
        Ok(rx)
    }
}

