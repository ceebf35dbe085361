//! SIP transports: UDP and TCP (RFC 3261 §18).
