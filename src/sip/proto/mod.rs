//! Sans-IO SIP core: transactions (RFC 3261 §17), dialogs (§12), digest auth.
pub mod auth;
