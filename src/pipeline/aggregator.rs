//! Sentence aggregation of streamed agent text for TTS. CONTRACT STUB.

/// Collects streamed text and yields whole sentences (keeping their
/// punctuation), so the first sentence is synthesized while the rest streams.
#[derive(Debug, Default, Clone)]
pub struct SentenceAggregator {}

impl SentenceAggregator {
    /// Empty aggregator.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds text; returns the sentences it completed, in order.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        let _ = text;
        todo!()
    }
    /// Returns what is left (end of the reply).
    pub fn flush(&mut self) -> Option<String> {
        todo!()
    }
}
