//! A supervisor's own SIP call into the supervisors' dial-in line
//! (application type `supervisor-dial-in`): the keypad dialog of
//! [`crate::contact_center::supervisor`] spoken with the call's TTS, then
//! the supervisor's phone joined to another live call as a supervision
//! session ([`super::supervise`]), exactly as the browser joins one: the
//! session's mix is played to the phone, the phone's audio is the
//! supervisor's microphone, and keys 1–4 change the mode. Prompts said
//! after joining are mixed over the session's audio, never instead of it.
//!
//! Every join and mode change is a `supervisor.action` event on the
//! monitored call (`by: sip:<phone>`, `via: sip`).

use super::supervise::{SuperviseAction, SupervisorLink, SupervisorOut};
use super::{CallActor, Exit};
use crate::call::command::{CallCommand, Reply};
use crate::contact_center::supervisor::{DIGIT_TIMEOUT, DialInAction, MonitorMode, SupervisorDialIn};
use crate::ids::CallId;
use crate::pipeline::mixer::{Input, mix};
use crate::store::events::CallEvent;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the monitored call's actor may take to answer a command.
const ACTOR_REPLY: Duration = Duration::from_secs(3);
/// Most frames of the mix queued toward the supervisor's phone.
const MAX_QUEUED: usize = 5;

/// The supervisor's side of the dial-in.
pub(super) struct Monitor {
    /// The keypad dialog.
    dialin: SupervisorDialIn,
    /// The joined call and the session on it.
    joined: Option<(CallId, String)>,
    /// The session's audio, once attached.
    link: Option<SupervisorLink>,
    /// A prompt being rendered.
    speech_rx: Option<oneshot::Receiver<Vec<i16>>>,
    /// When to repeat the prompt (before joining).
    prompt_again: Option<tokio::time::Instant>,
    /// A prompt played before joining is still playing: the session's
    /// audio waits until it has.
    prompting: bool,
    /// What is left of a prompt said after joining, at the media rate:
    /// mixed over the session's audio, so the supervisor never misses
    /// what the call says while the menu is read out.
    prompt: std::collections::VecDeque<i16>,
}

/// One input of the dial-in.
pub(super) enum MonitorInput {
    /// From the monitored call (`None`: the session or the call ended).
    Session(Option<SupervisorOut>),
    /// A rendered prompt (`None`: TTS failed).
    Speech(Option<Vec<i16>>),
    /// No key in time.
    Timeout,
}

/// The dial-in's next input; pending forever on other calls.
pub(super) async fn next_monitor(m: &mut Option<Monitor>) -> MonitorInput {
    let Some(m) = m else { return std::future::pending().await };
    let speech = async {
        match m.speech_rx.as_mut() {
            Some(rx) => rx.await.ok(),
            None => std::future::pending().await,
        }
    };
    let session = async {
        match m.link.as_mut() {
            Some(l) => l.audio.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        s = speech => MonitorInput::Speech(s),
        out = session => MonitorInput::Session(out),
        _ = super::sleep_opt(m.prompt_again) => MonitorInput::Timeout,
    }
}

impl CallActor {
    /// Starts the dial-in dialog with the configured `pin`.
    pub(super) fn install_monitor(&mut self, pin: &str) {
        self.monitor = Some(Monitor {
            dialin: SupervisorDialIn::new(pin),
            joined: None,
            link: None,
            speech_rx: None,
            prompt_again: None,
            prompting: false,
            prompt: Default::default(),
        });
    }

    /// The supervisor's call is answered: the first prompt.
    pub(super) async fn monitor_answered(&mut self) -> Option<Exit> {
        let actions = self.monitor.as_ref()?.dialin.start();
        self.monitor_actions(actions).await
    }

    /// A key from the supervisor's phone.
    pub(super) async fn monitor_digit(&mut self, d: char) -> Option<Exit> {
        let m = self.monitor.as_mut()?;
        let actions = m.dialin.on_digit(d);
        if !m.dialin.joined() {
            m.prompt_again = Some(tokio::time::Instant::now() + DIGIT_TIMEOUT);
        }
        self.monitor_actions(actions).await
    }

    /// The supervisor's phone audio: their microphone in the session.
    pub(super) fn monitor_audio(&mut self, frame: &[i16]) {
        if let Some(link) = self.monitor.as_ref().and_then(|m| m.link.as_ref()) {
            // Full: the monitored call is behind; the frame is dropped.
            let _ = link.mic.try_send(frame.to_vec());
        }
    }

    /// Handles one input of the dial-in.
    pub(super) async fn on_monitor(&mut self, input: MonitorInput) -> Option<Exit> {
        let m = self.monitor.as_mut()?;
        match input {
            MonitorInput::Speech(audio) => {
                m.speech_rx = None;
                if let (Some(a), Some(media)) = (audio, self.leg.as_mut()) {
                    media.flush();
                    if m.link.is_some() {
                        m.prompting = false;
                        m.prompt = a.into();
                    } else {
                        media.play(&a);
                        m.prompting = true;
                    }
                }
                None
            }
            MonitorInput::Timeout => {
                m.prompt_again = Some(tokio::time::Instant::now() + DIGIT_TIMEOUT);
                let actions = m.dialin.on_timeout();
                self.monitor_actions(actions).await
            }
            MonitorInput::Session(Some(SupervisorOut::Audio(frame))) => {
                if let Some(media) = self.leg.as_mut() {
                    if m.prompting {
                        if media.queued() > 0 {
                            return None;
                        }
                        m.prompting = false;
                    }
                    if media.queued() >= MAX_QUEUED {
                        media.flush();
                    }
                    if m.prompt.is_empty() {
                        media.play(&frame);
                    } else {
                        let n = frame.len().min(m.prompt.len());
                        let said: Vec<i16> = m.prompt.drain(..n).collect();
                        media.play(&mix(&[Input::new(&frame), Input::new(&said)]));
                    }
                }
                None
            }
            MonitorInput::Session(Some(SupervisorOut::Status(v))) => {
                tracing::debug!(status = %v, "supervision status");
                None
            }
            MonitorInput::Session(None) => {
                m.link = None;
                m.joined = None;
                let actions = m.dialin.call_ended();
                self.monitor_actions(actions).await
            }
        }
    }

    /// Carries out the dialog's actions.
    async fn monitor_actions(&mut self, actions: Vec<DialInAction>) -> Option<Exit> {
        let mut queue: std::collections::VecDeque<DialInAction> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                DialInAction::Say(text) => {
                    let rx = self.render_speech(text);
                    if let Some(m) = self.monitor.as_mut() {
                        m.speech_rx = rx;
                    }
                }
                DialInAction::FindCall(digits) => {
                    let found = self.find_monitored_call(&digits);
                    let m = self.monitor.as_mut()?;
                    if let Some(id) = found {
                        m.joined = Some((id, String::new()));
                        m.prompt_again = None;
                    }
                    queue.extend(m.dialin.call_found(found.is_some()));
                }
                DialInAction::Mode(mode) => {
                    if let Err(why) = self.monitor_mode(mode).await {
                        tracing::info!(%why, "supervision refused");
                        let m = self.monitor.as_mut()?;
                        if m.link.is_none() {
                            m.joined = None;
                            queue.extend(m.dialin.call_ended());
                        } else {
                            queue.push_back(DialInAction::Say(format!("Not possible: {why}")));
                        }
                    }
                }
                DialInAction::Hangup(reason) => return Some(self.hangup(&reason).await),
            }
        }
        None
    }

    /// The newest live call (not this one) whose caller number ends in
    /// `digits` (any, when empty).
    fn find_monitored_call(&self, digits: &str) -> Option<CallId> {
        self.svc
            .registry
            .list()
            .into_iter()
            .filter(|c| c.id != self.record.id)
            .filter(|c| matches!(c.state.as_str(), "answered" | "bridged" | "queued" | "transferring" | "on_hold"))
            .filter(|c| self.svc.config.applications.get(&c.app).is_none_or(|a| !matches!(a, crate::config::AppConfig::SupervisorDialIn { .. })))
            .filter(|c| {
                let number: String = c.from.split('@').next().unwrap_or("").chars().filter(char::is_ascii_digit).collect();
                number.ends_with(digits)
            })
            .max_by_key(|c| c.started_at)
            .map(|c| c.id)
    }

    /// Joins (first time) or changes the mode of the session on the
    /// monitored call. Errors: the call refused or is gone (the text says).
    async fn monitor_mode(&mut self, mode: MonitorMode) -> Result<(), String> {
        let (target, session) = self.monitor.as_ref().and_then(|m| m.joined.clone()).ok_or("no call joined")?;
        let action = match mode {
            MonitorMode::Listen => SuperviseAction::Listen,
            MonitorMode::Whisper => SuperviseAction::Whisper,
            MonitorMode::Barge => SuperviseAction::Barge,
            MonitorMode::Takeover => SuperviseAction::Takeover,
        };
        let by = format!("sip:{}", self.record.from_uri.trim_start_matches("sip:").split(['@', ';']).next().unwrap_or(""));
        let (reply, rx) = Reply::new();
        let cmd = CallCommand::Supervise {
            session: (!session.is_empty()).then_some(session.clone()),
            mode: action,
            text: None,
            by: by.clone(),
            reply,
        };
        self.svc.registry.send(target, cmd).map_err(|e| e.to_string())?;
        let info = match tokio::time::timeout(ACTOR_REPLY, rx).await {
            Ok(Ok(Ok(info))) => info,
            Ok(Ok(Err(e))) => return Err(e.to_string()),
            _ => return Err("the call did not answer".into()),
        };
        let data = serde_json::json!({ "action": action.as_str(), "by": by, "role": "supervisor", "session": info.session, "via": "sip" });
        let e = CallEvent { call_id: Some(target), twilio_call_sid: None, kind: "supervisor.action".into(), at: super::now_ms(), data };
        self.svc.record_event(e).await;
        if session.is_empty() {
            let (reply, rx) = Reply::new();
            self.svc
                .registry
                .send(target, CallCommand::SuperviseAttach { session: info.session.clone(), reply })
                .map_err(|e| e.to_string())?;
            let link = match tokio::time::timeout(ACTOR_REPLY, rx).await {
                Ok(Ok(Ok(link))) => link,
                Ok(Ok(Err(e))) => return Err(e.to_string()),
                _ => return Err("the call did not answer".into()),
            };
            let m = self.monitor.as_mut().ok_or("not a supervisor call")?;
            m.joined = Some((target, info.session));
            m.link = Some(link);
        }
        tracing::info!(call = %target, mode = action.as_str(), "supervisor joined by phone");
        Ok(())
    }
}
