//! Piper VITS text-to-speech (`en_US-joe-medium`, 22,050 Hz) with phonemes
//! from espeak-ng (IPA, en-us) mapped through the voice's `phoneme_id_map`.
//!
//! This module owns the voice: loading the ONNX model and its `.onnx.json`,
//! turning text into sentences (`text`), sentences into phoneme ids
//! (`phonemes`, Piper's rules: clause punctuation kept as pause symbols,
//! `^ _ p1 _ … pn _ $`), running the model once per sentence, and streaming
//! one PCM16 chunk per sentence through [`TtsProvider`].
//!
//! Source followed: Piper (`OHF-Voice/piper1-gpl`, `voice.py`,
//! `phonemize_espeak.py`, `phoneme_ids.py`). Model inputs: `input` i64
//! `[1, n]` phoneme ids, `input_lengths` i64 `[1]`, `scales` f32
//! `[noise_scale, length_scale, noise_w]` from the config's `inference`, and
//! `sid` i64 `[1]` only for multi-speaker voices (speaker 0). Output: f32
//! audio `[1, 1, samples]`, nominally in `[-1, 1]`; each sentence is peak
//! normalized (as Piper does) to 95 % of full scale and clipped to PCM16.
//!
//! Invariants: no input text panics; text with nothing speakable (only
//! punctuation, emoji, whitespace) gives empty audio; characters the voice
//! does not know are skipped and counted in a debug log. espeak-ng (Debian
//! package `espeak-ng`) must be on `PATH`.

mod phonemes;
mod text;

use crate::providers::{ProviderError, TtsAudio, TtsProvider};
use async_trait::async_trait;
use ort::session::Session;
use ort::value::Tensor;
use phonemes::{Espeak, PhonemeIdMap};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Why loading the voice or synthesizing failed. Crosses the provider
/// boundary as [`ProviderError::Fatal`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PiperError {
    /// A model or config file is missing or unreadable.
    #[error("{path}: {reason} (run `skald models fetch`)")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The `.onnx.json` is malformed or describes an unsupported voice.
    #[error("voice config: {0}")]
    Config(String),
    /// espeak-ng is missing or failed.
    #[error("espeak-ng: {0}")]
    Espeak(String),
    /// ONNX Runtime failed (not initialized, bad model, run error).
    #[error("onnx: {0}")]
    Onnx(String),
}

impl From<PiperError> for ProviderError {
    fn from(e: PiperError) -> ProviderError {
        ProviderError::Fatal(format!("piper: {e}"))
    }
}

/// The loaded voice (shared; `Send + Sync`). One inference runs at a time
/// (the session is behind a mutex); phonemization runs outside the lock.
pub struct Piper {
    /// The VITS model; `Session::run` needs `&mut`.
    session: Mutex<Session>,
    /// Name of the audio output.
    output: String,
    /// True if the model takes a speaker id (`sid`).
    multi_speaker: bool,
    /// Output rate, Hz.
    sample_rate: u32,
    /// `[noise_scale, length_scale, noise_w]`.
    scales: [f32; 3],
    /// Phoneme → ids.
    ids: PhonemeIdMap,
    /// The phonemizer.
    espeak: Espeak,
}

/// [`TtsProvider`] over [`Piper`]: splits text into sentences and streams
/// one chunk per sentence as soon as it is synthesized.
pub struct PiperTts {
    /// The voice.
    pub voice: Arc<Piper>,
}

/// The parts of `<voice>.onnx.json` that synthesis needs.
#[derive(serde::Deserialize)]
struct VoiceConfig {
    /// `{"sample_rate": 22050, …}`.
    audio: AudioConfig,
    /// `{"voice": "en-us"}`.
    espeak: EspeakConfig,
    /// Default synthesis parameters.
    inference: InferenceConfig,
    /// `"espeak"` for espeak voices; absent in old configs.
    #[serde(default)]
    phoneme_type: Option<String>,
    /// Phoneme (one codepoint) → ids.
    phoneme_id_map: HashMap<String, Vec<i64>>,
    /// Number of speakers (1 for single-speaker voices).
    #[serde(default)]
    num_speakers: u32,
}

/// `audio` of the voice config.
#[derive(serde::Deserialize)]
struct AudioConfig {
    /// Hz.
    sample_rate: u32,
}

/// `espeak` of the voice config.
#[derive(serde::Deserialize)]
struct EspeakConfig {
    /// espeak-ng voice name.
    voice: String,
}

/// `inference` of the voice config.
#[derive(serde::Deserialize)]
struct InferenceConfig {
    /// Noise added to the prior (0.667).
    noise_scale: f32,
    /// Speaking rate; larger is slower (1.0).
    length_scale: f32,
    /// Noise of the duration predictor (0.8).
    noise_w: f32,
}

/// Output peak after normalization, as a fraction of full scale. Below 1 so
/// resampling overshoot downstream does not clip.
const PEAK: f32 = 0.95;
/// Streamed sentences buffered ahead of the consumer.
const CHANNEL_CAPACITY: usize = 4;

impl Piper {
    /// Loads the voice model and its `.onnx.json`; ONNX Runtime must be initialized.
    /// Checks that espeak-ng runs with the config's voice. Errors: `Fatal`
    /// naming the missing file, the config problem, or espeak-ng.
    pub fn load(model: &Path, config: &Path) -> Result<Arc<Piper>, ProviderError> {
        Ok(Arc::new(Self::load_inner(model, config)?))
    }

    /// Output rate, Hz (22,050 for this voice).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Synthesizes one sentence to mono PCM16 at [`Piper::sample_rate`].
    /// Blocking (CPU-bound): call from `spawn_blocking`. Text holding several
    /// sentences is synthesized one model run per sentence (as Piper does)
    /// and concatenated. Nothing speakable → empty. Errors: `Fatal`.
    pub fn synthesize_sentence(&self, text: &str) -> Result<Vec<i16>, ProviderError> {
        let mut pcm = Vec::new();
        for sentence in text::split_sentences(&text::normalize(text)) {
            pcm.extend(self.synthesize_normalized(&sentence)?);
        }
        Ok(pcm)
    }

    /// The phonemes Piper feeds the model for each sentence of `text` (IPA
    /// with stress and length marks, clause punctuation kept). Blocking (runs
    /// espeak-ng). Errors: `Fatal` if espeak-ng fails.
    pub fn phonemize(&self, text: &str) -> Result<Vec<String>, ProviderError> {
        let mut out = Vec::new();
        for sentence in text::split_sentences(&text::normalize(text)) {
            let p = self.espeak.sentence_phonemes(&sentence)?;
            if !p.is_empty() {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Model input ids for a phoneme string: `^ _ (p _)* $` through the
    /// voice's `phoneme_id_map`; codepoints it lacks are skipped.
    pub fn phoneme_ids(&self, phonemes: &str) -> Vec<i64> {
        self.ids.ids(phonemes).0
    }

    /// Loads everything; errors as [`PiperError`].
    fn load_inner(model: &Path, config: &Path) -> Result<Piper, PiperError> {
        let file_err = |path: &Path, reason: String| PiperError::File { path: path.display().to_string(), reason };
        let raw = std::fs::read_to_string(config).map_err(|e| file_err(config, e.to_string()))?;
        let cfg: VoiceConfig = serde_json::from_str(&raw).map_err(|e| PiperError::Config(e.to_string()))?;
        if let Some(kind) = cfg.phoneme_type.as_deref().filter(|k| *k != "espeak") {
            return Err(PiperError::Config(format!("phoneme_type {kind:?} is not supported (only espeak)")));
        }
        if !(8000..=96_000).contains(&cfg.audio.sample_rate) {
            return Err(PiperError::Config(format!("sample_rate {} out of range", cfg.audio.sample_rate)));
        }
        let ids = PhonemeIdMap::new(&cfg.phoneme_id_map)?;
        let espeak = Espeak::new(&cfg.espeak.voice);
        espeak.check()?;

        if !model.is_file() {
            return Err(file_err(model, "file not found".into()));
        }
        let env = crate::providers::local::onnx::environment()
            .ok_or_else(|| PiperError::Onnx("ONNX Runtime is not initialized".into()))?;
        let session = Session::builder(env)
            .map_err(|e| PiperError::Onnx(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| file_err(model, e.to_string()))?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for required in ["input", "input_lengths", "scales"] {
            if !inputs.contains(&required) {
                return Err(PiperError::Config(format!("model has no input {required:?} (inputs: {inputs:?})")));
            }
        }
        let multi_speaker = inputs.contains(&"sid");
        if cfg.num_speakers > 1 && !multi_speaker {
            return Err(PiperError::Config("multi-speaker config but the model has no `sid` input".into()));
        }
        let output = session
            .outputs()
            .first()
            .map(|o| o.name().to_string())
            .ok_or_else(|| PiperError::Config("model has no output".into()))?;
        let i = &cfg.inference;
        Ok(Piper {
            session: Mutex::new(session),
            output,
            multi_speaker,
            sample_rate: cfg.audio.sample_rate,
            scales: [i.noise_scale, i.length_scale, i.noise_w],
            ids,
            espeak,
        })
    }

    /// One normalized sentence → PCM16 (empty if nothing speakable).
    fn synthesize_normalized(&self, sentence: &str) -> Result<Vec<i16>, PiperError> {
        if !text::is_speakable(sentence) {
            return Ok(Vec::new());
        }
        let phonemes = self.espeak.sentence_phonemes(sentence)?;
        if !phonemes.chars().any(|c| !matches!(c, ' ' | ',' | '.' | '!' | '?' | ';' | ':')) {
            return Ok(Vec::new());
        }
        let (ids, skipped) = self.ids.ids(&phonemes);
        if skipped > 0 {
            tracing::debug!(skipped, %phonemes, "piper: phonemes missing from the voice's map were skipped");
        }
        let audio = self.infer(ids)?;
        Ok(to_pcm16(&audio))
    }

    /// Runs the model on phoneme ids; returns float audio.
    fn infer(&self, ids: Vec<i64>) -> Result<Vec<f32>, PiperError> {
        let onnx = |e: ort::Error| PiperError::Onnx(e.to_string());
        let n = ids.len();
        let input = Tensor::from_array(([1usize, n], ids)).map_err(onnx)?;
        let lengths = Tensor::from_array(([1usize], vec![n as i64])).map_err(onnx)?;
        let scales = Tensor::from_array(([3usize], self.scales.to_vec())).map_err(onnx)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = if self.multi_speaker {
            let sid = Tensor::from_array(([1usize], vec![0i64])).map_err(onnx)?;
            session.run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales, "sid" => sid])
        } else {
            session.run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales])
        }
        .map_err(onnx)?;
        let audio = outputs
            .get(&self.output)
            .ok_or_else(|| PiperError::Onnx(format!("no output {:?}", self.output)))?
            .try_extract_tensor::<f32>()
            .map_err(onnx)?
            .1
            .to_vec();
        Ok(audio)
    }
}

#[async_trait]
impl TtsProvider for PiperTts {
    fn name(&self) -> &str {
        "piper"
    }

    /// Splits `text` into sentences and synthesizes them in order on one
    /// blocking thread, sending each sentence's audio as soon as it is done.
    /// Sentences with nothing speakable are skipped; if none is left the
    /// channel closes without a chunk. Dropping the receiver stops the work
    /// before the next sentence. A failure is sent as the last item (`Fatal`).
    async fn synthesize(&self, text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
        let sentences = text::split_sentences(&text::normalize(text));
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let voice = self.voice.clone();
        let rate = voice.sample_rate;
        tokio::task::spawn_blocking(move || stream_sentences(&sentences, rate, &tx, |s| voice.synthesize_normalized(s)));
        Ok(rx)
    }
}

/// Synthesizes `sentences` in order with `synth`, sending each non-empty
/// result on `tx` (blocking while the channel is full). Stops before the next
/// sentence once the receiver is gone, and after sending an error.
fn stream_sentences(
    sentences: &[String],
    sample_rate: u32,
    tx: &mpsc::Sender<Result<TtsAudio, ProviderError>>,
    mut synth: impl FnMut(&str) -> Result<Vec<i16>, PiperError>,
) {
    for sentence in sentences {
        if tx.is_closed() {
            return;
        }
        let item = match synth(sentence) {
            Ok(pcm) if pcm.is_empty() => continue,
            Ok(pcm) => Ok(TtsAudio { pcm, sample_rate }),
            Err(e) => Err(ProviderError::from(e)),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

/// Float audio → PCM16: peak normalized to [`PEAK`] of full scale (gain at
/// most 100x, as Piper limits it), clipped; NaN/∞ become 0.
fn to_pcm16(audio: &[f32]) -> Vec<i16> {
    let peak = audio.iter().filter(|x| x.is_finite()).fold(0f32, |m, x| m.max(x.abs()));
    let gain = PEAK * f32::from(i16::MAX) / peak.max(0.01);
    audio
        .iter()
        .map(|&x| if x.is_finite() { (x * gain).round().clamp(-32768.0, 32767.0) as i16 } else { 0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::local::models::ModelPaths;
    use crate::providers::local::onnx::init_runtime;
    use std::sync::OnceLock;

    /// The voice, loaded once for all tests.
    fn voice() -> Arc<Piper> {
        static VOICE: OnceLock<Arc<Piper>> = OnceLock::new();
        VOICE
            .get_or_init(|| {
                let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
                for f in [&paths.onnxruntime, &paths.piper_model, &paths.piper_config] {
                    assert!(f.is_file(), "model file missing: {} (run `skald models fetch`)", f.display());
                }
                init_runtime(&paths.onnxruntime).expect("ONNX Runtime");
                Piper::load(&paths.piper_model, &paths.piper_config).expect("piper voice loads")
            })
            .clone()
    }

    fn rms(pcm: &[i16]) -> f64 {
        if pcm.is_empty() {
            return 0.0;
        }
        (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
    }

    /// Longest run of 10 ms windows whose RMS is below `threshold`, in ms,
    /// ignoring the first and last 150 ms (leading/trailing silence).
    fn longest_quiet_ms(pcm: &[i16], rate: u32, threshold: f64) -> usize {
        let win = rate as usize / 100;
        let edge = 15;
        let windows: Vec<f64> = pcm.chunks(win).map(rms).collect();
        let inner = windows.get(edge..windows.len().saturating_sub(edge)).unwrap_or(&[]);
        let (mut best, mut run) = (0, 0);
        for w in inner {
            run = if *w < threshold { run + 1 } else { 0 };
            best = best.max(run);
        }
        best * 10
    }

    #[test]
    fn a_sentence_gives_plausible_speech() {
        let v = voice();
        assert_eq!(v.sample_rate(), 22_050);
        let pcm = v.synthesize_sentence("Hello, thank you for calling.").unwrap();
        let secs = pcm.len() as f64 / 22_050.0;
        assert!((1.0..4.0).contains(&secs), "{secs} s");
        assert!(rms(&pcm) > 1000.0, "rms {}", rms(&pcm));
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak <= (PEAK * 32767.0) as u16 + 1, "peak {peak}");
    }

    #[test]
    fn a_comma_adds_a_pause() {
        let v = voice();
        let with = v.synthesize_sentence("Yes, I can help you with that today.").unwrap();
        let without = v.synthesize_sentence("Yes I can help you with that today.").unwrap();
        assert!(with.len() > without.len() + 22_050 / 20, "with {} without {}", with.len(), without.len());
        let quiet_with = longest_quiet_ms(&with, 22_050, 300.0);
        let quiet_without = longest_quiet_ms(&without, 22_050, 300.0);
        assert!(quiet_with >= 80 && quiet_with > quiet_without, "quiet with {quiet_with} ms, without {quiet_without} ms");
    }

    #[test]
    fn nothing_speakable_gives_empty_audio() {
        let v = voice();
        for text in ["", "   ", "...", "?!", "\u{1F600}\u{1F44D}", "— -- —", "**", "\u{0}\u{7}"] {
            assert_eq!(v.synthesize_sentence(text).map(|p| p.len()), Ok(0), "{text:?}");
        }
    }

    #[test]
    fn odd_text_does_not_panic() {
        let v = voice();
        for text in ["x\u{0301}\u{0301}\u{0301}", "日本語のテキスト", "((((", "a\u{FFFF}b", "-- -- --"] {
            assert!(v.synthesize_sentence(text).is_ok(), "{text:?}");
        }
        let pcm = v.synthesize_sentence("It is 10:30 and you are caller 3.").unwrap();
        assert!(pcm.len() > 22_050, "digits are spoken: {} samples", pcm.len());
    }

    #[test]
    fn phonemize_and_ids_follow_piper() {
        let v = voice();
        assert_eq!(v.phonemize("Hello, world. Bye!").unwrap(), ["həlˈoʊ, wˈɜːld.", "bˈaɪ!"]);
        // `h` 20, `ə` 59, `,` 8, ` ` 3 in en_US-joe-medium.
        assert_eq!(v.phoneme_ids("hə, "), [1, 0, 20, 0, 59, 0, 8, 0, 3, 0, 2]);
    }

    #[test]
    fn missing_files_are_named() {
        voice();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.onnx.json");
        let Err(ProviderError::Fatal(msg)) = Piper::load(&dir.path().join("nope.onnx"), &missing) else {
            panic!("expected Fatal");
        };
        assert!(msg.contains("nope.onnx.json") && msg.contains("skald models fetch"), "{msg}");
    }

    #[test]
    fn pcm_conversion_normalizes_and_survives_nan() {
        assert_eq!(to_pcm16(&[0.5, -0.5, f32::NAN, f32::INFINITY]), [31129, -31129, 0, 0]);
        assert_eq!(to_pcm16(&[0.0; 3]), [0, 0, 0]);
        assert!(to_pcm16(&[]).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn provider_streams_one_chunk_per_sentence() {
        let tts = PiperTts { voice: voice() };
        assert_eq!(tts.name(), "piper");
        let mut rx = tts.synthesize("Hi there. \u{1F600} How can I help you today?").await.unwrap();
        let mut chunks = Vec::new();
        while let Some(chunk) = rx.recv().await {
            chunks.push(chunk.unwrap());
        }
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|c| c.sample_rate == 22_050 && rms(&c.pcm) > 1000.0));
        assert!(chunks[0].pcm.len() < chunks[1].pcm.len());

        let mut rx = tts.synthesize(" ... \u{1F600} ").await.unwrap();
        assert!(rx.recv().await.is_none(), "nothing speakable: channel closes empty");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_receiver_stops_synthesis() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let sentences: Vec<String> = (0..50).map(|i| format!("Sentence {i}.")).collect();
        let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
        let counter = calls.clone();
        let task = tokio::task::spawn_blocking(move || {
            stream_sentences(&sentences, 22_050, &tx, |_| {
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
                Ok(vec![1; 10])
            })
        });
        assert!(rx.recv().await.unwrap().is_ok());
        drop(rx);
        task.await.unwrap();
        let n = calls.load(Ordering::SeqCst);
        assert!(n <= CHANNEL_CAPACITY + 2, "{n} of 50 sentences synthesized after the receiver was dropped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_is_the_last_item() {
        let sentences: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::task::spawn_blocking(move || {
            stream_sentences(&sentences, 22_050, &tx, |s| match s {
                "a" => Ok(vec![1]),
                _ => Err(PiperError::Espeak("gone".into())),
            })
        });
        assert!(rx.recv().await.unwrap().is_ok());
        assert!(matches!(rx.recv().await, Some(Err(ProviderError::Fatal(_)))));
        assert!(rx.recv().await.is_none());
    }
}
