//! Client INVITE transaction (RFC 3261 §17.1.1, RFC 6026 §7.2).
//!
//! ```text
//!                                |INVITE from TU
//!              Timer A fires     |INVITE sent
//!              Reset A,          V                      Timer B fires
//!              INVITE sent +-----------+                or Transport Err.
//!                +---------|           |---------------+inform TU
//!                |         |  Calling  |               |
//!                +-------->|           |-------------->|
//!                          +-----------+ 2xx           |
//!                             |  |       2xx to TU     |
//!                             |  |1xx                  |
//!     300-699 +---------------+  |1xx to TU            |
//!    ACK sent |                  |                     |
//! resp. to TU |  1xx             V                     |
//!             |  1xx to TU  -----------+               |
//!             |  +---------|           |               |
//!             |  |         |Proceeding |-------------->|
//!             |  +-------->|           | 2xx           |
//!             |            +-----------+ 2xx to TU     |
//!             |       300-699    |                     |
//!             |       ACK sent,  |                     |
//!             |       resp. to TU|                     |
//!             |                  |    2xx: Accepted    |
//!             |                  |    (2xx to TU until |
//!             |                  |     Timer M = 64*T1)|
//!             |  300-699         V                     |
//!             |  ACK sent  +-----------+Transport Err. |
//!             |  +---------|           |Inform TU      |
//!             |  |         | Completed |-------------->|
//!             |  +-------->|           |               |
//!             |            +-----------+               |
//!             |              ^   |                     |
//!             |              |   | Timer D fires       |
//!             +--------------+   | -                   |
//!                                |                     |
//!                                V                     |
//!                          +-----------+               |
//!                          |           |               |
//!                          | Terminated|<--------------+
//!                          |           |
//!                          +-----------+
//! ```
//! Timer A starts at T1 and doubles on every retransmission (UDP only);
//! Timer B = 64·T1; Timer D = 32 s on UDP, 0 on TCP. In Accepted, every 2xx
//! (retransmissions, or other forks) goes to the TU, which ACKs it itself
//! (§13.2.2.4).

use super::{Retransmit, TxOutput, ack_for_non_2xx, earliest};
use crate::sip::msg::{Request, Response};
use crate::sip::proto::timers::Timers;
use std::time::Instant;

/// States of [`ClientInviteTx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, nothing received.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A 2xx arrived; later 2xx are passed to the TU (RFC 6026).
    Accepted,
    /// A 300–699 arrived and was ACKed; retransmissions are re-ACKed.
    Completed,
    /// Done.
    Terminated,
}

/// A client INVITE transaction.
#[derive(Debug)]
pub struct ClientInviteTx {
    /// Current state.
    state: ClientInviteState,
    /// The INVITE, to build the non-2xx ACK from.
    request: Request,
    /// The INVITE as sent, for retransmissions.
    bytes: Vec<u8>,
    /// The ACK sent for the non-2xx final response.
    ack: Option<Vec<u8>>,
    /// Whether the transport is reliable (no retransmissions).
    reliable: bool,
    /// Timer values.
    timers: Timers,
    /// Timer A.
    timer_a: Option<Retransmit>,
    /// Timer B.
    timer_b: Option<Instant>,
    /// Timer D.
    timer_d: Option<Instant>,
    /// Timer M (Accepted).
    timer_m: Option<Instant>,
}

impl ClientInviteTx {
    /// Starts the transaction: the returned outputs send the INVITE.
    pub fn new(request: Request, reliable: bool, timers: Timers, now: Instant) -> (Self, Vec<TxOutput>) {
        let bytes = request.to_bytes();
        let timer_a = timers.retransmit(reliable).map(|i| Retransmit { at: now + i, interval: i });
        let tx = ClientInviteTx {
            state: ClientInviteState::Calling,
            request,
            bytes: bytes.clone(),
            ack: None,
            reliable,
            timers,
            timer_a,
            timer_b: Some(now + timers.t1x64()),
            timer_d: None,
            timer_m: None,
        };
        (tx, vec![TxOutput::Transmit(bytes)])
    }

    /// Current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// Whether the transaction is over and can be dropped.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// The INVITE.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// A response matched to this transaction.
    pub fn handle_response(&mut self, resp: Response, now: Instant) -> Vec<TxOutput> {
        use ClientInviteState::*;
        let mut out = Vec::new();
        match (self.state, resp.status) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.timer_a = None;
                out.push(TxOutput::Response(resp));
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.timer_a = None;
                self.timer_b = None;
                self.timer_m = Some(now + self.timers.t1x64());
                out.push(TxOutput::Response(resp));
            }
            (Accepted, 200..=299) => out.push(TxOutput::Response(resp)),
            (Calling | Proceeding, _) if resp.status >= 300 => {
                let ack = ack_for_non_2xx(&self.request, &resp).to_bytes();
                out.push(TxOutput::Transmit(ack.clone()));
                out.push(TxOutput::Response(resp));
                self.ack = Some(ack);
                self.state = Completed;
                self.timer_a = None;
                self.timer_b = None;
                self.timer_d = Some(now + self.timers.d(self.reliable));
            }
            (Completed, 300..) => {
                if let Some(ack) = &self.ack {
                    out.push(TxOutput::Transmit(ack.clone()));
                }
            }
            _ => {}
        }
        out
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TxOutput> {
        let mut out = Vec::new();
        if self.timer_b.is_some_and(|t| t <= now) {
            self.terminate();
            out.push(TxOutput::Timeout);
            return out;
        }
        if let Some(a) = self.timer_a.filter(|a| a.at <= now) {
            out.push(TxOutput::Transmit(self.bytes.clone()));
            let interval = a.interval * 2;
            self.timer_a = Some(Retransmit { at: a.at + interval, interval });
        }
        if self.timer_d.is_some_and(|t| t <= now) || self.timer_m.is_some_and(|t| t <= now) {
            self.terminate();
        }
        out
    }

    /// When `handle_timeout` must next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_a.map(|a| a.at), self.timer_b, self.timer_d, self.timer_m])
    }

    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        self.timer_a = None;
        self.timer_b = None;
        self.timer_d = None;
        self.timer_m = None;
    }
}

#[cfg(test)]
#[path = "tests/client_invite.rs"]
mod tests;
