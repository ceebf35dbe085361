//! What the cloud providers share: API keys from the environment, mapping
//! HTTP statuses and WebSocket failures to [`ProviderError`], and PCM16LE
//! decoding across chunk boundaries.
//!
//! Keys: every cloud provider's config names an environment variable
//! (`api_key_env`); the key is read from it when a stream or request starts
//! and never from a file, so it cannot end up in a config dump or a log.

use crate::providers::ProviderError;
use std::time::Duration;
use tokio_tungstenite::tungstenite;

/// Reads the API key from the environment variable `env_name`.
/// Errors: `Auth` when the variable is unset, empty or not Unicode.
pub fn api_key(env_name: &str) -> Result<String, ProviderError> {
    match std::env::var(env_name) {
        Ok(key) if !key.trim().is_empty() => Ok(key.trim().to_owned()),
        _ => Err(ProviderError::Auth(format!("environment variable {env_name} holds no API key"))),
    }
}

/// Maps an unsuccessful HTTP status to the error the pipeline acts on:
/// 401/403 `Auth`, 429 `RateLimited`, 408 and 5xx `Retryable`, other 4xx
/// `Fatal`. `detail` (a short body excerpt) goes into the message.
pub(crate) fn status_error(provider: &str, status: u16, retry_after: Option<Duration>, detail: &str) -> ProviderError {
    let detail: String = detail.chars().take(200).collect();
    let msg = format!("{provider}: HTTP {status} {}", detail.trim());
    match status {
        401 | 403 => ProviderError::Auth(msg),
        429 => ProviderError::RateLimited { retry_after },
        408 | 500..=599 => ProviderError::Retryable(msg),
        _ => ProviderError::Fatal(msg),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Maps a failed WebSocket connect: an HTTP answer instead of the upgrade is
/// mapped by its status, anything else (DNS, TCP, TLS) is `Retryable`.
pub(crate) fn ws_connect_error(provider: &str, e: tungstenite::Error) -> ProviderError {
    match e {
        tungstenite::Error::Http(response) => {
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            let retry = retry_after(response.headers());
            status_error(provider, response.status().as_u16(), retry, &body)
        }
        tungstenite::Error::Url(e) => ProviderError::Fatal(format!("{provider}: bad URL: {e}")),
        other => ProviderError::Retryable(format!("{provider}: connect: {other}")),
    }
}

/// Maps a close frame the server sent before the stream was done: 1008
/// (policy violation: bad key, bad parameters) is `Fatal` unless the reason
/// names authentication, 1013 (try again later) and everything else
/// `Retryable`.
pub(crate) fn ws_close_error(provider: &str, frame: Option<&tungstenite::protocol::CloseFrame>) -> ProviderError {
    let Some(frame) = frame else {
        return ProviderError::Retryable(format!("{provider}: connection closed without a close frame"));
    };
    let code = u16::from(frame.code);
    let msg = format!("{provider}: closed by server ({code} {})", frame.reason.as_str());
    let reason = frame.reason.to_ascii_lowercase();
    if reason.contains("auth") || reason.contains("api key") || reason.contains("api_key") {
        return ProviderError::Auth(msg);
    }
    match code {
        1008 => ProviderError::Fatal(msg),
        _ => ProviderError::Retryable(msg),
    }
}

/// Little-endian PCM16 from a byte stream cut at arbitrary points: an odd
/// trailing byte is kept for the next chunk.
#[derive(Debug, Default)]
pub(crate) struct Pcm16Le {
    /// The first byte of a sample whose second byte has not arrived yet.
    carry: Option<u8>,
}

impl Pcm16Le {
    /// Decodes `bytes` (after any carried byte) into whole samples.
    pub(crate) fn decode(&mut self, bytes: &[u8]) -> Vec<i16> {
        let mut out = Vec::with_capacity(bytes.len() / 2 + 1);
        let mut rest = bytes;
        if let Some(lo) = self.carry.take() {
            let Some((&hi, tail)) = rest.split_first() else {
                self.carry = Some(lo);
                return out;
            };
            out.push(i16::from_le_bytes([lo, hi]));
            rest = tail;
        }
        let mut pairs = rest.chunks_exact(2);
        out.extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
        self.carry = pairs.remainder().first().copied();
        out
    }

    /// Whether a half sample is left over (a truncated stream).
    pub(crate) fn has_carry(&self) -> bool {
        self.carry.is_some()
    }
}

/// Samples as little-endian bytes (Deepgram's `linear16`).
pub(crate) fn pcm16_to_le_bytes(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().flat_map(|s| s.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm_decoding_carries_odd_bytes() {
        let samples: Vec<i16> = vec![1, -2, 300, i16::MIN, i16::MAX];
        let bytes = pcm16_to_le_bytes(&samples);
        let mut dec = Pcm16Le::default();
        let mut out = dec.decode(&bytes[..3]);
        assert!(dec.has_carry());
        out.extend(dec.decode(&bytes[3..4]));
        out.extend(dec.decode(&[]));
        out.extend(dec.decode(&bytes[4..9]));
        out.extend(dec.decode(&bytes[9..]));
        assert_eq!(out, samples);
        assert!(!dec.has_carry());
    }

    #[test]
    fn statuses_map_to_error_kinds() {
        assert!(matches!(status_error("x", 401, None, ""), ProviderError::Auth(_)));
        assert!(matches!(status_error("x", 403, None, ""), ProviderError::Auth(_)));
        assert_eq!(
            status_error("x", 429, Some(Duration::from_secs(3)), ""),
            ProviderError::RateLimited { retry_after: Some(Duration::from_secs(3)) }
        );
        assert!(matches!(status_error("x", 503, None, ""), ProviderError::Retryable(_)));
        assert!(matches!(status_error("x", 400, None, "bad voice"), ProviderError::Fatal(m) if m.contains("bad voice")));
    }

    #[test]
    fn missing_key_is_auth() {
        assert!(matches!(api_key("SKALD_TEST_SURELY_UNSET_KEY_VAR"), Err(ProviderError::Auth(_))));
    }
}
