//! Voice activity detection: Silero VAD (ONNX) over 512-sample windows at
//! 16 kHz, recurrent state per call, one shared model. CONTRACT STUB.
pub mod silero;
