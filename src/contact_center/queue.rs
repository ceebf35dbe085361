//! One queue's waiting line as a sans-IO state machine: ordering (priority,
//! then arrival), 1-based positions, the expected-wait estimate, periodic
//! position announcements, overflow at the maximum wait, and the record of
//! which call is being offered to whom.
//!
//! A [`Queue`] does not choose agents: [`super::routing`] does, and tells the
//! queue through [`Queue::offer`], [`Queue::retract`] and [`Queue::answered`].
//! A queue used alone (without [`super::ContactCenter`]) is driven the same
//! way; every input carries `now`, every output is a [`QueueEvent`] drained
//! with [`Queue::poll_event`].
//!
//! ## Run loop
//! After any input, drain [`Queue::poll_event`] until `None`, then sleep until
//! [`Queue::poll_timeout`] (or the next input) and call
//! [`Queue::handle_timeout`] with the time it woke at.
//!
//! ## Expected wait
//! The queue keeps `D̄`, an exponentially weighted moving average of how long
//! the line takes to move up by one place (the *service interval*). When a
//! call leaves the line to a member (answered by a human or handed to an AI)
//! at `t`, the sample is `s = t − max(t_prev, t_enq)`, where `t_prev` is the
//! previous such departure and `t_enq` the departing call's arrival (so a
//! call that arrived to an empty line contributes its own wait). Then
//! `D̄ ← s` for the first sample and `D̄ ← D̄ + (s − D̄) / 4` afterwards.
//! Because departures happen faster when more members serve, `D̄` reflects
//! both handle times and staffing without the queue knowing either.
//! A call at position `p` expects `p·D̄ − min(now − max(t_prev, t_enq), D̄)`:
//! `p` service intervals, less the part of the current one already elapsed.
//! Before the first departure there is no estimate (`None`).

use super::routing::{Prefer, Strategy};
use crate::ids::{HumanAgentId, QueueId};
use std::collections::{BTreeSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What identifies a caller's call to the contact center: any small,
/// copyable, hashable key (skald uses [`crate::ids::CallId`]; tests use
/// integers). Implemented for every type with these bounds.
pub trait CallKey: Copy + Eq + Hash + Debug {}

impl<T: Copy + Eq + Hash + Debug> CallKey for T {}

/// Someone who can take a queued call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Member {
    /// A human agent (rung on their SIP registration or fixed URI).
    Human(HumanAgentId),
    /// An AI agent, by the `name:` of its file in `sip-config/agents/`.
    Ai(String),
}

/// Where a call goes when it has waited `max_wait`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverflowTarget {
    /// Another queue (the call joins it with its priority; waiting restarts).
    Queue(QueueId),
    /// An AI agent, by name.
    Agent(String),
    /// The voicemail application.
    Voicemail,
    /// Offer the caller a callback and end the call.
    Callback,
}

/// Why an offer to a human agent ended without the agent answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetractReason {
    /// The agent did not answer within their ring timeout.
    RingTimeout,
    /// The agent rejected the call (busy, decline).
    Declined,
    /// The agent's registration was lost while ringing.
    AgentOffline,
    /// The caller hung up while the agent was ringing.
    CallerLeft,
    /// The call reached its maximum wait while the agent was ringing.
    Overflow,
}

impl RetractReason {
    /// Whether the agent is skipped for this call afterwards (the agent, not
    /// the caller, ended the offer).
    pub fn skips_agent(self) -> bool {
        matches!(self, Self::RingTimeout | Self::Declined | Self::AgentOffline)
    }
}

/// What a queue asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEvent<C> {
    /// Tell the caller where they are. `position` is 1-based (1 = next to be
    /// served); `expected_wait` is `None` until the queue has history (see
    /// the module doc for the formula).
    Announce {
        /// The waiting call.
        call: C,
        /// 1-based place in line.
        position: usize,
        /// Estimated time until an agent takes the call.
        expected_wait: Option<Duration>,
    },
    /// Connect the call to `member`. A human is now ringing (the call stays
    /// in line until [`Queue::answered`] or [`Queue::retract`]); an AI agent
    /// takes the call at once (the call has left the line; it holds one unit
    /// of the AI member's capacity until [`Queue::ai_call_ended`]).
    Offer {
        /// The call to connect.
        call: C,
        /// Who takes it.
        member: Member,
    },
    /// Stop ringing `agent` for `call`: the offer ended without an answer.
    /// Unless the call left (caller gone, overflow) it is waiting again.
    Retract {
        /// The call that was offered.
        call: C,
        /// The agent that was ringing.
        agent: HumanAgentId,
        /// Why.
        reason: RetractReason,
    },
    /// The call waited `max_wait` and has left this queue for `target`.
    /// [`super::ContactCenter`] itself enqueues it in a target queue; other
    /// targets are the driver's to connect.
    Overflow {
        /// The call.
        call: C,
        /// Where it goes.
        target: OverflowTarget,
        /// Its priority here (kept when the target is another queue).
        priority: u8,
        /// How long it waited in this queue.
        waited: Duration,
    },
}

/// An AI member of a queue and how many calls it may hold at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiMember {
    /// The AI agent's `name:`.
    pub name: String,
    /// Calls it may hold at once from this queue (at least 1).
    pub capacity: usize,
}

/// A queue's behaviour, as configured (see [`super::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Interval between position announcements; the first comes one interval
    /// after the call joins. `None`: never announce.
    pub announce_every: Option<Duration>,
    /// Longest wait before the call overflows (exactly at `arrival +
    /// max_wait`). `None`: wait forever.
    pub max_wait: Option<Duration>,
    /// Where overflowing calls go (set whenever `max_wait` is).
    pub overflow: Option<OverflowTarget>,
    /// How a human member is chosen among the free ones.
    pub strategy: Strategy,
    /// Whether free humans or AI members with capacity are tried first.
    pub prefer: Prefer,
    /// Skills a human member must all have to take this queue's calls.
    pub skills: BTreeSet<String>,
    /// Human members, in configured order (round-robin follows it).
    pub humans: Vec<HumanAgentId>,
    /// AI members, in configured order (the first with free capacity takes).
    pub ai: Vec<AiMember>,
}

/// An error from a queue input that does not fit its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The call is already waiting in this queue.
    #[error("call {0} is already in the queue")]
    AlreadyQueued(String),
    /// The call is not waiting in this queue.
    #[error("call {0} is not in the queue")]
    NotQueued(String),
    /// The call is already being offered to an agent.
    #[error("call {0} is already ringing an agent")]
    AlreadyOffered(String),
    /// The call is not being offered to any human agent.
    #[error("call {0} is not ringing an agent")]
    NotOffered(String),
    /// The named AI member is not in this queue or has no free capacity.
    #[error("AI member {0} is unknown or at capacity")]
    NoCapacity(String),
    /// The call is not held by any AI member of this queue.
    #[error("call {0} is not with an AI member of the queue")]
    NotWithAi(String),
}

/// One queue's line of waiting calls (see the module doc).
#[derive(Debug)]
pub struct Queue<C> {
    /// The queue's name.
    id: QueueId,
    /// Configured behaviour.
    settings: QueueSettings,
    /// Waiting calls in service order: priority descending, then arrival.
    waiting: Vec<Waiting<C>>,
    /// Calls held by AI members: (call, index into `settings.ai`).
    ai_calls: Vec<(C, usize)>,
    /// Round-robin pointer: index into `settings.humans` to try first.
    rr_next: usize,
    /// `D̄`, the EWMA service interval (module doc); `None` before any departure.
    service_interval: Option<Duration>,
    /// When the last call left the line to a member.
    last_departure: Option<Instant>,
    /// Events not yet polled.
    events: VecDeque<QueueEvent<C>>,
}

/// One waiting call.
#[derive(Debug)]
pub(crate) struct Waiting<C> {
    /// The call.
    pub(crate) call: C,
    /// Higher is served first.
    pub(crate) priority: u8,
    /// When it joined this queue.
    pub(crate) since: Instant,
    /// Next position announcement (`None`: announcements off).
    next_announce: Option<Instant>,
    /// When it overflows (`None`: never).
    overflow_at: Option<Instant>,
    /// The human agent ringing for it, if any.
    pub(crate) ringing: Option<HumanAgentId>,
    /// Agents who let this call ring out or declined it: not offered again
    /// until every eligible agent has been (see [`super::routing`]).
    pub(crate) skipped: Vec<HumanAgentId>,
}

impl<C: CallKey> Queue<C> {
    /// An empty queue.
    pub fn new(id: QueueId, settings: QueueSettings) -> Self {
        Queue {
            id,
            settings,
            waiting: Vec::new(),
            ai_calls: Vec::new(),
            rr_next: 0,
            service_interval: None,
            last_departure: None,
            events: VecDeque::new(),
        }
    }

    /// The queue's name.
    pub fn id(&self) -> &QueueId {
        &self.id
    }

    /// Its configured behaviour.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// Number of waiting calls (including those ringing an agent).
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no call is waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether `call` is waiting here.
    pub fn contains(&self, call: C) -> bool {
        self.index(call).is_some()
    }

    /// 1-based place of `call` in line (a call ringing an agent keeps its
    /// place); `None` when it is not waiting here.
    pub fn position(&self, call: C) -> Option<usize> {
        self.index(call).map(|i| i + 1)
    }

    /// The human agent ringing for `call`, if any.
    pub fn ringing(&self, call: C) -> Option<&HumanAgentId> {
        self.index(call).and_then(|i| self.waiting[i].ringing.as_ref())
    }

    /// The current `D̄` (module doc); `None` before the first departure.
    pub fn service_interval(&self) -> Option<Duration> {
        self.service_interval
    }

    /// Calls currently held by the AI member `name`.
    pub fn ai_load(&self, name: &str) -> usize {
        let Some(i) = self.settings.ai.iter().position(|a| a.name == name) else { return 0 };
        self.ai_calls.iter().filter(|(_, m)| *m == i).count()
    }

    /// Estimated time until `call` is taken (formula in the module doc);
    /// `None` when the call is not waiting or the queue has no history.
    pub fn expected_wait(&self, call: C, now: Instant) -> Option<Duration> {
        let i = self.index(call)?;
        let d = self.service_interval?;
        let started = self.last_departure.map_or(self.waiting[i].since, |t| t.max(self.waiting[i].since));
        let elapsed = now.saturating_duration_since(started).min(d);
        Some((d * (i as u32 + 1)).saturating_sub(elapsed))
    }

    /// The caller joins the line behind every call of equal or higher
    /// priority (higher `priority` is served first; equal ones in arrival
    /// order). Errors when it is already waiting here.
    pub fn enqueue(&mut self, call: C, priority: u8, now: Instant) -> Result<(), QueueError> {
        if self.contains(call) {
            return Err(QueueError::AlreadyQueued(format!("{call:?}")));
        }
        let at = self.waiting.iter().position(|w| w.priority < priority).unwrap_or(self.waiting.len());
        self.waiting.insert(
            at,
            Waiting {
                call,
                priority,
                since: now,
                next_announce: self.settings.announce_every.map(|e| now + e),
                overflow_at: self.settings.max_wait.map(|m| now + m),
                ringing: None,
                skipped: Vec::new(),
            },
        );
        Ok(())
    }

    /// The caller left (hung up or was moved elsewhere by the driver). A
    /// ringing offer is retracted ([`RetractReason::CallerLeft`]). Errors
    /// when the call is not waiting here.
    pub fn leave(&mut self, call: C) -> Result<(), QueueError> {
        let i = self.index(call).ok_or_else(|| QueueError::NotQueued(format!("{call:?}")))?;
        let w = self.waiting.remove(i);
        if let Some(agent) = w.ringing {
            self.events.push_back(QueueEvent::Retract { call, agent, reason: RetractReason::CallerLeft });
        }
        Ok(())
    }

    /// Routing assigned `call` to `member` (emits [`QueueEvent::Offer`]). A
    /// human starts ringing; an AI member takes the call out of the line at
    /// once. Errors when the call is not waiting, already ringing, or the AI
    /// member is not in this queue or is at capacity.
    pub fn offer(&mut self, call: C, member: Member, now: Instant) -> Result<(), QueueError> {
        let i = self.index(call).ok_or_else(|| QueueError::NotQueued(format!("{call:?}")))?;
        if self.waiting[i].ringing.is_some() {
            return Err(QueueError::AlreadyOffered(format!("{call:?}")));
        }
        match &member {
            Member::Human(agent) => self.waiting[i].ringing = Some(agent.clone()),
            Member::Ai(name) => {
                let slot = self.settings.ai.iter().position(|a| &a.name == name);
                let Some(slot) = slot.filter(|s| self.ai_free(*s)) else {
                    return Err(QueueError::NoCapacity(name.clone()));
                };
                self.depart(i, now);
                self.ai_calls.push((call, slot));
            }
        }
        self.events.push_back(QueueEvent::Offer { call, member });
        Ok(())
    }

    /// The human offer for `call` ended unanswered (emits
    /// [`QueueEvent::Retract`]); the call waits on in its place, and when
    /// [`RetractReason::skips_agent`] the agent is skipped for it. Errors
    /// when the call is not ringing an agent.
    pub fn retract(&mut self, call: C, reason: RetractReason) -> Result<(), QueueError> {
        let i = self.index(call).ok_or_else(|| QueueError::NotQueued(format!("{call:?}")))?;
        let Some(agent) = self.waiting[i].ringing.take() else {
            return Err(QueueError::NotOffered(format!("{call:?}")));
        };
        if reason.skips_agent() && !self.waiting[i].skipped.contains(&agent) {
            self.waiting[i].skipped.push(agent.clone());
        }
        self.events.push_back(QueueEvent::Retract { call, agent, reason });
        Ok(())
    }

    /// The ringing human answered: the call leaves the line (a departure for
    /// the expected-wait average). Returns the agent. Errors when the call
    /// is not ringing an agent.
    pub fn answered(&mut self, call: C, now: Instant) -> Result<HumanAgentId, QueueError> {
        let i = self.index(call).ok_or_else(|| QueueError::NotQueued(format!("{call:?}")))?;
        let Some(agent) = self.waiting[i].ringing.clone() else {
            return Err(QueueError::NotOffered(format!("{call:?}")));
        };
        self.depart(i, now);
        Ok(agent)
    }

    /// A call held by an AI member ended: its capacity is free again.
    /// Returns the AI member's name. Errors when no AI member holds it.
    pub fn ai_call_ended(&mut self, call: C) -> Result<String, QueueError> {
        let i = self.ai_calls.iter().position(|(c, _)| *c == call);
        let Some(i) = i else { return Err(QueueError::NotWithAi(format!("{call:?}"))) };
        let (_, slot) = self.ai_calls.swap_remove(i);
        Ok(self.settings.ai[slot].name.clone())
    }

    /// Whether an AI member of this queue holds `call`.
    pub fn with_ai(&self, call: C) -> bool {
        self.ai_calls.iter().any(|(c, _)| *c == call)
    }

    /// Fires what is due at `now`: first overflows (calls whose wait reached
    /// `max_wait`, exactly at the deadline; a ringing offer is retracted
    /// first; a queue with `max_wait` but no `overflow` sends calls to
    /// [`OverflowTarget::Voicemail`]), then announcements in position order.
    /// An announcement due while the call is ringing an agent is skipped,
    /// not delayed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].overflow_at.is_some_and(|t| t <= now) {
                let w = self.waiting.remove(i);
                if let Some(agent) = w.ringing {
                    self.events.push_back(QueueEvent::Retract {
                        call: w.call,
                        agent,
                        reason: RetractReason::Overflow,
                    });
                }
                let target = self.settings.overflow.clone().unwrap_or(OverflowTarget::Voicemail);
                self.events.push_back(QueueEvent::Overflow {
                    call: w.call,
                    target,
                    priority: w.priority,
                    waited: now.saturating_duration_since(w.since),
                });
            } else {
                i += 1;
            }
        }
        let Some(every) = self.settings.announce_every else { return };
        for i in 0..self.waiting.len() {
            let Some(due) = self.waiting[i].next_announce.filter(|t| *t <= now) else { continue };
            let mut next = due + every;
            while next <= now {
                next += every;
            }
            self.waiting[i].next_announce = Some(next);
            if self.waiting[i].ringing.is_none() {
                let call = self.waiting[i].call;
                let expected_wait = self.expected_wait(call, now);
                self.events.push_back(QueueEvent::Announce { call, position: i + 1, expected_wait });
            }
        }
    }

    /// The next instant [`Queue::handle_timeout`] has work; `None` when
    /// nothing is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.iter().flat_map(|w| [w.next_announce, w.overflow_at]).flatten().min()
    }

    /// The next event for the driver, oldest first.
    pub fn poll_event(&mut self) -> Option<QueueEvent<C>> {
        self.events.pop_front()
    }

    /// Waiting calls in service order (for routing).
    pub(crate) fn waiting(&self) -> &[Waiting<C>] {
        &self.waiting
    }

    /// Forgets the skipped agents of `call` (routing: everyone was tried).
    pub(crate) fn clear_skipped(&mut self, call: C) {
        if let Some(i) = self.index(call) {
            self.waiting[i].skipped.clear();
        }
    }

    /// Index into `settings.humans` where round-robin starts looking.
    pub(crate) fn rr_next(&self) -> usize {
        self.rr_next
    }

    /// Round-robin picked `settings.humans[index]`: start after it next time.
    pub(crate) fn rr_advance(&mut self, index: usize) {
        self.rr_next = (index + 1) % self.settings.humans.len().max(1);
    }

    /// Whether `settings.ai[slot]` has free capacity.
    pub(crate) fn ai_free(&self, slot: usize) -> bool {
        let load = self.ai_calls.iter().filter(|(_, m)| *m == slot).count();
        load < self.settings.ai[slot].capacity
    }

    fn index(&self, call: C) -> Option<usize> {
        self.waiting.iter().position(|w| w.call == call)
    }

    /// Removes waiting call `i` as served at `now` and updates `D̄`.
    fn depart(&mut self, i: usize, now: Instant) {
        let w = self.waiting.remove(i);
        let started = self.last_departure.map_or(w.since, |t| t.max(w.since));
        let sample = now.saturating_duration_since(started);
        self.service_interval = Some(match self.service_interval {
            None => sample,
            Some(d) if sample >= d => d + (sample - d) / 4,
            Some(d) => d - (d - sample) / 4,
        });
        self.last_departure = Some(now);
    }
}
