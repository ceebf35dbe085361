//! Offline providers: the models skald installs from package registries
//! ([`models`]), the ONNX Runtime they run on ([`onnx`]), Moonshine STT
//! ([`moonshine`]), Piper TTS ([`piper`]) and the smart-turn end-of-turn
//! model ([`smart_turn`], on [`whisper_features`]). Silero VAD lives in
//! [`crate::pipeline::vad`].

pub mod models;
pub mod moonshine;
pub mod onnx;
pub mod piper;
pub mod smart_turn;
pub mod whisper_features;
