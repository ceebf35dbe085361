//! Silero VAD inference cost: one window at a time vs. batched across calls.
//!
//! Throughput is in call-windows (`Throughput::Elements`): one element is one
//! 512-sample (32 ms) window of one call, so criterion's "time per element"
//! is the cost per call-window and `elements/s ÷ 31.25` is how many calls one
//! core keeps up with. `single_2threads` runs single-window pushes from two
//! threads at once on the one shared session (its `Mutex` serializes them).
//!
//! Needs the models (`skald models fetch`); run with
//! `cargo bench --bench vad -- --quick`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use skald::pipeline::vad::silero::{SileroVad, VadStream, WINDOW};
use skald::providers::local::models::ModelPaths;
use skald::providers::local::onnx::init_runtime;

const SPEECH: &str = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav";

fn load() -> (Arc<SileroVad>, Vec<i16>) {
    let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
    init_runtime(&paths.onnxruntime).unwrap_or_else(|e| panic!("{e}"));
    let vad = SileroVad::load(&paths.silero_vad).unwrap_or_else(|e| panic!("{e}"));
    let (pcm, rate) = skald::pipeline::wav::read_wav_mono(Path::new(SPEECH))
        .unwrap_or_else(|e| panic!("{SPEECH} (Debian pocketsphinx-testdata): {e}"));
    assert_eq!(rate, 16_000);
    (vad, pcm)
}

/// Window `k` of stream `s`: each stream reads the speech from its own offset.
fn window(pcm: &[i16], s: usize, k: usize) -> &[i16] {
    let windows = pcm.len() / WINDOW;
    let w = (s * 7 + k) % windows;
    &pcm[w * WINDOW..(w + 1) * WINDOW]
}

fn vad(c: &mut Criterion) {
    let (vad, pcm) = load();
    let mut group = c.benchmark_group("vad");
    group.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));

    group.throughput(Throughput::Elements(1));
    group.bench_function("single", |b| {
        let mut stream = vad.stream();
        let mut k = 0;
        b.iter(|| {
            k += 1;
            black_box(stream.push(window(&pcm, 0, k)).unwrap());
        });
    });

    group.throughput(Throughput::Elements(2));
    group.bench_function("single_2threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for t in 0..2 {
                    let (vad, pcm) = (&vad, &pcm);
                    scope.spawn(move || {
                        let mut stream = vad.stream();
                        for k in 0..iters as usize {
                            black_box(stream.push(window(pcm, t, k)).unwrap());
                        }
                    });
                }
            });
            start.elapsed()
        });
    });

    for n in [8usize, 32, 128] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("batch", n), &n, |b, &n| {
            let mut streams: Vec<VadStream> = (0..n).map(|_| vad.stream()).collect();
            let mut k = 0;
            b.iter(|| {
                k += 1;
                let mut items: Vec<(&mut VadStream, &[i16])> =
                    streams.iter_mut().enumerate().map(|(s, st)| (st, window(&pcm, s, k))).collect();
                black_box(vad.run_batch(&mut items).unwrap());
            });
        });
    }
    group.finish();
}

criterion_group!(benches, vad);
criterion_main!(benches);
