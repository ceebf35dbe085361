//! Server INVITE transaction (RFC 3261 §17.2.1, RFC 6026 §7.1).
//!
//! ```text
//!                               |INVITE
//!                               |pass INV to TU
//!            INVITE             V send 100 if TU won't in 200ms
//!            send response+-----------+
//!                +--------|           |--------+101-199 from TU
//!                |        | Proceeding|        |send response
//!                +------->|           |<-------+
//!                         |           |          Transport Err.
//!                         |           |          Inform TU
//!                         |           |--------------->+
//!                         +-----------+                |
//!            300-699 from TU |     |2xx from TU        |
//!            send response   |     |send response      |
//!                            |     V                   |
//!                            |  Accepted: INVITE       |
//!                            |  retransmissions        |
//!                            |  absorbed, Timer L      |
//!                            |  (64*T1) -> Terminated  |
//!                            V                         |
//!            INVITE    +-----------+                   |
//!            send resp |           |                   |
//!                +-----|           |                   |
//!                |     | Completed |                   |
//!                +---->|           |                   |
//!                      +-----------+                   |
//!                        |    ^  |                     |
//!                        |    |  | Timer H fires      |
//!                        +----+  | Inform TU          |
//!                   Timer G fires|                     |
//!                   send response| ACK                 |
//!                                V                     |
//!                      +-----------+                   |
//!                      | Confirmed |                   |
//!                      +-----------+                   |
//!                                |Timer I fires        |
//!                                V                     |
//!                      +-----------+                   |
//!                      | Terminated|<------------------+
//!                      +-----------+
//! ```
//! Timer G starts at T1 and doubles up to T2 (UDP only); Timer H = 64·T1;
//! Timer I = T4 on UDP, 0 on TCP; Timer L = 64·T1. The 2xx itself is
//! retransmitted by the UA core (§13.3.1.4), not by this transaction.

use super::{Retransmit, TxOutput, earliest};
use crate::sip::msg::Response;
use crate::sip::proto::timers::Timers;
use std::time::Instant;

/// States of [`ServerInviteTx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// No final response yet.
    Proceeding,
    /// A 2xx was sent (RFC 6026).
    Accepted,
    /// A 300–699 was sent; waiting for the ACK.
    Completed,
    /// The ACK arrived; absorbing retransmissions.
    Confirmed,
    /// Done.
    Terminated,
}

/// A server INVITE transaction.
#[derive(Debug)]
pub struct ServerInviteTx {
    /// Current state.
    state: ServerInviteState,
    /// Last response sent, resent on INVITE retransmissions.
    last_response: Option<Vec<u8>>,
    /// Status of the last response sent.
    last_status: Option<u16>,
    /// Whether the transport is reliable.
    reliable: bool,
    /// Timer values.
    timers: Timers,
    /// Timer G.
    timer_g: Option<Retransmit>,
    /// Timer H.
    timer_h: Option<Instant>,
    /// Timer I.
    timer_i: Option<Instant>,
    /// Timer L.
    timer_l: Option<Instant>,
}

impl ServerInviteTx {
    /// A transaction for a new INVITE, in Proceeding.
    pub fn new(reliable: bool, timers: Timers) -> Self {
        ServerInviteTx {
            state: ServerInviteState::Proceeding,
            last_response: None,
            last_status: None,
            reliable,
            timers,
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// Status of the last response sent, if any.
    pub fn last_status(&self) -> Option<u16> {
        self.last_status
    }

    /// Whether a final response has been sent.
    pub fn is_final(&self) -> bool {
        self.last_status.is_some_and(|s| s >= 200)
    }

    /// Whether the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    /// The TU sends a response. Ignored unless in Proceeding.
    pub fn send_response(&mut self, resp: &Response, now: Instant) -> Vec<TxOutput> {
        if self.state != ServerInviteState::Proceeding {
            return Vec::new();
        }
        let bytes = resp.to_bytes();
        self.last_response = Some(bytes.clone());
        self.last_status = Some(resp.status);
        match resp.status {
            100..=199 => {}
            200..=299 => {
                self.state = ServerInviteState::Accepted;
                self.timer_l = Some(now + self.timers.t1x64());
            }
            _ => {
                self.state = ServerInviteState::Completed;
                self.timer_g = self
                    .timers
                    .retransmit(self.reliable)
                    .map(|i| Retransmit { at: now + i, interval: i });
                self.timer_h = Some(now + self.timers.t1x64());
            }
        }
        vec![TxOutput::Transmit(bytes)]
    }

    /// A retransmission of the INVITE: resend the last response
    /// (Proceeding, Completed), absorb otherwise.
    pub fn handle_retransmission(&mut self) -> Vec<TxOutput> {
        match self.state {
            ServerInviteState::Proceeding | ServerInviteState::Completed => {
                self.last_response.iter().cloned().map(TxOutput::Transmit).collect()
            }
            _ => Vec::new(),
        }
    }

    /// An ACK matching this transaction (i.e. for a non-2xx final).
    /// Returns whether it moved the transaction to Confirmed.
    pub fn handle_ack(&mut self, now: Instant) -> bool {
        if self.state != ServerInviteState::Completed {
            return false;
        }
        self.state = ServerInviteState::Confirmed;
        self.timer_g = None;
        self.timer_h = None;
        self.timer_i = Some(now + self.timers.t4_or_zero(self.reliable));
        true
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TxOutput> {
        let mut out = Vec::new();
        if self.timer_h.is_some_and(|t| t <= now) {
            self.terminate();
            out.push(TxOutput::Timeout);
            return out;
        }
        if let Some(g) = self.timer_g.filter(|g| g.at <= now) {
            out.extend(self.last_response.iter().cloned().map(TxOutput::Transmit));
            let interval = (g.interval * 2).min(self.timers.t2);
            self.timer_g = Some(Retransmit { at: g.at + interval, interval });
        }
        if self.timer_i.is_some_and(|t| t <= now) || self.timer_l.is_some_and(|t| t <= now) {
            self.terminate();
        }
        out
    }

    /// When `handle_timeout` must next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_g.map(|g| g.at), self.timer_h, self.timer_i, self.timer_l])
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
        self.timer_g = None;
        self.timer_h = None;
        self.timer_i = None;
        self.timer_l = None;
    }
}

#[cfg(test)]
#[path = "tests/server_invite.rs"]
mod tests;
