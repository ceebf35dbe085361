//! An N-input audio mixer for the pipeline's format: mono PCM16 at 16 kHz,
//! 20 ms frames (320 samples); any one rate works, as long as every input
//! has it (the supervisor dial-in mixes at the phone's 8 kHz). Pure: frames
//! in, one frame out; no clock, no IO.
//!
//! Each input is scaled by its gain and summed in `f32`; the sum goes
//! through a soft clipper so that two loud talkers never wrap around: up to
//! [`KNEE`] of full scale the signal passes unchanged (silence + x = x
//! exactly), above it the curve bends smoothly (tanh) toward full scale and
//! never exceeds it.
//!
//! Inputs shorter than the output frame count as silence for their missing
//! tail; the output has the length of the longest input.

#![deny(missing_docs)]

/// Fraction of full scale up to which the mix passes unchanged.
pub const KNEE: f32 = 0.75;

/// One input of a mix: a frame and its gain (1.0 = unchanged).
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// 16 kHz mono PCM16 samples.
    pub frame: &'a [i16],
    /// Linear gain applied before summing.
    pub gain: f32,
}

impl<'a> Input<'a> {
    /// An input at unity gain.
    pub fn new(frame: &'a [i16]) -> Self {
        Input { frame, gain: 1.0 }
    }

    /// An input with `gain` (linear).
    pub fn with_gain(frame: &'a [i16], gain: f32) -> Self {
        Input { frame, gain }
    }
}

/// Mixes `inputs` into a new frame as long as the longest input (empty
/// without inputs). See the module doc for the clipping curve.
pub fn mix(inputs: &[Input<'_>]) -> Vec<i16> {
    let len = inputs.iter().map(|i| i.frame.len()).max().unwrap_or(0);
    let mut out = vec![0i16; len];
    mix_into(inputs, &mut out);
    out
}

/// Mixes `inputs` into `out` (overwritten); samples beyond an input's end
/// count as silence for it.
pub fn mix_into(inputs: &[Input<'_>], out: &mut [i16]) {
    for (n, o) in out.iter_mut().enumerate() {
        let sum: f32 = inputs
            .iter()
            .filter_map(|i| i.frame.get(n).map(|&s| s as f32 * i.gain))
            .sum();
        *o = soft_clip(sum);
    }
}

/// The clipping curve on one summed sample (in i16 units): identity up to
/// [`KNEE`]·32767, then a tanh knee that approaches full scale.
pub fn soft_clip(x: f32) -> i16 {
    const FULL: f32 = i16::MAX as f32;
    let knee = KNEE * FULL;
    let a = x.abs();
    let y = if a <= knee {
        a
    } else {
        let room = FULL - knee;
        knee + room * ((a - knee) / room).tanh()
    };
    (y.min(FULL) * x.signum()).round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, amp: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f32::consts::PI * freq * i as f32 / 16_000.0).sin()) as i16)
            .collect()
    }

    /// Power of `freq` in `x` (Goertzel), normalized by length.
    fn goertzel(x: &[i16], freq: f32) -> f32 {
        let w = 2.0 * std::f32::consts::PI * freq / 16_000.0;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &v in x {
            let s = v as f32 + c * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f32 * x.len() as f32)
    }

    #[test]
    fn silence_plus_x_is_x() {
        let x = tone(440.0, 12_000.0, 320);
        let silence = vec![0i16; 320];
        assert_eq!(mix(&[Input::new(&silence), Input::new(&x)]), x);
        assert_eq!(mix(&[Input::new(&x)]), x);
    }

    #[test]
    fn no_inputs_mix_to_nothing_and_short_inputs_pad_with_silence() {
        assert!(mix(&[]).is_empty());
        let a = vec![100i16; 320];
        let b = vec![50i16; 160];
        let m = mix(&[Input::new(&a), Input::new(&b)]);
        assert_eq!(m.len(), 320);
        assert_eq!(m[0], 150);
        assert_eq!(m[319], 100);
    }

    #[test]
    fn loud_sums_stay_bounded_and_keep_their_sign() {
        let loud = vec![30_000i16; 320];
        let quiet = vec![-30_000i16; 320];
        let m = mix(&[Input::new(&loud), Input::new(&loud), Input::new(&loud)]);
        assert!(m.iter().all(|&s| s > 30_000), "{:?}", &m[..4]);
        let m = mix(&[Input::new(&quiet), Input::new(&quiet)]);
        assert!(m.iter().all(|&s| (-i16::MAX..-30_000).contains(&s)));
        // Monotonic: a louder sum never comes out quieter.
        let mut last = 0;
        for x in (0..200_000).step_by(997) {
            let y = soft_clip(x as f32);
            assert!(y >= last, "{x}: {y} < {last}");
            last = y;
        }
        assert_eq!(soft_clip(1e9), i16::MAX);
        assert_eq!(soft_clip(-1e9), -i16::MAX);
    }

    #[test]
    fn gains_scale_each_input() {
        let a = vec![1000i16; 320];
        let b = vec![1000i16; 320];
        let m = mix(&[Input::with_gain(&a, 0.5), Input::with_gain(&b, 0.25)]);
        assert!(m.iter().all(|&s| s == 750));
        let m = mix(&[Input::with_gain(&a, 0.0)]);
        assert!(m.iter().all(|&s| s == 0));
    }

    #[test]
    fn a_mix_of_two_tones_contains_both() {
        let a = tone(440.0, 10_000.0, 3200);
        let b = tone(1_000.0, 10_000.0, 3200);
        let m = mix(&[Input::new(&a), Input::new(&b)]);
        let (pa, pb, off) = (goertzel(&m, 440.0), goertzel(&m, 1_000.0), goertzel(&m, 700.0));
        assert!(pa > 100.0 * off && pb > 100.0 * off, "440: {pa}, 1000: {pb}, 700: {off}");
        // Each tone keeps (about) its own power.
        let ra = pa / goertzel(&a, 440.0);
        let rb = pb / goertzel(&b, 1_000.0);
        assert!((0.9..1.1).contains(&ra) && (0.9..1.1).contains(&rb), "{ra} {rb}");
    }
}
