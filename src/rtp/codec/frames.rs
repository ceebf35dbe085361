//! The telephony side of the pipeline's audio: G.711 ptime frames at 8 kHz
//! to and from the pipeline's 16 kHz mono PCM16.
//!
//! One [`G711Frames`] per call, shared by every transport that carries
//! G.711 (RTP, Twilio Media Streams): received frames are decoded and
//! upsampled one ptime at a time; outbound audio is downsampled, encoded and
//! cut into whole ptime frames, the tail padded with silence.

use super::g711::Law;
use super::resample::Resampler;

/// G.711 frame codec of one call (stateful: the resamplers keep their
/// filter history across frames, so one instance serves one direction pair
/// of one call).
pub struct G711Frames {
    /// µ-law or A-law.
    law: Law,
    /// 8 kHz → 16 kHz for received audio.
    up: Resampler,
    /// 16 kHz → 8 kHz for sent audio.
    down: Resampler,
    /// Samples per ptime at 8 kHz (= bytes per G.711 frame).
    frame_8k: usize,
    /// Scratch buffers reused every frame.
    pcm8: Vec<i16>,
    pcm16: Vec<i16>,
}

impl G711Frames {
    /// A codec for `law` frames of `ptime_ms` (10–60 ms).
    pub fn new(law: Law, ptime_ms: u32) -> G711Frames {
        let frame_8k = (8 * ptime_ms) as usize;
        let (up, down) = match (Resampler::new(8000, 16000, frame_8k), Resampler::new(16000, 8000, frame_8k * 2)) {
            (Ok(u), Ok(d)) => (u, d),
            _ => unreachable!("8 kHz <-> 16 kHz resampling is always supported"),
        };
        G711Frames {
            law,
            up,
            down,
            frame_8k,
            pcm8: Vec::with_capacity(frame_8k),
            pcm16: Vec::with_capacity(frame_8k * 2),
        }
    }

    /// The law.
    pub fn law(&self) -> Law {
        self.law
    }

    /// Switches the law (a re-INVITE changed PCMU ↔ PCMA); the resamplers
    /// keep their history.
    pub fn set_law(&mut self, law: Law) {
        self.law = law;
    }

    /// Bytes (= 8 kHz samples) per frame.
    pub fn frame_bytes(&self) -> usize {
        self.frame_8k
    }

    /// 16 kHz samples per frame.
    pub fn frame_16k(&self) -> usize {
        self.frame_8k * 2
    }

    /// One received frame (`None`: a lost frame, decoded as silence) →
    /// one ptime of 16 kHz audio in `out` (cleared first). A short or long
    /// payload is padded or cut to one ptime.
    pub fn decode(&mut self, payload: Option<&[u8]>, out: &mut Vec<i16>) {
        self.pcm8.clear();
        if let Some(p) = payload {
            self.law.decode(p, &mut self.pcm8);
        }
        self.pcm8.resize(self.frame_8k, 0);
        out.clear();
        self.up.process(&self.pcm8, out);
    }

    /// 16 kHz audio → whole G.711 frames handed to `push` in order; the
    /// tail is padded with silence to a whole frame. Returns the number of
    /// frames.
    pub fn encode(&mut self, audio: &[i16], mut push: impl FnMut(Vec<u8>)) -> usize {
        let frame_16k = self.frame_16k();
        let mut frames = 0;
        for chunk in audio.chunks(frame_16k) {
            self.pcm16.clear();
            self.pcm16.extend_from_slice(chunk);
            self.pcm16.resize(frame_16k, 0);
            self.pcm8.clear();
            self.down.process(&self.pcm16, &mut self.pcm8);
            self.pcm8.resize(self.frame_8k, 0);
            let mut bytes = Vec::with_capacity(self.frame_8k);
            self.law.encode(&self.pcm8, &mut bytes);
            push(bytes);
            frames += 1;
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 440 Hz tone survives encode → decode with its energy, in whole
    /// frames; the tail is padded.
    #[test]
    fn round_trip_keeps_the_tone_in_whole_frames() {
        let mut c = G711Frames::new(Law::Mu, 20);
        let tone: Vec<i16> = (0..16000 / 5 + 100)
            .map(|i| ((i as f32 * 440.0 * std::f32::consts::TAU / 16000.0).sin() * 8000.0) as i16)
            .collect();
        let mut frames = Vec::new();
        let n = c.encode(&tone, |f| frames.push(f));
        assert_eq!(n, 11, "3300 samples = 10 whole frames + a padded one");
        assert!(frames.iter().all(|f| f.len() == 160));
        let mut energy = 0f64;
        let mut out = Vec::new();
        for f in &frames[2..8] {
            c.decode(Some(f), &mut out);
            assert_eq!(out.len(), 320);
            energy += out.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / out.len() as f64;
        }
        let rms = (energy / 6.0).sqrt();
        assert!((4500.0..7000.0).contains(&rms), "rms {rms} (tone rms 5657)");
        c.decode(None, &mut out);
        assert_eq!(out.len(), 320, "a lost frame is one ptime of silence");
    }
}
