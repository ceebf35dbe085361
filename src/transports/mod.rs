//! Transports: adapters that turn a provider's call protocol into the
//! pipeline's audio frames, DTMF and control events, and the pipeline's
//! output (audio, interruption) into the provider's wire actions.
//!
//! Each adapter's protocol core is sans-IO (messages in, messages out, time
//! as an argument); the call actor owns the socket. Adapters never import
//! `call` (DESIGN.md "Layout").

pub mod twilio;
pub mod browser;
