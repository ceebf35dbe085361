//! The contact center: human agents, queues with hold music and position
//! announcements, and routing of waiting callers to human or AI members.
//!
//! This module owns the pure logic and its configuration; the call actor
//! plays hold music, speaks announcements, rings agents and reports back.
//! Like the SIP and RTP cores it is sans-IO (see the crate's run-loop
//! contract): no tasks, no sockets, no clock reads; every input carries
//! `now: Instant` and every decision comes back as a value.
//!
//! | part | owns |
//! |---|---|
//! | [`config`] | `sip-config/queues.yaml`: schema, loading, file:line errors |
//! | [`queue`] | one queue's line: priority then FIFO order, 1-based positions, expected wait (EWMA), announcements, overflow at max wait |
//! | [`agents`] | human agents' presence: available, ringing, on call, wrap-up, offline |
//! | [`routing`] | strategies (longest-idle, round-robin), skills, AI capacity, and [`ContactCenter`], which drives all queues against the agent pool |
//! | [`supervisor`] | a supervisor dialing in from a SIP phone: PIN, call choice and mode keys |
//!
//! Calls are identified by any [`CallKey`] (skald passes
//! [`crate::ids::CallId`]), so every rule is testable in virtual time
//! without a call.
#![deny(missing_docs)]

pub mod agents;
pub mod config;
pub mod queue;
pub mod routing;
pub mod supervisor;

#[cfg(test)]
mod tests;

pub use agents::{AgentPool, AgentProfile, Presence};
pub use queue::{CallKey, Member, OverflowTarget, Queue, QueueEvent, QueueSettings, RetractReason};
pub use routing::{CenterEvent, ContactCenter, Prefer, RoutingError, Strategy};
