//! Answering-machine detection (AMD) for outbound calls, from the audio alone
//! (sans-IO; time is audio time).
//!
//! Owns one decision per answered outbound call: did a person or a machine
//! pick up? It is fed what the callee sends, as mono PCM16 at 16 kHz
//! (normally 20 ms frames; any length is accepted), together with the
//! caller's VAD speech probability for that frame (Silero, run by the call
//! already). Time is the number of samples pushed since the answer: nothing
//! here reads a clock, so a test replays a call in microseconds and the
//! decision times are audio milliseconds from the answer.
//!
//! # Run loop
//! ```text
//! let mut amd = AmdDetector::new(cfg);
//! for each 20 ms frame after 200 OK {
//!     amd.push(&frame, vad_prob);          // Some(p): caller's VAD; None: built-in energy VAD
//!     while let Some(ev) = amd.poll_event() { act on it }
//!     if amd.is_done() { stop feeding it }
//! }
//! ```
//! Events come in this order: one [`AmdEvent::Decided`]; then, only after a
//! [`AmdResult::Machine`] decision, the [`AmdEvent::Beep`] (if any) and one
//! [`AmdEvent::ReadyForMessage`] (a beep heard *before* the decision makes the
//! decision itself and is reported right after it). A Human or Unknown
//! decision can be revised once: a beep within [`AmdConfig::late_beep_ms`]
//! brings a second `Decided` with Machine (then `Beep`, `ReadyForMessage`);
//! without one the detector is done after that time. After
//! `ReadyForMessage` the detector is done. The call actor maps
//! `Machine` to [`AmdConfig::on_machine`]: hang up at once, or wait for
//! `ReadyForMessage` and speak [`AmdConfig::message`].
//!
//! # Rules (after Asterisk `app_amd`, without its word counter's 8 kHz energy VAD)
//! Asterisk's `amd.conf` parameters and their defaults, and what they are here:
//!
//! | app_amd | default | here | default |
//! |---|---|---|---|
//! | `initial_silence` | 2500 ms | [`AmdConfig::initial_silence_ms`] | 2500 ms |
//! | `greeting` | 1500 ms | [`AmdConfig::greeting_ms`] (voiced time) | 2300 ms |
//! | `after_greeting_silence` | 800 ms | [`AmdConfig::after_greeting_silence_ms`] | 800 ms |
//! | `total_analysis_time` | 5000 ms | [`AmdConfig::total_analysis_ms`] | 5000 ms |
//! | `min_word_length` | 100 ms | [`AmdConfig::min_word_ms`] | 100 ms |
//! | `between_words_silence` | 50 ms | [`AmdConfig::between_words_silence_ms`] | 50 ms |
//! | `maximum_number_of_words` | 2 (3 before Asterisk 1.8) | [`AmdConfig::max_words`] | 0 (off) |
//! | `maximum_word_length` | 5000 ms | covered by `greeting_ms` | |
//! | `silence_threshold` | 256 | [`AmdConfig::energy_threshold`] (only without a VAD probability) | 256 |
//!
//! 1. **Initial silence**: no speech for `initial_silence_ms` after the
//!    answer ⇒ [`AmdConfig::on_initial_silence`] (`unknown` by default;
//!    Asterisk says MACHINE, but a person who picks up and waits for the
//!    caller to speak is common on outbound calls, and a wrongly hung-up
//!    person costs more than a message left on a silent machine).
//! 2. **Beep**: a tone ([`BeepDetector`]) before any other decision ⇒
//!    Machine ("beep 1000 Hz"), decided as soon as the tone is confirmed.
//! 3. **Long greeting**: `greeting_ms` of voiced speech since the first word
//!    (short pauses do not end the greeting) ⇒ Machine ("greeting 2.3 s").
//!    People answer with one or two short phrases ("Hello?", "Hi, this is
//!    Mark.") and then wait; recorded greetings are a continuous monologue.
//! 4. **Many words** (off by default): `max_words` speech bursts of at least
//!    `min_word_ms`, each after `between_words_silence_ms` of silence ⇒
//!    Machine. Silero's probabilities run across short gaps between words,
//!    so bursts here are closer to phrases than to words; measure before
//!    turning it on.
//! 5. **Short greeting, then silence**: after the greeting, silence for
//!    `after_greeting_silence_ms` ⇒ Human ("greeting 0.6 s, then 800 ms
//!    silence"): the person said hello and now waits for an answer.
//! 6. **Too long**: no decision by `total_analysis_ms` ⇒ Unknown.
//! 7. **Late beep**: a beep within `late_beep_ms` after a Human or Unknown
//!    decision revises it to Machine ("beep 1000 Hz after the greeting"):
//!    a short greeting ("Hey, it's Mike. Leave a message.") followed by a
//!    pause longer than `after_greeting_silence_ms` before the beep is
//!    indistinguishable from a person until the beep. The agent that has
//!    started talking stops and leaves its message after the beep.
//!
//! A frame is *speech* when its probability is at or above
//! `speech_threshold`, *silence* below `silence_threshold`, and between the
//! two it continues the current state (hysteresis, as in
//! [`crate::pipeline::turn`]). Without a probability, the frame's mean
//! absolute amplitude against `energy_threshold` decides (app_amd's own VAD).
//!
//! After a Machine decision the detector keeps listening for the beep that
//! invites the message: [`AmdEvent::ReadyForMessage`] comes right after a
//! beep ends, or after `message_silence_ms` of silence once the greeting has
//! ended without one, or `max_message_wait_ms` after the decision at the latest.
//!
//! # Measured (tests/amd.rs, `cargo bench --bench amd`)
//! 38 phone-band clips (8 kHz µ-law → 16 kHz, faint line noise), fed in
//! 20 ms frames with the real Silero VAD's probabilities: 21 machines (8
//! voicemail texts × espeak-ng and Piper, half with a 0.25–0.6 s sox beep at
//! 440–1400 Hz after a 0.3–0.6 s gap; the 5 LibriVox recordings, 3–7 s of
//! real read speech, 2 with a beep) and 17 humans ("Hello?", "Hi, this is
//! Mark.", "Yeah, hello?", "Hello, who's calling?", "Speaking.", "Hello? …
//! Hello?" in both voices; the first 1.2 s of each LibriVox recording).
//!
//! * accuracy 37/38 (97.4 %); first decisions 36/38 (one short greeting,
//!   "Hey, it's Mike. Leave a message.", was revised to Machine by its beep,
//!   rule 7; the same greeting without a beep stays a wrong Human). With the
//!   energy VAD instead of Silero: 36/38.
//! * decision time from the answer (correct decisions): median 2.94 s, max
//!   4.06 s; humans median 2.52 s (max 3.16 s), machines median 3.30 s (max
//!   4.06 s), both including 0.3–0.9 s of silence before the first word.
//! * beeps: all 9 found, start within 4 ms of the truth (tolerance ±60 ms),
//!   frequency within 1 Hz; none on any human answer or beepless greeting.
//! * cost per 20 ms frame (2 shared cores, release): 16 µs on speech (the
//!   Goertzel bank runs on every loud 10 ms hop: 67 filters × 320 samples),
//!   1.6 µs on silence (the energy gate skips the bank); the detector runs
//!   only until its decision and message cue, the first seconds of a call.
//!
//! Network input never panics: any frame length, any sample values, NaN
//! probabilities (silence).
#![deny(missing_docs)]

use std::collections::VecDeque;

/// Sample rate the detector expects, Hz.
pub const SAMPLE_RATE: u32 = 16_000;

/// Samples per millisecond at [`SAMPLE_RATE`].
const SAMPLES_PER_MS: u64 = SAMPLE_RATE as u64 / 1000;

/// What decided a call: person, machine, or not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AmdResult {
    /// A person answered.
    Human,
    /// An answering machine / voicemail answered.
    Machine,
    /// No rule decided (too long, or initial silence configured as unknown).
    Unknown,
}

/// What to do when a machine answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMachine {
    /// Wait for [`AmdEvent::ReadyForMessage`] and speak [`AmdConfig::message`].
    #[default]
    LeaveMessage,
    /// Hang up at the decision.
    Hangup,
}

/// Thresholds and policy; the defaults follow Asterisk `app_amd` where the
/// rule is the same (see the module doc), tuned on tests/amd.rs otherwise.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmdConfig {
    /// Run the detector on this application's outbound calls (true when an
    /// `amd:` section is present; the detector itself ignores it).
    pub enabled: bool,
    /// No speech for this long after the answer ⇒ `on_initial_silence` (2500).
    pub initial_silence_ms: u64,
    /// Result for too long an initial silence (`unknown`; Asterisk: machine).
    pub on_initial_silence: AmdResult,
    /// Voiced speech in the greeting at which it is a machine's (2300).
    pub greeting_ms: u64,
    /// Silence after a shorter greeting that makes it a person (800).
    pub after_greeting_silence_ms: u64,
    /// Analysis gives up with Unknown after this long (5000).
    pub total_analysis_ms: u64,
    /// Shortest speech burst that counts as a word (100).
    pub min_word_ms: u64,
    /// Silence that separates two words (50).
    pub between_words_silence_ms: u64,
    /// Words at which the greeting is a machine's; 0 turns the rule off (0).
    pub max_words: u32,
    /// VAD probability at or above which a frame is speech (0.5).
    pub speech_threshold: f32,
    /// VAD probability below which a frame is silence (0.35).
    pub silence_threshold: f32,
    /// Mean absolute amplitude at or above which a frame is speech when no
    /// VAD probability is given (256, app_amd's `silence_threshold`).
    pub energy_threshold: u16,
    /// After a Machine decision without a beep: silence that ends the
    /// greeting and invites the message (1500).
    pub message_silence_ms: u64,
    /// After a Machine decision: the longest wait for a beep or silence
    /// before inviting the message anyway (20000).
    pub max_message_wait_ms: u64,
    /// After a Human or Unknown decision: how long to keep listening for a
    /// beep that revises it to Machine (a short greeting and a pause before
    /// the beep look like a person who said hello); 0 turns it off (3000).
    pub late_beep_ms: u64,
    /// `leave-message` (default) or `hangup`.
    pub on_machine: OnMachine,
    /// What to say after the beep (text for TTS).
    pub message: String,
    /// The beep detector's thresholds.
    pub beep: BeepConfig,
}

/// Thresholds of the [`BeepDetector`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BeepConfig {
    /// Lowest tone frequency, Hz (400).
    pub min_freq_hz: f32,
    /// Highest tone frequency, Hz (2000).
    pub max_freq_hz: f32,
    /// Shortest tone that is a beep, ms (150).
    pub min_ms: u64,
    /// Share of a block's energy that must lie at the one frequency (0.75).
    pub min_concentration: f32,
    /// Most a block's frequency may stray from the tone's first block, Hz (25).
    pub max_deviation_hz: f32,
    /// Quietest block that can be part of a beep, dBFS RMS (-40).
    pub min_dbfs: f32,
}

/// One decision and why.
#[derive(Debug, Clone, PartialEq)]
pub struct AmdDecision {
    /// Person, machine, or unknown.
    pub result: AmdResult,
    /// The rule that decided, for logs and call records ("greeting 2.3 s",
    /// "beep 1000 Hz", "greeting 0.6 s, then 800 ms silence").
    pub reason: String,
    /// Audio time of the decision, ms from the first sample pushed.
    pub at_ms: u64,
}

/// A beep: one steady tone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beep {
    /// Where the tone started, ms from the first sample pushed.
    pub at_ms: u64,
    /// Where it ended, ms (the message should start here).
    pub end_ms: u64,
    /// Its frequency, Hz.
    pub freq_hz: f32,
}

/// What the detector reports.
#[derive(Debug, Clone, PartialEq)]
pub enum AmdEvent {
    /// The decision (once per call).
    Decided(AmdDecision),
    /// A beep ended (after a Machine decision, or the one that made it).
    Beep(Beep),
    /// The greeting is over: time to leave the message (Machine only).
    ReadyForMessage {
        /// Audio time, ms.
        at_ms: u64,
        /// True when it follows a beep, false after silence or the wait limit.
        after_beep: bool,
    },
}

/// The answering-machine detector of one call (see the module doc).
#[derive(Debug, Clone)]
pub struct AmdDetector {
    /// Thresholds and policy.
    cfg: AmdConfig,
    /// Tone detector over the same audio.
    beeps: BeepDetector,
    /// Samples pushed so far (audio time).
    samples: u64,
    /// Current speech/silence state (with hysteresis).
    speaking: bool,
    /// Length of the current speech burst, samples.
    burst: u64,
    /// Length of the current silence run, samples.
    silence: u64,
    /// Audio time of the first word, once heard.
    greeting_start: Option<u64>,
    /// Voiced samples since the first word.
    voiced: u64,
    /// Words counted (bursts ≥ `min_word_ms` after ≥ `between_words_silence_ms`).
    words: u32,
    /// True while the current burst has been counted as a word already.
    burst_counted: bool,
    /// The decision, once taken.
    decision: Option<AmdDecision>,
    /// Done: nothing more will be reported.
    done: bool,
    /// Events not yet polled.
    events: VecDeque<AmdEvent>,
}

/// Steady-tone detector: a Goertzel filter bank over 20 ms blocks every 10 ms.
///
/// Each block (320 samples at 16 kHz, hop 160) is measured with Goertzel
/// filters every 25 Hz between the configured frequencies; the strongest is
/// refined by parabolic interpolation and measured once more at the refined
/// frequency. The block is *tonal* when it is loud enough (`min_dbfs`) and
/// that one frequency carries `min_concentration` of its energy
/// (`2·|X(f)|² / (N·Σx²)`, 1.0 for a pure sine). A run of tonal blocks whose
/// frequencies stay within `max_deviation_hz` of the first is a tone; when it
/// ends after at least `min_ms` it is a [`Beep`], starting where its first
/// block started. Speech fails the concentration test (its energy spreads
/// over many harmonics and formants, and its pitch glides); noise fails it
/// by far. Silent blocks skip the filter bank, so silence costs almost nothing.
#[derive(Debug, Clone)]
pub struct BeepDetector {
    /// Thresholds.
    cfg: BeepConfig,
    /// Goertzel coefficients `2·cos(2πf/fs)` of the bank.
    coeffs: Vec<f32>,
    /// Frequencies of the bank, Hz.
    freqs: Vec<f32>,
    /// The last [`BLOCK`] samples (ring filled by hops).
    block: Vec<f32>,
    /// Samples of the next hop gathered so far.
    fill: usize,
    /// Samples consumed (audio time).
    samples: u64,
    /// The tone in progress: (start sample, first frequency, sum of
    /// frequencies, blocks).
    run: Option<(u64, f32, f32, u32)>,
    /// End sample of the last tonal block of the run.
    run_end: u64,
    /// Finished beeps not yet polled.
    done: VecDeque<Beep>,
    /// Minimum block energy (Σx² over a block, samples in [-1, 1)).
    min_energy: f32,
}

/// Block length, samples (20 ms).
const BLOCK: usize = 320;
/// Hop between blocks, samples (10 ms).
const HOP: usize = 160;
/// Spacing of the Goertzel bank, Hz.
const BANK_STEP_HZ: f32 = 25.0;

impl Default for AmdConfig {
    fn default() -> Self {
        AmdConfig {
            enabled: true,
            initial_silence_ms: 2500,
            on_initial_silence: AmdResult::Unknown,
            greeting_ms: 2300,
            after_greeting_silence_ms: 800,
            total_analysis_ms: 5000,
            min_word_ms: 100,
            between_words_silence_ms: 50,
            max_words: 0,
            speech_threshold: 0.5,
            silence_threshold: 0.35,
            energy_threshold: 256,
            message_silence_ms: 1500,
            max_message_wait_ms: 20_000,
            late_beep_ms: 3000,
            on_machine: OnMachine::LeaveMessage,
            message: String::new(),
            beep: BeepConfig::default(),
        }
    }
}

impl Default for BeepConfig {
    fn default() -> Self {
        BeepConfig {
            min_freq_hz: 400.0,
            max_freq_hz: 2000.0,
            min_ms: 150,
            min_concentration: 0.75,
            max_deviation_hz: 25.0,
            min_dbfs: -40.0,
        }
    }
}

impl AmdDetector {
    /// A detector at audio time 0 (the answer).
    pub fn new(cfg: AmdConfig) -> AmdDetector {
        let beeps = BeepDetector::new(cfg.beep.clone());
        AmdDetector {
            cfg,
            beeps,
            samples: 0,
            speaking: false,
            burst: 0,
            silence: 0,
            greeting_start: None,
            voiced: 0,
            words: 0,
            burst_counted: false,
            decision: None,
            done: false,
            events: VecDeque::new(),
        }
    }

    /// Feeds one frame of mono PCM16 at 16 kHz (20 ms normally; any length)
    /// and the VAD speech probability for it (`None`: use the energy VAD).
    /// Does nothing once [`AmdDetector::is_done`].
    pub fn push(&mut self, frame: &[i16], speech_prob: Option<f32>) {
        if self.done || frame.is_empty() {
            return;
        }
        self.beeps.push(frame);
        self.samples += frame.len() as u64;
        let speech = self.classify(frame, speech_prob);
        self.track(speech, frame.len() as u64);
        match self.decision.as_ref().map(|d| d.result) {
            None => self.decide(),
            Some(AmdResult::Machine) => self.after_machine(),
            Some(_) => self.late_beep(),
        }
    }

    /// The next event, if any (drain after every push).
    pub fn poll_event(&mut self) -> Option<AmdEvent> {
        self.events.pop_front()
    }

    /// The decision, once taken.
    pub fn decision(&self) -> Option<&AmdDecision> {
        self.decision.as_ref()
    }

    /// True when nothing more will be reported (frames can stop).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Audio time so far, ms.
    pub fn position_ms(&self) -> u64 {
        self.samples / SAMPLES_PER_MS
    }

    /// The configuration in use.
    pub fn config(&self) -> &AmdConfig {
        &self.cfg
    }

    /// Speech or silence for this frame (hysteresis between the thresholds).
    fn classify(&self, frame: &[i16], prob: Option<f32>) -> bool {
        match prob {
            Some(p) if p.is_nan() => false,
            Some(p) if p >= self.cfg.speech_threshold => true,
            Some(p) if p < self.cfg.silence_threshold => false,
            Some(_) => self.speaking,
            None => {
                let sum: u64 = frame.iter().map(|&s| u64::from(s.unsigned_abs())).sum();
                sum / frame.len() as u64 >= u64::from(self.cfg.energy_threshold)
            }
        }
    }

    /// Updates bursts, silences, words and voiced time with one frame.
    fn track(&mut self, speech: bool, len: u64) {
        let ms = |n: u64| n / SAMPLES_PER_MS;
        if speech {
            if !self.speaking {
                // A new burst: it may become a word if the silence before it was long enough.
                self.burst_counted = ms(self.silence) < self.cfg.between_words_silence_ms && self.words > 0;
                self.burst = 0;
            }
            self.speaking = true;
            self.burst += len;
            self.silence = 0;
            if ms(self.burst) >= self.cfg.min_word_ms && !self.burst_counted {
                self.burst_counted = true;
                self.words += 1;
                if self.greeting_start.is_none() {
                    // The greeting starts with its first word; count the burst so far.
                    self.greeting_start = Some(self.samples - self.burst);
                    self.voiced = self.burst - len;
                }
            }
            if self.greeting_start.is_some() {
                self.voiced += len;
            }
        } else {
            self.speaking = false;
            self.silence += len;
        }
    }

    /// Applies the rules before a decision.
    fn decide(&mut self) {
        let now = self.position_ms();
        let ms = |n: u64| n / SAMPLES_PER_MS;
        if let Some(tone) = self.beeps.tone() {
            return self.decided(AmdResult::Machine, format!("beep {:.0} Hz", tone.freq_hz));
        }
        if let Some(b) = self.beeps.poll_beep() {
            // A tone shorter than a confirmation step ended inside one push.
            self.decided(AmdResult::Machine, format!("beep {:.0} Hz", b.freq_hz));
            return self.beep_heard(b);
        }
        match self.greeting_start {
            None if now >= self.cfg.initial_silence_ms => {
                let result = self.cfg.on_initial_silence;
                self.decided(result, format!("initial silence {} ms", now));
            }
            None => {}
            Some(_) => {
                let voiced = ms(self.voiced);
                if voiced >= self.cfg.greeting_ms {
                    self.decided(AmdResult::Machine, format!("greeting {:.1} s", voiced as f64 / 1000.0));
                } else if self.cfg.max_words > 0 && self.words >= self.cfg.max_words {
                    self.decided(AmdResult::Machine, format!("{} words", self.words));
                } else if !self.speaking && ms(self.silence) >= self.cfg.after_greeting_silence_ms {
                    let reason =
                        format!("greeting {:.1} s, then {} ms silence", voiced as f64 / 1000.0, ms(self.silence));
                    self.decided(AmdResult::Human, reason);
                }
            }
        }
        if self.decision.is_none() && now >= self.cfg.total_analysis_ms {
            self.decided(AmdResult::Unknown, format!("no decision in {:.1} s", now as f64 / 1000.0));
        }
    }

    /// After a Machine decision: waits for a beep or the end of the greeting.
    fn after_machine(&mut self) {
        if let Some(b) = self.beeps.poll_beep() {
            return self.beep_heard(b);
        }
        if self.beeps.tone().is_some() {
            return;
        }
        let now = self.position_ms();
        let decided_at = self.decision.as_ref().map_or(0, |d| d.at_ms);
        let greeting_over = !self.speaking && self.silence / SAMPLES_PER_MS >= self.cfg.message_silence_ms;
        if greeting_over || now.saturating_sub(decided_at) >= self.cfg.max_message_wait_ms {
            self.ready(now, false);
        }
    }

    /// After a Human or Unknown decision: a beep within `late_beep_ms`
    /// revises it to Machine; after that the analysis is over.
    fn late_beep(&mut self) {
        let first = self.decision.as_ref().map_or(0, |d| d.at_ms);
        if let Some(tone) = self.beeps.tone() {
            self.decided(AmdResult::Machine, format!("beep {:.0} Hz after the greeting", tone.freq_hz));
        } else if let Some(b) = self.beeps.poll_beep() {
            self.decided(AmdResult::Machine, format!("beep {:.0} Hz after the greeting", b.freq_hz));
            self.beep_heard(b);
        } else if self.position_ms().saturating_sub(first) >= self.cfg.late_beep_ms {
            self.done = true;
        }
    }

    /// Records the decision; Human and Unknown end the analysis unless a
    /// late beep is still awaited.
    fn decided(&mut self, result: AmdResult, reason: String) {
        let d = AmdDecision { result, reason, at_ms: self.position_ms() };
        self.events.push_back(AmdEvent::Decided(d.clone()));
        self.decision = Some(d);
        if result != AmdResult::Machine && self.cfg.late_beep_ms == 0 {
            self.done = true;
        }
    }

    /// A beep ended: report it and invite the message.
    fn beep_heard(&mut self, b: Beep) {
        self.events.push_back(AmdEvent::Beep(b));
        self.ready(b.end_ms, true);
    }

    /// The message may start now.
    fn ready(&mut self, at_ms: u64, after_beep: bool) {
        self.events.push_back(AmdEvent::ReadyForMessage { at_ms, after_beep });
        self.done = true;
    }
}

impl BeepDetector {
    /// A detector at audio time 0 (16 kHz input).
    pub fn new(cfg: BeepConfig) -> BeepDetector {
        let lo = cfg.min_freq_hz.clamp(50.0, 7000.0);
        let hi = cfg.max_freq_hz.clamp(lo, 7000.0);
        // One bin beyond each end, so a peak at an end can be interpolated.
        let n = ((hi - lo) / BANK_STEP_HZ).ceil() as usize + 3;
        let freqs: Vec<f32> = (0..n).map(|i| lo + (i as f32 - 1.0) * BANK_STEP_HZ).collect();
        let coeffs = freqs.iter().map(|&f| coeff(f)).collect();
        let rms = 10f32.powf(cfg.min_dbfs / 20.0);
        BeepDetector {
            min_energy: rms * rms * BLOCK as f32,
            cfg,
            coeffs,
            freqs,
            block: vec![0.0; BLOCK],
            fill: 0,
            samples: 0,
            run: None,
            run_end: 0,
            done: VecDeque::new(),
        }
    }

    /// Feeds mono PCM16 at 16 kHz (any length).
    pub fn push(&mut self, pcm: &[i16]) {
        for &s in pcm {
            self.block[BLOCK - HOP + self.fill] = f32::from(s) / 32768.0;
            self.fill += 1;
            self.samples += 1;
            if self.fill == HOP {
                self.fill = 0;
                self.analyse();
                self.block.copy_within(HOP.., 0);
            }
        }
    }

    /// The next finished beep, if any.
    pub fn poll_beep(&mut self) -> Option<Beep> {
        self.done.pop_front()
    }

    /// The tone in progress once it has lasted `min_ms` (its `end_ms` is
    /// where it has reached so far).
    pub fn tone(&self) -> Option<Beep> {
        let (start, _, sum, n) = self.run?;
        (self.run_end - start >= self.cfg.min_ms * SAMPLES_PER_MS).then(|| Beep {
            at_ms: start / SAMPLES_PER_MS,
            end_ms: self.run_end / SAMPLES_PER_MS,
            freq_hz: sum / n as f32,
        })
    }

    /// Measures the block that just completed and extends or ends the run.
    fn analyse(&mut self) {
        // The block covers samples [self.samples - BLOCK, self.samples); at the
        // start its first part is the zeros it was initialised with.
        let start = self.samples.saturating_sub(BLOCK as u64);
        match self.tonal() {
            Some(f) => match &mut self.run {
                Some((_, first, sum, n)) if (f - *first).abs() <= self.cfg.max_deviation_hz => {
                    *sum += f;
                    *n += 1;
                    self.run_end = self.samples;
                }
                _ => {
                    self.finish_run();
                    // A tone starting inside a block that began in silence: the
                    // block is tonal once the tone fills ≥ min_concentration of
                    // it, so its start is within a hop of the onset.
                    self.run = Some((start, f, f, 1));
                    self.run_end = self.samples;
                }
            },
            None => self.finish_run(),
        }
    }

    /// Ends the run in progress; a long enough one becomes a beep.
    fn finish_run(&mut self) {
        if let Some(b) = self.tone() {
            self.done.push_back(b);
        }
        self.run = None;
    }

    /// The block's one dominant frequency, if it is a tone.
    fn tonal(&self) -> Option<f32> {
        let x = &self.block[..];
        let energy: f32 = x.iter().map(|v| v * v).sum();
        if energy < self.min_energy {
            return None;
        }
        let powers = goertzel_bank(x, &self.coeffs);
        let (k, &peak) = powers.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
        // Parabolic interpolation of the peak over its neighbours.
        let mut f = self.freqs[k];
        if k > 0 && k + 1 < powers.len() {
            let (a, b, c) = (powers[k - 1].sqrt(), peak.sqrt(), powers[k + 1].sqrt());
            let den = a - 2.0 * b + c;
            if den < 0.0 {
                f += (0.5 * (a - c) / den).clamp(-0.5, 0.5) * BANK_STEP_HZ;
            }
        }
        // A few Hz of slack for the interpolation's error at the band edges.
        if f < self.cfg.min_freq_hz - 10.0 || f > self.cfg.max_freq_hz + 10.0 {
            return None;
        }
        let p = goertzel(x, coeff(f)).max(peak);
        let concentration = 2.0 * p / (BLOCK as f32 * energy);
        (concentration >= self.cfg.min_concentration).then_some(f)
    }
}

/// Goertzel coefficient `2·cos(2πf/fs)` at 16 kHz.
fn coeff(f: f32) -> f32 {
    2.0 * (2.0 * std::f32::consts::PI * f / SAMPLE_RATE as f32).cos()
}

/// Power `|X(f)|²` of `x` at one frequency (Goertzel).
fn goertzel(x: &[f32], c: f32) -> f32 {
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s = v + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2).max(0.0)
}

/// Goertzel powers of `x` at every coefficient, bins side by side so the
/// inner loop runs across bins (vectorizes).
fn goertzel_bank(x: &[f32], coeffs: &[f32]) -> Vec<f32> {
    let mut s1 = vec![0.0f32; coeffs.len()];
    let mut s2 = vec![0.0f32; coeffs.len()];
    for &v in x {
        for ((a, b), &c) in s1.iter_mut().zip(s2.iter_mut()).zip(coeffs) {
            let s = v + c * *a - *b;
            *b = *a;
            *a = s;
        }
    }
    s1.iter().zip(&s2).zip(coeffs).map(|((&a, &b), &c)| (a * a + b * b - c * a * b).max(0.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: usize = 320;

    fn sine(freq: f32, ms: u64, amp: f32) -> Vec<i16> {
        let n = (ms * SAMPLES_PER_MS) as usize;
        (0..n)
            .map(|i| (amp * (2.0 * std::f32::consts::PI * freq * i as f32 / SAMPLE_RATE as f32).sin()) as i16)
            .collect()
    }

    /// Deterministic white noise in ±amp (xorshift32).
    fn noise(n: usize, amp: i32, seed: u32) -> Vec<i16> {
        let mut s = seed.max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                ((s % (2 * amp as u32 + 1)) as i32 - amp) as i16
            })
            .collect()
    }

    /// A speech-like signal: a gliding pitch with many harmonics, vowel-like
    /// formant weights, and syllable amplitude modulation.
    fn fake_speech(ms: u64) -> Vec<i16> {
        let n = (ms * SAMPLES_PER_MS) as usize;
        let mut phase = 0.0f32;
        (0..n)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                let f0 = 120.0 + 40.0 * (2.0 * std::f32::consts::PI * 1.3 * t).sin();
                phase += 2.0 * std::f32::consts::PI * f0 / SAMPLE_RATE as f32;
                let mut v = 0.0;
                for h in 1..30 {
                    let fh = f0 * h as f32;
                    let w = (-(fh - 700.0).powi(2) / 2.0e5).exp() + 0.6 * (-(fh - 1200.0).powi(2) / 3.0e5).exp() + 0.05;
                    v += w * (phase * h as f32).sin();
                }
                let env = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 4.0 * t).sin().abs();
                (v * env * 3000.0) as i16
            })
            .collect()
    }

    fn beeps_in(pcm: &[i16]) -> Vec<Beep> {
        let mut d = BeepDetector::new(BeepConfig::default());
        let mut out = Vec::new();
        for f in pcm.chunks(FRAME) {
            d.push(f);
            out.extend(std::iter::from_fn(|| d.poll_beep()));
        }
        d.push(&vec![0; 2 * BLOCK]);
        out.extend(std::iter::from_fn(|| d.poll_beep()));
        out
    }

    #[test]
    fn pure_tones_across_the_band_are_beeps_with_start_and_frequency() {
        for freq in [400.0, 440.0, 660.0, 1000.0, 1037.0, 1400.0, 1990.0] {
            let mut pcm = vec![0i16; 16 * 730];
            pcm.extend(sine(freq, 400, 8000.0));
            pcm.extend(vec![0; 16 * 500]);
            let b = beeps_in(&pcm);
            assert_eq!(b.len(), 1, "{freq} Hz: {b:?}");
            assert!(b[0].at_ms.abs_diff(730) <= 15, "{freq} Hz start {b:?}");
            assert!(b[0].end_ms.abs_diff(1130) <= 15, "{freq} Hz end {b:?}");
            assert!((b[0].freq_hz - freq).abs() <= 5.0, "{freq} Hz measured {b:?}");
        }
    }

    #[test]
    fn tone_after_speech_and_under_noise_is_found() {
        let mut pcm = fake_speech(1500);
        let at = pcm.len() as u64 / SAMPLES_PER_MS;
        pcm.extend(sine(850.0, 300, 6000.0));
        let n = noise(pcm.len(), 300, 7);
        let pcm: Vec<i16> = pcm.iter().zip(&n).map(|(a, b)| a.saturating_add(*b)).collect();
        let b = beeps_in(&pcm);
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(b[0].at_ms.abs_diff(at) <= 20, "{b:?} vs {at}");
        assert!((b[0].freq_hz - 850.0).abs() < 10.0);
    }

    #[test]
    fn short_quiet_out_of_band_dual_tones_noise_and_speech_are_not_beeps() {
        assert!(beeps_in(&sine(1000.0, 120, 8000.0)).is_empty(), "120 ms is too short");
        assert!(beeps_in(&sine(1000.0, 400, 200.0)).is_empty(), "-44 dBFS is too quiet");
        assert!(beeps_in(&sine(300.0, 400, 8000.0)).is_empty(), "300 Hz is below the band");
        assert!(beeps_in(&sine(3000.0, 400, 8000.0)).is_empty(), "3 kHz is above the band");
        let dual: Vec<i16> = sine(440.0, 1000, 5000.0).iter().zip(sine(620.0, 1000, 5000.0)).map(|(a, b)| a + b).collect();
        assert!(beeps_in(&dual).is_empty(), "two tones");
        assert!(beeps_in(&noise(16_000, 8000, 3)).is_empty(), "noise");
        assert!(beeps_in(&fake_speech(3000)).is_empty(), "speech");
        // A sweep (a siren, a glide) is not steady.
        let sweep: Vec<i16> = (0..16_000)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                (8000.0 * (2.0 * std::f32::consts::PI * (600.0 * t + 400.0 * t * t)).sin()) as i16
            })
            .collect();
        assert!(beeps_in(&sweep).is_empty(), "sweep");
    }

    #[test]
    fn any_input_is_accepted() {
        let mut d = AmdDetector::new(AmdConfig::default());
        d.push(&[i16::MIN; 7], Some(f32::NAN));
        d.push(&[i16::MAX; 1000], Some(f32::INFINITY));
        d.push(&[], None);
        d.push(&[i16::MIN, i16::MAX].repeat(500), Some(-1.0));
        assert_eq!(d.position_ms(), (7 + 1000 + 1000) / 16);
    }

    /// Drives the detector with fake VAD probabilities over silent frames:
    /// `script` is (ms, probability) runs; returns the events with the
    /// frame time at which each came out.
    fn run(cfg: AmdConfig, script: &[(u64, f32)]) -> Vec<(u64, AmdEvent)> {
        let mut d = AmdDetector::new(cfg);
        let mut out = Vec::new();
        for &(ms, p) in script {
            for _ in 0..ms / 20 {
                d.push(&[0; FRAME], Some(p));
                let now = d.position_ms();
                out.extend(std::iter::from_fn(|| d.poll_event()).map(|e| (now, e)));
            }
        }
        out
    }

    fn decision(events: &[(u64, AmdEvent)]) -> AmdDecision {
        let ds: Vec<_> = events
            .iter()
            .filter_map(|(_, e)| match e {
                AmdEvent::Decided(d) => Some(d.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(ds.len(), 1, "{events:?}");
        ds[0].clone()
    }

    #[test]
    fn short_hello_then_silence_is_human_after_the_silence_window() {
        let ev = run(AmdConfig::default(), &[(400, 0.0), (600, 0.95), (3000, 0.02)]);
        let d = decision(&ev);
        assert_eq!(d.result, AmdResult::Human, "{d:?}");
        assert_eq!(d.at_ms, 400 + 600 + 800, "{d:?}");
        assert_eq!(d.reason, "greeting 0.6 s, then 800 ms silence");
        assert_eq!(ev.len(), 1, "nothing after the decision: {ev:?}");
    }

    #[test]
    fn a_beep_soon_after_a_human_decision_revises_it_and_a_late_one_does_not() {
        let frames = |d: &mut AmdDetector, pcm: &[i16], p: f32, ev: &mut Vec<AmdEvent>| {
            for f in pcm.chunks(FRAME) {
                d.push(f, Some(p));
                ev.extend(std::iter::from_fn(|| d.poll_event()));
            }
        };
        let cfg = AmdConfig::default();
        let mut d = AmdDetector::new(cfg.clone());
        let mut ev = Vec::new();
        frames(&mut d, &vec![0; 16 * 1200], 0.9, &mut ev); // "Hey, it's Mike. Leave a message."
        frames(&mut d, &vec![0; 16 * 1000], 0.0, &mut ev); // Human at 1200 + 800
        frames(&mut d, &sine(1000.0, 400, 8000.0), 0.0, &mut ev);
        frames(&mut d, &vec![0; 16 * 500], 0.0, &mut ev);
        let decisions: Vec<_> = ev
            .iter()
            .filter_map(|e| if let AmdEvent::Decided(d) = e { Some((d.result, d.at_ms)) } else { None })
            .collect();
        assert_eq!(decisions.len(), 2, "{ev:?}");
        assert_eq!(decisions[0], (AmdResult::Human, 2000));
        assert_eq!(decisions[1].0, AmdResult::Machine);
        assert!(decisions[1].1.abs_diff(2200 + 150) <= 30, "{ev:?}");
        assert!(matches!(ev.last(), Some(AmdEvent::ReadyForMessage { after_beep: true, .. })), "{ev:?}");
        assert!(d.is_done());

        // The same beep after late_beep_ms: the person stays a person.
        let mut d = AmdDetector::new(cfg.clone());
        let mut ev = Vec::new();
        frames(&mut d, &vec![0; 16 * 1200], 0.9, &mut ev);
        frames(&mut d, &vec![0; 16 * (800 + cfg.late_beep_ms as usize)], 0.0, &mut ev);
        assert!(d.is_done());
        frames(&mut d, &sine(1000.0, 400, 8000.0), 0.0, &mut ev);
        assert_eq!(ev.len(), 1, "{ev:?}");
    }

    #[test]
    fn two_short_phrases_with_a_pause_are_still_human() {
        let ev = run(AmdConfig::default(), &[(300, 0.0), (500, 0.9), (500, 0.1), (700, 0.9), (2000, 0.0)]);
        let d = decision(&ev);
        assert_eq!(d.result, AmdResult::Human, "{d:?}");
        assert_eq!(d.at_ms, 300 + 500 + 500 + 700 + 800);
    }

    #[test]
    fn hysteresis_keeps_a_dip_inside_speech() {
        // 0.4 is between the thresholds: it continues speech, so the voiced
        // greeting reaches 2.3 s through the dip.
        let ev = run(AmdConfig::default(), &[(200, 0.0), (1200, 0.9), (600, 0.4), (1000, 0.9)]);
        let d = decision(&ev);
        assert_eq!(d.result, AmdResult::Machine, "{d:?}");
        assert_eq!(d.at_ms, 200 + 2300, "{d:?}");
    }

    #[test]
    fn long_greeting_is_machine_at_the_greeting_threshold_then_waits_for_silence() {
        let ev = run(AmdConfig::default(), &[(500, 0.0), (1500, 0.9), (400, 0.1), (2500, 0.9), (3000, 0.0)]);
        let d = decision(&ev);
        assert_eq!(d.result, AmdResult::Machine);
        // 2300 ms voiced: 1500 before the pause, 800 after it.
        assert_eq!(d.at_ms, 500 + 1500 + 400 + 800, "{d:?}");
        assert_eq!(d.reason, "greeting 2.3 s");
        let ready = ev.iter().find_map(|(_, e)| match e {
            AmdEvent::ReadyForMessage { at_ms, after_beep } => Some((*at_ms, *after_beep)),
            _ => None,
        });
        assert_eq!(ready, Some((500 + 1500 + 400 + 2500 + 1500, false)), "{ev:?}");
    }

    #[test]
    fn initial_silence_follows_the_config() {
        let d = decision(&run(AmdConfig::default(), &[(4000, 0.0)]));
        assert_eq!((d.result, d.at_ms), (AmdResult::Unknown, 2500));
        let cfg = AmdConfig { on_initial_silence: AmdResult::Machine, initial_silence_ms: 3000, ..AmdConfig::default() };
        let d = decision(&run(cfg, &[(4000, 0.0)]));
        assert_eq!((d.result, d.at_ms), (AmdResult::Machine, 3000));
        assert_eq!(d.reason, "initial silence 3000 ms");
    }

    #[test]
    fn a_click_is_not_a_word_and_on_off_talk_runs_out_of_time() {
        // 60 ms bursts are below min_word_ms: still initial silence.
        let d = decision(&run(AmdConfig::default(), &[(1000, 0.0), (60, 0.9), (2000, 0.0)]));
        assert_eq!((d.result, d.at_ms), (AmdResult::Unknown, 2500), "{d:?}");
        // Speech and pauses that never reach either rule: Unknown at 5 s.
        let script: Vec<(u64, f32)> = (0..10).flat_map(|_| [(200, 0.9), (500, 0.0)]).collect();
        let d = decision(&run(AmdConfig::default(), &script));
        assert_eq!((d.result, d.at_ms), (AmdResult::Unknown, 5000), "{d:?}");
    }

    #[test]
    fn max_words_counts_bursts_after_gaps() {
        let cfg = AmdConfig { max_words: 3, ..AmdConfig::default() };
        let d = decision(&run(cfg, &[(200, 0.9), (100, 0.0), (200, 0.9), (100, 0.0), (200, 0.9), (1000, 0.0)]));
        assert_eq!((d.result, d.at_ms), (AmdResult::Machine, 200 + 100 + 200 + 100 + 100), "{d:?}");
        assert_eq!(d.reason, "3 words");
    }

    #[test]
    fn a_beep_decides_machine_and_invites_the_message_when_it_ends() {
        let mut d = AmdDetector::new(AmdConfig::default());
        let mut pcm = vec![0i16; 16 * 600];
        pcm.extend(sine(1000.0, 400, 8000.0));
        pcm.extend(vec![0i16; 16 * 1000]);
        let mut events = Vec::new();
        for f in pcm.chunks(FRAME) {
            d.push(f, Some(0.0));
            events.extend(std::iter::from_fn(|| d.poll_event()));
        }
        let AmdEvent::Decided(dec) = &events[0] else { panic!("{events:?}") };
        assert_eq!(dec.result, AmdResult::Machine);
        assert_eq!(dec.reason, "beep 1000 Hz");
        assert!(dec.at_ms.abs_diff(600 + 150) <= 30, "{dec:?}");
        let AmdEvent::Beep(b) = events[1] else { panic!("{events:?}") };
        assert!(b.at_ms.abs_diff(600) <= 15 && b.end_ms.abs_diff(1000) <= 20, "{b:?}");
        assert_eq!(events[2], AmdEvent::ReadyForMessage { at_ms: b.end_ms, after_beep: true });
        assert_eq!(events.len(), 3);
        assert!(d.is_done());
    }

    #[test]
    fn energy_vad_is_used_without_probabilities() {
        let mut d = AmdDetector::new(AmdConfig::default());
        let mut pcm = vec![0i16; 16 * 300];
        pcm.extend(fake_speech(3000));
        for f in pcm.chunks(FRAME) {
            d.push(f, None);
        }
        let dec = d.decision().expect("decided");
        assert_eq!(dec.result, AmdResult::Machine, "{dec:?}");
        assert!(dec.at_ms.abs_diff(300 + 2300) <= 200, "{dec:?}");
    }

    #[test]
    fn config_defaults_and_kebab_case_policy_parse() {
        let cfg: AmdConfig =
            serde_yaml_ng::from_str("on_machine: hangup\nmessage: Hi, call me back.\nbeep: {min_ms: 200}\n").unwrap();
        assert_eq!(cfg.on_machine, OnMachine::Hangup);
        assert_eq!(cfg.beep.min_ms, 200);
        assert_eq!(cfg.greeting_ms, AmdConfig::default().greeting_ms);
        let cfg: AmdConfig = serde_yaml_ng::from_str("on_machine: leave-message\non_initial_silence: machine").unwrap();
        assert_eq!((cfg.on_machine, cfg.on_initial_silence), (OnMachine::LeaveMessage, AmdResult::Machine));
        assert!(serde_yaml_ng::from_str::<AmdConfig>("greting_ms: 3").is_err());
    }
}
