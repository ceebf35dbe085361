//! One RTP session (RFC 3550). CONTRACT STUB.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Static settings of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our SSRC.
    pub ssrc: u32,
    /// Payload type of the audio codec.
    pub payload_type: u8,
    /// Payload type of telephone-event (RFC 4733), if negotiated.
    pub dtmf_payload_type: Option<u8>,
    /// RTP clock rate, Hz (8000 for G.711).
    pub clock_rate: u32,
    /// Packetization time (20 ms).
    pub ptime: Duration,
    /// Where to send, from SDP; `None` until latched.
    pub remote: Option<SocketAddr>,
    /// Symmetric RTP: latch the send address to where media really comes from.
    pub symmetric: bool,
    /// Jitter buffer target depth.
    pub jitter_target: Duration,
    /// No RTP for this long → `RtpEvent::Inactive`.
    pub inactivity_timeout: Duration,
    /// One ptime of encoded silence, sent when nothing is queued.
    pub silence_payload: Vec<u8>,
}

/// Something the session wants done or reported.
#[derive(Debug)]
pub enum Output {
    /// Send a datagram.
    Transmit(Transmit),
    /// Report to the application.
    Event(RtpEvent),
    /// Nothing more until this instant (or new input).
    Timeout(Instant),
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// Destination.
    pub dest: SocketAddr,
    /// Bytes.
    pub payload: Vec<u8>,
    /// True for RTCP (send from the RTCP socket).
    pub rtcp: bool,
}

/// Events for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum RtpEvent {
    /// One ptime of received audio, played out of the jitter buffer on the
    /// media clock; `None` when the packet was lost (conceal it).
    Audio(Option<Vec<u8>>),
    /// A DTMF digit (RFC 4733), reported once at its end.
    Dtmf {
        /// `0-9`, `*`, `#`, `A-D`.
        digit: char,
        /// Duration, ms.
        duration_ms: u32,
    },
    /// Media has been latched to this source.
    Latched(SocketAddr),
    /// No RTP for the inactivity timeout.
    Inactive,
}

/// Errors for bad input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtpError {
    /// Not a valid RTP/RTCP packet.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// Counters for metrics and records.
#[derive(Debug, Clone, Default)]
pub struct RtpStats {
    /// Packets received (valid).
    pub packets_received: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Packets lost (RFC 3550 A.3).
    pub packets_lost: u64,
    /// Interarrival jitter, ms (RFC 3550 A.8).
    pub jitter_ms: f64,
}

/// The session.
#[derive(Debug)]
pub struct RtpSession {}

impl RtpSession {
    /// New session starting at `now`.
    pub fn new(cfg: SessionConfig, now: Instant) -> Self {
        let _ = (cfg, now);
        todo!()
    }
    /// An RTP datagram arrived.
    pub fn handle_rtp(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) -> Result<(), RtpError> {
        let _ = (from, datagram, now);
        todo!()
    }
    /// An RTCP datagram arrived.
    pub fn handle_rtcp(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) -> Result<(), RtpError> {
        let _ = (from, datagram, now);
        todo!()
    }
    /// Time advanced to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }
    /// Queues one ptime of encoded audio to send on the media clock.
    pub fn queue_audio(&mut self, payload: Vec<u8>) {
        let _ = payload;
        todo!()
    }
    /// Queues an RFC 4733 digit to send.
    pub fn queue_dtmf(&mut self, digit: char, duration: Duration) {
        let _ = (digit, duration);
        todo!()
    }
    /// Drops queued outbound audio (barge-in).
    pub fn clear_outbound(&mut self) {
        todo!()
    }
    /// Queued outbound frames.
    pub fn outbound_len(&self) -> usize {
        todo!()
    }
    /// New remote address (re-INVITE).
    pub fn set_remote(&mut self, addr: SocketAddr) {
        let _ = addr;
        todo!()
    }
    /// Whether to send and/or receive (hold).
    pub fn set_direction(&mut self, send: bool, recv: bool) {
        let _ = (send, recv);
        todo!()
    }
    /// Next output; drain until `Timeout`.
    pub fn poll_output(&mut self) -> Output {
        todo!()
    }
    /// Current counters.
    pub fn stats(&self) -> RtpStats {
        todo!()
    }
    /// Changes the audio payload type (codec change by re-INVITE) and the
    /// silence frame sent when nothing is queued.
    pub fn set_payload_type(&mut self, pt: u8, silence_payload: Vec<u8>) {
        let _ = (pt, silence_payload);
        todo!()
    }
}
