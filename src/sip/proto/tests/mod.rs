//! Two-peer tests in virtual time (str0m `tests/common.rs` / quinn
//! `Pair::drive` style): [`SipPair`] moves Transmits between two endpoints
//! with configurable latency and loss and jumps time to the earliest
//! timeout or arrival.

mod flows;
mod refer;
mod registrar;
mod stateless;

use super::{EndpointConfig, Event, InviteParams, Output, SipEndpoint, Timers, Transmit, Transport};
use crate::ids::DialogId;
use crate::sip::msg::{self, SipMessage};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    A,
    B,
}

/// One endpoint with everything it emitted.
pub(crate) struct Peer {
    pub ep: SipEndpoint,
    pub addr: SocketAddr,
    /// Events with the virtual time they came out.
    pub events: Vec<(Duration, Event)>,
    /// Transmits with the virtual time they were sent.
    pub sent: Vec<(Duration, Transmit)>,
    /// Last `Output::Timeout`.
    timeout: Option<Instant>,
}

/// A loss predicate: (sender, virtual time, bytes) → drop?
type DropFn = Box<dyn FnMut(Side, Duration, &[u8]) -> bool>;

/// Two endpoints on a virtual network.
pub(crate) struct SipPair {
    pub a: Peer,
    pub b: Peer,
    pub start: Instant,
    pub now: Instant,
    /// One-way latency.
    pub latency: Duration,
    /// Loss.
    pub drop: DropFn,
    /// In flight: (arrival, receiver, source, transport, bytes).
    in_flight: Vec<(Instant, Side, SocketAddr, Transport, Vec<u8>)>,
}

pub(crate) fn config(port: u16) -> EndpointConfig {
    EndpointConfig { host: "127.0.0.1".into(), port, user_agent: "skald-test".into(), timers: Timers::default() }
}

impl Peer {
    fn new(port: u16, seed: u64, now: Instant) -> Peer {
        Peer {
            ep: SipEndpoint::new(config(port), seed, now),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            events: Vec::new(),
            sent: Vec::new(),
            timeout: None,
        }
    }

    /// Dialog events of `dialog`, in order.
    pub fn dialog_events(&self, dialog: DialogId) -> Vec<super::DialogEvent> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Dialog { dialog: d, event } if *d == dialog => Some(event.clone()),
                _ => None,
            })
            .collect()
    }

    /// Dialogs of the IncomingCall events.
    pub fn incoming(&self) -> Vec<DialogId> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::IncomingCall { dialog, .. } => Some(*dialog),
                _ => None,
            })
            .collect()
    }

    /// Times (ms) at which messages whose start line begins with `start`
    /// were sent.
    pub fn sent_times(&self, start: &str) -> Vec<u128> {
        self.sent
            .iter()
            .filter(|(_, t)| t.bytes.starts_with(start.as_bytes()))
            .map(|(at, _)| at.as_millis())
            .collect()
    }

    /// Parsed messages sent whose start line begins with `start`.
    pub fn sent_msgs(&self, start: &str) -> Vec<SipMessage> {
        self.sent
            .iter()
            .filter(|(_, t)| t.bytes.starts_with(start.as_bytes()))
            .filter_map(|(_, t)| msg::parse(&t.bytes).ok())
            .collect()
    }
}

impl SipPair {
    pub fn new() -> SipPair {
        let start = crate::test_clock::epoch();
        SipPair {
            a: Peer::new(5060, 1, start),
            b: Peer::new(5070, 2, start),
            start,
            now: start,
            latency: Duration::from_millis(10),
            drop: Box::new(|_, _, _| false),
            in_flight: Vec::new(),
        }
    }

    /// Virtual time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn peer(&mut self, side: Side) -> &mut Peer {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// A's INVITE to B.
    pub fn invite_params(&self, transport: Transport) -> InviteParams {
        InviteParams {
            target: format!("sip:bob@{}", self.b.addr),
            dest: self.b.addr,
            transport,
            from_user: "alice".into(),
            from_display: Some("Alice".into()),
            sdp_offer: "v=0\r\n".into(),
            credentials: None,
            extra_headers: vec![("X-Test".into(), "1".into())],
            ring_timeout: None,
        }
    }

    /// Drains both endpoints' outputs into the network and event logs.
    pub fn drain(&mut self) {
        for side in [Side::A, Side::B] {
            loop {
                let elapsed = self.now - self.start;
                let out = self.peer(side).ep.poll_output();
                match out {
                    Output::Timeout(t) => {
                        self.peer(side).timeout = Some(t);
                        break;
                    }
                    Output::Event(e) => self.peer(side).events.push((elapsed, e)),
                    Output::Transmit(t) => {
                        self.peer(side).sent.push((elapsed, t.clone()));
                        let dropped = (self.drop)(side, elapsed, &t.bytes);
                        let to = if t.dest == self.a.addr {
                            Some(Side::A)
                        } else if t.dest == self.b.addr {
                            Some(Side::B)
                        } else {
                            None
                        };
                        let from = self.peer(side).addr;
                        if let (false, Some(to)) = (dropped, to) {
                            self.in_flight.push((self.now + self.latency, to, from, t.transport, t.bytes));
                        }
                    }
                }
            }
        }
    }

    /// Advances to the next arrival or timeout, not beyond `limit`.
    /// Returns false when nothing happens before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.drain();
        let arrival = self.in_flight.iter().map(|f| f.0).min();
        let next = [arrival, self.a.timeout, self.b.timeout].into_iter().flatten().min();
        let Some(next) = next.filter(|n| *n <= limit) else {
            self.now = self.now.max(limit);
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight).into_iter().partition(|f| f.0 <= now);
        self.in_flight = rest;
        for (_, to, from, transport, bytes) in due {
            self.peer(to).ep.handle_datagram(from, transport, &bytes, now);
            self.drain();
        }
        for side in [Side::A, Side::B] {
            if self.peer(side).timeout.is_some_and(|t| t <= now) {
                self.peer(side).ep.handle_timeout(now);
            }
        }
        self.drain();
        true
    }

    /// Runs until `at` after the start.
    pub fn run_until(&mut self, at: Duration) {
        let limit = self.start + at;
        while self.step(limit) {}
    }

    /// Runs for `d` more.
    pub fn run_for(&mut self, d: Duration) {
        let at = self.elapsed() + d;
        self.run_until(at);
    }
}

/// The request or response start line begins with `prefix`, e.g. `"INVITE"`
/// or `"SIP/2.0 200"`, and CSeq method is `method` (for responses).
pub(crate) fn is(bytes: &[u8], prefix: &str, cseq_method: Option<&str>) -> bool {
    if !bytes.starts_with(prefix.as_bytes()) {
        return false;
    }
    match cseq_method {
        None => true,
        Some(m) => msg::parse(bytes)
            .ok()
            .and_then(|msg| msg.headers().cseq().ok())
            .is_some_and(|c| c.method.as_str() == m),
    }
}

pub(crate) fn ms(d: u64) -> Duration {
    Duration::from_millis(d)
}
