//! Codecs and resampling: G.711 µ-law/A-law ([`g711`], ITU-T G.711) and
//! streaming / whole-buffer sample-rate conversion of mono PCM16
//! ([`resample`], rubato).
pub mod frames;
pub mod g711;
pub mod resample;
