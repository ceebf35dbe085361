//! Sans-IO SIP core (RFC 3261): transactions (§17), dialogs (§12), the UA
//! core and router ([`SipEndpoint`]), timers, digest auth, and the
//! registrar ([`registrar`], §10.3) that REGISTER is handed to when it is on.
//!
//! Nothing here does IO or reads the clock: time comes in as `now: Instant`
//! and everything to do comes out of [`SipEndpoint::poll_output`] as values.
//!
//! # Run loop
//!
//! ```text
//! loop {
//!     // 1. one mutation, with the current time
//!     endpoint.handle_datagram(from, transport, &bytes, now)   // network in
//!     | endpoint.handle_timeout(now)                           // timer due
//!     | endpoint.answer(dialog, sdp, now) …                    // application
//!     // 2. drain every output until Timeout
//!     loop {
//!         match endpoint.poll_output() {
//!             Output::Transmit(t) => send t.bytes to t.dest over t.transport,
//!             Output::Event(e)    => hand e to the application,
//!             Output::Timeout(at) => { sleep until `at` (or the next input); break }
//!         }
//!     }
//! }
//! ```
//! * **Time is an argument.** Every `handle_*` and command takes `now`;
//!   timers fire only in `handle_timeout(now)` when `now` has reached the
//!   instant the last `Output::Timeout` gave. Virtual time in tests is just
//!   a different `now`.
//! * **Single mutation, then drain.** After each input or command, call
//!   `poll_output` until it returns `Timeout`; outputs keep their order
//!   (e.g. the 100 Trying before `IncomingCall`).
//! * **Network input never panics.** Malformed messages are answered 400
//!   (when their request line and Via parse), or dropped; see [`crate::sip::msg`].
//! * **Poll order.** Transmits and events come out in the order they were
//!   produced; `Timeout` only once the queue is empty.
//!
//! Application commands (`ring`, `answer`, `reject`, `hangup`,
//! `accept_reinvite`, `reject_reinvite`, `invite`, `options`,
//! `set_draining`) are plain verbs on the endpoint; the dialog they act on is
//! named by [`crate::ids::DialogId`].
#![deny(missing_docs)]

pub mod auth;
pub mod dialog;
pub mod endpoint;
pub mod registrar;
pub mod timers;
pub mod transaction;

#[cfg(test)]
mod tests;

pub use endpoint::{
    ALLOW, ALLOW_WITH_REGISTER, DialogEvent, EndpointConfig, EndpointError, Event, InviteInfo, InviteParams, Output,
    SipEndpoint, Transmit, Transport, literal_dest,
};
pub use timers::Timers;
