//! Calls: one actor task per call, whatever its transport ([`actor`]: it
//! drives the call's legs through [`crate::transports::leg::Leg`]), one
//! command type ([`command::CallCommand`]), the registry of live calls
//! ([`registry`]), state derived from the legs ([`state`]), the built-in
//! applications ([`apps`]) and the voice agent ([`voice`]). How calls
//! start: [`service`]. The contact center's queues run in [`contact`].

pub mod actor;
pub mod apps;
pub mod command;
pub mod contact;
#[cfg(test)]
pub(crate) mod fakes;
pub mod llm_turns;
pub mod registry;
pub mod service;
pub mod state;
pub mod transfer;
pub mod voice;
