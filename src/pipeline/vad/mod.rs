//! Voice activity detection: Silero VAD (ONNX) over 512-sample windows at
//! 16 kHz, recurrent state per call, one shared model ([`silero`]).
//!
//! Turning the per-window probabilities into turns is
//! [`crate::pipeline::turn`]'s job.
pub mod silero;
