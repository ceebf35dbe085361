//! The caller's audio, made before the call: text spoken by the local
//! Piper voice (its noise sampling off, so every run says the same audio),
//! WAV recordings clipped and resampled, pauses as silence; all as 16 kHz
//! mono PCM16. Speech parts are trimmed of leading and trailing quiet
//! (keeping [`EDGE_MS`]), so a `pause_ms` is the pause the agent hears.
//!
//! Text parts of one `say` separated only by pauses (a *phrase*) are
//! spoken as one Piper utterance (their texts joined with spaces), so each
//! pause falls mid-sentence with the continuing intonation of a caller who
//! hesitates, not after a fragment said as a finished sentence. The
//! utterance is cut back into the parts at its own quiet points
//! ([`cut_points`]) and each pause is inserted there, replacing the gap's
//! own quiet ([`join_at_cuts`]): the quiet between the two pieces is
//! exactly `pause_ms`.

use super::caller::{Interjection, ScriptStep, Turn};
use super::scenario::{Part, Scenario, Speech, Step, WavClip};
use crate::providers::local::models::ModelPaths;
use crate::providers::local::{onnx, piper::Piper};
use crate::rtp::codec::resample::resample_all;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Output rate, Hz.
const RATE: u32 = 16_000;
/// Quiet kept around trimmed speech, ms.
pub const EDGE_MS: usize = 40;
/// Analysis window of the trimming and cutting, ms.
const WINDOW_MS: usize = 10;
/// Shortest quiet run inside an utterance that is a gap to cut in, ms.
const MIN_GAP_MS: usize = 30;
/// Shortest gap that may be a punctuation pause (Piper pauses at a comma), ms.
const PUNCTUATION_GAP_MS: usize = 80;
/// How far from its expected position a boundary's gap may be: this, or
/// [`SEARCH_SHARE`] of the utterance if more, ms.
const SEARCH_MS: usize = 400;
/// How far from its expected position a boundary's gap may be, as a share
/// of the utterance's speech.
const SEARCH_SHARE: f64 = 0.15;
/// Without a gap, a boundary is cut at the quietest point this close to its
/// expected position, ms.
const FALLBACK_MS: usize = 300;
/// Least audio each piece of a cut utterance keeps, ms.
const MIN_PIECE_MS: usize = 100;
/// Punctuation after which Piper pauses.
const CLAUSE_MARKS: &[char] = &[',', ';', ':', '.', '!', '?', '\u{2026}', '\u{2013}', '\u{2014}'];

/// Why the caller's audio cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The local voice cannot be loaded (models missing).
    #[error("the caller's voice (Piper): {0} (run `skald models fetch`, or give --models-dir)")]
    Voice(String),
    /// Synthesis of a text failed.
    #[error("cannot synthesize \"{text}\": {why}")]
    Synthesis {
        /// The text.
        text: String,
        /// Why.
        why: String,
    },
    /// A WAV file cannot be used.
    #[error("{path}: {why}")]
    Wav {
        /// The file, as the scenario names it.
        path: String,
        /// Why.
        why: String,
    },
}

impl RenderError {
    /// The text in the scenario that caused it (to find its line).
    pub fn needle(&self) -> Option<String> {
        match self {
            RenderError::Voice(_) => None,
            RenderError::Synthesis { text, .. } => Some(text.clone()),
            RenderError::Wav { path, .. } => Path::new(path).file_name().map(|n| n.to_string_lossy().to_string()),
        }
    }
}

/// Renders every step of `scenario` (blocking: runs the TTS; call from
/// `spawn_blocking`). The voice is loaded from `models_dir` only when the
/// scenario has text.
pub fn render(scenario: &Scenario, models_dir: &Path) -> Result<Vec<ScriptStep>, RenderError> {
    let texts = scenario.texts();
    let voice = if texts.is_empty() { None } else { Some(load_voice(models_dir)?) };
    let mut spoken: HashMap<String, Arc<Vec<i16>>> = HashMap::new();
    let mut say = |text: &str| -> Result<Arc<Vec<i16>>, RenderError> {
        if let Some(a) = spoken.get(text) {
            return Ok(a.clone());
        }
        let Some(v) = voice.as_ref() else { return Err(RenderError::Voice("not loaded".into())) };
        let err = |why: String| RenderError::Synthesis { text: text.to_string(), why };
        let pcm = v.synthesize_sentence(text).map_err(|e| err(e.to_string()))?;
        let pcm = resample_all(&pcm, v.sample_rate(), RATE).map_err(|e| err(e.to_string()))?;
        let audio = Arc::new(trim(&pcm));
        if audio.is_empty() {
            return Err(err("nothing speakable".into()));
        }
        spoken.insert(text.to_string(), audio.clone());
        Ok(audio)
    };
    let mut out = Vec::new();
    for step in &scenario.steps {
        out.push(match step {
            Step::Expect(_) => ScriptStep::Expect,
            Step::Silent { ms } => ScriptStep::Silent(*ms),
            Step::Say(s) => {
                let mut audio = Vec::new();
                let mut speech = Vec::new();
                let mut i = 0;
                while i < s.parts.len() {
                    match &s.parts[i] {
                        Part::Pause(ms) => audio.resize(audio.len() + samples(*ms), 0),
                        Part::Text(t) => match phrase(&s.parts[i..]) {
                            Some((texts, pauses, used)) => {
                                let err = |why: String| RenderError::Synthesis { text: t.clone(), why };
                                if let Some(silent) = texts.iter().find(|t| !t.chars().any(char::is_alphanumeric)) {
                                    return Err(RenderError::Synthesis { text: silent.to_string(), why: "nothing speakable".into() });
                                }
                                let whole = say(&texts.join(" ")).map_err(|e| match e {
                                    RenderError::Synthesis { why, .. } => err(why),
                                    e => e,
                                })?;
                                let cuts = cut_points(&whole, &texts);
                                let (a, ranges) = join_at_cuts(&whole, &cuts, &pauses);
                                speech.extend(ranges.iter().map(|(a, b)| (audio.len() + a, audio.len() + b)));
                                audio.extend_from_slice(&a);
                                i += used;
                                continue;
                            }
                            None => {
                                let a = say(t)?;
                                speech.push((audio.len(), audio.len() + a.len()));
                                audio.extend_from_slice(&a);
                            }
                        },
                        Part::Wav(c) => {
                            let a = clip(c)?;
                            speech.push((audio.len(), audio.len() + a.len()));
                            audio.extend_from_slice(&a);
                        }
                    }
                    i += 1;
                }
                let mut during = Vec::new();
                for i in &s.during_reply {
                    let audio = match &i.speech {
                        Speech::Text(t) => say(t)?,
                        Speech::Wav(c) => Arc::new(clip(c)?),
                    };
                    during.push(Interjection { at_ms: i.at_ms, audio, barge_in: i.barge_in });
                }
                ScriptStep::Say(Turn { audio: Arc::new(audio), speech, during })
            }
        });
    }
    Ok(out)
}

/// The caller's voice: Piper with noise sampling off (the same audio on
/// every run).
fn load_voice(models_dir: &Path) -> Result<Arc<Piper>, RenderError> {
    let paths = ModelPaths::in_dir(models_dir);
    onnx::init_runtime(&paths.onnxruntime).map_err(|e| RenderError::Voice(e.to_string()))?;
    let text = std::fs::read_to_string(&paths.piper_config)
        .map_err(|e| RenderError::Voice(format!("{}: {e}", paths.piper_config.display())))?;
    let mut cfg: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| RenderError::Voice(format!("{}: {e}", paths.piper_config.display())))?;
    cfg["inference"]["noise_scale"] = serde_json::json!(0.0);
    cfg["inference"]["noise_w"] = serde_json::json!(0.0);
    let dir = std::env::temp_dir().join(format!("skald-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| RenderError::Voice(e.to_string()))?;
    let config = dir.join("caller-voice.onnx.json");
    std::fs::write(&config, cfg.to_string()).map_err(|e| RenderError::Voice(e.to_string()))?;
    let voice = Piper::load(&paths.piper_model, &config).map_err(|e| RenderError::Voice(e.to_string()));
    let _ = std::fs::remove_dir_all(&dir);
    voice
}

/// A WAV clip at 16 kHz, trimmed.
fn clip(c: &WavClip) -> Result<Vec<i16>, RenderError> {
    let err = |why: String| RenderError::Wav { path: c.path.display().to_string(), why };
    let (pcm, rate) = crate::pipeline::wav::read_wav_mono(&c.path).map_err(|e| err(e.to_string()))?;
    let dur_ms = pcm.len() as u64 * 1000 / u64::from(rate.max(1));
    let from = c.from_ms.unwrap_or(0);
    let to = c.to_ms.unwrap_or(dur_ms);
    if from >= dur_ms || to > dur_ms {
        return Err(err(format!("clip {from}-{to} ms is outside the recording ({dur_ms} ms)")));
    }
    let at = |ms: u64| (ms * u64::from(rate) / 1000) as usize;
    let part = &pcm[at(from)..at(to).min(pcm.len())];
    let pcm16 = if rate == RATE { part.to_vec() } else { resample_all(part, rate, RATE).map_err(|e| err(e.to_string()))? };
    let out = trim(&pcm16);
    if out.is_empty() {
        return Err(err("the clip is silent".into()));
    }
    Ok(out)
}

/// Samples in `ms` at [`RATE`].
fn samples(ms: u64) -> usize {
    ms as usize * RATE as usize / 1000
}

/// Samples in an analysis window.
const WIN: usize = WINDOW_MS * RATE as usize / 1000;

/// RMS of each [`WINDOW_MS`] window of `pcm`.
fn window_rms(pcm: &[i16]) -> Vec<f64> {
    pcm.chunks(WIN).map(crate::pipeline::rms).collect()
}

/// Windows at or under this RMS are quiet: 5 % of the loudest window (at
/// least 150).
fn quiet_threshold(rms: &[f64]) -> f64 {
    let peak = rms.iter().cloned().fold(0.0, f64::max);
    (peak * 0.05).max(150.0)
}

/// The phrase starting at `parts[0]` (a text): the texts reached from it
/// through pauses only, the total pause before each text after the first,
/// and how many parts it spans (pauses after its last text excluded).
/// `None` when no pause joins it to a later text (it is said alone).
fn phrase(parts: &[Part]) -> Option<(Vec<&str>, Vec<u64>, usize)> {
    let Some(Part::Text(first)) = parts.first() else { return None };
    let (mut texts, mut pauses, mut used) = (vec![first.as_str()], Vec::new(), 1);
    let (mut pause, mut paused, mut i) = (0, false, 1);
    while let Some(p) = parts.get(i) {
        match p {
            Part::Pause(ms) => (pause, paused) = (pause + ms, true),
            Part::Text(t) if paused => {
                texts.push(t.as_str());
                pauses.push(pause);
                (pause, paused, used) = (0, false, i + 1);
            }
            _ => break,
        }
        i += 1;
    }
    (texts.len() > 1).then_some((texts, pauses, used))
}

/// Where one utterance said for several parts is cut, and the quiet
/// around the cut (sample ranges of the utterance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The cut.
    pub at: usize,
    /// The quiet run holding it (`at..at` when the cut is in sound).
    pub quiet: (usize, usize),
    /// The part of `quiet` around the cut without faint sound (a window
    /// over 1 % of the peak, such as a stop's release): the pieces keep the
    /// faint sound of the quiet they end or begin with.
    pub silent: (usize, usize),
}

/// Where to cut `pcm`, an utterance (trimmed) spoken for `texts`, back into
/// them: one [`Cut`] per boundary, in order.
///
/// A boundary is expected where its share of the letters falls, between
/// the speech's first and last loud window; when the utterance has at least
/// as many gaps of `PUNCTUATION_GAP_MS` as the text has punctuation
/// marks inside it (Piper pauses at each), the longest of them are taken as
/// those marks' pauses and the letters are spread between them, so a
/// boundary after a comma is expected right in the comma's pause. The cut
/// goes in the middle of the gap (a run of quiet windows of at least
/// `MIN_GAP_MS`, see `quiet_threshold`) nearest the expected position,
/// within `SEARCH_MS` (or `SEARCH_SHARE` of the speech); without one,
/// at the quietest window (smoothed over three) within `FALLBACK_MS`.
/// Every piece keeps at least `MIN_PIECE_MS` when the audio allows.
/// [`Cut::silent`] marks the faint sound in the quiet, for
/// [`join_at_cuts`] to keep.
pub fn cut_points(pcm: &[i16], texts: &[&str]) -> Vec<Cut> {
    let boundaries = texts.len().saturating_sub(1);
    let rms = window_rms(pcm);
    let threshold = quiet_threshold(&rms);
    let quiet = |i: usize| rms[i] <= threshold;
    let faint_rms = (rms.iter().cloned().fold(0.0, f64::max) * 0.01).max(30.0);
    let at_ms = |ms: usize| ms * RATE as usize / 1000;
    let len = pcm.len();
    let (Some(first), Some(last)) = (rms.iter().position(|&r| r > threshold), rms.iter().rposition(|&r| r > threshold)) else {
        // Nothing loud: cut by letters alone.
        let letters: Vec<usize> = texts.iter().map(|t| letters(t)).collect();
        let total = letters.iter().sum::<usize>().max(1);
        return (0..boundaries)
            .map(|k| {
                let at = len * letters[..=k].iter().sum::<usize>() / total;
                Cut { at, quiet: (at, at), silent: (at, at) }
            })
            .collect();
    };
    let (s0, s1) = (first * WIN, ((last + 1) * WIN).min(len));
    // Quiet runs between loud windows, as sample ranges.
    let mut gaps: Vec<(usize, usize)> = Vec::new();
    let mut i = first;
    while i <= last {
        if quiet(i) {
            let a = i;
            while quiet(i) {
                i += 1;
            }
            gaps.push((a * WIN, i * WIN));
        }
        i += 1;
    }
    gaps.retain(|(a, b)| b - a >= at_ms(MIN_GAP_MS));
    let center = |g: &(usize, usize)| (g.0 + g.1) / 2;

    // Letters before each boundary and each inner punctuation mark.
    let joined = texts.join(" ");
    let total = letters(&joined).max(1);
    let bounds: Vec<usize> = (0..boundaries).map(|k| letters(&texts[..=k].join(" "))).collect();
    let mut marks: Vec<usize> = Vec::new();
    let mut seen = 0;
    for c in joined.chars() {
        if c.is_alphanumeric() {
            seen += 1;
        } else if CLAUSE_MARKS.contains(&c) && seen > 0 && seen < total && marks.last() != Some(&seen) {
            marks.push(seen);
        }
    }
    let speech = s1 - s0;
    let radius = at_ms(SEARCH_MS).max((speech as f64 * SEARCH_SHARE) as usize);
    let by_letters = |n: usize| s0 + speech * n / total;
    // Anchors (letters, sample): the speech's ends, and the punctuation
    // pauses when they can be told.
    let mut anchors = vec![(0, s0)];
    let mut long: Vec<(usize, usize)> = gaps.iter().copied().filter(|(a, b)| b - a >= at_ms(PUNCTUATION_GAP_MS)).collect();
    if !marks.is_empty() && long.len() >= marks.len() {
        long.sort_by_key(|(a, b)| std::cmp::Reverse(b - a));
        long.truncate(marks.len());
        long.sort();
        if marks.iter().zip(&long).all(|(&m, g)| center(g).abs_diff(by_letters(m)) <= radius) {
            anchors.extend(marks.iter().zip(&long).map(|(&m, g)| (m, center(g))));
        }
    }
    anchors.push((total, s1));
    let expected = |n: usize| {
        let j = anchors.iter().rposition(|a| a.0 <= n).unwrap_or(0).min(anchors.len() - 2);
        let ((n0, t0), (n1, t1)) = (anchors[j], anchors[j + 1]);
        if n1 <= n0 { t0 } else { t0 + (t1 - t0) * (n - n0) / (n1 - n0) }
    };

    let min_piece = at_ms(MIN_PIECE_MS);
    let mut out: Vec<Cut> = Vec::new();
    for (k, &n) in bounds.iter().enumerate() {
        let e = expected(n);
        let after = out.last().map(|c| c.quiet.1).unwrap_or(0);
        let lo = after + min_piece;
        let hi = len.saturating_sub((boundaries - k) * min_piece);
        let gap = gaps
            .iter()
            .filter(|g| g.0 >= after && (lo..=hi).contains(&center(g)) && center(g).abs_diff(e) <= radius)
            .min_by_key(|g| {
                let distance = if e < g.0 { g.0 - e } else { e.saturating_sub(g.1) };
                (distance, std::cmp::Reverse(g.1 - g.0))
            });
        let cut = if let Some(&g) = gap {
            (center(&g), g)
        } else {
            // The quietest window (smoothed) near the expected position.
            let reach = at_ms(FALLBACK_MS);
            let (from, to) = (e.saturating_sub(reach).max(lo), (e + reach).min(hi));
            let smooth = |w: usize| {
                let r = &rms[w.saturating_sub(1)..(w + 2).min(rms.len())];
                r.iter().sum::<f64>() / r.len() as f64
            };
            let best = (from.div_ceil(WIN)..rms.len())
                .take_while(|w| w * WIN + WIN / 2 <= to)
                .min_by(|&a, &b| smooth(a).total_cmp(&smooth(b)).then((a * WIN + WIN / 2).abs_diff(e).cmp(&(b * WIN + WIN / 2).abs_diff(e))));
            match best {
                Some(w) if quiet(w) => {
                    let (mut a, mut b) = (w, w + 1);
                    while a > 0 && a * WIN > after && quiet(a - 1) {
                        a -= 1;
                    }
                    while b < rms.len() && quiet(b) {
                        b += 1;
                    }
                    let at = w * WIN + WIN / 2;
                    (at.min(len), (a * WIN, (b * WIN).min(len)))
                }
                Some(w) => {
                    let at = (w * WIN + WIN / 2).min(len);
                    (at, (at, at))
                }
                None => {
                    let at = if lo <= hi { e.clamp(lo, hi) } else { e.clamp(after, len) };
                    (at, (at, at))
                }
            }
        };
        let (at, quiet) = cut;
        let faint = |w: &usize| rms[*w] > faint_rms;
        let f0 = (quiet.0 / WIN..at / WIN).rfind(faint).map_or(quiet.0, |w| (w + 1) * WIN);
        let f1 = (at.div_ceil(WIN)..quiet.1 / WIN).find(faint).map_or(quiet.1, |w| w * WIN);
        out.push(Cut { at, quiet, silent: (f0.min(at), f1.max(at)) });
    }
    out
}

/// Letters and digits in `text` (what takes time to say).
fn letters(text: &str) -> usize {
    text.chars().filter(|c| c.is_alphanumeric()).count()
}

/// `pcm` cut at `cuts` with `pauses_ms[k]` of quiet at cut `k`: each piece
/// keeps the faint sound of the gap's quiet at the cut and [`EDGE_MS`] more
/// (as a trimmed part does), and the silence inserted makes the quiet
/// between the pieces `pauses_ms[k]` in all (the pieces' share of it at
/// most half each). Returns the audio and the pieces' sample ranges.
pub fn join_at_cuts(pcm: &[i16], cuts: &[Cut], pauses_ms: &[u64]) -> (Vec<i16>, Vec<(usize, usize)>) {
    let edge = EDGE_MS * RATE as usize / 1000;
    let mut audio = Vec::with_capacity(pcm.len() + pauses_ms.iter().map(|p| samples(*p)).sum::<usize>());
    let mut ranges = Vec::new();
    let mut from = 0;
    for (cut, &pause) in cuts.iter().zip(pauses_ms) {
        let pause = samples(pause);
        let at = cut.at.clamp(from, pcm.len());
        let (q0, q1) = (cut.quiet.0.clamp(from, at), cut.quiet.1.clamp(at, pcm.len()));
        let (f0, f1) = (cut.silent.0.clamp(q0, at), cut.silent.1.clamp(at, q1));
        let left = (f0 - q0 + edge).min(at - q0).min(pause / 2);
        let right = (q1 - f1 + edge).min(q1 - at).min(pause - left);
        let end = q0 + left;
        ranges.push((audio.len(), audio.len() + end - from));
        audio.extend_from_slice(&pcm[from..end]);
        audio.resize(audio.len() + pause - left - right, 0);
        from = q1 - right;
    }
    ranges.push((audio.len(), audio.len() + pcm.len() - from));
    audio.extend_from_slice(&pcm[from..]);
    (audio, ranges)
}

/// Cuts leading and trailing quiet, keeping [`EDGE_MS`]: quiet is a window
/// under 5 % of the loudest window's RMS (at least 150).
pub fn trim(pcm: &[i16]) -> Vec<i16> {
    let win = WIN;
    let rms = window_rms(pcm);
    let threshold = quiet_threshold(&rms);
    let (Some(first), Some(last)) = (rms.iter().position(|&r| r > threshold), rms.iter().rposition(|&r| r > threshold)) else {
        return Vec::new();
    };
    let edge = EDGE_MS / WINDOW_MS;
    let start = first.saturating_sub(edge) * win;
    let end = ((last + 1 + edge) * win).min(pcm.len());
    pcm[start..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_the_speech_and_a_short_edge() {
        let mut pcm = vec![0i16; 16_000];
        for (i, s) in pcm.iter_mut().enumerate().skip(4000).take(8000) {
            *s = ((i as f64 * 0.1).sin() * 8000.0) as i16;
        }
        let t = trim(&pcm);
        let edge = EDGE_MS * 16;
        assert!(t.len() >= 8000 && t.len() <= 8000 + 2 * edge + 320, "{}", t.len());
        assert!(trim(&[0i16; 1600]).is_empty());
    }

    /// `ms` of a loud tone at amplitude `amp`.
    fn tone(ms: usize, amp: f64) -> Vec<i16> {
        (0..ms * 16).map(|i| ((i as f64 * 0.3 + 1.0).sin() * amp) as i16).collect()
    }

    /// A signal of (ms, amplitude) stretches (amplitude 0: silence), and the
    /// sample where each stretch starts.
    fn signal(stretches: &[(usize, f64)]) -> (Vec<i16>, Vec<usize>) {
        let mut pcm = Vec::new();
        let mut starts = Vec::new();
        for &(ms, amp) in stretches {
            starts.push(pcm.len());
            pcm.extend(tone(ms, amp));
        }
        (pcm, starts)
    }

    /// Runs of samples that are not zero, merged over gaps under 5 ms.
    fn sound_runs(pcm: &[i16]) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (i, &s) in pcm.iter().enumerate() {
            if s == 0 {
                continue;
            }
            match runs.last_mut() {
                Some(r) if i - r.1 < 80 => r.1 = i + 1,
                _ => runs.push((i, i + 1)),
            }
        }
        runs
    }

    #[test]
    fn a_phrase_is_the_texts_joined_by_pauses() {
        let t = |s: &str| Part::Text(s.into());
        let parts = [t("I'd like to book,"), Part::Pause(600), Part::Pause(400), t("a cleaning,"), Part::Pause(800), t("please."), Part::Pause(300)];
        assert_eq!(phrase(&parts), Some((vec!["I'd like to book,", "a cleaning,", "please."], vec![1000, 800], 6)));
        // A text with no pause to a later text is said alone.
        assert_eq!(phrase(&[t("Hi."), t("there"), Part::Pause(100), t("you")]), None);
        assert_eq!(phrase(&[t("Hi."), Part::Pause(100)]), None);
        assert_eq!(phrase(&[Part::Pause(100), t("Hi.")]), None);
        // A pause then a recording ends the phrase.
        let wav = Part::Wav(WavClip { path: "x.wav".into(), from_ms: None, to_ms: None });
        assert_eq!(phrase(&[t("a"), Part::Pause(100), t("b"), Part::Pause(100), wav]), Some((vec!["a", "b"], vec![100], 3)));
    }

    #[test]
    fn the_cut_lands_in_the_gap_nearest_the_expected_position() {
        // Speech 40..640, gap 640..760, speech ..1360, gap 1360..1420 (short), speech ..2020.
        let (pcm, at) = signal(&[(40, 0.0), (600, 8000.0), (120, 0.0), (600, 8000.0), (60, 0.0), (600, 8000.0), (40, 0.0)]);
        let (gap1, gap2) = ((at[2], at[3]), (at[4], at[5]));
        // 10 of 15 letters: expected at 2/3 of the speech, the short gap.
        let c = cut_points(&pcm, &["aaaaa aaaaa", "bbbbb"]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].quiet, gap2);
        assert_eq!(c[0].at, (gap2.0 + gap2.1) / 2);
        // 5 of 15: the long one.
        let c = cut_points(&pcm, &["aaaaa", "bbbbb bbbbb"]);
        assert_eq!(c[0].quiet, gap1);
        // Three parts: each boundary its own gap, in order.
        let c = cut_points(&pcm, &["aaaa", "bbbbb", "ccccc"]);
        assert_eq!(c.iter().map(|c| c.quiet).collect::<Vec<_>>(), vec![gap1, gap2]);
    }

    #[test]
    fn a_comma_points_to_its_pause() {
        // A short gap where the letters put the boundary, Piper's comma pause later.
        let (pcm, at) = signal(&[(40, 0.0), (360, 8000.0), (40, 0.0), (300, 8000.0), (150, 0.0), (1150, 8000.0), (40, 0.0)]);
        let (short, comma) = ((at[2], at[3]), (at[4], at[5]));
        assert_eq!(cut_points(&pcm, &["aaaa", "bbbbbbbbbbbbbbbb"])[0].quiet, short);
        assert_eq!(cut_points(&pcm, &["aaaa,", "bbbbbbbbbbbbbbbb"])[0].quiet, comma);
        // A comma inside a part anchors the letters after it: the boundary
        // two letters after a late comma is expected after its pause.
        let (pcm, at) = signal(&[(40, 0.0), (500, 8000.0), (40, 0.0), (90, 8000.0), (150, 0.0), (80, 8000.0), (40, 0.0), (1230, 8000.0), (40, 0.0)]);
        let (before, after) = ((at[2], at[3]), (at[6], at[7]));
        let rest = "bbbbbbbbbbbbbbb";
        assert_eq!(cut_points(&pcm, &["aaa aa", rest])[0].quiet, before);
        assert_eq!(cut_points(&pcm, &["aaa, aa", rest])[0].quiet, after);
    }

    #[test]
    fn without_a_gap_the_cut_is_the_quietest_point_near_the_expected_position() {
        // Continuous speech with a dip at 880..920 (not quiet) and a deeper
        // one at 1600..1640, too far from the boundary expected at 1000.
        let (pcm, at) = signal(&[(40, 0.0), (840, 8000.0), (40, 2000.0), (680, 8000.0), (40, 1000.0), (360, 8000.0), (40, 0.0)]);
        let c = cut_points(&pcm, &["aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbb"]);
        assert!((at[2]..at[3]).contains(&c[0].at), "{c:?} not in {:?}", (at[2], at[3]));
        assert_eq!(c[0].quiet, (c[0].at, c[0].at));
        // A 20 ms quiet (too short to be a gap) is the quietest point: its quiet is trimmed.
        let (pcm, at) = signal(&[(40, 0.0), (900, 8000.0), (20, 0.0), (900, 8000.0), (40, 0.0)]);
        let c = cut_points(&pcm, &["aaaa", "bbbb"]);
        assert_eq!(c[0].quiet, (at[2], at[3]), "{c:?}");
    }

    #[test]
    fn the_pause_replaces_the_gaps_quiet() {
        let (pcm, at) = signal(&[(40, 0.0), (600, 8000.0), (200, 0.0), (600, 8000.0), (40, 0.0)]);
        let cuts = cut_points(&pcm, &["aaaaa,", "bbbbb."]);
        assert_eq!(cuts[0].quiet, (at[2], at[3]));
        let (audio, ranges) = join_at_cuts(&pcm, &cuts, &[0]);
        assert_eq!(sound_runs(&audio).len(), 1);
        assert_eq!(audio.len(), pcm.len() - 200 * 16);
        assert_eq!(ranges, vec![(0, at[2]), (at[2], audio.len())]);
        for pause_ms in [1000u64, 50] {
            let (audio, ranges) = join_at_cuts(&pcm, &cuts, &[pause_ms]);
            let runs = sound_runs(&audio);
            assert_eq!(runs.len(), 2, "{pause_ms}: {runs:?}");
            assert_eq!(runs[1].0 - runs[0].1, pause_ms as usize * 16, "{pause_ms}: {runs:?}");
            assert_eq!(audio.len(), pcm.len() - 200 * 16 + pause_ms as usize * 16);
            // The pieces keep the gap's quiet up to EDGE_MS.
            let edge = (EDGE_MS * 16).min(pause_ms as usize * 8);
            assert_eq!(ranges, vec![(0, runs[0].1 + edge), (runs[1].0 - edge, audio.len())], "{pause_ms}");
        }
        // A cut in sound: the whole pause is inserted there.
        let cut = Cut { at: 5000, quiet: (5000, 5000), silent: (5000, 5000) };
        let (audio, ranges) = join_at_cuts(&pcm, &[cut], &[300]);
        assert_eq!(audio.len(), pcm.len() + 300 * 16);
        assert_eq!(ranges, vec![(0, 5000), (5000 + 4800, audio.len())]);
        assert!(audio[5000..9800].iter().all(|&s| s == 0));
        // Faint sound in the gap (a stop's release) stays with its piece.
        let (pcm, at) = signal(&[(40, 0.0), (600, 8000.0), (40, 0.0), (20, 200.0), (200, 0.0), (600, 8000.0), (40, 0.0)]);
        let cuts = cut_points(&pcm, &["aaaaa,", "bbbbb."]);
        assert_eq!(cuts[0].quiet, (at[2], at[5]));
        assert_eq!(cuts[0].silent, (at[4], at[5]));
        let (audio, ranges) = join_at_cuts(&pcm, &cuts, &[1000]);
        assert_eq!(ranges[0].1, at[4] + EDGE_MS * 16);
        assert_eq!(audio.len(), pcm.len() - 260 * 16 + 1000 * 16);
        assert_eq!(&audio[at[3]..at[4]], &pcm[at[3]..at[4]]);
    }

    #[test]
    fn cuts_keep_every_piece_and_survive_odd_audio() {
        // No quiet at all, and texts whose letters put both boundaries at the start.
        let pcm = tone(300, 8000.0);
        let c = cut_points(&pcm, &[",", ",", "aaaa"]);
        assert_eq!(c.len(), 2);
        assert!(c[0].at >= 100 * 16 && c[1].at >= c[0].at + 100 * 16 && c[1].at <= pcm.len(), "{c:?}");
        // Silence, and audio too short for the pieces: no panic, in order.
        for pcm in [vec![0i16; 8000], tone(50, 8000.0), Vec::new()] {
            let c = cut_points(&pcm, &["a", "b", "c"]);
            assert_eq!(c.len(), 2);
            assert!(c[0].at <= c[1].at && c[1].at <= pcm.len(), "{c:?}");
            let (audio, ranges) = join_at_cuts(&pcm, &c, &[100, 100]);
            assert_eq!(ranges.len(), 3);
            assert!(audio.len() >= pcm.len());
        }
    }

    /// With the local Piper voice (skipped without the models): a phrase in
    /// three parts is one utterance cut at its comma pauses.
    #[test]
    fn a_phrase_with_pauses_is_one_utterance_cut_at_its_commas() {
        let dir = ModelPaths::default_dir();
        let paths = ModelPaths::in_dir(&dir);
        if ![&paths.onnxruntime, &paths.piper_model, &paths.piper_config].iter().all(|f| f.is_file()) {
            eprintln!("skipped: no Piper voice in {} (run `skald models fetch`)", dir.display());
            return;
        }
        let yaml = "name: t\nsteps:\n  - say:\n      - text: \"I'd like to book,\"\n      - pause_ms: 1000\n      - text: \"a cleaning,\"\n      - pause_ms: 800\n      - text: \"please.\"\n  - say: \"I'd like to book, a cleaning, please.\"\n";
        let scenario = Scenario::parse(yaml, Path::new("/tmp/phrase.yaml")).unwrap();
        let steps = render(&scenario, &dir).unwrap();
        let (ScriptStep::Say(turn), ScriptStep::Say(whole)) = (&steps[0], &steps[1]) else { panic!("two turns") };
        // Speech runs: 10 ms windows above the quiet threshold, merged over 300 ms.
        let rms = window_rms(&turn.audio);
        let threshold = quiet_threshold(&rms);
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (i, _) in rms.iter().enumerate().filter(|(_, r)| **r > threshold) {
            match runs.last_mut() {
                Some(r) if i - r.1 < 30 => r.1 = i + 1,
                _ => runs.push((i, i + 1)),
            }
        }
        let ms: Vec<(usize, usize)> = runs.iter().map(|(a, b)| (a * 10, b * 10)).collect();
        eprintln!("speech runs (ms): {ms:?}; pieces (samples): {:?}; one utterance {} ms", turn.speech, whole.audio.len() / 16);
        assert_eq!(runs.len(), 3, "{ms:?}");
        for (k, pause) in [1000usize, 800].iter().enumerate() {
            let heard = ms[k + 1].0 - ms[k].1;
            assert!(heard.abs_diff(*pause) <= 40, "pause {k}: {heard} ms heard, {pause} asked ({ms:?})");
        }
        assert_eq!(turn.speech.len(), 3);
        // The speech is the one utterance less its two comma pauses' quiet.
        let speech = turn.audio.len() - 1800 * 16;
        let one = whole.audio.len();
        assert!(speech <= one && speech + 16 * 600 >= one, "speech {} ms, one utterance {} ms", speech / 16, one / 16);
        // Each piece is one part's words: its share of the speech is near its share of the letters.
        for (k, (share, (a, b))) in [12.0 / 27.0, 9.0 / 27.0, 6.0 / 27.0].iter().zip(&turn.speech).enumerate() {
            let got = (b - a) as f64 / speech as f64;
            assert!((got - share).abs() < 0.12, "piece {k}: {got:.2} of the speech, letters {share:.2}");
        }
    }
}
