//! RTP/RTCP port allocation. CONTRACT STUB.

use crate::config::PortRange;
use std::net::IpAddr;

/// Errors allocating ports.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Every pair in the range is taken.
    #[error("no free RTP port pair in {low}-{high}")]
    Exhausted {
        /// Range start.
        low: u16,
        /// Range end.
        high: u16,
    },
}

/// Hands out even RTP ports (RTCP = port + 1) from a range; released on drop.
#[derive(Debug, Clone)]
pub struct PortAllocator {}

/// A bound RTP/RTCP socket pair; its ports return to the pool on drop.
#[derive(Debug)]
pub struct RtpSockets {
    /// RTP socket.
    pub rtp: tokio::net::UdpSocket,
    /// RTCP socket.
    pub rtcp: tokio::net::UdpSocket,
}

impl PortAllocator {
    /// Allocator binding on `ip` in `range`.
    pub fn new(range: PortRange, ip: IpAddr) -> Self {
        let _ = (range, ip);
        todo!()
    }
    /// Binds the next free pair.
    pub async fn allocate(&self) -> Result<RtpSockets, PortError> {
        todo!()
    }
    /// Pairs in use.
    pub fn in_use(&self) -> usize {
        todo!()
    }
}

impl RtpSockets {
    /// Local RTP port.
    pub fn rtp_port(&self) -> u16 {
        todo!()
    }
}
