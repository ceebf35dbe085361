//! Piper VITS text-to-speech (`en_US-joe-medium`, 22,050 Hz) with phonemes
//! from espeak-ng (IPA, en-us) mapped through the voice's `phoneme_id_map`.
//! CONTRACT STUB.

use crate::providers::{ProviderError, TtsAudio, TtsProvider};
use async_trait::async_trait;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The loaded voice (shared; `Send + Sync`).
pub struct Piper {}

impl Piper {
    /// Loads the voice model and its `.onnx.json`; ONNX Runtime must be initialized.
    pub fn load(model: &Path, config: &Path) -> Result<Arc<Piper>, ProviderError> {
        let _ = (model, config);
        todo!()
    }
    /// Output rate, Hz (22,050 for this voice).
    pub fn sample_rate(&self) -> u32 {
        todo!()
    }
    /// Synthesizes one sentence to mono PCM16 at [`Piper::sample_rate`].
    /// Blocking (CPU-bound): call from `spawn_blocking`.
    pub fn synthesize_sentence(&self, text: &str) -> Result<Vec<i16>, ProviderError> {
        let _ = text;
        todo!()
    }
}

/// [`TtsProvider`] over [`Piper`]: splits text into sentences and streams
/// one chunk per sentence as soon as it is synthesized.
pub struct PiperTts {
    /// The voice.
    pub voice: Arc<Piper>,
}

#[async_trait]
impl TtsProvider for PiperTts {
    fn name(&self) -> &str {
        "piper"
    }
    async fn synthesize(&self, text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
        let _ = text;
        todo!()
    }
}
