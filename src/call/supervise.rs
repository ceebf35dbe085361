//! Supervision of a live call: supervisors listen, whisper, barge in or
//! take over, with their audio over a WebSocket
//! (`/api/v1/calls/{id}/audio`) or their own SIP phone
//! ([`super::monitor`]), mixed in the call's actor by
//! [`crate::pipeline::mixer`]. `Supervision` holds the sessions and the
//! rules; the call actor (here) wires it to the caller's leg, whatever its
//! transport (SIP/RTP, Twilio Media Streams, the browser).
//!
//! Audio format both ways: 16 kHz mono PCM16, 20 ms frames of
//! [`FRAME`] = 320 samples (640 bytes little-endian on the socket).
//!
//! A session is created by a [`CallCommand::Supervise`] (mode `listen`,
//! `whisper`, `barge` or `takeover`), gets its audio channels when the
//! supervisor's socket attaches ([`CallCommand::SuperviseAttach`]), changes
//! mode by later `Supervise` commands naming it, and ends on `leave`, when
//! its socket closes, or when no socket attached within
//! [`ATTACH_TIMEOUT`]. Any number of sessions may run at once.
//!
//! Audio per mode, every caller frame (the caller's RTP clocks the mix):
//!
//! | mode | the supervisor hears | the supervisor's audio goes to |
//! |---|---|---|
//! | `listen` | caller + agent side | nobody |
//! | `whisper` | caller + agent side | the bridged target only (never the caller); an AI agent ignores whisper audio, its whisper is typed `text`: an instruction to an LLM agent for the rest of the call (409 for a flow agent) |
//! | `barge` | caller + agent side | caller and bridged target; an AI agent is on hold (neither speaks nor hears) while any supervisor barges in, and goes on when none does |
//! | `takeover` | caller | caller; the AI agent leaves the call for good (409 on a bridged call: barge in instead) |
//!
//! "Agent side" is the AI agent's audio as actually sent to the caller, or
//! the bridged target's audio. Supervisors who talk also hear each other.
//! After a takeover the call ends (`supervisor-left`) when the last
//! supervisor who talks to the caller leaves; a listener that leaves or
//! whose browser disconnects never touches the call.
//!
//! Channels never block the call: frames to a supervisor go with
//! `try_send` and are dropped when the socket falls behind; frames from a
//! supervisor are kept to at most [`MIC_MAX_FRAMES`] (the oldest dropped),
//! so a burst cannot build delay toward the caller.
//!
//! [`CallCommand::Supervise`]: crate::call::command::CallCommand::Supervise
//! [`CallCommand::SuperviseAttach`]: crate::call::command::CallCommand::SuperviseAttach

use super::{CallActor, Exit, VoiceAgent};
use crate::call::command::Reply;
use crate::pipeline::mixer::{self, Input};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Samples in one 20 ms frame at 16 kHz (640 bytes as PCM16).
pub const FRAME: usize = crate::pipeline::FRAME_SAMPLES;
/// Most supervisor frames kept waiting (jitter), 100 ms; older ones drop.
pub const MIC_MAX_FRAMES: usize = 5;
/// Frames buffered in each direction of a session's channels.
pub const LINK_FRAMES: usize = 50;
/// How long a new session waits for its audio socket.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
/// Most frames queued toward the caller from supervisors (100 ms).
const CALLER_QUEUE_MAX: usize = 5;
/// Agent-side audio kept for the next mix (100 ms).
const AGENT_MAX_FRAMES: usize = 5;

/// What a supervisor does on a call (`action` of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuperviseAction {
    /// Hear caller and agent side; nobody hears the supervisor.
    Listen,
    /// Speak to the agent side only (typed text: an LLM instruction).
    Whisper,
    /// Three-way: caller and agent side hear the supervisor.
    Barge,
    /// The AI agent leaves; supervisor and caller talk.
    Takeover,
    /// End the session.
    Leave,
}

impl SuperviseAction {
    /// The API's name of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            SuperviseAction::Listen => "listen",
            SuperviseAction::Whisper => "whisper",
            SuperviseAction::Barge => "barge",
            SuperviseAction::Takeover => "takeover",
            SuperviseAction::Leave => "leave",
        }
    }

    /// The supervisor's microphone is used in this mode.
    fn talks(self) -> bool {
        matches!(self, SuperviseAction::Whisper | SuperviseAction::Barge | SuperviseAction::Takeover)
    }

    /// The caller hears the supervisor in this mode.
    fn to_caller(self) -> bool {
        matches!(self, SuperviseAction::Barge | SuperviseAction::Takeover)
    }

    /// A bridged target hears the supervisor in this mode.
    fn to_target(self) -> bool {
        matches!(self, SuperviseAction::Whisper | SuperviseAction::Barge)
    }
}

/// The actor's answer to an accepted `Supervise` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Session id (pass it to change the mode, and to the audio socket).
    pub session: String,
    /// The session's mode now (`leave` once ended).
    pub mode: SuperviseAction,
}

/// Why the actor refused a supervision command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuperviseError {
    /// No such session on this call (HTTP 404).
    #[error("no supervision session `{0}` on this call")]
    UnknownSession(String),
    /// The action does not fit the call's state (HTTP 409); the text says why.
    #[error("{0}")]
    NotPossible(String),
}

/// What the actor sends a supervisor's socket.
#[derive(Debug, Clone, PartialEq)]
pub enum SupervisorOut {
    /// One 20 ms frame of the mix the supervisor hears ([`FRAME`] samples).
    Audio(Vec<i16>),
    /// A status message for the client, e.g. `{"type":"mode","mode":"barge"}`
    /// or `{"type":"left"}`.
    Status(serde_json::Value),
}

/// A session's audio channels, handed to its socket on attach. When the
/// actor drops its ends the call has ended (or the session was left).
#[derive(Debug)]
pub struct SupervisorLink {
    /// Frames and status for the supervisor.
    pub audio: mpsc::Receiver<SupervisorOut>,
    /// The supervisor's microphone, [`FRAME`]-sample frames.
    pub mic: mpsc::Sender<Vec<i16>>,
}

/// A bounded sample FIFO: keeps at most `max` samples, dropping the oldest.
#[derive(Debug, Default)]
pub(crate) struct Fifo {
    /// The samples, oldest first.
    buf: VecDeque<i16>,
    /// Most samples kept.
    max: usize,
}

impl Fifo {
    /// An empty FIFO holding at most `max` samples.
    pub(crate) fn new(max: usize) -> Fifo {
        Fifo { buf: VecDeque::new(), max }
    }

    /// Appends `samples`, dropping the oldest beyond the limit.
    pub(crate) fn push(&mut self, samples: &[i16]) {
        self.buf.extend(samples.iter().copied());
        let excess = self.buf.len().saturating_sub(self.max);
        self.buf.drain(..excess);
    }

    /// `n` samples when that many are buffered.
    pub(crate) fn pull(&mut self, n: usize) -> Option<Vec<i16>> {
        (self.buf.len() >= n).then(|| self.buf.drain(..n).collect())
    }

    /// Up to `n` samples, padded with silence to `n`.
    pub(crate) fn pull_padded(&mut self, n: usize) -> Vec<i16> {
        let k = n.min(self.buf.len());
        let mut v: Vec<i16> = self.buf.drain(..k).collect();
        v.resize(n, 0);
        v
    }

    /// Samples buffered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Drops everything buffered.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }
}

/// The actor's ends of an attached socket.
struct Link {
    /// To the socket.
    tx: mpsc::Sender<SupervisorOut>,
    /// From the socket (microphone).
    rx: mpsc::Receiver<Vec<i16>>,
}

/// One supervisor on the call.
struct Session {
    /// Session id.
    id: String,
    /// Current mode (never `Leave`).
    mode: SuperviseAction,
    /// Who (API principal name).
    by: String,
    /// The socket, once attached.
    link: Option<Link>,
    /// When created (attach deadline).
    created: Instant,
    /// Microphone jitter buffer.
    mic: Fifo,
    /// Mixed audio not yet sent as whole frames.
    out: Fifo,
}

/// A session that ended during a tick, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Session id.
    pub(crate) id: String,
    /// Who.
    pub(crate) by: String,
    /// Its last mode.
    pub(crate) mode: SuperviseAction,
    /// `socket-closed`, `no-audio-socket` or `leave`.
    pub(crate) why: &'static str,
}

/// What one caller frame's mix produced for the call.
#[derive(Debug, Default)]
pub(crate) struct Tick {
    /// Supervisor audio for the caller (barge, takeover).
    pub(crate) to_caller: Option<Vec<i16>>,
    /// Sessions that ended.
    pub(crate) ended: Vec<Ended>,
    /// Whether any session barges changed (an AI agent's hold).
    pub(crate) hold_changed: bool,
    /// After a takeover nobody talks to the caller any more: end the call.
    pub(crate) abandoned: bool,
}

/// What the actor knows about its call, for checking a supervisor's
/// action ([`Supervision::command`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallFacts {
    /// Media flows (the call is answered).
    pub(crate) media: bool,
    /// An AI voice agent runs the call.
    pub(crate) voice: bool,
    /// That agent is an LLM agent (takes whispered text).
    pub(crate) llm: bool,
    /// A second leg (a person) is connected.
    pub(crate) bridged: bool,
}

/// What an accepted command asks of the call.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The answer for the API.
    pub(crate) info: SessionInfo,
    /// Whispered text: a standing instruction to the LLM agent.
    pub(crate) instruction: Option<String>,
    /// The AI agent leaves the call for good.
    pub(crate) take_over: bool,
    /// The AI agent's hold changed (clear what it had queued).
    pub(crate) hold_changed: bool,
    /// After a takeover nobody talks to the caller any more: end the call.
    pub(crate) abandoned: bool,
}

/// Every supervision session of one call, and the per-frame mix. Pure
/// apart from the non-blocking channel operations; the actor passes `now`.
#[derive(Default)]
pub(crate) struct Supervision {
    /// Sessions, oldest first.
    sessions: Vec<Session>,
    /// Agent-side audio since the last caller frame.
    agent: Fifo,
    /// Supervisor audio for a bridged target, this frame (whisper, barge).
    target: Option<Vec<i16>>,
    /// The AI agent left (takeover): supervisors own the caller.
    taken_over: bool,
}

impl Supervision {
    /// True without sessions (nothing to do per frame).
    pub(crate) fn is_idle(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Any session in barge mode (the AI agent is held meanwhile).
    pub(crate) fn barging(&self) -> bool {
        self.sessions.iter().any(|s| s.mode == SuperviseAction::Barge)
    }

    /// Supervisors own the caller's audio after a takeover.
    pub(crate) fn taken_over(&self) -> bool {
        self.taken_over
    }

    /// Agent-side audio actually sent (AI) or received (bridged target).
    pub(crate) fn agent_audio(&mut self, audio: &[i16]) {
        if self.sessions.is_empty() || audio.is_empty() {
            return;
        }
        if self.agent.max == 0 {
            self.agent = Fifo::new(AGENT_MAX_FRAMES * FRAME);
        }
        self.agent.push(audio);
    }

    /// Starts a session in `mode`; returns its id.
    pub(crate) fn start(&mut self, mode: SuperviseAction, by: &str, now: Instant) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.sessions.push(Session {
            id: id.clone(),
            mode,
            by: by.to_string(),
            link: None,
            created: now,
            mic: Fifo::new(MIC_MAX_FRAMES * FRAME),
            out: Fifo::new(LINK_FRAMES * FRAME),
        });
        self.mark_takeover(mode);
        id
    }

    /// The mode of session `id`.
    pub(crate) fn mode(&self, id: &str) -> Option<SuperviseAction> {
        self.sessions.iter().find(|s| s.id == id).map(|s| s.mode)
    }

    /// Changes session `id`'s mode and tells its socket.
    pub(crate) fn set_mode(&mut self, id: &str, mode: SuperviseAction) -> Result<(), SuperviseError> {
        let s = self.find(id)?;
        s.mode = mode;
        if !mode.talks() {
            s.mic.clear();
        }
        status(s, serde_json::json!({ "type": "mode", "mode": mode.as_str() }));
        self.mark_takeover(mode);
        Ok(())
    }

    /// Ends session `id` (`leave`); its socket is told and closed.
    pub(crate) fn leave(&mut self, id: &str) -> Result<Ended, SuperviseError> {
        let i = self.sessions.iter().position(|s| s.id == id).ok_or_else(|| SuperviseError::UnknownSession(id.into()))?;
        let s = self.sessions.remove(i);
        status(&s, serde_json::json!({ "type": "left" }));
        Ok(Ended { id: s.id, by: s.by, mode: s.mode, why: "leave" })
    }

    /// Attaches a socket to session `id`: the socket's ends of two new
    /// channels. A session takes one socket.
    pub(crate) fn attach(&mut self, id: &str) -> Result<SupervisorLink, SuperviseError> {
        let s = self.find(id)?;
        if s.link.is_some() {
            return Err(SuperviseError::NotPossible(format!("session `{id}` already has an audio socket")));
        }
        let (tx, audio) = mpsc::channel(LINK_FRAMES);
        let (mic, rx) = mpsc::channel(LINK_FRAMES);
        let _ = tx.try_send(SupervisorOut::Status(serde_json::json!({ "type": "mode", "mode": s.mode.as_str() })));
        s.link = Some(Link { tx, rx });
        Ok(SupervisorLink { audio, mic })
    }

    /// After a takeover: whether no supervisor talks to the caller any more
    /// (the call should end).
    pub(crate) fn caller_abandoned(&self) -> bool {
        self.taken_over && !self.sessions.iter().any(|s| s.mode.to_caller())
    }

    /// Session `id` is the only one the caller hears.
    pub(crate) fn last_to_caller(&self, id: &str) -> bool {
        let mut talking = self.sessions.iter().filter(|s| s.mode.to_caller());
        talking.next().is_some_and(|s| s.id == id) && talking.next().is_none()
    }

    /// Supervisor audio mixed into what a bridged target hears this frame.
    pub(crate) fn to_target<'a>(&self, frame: &'a [i16]) -> Cow<'a, [i16]> {
        match &self.target {
            Some(t) => Cow::Owned(mixer::mix(&[Input::new(frame), Input::new(t)])),
            None => Cow::Borrowed(frame),
        }
    }

    /// One caller frame: reads the supervisors' microphones, sends each
    /// supervisor its mix (caller + agent side + the other supervisors who
    /// talk), and returns the supervisors' audio for the caller. `bridged`:
    /// a second leg exists (whisper and barge audio go to it).
    pub(crate) fn tick(&mut self, caller: &[i16], bridged: bool, now: Instant) -> Tick {
        let n = caller.len();
        let mut tick = Tick::default();
        let was_barging = self.barging();
        let agent = self.agent.pull_padded(n);
        // Microphones: drain the channels into the jitter buffers.
        let mut closed = vec![false; self.sessions.len()];
        for (i, s) in self.sessions.iter_mut().enumerate() {
            let Some(link) = s.link.as_mut() else {
                closed[i] = now.duration_since(s.created) >= ATTACH_TIMEOUT;
                continue;
            };
            loop {
                match link.rx.try_recv() {
                    Ok(f) if s.mode.talks() => s.mic.push(&f),
                    Ok(_) => {}
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed[i] = true;
                        break;
                    }
                }
            }
        }
        let mics: Vec<Option<Vec<i16>>> =
            self.sessions.iter_mut().map(|s| if s.mode.talks() { s.mic.pull(n) } else { None }).collect();
        let mix_of = |pick: &dyn Fn(usize, &Session) -> bool, sessions: &[Session]| -> Option<Vec<i16>> {
            let inputs: Vec<Input<'_>> = sessions
                .iter()
                .enumerate()
                .filter(|(i, s)| pick(*i, s))
                .filter_map(|(i, _)| mics[i].as_deref().map(Input::new))
                .collect();
            (!inputs.is_empty()).then(|| mixer::mix(&inputs))
        };
        tick.to_caller = mix_of(&|_, s| s.mode.to_caller(), &self.sessions);
        self.target = if bridged { mix_of(&|_, s| s.mode.to_target(), &self.sessions) } else { None };
        let others: Vec<Option<Vec<i16>>> = (0..self.sessions.len()).map(|i| mix_of(&|j, _| j != i, &self.sessions)).collect();
        for ((s, others), closed) in self.sessions.iter_mut().zip(others).zip(closed.iter_mut()) {
            let Some(link) = s.link.as_ref() else { continue };
            let mut inputs = vec![Input::new(caller), Input::new(&agent)];
            if let Some(o) = others.as_deref() {
                inputs.push(Input::new(o));
            }
            s.out.push(&mixer::mix(&inputs));
            while let Some(frame) = s.out.pull(FRAME) {
                match link.tx.try_send(SupervisorOut::Audio(frame)) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        *closed = true;
                        break;
                    }
                }
            }
        }
        for i in (0..self.sessions.len()).rev() {
            if closed[i] {
                let s = self.sessions.remove(i);
                let why = if s.link.is_some() { "socket-closed" } else { "no-audio-socket" };
                tick.ended.push(Ended { id: s.id, by: s.by, mode: s.mode, why });
            }
        }
        if self.sessions.is_empty() {
            self.agent.clear();
        }
        tick.hold_changed = was_barging != self.barging();
        tick.abandoned = self.caller_abandoned();
        tick
    }

    /// A `Supervise` command: checks `mode` against the call (`facts`)
    /// and the sessions, then starts, changes or ends a session. Errors:
    /// [`SuperviseError::UnknownSession`] for a `session` that is not on
    /// the call; [`SuperviseError::NotPossible`] when the call's state does
    /// not allow the action (see the module's table).
    pub(crate) fn command(
        &mut self,
        facts: CallFacts,
        session: Option<String>,
        mode: SuperviseAction,
        text: Option<String>,
        by: &str,
        now: Instant,
    ) -> Result<Applied, SuperviseError> {
        let text = text.filter(|t| !t.trim().is_empty());
        self.check(facts, session.as_deref(), mode, text.is_some())?;
        let was_barging = self.barging();
        let info = match (session, mode) {
            (None, SuperviseAction::Leave) => return Err(SuperviseError::NotPossible("`leave` needs a `session`".into())),
            (Some(id), SuperviseAction::Leave) => {
                let e = self.leave(&id)?;
                tracing::info!(session = %e.id, by = %e.by, "supervisor left");
                SessionInfo { session: e.id, mode: SuperviseAction::Leave }
            }
            (Some(id), m) => {
                self.set_mode(&id, m)?;
                SessionInfo { session: id, mode: m }
            }
            (None, m) => {
                let id = self.start(m, by, now);
                tracing::info!(session = %id, %by, mode = m.as_str(), "supervisor joined");
                SessionInfo { session: id, mode: m }
            }
        };
        let take_over = mode == SuperviseAction::Takeover;
        Ok(Applied {
            info,
            instruction: text,
            take_over,
            hold_changed: facts.voice && !facts.bridged && !take_over && was_barging != self.barging(),
            abandoned: self.caller_abandoned(),
        })
    }

    /// Rejects what the call's state does not allow.
    fn check(&self, facts: CallFacts, session: Option<&str>, mode: SuperviseAction, has_text: bool) -> Result<(), SuperviseError> {
        let not = |why: &str| Err(SuperviseError::NotPossible(why.into()));
        if !facts.media {
            return not("the call has no media yet");
        }
        if let Some(id) = session
            && self.mode(id).is_none()
        {
            return Err(SuperviseError::UnknownSession(id.into()));
        }
        let agent = facts.voice || facts.bridged;
        match mode {
            SuperviseAction::Listen | SuperviseAction::Leave => {}
            SuperviseAction::Whisper if has_text && (facts.bridged || !facts.llm) => {
                return not("whisper text needs an LLM agent");
            }
            SuperviseAction::Whisper if has_text => {}
            SuperviseAction::Whisper | SuperviseAction::Barge if !agent && !self.taken_over => {
                return not("this call has no agent to whisper to or barge in on");
            }
            SuperviseAction::Takeover if facts.bridged => {
                return not("takeover of a bridged call is not supported; barge in instead");
            }
            _ => {}
        }
        if self.taken_over
            && matches!(mode, SuperviseAction::Listen | SuperviseAction::Whisper)
            && session.is_some_and(|id| self.last_to_caller(id))
        {
            return not("the agent has left the call: the last supervisor talking to the caller can only barge, take over or leave");
        }
        Ok(())
    }

    fn find(&mut self, id: &str) -> Result<&mut Session, SuperviseError> {
        self.sessions.iter_mut().find(|s| s.id == id).ok_or_else(|| SuperviseError::UnknownSession(id.into()))
    }

    fn mark_takeover(&mut self, mode: SuperviseAction) {
        if mode == SuperviseAction::Takeover {
            self.taken_over = true;
        }
    }
}

/// Sends a status message to a session's socket, if attached (dropped when
/// its channel is full).
fn status(s: &Session, msg: serde_json::Value) {
    if let Some(l) = &s.link {
        let _ = l.tx.try_send(SupervisorOut::Status(msg));
    }
}

impl CallActor {
    /// What the supervision checks need to know about this call.
    fn supervise_facts(&self) -> CallFacts {
        CallFacts {
            media: self.answered_at.is_some(),
            voice: self.voice.is_some(),
            llm: self.voice.as_ref().is_some_and(VoiceAgent::is_llm),
            bridged: self.bridged(),
        }
    }

    /// A `Supervise` command: start, change or end a session. Checks the
    /// action against the call's state; answers on `reply`.
    pub(super) async fn on_supervise(
        &mut self,
        session: Option<String>,
        mode: SuperviseAction,
        text: Option<String>,
        by: String,
        reply: Reply<Result<SessionInfo, SuperviseError>>,
    ) -> Option<Exit> {
        let facts = self.supervise_facts();
        let applied = match self.supervision.command(facts, session, mode, text, &by, Instant::now()) {
            Ok(a) => a,
            Err(e) => {
                reply.send(Err(e));
                return None;
            }
        };
        reply.send(Ok(applied.info.clone()));
        if let Some(t) = &applied.instruction
            && let Some(v) = self.voice.as_mut()
        {
            v.add_instruction(t);
            tracing::info!(%by, "supervisor instruction to the agent");
        }
        if applied.take_over {
            self.supervise_take_over().await;
        }
        if applied.hold_changed {
            self.supervise_hold_changed();
        }
        if applied.abandoned {
            return Some(self.hangup("supervisor-left").await);
        }
        None
    }

    /// A supervisor's socket attaches to its session.
    pub(super) fn on_supervise_attach(&mut self, session: &str, reply: Reply<Result<SupervisorLink, SuperviseError>>) {
        reply.send(self.supervision.attach(session));
    }

    /// Hook for every caller frame (before it goes anywhere else): the
    /// supervisors' mix. Ends the call when a takeover's last supervisor
    /// left.
    pub(super) async fn supervise_caller_frame(&mut self, frame: &[i16]) -> Option<Exit> {
        if self.supervision.is_idle() {
            return None;
        }
        let tick = self.supervision.tick(frame, self.bridged(), Instant::now());
        if let (Some(audio), Some(m)) = (tick.to_caller, self.leg.as_mut()) {
            m.trim(CALLER_QUEUE_MAX);
            m.play(&audio);
            if self.stereo.is_some() && !self.bridged() && !self.queued() {
                // The supervisors are all the caller hears (the agent is
                // held or gone): their side of the recording.
                self.agent_sent.extend_from_slice(&audio);
            }
        }
        for e in tick.ended {
            tracing::info!(session = %e.id, by = %e.by, why = e.why, "supervisor left");
            let data = serde_json::json!({ "session": e.id, "by": e.by, "mode": e.mode.as_str(), "why": e.why });
            self.event("supervisor.left", data).await;
        }
        if tick.hold_changed && self.voice.is_some() && !self.bridged() {
            self.supervise_hold_changed();
        }
        if tick.abandoned {
            return Some(self.hangup("supervisor-left").await);
        }
        None
    }

    /// Whether supervisors own the caller's audio now (barge on an AI call,
    /// or after a takeover): it goes to them, not to the agent or app.
    pub(super) fn supervise_owns_caller(&self) -> bool {
        self.supervision.taken_over() || self.supervise_holds_agent()
    }

    /// Whether the AI agent is on hold for a barge-in.
    pub(super) fn supervise_holds_agent(&self) -> bool {
        self.voice.is_some() && !self.bridged() && self.supervision.barging()
    }

    /// The AI agent leaves the call for good; supervisors own the caller.
    async fn supervise_take_over(&mut self) {
        if let Some(m) = self.leg.as_mut() {
            m.flush();
        }
        self.app = None;
        if self.voice.is_some() {
            self.voice_leaves().await;
            tracing::info!("takeover: the agent left the call");
            self.event("supervisor.takeover", serde_json::json!({})).await;
        }
    }

    /// The AI agent's hold changed: on hold its audio stops at once; back
    /// from hold, supervisor audio still queued is dropped (so the agent's
    /// playout accounting only sees its own frames).
    fn supervise_hold_changed(&mut self) {
        if let Some(m) = self.leg.as_mut() {
            m.flush();
        }
        tracing::info!(held = self.supervision.barging(), "barge-in: the agent's hold changed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call run by a flow (not LLM) voice agent, answered, not bridged.
    const AI: CallFacts = CallFacts { media: true, voice: true, llm: false, bridged: false };

    #[test]
    fn commands_are_checked_against_the_call() {
        let mut sup = Supervision::default();
        let now = Instant::now();
        let not_possible = |r: Result<Applied, SuperviseError>| matches!(r, Err(SuperviseError::NotPossible(_)));
        let no_media = CallFacts { media: false, ..AI };
        assert!(not_possible(sup.command(no_media, None, SuperviseAction::Listen, None, "ann", now)), "not answered yet");
        let e = sup.command(AI, None, SuperviseAction::Whisper, Some("offer a discount".into()), "ann", now).unwrap_err();
        assert_eq!(e, SuperviseError::NotPossible("whisper text needs an LLM agent".into()));
        let llm = CallFacts { llm: true, ..AI };
        let a = sup.command(llm, None, SuperviseAction::Whisper, Some("offer a discount".into()), "ann", now).unwrap();
        assert_eq!(a.instruction.as_deref(), Some("offer a discount"));
        assert!(!a.hold_changed && !a.take_over && !a.abandoned);
        let e = sup.command(AI, Some("nope".into()), SuperviseAction::Barge, None, "ann", now).unwrap_err();
        assert_eq!(e, SuperviseError::UnknownSession("nope".into()));
        let bridged = CallFacts { voice: false, bridged: true, ..AI };
        assert!(not_possible(sup.command(bridged, None, SuperviseAction::Takeover, None, "ann", now)), "barge in instead");
        let nobody = CallFacts { voice: false, ..AI };
        assert!(not_possible(sup.command(nobody, None, SuperviseAction::Barge, None, "ann", now)), "no agent to barge in on");
        assert!(not_possible(sup.command(AI, None, SuperviseAction::Leave, None, "ann", now)), "leave needs a session");
    }

    #[test]
    fn barge_holds_the_agent_and_leaving_after_a_takeover_abandons_the_caller() {
        let mut sup = Supervision::default();
        let now = Instant::now();
        let a = sup.command(AI, None, SuperviseAction::Listen, None, "ann", now).unwrap();
        assert!(!a.hold_changed);
        let id = a.info.session.clone();
        let b = sup.command(AI, Some(id.clone()), SuperviseAction::Barge, None, "ann", now).unwrap();
        assert!(b.hold_changed, "barge holds the AI agent");
        let l = sup.command(AI, Some(id.clone()), SuperviseAction::Listen, None, "ann", now).unwrap();
        assert!(l.hold_changed, "back to listen: the agent goes on");
        let bridged = CallFacts { bridged: true, ..AI };
        let b = sup.command(bridged, Some(id.clone()), SuperviseAction::Barge, None, "ann", now).unwrap();
        assert!(!b.hold_changed, "on a bridged call nobody is held");
        let t = sup.command(AI, Some(id.clone()), SuperviseAction::Takeover, None, "ann", now).unwrap();
        assert!(t.take_over && !t.hold_changed && !t.abandoned, "{t:?}");
        let gone = CallFacts { voice: false, ..AI };
        let r = sup.command(gone, Some(id.clone()), SuperviseAction::Listen, None, "ann", now);
        assert!(matches!(r, Err(SuperviseError::NotPossible(_))), "the last one with the caller cannot just listen");
        let left = sup.command(gone, Some(id), SuperviseAction::Leave, None, "ann", now).unwrap();
        assert_eq!(left.info.mode, SuperviseAction::Leave);
        assert!(left.abandoned, "nobody is left with the caller");
    }

    fn tone(n: usize, amp: i16) -> Vec<i16> {
        (0..n).map(|i| if i % 2 == 0 { amp } else { -amp }).collect()
    }

    #[test]
    fn the_fifo_keeps_the_newest_samples() {
        let mut f = Fifo::new(5);
        f.push(&[1, 2, 3, 4]);
        f.push(&[5, 6, 7]);
        assert_eq!(f.len(), 5);
        assert_eq!(f.pull(3), Some(vec![3, 4, 5]));
        assert_eq!(f.pull(3), None);
        assert_eq!(f.pull_padded(4), vec![6, 7, 0, 0]);
    }

    #[test]
    fn a_listener_hears_caller_and_agent_and_nobody_hears_it() {
        let mut sup = Supervision::default();
        let now = Instant::now();
        let id = sup.start(SuperviseAction::Listen, "sam", now);
        let mut link = sup.attach(&id).unwrap();
        assert!(matches!(link.audio.try_recv(), Ok(SupervisorOut::Status(s)) if s["mode"] == "listen"));
        link.mic.try_send(tone(FRAME, 5000)).unwrap();
        sup.agent_audio(&vec![100; FRAME]);
        let tick = sup.tick(&vec![1000; FRAME], true, now);
        assert_eq!(tick.to_caller, None, "a listener is heard by nobody");
        assert_eq!(sup.to_target(&[7; 4]).as_ref(), &[7; 4]);
        let Ok(SupervisorOut::Audio(f)) = link.audio.try_recv() else { panic!() };
        assert_eq!(f, vec![1100; FRAME], "caller + agent");
        assert!(tick.ended.is_empty());
    }

    #[test]
    fn barge_reaches_caller_and_target_whisper_only_the_target() {
        let mut sup = Supervision::default();
        let now = Instant::now();
        let w = sup.start(SuperviseAction::Whisper, "wendy", now);
        let b = sup.start(SuperviseAction::Barge, "bob", now);
        let mut lw = sup.attach(&w).unwrap();
        let mut lb = sup.attach(&b).unwrap();
        lw.mic.try_send(vec![10; FRAME]).unwrap();
        lb.mic.try_send(vec![200; FRAME]).unwrap();
        let tick = sup.tick(&vec![0; FRAME], true, now);
        assert_eq!(tick.to_caller, Some(vec![200; FRAME]), "only the barge reaches the caller");
        assert_eq!(sup.to_target(&vec![1; FRAME]).as_ref(), vec![211; FRAME].as_slice(), "both reach the target");
        // Supervisors hear each other.
        let _ = lw.audio.try_recv();
        let _ = lb.audio.try_recv();
        assert_eq!(lw.audio.try_recv(), Ok(SupervisorOut::Audio(vec![200; FRAME])));
        assert_eq!(lb.audio.try_recv(), Ok(SupervisorOut::Audio(vec![10; FRAME])));
        // Not bridged: whisper audio goes nowhere.
        lw.mic.try_send(vec![10; FRAME]).unwrap();
        sup.tick(&vec![0; FRAME], false, now);
        assert_eq!(sup.to_target(&[1]).as_ref(), &[1]);
        assert!(sup.barging());
    }

    #[test]
    fn microphone_bursts_are_capped_and_listeners_discard_theirs() {
        let mut sup = Supervision::default();
        let now = Instant::now();
        let id = sup.start(SuperviseAction::Takeover, "tom", now);
        let link = sup.attach(&id).unwrap();
        for i in 0..20 {
            link.mic.try_send(vec![i; FRAME]).unwrap();
        }
        let tick = sup.tick(&vec![0; FRAME], false, now);
        assert_eq!(tick.to_caller, Some(vec![15; FRAME]), "the oldest frames of a burst are dropped");
        sup.set_mode(&id, SuperviseAction::Listen).unwrap();
        link.mic.try_send(vec![9; FRAME]).unwrap();
        assert_eq!(sup.tick(&vec![0; FRAME], false, now).to_caller, None);
        assert!(sup.caller_abandoned(), "after a takeover nobody talks to the caller");
    }

    #[test]
    fn a_closed_socket_or_a_missing_one_ends_the_session() {
        let mut sup = Supervision::default();
        let now = Instant::now();
        let a = sup.start(SuperviseAction::Listen, "ann", now);
        let b = sup.start(SuperviseAction::Listen, "ben", now);
        let link = sup.attach(&a).unwrap();
        assert!(matches!(sup.attach(&a), Err(SuperviseError::NotPossible(_))), "one socket per session");
        assert_eq!(sup.attach("nope").unwrap_err(), SuperviseError::UnknownSession("nope".into()));
        drop(link);
        let tick = sup.tick(&vec![0; FRAME], false, now + Duration::from_secs(1));
        assert_eq!(tick.ended.len(), 1);
        assert_eq!((tick.ended[0].id.as_str(), tick.ended[0].why), (a.as_str(), "socket-closed"));
        let tick = sup.tick(&vec![0; FRAME], false, now + ATTACH_TIMEOUT);
        assert_eq!((tick.ended[0].id.as_str(), tick.ended[0].why), (b.as_str(), "no-audio-socket"));
        assert!(sup.is_idle());
        assert!(!sup.caller_abandoned(), "listeners leaving never end the call");
    }

    #[test]
    fn leave_tells_the_socket_and_closes_it() {
        let mut sup = Supervision::default();
        let id = sup.start(SuperviseAction::Listen, "sam", Instant::now());
        let mut link = sup.attach(&id).unwrap();
        let _ = link.audio.try_recv();
        assert_eq!(sup.leave(&id).unwrap().why, "leave");
        assert!(matches!(link.audio.try_recv(), Ok(SupervisorOut::Status(s)) if s["type"] == "left"));
        assert!(matches!(link.audio.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
        assert!(sup.leave(&id).is_err());
    }
}
