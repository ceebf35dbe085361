//! Media hot paths: G.711 encode/decode and 8 k ↔ 16 k resampling.
//!
//! Throughput is in samples (`Throughput::Elements`): one 20 ms frame at
//! 8 kHz is 160 samples, one second 8000. Run with
//! `cargo bench --bench media -- --quick`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use skald::rtp::codec::g711::Law;
use skald::rtp::codec::resample::Resampler;

/// A speech-like test signal: two tones, PCM16.
fn signal(rate: u32, len: usize) -> Vec<i16> {
    (0..len)
        .map(|n| {
            let t = n as f64 / f64::from(rate);
            let x = 0.4 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 0.2 * (2.0 * std::f64::consts::PI * 1270.0 * t).sin();
            (x * 32767.0) as i16
        })
        .collect()
}

fn g711(c: &mut Criterion) {
    let mut group = c.benchmark_group("g711");
    for (name, len) in [("20ms", 160usize), ("1s", 8000)] {
        let pcm = signal(8000, len);
        group.throughput(Throughput::Elements(len as u64));
        for (law_name, law) in [("ulaw", Law::Mu), ("alaw", Law::A)] {
            let mut encoded = Vec::with_capacity(len);
            law.encode(&pcm, &mut encoded);
            group.bench_with_input(
                BenchmarkId::new(format!("{law_name}_encode"), name),
                &pcm,
                |b, pcm| {
                    let mut out = Vec::with_capacity(len);
                    b.iter(|| {
                        out.clear();
                        law.encode(black_box(pcm), &mut out);
                        black_box(&out);
                    });
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("{law_name}_decode"), name),
                &encoded,
                |b, bytes| {
                    let mut out = Vec::with_capacity(len);
                    b.iter(|| {
                        out.clear();
                        law.decode(black_box(bytes), &mut out);
                        black_box(&out);
                    });
                },
            );
        }
    }
    group.finish();
}

fn resample(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample_20ms");
    for (from, to) in [(8000u32, 16000u32), (16000, 8000)] {
        let chunk = from as usize / 50;
        let input = signal(from, chunk);
        let mut r = Resampler::new(from, to, chunk).expect("valid rates");
        group.throughput(Throughput::Elements(chunk as u64));
        group.bench_function(format!("{}k_to_{}k", from / 1000, to / 1000), |b| {
            let mut out = Vec::with_capacity(to as usize / 50);
            b.iter(|| {
                out.clear();
                r.process(black_box(&input), &mut out);
                black_box(&out);
            });
        });
    }
    group.finish();
}

/// One 20 ms frame through a Twilio Media Stream: inbound (JSON parse,
/// base64, µ-law decode, 8→16 kHz) and outbound (16→8 kHz, µ-law encode,
/// base64, JSON), as a stream call does per frame.
fn twilio_stream(c: &mut Criterion) {
    use base64::Engine;
    use skald::rtp::codec::frames::G711Frames;
    use skald::transports::twilio::media::{MediaStreamSession, StreamEvent};
    let start = r#"{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1","callSid":"CA1","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
    let payload = base64::engine::general_purpose::STANDARD.encode([0x55u8; 160]);
    let media = format!(
        r#"{{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{{"track":"inbound","chunk":"1","timestamp":"0","payload":"{payload}"}}}}"#
    );
    let agent = signal(16000, 320);
    let mut group = c.benchmark_group("twilio_stream_20ms");
    group.throughput(Throughput::Elements(1));
    group.bench_function("inbound_frame", |b| {
        let now = std::time::Instant::now();
        let mut s = MediaStreamSession::new();
        s.handle_text(start, now).expect("start");
        s.poll_event();
        let mut codec = G711Frames::new(skald::rtp::codec::g711::Law::Mu, 20);
        let mut pcm = Vec::with_capacity(320);
        b.iter(|| {
            s.handle_text(black_box(&media), now).expect("valid media");
            if let Some(StreamEvent::Audio(p)) = s.poll_event() {
                codec.decode(p.as_deref(), &mut pcm);
            }
            black_box(&pcm);
        });
    });
    group.bench_function("outbound_frame", |b| {
        let mut now = std::time::Instant::now();
        let mut s = MediaStreamSession::new();
        s.handle_text(start, now).expect("start");
        s.poll_event();
        let mut codec = G711Frames::new(skald::rtp::codec::g711::Law::Mu, 20);
        b.iter(|| {
            let mut frames = Vec::with_capacity(1);
            codec.encode(black_box(&agent), |f| frames.push(f));
            s.play(frames);
            now += std::time::Duration::from_millis(20);
            while let Some(t) = s.poll_transmit(now) {
                black_box(t);
            }
            s.pause(now);
            while let Some(t) = s.poll_transmit(now) {
                black_box(t);
            }
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = g711, resample, twilio_stream
}
criterion_main!(benches);
