//! RTP socket edge for one call. CONTRACT STUB.

use super::ports::RtpSockets;
use super::proto::session::{RtpEvent, RtpSession, SessionConfig};
use crate::observability::Metrics;
use std::time::Instant;

/// Sockets + session; the call actor awaits [`MediaStream::next_event`].
#[derive(Debug)]
pub struct MediaStream {}

impl MediaStream {
    /// Wraps bound sockets and a new session.
    pub fn new(sockets: RtpSockets, cfg: SessionConfig, metrics: Metrics, now: Instant) -> Self {
        let _ = (sockets, cfg, metrics, now);
        todo!()
    }
    /// Reads sockets, fires timers, sends due packets, until the next event.
    /// Cancel-safe (usable in `select!`).
    pub async fn next_event(&mut self) -> RtpEvent {
        todo!()
    }
    /// The session, for commands (queue audio, set remote, …).
    pub fn session_mut(&mut self) -> &mut RtpSession {
        todo!()
    }
    /// Local RTP port.
    pub fn local_port(&self) -> u16 {
        todo!()
    }
    /// Queued outbound frames.
    pub fn outbound_len(&self) -> usize {
        todo!()
    }
    /// Session counters.
    pub fn stats(&self) -> crate::rtp::proto::session::RtpStats {
        todo!()
    }
}
