//! Piper TTS (`en_US-joe-medium`, 22,050 Hz) on ONNX Runtime.
//!
//! - `piper/sentence_3s`: one `synthesize_sentence` call on a sentence of
//!   about 3 s of audio (espeak-ng phonemization + one model run). The
//!   real-time factor (compute time / audio time) is printed once up front.
//! - `piper/phonemize_3s`: the espeak-ng part of that alone.
//! - `piper/first_audio`: time from `TtsProvider::synthesize` on a
//!   two-sentence text (first sentence short) to its first audio chunk; the
//!   rest is drained outside the measurement.
//!
//! Needs the models (`skald models fetch`) and espeak-ng. Run with
//! `cargo bench --bench tts`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use skald::providers::TtsProvider;
use skald::providers::local::models::ModelPaths;
use skald::providers::local::onnx::init_runtime;
use skald::providers::local::piper::{Piper, PiperTts};

/// About 3 s of speech.
const SENTENCE: &str = "Thank you for calling, your appointment is confirmed for Tuesday morning.";
/// A short first sentence, then a longer one.
const TWO_SENTENCES: &str = "Sure. Let me look up your account and check the balance for you.";

fn voice() -> Arc<Piper> {
    let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
    for f in [&paths.onnxruntime, &paths.piper_model, &paths.piper_config] {
        assert!(f.is_file(), "model file missing: {} (run `skald models fetch`)", f.display());
    }
    init_runtime(&paths.onnxruntime).expect("ONNX Runtime");
    Piper::load(&paths.piper_model, &paths.piper_config).expect("piper voice")
}

fn piper(c: &mut Criterion) {
    let voice = voice();
    // Warm up, then report the real-time factor of a few runs.
    let pcm = voice.synthesize_sentence(SENTENCE).expect("synthesis");
    let audio = pcm.len() as f64 / f64::from(voice.sample_rate());
    let runs = 5;
    let start = Instant::now();
    for _ in 0..runs {
        black_box(voice.synthesize_sentence(SENTENCE).expect("synthesis"));
    }
    let compute = start.elapsed().as_secs_f64() / f64::from(runs);
    eprintln!("piper: {audio:.2} s of audio in {:.0} ms: real-time factor {:.3}", compute * 1e3, compute / audio);

    let mut group = c.benchmark_group("piper");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("phonemize_3s", |b| b.iter(|| black_box(voice.phonemize(SENTENCE).expect("espeak-ng"))));
    group.bench_function("sentence_3s", |b| b.iter(|| black_box(voice.synthesize_sentence(SENTENCE).expect("synthesis"))));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let tts = PiperTts { voice: voice.clone() };
    group.bench_function("first_audio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let mut rx = tts.synthesize(TWO_SENTENCES).await.expect("synthesize");
                    let first = rx.recv().await.expect("a chunk").expect("audio");
                    total += start.elapsed();
                    black_box(first);
                    while rx.recv().await.is_some() {}
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, piper);
criterion_main!(benches);
