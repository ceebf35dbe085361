//! WAV prompts and recordings (hound). CONTRACT STUB.

use std::path::Path;

/// WAV errors.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// Reading/writing failed.
    #[error("{path}: {source}")]
    Hound {
        /// File.
        path: String,
        /// Cause.
        source: hound::Error,
    },
    /// Unsupported format.
    #[error("{path}: {reason}")]
    Format {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Loads a WAV of any rate / channel count / sample format as mono PCM16 at 16 kHz.
pub fn load_prompt(path: &Path) -> Result<Vec<i16>, WavError> {
    let _ = path;
    todo!()
}

/// Writes mono PCM16 at a fixed rate, frame by frame; finalize on end.
pub struct WavRecorder {}

impl WavRecorder {
    /// Creates the file (parent dirs too).
    pub fn create(path: &Path, sample_rate: u32) -> Result<Self, WavError> {
        let _ = (path, sample_rate);
        todo!()
    }
    /// Appends samples.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), WavError> {
        let _ = samples;
        todo!()
    }
    /// Writes the header and closes.
    pub fn finalize(self) -> Result<(), WavError> {
        todo!()
    }
}
