//! Silero VAD v6 through ONNX Runtime. CONTRACT STUB.

use std::path::Path;
use std::sync::Arc;

/// Samples per window (32 ms at 16 kHz).
pub const WINDOW: usize = 512;

/// VAD errors.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VadError {
    /// The model could not be loaded (missing/corrupt file, runtime not loaded).
    #[error("cannot load Silero VAD from {path}: {reason}")]
    Load {
        /// Model path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Inference failed.
    #[error("VAD inference failed: {0}")]
    Inference(String),
}

/// The shared model (one per process; `Send + Sync`).
pub struct SileroVad {}

impl SileroVad {
    /// Loads `silero_vad.onnx`; ONNX Runtime must be initialized first
    /// (`providers::local::onnx::init_runtime`).
    pub fn load(model: &Path) -> Result<Arc<SileroVad>, VadError> {
        let _ = model;
        todo!()
    }
    /// A per-call stream with fresh recurrent state.
    pub fn stream(self: &Arc<Self>) -> VadStream {
        todo!()
    }
}

/// One call's VAD: buffers input and runs one inference per full window.
pub struct VadStream {}

impl VadStream {
    /// Feeds mono PCM16 at 16 kHz (any length); returns the speech
    /// probability (0..=1) of every window completed by this input, in order.
    pub fn push(&mut self, pcm16k: &[i16]) -> Result<Vec<f32>, VadError> {
        let _ = pcm16k;
        todo!()
    }
    /// Clears buffered samples and recurrent state.
    pub fn reset(&mut self) {
        todo!()
    }
}
