//! Stereo call recording: caller on the left channel, agent on the right,
//! 16 kHz PCM16 WAV (hound). The two sides arrive separately (caller frames
//! from the jitter buffer, agent frames as they are sent); the recorder keeps
//! them aligned on the media clock by writing whole frame pairs and padding
//! a side that had nothing with silence.

use super::wav::WavError;
use std::path::Path;

/// Writes a two-channel WAV from two mono streams.
pub struct StereoRecorder {
    /// The WAV writer (2 channels, 16-bit, 16 kHz).
    writer: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
    /// File path, for errors.
    path: String,
    /// Caller samples not yet written.
    left: Vec<i16>,
    /// Agent samples not yet written.
    right: Vec<i16>,
}

impl StereoRecorder {
    /// Creates `path` (and its parent directories) for 16 kHz stereo.
    /// Errors: [`WavError::Hound`] when the file cannot be created.
    pub fn create(path: &Path) -> Result<Self, WavError> {
        let name = path.display().to_string();
        let io = |e: std::io::Error| WavError::Hound { path: name.clone(), source: hound::Error::IoError(e) };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: super::SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec)
            .map_err(|source| WavError::Hound { path: name.clone(), source })?;
        Ok(StereoRecorder { writer, path: name, left: Vec::new(), right: Vec::new() })
    }

    /// [`StereoRecorder::tick`] on the call's recording, if any, with the
    /// other side's audio taken out of `other` (left empty). A write error
    /// stops the recording (logged); the call goes on without it.
    pub fn tick_or_stop(rec: &mut Option<StereoRecorder>, caller: &[i16], other: &mut Vec<i16>) {
        if let Some(r) = rec.as_mut() {
            let side = std::mem::take(other);
            if let Err(e) = r.tick(caller, &side) {
                tracing::warn!(error = %e, "recording failed; stopping it");
                *rec = None;
            }
        }
    }

    /// One media-clock tick: the caller's frame (16 kHz) and the agent audio
    /// sent during the same tick (empty when the agent was silent: written as
    /// silence of the caller frame's length).
    pub fn tick(&mut self, caller: &[i16], agent: &[i16]) -> Result<(), WavError> {
        self.left.extend_from_slice(caller);
        if agent.is_empty() {
            let missing = self.left.len().saturating_sub(self.right.len());
            self.right.resize(self.right.len() + missing, 0);
        } else {
            self.right.extend_from_slice(agent);
        }
        let n = self.left.len().min(self.right.len());
        for i in 0..n {
            self.write(self.left[i])?;
            self.write(self.right[i])?;
        }
        self.left.drain(..n);
        self.right.drain(..n);
        Ok(())
    }

    /// Writes what is left (the shorter side padded) and closes the file.
    pub fn finalize(mut self) -> Result<(), WavError> {
        let n = self.left.len().max(self.right.len());
        self.left.resize(n, 0);
        self.right.resize(n, 0);
        for i in 0..n {
            self.write(self.left[i])?;
            self.write(self.right[i])?;
        }
        let path = self.path;
        self.writer.finalize().map_err(|source| WavError::Hound { path, source })
    }

    fn write(&mut self, s: i16) -> Result<(), WavError> {
        self.writer
            .write_sample(s)
            .map_err(|source| WavError::Hound { path: self.path.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sides_aligned_and_pads_silence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r/call.wav");
        let mut r = StereoRecorder::create(&path).unwrap();
        r.tick(&[1; 320], &[]).unwrap();
        r.tick(&[2; 320], &[9; 320]).unwrap();
        r.tick(&[3; 320], &[8; 640]).unwrap(); // two agent frames went out in one tick
        r.finalize().unwrap();
        let mut rd = hound::WavReader::open(&path).unwrap();
        assert_eq!(rd.spec().channels, 2);
        let s: Vec<i16> = rd.samples::<i16>().map(|x| x.unwrap()).collect();
        let (left, right): (Vec<i16>, Vec<i16>) = s.chunks(2).map(|c| (c[0], c[1])).unzip();
        assert_eq!(left.len(), 1280);
        assert_eq!(&left[..320], &[1; 320][..]);
        assert_eq!(&right[..320], &[0; 320][..]);
        assert_eq!(&right[320..640], &[9; 320][..]);
        assert_eq!(&right[640..1280], &[8; 640][..]);
        assert_eq!(&left[960..1280], &[0; 320][..], "caller padded at the end");
    }
}
