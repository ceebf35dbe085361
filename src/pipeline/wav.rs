//! WAV prompts and recordings (hound).
//!
//! * [`load_prompt`] reads any WAV hound reads (PCM 8/16/24/32-bit integer,
//!   32-bit float; any channel count; any rate) and returns mono PCM16 at
//!   the pipeline rate ([`super::SAMPLE_RATE`], 16 kHz).
//! * [`read_wav_mono`] does the same without resampling and reports the rate.
//! * [`WavRecorder`] writes mono PCM16 at a fixed rate, frame by frame.
//!
//! Sample conversion: integers are shifted to 16 bits (8-bit → ×256, 24-bit
//! → ÷256, 32-bit → ÷65536, truncating); floats are scaled by 32768 with
//! rounding and saturation. Channels are mixed to mono by averaging.
//!
//! File IO is blocking: call these from a blocking task, not the 20 ms path.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::rtp::codec::resample::resample_all;

/// WAV errors.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// Reading or writing failed (IO error or invalid WAV data).
    #[error("{path}: {source}")]
    Hound {
        /// File.
        path: String,
        /// Cause.
        source: hound::Error,
    },
    /// The file is a WAV skald cannot use (no channels, a sample width
    /// hound does not decode, a rate the resampler rejects).
    #[error("{path}: {reason}")]
    Format {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Loads a WAV of any rate / channel count / sample format as mono PCM16 at
/// 16 kHz ([`super::SAMPLE_RATE`]); the result has
/// `round(frames·16000/rate)` samples.
///
/// Errors: [`WavError::Hound`] for IO or WAV decoding errors,
/// [`WavError::Format`] for an unusable format or rate.
pub fn load_prompt(path: &Path) -> Result<Vec<i16>, WavError> {
    let (samples, rate) = read_wav_mono(path)?;
    resample_all(&samples, rate, super::SAMPLE_RATE).map_err(|e| WavError::Format {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Reads a WAV file as mono PCM16 at its own rate: `(samples, rate_hz)`.
/// One sample per frame (channels averaged).
///
/// Errors: as [`load_prompt`].
pub fn read_wav_mono(path: &Path) -> Result<(Vec<i16>, u32), WavError> {
    let hound_err = |source| WavError::Hound {
        path: path.display().to_string(),
        source,
    };
    let format_err = |reason: String| WavError::Format {
        path: path.display().to_string(),
        reason,
    };
    let reader = hound::WavReader::open(path).map_err(hound_err)?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(format_err("no channels".to_owned()));
    }
    if spec.sample_rate == 0 {
        return Err(format_err("sample rate of 0 Hz".to_owned()));
    }
    let interleaved: Vec<i16> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .map(|s| s.map(float_to_i16))
            .collect::<Result<_, _>>()
            .map_err(hound_err)?,
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let shift = i32::from(bits) - 16;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| int_to_i16(v, shift)))
                .collect::<Result<_, _>>()
                .map_err(hound_err)?
        }
        (format, bits) => {
            return Err(format_err(format!(
                "unsupported {format:?} samples of {bits} bits"
            )));
        }
    };
    let mono = if channels == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(channels)
            .map(|frame| {
                let sum: i32 = frame.iter().map(|&s| i32::from(s)).sum();
                // |mean| ≤ 32768, fits after clamping the one edge case.
                (sum / channels as i32).clamp(-32768, 32767) as i16
            })
            .collect()
    };
    Ok((mono, spec.sample_rate))
}

/// Writes mono PCM16 at a fixed rate, frame by frame; call
/// [`finalize`](WavRecorder::finalize) at the end (dropping it also
/// finalizes, silently ignoring errors).
pub struct WavRecorder {
    /// The hound writer on a buffered file.
    writer: hound::WavWriter<BufWriter<File>>,
    /// The file path, for error messages.
    path: String,
}

impl WavRecorder {
    /// Creates the file at `path` (parent directories too) for mono 16-bit
    /// PCM at `sample_rate` Hz, truncating an existing file.
    ///
    /// Errors: [`WavError::Hound`] when a directory or the file cannot be
    /// created; [`WavError::Format`] for a rate of 0 Hz.
    pub fn create(path: &Path, sample_rate: u32) -> Result<Self, WavError> {
        let name = path.display().to_string();
        if sample_rate == 0 {
            return Err(WavError::Format {
                path: name,
                reason: "sample rate of 0 Hz".to_owned(),
            });
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| WavError::Hound {
                path: name.clone(),
                source: hound::Error::IoError(e),
            })?;
        }
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|source| WavError::Hound {
            path: name.clone(),
            source,
        })?;
        Ok(Self { writer, path: name })
    }

    /// Appends `samples` (mono PCM16 at the rate given to
    /// [`create`](WavRecorder::create)).
    ///
    /// Errors: [`WavError::Hound`] on a write error or when the file would
    /// exceed the 4 GiB WAV limit.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), WavError> {
        for &s in samples {
            self.writer
                .write_sample(s)
                .map_err(|source| WavError::Hound {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u32 {
        self.writer.len()
    }

    /// Writes the header lengths and closes the file.
    ///
    /// Errors: [`WavError::Hound`] on a write error.
    pub fn finalize(self) -> Result<(), WavError> {
        let path = self.path;
        self.writer
            .finalize()
            .map_err(|source| WavError::Hound { path, source })
    }
}

/// Float sample (±1.0 full scale) to PCM16, rounded and saturated; NaN → 0.
fn float_to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Integer sample of `16 + shift` bits to PCM16.
fn int_to_i16(v: i32, shift: i32) -> i16 {
    let scaled = if shift >= 0 { v >> shift } else { v << -shift };
    scaled.clamp(-32768, 32767) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav<S: hound::Sample + Copy>(
        path: &Path,
        channels: u16,
        rate: u32,
        bits: u16,
        format: hound::SampleFormat,
        samples: &[S],
    ) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn reads_every_integer_width_and_float() {
        let dir = tempfile::tempdir().unwrap();
        let int = hound::SampleFormat::Int;
        let p8 = dir.path().join("8.wav");
        write_wav(&p8, 1, 8_000, 8, int, &[0i8, 64, -128, 127]);
        assert_eq!(
            read_wav_mono(&p8).unwrap(),
            (vec![0, 16_384, -32_768, 32_512], 8_000)
        );
        let p16 = dir.path().join("16.wav");
        write_wav(&p16, 1, 16_000, 16, int, &[0i16, 1234, -32768, 32767]);
        assert_eq!(
            read_wav_mono(&p16).unwrap(),
            (vec![0, 1234, -32768, 32767], 16_000)
        );
        let p24 = dir.path().join("24.wav");
        write_wav(
            &p24,
            1,
            22_050,
            24,
            int,
            &[0i32, 1234 << 8, -(1 << 23), (1 << 23) - 1],
        );
        assert_eq!(
            read_wav_mono(&p24).unwrap(),
            (vec![0, 1234, -32768, 32767], 22_050)
        );
        let p32 = dir.path().join("32.wav");
        write_wav(
            &p32,
            1,
            44_100,
            32,
            int,
            &[0i32, 1234 << 16, i32::MIN, i32::MAX],
        );
        assert_eq!(
            read_wav_mono(&p32).unwrap(),
            (vec![0, 1234, -32768, 32767], 44_100)
        );
        let pf = dir.path().join("f.wav");
        let float = hound::SampleFormat::Float;
        write_wav(
            &pf,
            1,
            48_000,
            32,
            float,
            &[0.0f32, 0.5, -1.0, 1.5, f32::NAN],
        );
        assert_eq!(
            read_wav_mono(&pf).unwrap(),
            (vec![0, 16_384, -32768, 32767, 0], 48_000)
        );
    }

    #[test]
    fn mixes_channels_to_mono() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stereo.wav");
        let int = hound::SampleFormat::Int;
        write_wav(
            &p,
            2,
            8_000,
            16,
            int,
            &[1000i16, 3000, -32768, -32768, 32767, 32767],
        );
        assert_eq!(read_wav_mono(&p).unwrap().0, vec![2000, -32768, 32767]);
        let p3 = dir.path().join("three.wav");
        write_wav(&p3, 3, 8_000, 16, int, &[3i16, 6, 9]);
        assert_eq!(read_wav_mono(&p3).unwrap().0, vec![6]);
    }

    #[test]
    fn load_prompt_resamples_to_16k() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prompt.wav");
        let tone: Vec<i16> = (0..8_000)
            .map(|n| {
                (8000.0 * (2.0 * std::f64::consts::PI * 500.0 * n as f64 / 8000.0).sin()) as i16
            })
            .collect();
        write_wav(&p, 1, 8_000, 16, hound::SampleFormat::Int, &tone);
        let out = load_prompt(&p).unwrap();
        assert_eq!(out.len(), 16_000);
        let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((7_500..=8_500).contains(&peak), "{peak}");
        // Already at 16 kHz: unchanged.
        let q = dir.path().join("same.wav");
        write_wav(&q, 1, 16_000, 16, hound::SampleFormat::Int, &tone);
        assert_eq!(load_prompt(&q).unwrap(), tone);
    }

    #[test]
    fn errors_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.wav");
        assert!(matches!(load_prompt(&missing), Err(WavError::Hound { .. })));
        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"RIFF\x04\0\0\0WAVEjunk").unwrap();
        assert!(matches!(read_wav_mono(&junk), Err(WavError::Hound { .. })));
        let slow = dir.path().join("slow.wav");
        write_wav(&slow, 1, 100, 16, hound::SampleFormat::Int, &[1i16, 2]);
        assert!(matches!(load_prompt(&slow), Err(WavError::Format { .. })));
        assert!(matches!(
            WavRecorder::create(&dir.path().join("x.wav"), 0),
            Err(WavError::Format { .. })
        ));
    }

    #[test]
    fn recorder_creates_dirs_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("calls/2024/rec.wav");
        let mut rec = WavRecorder::create(&p, 8_000).unwrap();
        rec.write(&[1, 2, 3]).unwrap();
        rec.write(&[]).unwrap();
        rec.write(&[-4, i16::MIN]).unwrap();
        assert_eq!(rec.samples_written(), 5);
        rec.finalize().unwrap();
        assert_eq!(
            read_wav_mono(&p).unwrap(),
            (vec![1, 2, 3, -4, i16::MIN], 8_000)
        );
        let spec = hound::WavReader::open(&p).unwrap().spec();
        assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
    }
}
