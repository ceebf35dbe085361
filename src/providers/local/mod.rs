//! Offline providers: the models skald installs from package registries
//! ([`models`]), the ONNX Runtime they run on ([`onnx`]), Moonshine STT
//! ([`moonshine`]) and Piper TTS ([`piper`]). Silero VAD lives in
//! [`crate::pipeline::vad`].

pub mod models;
pub mod moonshine;
pub mod onnx;
pub mod piper;
