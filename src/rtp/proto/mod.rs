//! Sans-IO RTP (RFC 3550/3551/4733): packets, RTCP, the session, the jitter
//! buffer and DTMF. Nothing here imports tokio or reads the clock: time is
//! an argument (`now: Instant`) and output is returned as values; see
//! [`session`] for the run-loop contract.
#![deny(missing_docs)]

pub mod dtmf;
pub mod jitter;
pub mod packet;
pub mod rtcp;
pub mod session;
