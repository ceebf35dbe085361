//! Resampling with rubato. CONTRACT STUB.

/// Resampling errors.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// Rate not supported.
    #[error("cannot resample {from} Hz → {to} Hz: {reason}")]
    Unsupported {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// Why.
        reason: String,
    },
}

/// A streaming mono PCM16 resampler.
pub struct Resampler {}

impl Resampler {
    /// A resampler from `from_hz` to `to_hz` taking `chunk` input samples per call.
    pub fn new(from_hz: u32, to_hz: u32, chunk: usize) -> Result<Self, ResampleError> {
        let _ = (from_hz, to_hz, chunk);
        todo!()
    }
    /// Resamples one chunk of `chunk` samples; output appended to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let _ = (input, out);
        todo!()
    }
}

/// Resamples a whole buffer at once (prompts).
pub fn resample_all(input: &[i16], from_hz: u32, to_hz: u32) -> Result<Vec<i16>, ResampleError> {
    let _ = (input, from_hz, to_hz);
    todo!()
}
