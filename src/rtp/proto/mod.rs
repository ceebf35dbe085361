//! Sans-IO RTP: packets, RTCP, the session, jitter buffer, RFC 4733 DTMF.
pub mod session;
