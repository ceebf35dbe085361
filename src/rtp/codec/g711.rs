//! G.711 companding (ITU-T Rec. G.711, 11/1988): µ-law (PCMU, RTP payload
//! type 0) and A-law (PCMA, payload type 8), RFC 3551 §4.5.14.
//!
//! One byte per sample at 8000 Hz; a 20 ms RTP frame is 160 samples = 160
//! bytes. Linear samples are PCM16 (`i16`, full scale ±32767).
//!
//! * Decoding uses two 256-entry tables built at compile time.
//! * Encoding uses the segment (chord) search of the recommendation on the
//!   16-bit magnitude: µ-law adds the bias 0x84 and clips the magnitude at
//!   32635; A-law works on the 13 most significant bits.
//!
//! Every value decodes to the middle of its quantization interval, so
//! `decode(encode(x))` differs from `x` by at most half a step: 4·2^seg for
//! µ-law (after clipping to ±32635), 8 in A-law segments 0–1 and 8·2^(seg-1)
//! above. Both functions are total: no input panics.

/// The two G.711 companding laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// µ-law (PCMU, RTP payload type 0).
    Mu,
    /// A-law (PCMA, RTP payload type 8).
    A,
}

impl Law {
    /// Encodes PCM16 samples (8 kHz mono) to one byte each, appended to `out`
    /// (`out` grows by `pcm.len()` bytes).
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        out.reserve(pcm.len());
        match self {
            Law::Mu => out.extend(pcm.iter().map(|&s| encode_mu(s))),
            Law::A => out.extend(pcm.iter().map(|&s| encode_a(s))),
        }
    }

    /// Decodes bytes to PCM16 samples appended to `out` (`out` grows by
    /// `bytes.len()` samples). Every byte value is valid.
    pub fn decode(self, bytes: &[u8], out: &mut Vec<i16>) {
        let table = match self {
            Law::Mu => &MU_DECODE,
            Law::A => &A_DECODE,
        };
        out.reserve(bytes.len());
        out.extend(bytes.iter().map(|&b| table[usize::from(b)]));
    }

    /// Encodes one PCM16 sample.
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Law::Mu => encode_mu(sample),
            Law::A => encode_a(sample),
        }
    }

    /// Decodes one byte to a PCM16 sample.
    pub fn decode_sample(self, byte: u8) -> i16 {
        match self {
            Law::Mu => MU_DECODE[usize::from(byte)],
            Law::A => A_DECODE[usize::from(byte)],
        }
    }

    /// The byte that encodes silence (0xFF µ-law, 0xD5 A-law).
    pub fn silence(self) -> u8 {
        match self {
            Law::Mu => 0xFF,
            Law::A => 0xD5,
        }
    }
}

/// µ-law bias added to the magnitude before the segment search.
const MU_BIAS: i32 = 0x84;
/// Largest µ-law magnitude before biasing (32635 + 0x84 = 0x7FFF).
const MU_CLIP: i32 = 32635;

/// µ-law decode table, indexed by the received byte.
static MU_DECODE: [i16; 256] = build_mu_table();
/// A-law decode table, indexed by the received byte.
static A_DECODE: [i16; 256] = build_a_table();

const fn decode_mu(byte: u8) -> i16 {
    let u = !byte;
    let mantissa = (u & 0x0F) as i32;
    let exponent = ((u & 0x70) >> 4) as i32;
    let magnitude = (((mantissa << 3) + MU_BIAS) << exponent) - MU_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn decode_a(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let segment = ((a & 0x70) >> 4) as i32;
    let mut magnitude = ((a & 0x0F) as i32) << 4;
    magnitude = match segment {
        0 => magnitude + 8,
        1 => magnitude + 0x108,
        _ => (magnitude + 0x108) << (segment - 1),
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_mu_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_mu(i as u8);
        i += 1;
    }
    table
}

const fn build_a_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_a(i as u8);
        i += 1;
    }
    table
}

#[inline]
fn encode_mu(sample: i16) -> u8 {
    let s = i32::from(sample);
    let (sign, magnitude) = if s < 0 { (0x80u8, -s) } else { (0u8, s) };
    let biased = magnitude.min(MU_CLIP) + MU_BIAS; // 0x84 ..= 0x7FFF
    // Segment = index of the highest set bit among bits 7..=14.
    let exponent = (31 - biased.leading_zeros()).saturating_sub(7).min(7);
    let mantissa = ((biased >> (exponent + 3)) & 0x0F) as u8;
    !(sign | ((exponent as u8) << 4) | mantissa)
}

#[inline]
fn encode_a(sample: i16) -> u8 {
    // 13-bit two's complement value.
    let s = i32::from(sample) >> 3;
    let (mask, magnitude) = if s >= 0 {
        (0xD5u8, s)
    } else {
        (0x55u8, -s - 1)
    };
    // magnitude is 0..=4095; segment = number of bits above the lowest 5.
    let segment = if magnitude < 32 {
        0
    } else {
        (32 - magnitude.leading_zeros()) - 5
    };
    let mantissa = if segment < 2 {
        (magnitude >> 1) & 0x0F
    } else {
        (magnitude >> segment) & 0x0F
    };
    (((segment as u8) << 4) | mantissa as u8) ^ mask
}

/// Mean absolute level (PCM16) under which a frame counts as quiet: about
/// −44 dBFS, below speech and above line noise.
pub const QUIET_LEVEL: u32 = 200;

/// True when a µ-law frame's mean absolute level is under [`QUIET_LEVEL`].
pub fn is_quiet_mu(bytes: &[u8]) -> bool {
    is_quiet(Law::Mu, bytes)
}

/// True when an A-law frame's mean absolute level is under [`QUIET_LEVEL`].
pub fn is_quiet_a(bytes: &[u8]) -> bool {
    is_quiet(Law::A, bytes)
}

fn is_quiet(law: Law, bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return true;
    }
    let sum: u64 = bytes.iter().map(|&b| u64::from(law.decode_sample(b).unsigned_abs())).sum();
    sum / (bytes.len() as u64) < u64::from(QUIET_LEVEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(Law::Mu.decode_sample(0xFF), 0);
        assert_eq!(Law::Mu.decode_sample(0x7F), 0);
        assert_eq!(Law::Mu.decode_sample(0x00), -32124);
        assert_eq!(Law::Mu.decode_sample(0x80), 32124);
        assert_eq!(Law::Mu.encode_sample(0), 0xFF);
        assert_eq!(Law::Mu.encode_sample(-32124), 0x00);
        assert_eq!(Law::Mu.encode_sample(i16::MIN), 0x00);
        assert_eq!(Law::Mu.encode_sample(i16::MAX), 0x80);
        assert_eq!(Law::A.decode_sample(0xD5), 8);
        assert_eq!(Law::A.decode_sample(0x55), -8);
        assert_eq!(Law::A.encode_sample(8), 0xD5);
        assert_eq!(Law::A.encode_sample(0), 0xD5);
        assert_eq!(Law::A.encode_sample(-8), 0x55);
        assert_eq!(Law::A.decode_sample(0xAA), 32256);
        assert_eq!(Law::A.decode_sample(0x2A), -32256);
        assert_eq!(Law::Mu.silence(), 0xFF);
        assert_eq!(Law::A.silence(), 0xD5);
        assert_eq!(Law::Mu.decode_sample(Law::Mu.silence()), 0);
        assert_eq!(Law::A.decode_sample(Law::A.silence()), 8);
    }

    /// Half the quantization step of the µ-law segment of `code`.
    fn mu_half_step(code: u8) -> i32 {
        let exponent = i32::from((!code & 0x70) >> 4);
        4 << exponent
    }

    /// Half the quantization step of the A-law segment of `code`.
    fn a_half_step(code: u8) -> i32 {
        let segment = i32::from(((code ^ 0x55) & 0x70) >> 4);
        if segment < 2 { 8 } else { 8 << (segment - 1) }
    }

    #[test]
    fn mu_round_trip_error_within_half_step_for_all_i16() {
        for x in i16::MIN..=i16::MAX {
            let code = Law::Mu.encode_sample(x);
            let y = i32::from(Law::Mu.decode_sample(code));
            let clipped = i32::from(x).clamp(-MU_CLIP, MU_CLIP);
            let err = (y - clipped).abs();
            assert!(err <= mu_half_step(code), "x={x} code={code:#04x} y={y}");
        }
    }

    #[test]
    fn a_round_trip_error_within_half_step_for_all_i16() {
        for x in i16::MIN..=i16::MAX {
            let code = Law::A.encode_sample(x);
            let y = i32::from(Law::A.decode_sample(code));
            let err = (y - i32::from(x)).abs();
            assert!(err <= a_half_step(code), "x={x} code={code:#04x} y={y}");
        }
    }

    #[test]
    fn decode_then_encode_is_identity_for_all_codes() {
        for code in 0..=255u8 {
            let expected_mu = if code == 0x7F { 0xFF } else { code };
            assert_eq!(
                Law::Mu.encode_sample(Law::Mu.decode_sample(code)),
                expected_mu
            );
            assert_eq!(Law::A.encode_sample(Law::A.decode_sample(code)), code);
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut prev = i16::MIN;
        for code_value in (i16::MIN..=i16::MAX).step_by(7) {
            let y = Law::A.decode_sample(Law::A.encode_sample(code_value));
            assert!(y >= prev);
            prev = y;
        }
    }

    #[test]
    fn slices_append() {
        let pcm = [0i16, 1000, -1000, 32767, -32768];
        for law in [Law::Mu, Law::A] {
            let mut bytes = vec![0xAB];
            law.encode(&pcm, &mut bytes);
            assert_eq!(bytes.len(), 6);
            assert_eq!(bytes[0], 0xAB);
            let mut out = vec![7i16];
            law.decode(&bytes[1..], &mut out);
            assert_eq!(out.len(), 6);
            assert_eq!(out[0], 7);
            for (x, y) in pcm.iter().zip(&out[1..]) {
                assert!((i32::from(*x) - i32::from(*y)).abs() <= 644, "{x} vs {y}");
            }
        }
    }
}
