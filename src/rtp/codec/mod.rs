//! Codecs and resampling.
pub mod g711;
pub mod resample;
