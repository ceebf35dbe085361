//! Server non-INVITE transaction (RFC 3261 §17.2.2).
//!
//! ```text
//!                                   |Request received
//!                                   |pass to TU
//!                                   V
//!                             +-----------+
//!                             |           |
//!                             | Trying    |-------------+
//!                             |           |             |
//!                             +-----------+             |200-699 from TU
//!                                   |                   |send response
//!                                   |1xx from TU        |
//!                                   |send response      |
//!                                   |                   |
//!                Request            V      1xx from TU  |
//!                send response+-----------+send response|
//!                    +--------|           |--------+    |
//!                    |        | Proceeding|        |    |
//!                    +------->|           |<-------+    |
//!             +<--------------|           |             |
//!             |Trnsprt Err    +-----------+             |
//!             |Inform TU            |                   |
//!             |                     |                   |
//!             |                     |200-699 from TU    |
//!             |                     |send response      |
//!             |  Request            V                   |
//!             |  send response+-----------+             |
//!             |      +--------|           |             |
//!             |      |        | Completed |<------------+
//!             |      +------->|           |
//!             +<--------------|           |
//!             |Trnsprt Err    +-----------+
//!             |Inform TU            |
//!             |                     |Timer J fires
//!             |                     |-
//!             |                     |
//!             |                     V
//!             |               +-----------+
//!             |               |           |
//!             +-------------->| Terminated|
//!                             |           |
//!                             +-----------+
//! ```
//! Timer J = 64·T1 on UDP, 0 on TCP.

use super::TxOutput;
use crate::sip::msg::Response;
use crate::sip::proto::timers::Timers;
use std::time::Instant;

/// States of [`ServerNonInviteTx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// Request received, no response yet (retransmissions absorbed).
    Trying,
    /// A provisional response was sent.
    Proceeding,
    /// A final response was sent.
    Completed,
    /// Done.
    Terminated,
}

/// A server non-INVITE transaction.
#[derive(Debug)]
pub struct ServerNonInviteTx {
    /// Current state.
    state: ServerNonInviteState,
    /// Last response sent.
    last_response: Option<Vec<u8>>,
    /// Whether the transport is reliable.
    reliable: bool,
    /// Timer values.
    timers: Timers,
    /// Timer J.
    timer_j: Option<Instant>,
}

impl ServerNonInviteTx {
    /// A transaction for a new request, in Trying.
    pub fn new(reliable: bool, timers: Timers) -> Self {
        ServerNonInviteTx {
            state: ServerNonInviteState::Trying,
            last_response: None,
            reliable,
            timers,
            timer_j: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// Whether the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    /// The TU sends a response; ignored once Completed.
    pub fn send_response(&mut self, resp: &Response, now: Instant) -> Vec<TxOutput> {
        if matches!(self.state, ServerNonInviteState::Completed | ServerNonInviteState::Terminated) {
            return Vec::new();
        }
        let bytes = resp.to_bytes();
        self.last_response = Some(bytes.clone());
        if resp.status >= 200 {
            self.state = ServerNonInviteState::Completed;
            self.timer_j = Some(now + self.timers.j(self.reliable));
        } else {
            self.state = ServerNonInviteState::Proceeding;
        }
        vec![TxOutput::Transmit(bytes)]
    }

    /// A retransmission of the request: resend the last response.
    pub fn handle_retransmission(&mut self) -> Vec<TxOutput> {
        match self.state {
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed => {
                self.last_response.iter().cloned().map(TxOutput::Transmit).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TxOutput> {
        if self.timer_j.is_some_and(|t| t <= now) {
            self.state = ServerNonInviteState::Terminated;
            self.timer_j = None;
        }
        Vec::new()
    }

    /// When `handle_timeout` must next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timer_j
    }
}

#[cfg(test)]
#[path = "tests/server_non_invite.rs"]
mod tests;
