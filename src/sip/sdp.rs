//! SDP offer/answer for one audio stream (RFC 4566, RFC 3264).
//!
//! CONTRACT STUB: signatures are the interface the call layer uses.

use std::net::{IpAddr, SocketAddr};

/// Audio codecs skald speaks on RTP (RFC 3551 static payload types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// G.711 µ-law, payload type 0, 8000 Hz.
    Pcmu,
    /// G.711 A-law, payload type 8, 8000 Hz.
    Pcma,
}

/// Media direction attribute (RFC 3264 §6.1), from skald's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (default).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

/// What skald offers or accepts for its side of the stream.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    /// IP for `c=` and `o=` (advertised address for NAT).
    pub ip: IpAddr,
    /// Local RTP port for `m=audio`.
    pub port: u16,
    /// Codecs in preference order.
    pub codecs: Vec<AudioCodec>,
    /// Packetization time, ms (`a=ptime`).
    pub ptime_ms: u32,
    /// Offer/accept telephone-event/8000 (RFC 4733).
    pub dtmf: bool,
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` version; bump on every new offer/answer in the dialog.
    pub session_version: u64,
    /// Direction skald wants (SendRecv unless putting the peer on hold).
    pub direction: Direction,
}

/// Result of a successful negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Chosen codec.
    pub codec: AudioCodec,
    /// RTP payload type for the codec.
    pub payload_type: u8,
    /// Payload type of telephone-event, when both sides support it.
    pub dtmf_payload_type: Option<u8>,
    /// Where to send RTP (c= address + m= port). `0.0.0.0` means hold (RFC 2543 style).
    pub remote_rtp: SocketAddr,
    /// Packetization time to send with, ms.
    pub ptime_ms: u32,
    /// skald's resulting direction (peer sendonly → skald recvonly, …).
    pub direction: Direction,
}

/// Why an SDP could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    /// Not parseable SDP (→ 400).
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No audio stream or no codec in common (→ 488 Not Acceptable Here).
    #[error("no acceptable media: {0}")]
    NotAcceptable(String),
}

/// Builds an answer to a remote offer. Errors: `Malformed`, `NotAcceptable`.
pub fn answer(offer: &str, local: &LocalMedia) -> Result<(String, Negotiated), SdpError> {
    let _ = (offer, local);
    todo!()
}

/// Builds an offer for skald's side.
pub fn offer(local: &LocalMedia) -> String {
    let _ = local;
    todo!()
}

/// Accepts the peer's answer to an offer made from `local`.
pub fn accept_answer(answer: &str, local: &LocalMedia) -> Result<Negotiated, SdpError> {
    let _ = (answer, local);
    todo!()
}
