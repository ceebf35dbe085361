//! SIP transports (RFC 3261 §18): UDP datagrams and TCP streams framed by
//! Content-Length. The driver owns the sockets; these modules hold the
//! socket setup and the pure framing logic.

pub mod tcp;
pub mod udp;
