//! Sample-rate conversion of mono PCM16 with rubato 5's synchronous FFT
//! resampler ([`rubato::Fft`]).
//!
//! Telephony converts between fixed integer rates (8 kHz RTP ↔ 16 kHz
//! pipeline, 22 050 / 44 100 / 48 000 Hz prompts and TTS → 16 kHz), so a
//! synchronous resampler fits: the ratio `to/from` is exact, and for a chunk
//! that is a whole number of the rate pair's minimum block (`from / gcd(from,
//! to)` input samples) every chunk yields exactly `chunk·to/from` samples.
//! 20 ms at 8, 16, 22.05, 44.1 and 48 kHz all are.
//!
//! * [`Resampler`] streams: one FFT block per chunk, so its fixed delay is half
//!   an output block ([`Resampler::delay_samples`]; 8 k→16 k with 160-sample
//!   chunks: 160 output samples = 10 ms). The anti-aliasing filter's cutoff is
//!   about 0.9 of the lower Nyquist frequency (≈ 3.6 kHz for 8 kHz audio).
//! * [`resample_all`] converts a whole buffer with a larger block, trims the
//!   delay, and returns exactly `round(len·to/from)` samples.
//!
//! Samples are converted to `f32` (÷32768) for processing and back with
//! rounding and saturation, so no input can overflow or produce NaN in the
//! output.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _, WindowFunction};

/// Lowest sample rate accepted, Hz.
pub const MIN_RATE_HZ: u32 = 1_000;
/// Highest sample rate accepted, Hz.
pub const MAX_RATE_HZ: u32 = 384_000;

/// Resampling errors.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// The rate pair or chunk size cannot be used (rate outside
    /// [`MIN_RATE_HZ`]..=[`MAX_RATE_HZ`], chunk of 0 samples, or for
    /// streaming a rate pair whose minimum block exceeds 100 ms).
    #[error("cannot resample {from} Hz → {to} Hz: {reason}")]
    Unsupported {
        /// Input rate, Hz.
        from: u32,
        /// Output rate, Hz.
        to: u32,
        /// Why.
        reason: String,
    },
}

/// A streaming mono PCM16 resampler with a fixed input chunk.
///
/// Feed it `chunk` input samples per [`process`](Resampler::process) call
/// (other lengths are buffered internally and processed once a whole chunk
/// is there). When `from_hz == to_hz` it copies.
pub struct Resampler {
    /// Input rate, Hz.
    from_hz: u32,
    /// Output rate, Hz.
    to_hz: u32,
    /// Input samples per rubato call.
    chunk: usize,
    /// The rubato resampler; `None` when the rates are equal (copy).
    inner: Option<Box<Fft<f32>>>,
    /// Input samples (scaled to ±1.0) waiting for a whole chunk.
    pending: Vec<f32>,
    /// Output scratch for one rubato call, `output_frames_max` long.
    scratch: Vec<f32>,
}

impl Resampler {
    /// A resampler from `from_hz` to `to_hz` taking `chunk` input samples per
    /// call (e.g. 160 at 8 kHz = 20 ms).
    ///
    /// Errors: [`ResampleError::Unsupported`] for a rate outside
    /// [`MIN_RATE_HZ`]..=[`MAX_RATE_HZ`], `chunk == 0`, or a rate pair whose
    /// minimum block `from / gcd(from, to)` is longer than 100 ms of input
    /// (that would make the streaming delay unusable for a call).
    pub fn new(from_hz: u32, to_hz: u32, chunk: usize) -> Result<Self, ResampleError> {
        check_rates(from_hz, to_hz)?;
        if chunk == 0 {
            return Err(unsupported(
                from_hz,
                to_hz,
                "chunk must be at least 1 sample",
            ));
        }
        if from_hz == to_hz {
            return Ok(Self {
                from_hz,
                to_hz,
                chunk,
                inner: None,
                pending: Vec::new(),
                scratch: Vec::new(),
            });
        }
        let min_block = from_hz / gcd(from_hz, to_hz);
        if min_block > from_hz / 10 {
            return Err(unsupported(
                from_hz,
                to_hz,
                &format!("minimum block of {min_block} samples is longer than 100 ms"),
            ));
        }
        // One FFT block per chunk keeps the delay at half a chunk; very
        // large chunks are split into sub-chunks of about 512 samples.
        let sub_chunks = (chunk / 512).max(1);
        let inner = Fft::<f32>::new_custom(
            from_hz as usize,
            to_hz as usize,
            chunk,
            sub_chunks,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(|e| unsupported(from_hz, to_hz, &e.to_string()))?;
        let scratch = vec![0.0; inner.output_frames_max()];
        Ok(Self {
            from_hz,
            to_hz,
            chunk,
            inner: Some(Box::new(inner)),
            pending: Vec::with_capacity(2 * chunk),
            scratch,
        })
    }

    /// Resamples `input` (normally one chunk of `chunk` samples at `from_hz`)
    /// and appends the output (at `to_hz`) to `out`.
    ///
    /// With whole chunks whose length is a multiple of the minimum block,
    /// each call appends exactly `chunk·to/from` samples (160 at 8 kHz → 320
    /// at 16 kHz). Other lengths are buffered; over time the output length
    /// tracks `total_input·to/from`. The first [`delay_samples`] output
    /// samples are the resampler's startup delay (silence).
    ///
    /// [`delay_samples`]: Resampler::delay_samples
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        self.pending
            .extend(input.iter().map(|&s| f32::from(s) / 32768.0));
        let mut consumed = 0;
        while self.pending.len() - consumed >= self.chunk {
            let frames_in = self.chunk;
            let frames_out = inner.output_frames_next();
            if frames_out > self.scratch.len() {
                self.scratch.resize(frames_out, 0.0);
            }
            let block = &self.pending[consumed..consumed + frames_in];
            let (Ok(buf_in), Ok(mut buf_out)) = (
                InterleavedSlice::new(block, 1, frames_in),
                InterleavedSlice::new_mut(&mut self.scratch[..frames_out], 1, frames_out),
            ) else {
                break;
            };
            // Buffers are sized from the resampler's own figures above, so
            // rubato's size check cannot fail; on failure drop the chunk.
            if let Ok((_, produced)) = inner.process_into_buffer(&buf_in, &mut buf_out, None) {
                out.extend(self.scratch[..produced].iter().map(|&x| to_i16(x)));
            }
            consumed += frames_in;
        }
        self.pending.drain(..consumed);
    }

    /// The fixed delay, in output samples at `to_hz`, between a sample going
    /// in and its resampled counterpart coming out (0 when copying).
    pub fn delay_samples(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Forgets buffered input and filter state (e.g. after a barge-in flush).
    pub fn reset(&mut self) {
        self.pending.clear();
        if let Some(inner) = self.inner.as_mut() {
            inner.reset();
        }
    }

    /// Input rate, Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output rate, Hz.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Input samples per chunk.
    pub fn chunk(&self) -> usize {
        self.chunk
    }
}

/// Resamples a whole buffer at once (prompts, TTS clips) from `from_hz` to
/// `to_hz`. The startup delay is trimmed and the result has exactly
/// `round(input.len()·to/from)` samples. Equal rates copy.
///
/// Errors: [`ResampleError::Unsupported`] for a rate outside
/// [`MIN_RATE_HZ`]..=[`MAX_RATE_HZ`].
pub fn resample_all(input: &[i16], from_hz: u32, to_hz: u32) -> Result<Vec<i16>, ResampleError> {
    check_rates(from_hz, to_hz)?;
    if from_hz == to_hz {
        return Ok(input.to_vec());
    }
    let expected =
        (input.len() as u64 * u64::from(to_hz) + u64::from(from_hz) / 2) / u64::from(from_hz);
    let expected = usize::try_from(expected).unwrap_or(usize::MAX);
    if input.is_empty() {
        return Ok(Vec::new());
    }
    // Blocks of about 50 ms: a sharper filter than the streaming one; the
    // delay is trimmed anyway.
    let chunk = (from_hz as usize / 20).max(1);
    let mut inner = Fft::<f32>::new_custom(
        from_hz as usize,
        to_hz as usize,
        chunk,
        1,
        1,
        WindowFunction::BlackmanHarris2,
        FixedSync::Input,
    )
    .map_err(|e| unsupported(from_hz, to_hz, &e.to_string()))?;
    let samples: Vec<f32> = input.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let buf_in = InterleavedSlice::new(&samples, 1, samples.len())
        .map_err(|e| unsupported(from_hz, to_hz, &e.to_string()))?;
    let resampled = inner
        .process_all(&buf_in, samples.len(), None)
        .map_err(|e| unsupported(from_hz, to_hz, &e.to_string()))?
        .take_data();
    let mut out: Vec<i16> = resampled
        .iter()
        .take(expected)
        .map(|&x| to_i16(x))
        .collect();
    out.resize(expected, 0);
    Ok(out)
}

fn check_rates(from_hz: u32, to_hz: u32) -> Result<(), ResampleError> {
    for rate in [from_hz, to_hz] {
        if !(MIN_RATE_HZ..=MAX_RATE_HZ).contains(&rate) {
            return Err(unsupported(
                from_hz,
                to_hz,
                &format!("rate {rate} Hz outside {MIN_RATE_HZ}..={MAX_RATE_HZ} Hz"),
            ));
        }
    }
    Ok(())
}

fn unsupported(from: u32, to: u32, reason: &str) -> ResampleError {
    ResampleError::Unsupported {
        from,
        to,
        reason: reason.to_owned(),
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// ±1.0 float to PCM16 with rounding and saturation (NaN → 0).
#[inline]
fn to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, len: usize, amplitude: f64) -> Vec<i16> {
        (0..len)
            .map(|n| {
                let t = n as f64 / f64::from(rate);
                (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        let sum: f64 = x.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / x.len() as f64).sqrt()
    }

    /// Sign changes from negative to non-negative (one per period).
    fn rising_crossings(x: &[i16]) -> usize {
        x.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count()
    }

    fn stream(r: &mut Resampler, input: &[i16], chunk: usize) -> Vec<i16> {
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            r.process(c, &mut out);
        }
        out
    }

    #[test]
    fn every_20ms_frame_yields_exact_output() {
        for (from, to) in [
            (8_000, 16_000),
            (16_000, 8_000),
            (22_050, 16_000),
            (44_100, 16_000),
            (48_000, 16_000),
            (16_000, 48_000),
        ] {
            let chunk = from as usize / 50;
            let want = to as usize / 50;
            let mut r = Resampler::new(from, to, chunk).unwrap();
            let frame = sine(440.0, from, chunk, 8000.0);
            for _ in 0..10 {
                let mut out = Vec::new();
                r.process(&frame, &mut out);
                assert_eq!(out.len(), want, "{from} → {to}");
            }
        }
    }

    #[test]
    fn odd_lengths_are_buffered_and_total_tracks_ratio() {
        let mut r = Resampler::new(8_000, 16_000, 160).unwrap();
        let mut out = Vec::new();
        let mut fed = 0;
        for len in [1usize, 7, 100, 300, 53, 159, 160, 161, 0, 500] {
            let input = vec![100i16; len];
            r.process(&input, &mut out);
            fed += len;
            // Output is always the whole chunks seen so far, doubled.
            assert_eq!(out.len(), (fed / 160) * 320);
        }
    }

    #[test]
    fn equal_rates_copy() {
        let mut r = Resampler::new(16_000, 16_000, 320).unwrap();
        let input = sine(1000.0, 16_000, 320, 1000.0);
        let mut out = vec![];
        r.process(&input, &mut out);
        assert_eq!(out, input);
        assert_eq!(r.delay_samples(), 0);
        assert_eq!(resample_all(&input, 16_000, 16_000).unwrap(), input);
    }

    #[test]
    fn delay_is_as_documented() {
        let mut r = Resampler::new(8_000, 16_000, 160).unwrap();
        assert_eq!(r.delay_samples(), 160);
        let mut input = vec![0i16; 160 * 4];
        input[0] = 20_000;
        let out = stream(&mut r, &input, 160);
        let peak = out
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.unsigned_abs())
            .map(|(i, _)| i)
            .unwrap();
        assert_eq!(peak, r.delay_samples());
    }

    #[test]
    fn sine_survives_8k_16k_8k() {
        let input = sine(1000.0, 8_000, 8_000, 10_000.0); // 1 s
        let mut up = Resampler::new(8_000, 16_000, 160).unwrap();
        let mut down = Resampler::new(16_000, 8_000, 320).unwrap();
        let wide = stream(&mut up, &input, 160);
        assert_eq!(wide.len(), 16_000);
        let skip_wide = up.delay_samples() + 320;
        let wide_crossings = rising_crossings(&wide[skip_wide..]) as i64;
        let wide_expected = (1000 * (16_000 - skip_wide) / 16_000) as i64;
        assert!(
            (wide_crossings - wide_expected).abs() <= 1,
            "{wide_crossings}"
        );
        let narrow = stream(&mut down, &wide, 320);
        assert_eq!(narrow.len(), 8_000);
        // Skip both delays plus a frame of settling; compare whole periods.
        let skip = (up.delay_samples() / 2 + down.delay_samples() + 160).div_ceil(8) * 8;
        let tail = &narrow[skip..];
        let crossings = rising_crossings(tail) as i64;
        let expected = (tail.len() / 8) as i64; // 1 kHz at 8 kHz: 8 samples/period
        assert!(
            (crossings - expected).abs() <= 1,
            "{crossings} vs {expected}"
        );
        let db = 20.0 * (rms(tail) / rms(&input)).log10();
        assert!(db.abs() < 1.0, "level changed by {db:.2} dB");
    }

    #[test]
    fn resample_all_lengths_and_frequency() {
        for (from, len) in [
            (22_050u32, 22_050usize),
            (44_100, 44_101),
            (48_000, 4_799),
            (8_000, 1),
        ] {
            let input = sine(1000.0, from, len, 12_000.0);
            let out = resample_all(&input, from, 16_000).unwrap();
            let expected = ((len as u64 * 16_000 + u64::from(from) / 2) / u64::from(from)) as usize;
            assert_eq!(out.len(), expected, "{from} Hz, {len} samples");
        }
        let input = sine(1000.0, 44_100, 44_100, 12_000.0);
        let out = resample_all(&input, 44_100, 16_000).unwrap();
        // No leading delay: starts like the input (near zero, rising).
        assert!(out[0].abs() < 1500 && out[2] > out[0]);
        let crossings = rising_crossings(&out[16..out.len() - 16]) as i64;
        assert!((crossings - 998).abs() <= 2, "{crossings}");
        let db = 20.0 * (rms(&out[100..15_900]) / rms(&input)).log10();
        assert!(db.abs() < 0.5, "{db}");
        assert!(resample_all(&[], 8_000, 16_000).unwrap().is_empty());
    }

    #[test]
    fn full_scale_input_does_not_blow_up() {
        // A full-scale square wave overshoots (Gibbs) and must saturate.
        let square: Vec<i16> = (0..8_000)
            .map(|n| {
                if (n / 20) % 2 == 0 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect();
        let mut r = Resampler::new(8_000, 16_000, 160).unwrap();
        let out = stream(&mut r, &square, 160);
        assert_eq!(out.len(), 16_000);
        assert!(out.iter().any(|&s| s == i16::MAX || s == i16::MIN));
        assert!(rms(&out[1000..]) > 20_000.0);
        let all = resample_all(&square, 8_000, 16_000).unwrap();
        assert_eq!(all.len(), 16_000);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(Resampler::new(0, 16_000, 160).is_err());
        assert!(Resampler::new(8_000, 16_000, 0).is_err());
        assert!(Resampler::new(8_000, 1_000_000, 160).is_err());
        // gcd(44_101, 16_000) = 1: a 1 s minimum block.
        assert!(Resampler::new(44_101, 16_000, 882).is_err());
        assert!(resample_all(&[1, 2, 3], 16_000, 0).is_err());
    }
}
