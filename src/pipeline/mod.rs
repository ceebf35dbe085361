//! The media pipeline. Internal format: mono PCM16, 16 kHz, 20 ms frames
//! (320 samples).
pub mod aggregator;
pub mod amd;
pub mod endpointing;
pub mod frame;
pub mod mixer;
pub mod processor;
pub mod recorder;
pub mod turn;
pub mod vad;
pub mod wav;

/// Internal sample rate, Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples in one 20 ms frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 320;

/// Root mean square of `pcm` (PCM16 units; 0 for no samples).
pub fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / pcm.len() as f64).sqrt()
}

/// Brings mono PCM16 audio at `rate` Hz (a TTS voice, a WAV prompt) into
/// the pipeline's format: mono PCM16 at [`SAMPLE_RATE`]. Audio already at
/// 16 kHz is copied as is. Errors: the resampler refuses the rate (0 Hz).
pub fn to_pipeline_rate(pcm: &[i16], rate: u32) -> Result<Vec<i16>, String> {
    crate::rtp::codec::resample::resample_all(pcm, rate, SAMPLE_RATE).map_err(|e| e.to_string())
}
