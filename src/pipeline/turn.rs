//! Turn detection from VAD probabilities (sans-IO; time is audio time).
//! CONTRACT STUB.

use std::time::Duration;

/// Thresholds; defaults follow LiveKit/Pipecat practice.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Probability at or above which a window counts as speech (0.5).
    pub start_threshold: f32,
    /// Probability below which a window counts as silence (0.35).
    pub stop_threshold: f32,
    /// Speech needed to start a turn, ms (200).
    pub min_speech_ms: u64,
    /// Silence needed to end a turn, ms (500).
    pub min_silence_ms: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig { start_threshold: 0.5, stop_threshold: 0.35, min_speech_ms: 200, min_silence_ms: 500 }
    }
}

/// A change of who is talking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnEvent {
    /// The caller started speaking; `at` is the audio time where speech began.
    SpeechStarted {
        /// Stream offset of the first speech window.
        at: Duration,
    },
    /// The caller's turn ended (after `min_silence_ms` of silence).
    SpeechEnded {
        /// Stream offset where speech began.
        started: Duration,
        /// Stream offset where speech ended (before the trailing silence).
        ended: Duration,
    },
}

/// The detector.
#[derive(Debug, Clone)]
pub struct TurnDetector {}

impl TurnDetector {
    /// A detector with these thresholds.
    pub fn new(cfg: TurnConfig) -> Self {
        let _ = cfg;
        todo!()
    }
    /// One VAD window of `window` length (32 ms) with speech probability `prob`.
    pub fn push(&mut self, prob: f32, window: Duration) -> Option<TurnEvent> {
        let _ = (prob, window);
        todo!()
    }
    /// True between `SpeechStarted` and `SpeechEnded`.
    pub fn speaking(&self) -> bool {
        todo!()
    }
    /// Audio time consumed so far.
    pub fn position(&self) -> Duration {
        todo!()
    }
}
