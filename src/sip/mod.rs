//! SIP signaling (RFC 3261): message codec ([`msg`], the only module that
//! imports rsip), SDP offer/answer ([`sdp`], RFC 3264), the sans-IO protocol
//! core ([`proto`]: transactions, dialogs, digest auth) and the IO edge
//! ([`driver`], [`transport`]: UDP/TCP sockets and the clock).

pub mod driver;
pub mod msg;
pub mod proto;
pub mod sdp;
pub mod transport;
