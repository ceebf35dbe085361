//! Cost of one end-of-turn decision with the local smart-turn v3.2 model.
//!
//! `features`: the model input and the Whisper log-mel features of 8 s of
//! speech (what runs before the model). `decision`: the whole
//! `SmartTurn::predict` (features + one single-threaded inference), what a
//! call pays each time its caller pauses. `decision_2threads`: two calls
//! deciding at once (two sessions; one element = one decision).
//!
//! Needs the models (`skald models fetch`); run with
//! `cargo bench --bench turn_model`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skald::providers::local::models::ModelPaths;
use skald::providers::local::onnx::init_runtime;
use skald::providers::local::smart_turn::{SmartTurn, model_input};
use skald::providers::local::whisper_features::log_mel;

const SPEECH: &str = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav";

fn load() -> (Arc<SmartTurn>, Vec<i16>) {
    let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
    init_runtime(&paths.onnxruntime).unwrap_or_else(|e| panic!("{e}"));
    let model = SmartTurn::load(&paths.smart_turn).unwrap_or_else(|e| panic!("{e}"));
    let (pcm, rate) = skald::pipeline::wav::read_wav_mono(Path::new(SPEECH))
        .unwrap_or_else(|e| panic!("{SPEECH} (Debian pocketsphinx-testdata): {e}"));
    assert_eq!(rate, 16_000);
    (model, pcm)
}

fn turn_model(c: &mut Criterion) {
    let (model, pcm) = load();
    let mut group = c.benchmark_group("turn_model");
    group.sample_size(20).measurement_time(Duration::from_secs(6)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));

    group.bench_function("features", |b| b.iter(|| black_box(log_mel(&model_input(black_box(&pcm))))));
    group.bench_function("decision", |b| b.iter(|| black_box(model.predict(black_box(&pcm)).unwrap())));

    group.throughput(Throughput::Elements(2));
    group.bench_function("decision_2threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    let (model, pcm) = (&model, &pcm);
                    scope.spawn(move || {
                        for _ in 0..iters {
                            black_box(model.predict(pcm).unwrap());
                        }
                    });
                }
            });
            start.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, turn_model);
criterion_main!(benches);
