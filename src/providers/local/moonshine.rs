//! Moonshine base-en speech recognition on ONNX Runtime: the encoder, the
//! merged decoder with its KV cache, greedy decoding and the `tokenizer.bin`
//! detokenizer ([`Moonshine`]), and the [`SttProvider`] that buffers each
//! utterance and transcribes it when the turn ends ([`MoonshineStt`]).
//!
//! The procedure follows Moonshine's own C++ runtime (moonshine-ai/moonshine,
//! `core/moonshine-model.cpp` and `core/bin-tokenizer/bin-tokenizer.cpp`, the
//! code inside the PyPI `moonshine-cpp` wheel the model files come from):
//!
//! 1. audio: mono PCM16 at 16 kHz scaled to f32 in [-1, 1) (`x / 32768`, no
//!    other normalization) → encoder `input_values` `[1, samples]` →
//!    `last_hidden_state` `[1, frames, 416]` (about 41 frames per second).
//! 2. decoder (8 layers, 8 KV heads of 52): `input_ids` `[1, 1]` starting with
//!    BOS (1), `encoder_hidden_states`, `past_key_values.{i}.{decoder,encoder}.{key,value}`
//!    `[1, 8, len, 52]` and `use_cache_branch` `[1]` bool. The first step runs
//!    without the cache (`use_cache_branch = false`, dummy zero past tensors of
//!    length 1, ignored by that branch) and its `present.*` outputs become the
//!    whole cache; later steps run with the cache and replace only the
//!    decoder half (the encoder half, the cross-attention keys and values,
//!    stays from step one).
//! 3. greedy: the argmax of the last `logits` row is the next token; stop at
//!    EOS (2) or after `ceil(seconds · 6.5)` tokens (Moonshine's heuristic
//!    that also stops the model's rare loops on noise).
//! 4. text: concatenate the tokens' bytes, skipping specials (`<…>` and ids
//!    outside the 32,000-entry table), `▁` (U+2581) becomes a space, trim.
//!
//! The model files are either the `.ort` files of the wheel or the same graphs
//! converted back to plain `.onnx` (about 10x faster in the decoder); both
//! load here ([`Moonshine::load_from`] prefers `.onnx`).
//!
//! Concurrency: one [`Moonshine`] is shared by every call. Each ONNX session
//! sits behind a mutex, so two transcriptions overlap at most as one encoding
//! beside one decoding; inference is blocking and must run in
//! `spawn_blocking`.

use crate::providers::local::models::ModelPaths;
use crate::providers::local::onnx;
use crate::providers::{ProviderError, SttEvent, SttProvider, SttStream, Transcript};
use async_trait::async_trait;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Sample rate the model takes, Hz.
pub const SAMPLE_RATE_HZ: u32 = 16_000;
/// Longest audio the model transcribes in one pass, samples (30 s at 16 kHz).
/// [`Moonshine::transcribe`] splits longer audio into pieces of this size.
pub const MAX_UTTERANCE_SAMPLES: usize = 30 * SAMPLE_RATE_HZ as usize;
/// [`MoonshineStt`] transcribes an utterance in pieces while it is being
/// said: the shortest piece, samples (2 s; shorter ones lose accuracy).
const PIECE_MIN_SAMPLES: usize = 2 * SAMPLE_RATE_HZ as usize;
/// The longest piece, samples (8 s): at this length the piece is cut at its
/// quietest point even without a gap between words.
const PIECE_MAX_SAMPLES: usize = 8 * SAMPLE_RATE_HZ as usize;
/// The shortest piece closed at a gap the VAD found
/// ([`SttStream::word_gap`]), samples (1.5 s).
const GAP_PIECE_MIN_SAMPLES: usize = 3 * SAMPLE_RATE_HZ as usize / 2;
/// A draft of the piece being said is decoded each time this much more of
/// it has come in (1 s), one draft at a time, and only while the model is
/// idle.
const DRAFT_EVERY_SAMPLES: usize = SAMPLE_RATE_HZ as usize;
/// Level analysis window of the piece cutter, samples (10 ms).
const LEVEL_WINDOW: usize = SAMPLE_RATE_HZ as usize / 100;
/// A gap between words: this many quiet level windows in a row (80 ms;
/// shorter quiet runs are often a stop consonant inside a word).
const GAP_WINDOWS: usize = 8;
/// The piece cutter looks for a cut each time this many level windows
/// have come in (100 ms).
const CUT_CHECK_WINDOWS: usize = 10;
/// Quiet means at most 1/this of the piece's loud level (its 90th
/// percentile window RMS): -24 dB.
const GAP_RATIO: f32 = 16.0;
/// Shortest input to the encoder, samples (0.1 s); shorter audio is padded
/// with silence (the encoder needs about 900 samples for one output frame).
const MIN_ENCODER_SAMPLES: usize = SAMPLE_RATE_HZ as usize / 10;
/// Intra-op threads per session used by [`Moonshine::load`]: one, so a
/// transcription never takes more than one core per phase from the media
/// path (measured on the 2-core dev box under load: 1 thread was as fast as 2,
/// and steadier).
pub const DEFAULT_THREADS: usize = 1;
/// Moonshine's limit on generated tokens per second of audio.
const MAX_TOKENS_PER_SECOND: f64 = 6.5;
/// Hard cap on generated tokens per pass (30 s · 6.5 = 195).
const MAX_TOKENS: usize = 224;
/// Decoder start token (BOS).
const BOS: i64 = 1;
/// End of sequence.
const EOS: i64 = 2;
/// Audio whose peak stays at or under this (PCM16) is digital silence and
/// gives "" without running the model (-74 dBFS; real line noise is louder).
const SILENCE_PEAK: i16 = 6;

/// Why loading or running Moonshine failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MoonshineError {
    /// A model file is missing.
    #[error("Moonshine model file missing: {0} (run `skald models fetch`)")]
    Missing(String),
    /// ONNX Runtime was not initialized before loading.
    #[error("ONNX Runtime is not initialized (call onnx::init_runtime first)")]
    NoRuntime,
    /// ONNX Runtime rejected a model file.
    #[error("cannot load Moonshine model {file}: {reason}")]
    Load {
        /// The file.
        file: String,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// The model's inputs or outputs are not those of Moonshine's merged export.
    #[error("unexpected Moonshine model interface in {file}: {reason}")]
    Interface {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// `tokenizer.bin` is unreadable or malformed.
    #[error("bad Moonshine tokenizer {file}: {reason}")]
    Tokenizer {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// An inference run failed.
    #[error("Moonshine inference failed: {0}")]
    Inference(String),
}

impl From<MoonshineError> for ProviderError {
    /// Every Moonshine failure is `Fatal`: retrying the same local model on
    /// the same audio gives the same result.
    fn from(e: MoonshineError) -> Self {
        ProviderError::Fatal(e.to_string())
    }
}

/// Where one transcription spent its time (for benchmarks and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TranscribeStats {
    /// Audio transcribed, ms.
    pub audio_ms: u64,
    /// Time in the encoder.
    pub encoder: Duration,
    /// Time in the decoder loop (all steps).
    pub decoder: Duration,
    /// Decoder steps run (generated tokens, EOS included).
    pub decoder_steps: usize,
}

impl TranscribeStats {
    /// Decoder time per step (zero when no step ran).
    pub fn per_token(&self) -> Duration {
        match u32::try_from(self.decoder_steps) {
            Ok(n) if n > 0 => self.decoder / n,
            _ => Duration::ZERO,
        }
    }

    /// Real-time factor: processing time / audio duration (0 for no audio).
    pub fn rtf(&self) -> f64 {
        if self.audio_ms == 0 {
            return 0.0;
        }
        (self.encoder + self.decoder).as_secs_f64() * 1000.0 / self.audio_ms as f64
    }
}

/// The loaded model (shared; `Send + Sync`).
pub struct Moonshine {
    /// Encoder session: `input_values` → `last_hidden_state`.
    encoder: Mutex<Session>,
    /// Merged decoder session (with and without cache).
    decoder: Mutex<Session>,
    /// Token id → text bytes.
    tokenizer: Tokenizer,
    /// Name of the encoder's input.
    encoder_input: String,
    /// Name of the encoder's output.
    encoder_output: String,
    /// `past_key_values.{i}.{decoder|encoder}.{key|value}`, layer-major.
    past_names: Vec<String>,
    /// `present.…` in the same order as `past_names`.
    present_names: Vec<String>,
    /// Whether `past_names[k]` belongs to the decoder (self-attention) half.
    is_decoder_kv: Vec<bool>,
    /// KV heads per layer.
    kv_heads: i64,
    /// Size of one KV head.
    head_dim: i64,
}

impl Moonshine {
    /// Loads encoder, decoder and tokenizer; ONNX Runtime must be initialized.
    /// `encoder`/`decoder` may be the `.onnx` or the `.ort` files. Each
    /// session runs on [`DEFAULT_THREADS`] thread(s).
    /// Errors: `Fatal` naming the file.
    pub fn load(
        encoder: &Path,
        decoder: &Path,
        tokenizer: &Path,
    ) -> Result<Arc<Moonshine>, ProviderError> {
        Self::load_with_threads(encoder, decoder, tokenizer, DEFAULT_THREADS)
    }

    /// [`Moonshine::load`] with `threads` intra-op threads per session (0 is
    /// taken as 1). More threads shorten one transcription on an idle
    /// machine and lengthen it on a busy one.
    pub fn load_with_threads(
        encoder: &Path,
        decoder: &Path,
        tokenizer: &Path,
        threads: usize,
    ) -> Result<Arc<Moonshine>, ProviderError> {
        Ok(Arc::new(Self::load_inner(
            encoder, decoder, tokenizer, threads,
        )?))
    }

    /// Loads the model from a models directory layout: the plain `.onnx`
    /// files when both exist, else the `.ort` files beside them. ONNX Runtime
    /// must be initialized. Errors: `Fatal` naming the missing file.
    pub fn load_from(paths: &ModelPaths) -> Result<Arc<Moonshine>, ProviderError> {
        let (encoder, decoder) = Self::model_files(paths);
        Self::load(&encoder, &decoder, &paths.moonshine_tokenizer)
    }

    /// The encoder and decoder files [`Moonshine::load_from`] uses: the
    /// `.onnx` pair when both exist, else the `.ort` pair (existing or not).
    pub fn model_files(paths: &ModelPaths) -> (PathBuf, PathBuf) {
        if paths.moonshine_encoder.is_file() && paths.moonshine_decoder.is_file() {
            return (
                paths.moonshine_encoder.clone(),
                paths.moonshine_decoder.clone(),
            );
        }
        (
            paths.moonshine_encoder.with_extension("ort"),
            paths.moonshine_decoder.with_extension("ort"),
        )
    }

    /// Transcribes one utterance: mono PCM16 at 16 kHz (0.1–30 s). Blocking
    /// (CPU-bound): call from `spawn_blocking`. Silence gives "".
    /// Empty audio gives ""; audio under 0.1 s is padded with silence; audio
    /// over 30 s is transcribed in 30 s pieces joined by a space.
    /// Errors: `Fatal` when ONNX Runtime fails.
    pub fn transcribe(&self, pcm16k: &[i16]) -> Result<String, ProviderError> {
        Ok(self.transcribe_with_stats(pcm16k)?.0)
    }

    /// [`Moonshine::transcribe`], also returning where the time went.
    pub fn transcribe_with_stats(
        &self,
        pcm16k: &[i16],
    ) -> Result<(String, TranscribeStats), ProviderError> {
        let mut stats = TranscribeStats {
            audio_ms: pcm16k.len() as u64 * 1000 / u64::from(SAMPLE_RATE_HZ),
            ..TranscribeStats::default()
        };
        let mut pieces = Vec::new();
        for chunk in pcm16k.chunks(MAX_UTTERANCE_SAMPLES) {
            let text = self.transcribe_piece(chunk, &mut stats)?;
            if !text.is_empty() {
                pieces.push(text);
            }
        }
        Ok((pieces.join(" "), stats))
    }

    fn load_inner(
        encoder: &Path,
        decoder: &Path,
        tokenizer: &Path,
        threads: usize,
    ) -> Result<Moonshine, MoonshineError> {
        for f in [encoder, decoder, tokenizer] {
            if !f.is_file() {
                return Err(MoonshineError::Missing(f.display().to_string()));
            }
        }
        let tokenizer = Tokenizer::load(tokenizer)?;
        let encoder_session = open_session(encoder, threads)?;
        let decoder_session = open_session(decoder, threads)?;
        let iface = |reason: String| MoonshineError::Interface {
            file: decoder.display().to_string(),
            reason,
        };

        let (Some(encoder_input), Some(encoder_output)) = (
            encoder_session
                .inputs()
                .first()
                .map(|o| o.name().to_string()),
            encoder_session
                .outputs()
                .first()
                .map(|o| o.name().to_string()),
        ) else {
            return Err(MoonshineError::Interface {
                file: encoder.display().to_string(),
                reason: "no input or output".into(),
            });
        };

        let inputs: Vec<String> = decoder_session
            .inputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let outputs: Vec<String> = decoder_session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        for needed in ["input_ids", "encoder_hidden_states", "use_cache_branch"] {
            if !inputs.iter().any(|n| n == needed) {
                return Err(iface(format!("no input `{needed}`")));
            }
        }
        if outputs.first().map(String::as_str) != Some("logits") {
            return Err(iface("first output is not `logits`".into()));
        }
        let layers = inputs
            .iter()
            .filter(|n| n.starts_with("past_key_values.") && n.ends_with(".decoder.key"))
            .count();
        if layers == 0 {
            return Err(iface("no `past_key_values.*` inputs".into()));
        }
        let mut past_names = Vec::with_capacity(layers * 4);
        let mut present_names = Vec::with_capacity(layers * 4);
        let mut is_decoder_kv = Vec::with_capacity(layers * 4);
        for layer in 0..layers {
            for half in ["decoder", "encoder"] {
                for kind in ["key", "value"] {
                    let past = format!("past_key_values.{layer}.{half}.{kind}");
                    let present = format!("present.{layer}.{half}.{kind}");
                    if !inputs.contains(&past) {
                        return Err(iface(format!("no input `{past}`")));
                    }
                    if !outputs.contains(&present) {
                        return Err(iface(format!("no output `{present}`")));
                    }
                    past_names.push(past);
                    present_names.push(present);
                    is_decoder_kv.push(half == "decoder");
                }
            }
        }
        // KV shape [batch, heads, seq, head_dim]: read heads and head_dim.
        let kv_shape = decoder_session
            .inputs()
            .iter()
            .find(|o| o.name() == past_names[0])
            .and_then(|o| match o.dtype() {
                ort::value::ValueType::Tensor { shape, .. } if shape.len() == 4 => {
                    Some((shape[1], shape[3]))
                }
                _ => None,
            });
        let Some((kv_heads, head_dim)) = kv_shape.filter(|(h, d)| *h > 0 && *d > 0) else {
            return Err(iface(
                "past_key_values are not [batch, heads, seq, head_dim] with fixed heads".into(),
            ));
        };

        Ok(Moonshine {
            encoder: Mutex::new(encoder_session),
            decoder: Mutex::new(decoder_session),
            tokenizer,
            encoder_input,
            encoder_output,
            past_names,
            present_names,
            is_decoder_kv,
            kv_heads,
            head_dim,
        })
    }

    /// One pass over at most [`MAX_UTTERANCE_SAMPLES`].
    fn transcribe_piece(
        &self,
        pcm: &[i16],
        stats: &mut TranscribeStats,
    ) -> Result<String, MoonshineError> {
        let tokens = self.transcribe_tokens(pcm, &[], stats)?;
        Ok(self.tokenizer.decode(&tokens))
    }

    /// Transcribes `pcm` (mono PCM16 at 16 kHz, at most
    /// [`MAX_UTTERANCE_SAMPLES`]) with its first tokens forced to `prefix`
    /// (token ids, BOS excluded: what an earlier pass over the start of the
    /// same audio settled on); returns every token id, the prefix included
    /// (EOS excluded). The prefix goes through the decoder in one run, so
    /// only the tokens after it cost a decoder step each. Silence gives no
    /// tokens. Errors: `Fatal` when ONNX Runtime fails.
    pub fn transcribe_after(&self, pcm: &[i16], prefix: &[i64]) -> Result<Vec<i64>, ProviderError> {
        let pcm = &pcm[..pcm.len().min(MAX_UTTERANCE_SAMPLES)];
        Ok(self.transcribe_tokens(pcm, prefix, &mut TranscribeStats::default())?)
    }

    /// True while a transcription holds the encoder or the decoder.
    pub fn busy(&self) -> bool {
        self.encoder.try_lock().is_err() || self.decoder.try_lock().is_err()
    }

    /// Token ids to text.
    pub fn text_of(&self, tokens: &[i64]) -> String {
        self.tokenizer.decode(tokens)
    }

    /// [`Moonshine::transcribe_after`] with its statistics.
    fn transcribe_tokens(
        &self,
        pcm: &[i16],
        prefix: &[i64],
        stats: &mut TranscribeStats,
    ) -> Result<Vec<i64>, MoonshineError> {
        if pcm.iter().all(|s| s.unsigned_abs() <= SILENCE_PEAK as u16) {
            return Ok(Vec::new());
        }
        let mut audio: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
        if audio.len() < MIN_ENCODER_SAMPLES {
            audio.resize(MIN_ENCODER_SAMPLES, 0.0);
        }
        let seconds = pcm.len() as f64 / f64::from(SAMPLE_RATE_HZ);
        let max_tokens = ((seconds * MAX_TOKENS_PER_SECOND).ceil() as usize).clamp(1, MAX_TOKENS);

        let started = Instant::now();
        let hidden = self.encode(audio)?;
        stats.encoder += started.elapsed();

        let started = Instant::now();
        let prefix = &prefix[..prefix.len().min(max_tokens.saturating_sub(1))];
        let tokens = self.decode(&hidden, prefix, max_tokens, &mut stats.decoder_steps)?;
        stats.decoder += started.elapsed();
        Ok(tokens)
    }

    /// Runs the encoder: `[1, samples]` → `last_hidden_state` `[1, frames, 416]`.
    fn encode(&self, audio: Vec<f32>) -> Result<DynValue, MoonshineError> {
        let n = audio.len();
        let input = Tensor::from_array(([1usize, n], audio)).map_err(infer)?;
        let mut session = self.encoder.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = session
            .run(vec![(
                self.encoder_input.as_str(),
                SessionInputValue::from(input),
            )])
            .map_err(infer)?;
        out.remove(&self.encoder_output).ok_or_else(|| {
            MoonshineError::Inference(format!("encoder gave no `{}`", self.encoder_output))
        })
    }

    /// Greedy decoding with the KV cache, the first tokens forced to
    /// `prefix` (fed with BOS in the first, no-cache run); returns the ids
    /// (the prefix included; BOS and EOS excluded), at most `max_tokens`.
    /// `steps` counts decoder runs.
    fn decode(
        &self,
        hidden: &DynValue,
        prefix: &[i64],
        max_tokens: usize,
        steps: &mut usize,
    ) -> Result<Vec<i64>, MoonshineError> {
        // Dummy past for the first (no-cache) step: [1, heads, 1, head_dim] zeros.
        let dummy_len = (self.kv_heads * self.head_dim) as usize;
        let mut past: Vec<DynValue> = Vec::with_capacity(self.past_names.len());
        for _ in &self.past_names {
            let t =
                Tensor::from_array(([1, self.kv_heads, 1, self.head_dim], vec![0f32; dummy_len]))
                    .map_err(infer)?;
            past.push(t.into_dyn());
        }
        let mut session = self.decoder.lock().unwrap_or_else(|p| p.into_inner());
        let mut tokens = prefix.to_vec();
        let mut last = BOS;
        for step in 0..max_tokens.saturating_sub(prefix.len()) {
            let use_cache = step > 0;
            let ids: Vec<i64> = if step == 0 {
                std::iter::once(BOS).chain(prefix.iter().copied()).collect()
            } else {
                vec![last]
            };
            let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
                Vec::with_capacity(3 + past.len());
            inputs.push((
                "input_ids".into(),
                Tensor::from_array(([1usize, ids.len()], ids))
                    .map_err(infer)?
                    .into(),
            ));
            inputs.push(("encoder_hidden_states".into(), hidden.into()));
            inputs.push((
                "use_cache_branch".into(),
                Tensor::from_array(([1usize], vec![use_cache]))
                    .map_err(infer)?
                    .into(),
            ));
            for (name, value) in self.past_names.iter().zip(&past) {
                inputs.push((name.as_str().into(), value.into()));
            }
            let mut out = session.run(inputs).map_err(infer)?;
            *steps += 1;

            let next = {
                let (shape, logits) = out["logits"].try_extract_tensor::<f32>().map_err(infer)?;
                let vocab = shape.last().copied().unwrap_or(0).max(0) as usize;
                if vocab == 0 || logits.len() < vocab {
                    return Err(MoonshineError::Inference("empty logits".into()));
                }
                argmax(&logits[logits.len() - vocab..])
            };
            for (k, name) in self.present_names.iter().enumerate() {
                if !use_cache || self.is_decoder_kv[k] {
                    past[k] = out.remove(name).ok_or_else(|| {
                        MoonshineError::Inference(format!("decoder gave no `{name}`"))
                    })?;
                }
            }
            if next == EOS {
                break;
            }
            tokens.push(next);
            last = next;
        }
        Ok(tokens)
    }
}

/// Opens one session from a `.onnx` or `.ort` file (ONNX Runtime picks the
/// format from the extension) with `threads` intra-op threads.
fn open_session(path: &Path, threads: usize) -> Result<Session, MoonshineError> {
    let load = |reason: String| MoonshineError::Load {
        file: path.display().to_string(),
        reason,
    };
    let env = onnx::environment().ok_or(MoonshineError::NoRuntime)?;
    Session::builder(env)
        .map_err(|e| load(e.to_string()))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| load(e.to_string()))?
        // Idle pool threads sleep instead of spinning: on a small box the
        // spinning steals the cores the media path and the other models need.
        .with_config_entry("session.intra_op.allow_spinning", "0")
        .map_err(|e| load(e.to_string()))?
        .commit_from_file(path)
        .map_err(|e| load(e.to_string()))
}

/// Index of the largest finite value (0 when none is finite).
fn argmax(row: &[f32]) -> i64 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in row.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as i64
}

fn infer(e: impl std::fmt::Display) -> MoonshineError {
    MoonshineError::Inference(e.to_string())
}

/// Moonshine's `tokenizer.bin`: token id → UTF-8 bytes.
///
/// Format (moonshine `bin-tokenizer.cpp`): one record per id; a length byte
/// `n` (0 = an empty, unusable entry), or when `n ≥ 128` a second byte `m`
/// and length `m·128 + n − 128`; then that many bytes. `▁` marks a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tokenizer {
    /// Bytes of each id.
    tokens: Vec<Vec<u8>>,
}

impl Tokenizer {
    /// Reads and parses a `tokenizer.bin`.
    fn load(path: &Path) -> Result<Tokenizer, MoonshineError> {
        let err = |reason: String| MoonshineError::Tokenizer {
            file: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        Tokenizer::parse(&bytes).map_err(err)
    }

    /// Parses the bytes of a `tokenizer.bin`. Errors: truncated or empty.
    pub(crate) fn parse(mut bytes: &[u8]) -> Result<Tokenizer, String> {
        let mut tokens = Vec::new();
        while let Some((&first, rest)) = bytes.split_first() {
            bytes = rest;
            let len = if first < 128 {
                usize::from(first)
            } else {
                let Some((&second, rest)) = bytes.split_first() else {
                    return Err(format!("truncated length of token {}", tokens.len()));
                };
                bytes = rest;
                usize::from(second) * 128 + usize::from(first) - 128
            };
            if len > bytes.len() {
                return Err(format!("token {} runs past the end", tokens.len()));
            }
            let (token, rest) = bytes.split_at(len);
            tokens.push(token.to_vec());
            bytes = rest;
        }
        if tokens.is_empty() {
            return Err("no tokens".into());
        }
        Ok(Tokenizer { tokens })
    }

    /// Text of `ids`: specials (`<…>`, empty entries, ids out of range) are
    /// skipped, `▁` becomes a space, invalid UTF-8 is replaced, the result is
    /// trimmed.
    pub(crate) fn decode(&self, ids: &[i64]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(token) = usize::try_from(id).ok().and_then(|i| self.tokens.get(i)) else {
                continue;
            };
            let special =
                token.len() > 2 && token.first() == Some(&b'<') && token.last() == Some(&b'>');
            if token.is_empty() || special {
                continue;
            }
            bytes.extend_from_slice(token);
        }
        String::from_utf8_lossy(&bytes)
            .replace('\u{2581}', " ")
            .trim()
            .to_string()
    }
}

/// [`SttProvider`] over [`Moonshine`]: buffers each utterance, transcribes it
/// on `end_utterance` in a blocking task.
///
/// A stream transcribes while the caller speaks: a piece of the utterance
/// goes to the model at once when the VAD hears the voice stop
/// ([`SttStream::word_gap`], once the piece holds 1.5 s), or at a gap
/// between words in the level (80 ms at -24 dB under its loud level, at
/// least 2 s in; at the quietest 80 ms by 8 s). At the utterance's end only
/// the last piece is left to transcribe, so the `Final` comes sooner the
/// more the caller paused for breath. Within a piece, a draft of its audio
/// so far is decoded each second while the caller speaks, one at a time and
/// only when the model is idle (under load drafts give way);
/// the tokens two drafts in a row agree on (less the last) are forced as the
/// start of the piece's transcript, so that its last decoding runs the
/// decoder once over them and steps only through the words after them
/// (the decoder, at about 11 ms a token on this machine's cores, is most of
/// the time). One `Final` per utterance,
/// its pieces' texts joined (a piece's closing full stop dropped and the next
/// piece's capital lowered, "I" excepted). Utterances are transcribed one
/// after the other in the order they ended, so `Final`s come in stream
/// order. No `Interim` events are produced.
pub struct MoonshineStt {
    /// The model.
    pub model: Arc<Moonshine>,
}

#[async_trait]
impl SttProvider for MoonshineStt {
    fn name(&self) -> &str {
        "moonshine"
    }
    async fn open(&self) -> Result<Box<dyn SttStream>, ProviderError> {
        Ok(Box::new(MoonshineStream::new(self.model.clone())))
    }
}

/// A piece of an utterance waiting for transcription.
struct Job {
    /// Its audio, 16 kHz PCM16.
    pcm: Vec<i16>,
    /// Stream time of its first sample, ms.
    start_ms: u64,
    /// Stream time just after its last sample, ms.
    end_ms: u64,
    /// What the piece is: the utterance goes on, ends here, or was dropped.
    kind: JobKind,
}

/// A [`Job`]'s place in its utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobKind {
    /// A draft of the piece being said (its audio so far): what two drafts
    /// agree on is forced as the start of the piece's transcript, so its
    /// decoding at the end costs only the words after it.
    Draft,
    /// A piece cut while the caller speaks: its text waits for the rest.
    Piece,
    /// The utterance's last piece: the `Final` goes out with it.
    Last,
    /// The utterance was discarded: forget its pieces (no audio).
    Discard,
}

/// One recognition stream: a buffer on the caller's side and a worker task
/// that transcribes finished utterances in order.
struct MoonshineStream {
    /// Audio of the current utterance not yet handed to the model.
    buffer: Vec<i16>,
    /// `buffer.len()` when the last draft of it was sent (0: none yet).
    drafted: usize,
    /// A draft is queued or running: no other is sent.
    drafting: Arc<AtomicBool>,
    /// Tokens the drafts settled, so far in this stream (the pieces'
    /// decodings were spared a step for each; traced).
    forced: Arc<AtomicUsize>,
    /// RMS of each whole 10 ms window of `buffer`, for the piece cutter.
    levels: Vec<f32>,
    /// Pieces handed to the model while utterances were being said.
    pieces: usize,
    /// Samples received before the current utterance (stream time).
    consumed: u64,
    /// Finished utterances to the worker (unbounded: at most one per turn
    /// or per 30 s of audio, so it cannot grow fast).
    jobs: mpsc::UnboundedSender<Job>,
    /// Events from the worker.
    events: mpsc::UnboundedReceiver<Result<SttEvent, ProviderError>>,
    /// The worker, aborted when the stream is dropped.
    worker: tokio::task::JoinHandle<()>,
}

impl MoonshineStream {
    fn new(model: Arc<Moonshine>) -> Self {
        let (jobs, mut job_rx) = mpsc::unbounded_channel::<Job>();
        let (event_tx, events) = mpsc::unbounded_channel();
        let drafting = Arc::new(AtomicBool::new(false));
        let draft_done = drafting.clone();
        let forced_total = Arc::new(AtomicUsize::new(0));
        let forced_count = forced_total.clone();
        let worker = tokio::spawn(async move {
            // The open utterance: its start and its pieces' texts (or the
            // first error among them).
            let mut start_ms: Option<u64> = None;
            let mut texts: Result<Vec<String>, ProviderError> = Ok(Vec::new());
            // Drafts of the open piece: the latest one's tokens and audio
            // length, and the tokens two drafts agreed on.
            let mut draft: (Vec<i64>, usize) = (Vec::new(), 0);
            let mut agreed: Vec<i64> = Vec::new();
            while let Some(job) = job_rx.recv().await {
                if job.kind == JobKind::Discard {
                    start_ms = None;
                    texts = Ok(Vec::new());
                    (draft, agreed) = ((Vec::new(), 0), Vec::new());
                    continue;
                }
                if job.kind == JobKind::Draft {
                    // A draft is spare work: none while a piece waits behind
                    // it, or while the model is busy with another call's
                    // words (under load drafts give way, and cost nothing).
                    if texts.is_ok() && job_rx.is_empty() && !model.busy() {
                        let (model, prefix, len) = (model.clone(), agreed.clone(), job.pcm.len());
                        let run = tokio::task::spawn_blocking(move || model.transcribe_after(&job.pcm, &prefix));
                        if let Ok(Ok(tokens)) = run.await {
                            // Both start with `agreed` (forced), so it only grows.
                            agreed = tokens[..settled(&draft.0, &tokens).max(agreed.len())].to_vec();
                            draft = (tokens, len);
                        }
                    }
                    draft_done.store(false, Ordering::Release);
                    continue;
                }
                start_ms.get_or_insert(job.start_ms);
                if !job.pcm.is_empty() && texts.is_ok() {
                    let model = model.clone();
                    let (audio_ms, kind) = (job.end_ms - job.start_ms, job.kind);
                    // The drafts' agreement holds for this piece only if
                    // their audio lies within it.
                    let prefix = if draft.1 <= job.pcm.len() + LEVEL_WINDOW { std::mem::take(&mut agreed) } else { Vec::new() };
                    (draft, agreed) = ((Vec::new(), 0), Vec::new());
                    let forced = prefix.len();
                    forced_count.fetch_add(forced, Ordering::Relaxed);
                    let started = Instant::now();
                    let result = match tokio::task::spawn_blocking(move || {
                        if job.pcm.len() <= MAX_UTTERANCE_SAMPLES {
                            model.transcribe_after(&job.pcm, &prefix).map(|t| model.text_of(&t))
                        } else {
                            model.transcribe(&job.pcm)
                        }
                    })
                    .await
                    {
                        Ok(r) => r,
                        Err(e) => Err(ProviderError::Fatal(format!(
                            "transcription task failed: {e}"
                        ))),
                    };
                    tracing::debug!(audio_ms, ?kind, forced, took_ms = started.elapsed().as_millis() as u64, "moonshine piece");
                    match (result, texts.as_mut()) {
                        (Ok(text), Ok(all)) => all.push(text),
                        (Err(e), _) => texts = Err(e),
                        _ => {}
                    }
                }
                if job.kind == JobKind::Piece {
                    continue;
                }
                let done = std::mem::replace(&mut texts, Ok(Vec::new()));
                let start = start_ms.take().unwrap_or(job.start_ms);
                let event = done.map(|pieces| {
                    SttEvent::Final(Transcript {
                        text: join_pieces(&pieces),
                        start_ms: start,
                        end_ms: job.end_ms,
                        confidence: None,
                    })
                });
                if event_tx.send(event).is_err() {
                    break;
                }
            }
        });
        MoonshineStream {
            buffer: Vec::new(),
            drafted: 0,
            drafting,
            forced: forced_total,
            levels: Vec::new(),
            pieces: 0,
            consumed: 0,
            jobs,
            events,
            worker,
        }
    }

    /// Hands the first `len` buffered samples to the worker as `kind`.
    fn submit(&mut self, len: usize, kind: JobKind) -> Result<(), ProviderError> {
        let pcm: Vec<i16> = self.buffer.drain(..len).collect();
        self.drafted = 0;
        let windows = (len / LEVEL_WINDOW).min(self.levels.len());
        self.levels.drain(..windows);
        if !len.is_multiple_of(LEVEL_WINDOW) {
            // Cuts fall on window edges; an odd length (the end of an
            // utterance) restarts the analysis.
            self.levels.clear();
            self.levels.extend(self.buffer.chunks_exact(LEVEL_WINDOW).map(rms));
        }
        let start = self.consumed;
        self.consumed += pcm.len() as u64;
        let job = Job {
            pcm,
            start_ms: samples_to_ms(start),
            end_ms: samples_to_ms(self.consumed),
            kind,
        };
        self.jobs
            .send(job)
            .map_err(|_| ProviderError::Fatal("moonshine stream worker stopped".into()))
    }
}

/// Root mean square of `pcm`, as the piece cutter keeps it.
fn rms(pcm: &[i16]) -> f32 {
    crate::pipeline::rms(pcm) as f32
}

/// Where to cut the utterance being said into a piece for the model, as a
/// number of [`LEVEL_WINDOW`]s from its start, given the RMS of each 10 ms
/// window so far: the middle of the first gap between words (30 ms at
/// 1/[`GAP_RATIO`] of the loud level) at least [`PIECE_MIN_SAMPLES`] in,
/// and never within 100 ms of the newest audio (the gap may be a word's
/// stop); once [`PIECE_MAX_SAMPLES`] are there, the quietest window past
/// the minimum. `None`: keep listening.
fn piece_cut(levels: &[f32]) -> Option<usize> {
    let min = PIECE_MIN_SAMPLES / LEVEL_WINDOW;
    let guard = 10;
    if levels.len() < min + GAP_WINDOWS + guard {
        return None;
    }
    let mut levels_copy = levels.to_vec();
    let k = levels_copy.len() * 9 / 10;
    let (_, &mut loud, _) = levels_copy.select_nth_unstable_by(k, f32::total_cmp);
    let quiet = loud / GAP_RATIO;
    let searchable = &levels[..levels.len() - guard];
    let mut run = 0;
    for (i, &l) in searchable.iter().enumerate().skip(min) {
        run = if l <= quiet { run + 1 } else { 0 };
        if run == GAP_WINDOWS {
            return Some(i - GAP_WINDOWS / 2);
        }
    }
    if levels.len() * LEVEL_WINDOW >= PIECE_MAX_SAMPLES {
        // The quietest GAP_WINDOWS run; cut in its middle.
        let (i, _) = searchable
            .windows(GAP_WINDOWS)
            .enumerate()
            .skip(min)
            .map(|(i, w)| (i, w.iter().sum::<f32>()))
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        return Some(i + GAP_WINDOWS / 2);
    }
    None
}

/// How many leading tokens two drafts of the same growing audio agree on,
/// less the last of them (it may be a word the newer audio is still
/// finishing): LocalAgreement-2, as whisper-streaming commits text.
fn settled(older: &[i64], newer: &[i64]) -> usize {
    let common = older.iter().zip(newer).take_while(|(a, b)| a == b).count();
    common.saturating_sub(1)
}

/// One text from the texts of an utterance's pieces: a piece's closing
/// full stop goes (the model ends every piece as a sentence) and the next
/// piece's first letter is lowered unless it is the word "I".
fn join_pieces(pieces: &[String]) -> String {
    let mut out = String::new();
    for p in pieces.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        if out.is_empty() {
            out.push_str(p);
            continue;
        }
        if out.ends_with('.') && !out.ends_with("..") {
            out.pop();
        }
        out.push(' ');
        let first = p.split_whitespace().next().unwrap_or("");
        let keep = first == "I" || first.starts_with("I'") || first.starts_with("I’");
        let mut chars = p.chars();
        match chars.next() {
            Some(c) if !keep && c.is_uppercase() && !first.chars().skip(1).any(char::is_uppercase) => {
                out.extend(c.to_lowercase());
                out.push_str(chars.as_str());
            }
            _ => out.push_str(p),
        }
    }
    out
}

impl Drop for MoonshineStream {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

#[async_trait]
impl SttStream for MoonshineStream {
    async fn send_audio(&mut self, pcm: &[i16]) -> Result<(), ProviderError> {
        let before = self.levels.len();
        self.buffer.extend_from_slice(pcm);
        self.levels.extend(self.buffer[before * LEVEL_WINDOW..].chunks_exact(LEVEL_WINDOW).map(rms));
        // Looked for every 100 ms, not every frame: a gap is 80 ms or more
        // and the newest 100 ms are never cut, so a cut is found as it was
        // (at most 100 ms later) for a tenth of the work.
        if self.levels.len() / CUT_CHECK_WINDOWS != before / CUT_CHECK_WINDOWS
            && let Some(windows) = piece_cut(&self.levels)
        {
            self.pieces += 1;
            self.submit(windows * LEVEL_WINDOW, JobKind::Piece)?;
        }
        if self.buffer.len() >= self.drafted + DRAFT_EVERY_SAMPLES && !self.drafting.swap(true, Ordering::AcqRel) {
            self.drafted = self.buffer.len();
            let job = Job { pcm: self.buffer.clone(), start_ms: 0, end_ms: 0, kind: JobKind::Draft };
            self.jobs
                .send(job)
                .map_err(|_| ProviderError::Fatal("moonshine stream worker stopped".into()))?;
        }
        Ok(())
    }

    async fn end_utterance(&mut self) -> Result<(), ProviderError> {
        tracing::trace!(settled_tokens = self.forced.load(Ordering::Relaxed), "utterance ends");
        self.submit(self.buffer.len(), JobKind::Last)
    }

    /// Closes a piece at the VAD's word gap once it holds
    /// [`GAP_PIECE_MIN_SAMPLES`].
    async fn word_gap(&mut self) {
        if self.buffer.len() >= GAP_PIECE_MIN_SAMPLES {
            self.pieces += 1;
            let whole = self.buffer.len() / LEVEL_WINDOW * LEVEL_WINDOW;
            // A stopped worker shows at `end_utterance`.
            let _ = self.submit(whole, JobKind::Piece);
        }
    }

    async fn discard_utterance(&mut self) -> Result<(), ProviderError> {
        self.consumed += self.buffer.len() as u64;
        self.buffer.clear();
        self.drafted = 0;
        self.levels.clear();
        self.jobs
            .send(Job { pcm: Vec::new(), start_ms: 0, end_ms: 0, kind: JobKind::Discard })
            .map_err(|_| ProviderError::Fatal("moonshine stream worker stopped".into()))
    }

    async fn next_event(&mut self) -> Option<Result<SttEvent, ProviderError>> {
        self.events.recv().await
    }
}

/// Samples at 16 kHz → ms.
fn samples_to_ms(samples: u64) -> u64 {
    samples * 1000 / u64::from(SAMPLE_RATE_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::codec::g711::Law;
    use crate::rtp::codec::resample::resample_all;
    use std::sync::OnceLock;

    const LIBRIVOX: &str = "/usr/share/pocketsphinx/test/data/librivox";

    /// The shared model (loaded once per test binary).
    fn model() -> Arc<Moonshine> {
        static MODEL: OnceLock<Arc<Moonshine>> = OnceLock::new();
        MODEL
            .get_or_init(|| {
                let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
                onnx::init_runtime(&paths.onnxruntime)
                    .expect("ONNX Runtime (run `skald models fetch`)");
                Moonshine::load_from(&paths).unwrap_or_else(|e| panic!("{e}"))
            })
            .clone()
    }

    /// (file id, reference text, 16 kHz PCM) of every LibriVox test file.
    fn librivox() -> Vec<(String, String, Vec<i16>)> {
        let dir = Path::new(LIBRIVOX);
        let refs = std::fs::read_to_string(dir.join("transcription")).unwrap_or_else(|e| {
            panic!("{LIBRIVOX}/transcription: {e} (install pocketsphinx-testdata)")
        });
        let mut out = Vec::new();
        for line in refs.lines() {
            let Some((text, id)) = line.rsplit_once(" (") else {
                continue;
            };
            let id = id.trim_end_matches(')').to_string();
            let text = text
                .replace("<s>", "")
                .replace("</s>", "")
                .trim()
                .to_string();
            let path = dir.join(format!("{id}.wav"));
            let mut reader =
                hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(reader.spec().sample_rate, SAMPLE_RATE_HZ);
            assert_eq!(reader.spec().channels, 1);
            let pcm: Vec<i16> = reader
                .samples::<i16>()
                .map(|s| s.expect("sample"))
                .collect();
            out.push((id, text, pcm));
        }
        assert_eq!(out.len(), 5, "expected 5 LibriVox files");
        out
    }

    use crate::providers::wer::{word_error_rate as wer, words};

    /// The phone path: 16 kHz → 8 kHz → µ-law → 8 kHz → 16 kHz.
    fn through_mulaw(pcm: &[i16]) -> Vec<i16> {
        let narrow = resample_all(pcm, 16_000, 8_000).expect("resample down");
        let mut bytes = Vec::new();
        Law::Mu.encode(&narrow, &mut bytes);
        let mut decoded = Vec::new();
        Law::Mu.decode(&bytes, &mut decoded);
        resample_all(&decoded, 8_000, 16_000).expect("resample up")
    }

    #[test]
    fn tokenizer_reads_one_and_two_byte_lengths() {
        let mut bin = vec![0u8, 3, b'<', b's', b'>', 4, b'<', b'/', b's', b'>'];
        bin.extend_from_slice(&[5]);
        bin.extend_from_slice("▁hi".as_bytes());
        // 130 bytes: 130 = 1·128 + 130 − 128 → first byte 130, second 1.
        bin.extend_from_slice(&[130, 1]);
        bin.extend_from_slice(&[b'x'; 130]);
        let tok = Tokenizer::parse(&bin).expect("parses");
        assert_eq!(tok.tokens.len(), 5);
        assert_eq!(tok.tokens[4].len(), 130);
        assert_eq!(tok.decode(&[1, 3, 2]), "hi");
        assert_eq!(tok.decode(&[3, 3]), "hi hi");
        // Empty entry, negative and out-of-range ids are skipped.
        assert_eq!(tok.decode(&[0, -1, 99, 3]), "hi");
    }

    #[test]
    fn tokenizer_rejects_truncated_input() {
        assert!(Tokenizer::parse(&[]).is_err());
        assert!(Tokenizer::parse(&[3, b'a']).is_err());
        assert!(Tokenizer::parse(&[200]).is_err());
    }

    #[test]
    fn tokenizer_decodes_invalid_utf8_without_panicking() {
        let tok = Tokenizer::parse(&[1, 0xff, 1, b'a']).expect("parses");
        assert_eq!(tok.decode(&[0, 1]), "\u{fffd}a");
    }

    #[test]
    fn real_tokenizer_has_32000_entries() {
        let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
        let tok = Tokenizer::load(&paths.moonshine_tokenizer).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tok.tokens.len(), 32_000);
        assert_eq!(tok.tokens[BOS as usize], b"<s>");
        assert_eq!(tok.tokens[EOS as usize], b"</s>");
    }

    #[test]
    fn argmax_skips_nan() {
        assert_eq!(argmax(&[0.1, f32::NAN, 0.5, 0.2]), 2);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = ModelPaths::in_dir(dir.path());
        let Err(e) = Moonshine::load_from(&paths) else {
            panic!("loaded from an empty dir")
        };
        let ProviderError::Fatal(msg) = e else {
            panic!("not fatal: {e:?}")
        };
        assert!(
            msg.contains("encoder_model.ort") && msg.contains("skald models fetch"),
            "{msg}"
        );
    }

    #[test]
    fn a_forced_prefix_costs_one_run_and_keeps_the_transcript() {
        let model = model();
        for (id, reference, pcm) in librivox() {
            let full = model.transcribe_after(&pcm, &[]).expect("transcribes");
            assert_eq!(model.text_of(&full), model.transcribe(&pcm).unwrap(), "{id}");
            // The prefix a greedy pass chose gives that pass's ending.
            let k = full.len() * 2 / 3;
            let forced = model.transcribe_after(&pcm, &full[..k]).expect("transcribes");
            assert_eq!(forced, full, "{id}");
            // What drafts over the first 50 % and 70 % agree on, then the whole.
            let first = model.transcribe_after(&pcm[..pcm.len() / 2], &[]).expect("draft");
            let second = model.transcribe_after(&pcm[..pcm.len() * 7 / 10], &[]).expect("draft");
            let keep = settled(&first, &second);
            assert!(keep > 0, "{id}: the drafts agree on nothing: {first:?} {second:?}");
            let text = model.text_of(&model.transcribe_after(&pcm, &second[..keep]).expect("final"));
            let e = wer(&reference, &text);
            assert!(e <= 0.10, "{id}: WER {e:.3} after a draft prefix «{text}»");
        }
    }

    #[test]
    fn transcribes_librivox_speech() {
        let model = model();
        for (id, reference, pcm) in librivox() {
            let text = model.transcribe(&pcm).expect("transcribes");
            let wer = wer(&reference, &text);
            println!("{id}: WER {:.1} % «{text}»", wer * 100.0);
            assert!(
                wer <= 0.10,
                "{id}: WER {wer:.3}\n ref: {reference}\n hyp: {text}"
            );
        }
    }

    #[test]
    fn transcribes_phone_band_mulaw_copies() {
        let model = model();
        for (id, reference, pcm) in librivox() {
            let text = model.transcribe(&through_mulaw(&pcm)).expect("transcribes");
            let wer = wer(&reference, &text);
            println!("{id} (8 kHz µ-law): WER {:.1} % «{text}»", wer * 100.0);
            assert!(
                wer <= 0.10,
                "{id}: WER {wer:.3}\n ref: {reference}\n hyp: {text}"
            );
        }
    }

    #[test]
    fn silence_and_faint_noise_give_no_words() {
        let model = model();
        assert_eq!(model.transcribe(&vec![0i16; 16_000]).expect("zeros"), "");
        // Faint noise (peak 40, about −58 dBFS) passes the digital-silence
        // gate and runs the model.
        let mut seed = 12345u32;
        let noise: Vec<i16> = (0..16_000)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 16) % 81) as i16 - 40
            })
            .collect();
        let (text, stats) = model.transcribe_with_stats(&noise).expect("noise");
        assert!(stats.decoder_steps > 0, "the model ran");
        assert!(
            words(&text).len() <= 1 && text.len() <= 12,
            "noise gave {text:?}"
        );
    }

    #[test]
    fn odd_lengths_do_not_panic() {
        let model = model();
        assert_eq!(model.transcribe(&[]).expect("empty"), "");
        for len in [1usize, 10, 900, 1600] {
            let pcm: Vec<i16> = (0..len)
                .map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16)
                .collect();
            let text = model.transcribe(&pcm).expect("short audio");
            assert!(text.len() <= 40, "{len} samples gave {text:?}");
        }
        let loud = vec![i16::MIN; 8000];
        model.transcribe(&loud).expect("full-scale DC");
    }

    /// Next event within a few seconds, or `None` on timeout.
    async fn next(
        stream: &mut Box<dyn SttStream>,
        secs: u64,
    ) -> Option<Result<SttEvent, ProviderError>> {
        tokio::time::timeout(Duration::from_secs(secs), stream.next_event())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_gives_one_final_per_utterance() {
        let provider = MoonshineStt { model: model() };
        assert_eq!(provider.name(), "moonshine");
        let mut stream = provider.open().await.expect("opens");
        let files = librivox();
        let (_, ref1, pcm1) = &files[1];
        let (_, ref4, pcm4) = &files[4];

        for frame in pcm1.chunks(320) {
            stream.send_audio(frame).await.expect("send");
        }
        stream.end_utterance().await.expect("end");
        // A false start, discarded: it moves stream time but gives nothing.
        stream.send_audio(&pcm4[..16_000]).await.expect("send");
        stream.discard_utterance().await.expect("discard");
        for frame in pcm4.chunks(320) {
            stream.send_audio(frame).await.expect("send");
        }
        stream.end_utterance().await.expect("end");
        // No audio since the last Final: an empty Final.
        stream.end_utterance().await.expect("end");

        let ms = |n: usize| n as u64 * 1000 / 16_000;
        let Some(Ok(SttEvent::Final(first))) = next(&mut stream, 30).await else {
            panic!("first Final")
        };
        assert!(wer(ref1, &first.text) <= 0.10, "{first:?}");
        assert_eq!((first.start_ms, first.end_ms), (0, ms(pcm1.len())));
        let Some(Ok(SttEvent::Final(second))) = next(&mut stream, 30).await else {
            panic!("second Final")
        };
        assert!(wer(ref4, &second.text) <= 0.10, "{second:?}");
        let start = ms(pcm1.len() + 16_000);
        assert_eq!(
            (second.start_ms, second.end_ms),
            (start, ms(pcm1.len() + 16_000 + pcm4.len()))
        );
        let Some(Ok(SttEvent::Final(third))) = next(&mut stream, 30).await else {
            panic!("third Final")
        };
        assert_eq!(third.text, "");
        assert_eq!(third.start_ms, third.end_ms);
        assert!(next(&mut stream, 1).await.is_none(), "no more events");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_utterance_is_transcribed_in_pieces_as_it_is_said_and_gives_one_final() {
        let files = librivox();
        let mut pcm = Vec::new();
        let mut reference = String::new();
        for (_, text, audio) in &files[1..4] {
            pcm.extend_from_slice(audio);
            reference = format!("{reference} {text}");
        }
        let mut stream = MoonshineStream::new(model());
        for frame in pcm.chunks(320) {
            stream.send_audio(frame).await.expect("send");
        }
        let secs = pcm.len() / 16_000;
        assert!(stream.pieces >= secs / 6, "{} pieces of {secs} s cut while it was said", stream.pieces);
        assert!(stream.buffer.len() <= PIECE_MAX_SAMPLES, "at most one piece left at the end");
        stream.end_utterance().await.expect("end");
        let mut stream: Box<dyn SttStream> = Box::new(stream);
        let Some(Ok(SttEvent::Final(fin))) = next(&mut stream, 60).await else { panic!("one Final") };
        let e = wer(&reference, &fin.text);
        assert!(e <= 0.12, "WER {:.0} % over the pieces: {fin:?}", e * 100.0);
        assert_eq!((fin.start_ms, fin.end_ms), (0, pcm.len() as u64 * 1000 / 16_000));
        assert!(next(&mut stream, 1).await.is_none(), "one Final for the utterance");
    }

    /// Sentences said at the pace the drafts keep up with: the last
    /// decoding starts from what the drafts agreed on, and the transcripts
    /// are as accurate as one pass over the whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drafts_while_the_caller_speaks_spare_the_last_decoding_and_keep_the_words() {
        // A model of its own: drafts give way while other tests use the shared one.
        let _runtime = model();
        let model = Moonshine::load_from(&ModelPaths::in_dir(&ModelPaths::default_dir())).expect("loads");
        for (id, reference, pcm) in librivox() {
            let mut stream = MoonshineStream::new(model.clone());
            for (i, frame) in pcm.chunks(320).enumerate() {
                stream.send_audio(frame).await.expect("send");
                if i % 50 == 49 {
                    while stream.drafting.load(Ordering::Acquire) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            stream.end_utterance().await.expect("end");
            let forced = stream.forced.clone();
            let mut stream: Box<dyn SttStream> = Box::new(stream);
            let Some(Ok(SttEvent::Final(fin))) = next(&mut stream, 30).await else { panic!("{id}: Final") };
            let e = wer(&reference, &fin.text);
            assert!(e <= 0.10, "{id}: WER {e:.3} «{}»", fin.text);
            let (forced, secs) = (forced.load(Ordering::Relaxed), pcm.len() / 16_000);
            println!("{id}: {secs} s, {forced} tokens settled by drafts, WER {:.1} %", e * 100.0);
            if secs >= 4 {
                assert!(forced >= 3, "{id}: the drafts settled {forced} tokens of {secs} s");
            }
        }
    }

    #[tokio::test]
    async fn digital_silence_is_cut_and_gives_an_empty_final() {
        let mut stream = MoonshineStt { model: model() }.open().await.expect("opens");
        let frame = [0i16; 320];
        for _ in 0..(31 * 50) {
            stream.send_audio(&frame).await.expect("send");
        }
        stream.end_utterance().await.expect("end");
        let Some(Ok(SttEvent::Final(fin))) = next(&mut stream, 10).await else { panic!("Final") };
        assert_eq!((fin.text.as_str(), fin.start_ms, fin.end_ms), ("", 0, 31_000));
        assert!(next(&mut stream, 1).await.is_none(), "no more events");
    }

    #[test]
    fn pieces_are_cut_in_the_first_gap_after_two_seconds() {
        // 10 ms levels: loud speech with a 100 ms gap at 1.0 s (too early),
        // one of 50 ms at 2.3 s (too short: a stop consonant) and one of
        // 100 ms at 2.6 s.
        let mut levels = vec![3000.0f32; 300];
        for i in (100..110).chain(230..235).chain(260..270) {
            levels[i] = 100.0;
        }
        assert_eq!(piece_cut(&levels[..250]), None, "no gap yet");
        assert_eq!(piece_cut(&levels[..275]), None, "the newest 100 ms are not searched");
        assert_eq!(piece_cut(&levels), Some(263), "the middle of the first 80 ms of the gap");
        // No gap at all: cut in the quietest 80 ms once 8 s are there.
        let mut steady: Vec<f32> = (0..799).map(|i| 2000.0 + (i % 7) as f32 * 100.0).collect();
        for l in &mut steady[600..608] {
            *l = 1500.0;
        }
        assert_eq!(piece_cut(&steady), None);
        steady.push(2000.0);
        assert_eq!(piece_cut(&steady), Some(604));
    }

    #[test]
    fn piece_texts_join_into_one_sentence() {
        let p = |v: &[&str]| join_pieces(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["I would like to book.", "A cleaning next Tuesday."]), "I would like to book a cleaning next Tuesday.");
        assert_eq!(p(&["Is that right?", "I think so."]), "Is that right? I think so.");
        assert_eq!(p(&["", "Hello.", " "]), "Hello.");
        assert_eq!(p(&["My name is.", "NASA John."]), "My name is NASA John.");
    }
}
