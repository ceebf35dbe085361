//! Client non-INVITE transaction (RFC 3261 §17.1.2).
//!
//! ```text
//!                                    |Request from TU
//!                                    |send request
//!                Timer E             V
//!                send request  +-----------+
//!                    +---------|           |-------------------+
//!                    |         |  Trying   |  Timer F          |
//!                    +-------->|           |  or Transport Err.|
//!                              +-----------+  inform TU        |
//!                 200-699         |  |                         |
//!                 resp. to TU     |  |1xx                      |
//!                 +---------------+  |resp. to TU              |
//!                 |                  |                         |
//!                 |   Timer E        V       Timer F           |
//!                 |   send req +-----------+ or Transport Err. |
//!                 |  +---------|           | inform TU         |
//!                 |  |         |Proceeding |------------------>|
//!                 |  +-------->|           |-----+             |
//!                 |            +-----------+     |1xx          |
//!                 |              |      ^        |resp to TU   |
//!                 | 200-699      |      +--------+             |
//!                 | resp. to TU  |                             |
//!                 |              |                             |
//!                 |              V                             |
//!                 |            +-----------+                   |
//!                 |            |           |                   |
//!                 |            | Completed |                   |
//!                 |            |           |                   |
//!                 |            +-----------+                   |
//!                 |              ^   |                         |
//!                 |              |   | Timer K                 |
//!                 +--------------+   | -                       |
//!                                    |                         |
//!                                    V                         |
//!              NOTE:           +-----------+                   |
//!                              |           |                   |
//!          transitions         | Terminated|<------------------+
//!          labeled with        |           |
//!          the event           +-----------+
//! ```
//! Timer E starts at T1 and doubles up to T2 in Trying, stays at T2 in
//! Proceeding (UDP only); Timer F = 64·T1; Timer K = T4 on UDP, 0 on TCP.

use super::{Retransmit, TxOutput, earliest};
use crate::sip::msg::{Request, Response};
use crate::sip::proto::timers::Timers;
use std::time::Instant;

/// States of [`ClientNonInviteTx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent, nothing received.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; retransmissions are absorbed.
    Completed,
    /// Done.
    Terminated,
}

/// A client non-INVITE transaction (BYE, CANCEL, OPTIONS …).
#[derive(Debug)]
pub struct ClientNonInviteTx {
    /// Current state.
    state: ClientNonInviteState,
    /// The request.
    request: Request,
    /// The request as sent, for retransmissions.
    bytes: Vec<u8>,
    /// Whether the transport is reliable.
    reliable: bool,
    /// Timer values.
    timers: Timers,
    /// Timer E.
    timer_e: Option<Retransmit>,
    /// Timer F.
    timer_f: Option<Instant>,
    /// Timer K.
    timer_k: Option<Instant>,
}

impl ClientNonInviteTx {
    /// Starts the transaction: the returned outputs send the request.
    pub fn new(request: Request, reliable: bool, timers: Timers, now: Instant) -> (Self, Vec<TxOutput>) {
        let bytes = request.to_bytes();
        let timer_e = timers.retransmit(reliable).map(|i| Retransmit { at: now + i, interval: i });
        let tx = ClientNonInviteTx {
            state: ClientNonInviteState::Trying,
            request,
            bytes: bytes.clone(),
            reliable,
            timers,
            timer_e,
            timer_f: Some(now + timers.t1x64()),
            timer_k: None,
        };
        (tx, vec![TxOutput::Transmit(bytes)])
    }

    /// Current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// Whether the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// A response matched to this transaction.
    pub fn handle_response(&mut self, resp: Response, now: Instant) -> Vec<TxOutput> {
        use ClientNonInviteState::*;
        match (self.state, resp.status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                vec![TxOutput::Response(resp)]
            }
            (Trying | Proceeding, 200..) => {
                self.state = Completed;
                self.timer_e = None;
                self.timer_f = None;
                self.timer_k = Some(now + self.timers.t4_or_zero(self.reliable));
                vec![TxOutput::Response(resp)]
            }
            _ => Vec::new(),
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TxOutput> {
        let mut out = Vec::new();
        if self.timer_f.is_some_and(|t| t <= now) {
            self.terminate();
            out.push(TxOutput::Timeout);
            return out;
        }
        if let Some(e) = self.timer_e.filter(|e| e.at <= now) {
            out.push(TxOutput::Transmit(self.bytes.clone()));
            let interval = match self.state {
                ClientNonInviteState::Proceeding => self.timers.t2,
                _ => (e.interval * 2).min(self.timers.t2),
            };
            self.timer_e = Some(Retransmit { at: e.at + interval, interval });
        }
        if self.timer_k.is_some_and(|t| t <= now) {
            self.terminate();
        }
        out
    }

    /// When `handle_timeout` must next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_e.map(|e| e.at), self.timer_f, self.timer_k])
    }

    fn terminate(&mut self) {
        self.state = ClientNonInviteState::Terminated;
        self.timer_e = None;
        self.timer_f = None;
        self.timer_k = None;
    }
}

#[cfg(test)]
#[path = "tests/client_non_invite.rs"]
mod tests;
