//! RTP media (RFC 3550/3551): the sans-IO session ([`proto`]), codecs and
//! resampling ([`codec`]), port allocation ([`ports`]) and the socket edge
//! ([`driver`]).

pub mod codec;
pub mod driver;
pub mod ports;
pub mod proto;
