//! Calls: one actor task per call ([`actor`]), one command type
//! ([`command::CallCommand`]), the registry of live calls ([`registry`]),
//! state derived from the legs ([`state`]) and the built-in applications
//! ([`apps`]); calls that arrive as Twilio Media Streams run in
//! [`stream`]. The contact center's queues run in [`contact`].

pub mod actor;
pub mod apps;
pub mod llm_turns;
pub mod command;
pub mod contact;
pub mod registry;
pub mod service;
pub mod state;
pub mod stream;
pub mod transfer;
pub mod voice;
