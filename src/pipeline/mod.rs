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
