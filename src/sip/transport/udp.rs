//! UDP transport (RFC 3261 §18.1.1, §18.2.1): one socket for all peers.

use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Largest datagram read (bytes); SIP messages above it are not accepted.
pub const MAX_DATAGRAM: usize = 65_535;

/// Binds the UDP socket.
pub async fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}
