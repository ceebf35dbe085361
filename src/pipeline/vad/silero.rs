//! Silero VAD v6 through ONNX Runtime.
//!
//! Owns the one shared Silero session ([`SileroVad`]) and the per-call
//! recurrent state ([`VadStream`]).
//!
//! # Model and its I/O (PyPI `silero-vad==6.2.3`, `silero_vad/data/silero_vad.onnx`)
//! * `input`: f32 `[batch, 576]` = 64 samples of context (the last 64
//!   samples of the previous window of the same stream, zeros at the start)
//!   followed by one 512-sample window (32 ms at 16 kHz). Samples are PCM16
//!   divided by 32768, so in `[-1, 1)`.
//! * `state`: f32 `[2, batch, 128]`, the recurrent state (zeros at the start).
//! * `sr`: i64 scalar, 16000.
//! * outputs `output` f32 `[batch, 1]` (speech probability 0..=1) and
//!   `stateN` f32 `[2, batch, 128]` (the next state).
//!
//! This follows the package's own `OnnxWrapper.__call__`
//! (`silero_vad/utils_vad.py`) exactly: the context is `x[..., -64:]` of the
//! concatenated input, i.e. the last 64 samples of the window just run, and
//! `reset_states` zeroes both state and context. The session is built like the
//! wrapper's (one intra-op and one inter-op thread).
//!
//! # Sharing and batching
//! ort 2.0.0-rc.15's `Session::run` takes `&mut self`, so each session sits
//! behind a [`Mutex`] that is held only for the `run` call itself (inputs
//! are prepared and outputs scattered outside it; an uncontended lock costs
//! tens of nanoseconds against ~70 µs of inference). [`SileroVad`] keeps a
//! pool of sessions of the one model, one per core (at most 4, a few MB
//! each), and a call's inference takes the first free one, so the VAD of
//! different calls runs on different cores instead of queueing on one lock. That is why [`SileroVad::run_batch`] exists:
//! one inference with `batch = n` costs far less than `n` single inferences
//! (see `benches/vad.rs`), so a media scheduler that gathers the windows of
//! many calls every 32 ms and runs them together fits hundreds of calls into
//! one core.
//!
//! Measured (`cargo bench --bench vad`, 2 shared cores under load ≈ 6, one
//! intra-op thread), per call-window: single 72 µs; batch 8: 48 µs;
//! batch 32: 38 µs; batch 128: 39 µs. Two threads pushing single windows at
//! once get 94 µs per window of wall time (the lock serializes them; no
//! gain). 400 calls make 12 500 windows/s: 0.9 core one by one (all of the
//! one core the lock allows, no headroom), 0.48 core in batches of 32. So a
//! deployment near the budget should gather windows per 32 ms tick and call
//! [`SileroVad::run_batch`]; batches beyond ~32 buy nothing more.
//!
//! Per call a [`VadStream`] holds ~3.3 KB: 576 f32 (context + window), 256
//! f32 state, and up to 511 buffered samples.

use std::path::Path;
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::TensorRef;

/// Samples per window (32 ms at 16 kHz).
pub const WINDOW: usize = 512;
/// Context samples prepended to every window (from the previous window).
pub const CONTEXT: usize = 64;
/// Floats of recurrent state per stream (`2 × 128`).
pub const STATE: usize = 2 * STATE_WIDTH;
/// Sample rate the model is run at, Hz.
pub const SAMPLE_RATE: i64 = 16_000;

/// Width of one of the two state rows.
const STATE_WIDTH: usize = 128;
/// Input row length: context + window.
const INPUT: usize = CONTEXT + WINDOW;

/// VAD errors.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VadError {
    /// The model could not be loaded (missing/corrupt file, runtime not loaded).
    #[error("cannot load Silero VAD from {path}: {reason}")]
    Load {
        /// Model path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Inference failed (ONNX Runtime error or outputs of an unexpected shape).
    #[error("VAD inference failed: {0}")]
    Inference(String),
}

/// The shared model (one per process; `Send + Sync`). Cheap to share through
/// the `Arc` that [`SileroVad::load`] returns.
pub struct SileroVad {
    /// A small pool of ONNX Runtime sessions of the one model (one per core,
    /// at most 4), each single-threaded and locked only for `Session::run`,
    /// so inferences of different calls run on different cores.
    sessions: Vec<Mutex<Session>>,
    /// Round-robin start for picking a session.
    next: std::sync::atomic::AtomicUsize,
}

/// One call's VAD: buffers input and runs one inference per full window.
/// Independent of every other stream (own state and context).
pub struct VadStream {
    /// The shared model this stream runs on.
    vad: Arc<SileroVad>,
    /// Model input row: `[0..64]` context, `[64..576]` the current window.
    x: Box<[f32; INPUT]>,
    /// Recurrent state, `[2][128]` (the stream's slice of `[2, batch, 128]`).
    state: Box<[f32; STATE]>,
    /// Samples of the next, incomplete window (fewer than [`WINDOW`]).
    pending: Vec<i16>,
}

impl SileroVad {
    /// Loads `silero_vad.onnx`; ONNX Runtime must be initialized first
    /// (`providers::local::onnx::init_runtime`).
    ///
    /// Errors: [`VadError::Load`] if the file is missing, the runtime is not
    /// initialized, or ONNX Runtime rejects the model, or the model's inputs are
    /// not `input`, `state`, `sr`.
    pub fn load(model: &Path) -> Result<Arc<SileroVad>, VadError> {
        let err = |reason: String| VadError::Load { path: model.display().to_string(), reason };
        if !model.is_file() {
            return Err(err("file not found (run `skald models fetch`)".into()));
        }
        let Some(env) = crate::providers::local::onnx::environment() else {
            return Err(err("ONNX Runtime is not initialized (init_runtime)".into()));
        };
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
        let mut sessions = Vec::with_capacity(cores);
        for _ in 0..cores {
            let session = Session::builder(env)
                .map_err(|e| err(e.to_string()))?
                .with_intra_threads(1)
                .map_err(|e| err(e.to_string()))?
                .with_inter_threads(1)
                .map_err(|e| err(e.to_string()))?
                .commit_from_file(model)
                .map_err(|e| err(e.to_string()))?;
            let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
            if inputs != ["input", "state", "sr"] {
                return Err(err(format!("unexpected model inputs {inputs:?}")));
            }
            sessions.push(Mutex::new(session));
        }
        Ok(Arc::new(SileroVad { sessions, next: std::sync::atomic::AtomicUsize::new(0) }))
    }

    /// A per-call stream with fresh recurrent state.
    pub fn stream(self: &Arc<Self>) -> VadStream {
        VadStream {
            vad: Arc::clone(self),
            x: Box::new([0.0; INPUT]),
            state: Box::new([0.0; STATE]),
            pending: Vec::with_capacity(WINDOW),
        }
    }

    /// Batched [`VadStream::push`]: feeds `pcm` to each stream and runs every
    /// window completed, all streams together (one inference per round with
    /// `batch` = number of streams that have a window ready; a stream that
    /// completes `k` windows takes part in `k` rounds).
    ///
    /// `batch[i]` is (stream, mono PCM16 at 16 kHz of any length); the result's
    /// `i`-th entry holds that stream's probabilities in order, exactly what
    /// `push` would have returned (up to float rounding of batched kernels,
    /// < 1e-4). Streams may come from any [`SileroVad`] handle of the same model
    /// file; they run on `self`.
    ///
    /// Errors: [`VadError::Inference`]; the streams of a failed round keep
    /// their previous state, and the windows of that round are lost.
    pub fn run_batch(&self, batch: &mut [(&mut VadStream, &[i16])]) -> Result<Vec<Vec<f32>>, VadError> {
        // Windows each stream has ready, as (stream index, sample offset into
        // its `pending ++ pcm`).
        let mut out: Vec<Vec<f32>> = batch.iter().map(|_| Vec::new()).collect();
        let mut joined: Vec<Vec<i16>> = Vec::with_capacity(batch.len());
        for (stream, pcm) in batch.iter_mut() {
            let mut all = std::mem::take(&mut stream.pending);
            all.extend_from_slice(pcm);
            joined.push(all);
        }
        let rounds = joined.iter().map(|a| a.len() / WINDOW).max().unwrap_or(0);
        let mut input: Vec<f32> = Vec::new();
        let mut state: Vec<f32> = Vec::new();
        let mut members: Vec<usize> = Vec::with_capacity(batch.len());
        let mut result = Ok(());
        for round in 0..rounds {
            members.clear();
            members.extend((0..batch.len()).filter(|&i| joined[i].len() / WINDOW > round));
            let n = members.len();
            input.clear();
            input.resize(n * INPUT, 0.0);
            state.clear();
            state.resize(STATE * n, 0.0);
            for (b, &i) in members.iter().enumerate() {
                let stream = &mut *batch[i].0;
                fill_window(&mut stream.x, &joined[i][round * WINDOW..(round + 1) * WINDOW]);
                input[b * INPUT..(b + 1) * INPUT].copy_from_slice(&stream.x[..]);
                for layer in 0..2 {
                    let dst = (layer * n + b) * STATE_WIDTH;
                    let src = layer * STATE_WIDTH;
                    state[dst..dst + STATE_WIDTH].copy_from_slice(&stream.state[src..src + STATE_WIDTH]);
                }
            }
            let run = self.infer(n, &input, &state, |b, prob, next| {
                let stream = &mut *batch[members[b]].0;
                for layer in 0..2 {
                    let src = (layer * n + b) * STATE_WIDTH;
                    let dst = layer * STATE_WIDTH;
                    stream.state[dst..dst + STATE_WIDTH].copy_from_slice(&next[src..src + STATE_WIDTH]);
                }
                stream.advance_context();
                out[members[b]].push(prob);
            });
            if let Err(e) = run {
                result = Err(e);
                break;
            }
        }
        for (i, (stream, _)) in batch.iter_mut().enumerate() {
            let all = &joined[i];
            let tail = all.len() - all.len() % WINDOW;
            stream.pending.clear();
            stream.pending.extend_from_slice(&all[tail..]);
        }
        result.map(|()| out)
    }

    /// A free session if one is (starting round-robin), else waits for the
    /// next one in turn.
    fn pick(&self) -> std::sync::MutexGuard<'_, Session> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(g) = self.sessions[(start + i) % n].try_lock() {
                return g;
            }
        }
        self.sessions[start].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one inference over `n` rows. `input` is `[n, 576]`, `state`
    /// `[2, n, 128]`; calls `each(b, probability, next_state)` for every row
    /// `b`, where `next_state` is the whole `[2, n, 128]` output. The lock is
    /// held only for the run and the reading of its outputs.
    fn infer(&self, n: usize, input: &[f32], state: &[f32], mut each: impl FnMut(usize, f32, &[f32])) -> Result<(), VadError> {
        let err = |e: ort::Error| VadError::Inference(e.to_string());
        let sr = [SAMPLE_RATE];
        let input = TensorRef::from_array_view(([n, INPUT], input)).map_err(err)?;
        let state = TensorRef::from_array_view(([2, n, STATE_WIDTH], state)).map_err(err)?;
        let sr = TensorRef::from_array_view(((), &sr[..])).map_err(err)?;
        let mut session = self.pick();
        let outputs = session
            .run(ort::inputs!["input" => input, "state" => state, "sr" => sr])
            .map_err(err)?;
        let (Some(prob), Some(next)) = (outputs.get("output"), outputs.get("stateN")) else {
            return Err(VadError::Inference("model outputs lack `output` or `stateN`".into()));
        };
        let (_, prob) = prob.try_extract_tensor::<f32>().map_err(err)?;
        let (_, next) = next.try_extract_tensor::<f32>().map_err(err)?;
        if prob.len() != n || next.len() != STATE * n {
            return Err(VadError::Inference(format!(
                "unexpected output sizes {} and {} for batch {n}",
                prob.len(),
                next.len()
            )));
        }
        for (b, &p) in prob.iter().enumerate() {
            // NaN (never seen, but not trusted) counts as silence.
            let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
            each(b, p, next);
        }
        Ok(())
    }
}

impl VadStream {
    /// Feeds mono PCM16 at 16 kHz (any length); returns the speech
    /// probability (0..=1) of every window completed by this input, in order.
    /// Samples left over (fewer than [`WINDOW`]) wait for the next call.
    ///
    /// Errors: [`VadError::Inference`]; the failed window is lost, state and
    /// context stay as they were before it.
    pub fn push(&mut self, pcm16k: &[i16]) -> Result<Vec<f32>, VadError> {
        let mut probs = Vec::with_capacity((self.pending.len() + pcm16k.len()) / WINDOW);
        let mut rest = pcm16k;
        while !rest.is_empty() {
            let take = (WINDOW - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() < WINDOW {
                break;
            }
            fill_window(&mut self.x, &self.pending);
            self.pending.clear();
            probs.push(self.run_one()?);
        }
        Ok(probs)
    }

    /// Clears buffered samples, context and recurrent state (as after
    /// [`SileroVad::stream`]).
    pub fn reset(&mut self) {
        self.x.fill(0.0);
        self.state.fill(0.0);
        self.pending.clear();
    }

    /// Samples buffered towards the next window (`0..WINDOW`).
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Runs the window in `x` (batch 1) and advances state and context.
    fn run_one(&mut self) -> Result<f32, VadError> {
        let mut prob = 0.0;
        let mut next_state = [0.0f32; STATE];
        self.vad.infer(1, &self.x[..], &self.state[..], |_, p, next| {
            prob = p;
            next_state.copy_from_slice(next);
        })?;
        *self.state = next_state;
        self.advance_context();
        Ok(prob)
    }

    /// After a run: the last [`CONTEXT`] samples of the window become the
    /// context of the next (`OnnxWrapper`: `self._context = x[..., -64:]`).
    fn advance_context(&mut self) {
        self.x.copy_within(INPUT - CONTEXT.., 0);
    }
}

/// Writes one window of PCM16 (exactly [`WINDOW`] samples) after the context,
/// scaled to `[-1, 1)`.
fn fill_window(x: &mut [f32; INPUT], window: &[i16]) {
    for (dst, &s) in x[CONTEXT..].iter_mut().zip(window) {
        *dst = f32::from(s) / 32768.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::local::models::ModelPaths;
    use crate::providers::local::onnx::init_runtime;

    const LIBRIVOX: &str = "/usr/share/pocketsphinx/test/data/librivox";

    fn vad() -> Arc<SileroVad> {
        let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
        init_runtime(&paths.onnxruntime).unwrap_or_else(|e| panic!("{e}"));
        SileroVad::load(&paths.silero_vad).unwrap_or_else(|e| panic!("{e}"))
    }

    fn speech(name: &str) -> Vec<i16> {
        let path = format!("{LIBRIVOX}/{name}.wav");
        let (pcm, rate) = crate::pipeline::wav::read_wav_mono(Path::new(&path))
            .unwrap_or_else(|e| panic!("{path} (Debian pocketsphinx-testdata): {e}"));
        assert_eq!(rate, 16_000);
        pcm
    }

    /// Deterministic white noise, uniform in ±`amp` (xorshift32).
    fn noise(len: usize, amp: i32) -> Vec<i16> {
        let mut s: u32 = 0x9e37_79b9;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                ((s % (2 * amp as u32 + 1)) as i32 - amp) as i16
            })
            .collect()
    }

    #[test]
    fn missing_model_is_a_clear_error() {
        let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
        init_runtime(&paths.onnxruntime).unwrap_or_else(|e| panic!("{e}"));
        let Err(e) = SileroVad::load(Path::new("/nonexistent/silero_vad.onnx")) else { panic!("loaded") };
        assert!(e.to_string().contains("/nonexistent/silero_vad.onnx"), "{e}");
        assert!(e.to_string().contains("skald models fetch"), "{e}");
    }

    #[test]
    fn speech_is_speech() {
        let vad = vad();
        let pcm = speech("sense_and_sensibility_01_austen_64kb-0880");
        let probs = vad.stream().push(&pcm).unwrap();
        assert_eq!(probs.len(), pcm.len() / WINDOW);
        let mid = &probs[probs.len() / 4..probs.len() * 3 / 4];
        let high = mid.iter().filter(|&&p| p > 0.8).count();
        assert!(high * 10 >= mid.len() * 8, "only {high}/{} middle windows > 0.8: {mid:?}", mid.len());
        assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)));
    }

    /// Every 8th window of `…-0880.wav` as computed by the package's
    /// `OnnxWrapper` procedure (context + state handling) in Python with the
    /// `onnxruntime==1.31.1` wheel and one thread.
    #[test]
    fn matches_the_python_wrapper() {
        const REFERENCE: [f32; 12] = [
            0.023846, 0.707056, 0.999818, 0.999667, 0.855701, 0.978112, 0.999955, 0.999897, 0.999413, 0.999801,
            0.996810, 0.856023,
        ];
        let vad = vad();
        let probs = vad.stream().push(&speech("sense_and_sensibility_01_austen_64kb-0880")).unwrap();
        assert_eq!(probs.len(), 93);
        for (i, (&got, &want)) in probs.iter().step_by(8).zip(&REFERENCE).enumerate() {
            assert!((got - want).abs() < 1e-4, "window {}: {got} vs Python {want}", i * 8);
        }
    }

    #[test]
    fn silence_and_noise_are_not_speech() {
        let vad = vad();
        let silence = vad.stream().push(&[0; 16_000 * 2]).unwrap();
        assert_eq!(silence.len(), 62);
        assert!(silence.iter().all(|&p| p < 0.2), "{silence:?}");
        // White noise at about −24 dBFS RMS (uniform ±3000).
        let noisy = vad.stream().push(&noise(16_000 * 3, 3000)).unwrap();
        assert!(noisy.iter().all(|&p| p < 0.2), "{noisy:?}");
    }

    #[test]
    fn streams_are_isolated_and_chunking_does_not_matter() {
        let vad = vad();
        let pcm = speech("sense_and_sensibility_01_austen_64kb-0930");
        let pcm = &pcm[..16_000 * 2];
        let mut a = vad.stream();
        let mut b = vad.stream();
        // Interleave the two streams, b in odd 20 ms frames.
        let whole = a.push(pcm).unwrap();
        let mut framed = Vec::new();
        for frame in pcm.chunks(320) {
            framed.extend(b.push(frame).unwrap());
        }
        assert_eq!(whole, framed);
        assert_eq!(b.buffered(), pcm.len() % WINDOW);
        // After reset a stream starts over exactly.
        a.reset();
        assert_eq!(a.push(pcm).unwrap(), whole);
        // A fresh stream fed other audio first differs; after reset it agrees.
        let mut c = vad.stream();
        c.push(&noise(5000, 8000)).unwrap();
        assert_ne!(c.push(pcm).unwrap(), whole);
        c.reset();
        assert_eq!(c.push(pcm).unwrap(), whole);
    }

    #[test]
    fn batched_equals_single() {
        let vad = vad();
        let names = [
            "sense_and_sensibility_01_austen_64kb-0870",
            "sense_and_sensibility_01_austen_64kb-0880",
            "sense_and_sensibility_01_austen_64kb-0890",
        ];
        let audio: Vec<Vec<i16>> = names.iter().map(|n| speech(n)[..16_000].to_vec()).collect();
        let mut audio = audio;
        audio.push(vec![0; 16_000]);
        audio.push(noise(7_000, 3000)); // shorter: drops out of later rounds
        let single: Vec<Vec<f32>> = audio.iter().map(|a| vad.stream().push(a).unwrap()).collect();

        let mut streams: Vec<VadStream> = audio.iter().map(|_| vad.stream()).collect();
        let mut batched: Vec<Vec<f32>> = audio.iter().map(|_| Vec::new()).collect();
        // Feed in uneven chunks (20 ms and 50 ms alternating) to exercise buffering.
        let mut pos = vec![0usize; audio.len()];
        for step in 0.. {
            let len = if step % 2 == 0 { 320 } else { 800 };
            if pos.iter().zip(&audio).all(|(p, a)| *p >= a.len()) {
                break;
            }
            let mut items: Vec<(&mut VadStream, &[i16])> = streams
                .iter_mut()
                .zip(&audio)
                .zip(&pos)
                .map(|((s, a), &p)| {
                    let end = (p + len).min(a.len());
                    (s, &a[p.min(end)..end])
                })
                .collect();
            let out = vad.run_batch(&mut items).unwrap();
            for (i, probs) in out.into_iter().enumerate() {
                batched[i].extend(probs);
                pos[i] += len;
            }
        }
        for (i, (s, b)) in single.iter().zip(&batched).enumerate() {
            assert_eq!(s.len(), b.len(), "stream {i}");
            for (w, (x, y)) in s.iter().zip(b).enumerate() {
                assert!((x - y).abs() < 1e-4, "stream {i} window {w}: single {x} batched {y}");
            }
        }
        // Several windows in one call: one round per window.
        let mut s = vad.stream();
        let out = vad.run_batch(&mut [(&mut s, &audio[0][..])]).unwrap();
        assert_eq!(out[0].len(), single[0].len());
    }

    #[test]
    fn empty_input_is_fine() {
        let vad = vad();
        let mut s = vad.stream();
        assert!(s.push(&[]).unwrap().is_empty());
        assert!(vad.run_batch(&mut []).unwrap().is_empty());
        assert_eq!(vad.run_batch(&mut [(&mut s, &[][..])]).unwrap(), vec![Vec::<f32>::new()]);
    }
}
