//! Turn detection from VAD probabilities (sans-IO; time is audio time).
//!
//! Owns the decision "the caller started / stopped talking" for one call.
//! Input is one speech probability per VAD window (Silero: 512 samples,
//! 32 ms) together with that window's duration; output is at most one
//! [`TurnEvent`] per window. Time is the sum of the window durations pushed
//! (audio time): nothing here reads a clock, so a test replays a call in
//! microseconds and a late-arriving batch of windows yields the same events.
//!
//! # State machine (Pipecat `VADAnalyzer` states; Silero `get_speech_timestamps` hysteresis)
//! ```text
//!            p >= start                   speech run >= min_speech
//!   Quiet ─────────────────► Starting ──────────────────────────► Speaking   (SpeechStarted{at})
//!     ▲                        │ p < stop                            │  ▲
//!     └────────────────────────┘ (a cough: no event)        p < stop │  │ p >= stop (same turn)
//!     ▲                                                              ▼  │
//!     └──────────────────────────────────────────────────────────── Stopping
//!          silence run >= min_silence                    (SpeechEnded{started, ended})
//! ```
//! * A window is *speech* when `p >= start_threshold`, *silence* when
//!   `p < stop_threshold`; between the two it continues whatever is going
//!   on (hysteresis): it extends a speech run once one has begun, and it
//!   interrupts a silence run inside a turn (speech resuming).
//! * `at`/`started` is the offset of the first window of the speech run that
//!   started the turn; `ended` is the offset where the final silence run
//!   began (the end of the last speech window).
//! * The event fires on the window that completes `min_speech_ms` of speech
//!   or `min_silence_ms` of silence; with 32 ms windows and the defaults that
//!   is after 7 windows (224 ms) and after 16 windows (512 ms).
//! * NaN probabilities count as silence; any input is accepted (no panics).

use std::cmp::Ordering;
use std::time::Duration;

/// Turn-taking settings of a voice agent (`applications.NAME.turn`):
/// the VAD thresholds this detector uses, and the end-of-turn policy and
/// interruption settings the voice agent applies on top of it
/// ([`crate::pipeline::endpointing`]). Defaults follow LiveKit/Pipecat
/// practice.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TurnConfig {
    /// Probability at or above which a window counts as speech (0.5).
    pub start_threshold: f32,
    /// Probability below which a window counts as silence (0.35).
    pub stop_threshold: f32,
    /// Speech needed to start a turn, ms (200).
    pub min_speech_ms: u64,
    /// Silence needed to end a turn, ms (500): this detector's rule, and the
    /// voice agent's silence rule (detector `vad`, or when the model fails).
    pub min_silence_ms: u64,
    /// What ends the caller's turn: `smart-turn` (the end-of-turn model,
    /// default) or `vad` (silence alone, `min_silence_ms`).
    pub detector: crate::pipeline::endpointing::Detector,
    /// Silence after which the model (once per pause) and STT are asked, ms (200).
    pub pause_ms: u64,
    /// The turn ends after this much silence whatever the model says, ms (1800).
    pub max_silence_ms: u64,
    /// Model probability at or above which the turn is complete (0.5).
    pub eot_threshold: f32,
    /// Start the agent's reply on the transcript as soon as the caller
    /// pauses; play it only once the turn is confirmed (true).
    pub preemptive: bool,
    /// Caller speech starting this soon after the agent's reply began to
    /// play (or before it did) continues the caller's last turn, ms (1500).
    pub continuation_ms: u64,
    /// Acknowledgements that do not interrupt the agent (compared as words);
    /// absent: [`crate::pipeline::endpointing::DEFAULT_BACKCHANNELS`].
    pub backchannels: Option<Vec<String>>,
    /// Words other than backchannels needed to interrupt the agent (1).
    pub min_interruption_words: usize,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            start_threshold: 0.5,
            stop_threshold: 0.35,
            min_speech_ms: 200,
            min_silence_ms: 500,
            detector: crate::pipeline::endpointing::Detector::SmartTurn,
            pause_ms: 200,
            max_silence_ms: 1800,
            eot_threshold: 0.5,
            preemptive: true,
            continuation_ms: 1500,
            backchannels: None,
            min_interruption_words: 1,
        }
    }
}

impl TurnConfig {
    /// The end-of-turn policy's settings.
    pub fn endpointing(&self) -> crate::pipeline::endpointing::EndpointingConfig {
        crate::pipeline::endpointing::EndpointingConfig {
            detector: self.detector,
            pause_ms: self.pause_ms.min(self.min_silence_ms),
            silence_ms: self.min_silence_ms,
            max_silence_ms: self.max_silence_ms.max(self.min_silence_ms),
            threshold: self.eot_threshold,
            confident: self.eot_threshold.max(0.9),
        }
    }

    /// The backchannel filter.
    pub fn interruption_filter(&self) -> crate::pipeline::endpointing::InterruptionFilter {
        use crate::pipeline::endpointing::{DEFAULT_BACKCHANNELS, InterruptionFilter};
        match &self.backchannels {
            Some(list) => InterruptionFilter::new(list, self.min_interruption_words),
            None => InterruptionFilter::new(DEFAULT_BACKCHANNELS, self.min_interruption_words),
        }
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

/// The detector (one per call).
#[derive(Debug, Clone)]
pub struct TurnDetector {
    /// Thresholds and durations.
    cfg: TurnConfig,
    /// Where the detector is.
    state: State,
    /// Audio time consumed so far (sum of pushed window durations).
    position: Duration,
}

/// Detector state; each carries the offsets it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No speech.
    Quiet,
    /// A speech run began at `since`, not yet long enough to be a turn.
    Starting {
        /// Offset of the run's first window.
        since: Duration,
    },
    /// In a turn that began at `started`.
    Speaking {
        /// Offset where the turn began.
        started: Duration,
    },
    /// In a turn, in a silence run that began at `silence_since`.
    Stopping {
        /// Offset where the turn began.
        started: Duration,
        /// Offset of the silence run's first window.
        silence_since: Duration,
    },
}

impl TurnDetector {
    /// A detector with these thresholds. A `stop_threshold` above
    /// `start_threshold` is lowered to it (no hysteresis).
    pub fn new(cfg: TurnConfig) -> Self {
        let mut cfg = cfg;
        // Also catches a NaN stop threshold.
        if !matches!(cfg.stop_threshold.partial_cmp(&cfg.start_threshold), Some(Ordering::Less | Ordering::Equal)) {
            cfg.stop_threshold = cfg.start_threshold;
        }
        TurnDetector { cfg, state: State::Quiet, position: Duration::ZERO }
    }

    /// One VAD window of `window` length (32 ms) with speech probability
    /// `prob` (0..=1; NaN counts as 0). Returns the event this window
    /// completes, if any.
    pub fn push(&mut self, prob: f32, window: Duration) -> Option<TurnEvent> {
        let prob = if prob.is_nan() { 0.0 } else { prob };
        let start = self.position;
        let end = start.saturating_add(window);
        self.position = end;
        let speech = prob >= self.cfg.start_threshold;
        let silence = prob < self.cfg.stop_threshold;
        let min_speech = Duration::from_millis(self.cfg.min_speech_ms);
        let min_silence = Duration::from_millis(self.cfg.min_silence_ms);
        let (next, event) = match self.state {
            State::Quiet if speech => Self::starting(start, end, min_speech),
            State::Quiet => (State::Quiet, None),
            State::Starting { .. } if silence => (State::Quiet, None),
            State::Starting { since } => Self::starting(since, end, min_speech),
            State::Speaking { started } if silence => Self::stopping(started, start, end, min_silence),
            State::Speaking { started } => (State::Speaking { started }, None),
            State::Stopping { started, silence_since } if silence => {
                Self::stopping(started, silence_since, end, min_silence)
            }
            State::Stopping { started, .. } => (State::Speaking { started }, None),
        };
        self.state = next;
        event
    }

    /// True between `SpeechStarted` and `SpeechEnded`.
    pub fn speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. } | State::Stopping { .. })
    }

    /// How long the caller has been voicing without a break, at the
    /// current position: the speech run under way, whether or not it is
    /// yet long enough to be a turn (`min_speech_ms`); `None` in quiet and
    /// in a pause inside a turn. Barge-in acts on this before the turn is
    /// confirmed (LiveKit's `min_interruption_duration`).
    pub fn voiced_for(&self) -> Option<Duration> {
        match self.state {
            State::Starting { since } => Some(self.position - since),
            State::Speaking { started } => Some(self.position - started),
            State::Quiet | State::Stopping { .. } => None,
        }
    }

    /// Audio time consumed so far.
    pub fn position(&self) -> Duration {
        self.position
    }

    /// The thresholds in force (after [`TurnDetector::new`]'s adjustment).
    pub fn config(&self) -> &TurnConfig {
        &self.cfg
    }

    /// A speech run from `since` to `end`: a turn once it is long enough.
    fn starting(since: Duration, end: Duration, min_speech: Duration) -> (State, Option<TurnEvent>) {
        if end - since >= min_speech {
            (State::Speaking { started: since }, Some(TurnEvent::SpeechStarted { at: since }))
        } else {
            (State::Starting { since }, None)
        }
    }

    /// A silence run from `since` to `end` inside a turn from `started`: the
    /// end of the turn once it is long enough.
    fn stopping(started: Duration, since: Duration, end: Duration, min_silence: Duration) -> (State, Option<TurnEvent>) {
        if end - since >= min_silence {
            (State::Quiet, Some(TurnEvent::SpeechEnded { started, ended: since }))
        } else {
            (State::Stopping { started, silence_since: since }, None)
        }
    }
}

/// Level window of [`speech_tail`], samples at 16 kHz (10 ms).
const TAIL_WINDOW: usize = 160;
/// A window is voice for [`speech_tail`] within this ratio of the loudest
/// window scanned: -30 dB.
const TAIL_RATIO: f64 = 31.6;

/// Where the voice really ends in `pcm` (16 kHz mono PCM16 that runs up to
/// where the VAD put the end of speech): the number of samples up to the
/// end of the last 10 ms window within 30 dB of the loudest one. The VAD's
/// probability stays up for a while after the last syllable (Silero: one
/// to several 32 ms windows), so the caller's speech ended this much before
/// the VAD's `ended`; the per-turn latency record counts from here, as the
/// caller does. `None` when `pcm` holds less than one window or no window
/// above digital silence.
pub fn speech_tail(pcm: &[i16]) -> Option<usize> {
    let levels: Vec<f64> = pcm.chunks_exact(TAIL_WINDOW).map(super::rms).collect();
    let loud = levels.iter().copied().fold(0f64, f64::max);
    if loud < 8.0 {
        return None;
    }
    let last = levels.iter().rposition(|&l| l * TAIL_RATIO >= loud)?;
    Some((last + 1) * TAIL_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(32);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Pushes `probs` (32 ms windows) and returns (window index, event) pairs.
    fn run(det: &mut TurnDetector, probs: &[f32]) -> Vec<(usize, TurnEvent)> {
        let base = (det.position().as_millis() / 32) as usize;
        probs.iter().enumerate().filter_map(|(i, &p)| det.push(p, W).map(|e| (base + i, e))).collect()
    }

    fn repeat(p: f32, n: usize) -> Vec<f32> {
        vec![p; n]
    }

    #[test]
    fn short_blip_is_ignored() {
        let mut det = TurnDetector::new(TurnConfig::default());
        // A 160 ms cough (5 windows) between silences.
        let mut probs = repeat(0.0, 10);
        probs.extend(repeat(0.95, 5));
        probs.extend(repeat(0.0, 30));
        assert!(run(&mut det, &probs).is_empty());
        assert!(!det.speaking());
        assert_eq!(det.position(), ms(45 * 32));
    }

    #[test]
    fn turn_starts_after_200ms_and_ends_after_500ms_of_silence() {
        let mut det = TurnDetector::new(TurnConfig::default());
        let mut probs = repeat(0.1, 10); // 0..320 ms quiet
        probs.extend(repeat(0.9, 20)); // 320..960 ms speech
        probs.extend(repeat(0.05, 20)); // 960..1600 ms silence
        let events = run(&mut det, &probs);
        // 7 windows (224 ms ≥ 200 ms) after 320 ms: fires on window 16.
        // 16 windows (512 ms ≥ 500 ms) after 960 ms: fires on window 45.
        assert_eq!(
            events,
            [
                (16, TurnEvent::SpeechStarted { at: ms(320) }),
                (45, TurnEvent::SpeechEnded { started: ms(320), ended: ms(960) }),
            ]
        );
        assert!(!det.speaking());
    }

    #[test]
    fn speaking_flag_follows_events() {
        let mut det = TurnDetector::new(TurnConfig::default());
        for _ in 0..6 {
            assert_eq!(det.push(0.9, W), None);
            assert!(!det.speaking());
        }
        assert_eq!(det.push(0.9, W), Some(TurnEvent::SpeechStarted { at: ms(0) }));
        assert!(det.speaking());
        for _ in 0..15 {
            assert_eq!(det.push(0.0, W), None);
            assert!(det.speaking(), "still in the turn during trailing silence");
        }
        assert_eq!(det.push(0.0, W), Some(TurnEvent::SpeechEnded { started: ms(0), ended: ms(224) }));
    }

    #[test]
    fn speech_resuming_within_the_silence_window_continues_the_turn() {
        let mut det = TurnDetector::new(TurnConfig::default());
        let mut probs = repeat(0.9, 10); // 0..320 speech
        probs.extend(repeat(0.0, 12)); // 320..704: 384 ms pause, < 500
        probs.extend(repeat(0.8, 5)); // 704..864 speech resumes
        probs.extend(repeat(0.0, 16)); // 864..1376: 512 ms silence
        let events = run(&mut det, &probs);
        assert_eq!(
            events,
            [
                (6, TurnEvent::SpeechStarted { at: ms(0) }),
                (42, TurnEvent::SpeechEnded { started: ms(0), ended: ms(864) }),
            ]
        );
    }

    #[test]
    fn voiced_for_counts_the_run_before_and_after_the_turn_starts() {
        let mut det = TurnDetector::new(TurnConfig::default());
        assert_eq!(det.voiced_for(), None);
        run(&mut det, &repeat(0.9, 3));
        assert_eq!(det.voiced_for(), Some(ms(96)), "a run not yet a turn");
        run(&mut det, &repeat(0.9, 4));
        assert!(det.speaking());
        assert_eq!(det.voiced_for(), Some(ms(224)));
        run(&mut det, &repeat(0.1, 1));
        assert_eq!(det.voiced_for(), None, "a pause inside the turn");
        let mut blip = TurnDetector::new(TurnConfig::default());
        run(&mut blip, &[0.9, 0.9, 0.1]);
        assert_eq!(blip.voiced_for(), None, "a blip that ended");
    }

    #[test]
    fn the_speech_tail_is_the_last_window_within_30_db_of_the_loudest() {
        // 200 ms of voice at 8000, 100 ms fading at 400 (-26 dB: still
        // voice), then 150 ms at 100 (-38 dB: room tone).
        let mut pcm = vec![8000i16; 3200];
        pcm.extend(std::iter::repeat_n(400i16, 1600));
        pcm.extend(std::iter::repeat_n(100i16, 2400));
        assert_eq!(speech_tail(&pcm), Some(4800));
        assert_eq!(speech_tail(&pcm[..4800]), Some(4800), "voice to the end");
        assert_eq!(speech_tail(&vec![0i16; 3200]), None, "digital silence");
        assert_eq!(speech_tail(&pcm[..100]), None, "under one window");
    }

    #[test]
    fn hysteresis_between_thresholds() {
        let mut det = TurnDetector::new(TurnConfig::default());
        // 0.4 is neither speech (< 0.5) nor silence (≥ 0.35).
        // Alone it never starts a turn.
        assert!(run(&mut det, &repeat(0.4, 50)).is_empty());
        // After one speech window it extends the run into a turn.
        let mut probs = vec![0.6];
        probs.extend(repeat(0.4, 6));
        let events = run(&mut det, &probs);
        assert_eq!(events, [(56, TurnEvent::SpeechStarted { at: ms(50 * 32) })]);
        // Inside the turn it keeps the turn alive indefinitely…
        assert!(run(&mut det, &repeat(0.4, 100)).is_empty());
        assert!(det.speaking());
        // …and interrupts a silence run: 15 silent, one 0.4, 15 silent: no end.
        let mut probs = repeat(0.3, 15);
        probs.push(0.4);
        probs.extend(repeat(0.3, 15));
        assert!(run(&mut det, &probs).is_empty());
        let at = det.position();
        assert_eq!(det.push(0.3, W), Some(TurnEvent::SpeechEnded { started: ms(50 * 32), ended: at - ms(15 * 32) }));
    }

    #[test]
    fn speech_run_broken_by_silence_starts_over() {
        let mut det = TurnDetector::new(TurnConfig::default());
        let mut probs = repeat(0.9, 6); // 192 ms, one short of 7 windows
        probs.push(0.1); // silence: the run is dropped
        probs.extend(repeat(0.9, 7)); // 224 ms from window 7
        let events = run(&mut det, &probs);
        assert_eq!(events, [(13, TurnEvent::SpeechStarted { at: ms(7 * 32) })]);
    }

    #[test]
    fn exact_durations_and_odd_windows() {
        // 20 ms windows: 200 ms = exactly 10 windows; 500 ms = 25.
        let cfg = TurnConfig::default();
        let mut det = TurnDetector::new(cfg);
        let w = ms(20);
        let mut events = Vec::new();
        for i in 0..10 {
            events.extend(det.push(1.0, w).map(|e| (i, e)));
        }
        for i in 10..35 {
            events.extend(det.push(0.0, w).map(|e| (i, e)));
        }
        assert_eq!(
            events,
            [(9, TurnEvent::SpeechStarted { at: ms(0) }), (34, TurnEvent::SpeechEnded { started: ms(0), ended: ms(200) })]
        );
        assert_eq!(det.position(), ms(700));
    }

    #[test]
    fn odd_input_does_not_panic() {
        let mut det = TurnDetector::new(TurnConfig {
            start_threshold: 0.2,
            stop_threshold: 0.9, // above start: clamped to 0.2
            min_speech_ms: 0,
            min_silence_ms: 0,
            ..TurnConfig::default()
        });
        assert_eq!(det.config().stop_threshold, 0.2);
        assert_eq!(det.push(f32::NAN, W), None);
        assert_eq!(det.push(f32::INFINITY, W), Some(TurnEvent::SpeechStarted { at: W }));
        assert_eq!(det.push(f32::NEG_INFINITY, W), Some(TurnEvent::SpeechEnded { started: W, ended: ms(64) }));
        assert_eq!(det.push(0.5, Duration::ZERO), Some(TurnEvent::SpeechStarted { at: ms(96) }));
        det.push(0.5, Duration::MAX);
        det.push(0.5, Duration::MAX);
        assert_eq!(det.position(), Duration::MAX);
        let mut nan_cfg = TurnDetector::new(TurnConfig { stop_threshold: f32::NAN, ..TurnConfig::default() });
        assert_eq!(nan_cfg.config().stop_threshold, 0.5);
        assert_eq!(nan_cfg.push(0.4, W), None);
    }
}
