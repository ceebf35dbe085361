//! One actor task per call, whatever its transport. It owns the call's
//! legs ([`Leg`]: the caller's, and a second one for a bridge), the
//! application or voice agent, the records and the recording, and is the
//! only place where their outputs become actions.
//!
//! A leg turns its wire (SIP/RTP, a Twilio Media Stream, the control
//! page's microphone) into the same events: 16 kHz frames, DTMF, hold,
//! hang-up, transfer progress. So everything a call does is written once,
//! here and in the child modules: turn-taking and barge-in (the voice
//! agent, [`super::voice`]), transcripts and records, the stereo recording,
//! supervision ([`supervise`]), queues and hold music ([`queued`]), the
//! supervisors' dial-in line ([`monitor`]), answering-machine detection
//! (`amd`), bridges and warm transfers ([`bridge`]), cold transfers (the
//! leg's own: REFER, Twilio REST) and the hang-up API.
//!
//! The loop (`event_loop`) waits on exactly one of: a leg event, a
//! [`CallCommand`], the second leg, the queue, the dial-in line, the voice
//! agent, the answering-machine detector, the application's deadline, or
//! the playout check; then it handles that input to completion before
//! waiting again. No lock is taken on the audio path.
//!
//! How a call starts ([`Arrival`]): an incoming INVITE is routed,
//! negotiated, rung and answered here through its SIP leg; an outbound
//! INVITE rings until answered; a WebSocket stream has already started.

use super::apps::{self, AppAction, AppContext, AppInput, Application};
use super::command::CallCommand;
use super::service::{CallServices, now_ms};
use super::state::CallState;
use super::transfer::{ContextIn, fetch_context, outgoing_context, refer_to};
use super::voice::{VoiceAction, VoiceAgent, VoiceConfig, VoiceEvent};
use crate::agent::context::CallContext;
use crate::agent::escalation::{TransferMode, TransferRequest};
use crate::pipeline::recorder::StereoRecorder;
use crate::pipeline::wav::{self, WavRecorder};
use crate::store::CallRecord;
use crate::store::events::CallEvent;
use crate::transports::leg::{Leg, LegEvent, TransferEvent, TransferTo};
use crate::transports::sip_rtp::SipLeg;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[path = "amd.rs"]
mod amd;
#[path = "bridge.rs"]
pub mod bridge;
#[path = "monitor.rs"]
pub mod monitor;
#[path = "queued.rs"]
pub mod queued;
#[path = "supervise.rs"]
pub mod supervise;
use tokio::time::Instant;

/// How often to look whether queued playout has drained.
const PLAYOUT_CHECK: Duration = Duration::from_millis(20);
/// How long a transfer may take to report success.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bad-message reasons of a leg copied into the record (the rest are counted).
const MAX_ERRORS_RECORDED: usize = 5;

/// How a call reached its actor.
pub enum Arrival {
    /// An incoming INVITE (UAS), not answered yet, with its context headers
    /// (a transferred call).
    Invite {
        /// The SIP leg.
        leg: Box<SipLeg>,
        /// Context the INVITE's headers carried.
        context: ContextIn,
    },
    /// Our outbound INVITE (UAC), ringing.
    Dialed(Box<dyn Leg>),
    /// A WebSocket stream (Twilio Media Streams, the browser) that has
    /// started, with the signed `context` parameter the webhook gave it.
    Stream {
        /// The leg.
        leg: Box<dyn Leg>,
        /// The `context` stream parameter.
        context: Option<String>,
    },
}

/// What runs the conversation: a built-in application or a voice agent.
enum Brain {
    /// A synchronous application (echo, greeting, menu).
    App(Box<dyn Application>),
    /// The supervisors' dial-in line, with its PIN.
    Monitor(String),
    /// A voice agent, started once media flows.
    Voice {
        /// Its settings.
        cfg: VoiceConfig,
        /// Record stereo.
        record: bool,
    },
}

/// Why the loop stopped.
enum Exit {
    /// The call is over with this reason and SIP status.
    Ended { reason: String, status: Option<u16> },
}

/// The actor of one call.
pub struct CallActor {
    /// Shared services.
    svc: Arc<CallServices>,
    /// The record, written at start and on every state change.
    record: CallRecord,
    /// Commands from the API, CLI and shutdown.
    commands: mpsc::Receiver<CallCommand>,
    /// How the call started (consumed at setup).
    arrival: Option<Arrival>,
    /// Configured application name.
    app_name: Option<String>,
    /// The running application.
    app: Option<Box<dyn Application>>,
    /// The caller's leg, once it carries media (answered, or ringing out).
    leg: Option<Box<dyn Leg>>,
    /// The caller's frame, decoded by the leg (16 kHz), reused every frame.
    pcm16: Vec<i16>,
    /// Caller audio recorder, when recording.
    recorder: Option<WavRecorder>,
    /// The voice agent, when the application is one.
    voice: Option<VoiceAgent>,
    /// Stereo recording of a voice call (caller left, agent right).
    stereo: Option<StereoRecorder>,
    /// Audio sent to the caller since the last caller frame (agent, target
    /// or supervisors; for the stereo recording).
    agent_sent: Vec<i16>,
    /// When the call was answered (transcript offsets).
    answered_at: Option<Instant>,
    /// True while queued prompt audio is still being sent.
    playing: bool,
    /// Next time to check whether playout drained.
    playout_check: Option<Instant>,
    /// The context the call came with (a transfer into skald).
    context: Option<CallContext>,
    /// A cold transfer in progress: (request, give up at).
    transfer: Option<(TransferRequest, Instant)>,
    /// The second leg of a bridged transfer (warm, or REFER refused), or
    /// of a queued call offered to a human agent.
    bridge: Option<bridge::Bridge>,
    /// Waiting in a contact-center queue.
    queued: Option<queued::Queued>,
    /// The contact center holds this call (queued, or with one of its
    /// agents): told when the call ends.
    in_contact_center: bool,
    /// The voice agent's settings (to start another agent of the graph).
    voice_config: Option<VoiceConfig>,
    /// A supervisor's call into the dial-in line.
    monitor: Option<monitor::Monitor>,
    /// Answering-machine detection (outbound voice-agent calls with `amd`).
    amd: Option<amd::OutboundAmd>,
    /// Supervisors listening, whispering, barging in or taking over.
    supervision: supervise::Supervision,
    /// An application handed in by [`CallServices::dial_app`] (the caller
    /// simulator), run instead of the configured one once answered.
    supplied_app: Option<Box<dyn Application>>,
}

impl CallActor {
    /// A new actor; nothing happens until [`CallActor::run`].
    pub fn new(
        svc: Arc<CallServices>,
        record: CallRecord,
        commands: mpsc::Receiver<CallCommand>,
        arrival: Arrival,
        app_name: Option<String>,
    ) -> Self {
        CallActor {
            svc,
            record,
            commands,
            arrival: Some(arrival),
            app_name,
            app: None,
            leg: None,
            pcm16: Vec::with_capacity(320),
            recorder: None,
            voice: None,
            stereo: None,
            agent_sent: Vec::new(),
            answered_at: None,
            playing: false,
            playout_check: None,
            context: None,
            transfer: None,
            bridge: None,
            queued: None,
            in_contact_center: false,
            voice_config: None,
            monitor: None,
            amd: None,
            supervision: supervise::Supervision::default(),
            supplied_app: None,
        }
    }

    /// The conversation's starting point for an outbound call (set before
    /// `run`): the agent resumes from its intent and slots.
    pub fn set_context(&mut self, ctx: CallContext) {
        self.context = Some(ctx);
    }

    /// The application an outbound call runs once answered, instead of
    /// building the configured one (set before `run`; see
    /// [`CallServices::dial_app`]).
    pub fn set_application(&mut self, app: Box<dyn Application>) {
        self.supplied_app = Some(app);
    }

    /// Runs the call to its end, then writes the final record and leaves the
    /// registry. Never panics on peer input.
    pub async fn run(mut self) {
        self.save(true).await;
        let setup = match self.arrival.take() {
            Some(Arrival::Invite { leg, context }) => {
                self.context_in(context).await;
                self.setup_inbound(*leg).await
            }
            Some(Arrival::Dialed(leg)) => {
                self.leg = Some(leg);
                self.setup_outbound().await
            }
            Some(Arrival::Stream { leg, context }) => {
                self.leg = Some(leg);
                self.stream_context_in(context.as_deref()).await;
                self.setup_stream().await
            }
            None => Err(Exit::Ended { reason: "internal".into(), status: None }),
        };
        let exit = match setup {
            Ok(()) => self.event_loop().await,
            Err(exit) => exit,
        };
        let Exit::Ended { reason, status } = exit;
        self.finish(&reason, status).await;
    }

    /// Routes, negotiates SDP, rings and answers an incoming INVITE.
    async fn setup_inbound(&mut self, mut leg: SipLeg) -> Result<(), Exit> {
        let refuse = |leg: &mut SipLeg, status: u16, phrase: &str, reason: &str| {
            leg.reject(status, phrase);
            Exit::Ended { reason: reason.to_string(), status: Some(status) }
        };
        let Some(app_name) = self.app_name.clone() else {
            tracing::info!(did = %crate::observability::Pii(&self.record.did), "no route for number: 404");
            return Err(refuse(&mut leg, 404, "Not Found", "no-route"));
        };
        if let Err(r) = leg.negotiate().await {
            return Err(refuse(&mut leg, r.status, r.phrase, r.reason));
        }
        let brain = self.build_brain(&app_name).map_err(|why| refuse(&mut leg, 500, "Server Internal Error", &why))?;
        if self.svc.config.sip.send_ringing {
            leg.ring();
        }
        let delay = Duration::from_millis(self.svc.config.sip.answer_delay_ms);
        if !delay.is_zero() {
            self.wait_before_answer(&mut leg, delay).await?;
        }
        leg.answer();
        self.record.codec = leg.facts().codec.clone();
        self.leg = Some(Box::new(leg));
        self.install(brain).await;
        self.record.sip_status = Some(200);
        self.answered().await;
        Ok(())
    }

    /// Between 180 and 200: a CANCEL or BYE ends the call, a hangup command rejects it.
    async fn wait_before_answer(&mut self, leg: &mut SipLeg, delay: Duration) -> Result<(), Exit> {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
                ev = leg.next_event(&mut self.pcm16) => {
                    if let LegEvent::Ended { reason, status, .. } = ev {
                        return Err(Exit::Ended { reason, status });
                    }
                }
                cmd = self.commands.recv() => {
                    if let Some(CallCommand::Hangup { reason }) = cmd {
                        leg.reject(480, "Temporarily Unavailable");
                        return Err(Exit::Ended { reason, status: Some(480) });
                    }
                }
            }
        }
    }

    /// Waits for our INVITE's answer, then starts what runs the call.
    /// Early media (an 18x with SDP) starts the leg's media at once; the
    /// 2xx then keeps it.
    async fn setup_outbound(&mut self) -> Result<(), Exit> {
        let app_name = self.app_name.clone().unwrap_or_default();
        loop {
            tokio::select! {
                ev = next_leg(&mut self.leg, &mut self.pcm16) => match ev {
                    LegEvent::EarlyMedia { status } => {
                        self.record.codec = self.leg.as_ref().and_then(|l| l.facts().codec.clone());
                        self.event("early_media", serde_json::json!({ "status": status })).await;
                    }
                    LegEvent::Answered => {
                        self.record.codec = self.leg.as_ref().and_then(|l| l.facts().codec.clone());
                        let brain = match self.outbound_brain(&app_name) {
                            Ok(a) => a,
                            Err(why) => {
                                self.hangup_leg().await;
                                return Err(Exit::Ended { reason: why, status: Some(200) });
                            }
                        };
                        self.install(brain).await;
                        self.amd_start(&app_name);
                        self.record.sip_status = Some(200);
                        self.answered().await;
                        return Ok(());
                    }
                    LegEvent::Rejected { status, reason } => {
                        tracing::info!(status, %reason, "outbound call rejected");
                        return Err(Exit::Ended { reason: format!("rejected: {reason}"), status: Some(status) });
                    }
                    LegEvent::Ended { reason, status, .. } => {
                        if status.is_some() {
                            self.record.sip_status = status;
                        }
                        return Err(Exit::Ended { reason, status: status.or(self.record.sip_status) });
                    }
                    other => tracing::debug!(?other, "leg event before answer"),
                },
                cmd = self.commands.recv() => {
                    if let Some(CallCommand::Hangup { reason }) = cmd {
                        self.hangup_leg().await;
                        return Err(Exit::Ended { reason, status: Some(487) });
                    }
                }
            }
        }
    }

    /// A stream that has started: what runs it, then the answer.
    async fn setup_stream(&mut self) -> Result<(), Exit> {
        let Some(app) = self.app_name.clone() else {
            tracing::warn!("media stream for a number with no route: closed");
            return Err(self.hangup("no-route").await);
        };
        let brain = match self.build_brain(&app) {
            Ok(b) => b,
            Err(why) => {
                let reason = if why == "voice-unavailable" { "voice-unavailable" } else { "app-error" };
                self.record.errors.push(why);
                return Err(self.hangup(reason).await);
            }
        };
        let voice = matches!(brain, Brain::Voice { .. });
        self.install(brain).await;
        if voice && self.voice.is_none() {
            return Err(self.hangup("voice-unavailable").await);
        }
        self.answered().await;
        Ok(())
    }

    /// The answered call's loop.
    async fn event_loop(&mut self) -> Exit {
        loop {
            let app_deadline = self.app.as_ref().and_then(|a| a.poll_timeout()).map(Instant::from_std);
            let playout_check = self.playout_check;
            let hold = self.bridge.is_some() || self.queued.is_some() || self.supervise_holds_agent();
            // The agent is on hold while a second leg owns the caller's audio.
            let mut held = None;
            let voice = if hold { &mut held } else { &mut self.voice };
            let input = tokio::select! {
                ev = bridge::next_bridge(&mut self.bridge) => Input::Bridge(ev),
                ev = queued::next_queued(&mut self.queued) => Input::Queued(ev),
                ev = monitor::next_monitor(&mut self.monitor) => Input::Monitor(ev),
                cmd = self.commands.recv() => Input::Command(cmd),
                ev = next_leg(&mut self.leg, &mut self.pcm16) => Input::Leg(ev),
                ev = next_voice(voice) => Input::Voice(ev),
                msg = amd::next_message(&mut self.amd) => Input::AmdMessage(msg),
                _ = sleep_opt(app_deadline) => Input::AppTimeout,
                _ = sleep_opt(playout_check) => Input::PlayoutCheck,
            };
            let flow = match input {
                Input::Leg(ev) => self.on_leg(ev).await,
                Input::Command(Some(cmd)) => self.on_command(cmd).await,
                Input::Command(None) => None,
                Input::AppTimeout => self.app_input(AppInput::Timeout).await,
                Input::PlayoutCheck => self.on_playout_check().await,
                Input::Voice(ev) => self.on_voice_event(ev).await,
                Input::AmdMessage(msg) => self.amd_message(msg).await,
                Input::Bridge(ev) => self.on_bridge(ev).await,
                Input::Queued(ev) => self.on_queued(ev).await,
                Input::Monitor(ev) => self.on_monitor(ev).await,
            };
            if let Some(exit) = flow {
                return exit;
            }
        }
    }

    /// One event of the caller's leg.
    async fn on_leg(&mut self, ev: LegEvent) -> Option<Exit> {
        match ev {
            LegEvent::Audio => {
                let frame = std::mem::take(&mut self.pcm16);
                let exit = self.on_audio(&frame).await;
                self.pcm16 = frame;
                exit
            }
            LegEvent::Dtmf(digit) => self.on_dtmf(digit).await,
            LegEvent::Hold(on_hold) => {
                let state = if on_hold { CallState::OnHold } else { CallState::Answered };
                self.set_state(state).await;
                None
            }
            LegEvent::Played if !self.supervise_holds_agent() => self.voice_tick().await,
            LegEvent::Referred(refer_to) => {
                tracing::info!("the peer asked for a transfer (REFER): refused");
                self.event("transfer.requested", serde_json::json!({ "refer_to": refer_to })).await;
                self.app_input(AppInput::Referred(&refer_to)).await
            }
            LegEvent::Transfer(t) => self.on_transfer_event(t).await,
            LegEvent::MediaTimeout => {
                tracing::warn!("no media for the inactivity timeout: ending the call");
                Some(self.hangup("rtp-timeout").await)
            }
            LegEvent::Dropped(e) => {
                if self.record.errors.len() < MAX_ERRORS_RECORDED {
                    self.record.errors.push(format!("stream: dropped: {e}"));
                }
                None
            }
            LegEvent::Ended { reason, status, error } => {
                self.record.errors.extend(error);
                Some(Exit::Ended { reason, status: status.or(self.record.sip_status) })
            }
            other => {
                tracing::debug!(?other, "leg event ignored");
                None
            }
        }
    }

    /// One caller frame (16 kHz): to the dial-in line, the supervisors, a
    /// second leg or the queue, else the recorder, the application, the
    /// answering-machine detector and the voice agent.
    async fn on_audio(&mut self, frame: &[i16]) -> Option<Exit> {
        if self.monitor.is_some() {
            self.monitor_audio(frame);
            return None;
        }
        if let Some(exit) = self.supervise_caller_frame(frame).await {
            return Some(exit);
        }
        self.write_recording(frame);
        if self.bridged() || self.queued() || self.supervise_owns_caller() {
            if self.bridged() || self.queued() {
                let to_target = self.supervision.to_target(frame);
                self.bridge_caller_audio(&to_target);
            } else {
                // Barge on or takeover of an agent's call: the
                // recording goes on with the supervisors' side.
                self.stereo_tick(frame);
            }
            return None;
        }
        let mut exit = self.app_input(AppInput::Audio(frame)).await;
        if exit.is_none() {
            exit = match self.amd_audio(frame).await {
                Ok(()) => self.voice_audio(frame).await,
                Err(kept) => kept,
            };
        }
        exit
    }

    /// A DTMF digit from the caller.
    async fn on_dtmf(&mut self, digit: char) -> Option<Exit> {
        self.record.dtmf.push(digit);
        self.save(false).await;
        if self.monitor.is_some() {
            return self.monitor_digit(digit).await;
        }
        if self.bridged() || self.queued() {
            self.bridge_caller_dtmf(digit);
            return None;
        }
        if let (Some(v), Some(leg)) = (self.voice.as_mut(), self.leg.as_mut()) {
            let now_ms = self.answered_at.map(|a| a.elapsed().as_millis() as i64).unwrap_or(0);
            let actions = v.on_dtmf(digit, leg.as_mut(), now_ms).await;
            return self.voice_actions(actions).await;
        }
        self.app_input(AppInput::Dtmf(digit)).await
    }

    /// Writes a caller frame to the recorder, if recording.
    fn write_recording(&mut self, frame: &[i16]) {
        if let Some(rec) = self.recorder.as_mut()
            && let Err(e) = rec.write(frame)
        {
            tracing::warn!(error = %e, "recording failed; stopping it");
            self.recorder = None;
        }
    }

    async fn on_command(&mut self, cmd: CallCommand) -> Option<Exit> {
        tracing::info!(?cmd, "command");
        match cmd {
            CallCommand::Answer => None,
            CallCommand::Hangup { reason } => Some(self.hangup(&reason).await),
            CallCommand::Play { path } => {
                match wav::load_prompt(&path) {
                    Ok(audio) => self.play(&audio),
                    Err(e) => tracing::warn!(error = %e, "cannot play prompt"),
                }
                None
            }
            CallCommand::Record { path } => {
                self.start_recording(&path);
                None
            }
            CallCommand::SendDtmf { digits } => {
                self.send_dtmf(&digits);
                None
            }
            CallCommand::Transfer { target, mode } => self.start_transfer(TransferRequest { mode, ..TransferRequest::cold(target) }).await,
            CallCommand::Supervise { session, mode, text, by, reply } => self.on_supervise(session, mode, text, by, reply).await,
            CallCommand::SuperviseAttach { session, reply } => {
                self.on_supervise_attach(&session, reply);
                None
            }
        }
    }

    async fn on_playout_check(&mut self) -> Option<Exit> {
        if self.transfer.as_ref().is_some_and(|(_, until)| *until <= Instant::now()) {
            return self.transfer_failed("no answer in time").await;
        }
        if self.queued() {
            self.playout_check = Some(Instant::now() + PLAYOUT_CHECK);
            if let Some(exit) = self.queued_tick().await {
                return Some(exit);
            }
        }
        if self.bridged() {
            self.playout_check = Some(Instant::now() + PLAYOUT_CHECK);
            return self.bridge_tick().await;
        }
        if self.queued() {
            return None;
        }
        if let Some(exit) = self.amd_tick().await {
            return Some(exit);
        }
        if self.voice.is_some() && !self.supervise_holds_agent() {
            self.playout_check = Some(Instant::now() + PLAYOUT_CHECK);
            return self.voice_tick().await;
        }
        let queued = self.leg.as_ref().map(|l| l.queued()).unwrap_or(0);
        if self.playing && queued == 0 {
            self.playing = false;
            self.playout_check = None;
            return self.app_input(AppInput::PlayoutDone).await;
        }
        self.playout_check = Some(Instant::now() + PLAYOUT_CHECK);
        None
    }

    /// Feeds the application and carries out its actions.
    async fn app_input(&mut self, input: AppInput<'_>) -> Option<Exit> {
        let app = self.app.as_mut()?;
        let actions = app.handle(input, std::time::Instant::now());
        for action in actions {
            match action {
                AppAction::Play(audio) => self.play(&audio),
                AppAction::StopPlayback => {
                    if let Some(l) = self.leg.as_mut() {
                        l.flush();
                    }
                    self.playing = false;
                    self.playout_check = None;
                }
                AppAction::StartRecording(path) => self.start_recording(&path),
                AppAction::StopRecording => self.stop_recording(),
                AppAction::Hangup(reason) => return Some(self.hangup(&reason).await),
                AppAction::Switch(name) => match self.build_app(&name) {
                    Ok(next) => {
                        tracing::info!(app = %name, "switching application");
                        self.record.app = Some(name);
                        self.app = Some(next);
                        self.save(false).await;
                        return Box::pin(self.app_input(AppInput::Started)).await;
                    }
                    Err(why) => tracing::warn!(%why, "cannot switch application"),
                },
            }
        }
        None
    }

    /// Queues 16 kHz audio for the caller.
    fn play(&mut self, audio: &[i16]) {
        let Some(l) = self.leg.as_mut() else { return };
        l.play(audio);
        self.playing = true;
        if self.playout_check.is_none() {
            self.playout_check = Some(Instant::now() + PLAYOUT_CHECK);
        }
    }

    /// What runs an answered outbound call: the supplied application, else
    /// the configured one.
    fn outbound_brain(&mut self, name: &str) -> Result<Brain, String> {
        match self.supplied_app.take() {
            Some(app) => Ok(Brain::App(app)),
            None => self.build_brain(name),
        }
    }

    /// Builds what runs the call from the configured application.
    fn build_brain(&self, name: &str) -> Result<Brain, String> {
        if let Some(crate::config::AppConfig::SupervisorDialIn { pin, .. }) = self.svc.config.applications.get(name) {
            return pin.clone().map(Brain::Monitor).ok_or_else(|| "supervisor-pin-unset".to_string());
        }
        if let Some((cfg, record)) = VoiceConfig::for_app(&self.svc.config, name)? {
            if self.svc.voice.is_none() {
                return Err("voice-unavailable".into());
            }
            return Ok(Brain::Voice { cfg, record });
        }
        self.build_app(name).map(Brain::App)
    }

    /// Installs the brain once media flows (the voice agent needs the ptime).
    async fn install(&mut self, brain: Brain) {
        match brain {
            Brain::App(app) => self.app = Some(app),
            Brain::Monitor(pin) => self.install_monitor(&pin),
            Brain::Voice { cfg, record } => {
                let Some(svc) = self.svc.voice.clone() else { return };
                self.voice_config = Some(cfg.clone());
                let ptime = Duration::from_millis(self.leg.as_ref().map(|l| l.facts().ptime_ms).unwrap_or(20) as u64);
                let today = time::OffsetDateTime::now_utc().date();
                match VoiceAgent::start(svc, cfg, self.record.id, today, ptime).await {
                    Ok(v) => self.voice = Some(v),
                    Err(e) => {
                        tracing::error!(error = %e, "voice agent cannot start");
                        self.record.errors.push(format!("voice agent: {e}"));
                    }
                }
                if record && self.voice.is_some() {
                    let path = self.svc.config.data_dir.join("recordings").join(format!("{}.wav", self.record.id));
                    match StereoRecorder::create(&path) {
                        Ok(r) => {
                            self.stereo = Some(r);
                            self.record.recording_path = Some(path.display().to_string());
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot record"),
                    }
                }
                self.playout_check = Some(Instant::now() + PLAYOUT_CHECK);
            }
        }
    }

    /// Milliseconds since the answer (transcript offsets).
    fn call_ms(&self) -> i64 {
        self.answered_at.map(|a| a.elapsed().as_millis() as i64).unwrap_or(0)
    }

    /// Caller audio to the voice agent, then playout accounting.
    async fn voice_audio(&mut self, frame: &[i16]) -> Option<Exit> {
        let now_ms = self.call_ms();
        let (Some(v), Some(l)) = (self.voice.as_mut(), self.leg.as_mut()) else { return None };
        let actions = v.on_audio(frame, l.as_mut(), now_ms).await;
        if let Some(exit) = self.voice_actions(actions).await {
            return Some(exit);
        }
        let exit = self.voice_tick().await;
        self.stereo_tick(frame);
        exit
    }

    /// One caller frame into the stereo recording, with what the caller
    /// was sent since the last one (agent, target or supervisors).
    fn stereo_tick(&mut self, caller: &[i16]) {
        StereoRecorder::tick_or_stop(&mut self.stereo, caller, &mut self.agent_sent);
    }

    /// Playout accounting for the voice agent.
    async fn voice_tick(&mut self) -> Option<Exit> {
        let now_ms = self.call_ms();
        let (Some(v), Some(l)) = (self.voice.as_mut(), self.leg.as_ref()) else { return None };
        let (audio, actions) = v.on_tick(l.as_ref(), now_ms);
        self.supervision.agent_audio(&audio);
        if self.stereo.is_some() {
            self.agent_sent.extend_from_slice(&audio);
        }
        self.voice_actions(actions).await
    }

    async fn on_voice_event(&mut self, ev: VoiceEvent) -> Option<Exit> {
        let now_ms = self.call_ms();
        let (Some(v), Some(l)) = (self.voice.as_mut(), self.leg.as_mut()) else { return None };
        let actions = v.on_event(ev, l.as_mut(), now_ms).await;
        self.voice_actions(actions).await
    }

    /// Carries out the voice agent's actions.
    async fn voice_actions(&mut self, actions: Vec<VoiceAction>) -> Option<Exit> {
        for a in actions {
            match a {
                VoiceAction::Turn(t) => {
                    self.svc.record_turn(&t).await;
                    if let Some(l) = self.leg.as_mut() {
                        l.show_turn(&t.speaker, &t.text);
                    }
                }
                VoiceAction::Error(e) => {
                    self.record.errors.push(e);
                    self.save(false).await;
                }
                VoiceAction::Transfer(req) => {
                    if let Some(exit) = Box::pin(self.start_transfer(req)).await {
                        return Some(exit);
                    }
                }
                VoiceAction::SendDtmf(digits) => self.send_dtmf(&digits),
                VoiceAction::Hangup(reason) => return Some(self.hangup(&reason).await),
            }
        }
        None
    }

    /// The voice agent leaves the call: its last turns are stored and its
    /// provider failures kept in the record.
    async fn voice_leaves(&mut self) {
        if let Some(mut v) = self.voice.take() {
            if !v.slots().is_empty() {
                tracing::info!(slots = ?v.slots(), "agent slots");
            }
            self.record.errors.extend(v.provider_failures());
            for a in v.finish() {
                if let VoiceAction::Turn(t) = a {
                    self.svc.record_turn(&t).await;
                }
            }
            self.record.longest_dead_air_ms = Some(v.longest_dead_air_ms());
        }
    }

    fn start_recording(&mut self, path: &std::path::Path) {
        match WavRecorder::create(path, crate::pipeline::SAMPLE_RATE) {
            Ok(r) => {
                tracing::info!(path = %path.display(), "recording");
                self.recorder = Some(r);
                self.record.recording_path = Some(path.display().to_string());
            }
            Err(e) => tracing::warn!(error = %e, "cannot record"),
        }
    }

    fn stop_recording(&mut self) {
        if let Some(r) = self.recorder.take()
            && let Err(e) = r.finalize()
        {
            tracing::warn!(error = %e, "recording not finalized");
        }
    }

    fn build_app(&self, name: &str) -> Result<Box<dyn Application>, String> {
        let ctx = AppContext { call_id: self.record.id, recordings_dir: self.svc.config.data_dir.join("recordings") };
        apps::build(&self.svc.config, name, &ctx).map_err(|e| {
            tracing::error!(error = %e, app = name, "cannot start application");
            format!("app-error: {e}")
        })
    }

    /// Marks the call answered, saves, and starts the application.
    async fn answered(&mut self) {
        self.record.answered_at = Some(now_ms());
        self.answered_at = Some(Instant::now());
        self.set_state(CallState::Answered).await;
        tracing::info!(codec = ?self.record.codec, app = ?self.app_name, "call answered");
        let _ = self.app_input(AppInput::Started).await;
        // A prompt cannot end the call before it is heard.
        let _ = self.monitor_answered().await;
        let held = self.amd.as_ref().is_some_and(|a| a.holds_agent());
        if let Some(v) = self.voice.as_mut().filter(|_| !held) {
            let actions = match &self.context {
                Some(ctx) => v.resume(ctx).await,
                None => v.begin().await,
            };
            // A greeting cannot end the call before it is heard; actions here
            // are transcript rows or errors.
            let _ = self.voice_actions(actions).await;
        }
    }

    /// Takes the context the INVITE brought (fetching one sent by
    /// reference); keeps it as a `context.received` event. One that does
    /// not verify is ignored with a warning: the call is a fresh call.
    async fn context_in(&mut self, context: ContextIn) {
        let ctx = match context {
            ContextIn::None => return,
            ContextIn::Inline(c) => Ok(*c),
            ContextIn::ByRef(url, token) => fetch_context(&url, &token).await,
            ContextIn::Rejected(why) => Err(why),
        };
        self.context_received(ctx).await;
    }

    /// The call's context from a stream's `context` parameter (signed by
    /// the webhook).
    async fn stream_context_in(&mut self, value: Option<&str>) {
        let (Some(value), Some(key)) = (value, self.svc.config.context_key.as_deref()) else { return };
        let ctx = CallContext::decode_signed(value, key.as_bytes()).map_err(|e| e.to_string());
        self.context_received(ctx).await;
    }

    /// Keeps a verified context (a `context.received` event), or says why
    /// it was ignored (`context.rejected`).
    async fn context_received(&mut self, ctx: Result<CallContext, String>) {
        match ctx {
            Ok(c) => {
                tracing::info!(intent = ?c.intent, slots = c.slots.len(), "call came with a context");
                self.event("context.received", serde_json::to_value(&c).unwrap_or_default()).await;
                self.context = Some(c);
            }
            Err(why) => {
                tracing::warn!(%why, "context headers ignored: a fresh call");
                self.event("context.rejected", serde_json::json!({ "why": why })).await;
            }
        }
    }

    /// Sends `digits` to the caller as DTMF (others ignored).
    fn send_dtmf(&mut self, digits: &str) {
        let Some(l) = self.leg.as_mut() else { return };
        for d in digits.chars().filter(|c| "0123456789*#ABCDabcd".contains(*c)) {
            if !l.send_dtmf(d) {
                tracing::warn!(%digits, transport = l.facts().transport, "this leg cannot send DTMF");
                return;
            }
        }
    }

    /// Stores an event on the call (logged when the store fails).
    async fn event(&mut self, kind: &str, data: serde_json::Value) {
        let e = CallEvent {
            call_id: Some(self.record.id),
            twilio_call_sid: self.record.twilio_call_sid.clone(),
            kind: kind.into(),
            at: now_ms(),
            data,
        };
        self.svc.record_event(e).await;
    }

    /// The context handed on with a transfer ([`outgoing_context`]).
    fn transfer_context(&self, req: &TransferRequest) -> CallContext {
        let transcript = format!("{}/api/v1/calls/{}", self.svc.api_base(), self.record.id);
        let mut ctx = outgoing_context(self.context.as_ref(), &self.record, transcript, self.voice.as_ref(), req);
        if let Some(sid) = self.leg.as_ref().and_then(|l| l.facts().call_sid.clone()) {
            ctx.call_sid = Some(sid);
        }
        ctx.escalation_reason.get_or_insert_with(|| "caller asked for a person".into());
        ctx
    }

    /// The agent asked for a transfer. To a queue: the caller waits there.
    /// Warm: skald calls the target first ([`bridge`]). Cold: the caller's
    /// leg transfers it (REFER with the context in Refer-To; Twilio dials
    /// it); a leg that cannot: the caller is told and the agent goes on.
    async fn start_transfer(&mut self, req: TransferRequest) -> Option<Exit> {
        if let Some(queue) = req.target.strip_prefix("queue:") {
            let queue = queue.to_string();
            return self.join_queue(req, &queue).await;
        }
        if req.mode == TransferMode::Warm {
            return self.start_bridge(req, "warm").await;
        }
        let ctx = self.transfer_context(&req);
        let key = self.svc.config.context_key.clone().unwrap_or_default();
        let uri = refer_to(&req.target, &ctx, key.as_bytes(), &self.svc.contexts, &self.svc.api_base());
        let to = TransferTo { target: req.target.clone(), uri, caller_id: Some(self.record.did.clone()) };
        let leg = self.leg.as_mut()?;
        let via = leg.facts().transfer;
        if let Err(why) = leg.transfer(to) {
            self.transfer = Some((req, Instant::now()));
            return self.transfer_failed(&why).await;
        }
        tracing::info!(target = %req.target, ?via, "transfer started");
        let data = serde_json::json!({ "target": req.target, "mode": "cold", "via": via, "context": ctx });
        self.event("transfer.started", data).await;
        self.set_state(CallState::Transferring).await;
        self.transfer = Some((req, Instant::now() + TRANSFER_TIMEOUT));
        None
    }

    /// The transfer failed: the caller is told and the agent goes on.
    async fn transfer_failed(&mut self, why: &str) -> Option<Exit> {
        let target = match self.transfer.take() {
            Some((req, _)) => req.target,
            None => return None,
        };
        tracing::warn!(%target, %why, "transfer failed: back to the agent");
        self.record.errors.push(format!("transfer to {target} failed: {why}"));
        self.event("transfer.failed", serde_json::json!({ "target": target, "why": why })).await;
        self.set_state(CallState::Answered).await;
        let v = self.voice.as_mut()?;
        let actions = v.transfer_failed().await;
        Box::pin(self.voice_actions(actions)).await
    }

    /// How the caller's leg's transfer goes.
    async fn on_transfer_event(&mut self, ev: TransferEvent) -> Option<Exit> {
        self.transfer.as_ref()?;
        let via = self.leg.as_ref().and_then(|l| l.facts().transfer);
        match ev {
            TransferEvent::Accepted => {
                self.event("transfer.accepted", serde_json::json!({})).await;
                None
            }
            TransferEvent::Refused { status } => {
                // The caller's side will not call the target itself: skald does,
                // and bridges the two legs (RFC 3515 leaves REFER to the UA's policy).
                let (req, _) = self.transfer.take()?;
                tracing::info!(status, "REFER refused: calling the target and bridging");
                self.event("transfer.refer_refused", serde_json::json!({ "status": status })).await;
                self.start_bridge(req, "refer-refused").await
            }
            TransferEvent::Progress { status, done } => {
                self.event("transfer.progress", serde_json::json!({ "status": status, "done": done })).await;
                if (200..300).contains(&status) {
                    let (req, _) = self.transfer.take()?;
                    tracing::info!(target = %req.target, "transfer completed: leaving the call");
                    let data = serde_json::json!({ "target": req.target, "mode": "cold", "via": via, "bridged": false });
                    self.event("transfer.completed", data).await;
                    return Some(self.hangup("transferred").await);
                }
                if done {
                    return self.transfer_failed(&format!("the target answered {status}")).await;
                }
                None
            }
            TransferEvent::Completed => {
                // The transport took the call; its leg ends `transferred`.
                let (req, _) = self.transfer.take()?;
                tracing::info!(target = %req.target, ?via, "transfer: the transport took the call");
                let data = serde_json::json!({ "target": req.target, "mode": "cold", "via": via, "bridged": false });
                self.event("transfer.completed", data).await;
                None
            }
            TransferEvent::Failed(why) => self.transfer_failed(&why).await,
        }
    }

    /// Hangs up the caller's leg (BYE, CANCEL, closing the socket) and
    /// waits, bounded, for it to end.
    async fn hangup(&mut self, reason: &str) -> Exit {
        self.set_state(CallState::Ending).await;
        self.hangup_leg().await;
        Exit::Ended { reason: reason.to_string(), status: self.record.sip_status }
    }

    /// Hangs up the caller's leg, if any.
    async fn hangup_leg(&mut self) {
        if let Some(l) = self.leg.as_mut() {
            l.hangup().await;
        }
    }

    async fn set_state(&mut self, state: CallState) {
        self.record.state = state.as_str().to_string();
        self.svc.registry.set_state(self.record.id, state);
        self.save(false).await;
        self.svc.publish_state(&self.record);
    }

    /// Writes the record; `insert` for the first write. Errors are logged:
    /// the call goes on even when the store is briefly unavailable.
    async fn save(&mut self, insert: bool) {
        let res = if insert { self.svc.store.insert_call(&self.record).await } else { self.svc.store.update_call(&self.record).await };
        if let Err(e) = res {
            tracing::error!(error = %e, "cannot write call record");
        }
    }

    async fn finish(&mut self, reason: &str, status: Option<u16>) {
        self.bridge_hangup();
        self.leave_contact_center();
        self.stop_recording();
        if let Some(r) = self.stereo.take()
            && let Err(e) = r.finalize()
        {
            tracing::warn!(error = %e, "recording not finalized");
        }
        self.voice_leaves().await;
        self.record.end_reason = Some(reason.to_string());
        self.record.sip_status = status.or(self.record.sip_status);
        self.record.ended_at = Some(now_ms());
        if let Some(s) = self.leg.as_ref().and_then(|l| l.stats()) {
            self.record.rtp_packets_in = Some(s.packets_in);
            self.record.rtp_packets_out = Some(s.packets_out);
            self.record.rtp_lost = Some(s.packets_lost);
            self.record.jitter_ms = Some(s.jitter_ms);
        }
        self.leg = None;
        self.set_state(CallState::Ended).await;
        let result = match (self.record.answered_at, status) {
            (Some(_), _) => "completed",
            (None, Some(487)) => "cancelled",
            (None, Some(s)) if s >= 400 => "rejected",
            _ => "failed",
        };
        self.svc.metrics.call_ended(result);
        self.svc.registry.remove(self.record.id);
        tracing::info!(%reason, ?status, "call ended");
    }
}

/// One input to the loop, gathered by `select!`.
enum Input {
    Bridge(bridge::BridgeInput),
    Queued(queued::QueuedInput),
    Monitor(monitor::MonitorInput),
    Voice(VoiceEvent),
    AmdMessage(Result<Vec<i16>, String>),
    Leg(LegEvent),
    Command(Option<CallCommand>),
    AppTimeout,
    PlayoutCheck,
}

/// The leg's next event; pending forever without a leg.
async fn next_leg(leg: &mut Option<Box<dyn Leg>>, pcm16k: &mut Vec<i16>) -> LegEvent {
    match leg {
        Some(l) => l.next_event(pcm16k).await,
        None => std::future::pending().await,
    }
}

/// The voice agent's next event; pending forever without one.
pub(super) async fn next_voice(voice: &mut Option<VoiceAgent>) -> VoiceEvent {
    match voice {
        Some(v) => v.next_event().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; pending forever when `None`.
pub(crate) async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;
