//! The media path of one call for one 20 ms frame, as the call actor runs it
//! (DESIGN "Budgets": ≥ 400 concurrent calls in real time on 2 cores with
//! VAD, ≥ 2000 without). Providers are stand-ins (instant STT/TTS), so this
//! measures what skald itself spends per call:
//!
//! - `without_vad`: µ-law decode → 8 → 16 kHz → 16 → 8 kHz → µ-law encode;
//! - `with_vad`: the same plus Silero VAD (streamed, one call's state) and
//!   the turn detector.
//!
//! One element is one call-frame (20 ms of one call): `1 / time per element
//! × 20 ms` is the number of calls one core keeps in real time.
//! `conversations_1s_of_audio/N_calls_2_threads` runs N conversations at once
//! on two threads: they are held in real time while it takes under 1 s. RTP and the
//! SIP/socket work are measured by `make bench-load` with sipp.
//! Needs the models for `with_vad` (`skald models fetch`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skald::pipeline::turn::{TurnConfig, TurnDetector};
use skald::pipeline::vad::silero::{SileroVad, WINDOW};
use skald::providers::local::{models::ModelPaths, onnx::init_runtime};
use skald::rtp::codec::{g711::Law, resample::Resampler};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

const SPEECH: &str = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav";

/// The speech fixture as 20 ms µ-law frames (8 kHz).
fn frames() -> Vec<Vec<u8>> {
    let (pcm, rate) = skald::pipeline::wav::read_wav_mono(Path::new(SPEECH)).expect("pocketsphinx-testdata");
    let pcm8 = skald::rtp::codec::resample::resample_all(&pcm, rate, 8000).unwrap();
    pcm8.chunks_exact(160)
        .map(|c| {
            let mut out = Vec::new();
            Law::Mu.encode(c, &mut out);
            out
        })
        .collect()
}

/// One call's media state.
struct Call {
    up: Resampler,
    down: Resampler,
    pcm8: Vec<i16>,
    pcm16: Vec<i16>,
    back8: Vec<i16>,
    out: Vec<u8>,
}

impl Call {
    fn new() -> Call {
        Call {
            up: Resampler::new(8000, 16000, 160).unwrap(),
            down: Resampler::new(16000, 8000, 320).unwrap(),
            pcm8: Vec::with_capacity(160),
            pcm16: Vec::with_capacity(320),
            back8: Vec::with_capacity(160),
            out: Vec::with_capacity(160),
        }
    }

    /// Receive path and an echo of it on the send path; returns the 16 kHz frame.
    fn frame(&mut self, ulaw: &[u8]) -> &[i16] {
        self.pcm8.clear();
        Law::Mu.decode(ulaw, &mut self.pcm8);
        self.pcm16.clear();
        self.up.process(&self.pcm8, &mut self.pcm16);
        self.back8.clear();
        self.down.process(&self.pcm16, &mut self.back8);
        self.out.clear();
        Law::Mu.encode(&self.back8, &mut self.out);
        &self.pcm16
    }
}

fn pipeline(c: &mut Criterion) {
    let frames = frames();
    let mut group = c.benchmark_group("call_frame");
    group.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));

    group.bench_function("without_vad", |b| {
        let mut call = Call::new();
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % frames.len();
            black_box(call.frame(&frames[k]).len());
        });
    });

    let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
    init_runtime(&paths.onnxruntime).unwrap_or_else(|e| panic!("{e}"));
    let vad = SileroVad::load(&paths.silero_vad).unwrap_or_else(|e| panic!("{e}"));
    group.bench_function("with_vad", |b| {
        let mut call = Call::new();
        let mut stream = vad.stream();
        let mut turn = TurnDetector::new(TurnConfig::default());
        let window = Duration::from_millis((WINDOW * 1000 / 16000) as u64);
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % frames.len();
            let pcm16 = call.frame(&frames[k]).to_vec();
            for p in stream.push(&pcm16).unwrap() {
                black_box(turn.push(p, window));
            }
        });
    });
    group.finish();

    // N conversations held at once: one second of audio (50 frames) of N
    // calls, split over 2 threads (this machine's cores), each call with its
    // own VAD stream on the one shared Silero session and instant stand-in
    // STT/TTS. Real time is held while one iteration takes < 1 s.
    let mut group = c.benchmark_group("conversations_1s_of_audio");
    group.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(1));
    for n in [100usize, 200, 400] {
        group.bench_function(format!("{n}_calls_2_threads"), |b| {
            let window = Duration::from_millis((WINDOW * 1000 / 16000) as u64);
            let mut calls: Vec<(Call, skald::pipeline::vad::silero::VadStream, TurnDetector)> =
                (0..n).map(|_| (Call::new(), vad.stream(), TurnDetector::new(TurnConfig::default()))).collect();
            b.iter(|| {
                let (left, right) = calls.split_at_mut(n / 2);
                std::thread::scope(|scope| {
                    for half in [left, right] {
                        let frames = &frames;
                        scope.spawn(move || {
                            for k in 0..50 {
                                for (i, (call, stream, turn)) in half.iter_mut().enumerate() {
                                    let pcm16 = call.frame(&frames[(i * 7 + k) % frames.len()]).to_vec();
                                    for p in stream.push(&pcm16).unwrap() {
                                        black_box(turn.push(p, window));
                                    }
                                }
                            }
                        });
                    }
                });
            });
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
