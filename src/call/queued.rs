//! A caller waiting in a contact-center queue: hold music, spoken position
//! announcements, offers to human agents (a second leg, as for a warm
//! transfer: see [`super::bridge`]), hand-over to an AI agent, and the
//! overflow endings (voicemail, callback).
//!
//! The queue's logic lives in [`crate::contact_center`] and its run loop in
//! [`crate::call::contact`]; this module is the caller's side of it: it
//! turns [`QueueNotice`]s into audio and legs, and reports answers,
//! declines and the end of the call back.
//!
//! Audio while waiting: the queue's hold-music WAV (any rate, resampled to
//! 16 kHz mono once) looped, kept `AHEAD` frames ahead on the caller's
//! RTP queue; an announcement replaces the queued music and the music
//! resumes when it has played. No queue hold music configured: ringback.

use super::bridge::ringback;
use super::{CallActor, Exit};
use crate::agent::escalation::{Brief, TransferMode, TransferRequest};
use crate::call::contact::QueueNotice;
use crate::call::state::CallState;
use crate::ids::HumanAgentId;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Hold-music frames kept queued toward the caller.
const AHEAD: usize = 3;
/// Longest voicemail message.
const VOICEMAIL_MAX: Duration = Duration::from_secs(120);

/// What a queued call is doing besides waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// Nothing: waiting.
    None,
    /// The voicemail prompt plays; then record.
    VoicemailPrompt,
    /// Recording the caller's message until this deadline.
    Recording(tokio::time::Instant),
    /// The callback line plays; then hang up.
    Callback,
}

/// The caller's side of a queue.
pub(super) struct Queued {
    /// Queue name.
    queue: String,
    /// Notices from the contact center.
    notices: mpsc::UnboundedReceiver<QueueNotice>,
    /// Hold music, 16 kHz mono (empty: ringback).
    music: Vec<i16>,
    /// Position in `music` (or the ringback cadence), samples.
    pos: usize,
    /// A spoken line being rendered, with what follows it.
    speech_rx: Option<oneshot::Receiver<Vec<i16>>>,
    /// A spoken line is queued to the caller (music waits for it).
    speaking: bool,
    /// Voicemail / callback progress.
    ending: Ending,
}

/// One input from the queue side.
pub(super) enum QueuedInput {
    /// A notice from the contact center (`None`: it stopped).
    Notice(Option<QueueNotice>),
    /// A rendered line (`None`: TTS failed).
    Speech(Option<Vec<i16>>),
}

/// The queue side's next input; pending forever when not queued.
pub(super) async fn next_queued(q: &mut Option<Queued>) -> QueuedInput {
    let Some(q) = q else { return std::future::pending().await };
    let speech = async {
        match q.speech_rx.as_mut() {
            Some(rx) => rx.await.ok(),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        n = q.notices.recv() => QueuedInput::Notice(n),
        s = speech => QueuedInput::Speech(s),
    }
}

/// A queue target's name and priority: `NAME` or `NAME;priority=N`
/// (the part after `queue:` in a transfer target; priority 0–255, higher
/// served first, default 0). `None` for an empty name or a bad priority.
pub fn parse_queue_target(target: &str) -> Option<(&str, u8)> {
    let (name, params) = target.split_once(';').unwrap_or((target, ""));
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut priority = 0;
    for p in params.split(';').filter(|p| !p.trim().is_empty()) {
        match p.trim().split_once('=') {
            Some(("priority", v)) => priority = v.trim().parse().ok()?,
            _ => return None,
        }
    }
    Some((name, priority))
}

/// What the caller hears about their place in line.
pub fn position_text(position: usize, expected_wait: Option<Duration>) -> String {
    let place = if position == 1 { "You are next in line.".to_string() } else { format!("You are number {position} in line.") };
    match expected_wait {
        Some(w) if w.as_secs() >= 90 => format!("{place} Your expected wait is about {} minutes.", (w.as_secs() + 30) / 60),
        Some(_) => format!("{place} Your expected wait is less than two minutes."),
        None => format!("{place} Thank you for holding."),
    }
}

impl CallActor {
    /// Puts the caller in line (an escalation or transfer to
    /// `queue:NAME[;priority=N]`, `target` being the part after `queue:`).
    /// Without a contact center, or for an unknown queue or a bad target,
    /// the caller is told and the agent goes on.
    pub(super) async fn join_queue(&mut self, req: TransferRequest, target: &str) -> Option<Exit> {
        let Some((queue, priority)) = parse_queue_target(target) else {
            self.transfer = Some((req, tokio::time::Instant::now()));
            return Box::pin(self.transfer_failed(&format!("`queue:{target}` is not a queue target (queue:NAME[;priority=N])"))).await;
        };
        let queue = queue.to_string();
        let queue = queue.as_str();
        let Some(cc) = self.svc.contact.clone() else {
            self.transfer = Some((req, tokio::time::Instant::now()));
            return Box::pin(self.transfer_failed("no contact center is configured (queues_file)")).await;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        if let Err(e) = cc.join(self.record.id, queue, priority, tx).await {
            self.transfer = Some((req, tokio::time::Instant::now()));
            return Box::pin(self.transfer_failed(&e.to_string())).await;
        }
        let music = match cc.hold_music(queue) {
            Some(p) => crate::pipeline::wav::load_prompt(&p).unwrap_or_else(|e| {
                tracing::warn!(error = %e, path = %p.display(), "hold music unusable: ringback instead");
                Vec::new()
            }),
            None => Vec::new(),
        };
        tracing::info!(queue, "caller queued");
        self.svc.registry.set_queue(self.record.id, queue);
        self.context = Some(self.transfer_context(&req));
        self.queued = Some(Queued {
            queue: queue.to_string(),
            notices: rx,
            music,
            pos: 0,
            speech_rx: None,
            speaking: false,
            ending: Ending::None,
        });
        self.in_contact_center = true;
        if let Some(m) = self.leg.as_mut() {
            m.flush();
        }
        self.set_state(CallState::Queued).await;
        self.playout_check.get_or_insert_with(|| tokio::time::Instant::now() + super::PLAYOUT_CHECK);
        None
    }

    /// Handles one input from the queue side.
    pub(super) async fn on_queued(&mut self, input: QueuedInput) -> Option<Exit> {
        match input {
            QueuedInput::Speech(audio) => {
                let q = self.queued.as_mut()?;
                q.speech_rx = None;
                let Some(audio) = audio else {
                    self.record.errors.push("queue announcement: speech synthesis failed".into());
                    return self.after_queue_speech().await;
                };
                if let Some(m) = self.leg.as_mut() {
                    m.flush();
                    m.play(&audio);
                }
                if self.stereo.is_some() {
                    self.agent_sent.extend_from_slice(&audio);
                }
                q.speaking = true;
                None
            }
            QueuedInput::Notice(None) => {
                tracing::warn!("the contact center stopped: ending the queued call");
                Some(self.hangup("contact-center-stopped").await)
            }
            QueuedInput::Notice(Some(n)) => self.on_notice(n).await,
        }
    }

    async fn on_notice(&mut self, notice: QueueNotice) -> Option<Exit> {
        match notice {
            QueueNotice::Position { position, expected_wait, announce } => {
                if announce && self.bridge.is_none() {
                    self.queue_say(position_text(position, expected_wait));
                }
                None
            }
            QueueNotice::Ring { agent, uri } => {
                let req = TransferRequest { target: uri, mode: TransferMode::Warm, brief: Brief::Context, summary: None };
                self.start_offer(req, agent).await
            }
            QueueNotice::StopRinging { agent } => {
                if self.bridge.as_ref().is_some_and(|b| b.offer() == Some(&agent)) {
                    tracing::info!(%agent, "offer retracted: cancelling the call to the agent");
                    self.bridge_hangup();
                }
                None
            }
            QueueNotice::ToAi { name } => self.hand_to_ai(&name).await,
            QueueNotice::Voicemail => {
                self.bridge_hangup();
                let q = self.queued.as_mut()?;
                q.ending = Ending::VoicemailPrompt;
                self.queue_say("Nobody is available to take your call right now. Please leave a message after the tone.".into());
                None
            }
            QueueNotice::Callback => {
                self.bridge_hangup();
                let q = self.queued.as_mut()?;
                q.ending = Ending::Callback;
                let queue = q.queue.clone();
                let number = self.record.from_uri.clone();
                self.event("callback.requested", serde_json::json!({ "number": number, "queue": queue })).await;
                self.queue_say("Nobody is available to take your call right now. We will call you back at this number. Goodbye.".into());
                None
            }
        }
    }

    /// Starts rendering `text` for the waiting caller.
    fn queue_say(&mut self, text: String) {
        let rx = self.render_speech(text);
        if let Some(q) = self.queued.as_mut() {
            q.speech_rx = rx;
        }
    }

    /// The queued call's AI member takes it: the agent `name` starts with
    /// the call's context (it greets knowing what came before).
    async fn hand_to_ai(&mut self, name: &str) -> Option<Exit> {
        self.bridge_hangup();
        self.queued = None;
        if let Some(m) = self.leg.as_mut() {
            m.flush();
        }
        let (Some(svc), Some(cfg)) = (self.svc.voice.clone(), self.voice_config.clone()) else {
            tracing::warn!(agent = name, "no voice services for the AI member: ending the call");
            return Some(self.hangup("no-ai-agent").await);
        };
        let cfg = crate::call::voice::VoiceConfig { agent: name.to_string(), ..cfg };
        let ptime = self.leg.as_ref().map(|m| Duration::from_millis(m.facts().ptime_ms as u64)).unwrap_or(Duration::from_millis(20));
        let today = time::OffsetDateTime::now_utc().date();
        match crate::call::voice::VoiceAgent::start(svc, cfg, self.record.id, today, ptime).await {
            Ok(mut v) => {
                if let Some(old) = self.voice.take() {
                    self.record.errors.extend(old.provider_failures());
                }
                self.event("agent.started", serde_json::json!({ "agent": name, "from": "queue" })).await;
                let actions = match &self.context {
                    Some(ctx) => v.resume(ctx).await,
                    None => v.begin().await,
                };
                self.voice = Some(v);
                self.set_state(CallState::Answered).await;
                self.voice_actions(actions).await
            }
            Err(e) => {
                tracing::error!(error = %e, agent = name, "AI member cannot start");
                self.record.errors.push(format!("queue AI member {name}: {e}"));
                Some(self.hangup("ai-agent-failed").await)
            }
        }
    }

    /// A spoken line has played (or failed): music resumes, or the
    /// voicemail recording starts, or the callback call ends.
    async fn after_queue_speech(&mut self) -> Option<Exit> {
        let q = self.queued.as_mut()?;
        q.speaking = false;
        match q.ending {
            Ending::VoicemailPrompt => {
                q.ending = Ending::Recording(tokio::time::Instant::now() + VOICEMAIL_MAX);
                let beep: Vec<i16> = (0..8000).map(|i| ((i as f64 * 2.0 * std::f64::consts::PI * 1000.0 / 16000.0).sin() * 8000.0) as i16).collect();
                if let Some(m) = self.leg.as_mut() {
                    m.play(&beep);
                }
                let path = self.svc.config.data_dir.join("recordings").join(format!("{}-voicemail.wav", self.record.id));
                self.start_recording(&path);
                self.event("voicemail.started", serde_json::json!({ "path": path.display().to_string() })).await;
                None
            }
            Ending::Callback => Some(self.hangup("callback-requested").await),
            Ending::None | Ending::Recording(_) => None,
        }
    }

    /// Every playout check while queued: keeps hold music (or ringback)
    /// queued, notices when a spoken line has played, ends a voicemail at
    /// its maximum length.
    pub(super) async fn queued_tick(&mut self) -> Option<Exit> {
        let q = self.queued.as_mut()?;
        let queued_frames = self.leg.as_ref().map(|m| m.queued()).unwrap_or(0);
        if q.speaking {
            if queued_frames == 0 {
                return self.after_queue_speech().await;
            }
            return None;
        }
        match q.ending {
            Ending::Recording(until) => {
                if tokio::time::Instant::now() >= until {
                    return Some(self.hangup("voicemail-recorded").await);
                }
                return None;
            }
            Ending::VoicemailPrompt | Ending::Callback => return None,
            Ending::None => {}
        }
        if self.bridge.as_ref().is_some_and(|b| b.connected()) {
            return None;
        }
        let m = self.leg.as_mut()?;
        let frame = m.frame_samples();
        let mut queued_frames = queued_frames;
        while queued_frames < AHEAD {
            let audio = if q.music.is_empty() {
                ringback(q.pos, frame)
            } else {
                (0..frame).map(|i| q.music[(q.pos + i) % q.music.len()]).collect()
            };
            q.pos += frame;
            m.play(&audio);
            if self.stereo.is_some() {
                self.agent_sent.extend_from_slice(&audio);
            }
            queued_frames += 1;
        }
        None
    }

    /// Whether the caller is waiting in a queue (the agent is on hold).
    pub(super) fn queued(&self) -> bool {
        self.queued.is_some()
    }

    /// A human agent's phone answered the offer: the queue is done with the
    /// caller (the agent's wrap-up starts when the call ends).
    pub(super) fn offer_answered(&mut self, agent: &HumanAgentId) {
        if let Some(cc) = &self.svc.contact {
            cc.answered(self.record.id, agent.clone());
        }
        self.queued = None;
    }

    /// The offer to `agent` failed (busy, no answer, bad SDP): the caller
    /// waits on and the next agent is tried.
    pub(super) fn offer_declined(&mut self, agent: &HumanAgentId) {
        if let Some(cc) = &self.svc.contact {
            cc.declined(self.record.id, agent.clone());
        }
    }

    /// The call is over: the contact center frees its place or agent.
    pub(super) fn leave_contact_center(&mut self) {
        if std::mem::take(&mut self.in_contact_center)
            && let Some(cc) = &self.svc.contact
        {
            cc.ended(self.record.id);
        }
        self.queued = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_targets_carry_an_optional_priority() {
        assert_eq!(parse_queue_target("billing"), Some(("billing", 0)));
        assert_eq!(parse_queue_target("billing;priority=7"), Some(("billing", 7)));
        assert_eq!(parse_queue_target("billing;priority=300"), None);
        assert_eq!(parse_queue_target("billing;color=red"), None);
        assert_eq!(parse_queue_target(";priority=1"), None);
    }

    #[test]
    fn positions_and_waits_are_spoken_plainly() {
        assert_eq!(position_text(1, None), "You are next in line. Thank you for holding.");
        assert_eq!(
            position_text(3, Some(Duration::from_secs(200))),
            "You are number 3 in line. Your expected wait is about 3 minutes."
        );
        assert_eq!(
            position_text(2, Some(Duration::from_secs(40))),
            "You are number 2 in line. Your expected wait is less than two minutes."
        );
    }
}
