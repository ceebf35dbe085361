//! Whisper log-mel features, as the smart-turn end-of-turn model expects them.
//!
//! This module owns one pure function, [`log_mel`]: 8 s of 16 kHz audio →
//! an `[80, 800]` log-mel spectrogram. It is a port of
//! `pipecat/audio/turn/smart_turn/_whisper_features.py`
//! (`compute_whisper_log_mel_features(audio, do_normalize=True)`) in the PyPI
//! wheel `pipecat-ai==1.14.0` (BSD-2-Clause), which is itself a numpy copy of
//! Hugging Face `transformers.WhisperFeatureExtractor(chunk_length=8)`. Step by
//! step, as the reference does it:
//!
//! 1. The input is cut to its first [`N_SAMPLES`] samples or zero-padded at
//!    the end to that length (callers pass exactly 8 s: smart-turn pads on the
//!    left before, see [`crate::providers::local::smart_turn`]).
//! 2. Zero-mean unit-variance normalisation of the waveform, in `f32`:
//!    `x = (x - mean) / sqrt(var + 1e-7)` (the reference's `do_normalize`).
//! 3. Centred STFT in `f64`: reflect padding of `N_FFT / 2` = 200 samples on
//!    each side (numpy `mode="reflect"`, the edge sample not repeated),
//!    frames of [`N_FFT`] = 400 samples (25 ms) every [`HOP`] = 160 samples
//!    (10 ms), a periodic Hann window (`np.hanning(401)[:-1]`), real FFT
//!    (201 bins), power `|X|²`.
//! 4. Mel projection with the reference's filterbank: 80 triangular filters
//!    from 0 to 8000 Hz, equally spaced on the Slaney mel scale (linear below
//!    1 kHz, logarithmic above) and Slaney area-normalised
//!    (`2 / (f[m+2] - f[m])`); floored at `1e-10`, then `log10`.
//! 5. The last of the 801 frames is dropped (so [`N_FRAMES`] = 800 remain),
//!    then Whisper's normalisation: clamp to `max - 8` (the maximum over the
//!    800 frames kept), then `(x + 4) / 4`.
//!
//! The FFT is `rustfft` in `f64`, two real frames per complex transform
//! (frame `t` in the real part, `t + 1` in the imaginary part, separated by
//! conjugate symmetry), so 400 complex 400-point transforms per call. The
//! reference uses numpy's `rfft` in `f64`; the remaining differences are
//! rounding (summation order, `f32` mean/variance). Measured against the
//! reference run under Python with `numpy==2.4.6` on the LibriVox recordings
//! of Debian `pocketsphinx-testdata` (`tests/smart_turn.rs`, 8 inputs, 512 000
//! values): largest absolute difference 4.5e-6 in output units, most values
//! identical in `f32` (the tests allow [`REFERENCE_TOLERANCE`]).

use std::f64::consts::PI;
use std::sync::{Arc, LazyLock};

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// Sample rate the features are defined for, Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples of audio the features cover: 8 s at 16 kHz.
pub const N_SAMPLES: usize = 128_000;
/// Window and FFT length, samples (25 ms).
pub const N_FFT: usize = 400;
/// Hop between frames, samples (10 ms).
pub const HOP: usize = 160;
/// Mel bins (rows of the output).
pub const N_MELS: usize = 80;
/// Frames (columns of the output): 801 STFT frames minus the dropped last one.
pub const N_FRAMES: usize = 800;
/// Largest absolute difference from the Python reference the tests accept,
/// in output (normalised log10-mel) units. Measured: 4.5e-6.
pub const REFERENCE_TOLERANCE: f32 = 1e-4;

/// FFT bins of a real 400-point transform (0..=200, 0 to 8000 Hz by 40 Hz).
const N_BINS: usize = N_FFT / 2 + 1;
/// Floor before `log10` (the reference's `_MEL_FLOOR`).
const MEL_FLOOR: f64 = 1e-10;
/// Added to the variance before the square root (`_NORM_VARIANCE_EPS`).
const NORM_VARIANCE_EPS: f32 = 1e-7;
/// Reflect padding on each side of the waveform (`N_FFT / 2`).
const PAD: usize = N_FFT / 2;

/// Tables shared by every call (built on first use).
struct Tables {
    /// Periodic Hann window, [`N_FFT`] values.
    window: Vec<f64>,
    /// Per mel filter: the first FFT bin with a non-zero weight and the
    /// weights from there (the triangles are sparse; zeros add nothing).
    filters: Vec<(usize, Vec<f64>)>,
    /// The 400-point complex forward FFT.
    fft: Arc<dyn Fft<f64>>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let window = (0..N_FFT).map(|n| 0.5 - 0.5 * (2.0 * PI * n as f64 / N_FFT as f64).cos()).collect();
    let filters = mel_filterbank()
        .into_iter()
        .map(|row| {
            let first = row.iter().position(|&w| w != 0.0).unwrap_or(0);
            let last = row.iter().rposition(|&w| w != 0.0).map_or(first, |l| l + 1);
            (first, row[first..last].to_vec())
        })
        .collect();
    let fft = FftPlanner::new().plan_fft_forward(N_FFT);
    Tables { window, filters, fft }
});

/// Whisper log-mel features of `audio` (mono, 16 kHz, float samples, PCM16
/// divided by 32768 so in `[-1, 1)`): `[N_MELS, N_FRAMES]` = `[80, 800]`
/// row-major (`out[mel * 800 + frame]`; frame `t` is centred on sample
/// `160 t`), normalised log10 power: Whisper's `(max(x, top - 8) + 4) / 4`,
/// so every value lies within 2.0 below the largest one.
///
/// `audio` should be exactly [`N_SAMPLES`] long; like the reference, longer
/// input is cut to its first 8 s and shorter input is zero-padded at the end.
/// Any audio is accepted (all zeros gives a constant −1.5); non-finite
/// samples give non-finite features. Costs a few milliseconds.
pub fn log_mel(audio: &[f32]) -> Vec<f32> {
    let tables = &*TABLES;
    let padded = normalized_and_padded(audio);

    let mut log_spec = vec![0.0f64; N_MELS * N_FRAMES];
    let mut buf = vec![Complex::<f64>::default(); N_FFT];
    let mut scratch = vec![Complex::<f64>::default(); tables.fft.get_inplace_scratch_len()];
    let mut power = [[0.0f64; N_BINS]; 2];
    for t in (0..N_FRAMES).step_by(2) {
        // Frame t in the real part, frame t + 1 in the imaginary part.
        let (a, b) = (&padded[t * HOP..t * HOP + N_FFT], &padded[(t + 1) * HOP..(t + 1) * HOP + N_FFT]);
        for (n, z) in buf.iter_mut().enumerate() {
            *z = Complex::new(a[n] * tables.window[n], b[n] * tables.window[n]);
        }
        tables.fft.process_with_scratch(&mut buf, &mut scratch);
        for k in 0..N_BINS {
            let z = buf[k];
            let zc = buf[(N_FFT - k) % N_FFT].conj();
            // A = (Z + conj Z[N-k]) / 2, B = (Z - conj Z[N-k]) / 2i.
            let re = (z + zc) * 0.5;
            let im = (z - zc) * 0.5;
            power[0][k] = re.norm_sqr();
            power[1][k] = im.norm_sqr();
        }
        for (half, spectrum) in power.iter().enumerate() {
            for (m, (first, weights)) in tables.filters.iter().enumerate() {
                let mel: f64 = weights.iter().zip(&spectrum[*first..]).map(|(w, p)| w * p).sum();
                log_spec[m * N_FRAMES + t + half] = mel.max(MEL_FLOOR).log10();
            }
        }
    }

    let max = log_spec.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    log_spec.iter().map(|&v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32).collect()
}

/// Steps 1–3 up to the framing: cut or zero-pad to [`N_SAMPLES`], normalise
/// in `f32` as numpy does, then reflect-pad by [`PAD`] on both sides in `f64`.
/// Only the samples the first [`N_FRAMES`] frames read are needed, but the
/// whole padded signal is built (1 MB) for clarity.
fn normalized_and_padded(audio: &[f32]) -> Vec<f64> {
    let mut x = vec![0.0f32; N_SAMPLES];
    let n = audio.len().min(N_SAMPLES);
    x[..n].copy_from_slice(&audio[..n]);

    // numpy returns the mean and variance of a float32 array as float32
    // (accumulated pairwise); they are accumulated in f64 here and rounded.
    let mean64 = x.iter().map(|&v| f64::from(v)).sum::<f64>() / N_SAMPLES as f64;
    let var = (x.iter().map(|&v| (f64::from(v) - mean64).powi(2)).sum::<f64>() / N_SAMPLES as f64) as f32;
    let mean = mean64 as f32;
    let scale = (var + NORM_VARIANCE_EPS).sqrt();
    for v in &mut x {
        *v = (*v - mean) / scale;
    }

    let mut padded = Vec::with_capacity(N_SAMPLES + 2 * PAD);
    padded.extend((1..=PAD).rev().map(|i| f64::from(x[i])));
    padded.extend(x.iter().map(|&v| f64::from(v)));
    padded.extend((1..=PAD).map(|i| f64::from(x[N_SAMPLES - 1 - i])));
    padded
}

/// The reference's `_build_mel_filterbank(201, 80, 0.0, 8000.0, 16000)`,
/// transposed: 80 rows (mel filters) of 201 weights (FFT bins).
fn mel_filterbank() -> Vec<Vec<f64>> {
    let sr_half = f64::from(SAMPLE_RATE / 2);
    let mel_min = hertz_to_mel_slaney(0.0);
    let mel_max = hertz_to_mel_slaney(sr_half);
    // np.linspace(mel_min, mel_max, 82): i * step + start, last = stop.
    let points = N_MELS + 2;
    let step = (mel_max - mel_min) / (points - 1) as f64;
    let filter_freqs: Vec<f64> = (0..points)
        .map(|i| if i == points - 1 { mel_max } else { i as f64 * step + mel_min })
        .map(mel_to_hertz_slaney)
        .collect();
    // np.linspace(0, 8000, 201): exactly 40 Hz apart.
    let fft_step = sr_half / (N_BINS - 1) as f64;
    let fft_freqs: Vec<f64> = (0..N_BINS).map(|k| k as f64 * fft_step).collect();
    let diff: Vec<f64> = filter_freqs.windows(2).map(|w| w[1] - w[0]).collect();

    (0..N_MELS)
        .map(|m| {
            let enorm = 2.0 / (filter_freqs[m + 2] - filter_freqs[m]);
            fft_freqs
                .iter()
                .map(|&f| {
                    let down = -(filter_freqs[m] - f) / diff[m];
                    let up = (filter_freqs[m + 2] - f) / diff[m + 1];
                    0.0f64.max(down.min(up)) * enorm
                })
                .collect()
        })
        .collect()
}

/// Hertz → mel on the Slaney scale: linear (3 mel per 200 Hz) below 1 kHz,
/// logarithmic (27 mel per factor 6.4) above.
fn hertz_to_mel_slaney(freq: f64) -> f64 {
    if freq >= 1000.0 { 15.0 + (freq / 1000.0).ln() * (27.0 / 6.4f64.ln()) } else { 3.0 * freq / 200.0 }
}

/// Inverse of [`hertz_to_mel_slaney`].
fn mel_to_hertz_slaney(mel: f64) -> f64 {
    if mel >= 15.0 { 1000.0 * ((6.4f64.ln() / 27.0) * (mel - 15.0)).exp() } else { 200.0 * mel / 3.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward computation: one real frame per FFT.
    fn power_one_frame(padded: &[f64], t: usize) -> Vec<f64> {
        let tables = &*TABLES;
        let mut buf: Vec<Complex<f64>> =
            (0..N_FFT).map(|n| Complex::new(padded[t * HOP + n] * tables.window[n], 0.0)).collect();
        tables.fft.process(&mut buf);
        buf[..N_BINS].iter().map(|z| z.norm_sqr()).collect()
    }

    fn tone(freq: f64, amp: f32) -> Vec<f32> {
        (0..N_SAMPLES).map(|n| amp * (2.0 * PI * freq * n as f64 / f64::from(SAMPLE_RATE)).sin() as f32).collect()
    }

    #[test]
    fn shape_and_range() {
        let f = log_mel(&tone(440.0, 0.3));
        assert_eq!(f.len(), N_MELS * N_FRAMES);
        let max = f.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let min = f.iter().copied().fold(f32::INFINITY, f32::min);
        assert!(min >= max - 2.0 - 1e-6, "clamped to max - 8 in log10 units: {min} {max}");
        assert!(f.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn silence_is_constant_minus_one_and_a_half() {
        // All zeros: normalised stays 0, every mel value is the 1e-10 floor,
        // log10 = -10, (−10 + 4) / 4 = −1.5.
        let f = log_mel(&[]);
        assert_eq!(f.len(), N_MELS * N_FRAMES);
        assert!(f.iter().all(|&v| v == -1.5), "{:?}", &f[..4]);
    }

    /// A 1 kHz tone puts its energy in the mel bin whose centre is 1 kHz
    /// (Slaney: mel 15 = 1000 Hz, bin 15 / (45.245 / 81) ≈ 26.9 → filter 25 or 26).
    #[test]
    fn a_tone_lands_in_its_mel_bin() {
        let f = log_mel(&tone(1000.0, 0.5));
        let t = 400;
        let col: Vec<f32> = (0..N_MELS).map(|m| f[m * N_FRAMES + t]).collect();
        let best = col.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert!((25..=26).contains(&best), "peak in mel bin {best}: {col:?}");
    }

    #[test]
    fn two_frames_per_fft_equal_one_frame_per_fft() {
        let audio = tone(523.25, 0.2);
        let padded = normalized_and_padded(&audio);
        let tables = &*TABLES;
        let (t0, t1) = (100, 101);
        let mut buf: Vec<Complex<f64>> = (0..N_FFT)
            .map(|n| Complex::new(padded[t0 * HOP + n] * tables.window[n], padded[t1 * HOP + n] * tables.window[n]))
            .collect();
        tables.fft.process(&mut buf);
        let (a, b) = (power_one_frame(&padded, t0), power_one_frame(&padded, t1));
        let scale = a.iter().chain(&b).copied().fold(0.0, f64::max);
        for k in 0..N_BINS {
            let z = buf[k];
            let zc = buf[(N_FFT - k) % N_FFT].conj();
            let (pa, pb) = (((z + zc) * 0.5).norm_sqr(), ((z - zc) * 0.5).norm_sqr());
            assert!((pa - a[k]).abs() <= 1e-9 * scale, "bin {k}: {pa} vs {}", a[k]);
            assert!((pb - b[k]).abs() <= 1e-9 * scale, "bin {k}: {pb} vs {}", b[k]);
        }
    }

    #[test]
    fn reflect_padding_skips_the_edge_sample() {
        let audio: Vec<f32> = (0..N_SAMPLES).map(|i| (i % 1000) as f32 / 1000.0).collect();
        let p = normalized_and_padded(&audio);
        assert_eq!(p.len(), N_SAMPLES + 2 * PAD);
        // np.pad([x0, x1, x2, …], 200, "reflect") = [x200, …, x1, x0, x1, …]
        assert_eq!(p[PAD - 1], p[PAD + 1]);
        assert_eq!(p[0], p[2 * PAD]);
        let end = PAD + N_SAMPLES - 1;
        assert_eq!(p[end + 1], p[end - 1]);
        assert_eq!(p[end + PAD], p[end - PAD]);
    }

    #[test]
    fn filterbank_is_slaney() {
        let fb = mel_filterbank();
        assert_eq!((fb.len(), fb[0].len()), (N_MELS, N_BINS));
        assert!((hertz_to_mel_slaney(1000.0) - 15.0).abs() < 1e-12);
        assert!((mel_to_hertz_slaney(hertz_to_mel_slaney(6000.0)) - 6000.0).abs() < 1e-9);
        // Values of the reference's `_MEL_FILTERS[:, m]` (numpy 2.4.6):
        // (filter, first and last non-zero bin, sum of weights, first weight).
        let reference = [
            (0, 1, 1, 0.024862593984176087, 0.024862593984176087),
            (1, 1, 2, 0.024862593984176094, 0.0019908218880980706),
            (10, 10, 11, 0.0248625939841761, 0.019908218880980738),
            (40, 42, 44, 0.026664860534783265, 0.005411105098683169),
            (79, 186, 199, 0.024925339738858847, 0.00036674167978492585),
        ];
        for (m, first, last, sum, w0) in reference {
            let row = &fb[m];
            let nz: Vec<usize> = (0..N_BINS).filter(|&k| row[k] != 0.0).collect();
            assert_eq!((nz[0], nz[nz.len() - 1]), (first, last), "filter {m}");
            assert!((row.iter().sum::<f64>() - sum).abs() < 1e-15, "filter {m}");
            assert!((row[first] - w0).abs() < 1e-15, "filter {m}");
        }
        assert!(fb.iter().flatten().all(|&w| w >= 0.0));
    }

    #[test]
    fn short_input_is_padded_at_the_end_and_long_input_cut() {
        let t = tone(300.0, 0.4);
        let mut long = t.clone();
        long.extend(tone(2000.0, 0.9));
        assert_eq!(log_mel(&long), log_mel(&t));
        let mut padded = t[..N_SAMPLES / 2].to_vec();
        let short = log_mel(&padded);
        padded.resize(N_SAMPLES, 0.0);
        assert_eq!(short, log_mel(&padded));
    }
}
