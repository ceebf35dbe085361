//! Routing: which member takes which waiting call, and [`ContactCenter`],
//! the sans-IO core that ties every [`Queue`] to the shared [`AgentPool`].
//!
//! ## Choosing a member for a call
//! Eligible humans are the queue's human members that are
//! [`Presence::Available`], have every skill the queue requires, and have
//! not let this call ring out or declined it. When every available,
//! skill-matching member has been skipped, the call's skip list is cleared
//! so that a call is never stranded while someone is free (a lone agent who
//! missed the ring is rung again). Among the eligible:
//! - [`Strategy::LongestIdle`]: the one idle longest (earliest *idle since*,
//!   see [`super::agents`]); ties go to configured order.
//! - [`Strategy::RoundRobin`]: the first in configured order at or after
//!   the queue's rotating pointer, which then moves past the one chosen.
//!
//! AI members take a call when they have free capacity: with
//! [`Prefer::Human`] (the default) only when no human is eligible, with
//! [`Prefer::Ai`] before any human. The first AI member in configured order
//! with free capacity is chosen.
//!
//! ## Serving order across queues
//! Every time something changes, waiting calls that are not ringing anyone
//! are considered across all queues by priority (higher first), then
//! arrival (earlier first), then queue name, and each is offered to the
//! member its queue chooses, if any. An agent in two queues thus takes the
//! more urgent, then the older, call.
//!
//! ## Run loop
//! Inputs (`enqueue`, `leave`, `agent_online`, `agent_offline`, `answered`,
//! `declined`, `ended`, `handle_timeout`) each take `now`. After each,
//! drain [`ContactCenter::poll_event`] until `None`, then sleep until
//! [`ContactCenter::poll_timeout`] or the next input.

use super::agents::{AgentError, AgentPool, AgentProfile, Presence};
use super::config::ContactCenterConfig;
use super::queue::{CallKey, Member, OverflowTarget, Queue, QueueError, QueueEvent, QueueSettings, RetractReason};
use crate::ids::{HumanAgentId, QueueId};
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// How a queue picks among free human members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The member idle longest since their last call (or since coming online).
    #[default]
    LongestIdle,
    /// Members in turn, following configured order.
    RoundRobin,
}

/// Whether humans or AI members are offered a queue's calls first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Prefer {
    /// Humans first; AI members take calls when no human is free.
    #[default]
    Human,
    /// AI members first; humans take calls when every AI member is full.
    Ai,
}

/// An input the contact center cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// No queue has this name.
    #[error("unknown queue {0}")]
    UnknownQueue(QueueId),
    /// A queue with this name already exists.
    #[error("queue {0} already exists")]
    DuplicateQueue(QueueId),
    /// A queue names a human member that is not in the pool.
    #[error("queue {queue}: unknown agent {agent}")]
    UnknownMember {
        /// The queue.
        queue: QueueId,
        /// The missing agent.
        agent: HumanAgentId,
    },
    /// The call is neither waiting, ringing nor connected through the center.
    #[error("unknown call {0}")]
    UnknownCall(String),
    /// The call is already waiting in some queue.
    #[error("call {0} is already queued")]
    AlreadyQueued(String),
    /// A queue refused the input.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The agent pool refused the input.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// An event of one queue, as drained from [`ContactCenter::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CenterEvent<C> {
    /// The queue it concerns.
    pub queue: QueueId,
    /// What to do.
    pub event: QueueEvent<C>,
}

/// All queues and the agent pool, routed together (see the module doc).
#[derive(Debug)]
pub struct ContactCenter<C> {
    /// Queues by name.
    queues: BTreeMap<QueueId, Queue<C>>,
    /// Human agents and their presence.
    pool: AgentPool<C>,
    /// Events not yet polled, oldest first.
    events: VecDeque<CenterEvent<C>>,
}

impl<C: CallKey> Default for ContactCenter<C> {
    fn default() -> Self {
        ContactCenter { queues: BTreeMap::new(), pool: AgentPool::new(), events: VecDeque::new() }
    }
}

impl<C: CallKey> ContactCenter<C> {
    /// No queues, no agents.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the center from a validated config. Agents with a fixed `uri`
    /// are available from `now`; agents with a `sip_user` start offline
    /// until [`ContactCenter::agent_online`] (their registration).
    pub fn from_config(config: &ContactCenterConfig, now: Instant) -> Result<Self, RoutingError> {
        let mut cc = Self::new();
        for a in &config.agents {
            cc.add_agent(a.profile.clone(), a.is_fixed_uri(), now)?;
        }
        for (id, q) in &config.queues {
            cc.add_queue(id.clone(), q.settings.clone())?;
        }
        Ok(cc)
    }

    /// Adds a human agent (available from `now` when `online`).
    pub fn add_agent(&mut self, profile: AgentProfile, online: bool, now: Instant) -> Result<(), RoutingError> {
        Ok(self.pool.add(profile, online, now)?)
    }

    /// Adds a queue. Errors on a duplicate name or a human member not in the
    /// pool (add agents first).
    pub fn add_queue(&mut self, id: QueueId, settings: QueueSettings) -> Result<(), RoutingError> {
        if self.queues.contains_key(&id) {
            return Err(RoutingError::DuplicateQueue(id));
        }
        if let Some(agent) = settings.humans.iter().find(|h| self.pool.presence(h).is_none()) {
            return Err(RoutingError::UnknownMember { queue: id, agent: agent.clone() });
        }
        self.queues.insert(id.clone(), Queue::new(id, settings));
        Ok(())
    }

    /// A queue, by name.
    pub fn queue(&self, id: &QueueId) -> Option<&Queue<C>> {
        self.queues.get(id)
    }

    /// The agent pool.
    pub fn pool(&self) -> &AgentPool<C> {
        &self.pool
    }

    /// The queue `call` waits in, if any.
    pub fn queue_of(&self, call: C) -> Option<&QueueId> {
        self.queues.values().find(|q| q.contains(call)).map(Queue::id)
    }

    /// 1-based place of `call` in its queue; `None` when not waiting.
    pub fn position(&self, call: C) -> Option<usize> {
        self.queues.values().find_map(|q| q.position(call))
    }

    /// Expected wait of `call` in its queue (see [`super::queue`]); `None`
    /// when not waiting or the queue has no history.
    pub fn expected_wait(&self, call: C, now: Instant) -> Option<std::time::Duration> {
        self.queues.values().find_map(|q| q.expected_wait(call, now))
    }

    /// A caller joins `queue` with `priority` (higher first) at `now`; it
    /// may be offered to a member at once. Errors on an unknown queue or a
    /// call already waiting somewhere.
    pub fn enqueue(&mut self, queue: &QueueId, call: C, priority: u8, now: Instant) -> Result<(), RoutingError> {
        if self.queue_of(call).is_some() {
            return Err(RoutingError::AlreadyQueued(format!("{call:?}")));
        }
        let q = self.queues.get_mut(queue).ok_or_else(|| RoutingError::UnknownQueue(queue.clone()))?;
        q.enqueue(call, priority, now)?;
        self.settle(now);
        Ok(())
    }

    /// The caller hung up (or was taken out) while waiting; an agent ringing
    /// for it is freed ([`QueueEvent::Retract`] with
    /// [`RetractReason::CallerLeft`]). Errors when the call is not waiting.
    pub fn leave(&mut self, call: C, now: Instant) -> Result<(), RoutingError> {
        let q = self.queue_mut_of(call)?;
        q.leave(call)?;
        self.settle(now);
        Ok(())
    }

    /// The agent registered: an offline agent becomes available.
    pub fn agent_online(&mut self, agent: &HumanAgentId, now: Instant) -> Result<(), RoutingError> {
        self.pool.online(agent, now)?;
        self.settle(now);
        Ok(())
    }

    /// The agent's registration was lost: offline (after the current call,
    /// if talking); a call ringing it is offered elsewhere
    /// ([`RetractReason::AgentOffline`]).
    pub fn agent_offline(&mut self, agent: &HumanAgentId, now: Instant) -> Result<(), RoutingError> {
        if let Some(call) = self.pool.offline(agent)? {
            self.queue_mut_of(call)?.retract(call, RetractReason::AgentOffline)?;
        }
        self.settle(now);
        Ok(())
    }

    /// The ringing agent answered `call`: the call leaves its queue and the
    /// agent is on the call. Errors when the agent is not ringing for it.
    pub fn answered(&mut self, agent: &HumanAgentId, call: C, now: Instant) -> Result<(), RoutingError> {
        self.pool.answer(agent, call)?;
        self.queue_mut_of(call)?.answered(call, now)?;
        self.settle(now);
        Ok(())
    }

    /// The ringing agent rejected `call` (busy, declined): the agent is
    /// available again, skipped for this call, and the call is offered on.
    pub fn declined(&mut self, agent: &HumanAgentId, call: C, now: Instant) -> Result<(), RoutingError> {
        if !self.pool.declined(agent, call, now) {
            return Err(AgentError::NotRinging(agent.clone()).into());
        }
        self.queue_mut_of(call)?.retract(call, RetractReason::Declined)?;
        self.settle(now);
        Ok(())
    }

    /// A connected call ended at `now`: its human agent starts wrap-up, or
    /// its AI member's capacity is freed. Errors when no member holds it.
    pub fn ended(&mut self, call: C, now: Instant) -> Result<(), RoutingError> {
        let human = self.pool.agent_of(call).cloned();
        let done = match human {
            Some(agent) => self.pool.hang_up(&agent, call, now),
            None => match self.queues.values_mut().find(|q| q.with_ai(call)) {
                Some(q) => q.ai_call_ended(call).is_ok(),
                None => false,
            },
        };
        if !done {
            return Err(RoutingError::UnknownCall(format!("{call:?}")));
        }
        self.settle(now);
        Ok(())
    }

    /// Fires what is due at `now`: ring timeouts (the offer moves to the
    /// next member), ends of wrap-up, overflows, announcements; then routes.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (_agent, call) in self.pool.handle_timeout(now) {
            if let Some(q) = self.queues.values_mut().find(|q| q.contains(call)) {
                // The ring may already be retracted; then there is nothing to do.
                let _ = q.retract(call, RetractReason::RingTimeout);
            }
        }
        for q in self.queues.values_mut() {
            q.handle_timeout(now);
        }
        self.settle(now);
    }

    /// The next instant [`ContactCenter::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queues.values().filter_map(Queue::poll_timeout).chain(self.pool.poll_timeout()).min()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<CenterEvent<C>> {
        self.events.pop_front()
    }

    fn queue_mut_of(&mut self, call: C) -> Result<&mut Queue<C>, RoutingError> {
        self.queues
            .values_mut()
            .find(|q| q.contains(call))
            .ok_or_else(|| RoutingError::UnknownCall(format!("{call:?}")))
    }

    /// Collects the queues' events (keeping the pool in step with them),
    /// routes, and repeats until nothing changes.
    fn settle(&mut self, now: Instant) {
        loop {
            let mut drained = Vec::new();
            for q in self.queues.values_mut() {
                while let Some(event) = q.poll_event() {
                    drained.push(CenterEvent { queue: q.id().clone(), event });
                }
            }
            for e in &drained {
                match &e.event {
                    QueueEvent::Retract { call, agent, .. } => {
                        self.pool.stop_ringing(agent, *call);
                    }
                    QueueEvent::Overflow { call, target: OverflowTarget::Queue(next), priority, .. } => {
                        if let Some(q) = self.queues.get_mut(next) {
                            // Cannot fail: the call just left the only queue it was in.
                            let _ = q.enqueue(*call, *priority, now);
                        }
                    }
                    _ => {}
                }
            }
            let routed = self.route(now);
            let idle = drained.is_empty() && !routed;
            self.events.extend(drained);
            if idle {
                return;
            }
        }
    }

    /// Offers waiting calls to chosen members (module doc); returns whether
    /// any offer was made.
    fn route(&mut self, now: Instant) -> bool {
        let mut calls: Vec<(u8, Instant, QueueId, C)> = self
            .queues
            .values()
            .flat_map(|q| {
                q.waiting().iter().filter(|w| w.ringing.is_none()).map(|w| (w.priority, w.since, q.id().clone(), w.call))
            })
            .collect();
        calls.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut any = false;
        // Queues with no free human and no AI capacity left: their calls are
        // skipped for the rest of this pass (offers only use capacity up), so
        // a long line with every agent busy costs one check per queue.
        let mut saturated: Vec<QueueId> = Vec::new();
        for (_, _, qid, call) in calls {
            if saturated.contains(&qid) {
                continue;
            }
            let Some(q) = self.queues.get_mut(&qid) else { continue };
            if !has_capacity(q, &self.pool) {
                saturated.push(qid);
                continue;
            }
            let Some(member) = choose(q, &self.pool, call) else { continue };
            if let Member::Human(agent) = &member
                && self.pool.ring(agent, call, now).is_err()
            {
                continue;
            }
            if q.offer(call, member, now).is_ok() {
                any = true;
            }
        }
        any
    }
}

/// Chooses the member to offer `call` of queue `q` to (module doc); `None`
/// when nobody can take it now. May clear the call's skip list and moves the
/// round-robin pointer when it picks by round-robin.
pub(crate) fn choose<C: CallKey>(q: &mut Queue<C>, pool: &AgentPool<C>, call: C) -> Option<Member> {
    let ai = (0..q.settings().ai.len()).find(|s| q.ai_free(*s)).map(|s| Member::Ai(q.settings().ai[s].name.clone()));
    if q.settings().prefer == Prefer::Ai && ai.is_some() {
        return ai;
    }
    match choose_human(q, pool, call) {
        Some(agent) => Some(Member::Human(agent)),
        None => ai,
    }
}

/// Whether any member of `q` could take a call now: a free human with the
/// queue's skills, or an AI member with capacity left.
fn has_capacity<C: CallKey>(q: &Queue<C>, pool: &AgentPool<C>) -> bool {
    let s = q.settings();
    s.humans.iter().any(|h| pool.presence(h) == Some(Presence::Available) && pool.has_skills(h, &s.skills))
        || s.ai.iter().any(|a| q.ai_load(&a.name) < a.capacity)
}

fn choose_human<C: CallKey>(q: &mut Queue<C>, pool: &AgentPool<C>, call: C) -> Option<HumanAgentId> {
    let settings = q.settings();
    let free: Vec<usize> = (0..settings.humans.len())
        .filter(|i| {
            let h = &settings.humans[*i];
            pool.presence(h) == Some(Presence::Available) && pool.has_skills(h, &settings.skills)
        })
        .collect();
    if free.is_empty() {
        return None;
    }
    let skipped = &q.waiting().iter().find(|w| w.call == call)?.skipped;
    let mut eligible: Vec<usize> = free.iter().copied().filter(|i| !skipped.contains(&settings.humans[*i])).collect();
    if eligible.is_empty() {
        q.clear_skipped(call);
        eligible = free;
    }
    let settings = q.settings();
    let pick = match settings.strategy {
        Strategy::LongestIdle => {
            eligible.into_iter().min_by_key(|i| (pool.idle_since(&settings.humans[*i]), *i))?
        }
        Strategy::RoundRobin => {
            let start = q.rr_next();
            let n = settings.humans.len();
            eligible.into_iter().min_by_key(|i| (i + n - start % n) % n)?
        }
    };
    let agent = q.settings().humans[pick].clone();
    if q.settings().strategy == Strategy::RoundRobin {
        q.rr_advance(pick);
    }
    Some(agent)
}
