//! Failover from a cloud provider to a local one, with the switch recorded.
//!
//! [`FailoverStt`] opens the primary (Deepgram); if that fails, or the
//! stream fails later (an error, a lost connection, a stalled send queue),
//! it opens the fallback (Moonshine) and uses it for the rest of the stream.
//! No turn is lost: the audio of every utterance the primary has not yet
//! answered with a `Final` (ended ones and the one in progress, up to
//! [`MAX_REPLAY_SAMPLES`]) is replayed into the fallback, and ended ones are
//! ended again, so each `end_utterance` still gets exactly one `Final`.
//!
//! [`FailoverTts`] asks the primary (ElevenLabs, OpenAI); if the request or
//! the stream fails, the same text is synthesized again on the fallback
//! (Piper) and its audio follows on the same channel. Audio the primary
//! already produced was already sent, so the caller may hear the start of
//! the sentence twice; waiting for the whole sentence before playing would
//! cost every sentence its latency. After a failure the fallback serves the
//! rest of the call: one voice change is less jarring than a voice that
//! flips back and forth, and it keeps a failing provider from adding its
//! timeout to every sentence.
//!
//! Every switch is recorded in a [`FallbackLog`], which the call writes to
//! its record's `errors`. Both wrappers are cheap (two `Arc`s and a log):
//! build one per call so the log is the call's. `Cancelled` never triggers
//! a switch.

use crate::providers::{ProviderError, SttEvent, SttProvider, SttStream, TtsAudio, TtsProvider};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Most audio kept for replay into the fallback: 30 s at 16 kHz (960 KB).
pub const MAX_REPLAY_SAMPLES: usize = 30 * 16_000;

/// Most ended utterances kept waiting for their `Final` from the primary.
const MAX_PENDING_UTTERANCES: usize = 8;

/// Audio chunks buffered between the forwarding task and the pipeline.
const CHANNEL_CAPACITY: usize = 32;

/// Which kind of provider failed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Speech-to-text.
    Stt,
    /// Text-to-speech.
    Tts,
}

/// One switch from the primary to the fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    /// STT or TTS.
    pub kind: Kind,
    /// The provider that failed.
    pub primary: String,
    /// The provider used instead.
    pub fallback: String,
    /// Why the primary failed.
    pub error: ProviderError,
    /// The fallback failed as well (then nothing serves the call).
    pub fallback_error: Option<ProviderError>,
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Stt => "stt",
            Kind::Tts => "tts",
        };
        write!(f, "{kind}: {} failed ({}); fell back to {}", self.primary, self.error, self.fallback)?;
        if let Some(e) = &self.fallback_error {
            write!(f, ", which failed too ({e})")?;
        }
        Ok(())
    }
}

/// The switches of one call, shared by its wrappers; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct FallbackLog {
    /// Written only on a failure, never on the audio path.
    entries: Arc<Mutex<Vec<Fallback>>>,
}

impl FallbackLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every switch so far, oldest first.
    pub fn entries(&self) -> Vec<Fallback> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Every switch so far as one line each, for the call record's `errors`.
    pub fn failures(&self) -> Vec<String> {
        self.entries().iter().map(ToString::to_string).collect()
    }

    fn record(&self, entry: Fallback) {
        tracing::warn!(fallback = %entry, "provider failover");
        if let Ok(mut entries) = self.entries.lock() {
            entries.push(entry);
        }
    }
}

/// Speech-to-text with a fallback; one per call.
pub struct FailoverStt {
    /// Tried first (cloud).
    primary: Arc<dyn SttProvider>,
    /// Used when the primary fails (local).
    fallback: Arc<dyn SttProvider>,
    /// `primary+fallback`, for records.
    name: String,
    /// Where switches are recorded.
    log: FallbackLog,
}

impl FailoverStt {
    /// Wraps `primary` with `fallback`, with a fresh log.
    pub fn new(primary: Arc<dyn SttProvider>, fallback: Arc<dyn SttProvider>) -> Self {
        let name = format!("{}+{}", primary.name(), fallback.name());
        Self { primary, fallback, name, log: FallbackLog::new() }
    }

    /// Records into `log` (shared with the call's TTS wrapper).
    pub fn with_log(mut self, log: FallbackLog) -> Self {
        self.log = log;
        self
    }

    /// The log switches are recorded in.
    pub fn log(&self) -> &FallbackLog {
        &self.log
    }

    /// Every switch so far, one line each.
    pub fn failures(&self) -> Vec<String> {
        self.log.failures()
    }

    /// Opens the primary, or the fallback if that fails; the concrete type.
    pub async fn open_stream(&self) -> Result<FailoverSttStream, ProviderError> {
        let mut stream = FailoverSttStream {
            primary_name: self.primary.name().to_owned(),
            fallback: self.fallback.clone(),
            log: self.log.clone(),
            active: None,
            on_fallback: false,
            ended: VecDeque::new(),
            current: Vec::new(),
        };
        match self.primary.open().await {
            Ok(s) => stream.active = Some(s),
            Err(ProviderError::Cancelled) => return Err(ProviderError::Cancelled),
            Err(e) => stream.switch(e).await?,
        }
        Ok(stream)
    }
}

#[async_trait]
impl SttProvider for FailoverStt {
    fn name(&self) -> &str {
        &self.name
    }

    async fn open(&self) -> Result<Box<dyn SttStream>, ProviderError> {
        Ok(Box::new(self.open_stream().await?))
    }
}

/// A recognition stream on the primary until it fails, then on the fallback.
///
/// Cancel safety of `next_event`: a switch happens inside it; it is
/// cancel-safe when the fallback's `open`, `send_audio` and `end_utterance`
/// complete without waiting, as the local providers' do.
pub struct FailoverSttStream {
    /// For the record.
    primary_name: String,
    /// Opened on the first failure.
    fallback: Arc<dyn SttProvider>,
    /// Where the switch is recorded.
    log: FallbackLog,
    /// The stream in use; `None` only while the fallback failed to open.
    active: Option<Box<dyn SttStream>>,
    /// `active` is the fallback's: no more buffering or switching.
    on_fallback: bool,
    /// Audio of utterances ended on the primary whose `Final` has not come.
    ended: VecDeque<Vec<i16>>,
    /// Audio of the utterance in progress (primary only).
    current: Vec<i16>,
}

impl FailoverSttStream {
    /// Whether the fallback serves this stream now.
    pub fn on_fallback(&self) -> bool {
        self.on_fallback
    }

    /// Opens the fallback, replays what the primary left unanswered, and
    /// records the switch. Errors: the fallback's (also recorded).
    async fn switch(&mut self, error: ProviderError) -> Result<(), ProviderError> {
        self.active = None;
        self.on_fallback = true;
        let result = self.replay_into_fallback().await;
        self.log.record(Fallback {
            kind: Kind::Stt,
            primary: self.primary_name.clone(),
            fallback: self.fallback.name().to_owned(),
            error,
            fallback_error: result.as_ref().err().cloned(),
        });
        self.active = Some(result?);
        Ok(())
    }

    async fn replay_into_fallback(&mut self) -> Result<Box<dyn SttStream>, ProviderError> {
        let mut stream = self.fallback.open().await?;
        for utterance in std::mem::take(&mut self.ended) {
            stream.send_audio(&utterance).await?;
            stream.end_utterance().await?;
        }
        let current = std::mem::take(&mut self.current);
        if !current.is_empty() {
            stream.send_audio(&current).await?;
        }
        Ok(stream)
    }

    fn dead() -> ProviderError {
        ProviderError::Retryable("stt: primary and fallback both failed".into())
    }

    /// Runs `op` on the active stream. When the primary fails, switches:
    /// the replay already carries the effect of `op` (audio and ended
    /// utterances are buffered before `op` runs; a discarded utterance is
    /// simply not replayed), so `op` is not repeated on the fallback.
    async fn on_active(&mut self, op: Op<'_>) -> Result<(), ProviderError> {
        let Some(active) = self.active.as_mut() else {
            return Err(Self::dead());
        };
        let result = match op {
            Op::Audio(pcm) => active.send_audio(pcm).await,
            Op::End => active.end_utterance().await,
            Op::Discard => active.discard_utterance().await,
        };
        match result {
            Err(e) if !self.on_fallback && e != ProviderError::Cancelled => self.switch(e).await,
            other => other,
        }
    }
}

/// A command of the [`SttStream`] API.
#[derive(Debug, Clone, Copy)]
enum Op<'a> {
    /// `send_audio`.
    Audio(&'a [i16]),
    /// `end_utterance`.
    End,
    /// `discard_utterance`.
    Discard,
}

#[async_trait]
impl SttStream for FailoverSttStream {
    async fn send_audio(&mut self, pcm: &[i16]) -> Result<(), ProviderError> {
        if !self.on_fallback {
            self.current.extend_from_slice(pcm);
            if self.current.len() > MAX_REPLAY_SAMPLES {
                let excess = self.current.len() - MAX_REPLAY_SAMPLES;
                self.current.drain(..excess);
            }
        }
        self.on_active(Op::Audio(pcm)).await
    }

    async fn end_utterance(&mut self) -> Result<(), ProviderError> {
        if !self.on_fallback {
            self.ended.push_back(std::mem::take(&mut self.current));
            if self.ended.len() > MAX_PENDING_UTTERANCES {
                self.ended.pop_front();
            }
        }
        self.on_active(Op::End).await
    }

    async fn discard_utterance(&mut self) -> Result<(), ProviderError> {
        self.current.clear();
        // A discard that fails switches; the fallback never saw the audio.
        self.on_active(Op::Discard).await
    }

    async fn word_gap(&mut self) {
        if let Some(active) = self.active.as_mut() {
            active.word_gap().await;
        }
    }

    async fn next_event(&mut self) -> Option<Result<SttEvent, ProviderError>> {
        loop {
            let Some(active) = self.active.as_mut() else {
                return Some(Err(Self::dead()));
            };
            let item = active.next_event().await;
            if self.on_fallback {
                return item;
            }
            let error = match item {
                Some(Ok(SttEvent::Final(t))) => {
                    self.ended.pop_front();
                    return Some(Ok(SttEvent::Final(t)));
                }
                Some(Ok(event)) => return Some(Ok(event)),
                Some(Err(ProviderError::Cancelled)) => return Some(Err(ProviderError::Cancelled)),
                Some(Err(e)) => e,
                None => ProviderError::Retryable(format!("{}: stream ended", self.primary_name)),
            };
            if let Err(e) = self.switch(error).await {
                return Some(Err(e));
            }
        }
    }
}

/// Text-to-speech with a fallback; one per call.
pub struct FailoverTts {
    /// Tried first (cloud).
    primary: Arc<dyn TtsProvider>,
    /// Used when the primary fails (local).
    fallback: Arc<dyn TtsProvider>,
    /// `primary+fallback`, for records.
    name: String,
    /// Where switches are recorded.
    log: FallbackLog,
    /// The primary failed once: the fallback serves the rest of the call.
    primary_failed: Arc<AtomicBool>,
}

impl FailoverTts {
    /// Wraps `primary` with `fallback`, with a fresh log.
    pub fn new(primary: Arc<dyn TtsProvider>, fallback: Arc<dyn TtsProvider>) -> Self {
        let name = format!("{}+{}", primary.name(), fallback.name());
        Self { primary, fallback, name, log: FallbackLog::new(), primary_failed: Arc::default() }
    }

    /// Records into `log` (shared with the call's STT wrapper).
    pub fn with_log(mut self, log: FallbackLog) -> Self {
        self.log = log;
        self
    }

    /// The log switches are recorded in.
    pub fn log(&self) -> &FallbackLog {
        &self.log
    }

    /// Every switch so far, one line each.
    pub fn failures(&self) -> Vec<String> {
        self.log.failures()
    }

    /// Whether the fallback serves the call now.
    pub fn on_fallback(&self) -> bool {
        self.primary_failed.load(Ordering::Relaxed)
    }
}

/// What a forwarding task needs to fall back on its own.
struct Switch {
    fallback: Arc<dyn TtsProvider>,
    primary_name: String,
    log: FallbackLog,
    primary_failed: Arc<AtomicBool>,
}

impl Switch {
    /// Records the failure and starts the fallback on `text`.
    async fn fall_back(
        &self,
        error: ProviderError,
        text: &str,
    ) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
        self.primary_failed.store(true, Ordering::Relaxed);
        let result = self.fallback.synthesize(text).await;
        self.log.record(Fallback {
            kind: Kind::Tts,
            primary: self.primary_name.clone(),
            fallback: self.fallback.name().to_owned(),
            error,
            fallback_error: result.as_ref().err().cloned(),
        });
        result
    }
}

#[async_trait]
impl TtsProvider for FailoverTts {
    fn name(&self) -> &str {
        &self.name
    }

    async fn synthesize(&self, text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
        if self.on_fallback() {
            return self.fallback.synthesize(text).await;
        }
        let switch = Switch {
            fallback: self.fallback.clone(),
            primary_name: self.primary.name().to_owned(),
            log: self.log.clone(),
            primary_failed: self.primary_failed.clone(),
        };
        let mut primary = match self.primary.synthesize(text).await {
            Ok(rx) => rx,
            Err(ProviderError::Cancelled) => return Err(ProviderError::Cancelled),
            Err(e) => return switch.fall_back(e, text).await,
        };
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let text = text.to_owned();
        tokio::spawn(async move {
            let error = match forward(&mut primary, &tx).await {
                Some(ProviderError::Cancelled) | None => return,
                Some(e) => e,
            };
            match switch.fall_back(error, &text).await {
                Ok(mut fallback) => {
                    if let Some(e) = forward(&mut fallback, &tx).await {
                        let _ = tx.send(Err(e)).await;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        });
        Ok(rx)
    }
}

/// Forwards audio from `from` to `to` until `from` closes (`None`), `to` is
/// dropped (`None`) or `from` yields an error (returned, not forwarded).
async fn forward(
    from: &mut mpsc::Receiver<Result<TtsAudio, ProviderError>>,
    to: &mpsc::Sender<Result<TtsAudio, ProviderError>>,
) -> Option<ProviderError> {
    loop {
        let item = tokio::select! {
            () = to.closed() => return None,
            item = from.recv() => item,
        };
        match item? {
            Ok(audio) => to.send(Ok(audio)).await.ok()?,
            Err(e) => return Some(e),
        }
    }
}
