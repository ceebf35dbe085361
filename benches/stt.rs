//! Moonshine base-en speech recognition: real-time factor of
//! `Moonshine::transcribe` on a real ~5 s utterance (LibriVox, Debian
//! `pocketsphinx-testdata`), for the plain `.onnx` files and the `.ort` files
//! of the wheel when present, with one and two intra-op threads.
//!
//! Besides criterion's time per transcription, each variant prints the
//! encoder time, decoder time per token and the real-time factor
//! (processing time / audio time) of the median of a few runs. Needs the
//! models (`skald models fetch`). Run with
//! `cargo bench --bench stt -- --quick` (the time is spent inside ONNX
//! Runtime, so `--profile dev` measures the same and skips a release build).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use skald::providers::local::models::ModelPaths;
use skald::providers::local::moonshine::{Moonshine, TranscribeStats};
use skald::providers::local::onnx::init_runtime;

/// About 5.3 s of real speech, 16 kHz mono PCM16.
const UTTERANCE: &str =
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0890.wav";

fn utterance() -> Vec<i16> {
    let mut reader = hound::WavReader::open(UTTERANCE)
        .unwrap_or_else(|e| panic!("{UTTERANCE}: {e} (install pocketsphinx-testdata)"));
    reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect()
}

/// The variants to measure: (name, encoder, decoder, threads per session),
/// existing files only.
fn variants(paths: &ModelPaths) -> Vec<(&'static str, PathBuf, PathBuf, usize)> {
    let ort = |p: &Path| p.with_extension("ort");
    [
        (
            "onnx_1thread",
            paths.moonshine_encoder.clone(),
            paths.moonshine_decoder.clone(),
            1,
        ),
        (
            "onnx_2threads",
            paths.moonshine_encoder.clone(),
            paths.moonshine_decoder.clone(),
            2,
        ),
        (
            "ort_1thread",
            ort(&paths.moonshine_encoder),
            ort(&paths.moonshine_decoder),
            1,
        ),
    ]
    .into_iter()
    .filter(|(_, e, d, _)| e.is_file() && d.is_file())
    .collect()
}

/// Median (by total time) of `runs` instrumented transcriptions.
fn median_stats(model: &Moonshine, pcm: &[i16], runs: usize) -> (String, TranscribeStats) {
    let mut all: Vec<(String, TranscribeStats)> = (0..runs)
        .map(|_| model.transcribe_with_stats(pcm).expect("transcribes"))
        .collect();
    all.sort_by_key(|(_, s)| s.encoder + s.decoder);
    all.swap_remove(runs / 2)
}

fn transcribe(c: &mut Criterion) {
    let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
    init_runtime(&paths.onnxruntime).expect("ONNX Runtime (run `skald models fetch`)");
    let pcm = utterance();
    let mut group = c.benchmark_group("moonshine");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let variants = variants(&paths);
    assert!(
        !variants.is_empty(),
        "no Moonshine model files in {} (run `skald models fetch`)",
        paths.dir.display()
    );
    for (name, encoder, decoder, threads) in variants {
        let model: Arc<Moonshine> =
            Moonshine::load_with_threads(&encoder, &decoder, &paths.moonshine_tokenizer, threads)
                .unwrap_or_else(|e| panic!("{e}"));
        let (text, s) = median_stats(&model, &pcm, 5);
        eprintln!(
            "moonshine/{name}: {:.2} s audio, encoder {:.1} ms, decoder {:.1} ms/token ({} tokens), RTF {:.3}  «{text}»",
            s.audio_ms as f64 / 1000.0,
            s.encoder.as_secs_f64() * 1000.0,
            s.per_token().as_secs_f64() * 1000.0,
            s.decoder_steps,
            s.rtf(),
        );
        group.bench_function(format!("transcribe_5s_{name}"), |b| {
            b.iter(|| {
                model
                    .transcribe(std::hint::black_box(&pcm))
                    .expect("transcribes")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, transcribe);
criterion_main!(benches);
