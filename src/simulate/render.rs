//! The caller's audio, made before the call: text spoken by the local
//! Piper voice (its noise sampling off, so every run says the same audio),
//! WAV recordings clipped and resampled, pauses as silence; all as 16 kHz
//! mono PCM16. Speech parts are trimmed of leading and trailing quiet
//! (keeping [`EDGE_MS`]), so a `pause_ms` is the pause the agent hears.

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
/// Analysis window of the trimming, ms.
const WINDOW_MS: usize = 10;

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
                for p in &s.parts {
                    match p {
                        Part::Pause(ms) => audio.resize(audio.len() + *ms as usize * RATE as usize / 1000, 0),
                        Part::Text(t) => {
                            let a = say(t)?;
                            speech.push((audio.len(), audio.len() + a.len()));
                            audio.extend_from_slice(&a);
                        }
                        Part::Wav(c) => {
                            let a = clip(c)?;
                            speech.push((audio.len(), audio.len() + a.len()));
                            audio.extend_from_slice(&a);
                        }
                    }
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

/// Cuts leading and trailing quiet, keeping [`EDGE_MS`]: quiet is a window
/// under 5 % of the loudest window's RMS (at least 150).
pub fn trim(pcm: &[i16]) -> Vec<i16> {
    let win = WINDOW_MS * RATE as usize / 1000;
    let rms: Vec<f64> = pcm.chunks(win).map(super::caller::rms).collect();
    let peak = rms.iter().cloned().fold(0.0, f64::max);
    let threshold = (peak * 0.05).max(150.0);
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
}
