//! The end-of-turn model on real speech (LibriVox recordings of Debian
//! `pocketsphinx-testdata`, 16 kHz), and its Whisper features against
//! pipecat's own numpy implementation run for real under Python.
//!
//! Needs the models (`skald models fetch`) and the reference
//! (`make smart-turn-reference`, i.e. `scripts/smart-turn-reference.sh`:
//! `_whisper_features.py` from the pinned `pipecat-ai` wheel and a pinned
//! numpy, in `target/smart-turn-reference`); `make test` installs both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use skald::providers::local::models::ModelPaths;
use skald::providers::local::onnx::init_runtime;
use skald::providers::local::smart_turn::{SmartTurn, SmartTurnError, WINDOW_SAMPLES, model_input};
use skald::providers::local::whisper_features::{N_FRAMES, N_MELS, REFERENCE_TOLERANCE, log_mel};
use skald::rtp::codec::{g711::Law, resample::resample_all};

const LIBRIVOX: &str = "/usr/share/pocketsphinx/test/data/librivox";

/// A recording, or its first `cut` samples.
struct Clip {
    /// What it is, for messages.
    name: &'static str,
    /// PCM16 at 16 kHz.
    pcm: Vec<i16>,
}

fn speech(id: &str) -> Vec<i16> {
    let path = format!("{LIBRIVOX}/sense_and_sensibility_01_austen_64kb-{id}.wav");
    let (pcm, rate) = skald::pipeline::wav::read_wav_mono(Path::new(&path))
        .unwrap_or_else(|e| panic!("{path} (Debian pocketsphinx-testdata): {e}"));
    assert_eq!(rate, 16_000);
    pcm
}

/// Complete sentences, each cut at the end of its file.
fn complete() -> Vec<Clip> {
    let mut long = speech("0880");
    long.extend(speech("0870"));
    vec![
        // "and mister john dashwood had then leisure to consider how much
        // there might be prudently in his power to do for them"
        Clip { name: "0870 (whole sentence)", pcm: speech("0870") },
        // "unless to be rather cold hearted and rather selfish is to be ill disposed"
        Clip { name: "0890 (whole sentence)", pcm: speech("0890") },
        // "had he married a more a amiable woman he might have been made
        // still more respectable than he was"
        Clip { name: "0920 (whole sentence)", pcm: speech("0920") },
        // 10.1 s: only the last 8 s reach the model.
        Clip { name: "0880 + 0870 (10.1 s)", pcm: long },
    ]
}

/// The same recordings cut inside a sentence, at a dip in the speech energy
/// between two words (found on 20 ms RMS frames: below −25 dB of the
/// recording's peak for 40–80 ms). Each P stays low for cuts ±40 ms around
/// these points (checked with the Python reference).
fn mid_sentence() -> Vec<Clip> {
    let mut long = speech("0880");
    long.extend(&speech("0870")[..68_160]);
    vec![
        Clip { name: "0870 cut at 4.26 s", pcm: speech("0870")[..68_160].to_vec() },
        Clip { name: "0890 cut at 3.96 s", pcm: speech("0890")[..63_360].to_vec() },
        Clip { name: "0930 cut at 1.16 s", pcm: speech("0930")[..18_560].to_vec() },
        Clip { name: "0880 + 0870 cut at 4.26 s", pcm: long },
    ]
}

/// P(complete) of every clip above as pipecat's `LocalSmartTurnAnalyzerV3`
/// computes it (`_predict_endpoint` on the clip / 32768, the bundled model
/// on `onnxruntime==1.31.1` from PyPI, one thread), in the order of
/// `complete()` then `mid_sentence()`.
const PIPECAT_P: [f32; 8] = [0.985435, 0.942486, 0.984858, 0.979366, 0.006422, 0.018377, 0.011993, 0.008120];

fn model() -> Arc<SmartTurn> {
    static MODEL: OnceLock<Arc<SmartTurn>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
            init_runtime(&paths.onnxruntime).unwrap_or_else(|e| panic!("{e}"));
            SmartTurn::load(&paths.smart_turn).unwrap_or_else(|e| panic!("{e}"))
        })
        .clone()
}

/// Runs pipecat's `compute_whisper_log_mel_features(x, do_normalize=True)`
/// on each input (each `WINDOW_SAMPLES` long) in the reference virtualenv;
/// returns one `[80, 800]` matrix per input.
fn reference_features(inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/smart-turn-reference");
    let python = dir.join("venv/bin/python");
    assert!(
        python.is_file() && dir.join("_whisper_features.py").is_file(),
        "the numpy reference is not installed in {}: run `make smart-turn-reference` \
         (scripts/smart-turn-reference.sh)",
        dir.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let (input, output) = (tmp.path().join("in.f32"), tmp.path().join("out.f32"));
    let bytes: Vec<u8> = inputs.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input, bytes).unwrap();
    let script = r#"
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from _whisper_features import compute_whisper_log_mel_features
x = np.fromfile(sys.argv[2], dtype="<f4").reshape(-1, int(sys.argv[4]))
out = np.stack([compute_whisper_log_mel_features(a, do_normalize=True) for a in x])
out.astype("<f4").tofile(sys.argv[3])
"#;
    let status = Command::new(&python)
        .args(["-c", script])
        .arg(&dir)
        .arg(&input)
        .arg(&output)
        .arg(WINDOW_SAMPLES.to_string())
        .status()
        .expect("run the reference python");
    assert!(status.success(), "reference features failed: {status}");
    let raw = std::fs::read(&output).unwrap();
    let values: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(values.len(), inputs.len() * N_MELS * N_FRAMES);
    values.chunks(N_MELS * N_FRAMES).map(<[f32]>::to_vec).collect()
}

/// Every value of the features of 8 real-speech inputs (whole sentences,
/// mid-sentence cuts, left padding, a 10 s input cut to its last 8 s) equals
/// the numpy reference within [`REFERENCE_TOLERANCE`] (1e-4 log-mel units;
/// measured 4.5e-6).
#[test]
fn features_match_pipecats_numpy_reference_on_real_speech() {
    let clips: Vec<Clip> = complete().into_iter().chain(mid_sentence()).collect();
    let inputs: Vec<Vec<f32>> = clips.iter().map(|c| model_input(&c.pcm)).collect();
    let reference = reference_features(&inputs);
    let mut worst = 0.0f32;
    for ((clip, input), want) in clips.iter().zip(&inputs).zip(&reference) {
        let got = log_mel(input);
        assert_eq!(got.len(), want.len());
        let (i, diff) =
            got.iter().zip(want).map(|(a, b)| (a - b).abs()).enumerate().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        eprintln!("{}: max |rust - numpy| = {diff:.2e} (mel {}, frame {})", clip.name, i / N_FRAMES, i % N_FRAMES);
        assert!(
            diff <= REFERENCE_TOLERANCE,
            "{}: mel {} frame {}: rust {} numpy {}",
            clip.name,
            i / N_FRAMES,
            i % N_FRAMES,
            got[i],
            want[i]
        );
        worst = worst.max(diff);
    }
    eprintln!("largest difference over {} values: {worst:.2e}", reference.len() * N_MELS * N_FRAMES);
}

/// The behaviour that matters: a finished sentence is a finished turn, the
/// same speech stopped at a pause between two words is not.
#[test]
fn complete_sentences_score_high_and_mid_sentence_pauses_low() {
    let model = model();
    for clip in complete() {
        let p = model.predict(&clip.pcm).unwrap();
        eprintln!("complete     {:<28} P = {p:.4}", clip.name);
        assert!(p > 0.9, "{}: P(complete) = {p}", clip.name);
    }
    for clip in mid_sentence() {
        let p = model.predict(&clip.pcm).unwrap();
        eprintln!("mid-sentence {:<28} P = {p:.4}", clip.name);
        assert!(p < 0.1, "{}: P(complete) = {p}", clip.name);
    }
}

/// Over the phone: the same clips through 8 kHz µ-law and back to 16 kHz
/// (skald's own codec and resampler, as a SIP caller reaches the model)
/// keep their verdicts.
#[test]
fn phone_band_keeps_the_verdicts() {
    let model = model();
    let phone = |pcm: &[i16]| {
        let pcm8 = resample_all(pcm, 16_000, 8_000).unwrap();
        let mut ulaw = Vec::new();
        Law::Mu.encode(&pcm8, &mut ulaw);
        let mut back = Vec::new();
        Law::Mu.decode(&ulaw, &mut back);
        resample_all(&back, 8_000, 16_000).unwrap()
    };
    for clip in complete() {
        let p = model.predict(&phone(&clip.pcm)).unwrap();
        eprintln!("phone, complete     {:<28} P = {p:.4}", clip.name);
        assert!(p > 0.9, "{} over the phone: P(complete) = {p}", clip.name);
    }
    for clip in mid_sentence() {
        let p = model.predict(&phone(&clip.pcm)).unwrap();
        eprintln!("phone, mid-sentence {:<28} P = {p:.4}", clip.name);
        assert!(p < 0.1, "{} over the phone: P(complete) = {p}", clip.name);
    }
}

/// Same numbers as pipecat's analyzer on the same audio.
#[test]
fn probabilities_match_pipecats_analyzer() {
    let model = model();
    let clips: Vec<Clip> = complete().into_iter().chain(mid_sentence()).collect();
    for (clip, want) in clips.iter().zip(PIPECAT_P) {
        let got = model.predict(&clip.pcm).unwrap();
        assert!((got - want).abs() < 1e-3, "{}: rust {got} vs pipecat {want}", clip.name);
    }
}

/// Decisions of several calls at once (more threads than sessions) give the
/// same answers as one at a time.
#[test]
fn concurrent_predictions_agree() {
    let model = model();
    let clips: Vec<Clip> = complete().into_iter().chain(mid_sentence()).collect();
    let sequential: Vec<f32> = clips.iter().map(|c| model.predict(&c.pcm).unwrap()).collect();
    let parallel: Vec<f32> = std::thread::scope(|s| {
        let handles: Vec<_> = clips.iter().map(|c| s.spawn(|| model.predict(&c.pcm).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((clip, a), b) in clips.iter().zip(&sequential).zip(&parallel) {
        assert!((a - b).abs() < 1e-5, "{}: {a} vs {b}", clip.name);
    }
}

#[test]
fn empty_audio_and_wrong_files_are_clear_errors() {
    let model = model();
    assert_eq!(model.predict(&[]), Err(SmartTurnError::NoAudio));

    let missing = Path::new("/nonexistent/models/smart-turn/smart-turn-v3.2-cpu.onnx");
    let Err(e) = SmartTurn::load(missing) else { panic!("loaded a missing file") };
    assert!(e.to_string().contains(&missing.display().to_string()), "{e}");
    assert!(e.to_string().contains("skald models fetch"), "{e}");

    // Another model in its place is refused, naming the file and its inputs.
    let silero = ModelPaths::in_dir(&ModelPaths::default_dir()).silero_vad;
    let Err(e) = SmartTurn::load(&silero) else { panic!("loaded Silero as smart-turn") };
    assert!(e.to_string().contains("silero_vad.onnx") && e.to_string().contains("inputs"), "{e}");
}
