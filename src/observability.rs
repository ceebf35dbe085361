//! Tracing, metrics and PII redaction. CONTRACT STUB.

use crate::config::LoggingConfig;

/// Direction of a SIP message or RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Received.
    In,
    /// Sent.
    Out,
}

/// Prometheus metrics registry shared by all subsystems (cheap to clone).
#[derive(Debug, Clone)]
pub struct Metrics {}

impl Metrics {
    /// A fresh registry with all skald metrics registered.
    pub fn new() -> Self {
        todo!()
    }
    /// Prometheus text exposition (`text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        todo!()
    }
    /// A call started (active +1).
    pub fn call_started(&self) {
        todo!()
    }
    /// A call ended with `result` (e.g. `completed`, `rejected`, `failed`); active −1.
    pub fn call_ended(&self, result: &str) {
        let _ = result;
        todo!()
    }
    /// A SIP message went in/out: requests by method, responses by status code.
    pub fn sip_message(&self, dir: Dir, method: &str, status: Option<u16>) {
        let _ = (dir, method, status);
        todo!()
    }
    /// RTP packets sent/received.
    pub fn rtp_packets(&self, dir: Dir, n: u64) {
        let _ = (dir, n);
        todo!()
    }
    /// RTP packets lost (RFC 3550 A.3).
    pub fn rtp_lost(&self, n: u64) {
        let _ = n;
        todo!()
    }
    /// One interarrival-jitter sample, ms.
    pub fn rtp_jitter_ms(&self, ms: f64) {
        let _ = ms;
        todo!()
    }
}

/// Installs the global tracing subscriber per config (text or JSON).
pub fn init_tracing(cfg: &LoggingConfig) {
    let _ = cfg;
    todo!()
}

/// Wraps personal data (phone numbers, IPs) so logs show it redacted
/// unless redaction is off.
pub struct Pii<T>(pub T);

impl<T: std::fmt::Display> std::fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let _ = f;
        todo!()
    }
}

/// Turns PII redaction in logs on or off (default on).
pub fn set_redaction(on: bool) {
    let _ = on;
    todo!()
}
