//! Moonshine base-en speech recognition (encoder + merged decoder with KV
//! cache, greedy decoding, `tokenizer.bin`). CONTRACT STUB.

use crate::providers::{ProviderError, SttProvider, SttStream};
use async_trait::async_trait;
use std::path::Path;
use std::sync::Arc;

/// The loaded model (shared; `Send + Sync`).
pub struct Moonshine {}

impl Moonshine {
    /// Loads encoder, decoder and tokenizer; ONNX Runtime must be initialized.
    /// Errors: `Fatal` naming the file.
    pub fn load(encoder: &Path, decoder: &Path, tokenizer: &Path) -> Result<Arc<Moonshine>, ProviderError> {
        let _ = (encoder, decoder, tokenizer);
        todo!()
    }
    /// Transcribes one utterance: mono PCM16 at 16 kHz (0.1–30 s). Blocking
    /// (CPU-bound): call from `spawn_blocking`. Silence gives "".
    pub fn transcribe(&self, pcm16k: &[i16]) -> Result<String, ProviderError> {
        let _ = pcm16k;
        todo!()
    }
}

/// [`SttProvider`] over [`Moonshine`]: buffers each utterance, transcribes it
/// on `end_utterance` in a blocking task.
pub struct MoonshineStt {
    /// The model.
    pub model: Arc<Moonshine>,
}

#[async_trait]
impl SttProvider for MoonshineStt {
    fn name(&self) -> &str {
        "moonshine"
    }
    async fn open(&self) -> Result<Box<dyn SttStream>, ProviderError> {
        todo!()
    }
}
