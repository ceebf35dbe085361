//! The contact center's run loop: one task that owns the queues and the
//! human agents' presence ([`ContactCenter`], sans-IO) and talks with the
//! call actors of queued callers.
//!
//! In: a caller's actor joins a queue ([`ContactCenterHandle::join`]) and
//! reports what happened to the offers it was given (agent answered,
//! declined or unreachable, call ended); the SIP registrar reports agents'
//! phones registering and unregistering (online/offline). Out: each queued
//! call's actor receives [`QueueNotice`]s (announce your position, ring this
//! agent, stop ringing, go to this AI agent, overflow), and every step is a
//! `queue.*` event on the call record and the live event stream.
//!
//! The loop waits on one of: an input, a registrar event, or the center's
//! next timer ([`ContactCenter::poll_timeout`]); then drains
//! [`ContactCenter::poll_event`].

use crate::contact_center::config::{AgentEndpoint, ContactCenterConfig};
use crate::contact_center::queue::{Member, OverflowTarget, QueueEvent};
use crate::contact_center::routing::ContactCenter;
use crate::events::EventBus;
use crate::ids::{CallId, HumanAgentId, QueueId};
use crate::transports::sip_rtp::registrations::{PhoneEvent, Registrations};
use crate::store::Store;
use crate::store::events::CallEvent;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the contact center tells a queued caller's actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueNotice {
    /// The call is in line at 1-based `position` (on joining, and every
    /// `announce_every`); `expected_wait` is `None` before the queue has
    /// history.
    Position {
        /// 1-based place in line.
        position: usize,
        /// Estimated wait.
        expected_wait: Option<Duration>,
        /// Whether to say it (false for the silent update on joining).
        announce: bool,
    },
    /// Ring this human agent at these SIP URIs (the first is dialed); the
    /// caller keeps hearing hold music until the agent answers.
    Ring {
        /// Who.
        agent: HumanAgentId,
        /// Where (`sip:` URIs: a registered contact, or the fixed URI).
        uri: String,
    },
    /// The offer to `agent` ended without an answer (ring timeout, overflow):
    /// cancel the call to them; the caller waits on.
    StopRinging {
        /// Who.
        agent: HumanAgentId,
    },
    /// The AI agent `name` takes the call (an AI member of the queue, or
    /// the overflow target).
    ToAi {
        /// The agent's `name:`.
        name: String,
    },
    /// The call waited the queue's maximum: record a voicemail.
    Voicemail,
    /// The call waited the queue's maximum: offer a callback and end.
    Callback,
}

/// Why joining a queue failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum JoinError {
    /// No such queue in `queues_file` (or no contact center configured).
    #[error("no queue named `{0}`")]
    UnknownQueue(String),
    /// The call is already queued, or the contact center has stopped.
    #[error("cannot queue the call: {0}")]
    Refused(String),
}

/// What the contact center looks like now (`GET /api/v1/queues`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CenterSnapshot {
    /// Every queue, by name.
    pub queues: Vec<QueueView>,
    /// Every human agent and their presence.
    pub agents: Vec<AgentView>,
}

/// One queue in a [`CenterSnapshot`].
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct QueueView {
    /// Queue name.
    pub name: String,
    /// Calls waiting.
    pub waiting: usize,
    /// The waiting calls in service order.
    pub calls: Vec<WaitingView>,
}

/// A waiting call in a [`QueueView`].
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WaitingView {
    /// skald call id.
    #[schema(value_type = String)]
    pub id: CallId,
    /// 1-based place in line.
    pub position: usize,
    /// Seconds waited so far.
    pub waited_s: u64,
    /// The agent ringing for it, if any.
    pub ringing: Option<String>,
}

/// A human agent in a [`CenterSnapshot`].
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AgentView {
    /// Agent id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `available`, `ringing`, `on_call`, `wrap_up` or `offline`.
    pub presence: String,
}

/// One input to the loop.
enum Input {
    Snapshot(oneshot::Sender<CenterSnapshot>),
    Join {
        call: CallId,
        queue: QueueId,
        priority: u8,
        notices: mpsc::UnboundedSender<QueueNotice>,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    Answered { call: CallId, agent: HumanAgentId },
    Declined { call: CallId, agent: HumanAgentId },
    Ended { call: CallId },
}

/// A cloneable handle on the contact center task.
#[derive(Debug, Clone)]
pub struct ContactCenterHandle {
    tx: mpsc::UnboundedSender<Input>,
    /// Queue names → hold music path, for the actors.
    hold_music: Arc<HashMap<QueueId, Option<std::path::PathBuf>>>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Snapshot(_) => "Snapshot",
            Input::Join { .. } => "Join",
            Input::Answered { .. } => "Answered",
            Input::Declined { .. } => "Declined",
            Input::Ended { .. } => "Ended",
        })
    }
}

impl ContactCenterHandle {
    /// Puts `call` in line in `queue` with `priority` (higher first);
    /// `notices` receives what the caller's actor must do. Errors: an
    /// unknown queue, a call already queued, the task stopped.
    pub async fn join(
        &self,
        call: CallId,
        queue: &str,
        priority: u8,
        notices: mpsc::UnboundedSender<QueueNotice>,
    ) -> Result<(), JoinError> {
        let (reply, rx) = oneshot::channel();
        let queue = QueueId::from(queue);
        self.tx
            .send(Input::Join { call, queue, priority, notices, reply })
            .map_err(|_| JoinError::Refused("the contact center stopped".into()))?;
        rx.await.unwrap_or_else(|_| Err(JoinError::Refused("the contact center stopped".into())))
    }

    /// The agent rung for `call` answered: the caller is with them.
    pub fn answered(&self, call: CallId, agent: HumanAgentId) {
        let _ = self.tx.send(Input::Answered { call, agent });
    }

    /// The agent rung for `call` refused or could not be reached: the next
    /// one is tried.
    pub fn declined(&self, call: CallId, agent: HumanAgentId) {
        let _ = self.tx.send(Input::Declined { call, agent });
    }

    /// The call left the contact center: hung up while waiting, ended with
    /// an agent (who goes to wrap-up), or left to something else.
    pub fn ended(&self, call: CallId) {
        let _ = self.tx.send(Input::Ended { call });
    }

    /// Queues, waiting calls and agents' presence now. `None` when the task
    /// has stopped.
    pub async fn snapshot(&self) -> Option<CenterSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Input::Snapshot(tx)).ok()?;
        rx.await.ok()
    }

    /// The hold music configured for `queue` (a WAV path), if any.
    pub fn hold_music(&self, queue: &str) -> Option<std::path::PathBuf> {
        self.hold_music.get(&QueueId::from(queue)).cloned().flatten()
    }
}

/// Starts the contact center task for `config`; it runs until `shutdown`.
/// Errors: the config names an agent twice or a queue member that is not
/// an agent (already refused when the config loaded).
pub fn start(
    config: Arc<ContactCenterConfig>,
    registrar: Option<Registrations>,
    store: Store,
    events: EventBus,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<ContactCenterHandle, String> {
    let center = ContactCenter::from_config(&config, std::time::Instant::now()).map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::unbounded_channel();
    let hold_music = Arc::new(config.queues.iter().map(|(id, q)| (id.clone(), q.hold_music.clone())).collect());
    let task = Task { center, config, registrar, store, events, calls: HashMap::new(), rx };
    tracker.spawn(task.run(shutdown));
    Ok(ContactCenterHandle { tx, hold_music })
}

/// The task's state.
struct Task {
    center: ContactCenter<CallId>,
    config: Arc<ContactCenterConfig>,
    registrar: Option<Registrations>,
    store: Store,
    events: EventBus,
    /// Queued calls' notice channels.
    calls: HashMap<CallId, mpsc::UnboundedSender<QueueNotice>>,
    rx: mpsc::UnboundedReceiver<Input>,
}

impl Task {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut phones = self.registrar.as_ref().map(|r| r.subscribe()).unwrap_or_default();
        loop {
            let timer = self.center.poll_timeout().map(Instant::from_std);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                input = self.rx.recv() => match input {
                    Some(i) => self.on_input(i).await,
                    None => return,
                },
                ev = phones.next() => self.on_registration(ev).await,
                _ = crate::call::actor::sleep_opt(timer) => self.center.handle_timeout(std::time::Instant::now()),
            }
            self.drain().await;
        }
    }

    async fn on_input(&mut self, input: Input) {
        let now = std::time::Instant::now();
        tracing::debug!(?input, "contact center input");
        match input {
            Input::Snapshot(reply) => {
                let _ = reply.send(self.snapshot(now));
            }
            Input::Join { call, queue, priority, notices, reply } => {
                let r = self.center.enqueue(&queue, call, priority, now).map_err(|e| match self.center.queue(&queue) {
                    None => JoinError::UnknownQueue(queue.to_string()),
                    Some(_) => JoinError::Refused(e.to_string()),
                });
                if r.is_ok() {
                    self.calls.insert(call, notices.clone());
                    let position = self.center.position(call).unwrap_or(1);
                    let expected_wait = self.center.expected_wait(call, now);
                    let _ = notices.send(QueueNotice::Position { position, expected_wait, announce: false });
                    let data = serde_json::json!({ "queue": queue.to_string(), "position": position, "priority": priority });
                    self.event(call, "queue.joined", data).await;
                }
                let _ = reply.send(r);
            }
            Input::Answered { call, agent } => {
                if let Err(e) = self.center.answered(&agent, call, now) {
                    tracing::warn!(error = %e, %agent, "answer reported for an offer that ended");
                }
                let queue = self.center.queue_of(call).map(|q| q.to_string());
                self.event(call, "queue.answered", serde_json::json!({ "agent": agent.to_string(), "queue": queue })).await;
            }
            Input::Declined { call, agent } => {
                if let Err(e) = self.center.declined(&agent, call, now) {
                    tracing::debug!(error = %e, %agent, "decline for an offer that ended");
                }
                self.event(call, "queue.declined", serde_json::json!({ "agent": agent.to_string() })).await;
            }
            Input::Ended { call } => {
                let waiting = self.center.position(call).is_some();
                let r = if waiting { self.center.leave(call, now) } else { self.center.ended(call, now) };
                if let Err(e) = r {
                    tracing::debug!(error = %e, "call end for a call the center no longer holds");
                }
                if self.calls.remove(&call).is_some() {
                    self.event(call, "queue.left", serde_json::json!({ "waiting": waiting })).await;
                }
            }
        }
    }

    fn snapshot(&self, now: std::time::Instant) -> CenterSnapshot {
        use crate::contact_center::agents::Presence;
        let queues = self
            .config
            .queues
            .keys()
            .filter_map(|id| self.center.queue(id))
            .map(|q| {
                let calls: Vec<WaitingView> = q
                    .waiting()
                    .iter()
                    .enumerate()
                    .map(|(i, w)| WaitingView {
                        id: w.call,
                        position: i + 1,
                        waited_s: now.saturating_duration_since(w.since).as_secs(),
                        ringing: w.ringing.as_ref().map(|a| a.to_string()),
                    })
                    .collect();
                QueueView { name: q.id().to_string(), waiting: calls.len(), calls }
            })
            .collect();
        let agents = self
            .config
            .agents
            .iter()
            .map(|a| AgentView {
                id: a.profile.id.to_string(),
                name: a.name.clone(),
                presence: match self.center.pool().presence(&a.profile.id) {
                    Some(Presence::Available) => "available",
                    Some(Presence::Ringing { .. }) => "ringing",
                    Some(Presence::OnCall { .. }) => "on_call",
                    Some(Presence::WrapUp { .. }) => "wrap_up",
                    Some(Presence::Offline) | None => "offline",
                }
                .into(),
            })
            .collect();
        CenterSnapshot { queues, agents }
    }

    /// A phone registered (the agent is online) or its last binding went
    /// (offline).
    async fn on_registration(&mut self, ev: Option<PhoneEvent>) {
        let Some(ev) = ev else { return };
        let now = std::time::Instant::now();
        let (user, online) = match ev {
            PhoneEvent::Registered { user } => (user, true),
            PhoneEvent::Unregistered { user } => {
                let left = match &self.registrar {
                    Some(r) => r.contacts(&user).await.len(),
                    None => 0,
                };
                (user, left > 0)
            }
        };
        for a in self.config.agents.iter().filter(|a| matches!(&a.endpoint, AgentEndpoint::SipUser(u) if *u == user)) {
            let id = &a.profile.id;
            let r = if online { self.center.agent_online(id, now) } else { self.center.agent_offline(id, now) };
            match r {
                Ok(()) => {
                    tracing::info!(agent = %id, online, "agent presence");
                    let data = serde_json::json!({ "agent": id.to_string(), "online": online });
                    self.events.publish(None, "agent.presence", crate::call::service::now_ms(), data);
                }
                Err(e) => tracing::debug!(error = %e, agent = %id, "presence unchanged"),
            }
        }
    }

    /// Turns the center's events into notices and `queue.*` events.
    async fn drain(&mut self) {
        while let Some(ce) = self.center.poll_event() {
            let queue = ce.queue.to_string();
            match ce.event {
                QueueEvent::Announce { call, position, expected_wait } => {
                    self.notify(call, QueueNotice::Position { position, expected_wait, announce: true });
                    let wait = expected_wait.map(|d| d.as_secs());
                    self.event(call, "queue.position", serde_json::json!({ "queue": queue, "position": position, "expected_wait_s": wait })).await;
                }
                QueueEvent::Offer { call, member: Member::Human(agent) } => match self.agent_uri(&agent).await {
                    Some(uri) => {
                        self.event(call, "queue.offer", serde_json::json!({ "queue": queue, "agent": agent.to_string() })).await;
                        self.notify(call, QueueNotice::Ring { agent, uri });
                    }
                    None => {
                        tracing::info!(%agent, "agent has no reachable contact: next");
                        let _ = self.center.declined(&agent, call, std::time::Instant::now());
                    }
                },
                QueueEvent::Offer { call, member: Member::Ai(name) } => {
                    self.event(call, "queue.offer", serde_json::json!({ "queue": queue, "ai": name })).await;
                    self.notify(call, QueueNotice::ToAi { name });
                }
                QueueEvent::Retract { call, agent, reason } => {
                    let data = serde_json::json!({ "queue": queue, "agent": agent.to_string(), "reason": format!("{reason:?}") });
                    self.event(call, "queue.retract", data).await;
                    self.notify(call, QueueNotice::StopRinging { agent });
                }
                QueueEvent::Overflow { call, target, waited, .. } => {
                    let data = serde_json::json!({ "queue": queue, "target": format!("{target:?}"), "waited_s": waited.as_secs() });
                    self.event(call, "queue.overflow", data).await;
                    match target {
                        // The center moved the call into the other queue itself.
                        OverflowTarget::Queue(_) => {}
                        OverflowTarget::Agent(name) => self.notify(call, QueueNotice::ToAi { name }),
                        OverflowTarget::Voicemail => self.notify(call, QueueNotice::Voicemail),
                        OverflowTarget::Callback => self.notify(call, QueueNotice::Callback),
                    }
                }
            }
        }
    }

    /// Where to ring `agent`: its fixed URI, or its phone's registered
    /// contact (the newest binding).
    async fn agent_uri(&self, agent: &HumanAgentId) -> Option<String> {
        let a = self.config.agents.iter().find(|a| &a.profile.id == agent)?;
        match &a.endpoint {
            AgentEndpoint::Uri(u) => Some(u.clone()),
            AgentEndpoint::SipUser(user) => {
                self.registrar.as_ref()?.contacts(user).await.into_iter().next()
            }
        }
    }

    fn notify(&mut self, call: CallId, notice: QueueNotice) {
        if let Some(tx) = self.calls.get(&call)
            && tx.send(notice).is_err()
        {
            self.calls.remove(&call);
        }
    }

    /// Stores a `queue.*` event on the call and publishes it.
    async fn event(&self, call: CallId, kind: &str, data: serde_json::Value) {
        let e = CallEvent { call_id: Some(call), twilio_call_sid: None, kind: kind.into(), at: crate::call::service::now_ms(), data };
        if let Err(err) = self.store.add_event(&e).await {
            tracing::error!(error = %err, kind, "cannot store queue event");
        }
        self.events.publish(e.call_id, &e.kind, e.at, e.data);
    }
}

