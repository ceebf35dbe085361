//! A TTS cache: the same sentence in the same voice is synthesized once and
//! replayed after.
//!
//! Owns the cache in front of one [`TtsProvider`] (the local voice, shared
//! by every call). Flow agents repeat most of their lines ("Sorry, I didn't
//! catch that.", the greeting, the goodbye), so a replay saves the whole
//! synthesis time of a reply's first sentence (the caller hears the answer
//! that much sooner) and its CPU. The key is the text exactly as given; the
//! value is the voice's chunks (PCM16 at the voice's rate) as they came.
//! Least recently used sentences go first once the cached audio passes
//! `capacity_bytes` (2 bytes per sample). A synthesis that fails or is
//! cancelled (the caller barged in and dropped the receiver) is not
//! cached. Hits and misses are counted in `skald_tts_cache_total`.

use super::{ProviderError, TtsAudio, TtsProvider};
use crate::observability::Metrics;
use async_trait::async_trait;
use lru::LruCache;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Default bound on cached audio, bytes (32 MiB: about 12 minutes of speech
/// at 22.05 kHz).
pub const DEFAULT_CAPACITY_BYTES: usize = 32 << 20;

/// Texts longer than this (bytes) are not cached: long LLM answers rarely
/// repeat.
const MAX_TEXT_BYTES: usize = 400;

/// A [`TtsProvider`] that replays sentences it has synthesized before.
pub struct CachedTts {
    /// The voice.
    inner: Arc<dyn TtsProvider>,
    /// Cached sentences and the bytes they hold.
    cache: Arc<Mutex<Cache>>,
    /// Counts hits and misses.
    metrics: Metrics,
}

/// The cache proper.
struct Cache {
    /// Text → the voice's chunks, most recently used first.
    entries: LruCache<String, Arc<Vec<TtsAudio>>>,
    /// Bytes of PCM held.
    bytes: usize,
    /// Bound on `bytes`.
    capacity: usize,
}

impl Cache {
    /// Stores `chunks` for `text`, evicting the least recently used entries
    /// past the capacity. Audio larger than the whole capacity is not kept.
    fn insert(&mut self, text: String, chunks: Vec<TtsAudio>) {
        let size = bytes_of(&chunks);
        if size > self.capacity {
            return;
        }
        if let Some(old) = self.entries.put(text, Arc::new(chunks)) {
            self.bytes -= bytes_of(&old);
        }
        self.bytes += size;
        while self.bytes > self.capacity {
            let Some((_, old)) = self.entries.pop_lru() else { break };
            self.bytes -= bytes_of(&old);
        }
    }
}

/// PCM bytes in `chunks`.
fn bytes_of(chunks: &[TtsAudio]) -> usize {
    chunks.iter().map(|c| c.pcm.len() * 2).sum()
}

impl CachedTts {
    /// A cache of at most `capacity_bytes` of audio in front of `inner`.
    pub fn new(inner: Arc<dyn TtsProvider>, capacity_bytes: usize, metrics: Metrics) -> Self {
        let cache = Cache { entries: LruCache::unbounded(), bytes: 0, capacity: capacity_bytes };
        CachedTts { inner, cache: Arc::new(Mutex::new(cache)), metrics }
    }

    /// Bytes of audio cached now.
    pub fn cached_bytes(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

#[async_trait]
impl TtsProvider for CachedTts {
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Replays `text` when cached (every chunk at once); otherwise streams
    /// the voice's chunks as they come and caches them once the last one is
    /// through. Errors as the voice's.
    async fn synthesize(&self, text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
        let hit = self.cache.lock().unwrap_or_else(|p| p.into_inner()).entries.get(text).cloned();
        self.metrics.tts_cache(hit.is_some());
        if let Some(chunks) = hit {
            let (tx, rx) = mpsc::channel(chunks.len().max(1));
            for c in chunks.iter() {
                // Capacity covers every chunk: this never waits or fails.
                let _ = tx.try_send(Ok(c.clone()));
            }
            return Ok(rx);
        }
        let mut from_voice = self.inner.synthesize(text).await?;
        if text.len() > MAX_TEXT_BYTES {
            return Ok(from_voice);
        }
        let (tx, rx) = mpsc::channel(4);
        let cache = self.cache.clone();
        let text = text.to_string();
        tokio::spawn(async move {
            let mut chunks = Vec::new();
            while let Some(item) = from_voice.recv().await {
                let keep = item.as_ref().ok().cloned();
                if tx.send(item).await.is_err() {
                    return; // cancelled: nothing cached
                }
                match keep {
                    Some(c) => chunks.push(c),
                    None => return, // failed: nothing cached
                }
            }
            if !chunks.is_empty() {
                cache.lock().unwrap_or_else(|p| p.into_inner()).insert(text, chunks);
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A voice that says each text as `len(text)` samples in two chunks 30 ms
    /// apart, and counts its syntheses; "broken" fails after the first chunk.
    struct Voice {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl TtsProvider for Voice {
        fn name(&self) -> &str {
            "voice"
        }
        async fn synthesize(&self, text: &str) -> Result<mpsc::Receiver<Result<TtsAudio, ProviderError>>, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let (tx, rx) = mpsc::channel(4);
            let n = text.len();
            let text = text.to_string();
            tokio::spawn(async move {
                let _ = tx.send(Ok(TtsAudio { pcm: vec![1; n / 2], sample_rate: 22_050 })).await;
                if text == "broken" {
                    let _ = tx.send(Err(ProviderError::Fatal("voice broke".into()))).await;
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                let _ = tx.send(Ok(TtsAudio { pcm: vec![2; n - n / 2], sample_rate: 22_050 })).await;
            });
            Ok(rx)
        }
    }

    async fn said(tts: &CachedTts, text: &str) -> Result<Vec<i16>, ProviderError> {
        let mut rx = tts.synthesize(text).await?;
        let mut pcm = Vec::new();
        while let Some(c) = rx.recv().await {
            pcm.extend(c?.pcm);
        }
        // Let the caching task finish.
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        Ok(pcm)
    }

    fn cached(capacity: usize) -> (CachedTts, Arc<Voice>, Metrics) {
        let voice = Arc::new(Voice { calls: AtomicUsize::new(0) });
        let metrics = Metrics::new();
        (CachedTts::new(voice.clone(), capacity, metrics.clone()), voice, metrics)
    }

    #[tokio::test]
    async fn a_repeated_sentence_is_synthesized_once_and_replayed_the_same() {
        let (tts, voice, metrics) = cached(DEFAULT_CAPACITY_BYTES);
        let first = said(&tts, "Sorry, I didn't catch that.").await.unwrap();
        let again = said(&tts, "Sorry, I didn't catch that.").await.unwrap();
        assert_eq!(first, again);
        assert_eq!(first.len(), "Sorry, I didn't catch that.".len());
        assert_eq!(voice.calls.load(Ordering::SeqCst), 1, "synthesized once");
        said(&tts, "Goodbye.").await.unwrap();
        assert_eq!(voice.calls.load(Ordering::SeqCst), 2, "another text is another synthesis");
        let text = metrics.render();
        assert!(text.contains("skald_tts_cache_total{result=\"hit\"} 1"), "{text}");
        assert!(text.contains("skald_tts_cache_total{result=\"miss\"} 2"), "{text}");
    }

    #[tokio::test]
    async fn failed_and_cancelled_syntheses_are_not_cached() {
        let (tts, voice, _) = cached(DEFAULT_CAPACITY_BYTES);
        assert!(said(&tts, "broken").await.is_err());
        assert!(said(&tts, "broken").await.is_err());
        assert_eq!(voice.calls.load(Ordering::SeqCst), 2, "a failure is tried again");
        // Cancelled after the first chunk, before the voice is done (a
        // barge-in drops the receiver).
        let mut rx = tts.synthesize("Our hours are nine to five.").await.unwrap();
        rx.recv().await.unwrap().unwrap();
        drop(rx);
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        assert_eq!(tts.cached_bytes(), 0, "nothing cached");
    }

    #[tokio::test]
    async fn the_least_recently_used_sentence_goes_past_the_capacity() {
        // Each 10-letter text is 10 samples = 20 bytes; room for two.
        let (tts, voice, _) = cached(45);
        said(&tts, "aaaaaaaaaa").await.unwrap();
        said(&tts, "bbbbbbbbbb").await.unwrap();
        said(&tts, "aaaaaaaaaa").await.unwrap(); // a is now the most recent
        said(&tts, "cccccccccc").await.unwrap(); // b goes
        assert_eq!(tts.cached_bytes(), 40);
        let calls = voice.calls.load(Ordering::SeqCst);
        said(&tts, "aaaaaaaaaa").await.unwrap();
        assert_eq!(voice.calls.load(Ordering::SeqCst), calls, "a was kept");
        said(&tts, "bbbbbbbbbb").await.unwrap();
        assert_eq!(voice.calls.load(Ordering::SeqCst), calls + 1, "b was evicted");
    }
}
