//! Answering-machine detection cost per 20 ms frame (320 samples at 16 kHz),
//! without the VAD (the call runs Silero already; see `benches/vad.rs`).
//!
//! * `speech`: real speech (LibriVox), so every block is loud and the
//!   Goertzel bank runs on every 10 ms hop (the worst case);
//! * `silence`: quiet frames skip the bank (the energy gate);
//! * `energy_vad`: speech with the built-in energy VAD instead of a probability.
//!
//! One element is one frame of one call: criterion's time per element is
//! the cost per call-frame, and `elements/s ÷ 50` is how many calls one core
//! keeps up with. Run with `cargo bench --bench amd -- --quick`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skald::pipeline::amd::{AmdConfig, AmdDetector, BeepConfig, BeepDetector};

const SPEECH: &str = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav";
const FRAME: usize = 320;

/// A detector that never finishes (no decision rule can fire), so every
/// iteration does the full per-frame work.
fn endless() -> AmdDetector {
    AmdDetector::new(AmdConfig {
        initial_silence_ms: u64::MAX,
        greeting_ms: u64::MAX,
        after_greeting_silence_ms: u64::MAX,
        total_analysis_ms: u64::MAX,
        ..AmdConfig::default()
    })
}

fn amd(c: &mut Criterion) {
    let (pcm, rate) = skald::pipeline::wav::read_wav_mono(Path::new(SPEECH))
        .unwrap_or_else(|e| panic!("{SPEECH} (Debian pocketsphinx-testdata): {e}"));
    assert_eq!(rate, 16_000);
    let frames: Vec<&[i16]> = pcm.chunks_exact(FRAME).collect();
    let quiet = vec![3i16; FRAME];

    let mut group = c.benchmark_group("amd");
    group.sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    group.bench_function("speech", |b| {
        let mut d = endless();
        let mut k = 0;
        b.iter(|| {
            k += 1;
            d.push(black_box(frames[k % frames.len()]), Some(0.9));
            black_box(d.poll_event());
        });
    });
    group.bench_function("silence", |b| {
        let mut d = endless();
        b.iter(|| {
            d.push(black_box(&quiet), Some(0.01));
            black_box(d.poll_event());
        });
    });
    group.bench_function("energy_vad", |b| {
        let mut d = endless();
        let mut k = 0;
        b.iter(|| {
            k += 1;
            d.push(black_box(frames[k % frames.len()]), None);
            black_box(d.poll_event());
        });
    });
    group.bench_function("beep_detector_only", |b| {
        let mut d = BeepDetector::new(BeepConfig::default());
        let mut k = 0;
        b.iter(|| {
            k += 1;
            d.push(black_box(frames[k % frames.len()]));
            black_box(d.poll_beep());
        });
    });
    group.finish();
}

criterion_group!(benches, amd);
criterion_main!(benches);
