//! Human agents and their presence: the pool every queue draws from (one
//! agent may serve several queues). Sans-IO: inputs carry `now`, ring and
//! wrap-up deadlines come back through [`AgentPool::poll_timeout`] and
//! [`AgentPool::handle_timeout`].
//!
//! ## Presence
//! | from | input | to |
//! |---|---|---|
//! | `Offline` | [`AgentPool::online`] (registered) | `Available`, idle since now |
//! | `Available` | [`AgentPool::ring`] | `Ringing { call, until: now + ring timeout }` |
//! | `Ringing` | [`AgentPool::answer`] | `OnCall { call }` |
//! | `Ringing` | `until` reached ([`AgentPool::handle_timeout`]) or [`AgentPool::declined`] | `WrapUp { until: now + MISSED_OFFER_REST }` (rests, then idle since its end) |
//! | `Ringing` | [`AgentPool::stop_ringing`] (caller left, overflow) | `Available`, idle since unchanged |
//! | `OnCall` | [`AgentPool::hang_up`] | `WrapUp { until: now + wrap-up }`, or `Available` (idle since now) when wrap-up is 0 |
//! | `WrapUp` | `until` reached ([`AgentPool::handle_timeout`]) | `Available`, idle since `until` |
//! | any but `OnCall` | [`AgentPool::offline`] (registration lost) | `Offline` |
//! | `OnCall` | [`AgentPool::offline`] | stays `OnCall` (the call goes on); `Offline` at hang-up unless online again first |
//!
//! *Idle since* (the longest-idle key) is when the agent last became
//! available after a call or a missed offer (end of wrap-up / rest) or
//! after coming online.

use super::queue::CallKey;
use crate::ids::HumanAgentId;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long an agent who declined an offer or let it ring out rests (as in
/// wrap-up) before the next offer: a busy phone is not rung again at once.
pub const MISSED_OFFER_REST: Duration = Duration::from_secs(10);

/// A human agent's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence<C> {
    /// Free to take a call.
    Available,
    /// Being offered `call` until `until` (then the offer times out).
    Ringing {
        /// The offered call.
        call: C,
        /// Ring deadline (offer time + the agent's ring timeout).
        until: Instant,
    },
    /// Talking with `call`'s caller.
    OnCall {
        /// The connected call.
        call: C,
    },
    /// After-call work until `until`, then available.
    WrapUp {
        /// End of wrap-up (hang-up + the agent's wrap-up time).
        until: Instant,
    },
    /// Not registered (or logged out): takes no calls.
    Offline,
}

/// A human agent's fixed properties (from `agents:` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentProfile {
    /// The agent's id.
    pub id: HumanAgentId,
    /// The skills the agent has.
    pub skills: BTreeSet<String>,
    /// After-call work time before the next offer.
    pub wrap_up: Duration,
    /// How long an offer rings before it moves on.
    pub ring_timeout: Duration,
}

/// An input that does not fit the agent's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// No agent has this id.
    #[error("unknown agent {0}")]
    UnknownAgent(HumanAgentId),
    /// An agent with this id is already in the pool.
    #[error("agent {0} is already in the pool")]
    DuplicateAgent(HumanAgentId),
    /// The agent cannot be rung: not available.
    #[error("agent {0} is not available")]
    NotAvailable(HumanAgentId),
    /// The agent is not ringing for this call.
    #[error("agent {0} is not ringing for this call")]
    NotRinging(HumanAgentId),
}

/// One human agent in the pool.
#[derive(Debug, Clone)]
struct Agent<C> {
    /// Fixed properties.
    profile: AgentProfile,
    /// Current state.
    presence: Presence<C>,
    /// When the agent last became available (longest-idle key).
    idle_since: Instant,
    /// Registration was lost during a call: offline when it ends.
    offline_after_call: bool,
}

/// All human agents, keyed by id (iteration in id order).
#[derive(Debug, Clone)]
pub struct AgentPool<C> {
    /// The agents.
    agents: BTreeMap<HumanAgentId, Agent<C>>,
}

impl<C: CallKey> Default for AgentPool<C> {
    fn default() -> Self {
        AgentPool { agents: BTreeMap::new() }
    }
}

impl<C: CallKey> AgentPool<C> {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an agent, available from `now` when `online`, else offline.
    /// Errors on a duplicate id.
    pub fn add(&mut self, profile: AgentProfile, online: bool, now: Instant) -> Result<(), AgentError> {
        if self.agents.contains_key(&profile.id) {
            return Err(AgentError::DuplicateAgent(profile.id));
        }
        let presence = if online { Presence::Available } else { Presence::Offline };
        self.agents.insert(profile.id.clone(), Agent { profile, presence, idle_since: now, offline_after_call: false });
        Ok(())
    }

    /// The agent's presence; `None` for an unknown id.
    pub fn presence(&self, id: &HumanAgentId) -> Option<Presence<C>> {
        self.agents.get(id).map(|a| a.presence)
    }

    /// The agent's profile; `None` for an unknown id.
    pub fn profile(&self, id: &HumanAgentId) -> Option<&AgentProfile> {
        self.agents.get(id).map(|a| &a.profile)
    }

    /// When the agent last became available; `None` for an unknown id.
    pub fn idle_since(&self, id: &HumanAgentId) -> Option<Instant> {
        self.agents.get(id).map(|a| a.idle_since)
    }

    /// Whether the agent is known and has every skill in `skills`.
    pub fn has_skills(&self, id: &HumanAgentId, skills: &BTreeSet<String>) -> bool {
        self.agents.get(id).is_some_and(|a| skills.is_subset(&a.profile.skills))
    }

    /// The agent ringing for or talking with `call`, if any.
    pub fn agent_of(&self, call: C) -> Option<&HumanAgentId> {
        self.agents.iter().find_map(|(id, a)| match a.presence {
            Presence::Ringing { call: c, .. } | Presence::OnCall { call: c } if c == call => Some(id),
            _ => None,
        })
    }

    /// The agent registered (or logged in): an offline agent becomes
    /// available (idle since `now`); any other state is kept.
    pub fn online(&mut self, id: &HumanAgentId, now: Instant) -> Result<(), AgentError> {
        let a = self.get_mut(id)?;
        a.offline_after_call = false;
        if a.presence == Presence::Offline {
            a.presence = Presence::Available;
            a.idle_since = now;
        }
        Ok(())
    }

    /// The agent's registration was lost: offline at once, except during a
    /// call, which goes on (the agent is offline when it ends). Returns the
    /// call that was ringing, whose offer the caller must retract.
    pub fn offline(&mut self, id: &HumanAgentId) -> Result<Option<C>, AgentError> {
        let a = self.get_mut(id)?;
        let ringing = match a.presence {
            Presence::OnCall { .. } => {
                a.offline_after_call = true;
                return Ok(None);
            }
            Presence::Ringing { call, .. } => Some(call),
            _ => None,
        };
        a.presence = Presence::Offline;
        Ok(ringing)
    }

    /// Starts ringing an available agent for `call` until `now` + the
    /// agent's ring timeout. Errors when the agent is not available.
    pub fn ring(&mut self, id: &HumanAgentId, call: C, now: Instant) -> Result<(), AgentError> {
        let a = self.get_mut(id)?;
        if a.presence != Presence::Available {
            return Err(AgentError::NotAvailable(id.clone()));
        }
        a.presence = Presence::Ringing { call, until: now + a.profile.ring_timeout };
        Ok(())
    }

    /// The agent declined the offer of `call` (busy, reject): like a ring
    /// out, the agent rests for [`MISSED_OFFER_REST`] before the next
    /// offer (RONA, redirect on no answer). Returns false when the agent was
    /// not ringing for `call`.
    pub fn declined(&mut self, id: &HumanAgentId, call: C, now: Instant) -> bool {
        if !self.stop_ringing(id, call) {
            return false;
        }
        if let Some(a) = self.agents.get_mut(id) {
            a.presence = Presence::WrapUp { until: now + MISSED_OFFER_REST };
        }
        true
    }

    /// Ends the ringing for `call` without an answer: the agent is available
    /// again (idle since unchanged). Returns whether the agent was ringing
    /// for that call (otherwise nothing changes).
    pub fn stop_ringing(&mut self, id: &HumanAgentId, call: C) -> bool {
        let Some(a) = self.agents.get_mut(id) else { return false };
        if !matches!(a.presence, Presence::Ringing { call: c, .. } if c == call) {
            return false;
        }
        a.presence = Presence::Available;
        true
    }

    /// The agent answered `call`: on the call. Errors when the agent is not
    /// ringing for it.
    pub fn answer(&mut self, id: &HumanAgentId, call: C) -> Result<(), AgentError> {
        let a = self.get_mut(id)?;
        if !matches!(a.presence, Presence::Ringing { call: c, .. } if c == call) {
            return Err(AgentError::NotRinging(id.clone()));
        }
        a.presence = Presence::OnCall { call };
        Ok(())
    }

    /// The agent's call `call` ended at `now`: wrap-up until `now` + the
    /// agent's wrap-up time (available at once, idle since `now`, when that
    /// is zero), or offline when the registration was lost during the call.
    /// Returns whether the agent was on that call (otherwise nothing changes).
    pub fn hang_up(&mut self, id: &HumanAgentId, call: C, now: Instant) -> bool {
        let Some(a) = self.agents.get_mut(id) else { return false };
        if a.presence != (Presence::OnCall { call }) {
            return false;
        }
        if std::mem::take(&mut a.offline_after_call) {
            a.presence = Presence::Offline;
        } else if a.profile.wrap_up.is_zero() {
            a.presence = Presence::Available;
            a.idle_since = now;
        } else {
            a.presence = Presence::WrapUp { until: now + a.profile.wrap_up };
        }
        true
    }

    /// Fires the deadlines due at `now`: a ring that reached its timeout
    /// makes the agent available again and is returned (agent, call) so the
    /// offer moves on; a wrap-up that ended makes the agent available, idle
    /// since the wrap-up's end.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(HumanAgentId, C)> {
        let mut rung_out = Vec::new();
        for (id, a) in &mut self.agents {
            match a.presence {
                Presence::Ringing { call, until } if until <= now => {
                    a.presence = Presence::WrapUp { until: now + MISSED_OFFER_REST };
                    rung_out.push((id.clone(), call));
                }
                Presence::WrapUp { until } if until <= now => {
                    a.presence = Presence::Available;
                    a.idle_since = until;
                }
                _ => {}
            }
        }
        rung_out
    }

    /// The earliest ring or wrap-up deadline; `None` when none is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.agents
            .values()
            .filter_map(|a| match a.presence {
                Presence::Ringing { until, .. } | Presence::WrapUp { until } => Some(until),
                _ => None,
            })
            .min()
    }

    fn get_mut(&mut self, id: &HumanAgentId) -> Result<&mut Agent<C>, AgentError> {
        self.agents.get_mut(id).ok_or_else(|| AgentError::UnknownAgent(id.clone()))
    }
}
