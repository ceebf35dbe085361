//! Smart-turn v3.2: the local end-of-turn model. Given the caller's audio up
//! to a pause, how likely is it that the caller has finished their turn?
//!
//! Owns the one shared model ([`SmartTurn`], a small pool of ONNX Runtime
//! sessions) and the preprocessing that turns a caller's PCM into the
//! model's input ([`model_input`], then [`whisper_features::log_mel`]).
//! Stateless per call: every [`SmartTurn::predict`] sees only the audio it
//! is given.
//!
//! # Model and its I/O (PyPI `pipecat-ai==1.14.0`, `pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx`, BSD-2-Clause)
//! A Whisper-encoder classifier, int8-quantised (QDQ), 8.7 MB:
//! * input `input_features`: f32 `[batch, 80, 800]`, the Whisper log-mel
//!   features of 8 s of 16 kHz audio ([`whisper_features`]).
//! * output `logits`: f32 `[batch, 1]`. Despite its name it is already a
//!   probability (the graph ends in a `Sigmoid`): P(the turn is complete),
//!   0..=1.
//!
//! # Preprocessing: as pipecat's own analyzer
//! [`SmartTurn::predict`] follows `LocalSmartTurnAnalyzerV3._predict_endpoint`
//! (`pipecat/audio/turn/smart_turn/local_smart_turn_v3.py`) and
//! `BaseSmartTurn._process_speech_segment` (`base_smart_turn.py`) of the same
//! wheel exactly:
//! 1. PCM16 → `f32` by dividing by 32768 (`astype(np.float32) / 32768.0`);
//! 2. keep the last 8 s (`segment_audio[-max_samples:]`, then
//!    `truncate_audio_to_last_n_seconds`), or left-pad with zeros to 8 s
//!    (`np.pad(audio, (padding, 0))`): the speech's end sits at the end of
//!    the window, wherever it began;
//! 3. `compute_whisper_log_mel_features(audio, do_normalize=True)` (so the
//!    waveform is normalised to zero mean, unit variance, padding included);
//! 4. one inference with batch 1; the probability is `outputs[0][0]`.
//!    Pipecat calls the turn complete when it is above 0.5.
//!
//! Pipecat hands the model the turn's audio from 0.5 s (`pre_speech_ms`)
//! before its speech began to the moment it asks, which is after a short
//! silence (its VAD's stop time, 0.2 s by default); a caller of [`SmartTurn::predict`]
//! should pass the same. It skips the model on an empty segment; here that is
//! [`SmartTurnError::NoAudio`]. Audio at other rates must be resampled to
//! 16 kHz first (pipecat uses soxr).
//!
//! # Sharing and cost
//! ort 2.0.0-rc.15's `Session::run` takes `&mut self`, so, as for Silero VAD
//! (`crate::pipeline::vad::silero`), each session sits behind a [`Mutex`]
//! held only for `run`; [`SmartTurn`] keeps one session per core, at most
//! [`MAX_SESSIONS`], each on one intra-op and one inter-op thread as pipecat
//! builds it (`cpu_count=1`, sequential, all graph optimisations). A decision
//! takes the first free session, so the decisions of different calls run on
//! different cores. Each session holds about 30 MB (resident, measured with
//! ONNX Runtime 1.31.1 after a first run).
//!
//! [`SmartTurn::predict`] blocks: measured (`cargo bench --bench turn_model`,
//! 2 shared cores under a load of 3–4), median 2.3 ms for the features and
//! 49 ms for a whole decision (features + inference); two calls deciding at
//! once take 56 ms for both. Call it from a blocking thread
//! (`tokio::task::spawn_blocking`), never on the audio path.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use crate::providers::local::whisper_features::{self, N_FRAMES, N_MELS, N_SAMPLES};

/// Samples of audio the model sees: the last 8 s at 16 kHz.
pub const WINDOW_SAMPLES: usize = N_SAMPLES;
/// Sample rate the model expects, Hz.
pub const SAMPLE_RATE: u32 = whisper_features::SAMPLE_RATE;
/// Probability above which pipecat calls a turn complete.
pub const COMPLETE_THRESHOLD: f32 = 0.5;
/// Most sessions [`SmartTurn::load`] builds (fewer on machines with fewer cores).
pub const MAX_SESSIONS: usize = 4;

/// The model's input name.
const INPUT: &str = "input_features";
/// The model's output name (a probability, see the module docs).
const OUTPUT: &str = "logits";

/// Errors of the end-of-turn model.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SmartTurnError {
    /// The model could not be loaded: the file is missing, ONNX Runtime is
    /// not initialized, ONNX Runtime rejects the file, or its inputs and
    /// outputs are not `input_features` `[batch, 80, 800]` → `logits`.
    #[error("cannot load the smart-turn model from {path}: {reason}")]
    Load {
        /// Model path.
        path: String,
        /// Why.
        reason: String,
    },
    /// [`SmartTurn::predict`] was given no audio (pipecat skips the model then).
    #[error("no audio to judge the turn on")]
    NoAudio,
    /// Inference failed: an ONNX Runtime error, an output of unexpected size,
    /// or a probability that is not a number.
    #[error("smart-turn inference failed: {0}")]
    Inference(String),
}

/// The shared end-of-turn model (one per process; `Send + Sync`), shared
/// through the `Arc` that [`SmartTurn::load`] returns.
pub struct SmartTurn {
    /// A small pool of sessions of the one model (one per core, at most
    /// [`MAX_SESSIONS`]), each single-threaded and locked only for
    /// `Session::run`, so decisions of different calls run in parallel.
    sessions: Vec<Mutex<Session>>,
    /// Round-robin start for picking a session.
    next: AtomicUsize,
}

impl SmartTurn {
    /// Loads `smart-turn-v3.2-cpu.onnx` (normally
    /// [`ModelPaths::smart_turn`](crate::providers::local::models::ModelPaths));
    /// ONNX Runtime must be initialized first
    /// ([`init_runtime`](crate::providers::local::onnx::init_runtime)).
    /// Builds one session per core, at most [`MAX_SESSIONS`].
    ///
    /// Errors: [`SmartTurnError::Load`] naming `path`, when the file is
    /// missing (the message says to run `skald models fetch`), the runtime
    /// is not initialized, ONNX Runtime rejects the file, or the model's
    /// input is not `input_features` `[batch, 80, 800]` or its outputs lack
    /// `logits`.
    pub fn load(path: &Path) -> Result<Arc<SmartTurn>, SmartTurnError> {
        let err = |reason: String| SmartTurnError::Load { path: path.display().to_string(), reason };
        if !path.is_file() {
            return Err(err("file not found (run `skald models fetch`)".into()));
        }
        let Some(env) = crate::providers::local::onnx::environment() else {
            return Err(err("ONNX Runtime is not initialized (init_runtime)".into()));
        };
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, MAX_SESSIONS);
        let mut sessions = Vec::with_capacity(cores);
        for _ in 0..cores {
            let session = Session::builder(env)
                .map_err(|e| err(e.to_string()))?
                .with_optimization_level(GraphOptimizationLevel::All)
                .map_err(|e| err(e.to_string()))?
                .with_intra_threads(1)
                .map_err(|e| err(e.to_string()))?
                .with_inter_threads(1)
                .map_err(|e| err(e.to_string()))?
                .commit_from_file(path)
                .map_err(|e| err(e.to_string()))?;
            check_io(&session).map_err(err)?;
            sessions.push(Mutex::new(session));
        }
        Ok(Arc::new(SmartTurn { sessions, next: AtomicUsize::new(0) }))
    }

    /// P(the caller's turn is complete), 0..=1, from the caller's mono PCM16
    /// audio at 16 kHz (`pcm16k`, any length; only the last 8 s are used,
    /// shorter audio is zero-padded on the left), exactly as pipecat's
    /// `LocalSmartTurnAnalyzerV3` computes it (see the module docs).
    /// Blocks for about 50 ms (one core).
    ///
    /// Errors: [`SmartTurnError::NoAudio`] for empty `pcm16k`;
    /// [`SmartTurnError::Inference`] when ONNX Runtime fails or returns
    /// something other than one finite probability.
    pub fn predict(&self, pcm16k: &[i16]) -> Result<f32, SmartTurnError> {
        if pcm16k.is_empty() {
            return Err(SmartTurnError::NoAudio);
        }
        let features = whisper_features::log_mel(&model_input(pcm16k));
        self.infer(&features)
    }

    /// Runs the model on one `[80, 800]` feature matrix; the lock is held
    /// only for the run and the reading of its output.
    fn infer(&self, features: &[f32]) -> Result<f32, SmartTurnError> {
        let err = |e: ort::Error| SmartTurnError::Inference(e.to_string());
        let input = TensorRef::from_array_view(([1usize, N_MELS, N_FRAMES], features)).map_err(err)?;
        let mut session = self.pick();
        let outputs = session.run(ort::inputs![INPUT => input]).map_err(err)?;
        let Some(output) = outputs.get(OUTPUT) else {
            return Err(SmartTurnError::Inference(format!("model output lacks `{OUTPUT}`")));
        };
        let (_, probs) = output.try_extract_tensor::<f32>().map_err(err)?;
        let [p] = probs[..] else {
            return Err(SmartTurnError::Inference(format!("expected 1 probability, got {}", probs.len())));
        };
        if !p.is_finite() {
            return Err(SmartTurnError::Inference(format!("probability is {p}")));
        }
        Ok(p.clamp(0.0, 1.0))
    }

    /// A free session if one is (starting round-robin), else waits for the
    /// next one in turn.
    fn pick(&self) -> MutexGuard<'_, Session> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(g) = self.sessions[(start + i) % n].try_lock() {
                return g;
            }
        }
        self.sessions[start].lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The model's 8 s of audio from a caller's mono PCM16 at 16 kHz: the last
/// [`WINDOW_SAMPLES`] samples, each divided by 32768 (so in `[-1, 1)`),
/// zero-padded on the left when shorter. Always [`WINDOW_SAMPLES`] long;
/// the input of [`whisper_features::log_mel`].
pub fn model_input(pcm16k: &[i16]) -> Vec<f32> {
    let tail = &pcm16k[pcm16k.len().saturating_sub(WINDOW_SAMPLES)..];
    let mut audio = vec![0.0f32; WINDOW_SAMPLES - tail.len()];
    audio.extend(tail.iter().map(|&s| f32::from(s) / 32768.0));
    audio
}

/// Checks the session's input is `input_features` `[batch, 80, 800]` and
/// that it has a `logits` output; the reason otherwise.
fn check_io(session: &Session) -> Result<(), String> {
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    if inputs != [INPUT] {
        return Err(format!("unexpected model inputs {inputs:?} (expected [\"{INPUT}\"])"));
    }
    let shape = session.inputs()[0].dtype().tensor_shape().map(|s| s.to_vec());
    if !matches!(shape.as_deref(), Some([_, 80, 800])) {
        return Err(format!("unexpected input shape {shape:?} (expected [batch, 80, 800])"));
    }
    if !session.outputs().iter().any(|o| o.name() == OUTPUT) {
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        return Err(format!("model outputs {outputs:?} lack `{OUTPUT}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_input_keeps_the_last_8s_and_pads_on_the_left() {
        let short: Vec<i16> = vec![16384, -32768, 1];
        let x = model_input(&short);
        assert_eq!(x.len(), WINDOW_SAMPLES);
        assert!(x[..WINDOW_SAMPLES - 3].iter().all(|&v| v == 0.0));
        assert_eq!(&x[WINDOW_SAMPLES - 3..], &[0.5, -1.0, 1.0 / 32768.0]);

        let long: Vec<i16> = (0..WINDOW_SAMPLES + 500).map(|i| (i % 30_000) as i16).collect();
        let x = model_input(&long);
        assert_eq!(x.len(), WINDOW_SAMPLES);
        assert_eq!(x[0], 500.0 / 32768.0);
        assert_eq!(x[WINDOW_SAMPLES - 1], f32::from(long[long.len() - 1]) / 32768.0);
        assert_eq!(model_input(&long[500..]), x);
    }

    #[test]
    fn load_of_a_missing_file_names_it() {
        let Err(e) = SmartTurn::load(Path::new("/nonexistent/smart-turn-v3.2-cpu.onnx")) else { panic!("loaded") };
        let msg = e.to_string();
        assert!(matches!(e, SmartTurnError::Load { .. }), "{e:?}");
        assert!(msg.contains("/nonexistent/smart-turn-v3.2-cpu.onnx"), "{msg}");
        assert!(msg.contains("skald models fetch"), "{msg}");
    }
}
