//! One actor task per call. It owns the dialog handle, the RTP session (via
//! [`MediaStream`]), the codec/resampler state and the application, and is
//! the only place where their outputs become actions.
//!
//! The loop (`run`) waits on exactly one of: a dialog event, a
//! [`CallCommand`], an RTP event, the application's deadline, or the playout
//! check; then it handles that input to completion before waiting again. No
//! lock is taken on the audio path.
//!
//! Audio path per ptime (20 ms): RTP payload → G.711 decode (8 kHz) →
//! resample to 16 kHz → recorder + application. Outbound: application audio
//! (16 kHz) → resample to 8 kHz → G.711 encode → queued in the RTP session,
//! which sends one packet per ptime on the media clock.

use super::apps::{self, AppAction, AppContext, AppInput, Application};
use super::command::CallCommand;
use super::service::{CallServices, now_ms};
use super::voice::{AudioOut, VoiceAction, VoiceAgent, VoiceConfig, VoiceEvent};
use crate::pipeline::recorder::StereoRecorder;
use super::state::CallState;
use crate::pipeline::wav::{self, WavRecorder};
use crate::rtp::codec::g711::Law;
use crate::rtp::codec::frames::G711Frames;
use crate::rtp::driver::MediaStream;
use crate::rtp::ports::RtpSockets;
use crate::rtp::proto::session::RtpEvent;
use crate::sip::driver::{DialogEvent, DialogHandle};
use crate::sip::sdp::{self, AudioCodec, Direction, LocalMedia, Negotiated, SdpError};
use crate::store::CallRecord;
use crate::store::events::CallEvent;
use super::transfer::{ContextIn, fetch_context, outgoing_context, refer_to};
use crate::agent::context::CallContext;
use crate::agent::escalation::{TransferMode, TransferRequest};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[path = "amd.rs"]
mod amd;
#[path = "bridge.rs"]
pub mod bridge;
#[path = "queued.rs"]
pub mod queued;
#[path = "monitor.rs"]
pub mod monitor;
#[path = "supervise.rs"]
pub mod supervise;
use tokio::time::Instant;

/// How long to wait for the far end to confirm our BYE/CANCEL.
const HANGUP_WAIT: Duration = Duration::from_secs(5);
/// How often to look whether queued playout has drained.
const PLAYOUT_CHECK: Duration = Duration::from_millis(20);
/// Duration of each DTMF digit skald sends (RFC 4733), and the gap after it.
const DTMF_TONE: Duration = Duration::from_millis(100);

/// Which side started the call, with what that side needs to set up media.
pub enum Leg {
    /// An incoming INVITE (UAS); `offer` is its SDP, if it carried one.
    Inbound {
        /// SDP offer from the INVITE.
        offer: Option<String>,
        /// Context headers of the INVITE (a transferred call).
        context: ContextIn,
    },
    /// An outbound INVITE (UAC) offering `local` on `sockets`.
    Outbound {
        /// The offer's parameters.
        local: LocalMedia,
        /// The bound RTP/RTCP sockets the offer names.
        sockets: RtpSockets,
    },
}

/// Media state of an answered call.
struct Media {
    /// Sockets + RTP session.
    stream: MediaStream,
    /// G.711 frames to and from 16 kHz audio.
    codec: G711Frames,
    /// Scratch buffer for the received frame, reused every frame.
    pcm16: Vec<i16>,
    /// What was negotiated (for re-INVITE answers).
    negotiated: Negotiated,
    /// Our SDP parameters (version bumped on each answer).
    local: LocalMedia,
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
    /// Acts on the SIP dialog.
    dialog: DialogHandle,
    /// Events of the dialog.
    events: mpsc::Receiver<DialogEvent>,
    /// Commands from the API, CLI and shutdown.
    commands: mpsc::Receiver<CallCommand>,
    /// How the call started (consumed at setup).
    leg: Option<Leg>,
    /// Configured application name.
    app_name: Option<String>,
    /// The running application.
    app: Option<Box<dyn Application>>,
    /// Media, once answered.
    media: Option<Media>,
    /// Caller audio recorder, when recording.
    recorder: Option<WavRecorder>,
    /// The voice agent, when the application is one.
    voice: Option<VoiceAgent>,
    /// Stereo recording of a voice call (caller left, agent right).
    stereo: Option<StereoRecorder>,
    /// Agent audio sent since the last caller frame (for the stereo recording).
    agent_sent: Vec<i16>,
    /// When the call was answered (transcript offsets).
    answered_at: Option<Instant>,
    /// True while queued prompt audio is still being sent.
    playing: bool,
    /// Next time to check whether playout drained.
    playout_check: Option<Instant>,
    /// The context the call came with (a transfer into skald).
    context: Option<CallContext>,
    /// A REFERred transfer in progress: (request, give up at).
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

/// How long a REFERred transfer may take to report success.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

impl CallActor {
    /// A new actor; nothing happens until [`CallActor::run`].
    pub fn new(
        svc: Arc<CallServices>,
        record: CallRecord,
        dialog: DialogHandle,
        events: mpsc::Receiver<DialogEvent>,
        commands: mpsc::Receiver<CallCommand>,
        leg: Leg,
        app_name: Option<String>,
    ) -> Self {
        CallActor {
            svc,
            record,
            dialog,
            events,
            commands,
            leg: Some(leg),
            app_name,
            app: None,
            media: None,
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
        let exit = match self.leg.take() {
            Some(Leg::Inbound { offer, context }) => match self.context_in(context).await.setup_inbound(offer).await {
                Ok(()) => self.event_loop().await,
                Err(exit) => exit,
            },
            Some(Leg::Outbound { local, sockets }) => match self.setup_outbound(local, sockets).await {
                Ok(()) => self.event_loop().await,
                Err(exit) => exit,
            },
            None => Exit::Ended { reason: "internal".into(), status: None },
        };
        let Exit::Ended { reason, status } = exit;
        self.finish(&reason, status).await;
    }

    /// Routes, negotiates SDP, rings and answers an incoming call.
    async fn setup_inbound(&mut self, offer: Option<String>) -> Result<(), Exit> {
        let Some(app_name) = self.app_name.clone() else {
            tracing::info!(did = %crate::observability::Pii(&self.record.did), "no route for number: 404");
            return Err(self.reject(404, "Not Found", "no-route"));
        };
        let Some(offer) = offer else {
            // Offer-less INVITEs (offer in our 2xx, answer in the ACK) are not supported yet.
            return Err(self.reject(488, "Not Acceptable Here", "no-sdp-offer"));
        };
        let sockets = match self.svc.ports.allocate().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no RTP ports");
                return Err(self.reject(503, "Service Unavailable", "no-media-ports"));
            }
        };
        let local = self.svc.local_media(sockets.rtp_port());
        let (answer, negotiated) = match sdp::answer(&offer, &local) {
            Ok(a) => a,
            Err(SdpError::NotAcceptable(why)) => {
                tracing::info!(%why, "SDP not acceptable: 488");
                return Err(self.reject(488, "Not Acceptable Here", "sdp-not-acceptable"));
            }
            Err(SdpError::Malformed(why)) => {
                tracing::info!(%why, "malformed SDP: 400");
                return Err(self.reject(400, "Bad SDP", "sdp-malformed"));
            }
        };
        let brain = self.build_brain(&app_name).map_err(|why| self.reject(500, "Server Internal Error", &why))?;
        if self.svc.config.sip.send_ringing {
            self.dialog.ring();
        }
        let delay = Duration::from_millis(self.svc.config.sip.answer_delay_ms);
        if !delay.is_zero() {
            self.wait_before_answer(delay).await?;
        }
        self.dialog.answer(answer);
        self.start_media(sockets, negotiated, local);
        self.install(brain).await;
        self.record.sip_status = Some(200);
        self.answered().await;
        Ok(())
    }

    /// Waits for the outbound INVITE's answer, then starts media.
    ///
    /// Early media: a 18x with SDP starts media at once (RTP to the
    /// early-media address, announcements and ringback received); the 2xx
    /// then keeps it, moving to the 2xx's address when its SDP differs.
    async fn setup_outbound(&mut self, local: LocalMedia, sockets: RtpSockets) -> Result<(), Exit> {
        let app_name = self.app_name.clone().unwrap_or_default();
        let mut sockets = Some(sockets);
        loop {
            let media = &mut self.media;
            tokio::select! {
                ev = next_media(media) => self.on_early_media(ev),
                ev = self.events.recv() => match ev {
                    Some(DialogEvent::Provisional { status, sdp }) => {
                        tracing::debug!(status, "provisional response");
                        if let (Some(answer), None) = (sdp.as_deref(), self.media.as_ref()) {
                            match sdp::accept_answer(answer, &local) {
                                Ok(n) => {
                                    tracing::info!(status, remote = %crate::observability::Pii(n.remote_rtp), "early media");
                                    let s = sockets.take().expect("sockets until media starts");
                                    self.start_media(s, n, local.clone());
                                    self.event("early_media", serde_json::json!({ "status": status })).await;
                                }
                                Err(e) => tracing::info!(error = %e, "unusable early-media SDP: ignored"),
                            }
                        }
                    }
                    Some(DialogEvent::Answered { sdp_answer }) if self.media.is_some() => {
                        if let Some(Ok(n)) = sdp_answer.as_deref().map(|a| sdp::accept_answer(a, &local)) {
                            self.early_media_answered(n);
                        }
                        let brain = match self.outbound_brain(&app_name) {
                            Ok(a) => a,
                            Err(why) => {
                                self.dialog.hangup();
                                return Err(Exit::Ended { reason: why, status: Some(200) });
                            }
                        };
                        self.install(brain).await;
                        self.amd_start(&app_name);
                        self.record.sip_status = Some(200);
                        self.answered().await;
                        return Ok(());
                    }
                    Some(DialogEvent::Answered { sdp_answer }) => {
                        let Some(sockets) = sockets.take() else {
                            return Err(Exit::Ended { reason: "internal".into(), status: Some(200) });
                        };
                        let negotiated = match sdp_answer.as_deref().map(|a| sdp::accept_answer(a, &local)) {
                            Some(Ok(n)) => n,
                            other => {
                                tracing::warn!(?other, "unusable SDP answer: ending the call");
                                self.dialog.hangup();
                                self.record.sip_status = Some(200);
                                return Err(Exit::Ended { reason: "sdp-answer-unusable".into(), status: Some(200) });
                            }
                        };
                        let brain = match self.outbound_brain(&app_name) {
                            Ok(a) => a,
                            Err(why) => {
                                self.dialog.hangup();
                                return Err(Exit::Ended { reason: why, status: Some(200) });
                            }
                        };
                        self.start_media(sockets, negotiated, local);
                        self.install(brain).await;
                        self.amd_start(&app_name);
                        self.record.sip_status = Some(200);
                        self.answered().await;
                        return Ok(());
                    }
                    Some(DialogEvent::Rejected { status, reason }) => {
                        tracing::info!(status, %reason, "outbound call rejected");
                        return Err(Exit::Ended { reason: format!("rejected: {reason}"), status: Some(status) });
                    }
                    Some(DialogEvent::Terminated { reason }) => {
                        return Err(Exit::Ended { reason, status: self.record.sip_status });
                    }
                    Some(other) => tracing::debug!(?other, "dialog event before answer"),
                    None => return Err(Exit::Ended { reason: "sip-stopped".into(), status: None }),
                },
                cmd = self.commands.recv() => {
                    if let Some(CallCommand::Hangup { reason }) = cmd {
                        self.dialog.hangup();
                        self.wait_terminated().await;
                        return Err(Exit::Ended { reason, status: Some(487) });
                    }
                }
            }
        }
    }

    /// Media before the answer (early media): the callee's announcements
    /// are not for anyone yet; silence from the far end is no reason to end.
    fn on_early_media(&mut self, ev: RtpEvent) {
        match ev {
            RtpEvent::Latched(addr) => tracing::debug!(addr = %crate::observability::Pii(addr), "early RTP latched"),
            RtpEvent::Dtmf { digit, .. } => tracing::debug!(%digit, "DTMF in early media ignored"),
            RtpEvent::Audio(_) | RtpEvent::Inactive => {}
        }
    }

    /// The 2xx after early media: same session, the 2xx's SDP wins where it
    /// differs (address, codec).
    fn early_media_answered(&mut self, n: Negotiated) {
        let Some(media) = self.media.as_mut() else { return };
        let session = media.stream.session_mut();
        if n.remote_rtp != media.negotiated.remote_rtp && !n.remote_rtp.ip().is_unspecified() {
            session.set_remote(n.remote_rtp);
        }
        if n.codec != media.negotiated.codec {
            let law = law_of(n.codec);
            session.set_payload_type(n.payload_type, vec![law.silence(); media.codec.frame_bytes()]);
            media.codec.set_law(law);
        }
        media.negotiated = n;
    }

    /// Between 180 and 200: a CANCEL or BYE ends the call, a hangup command rejects it.
    async fn wait_before_answer(&mut self, delay: Duration) -> Result<(), Exit> {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
                ev = self.events.recv() => match ev {
                    Some(DialogEvent::Cancelled) => {
                        return Err(Exit::Ended { reason: "cancelled".into(), status: Some(487) });
                    }
                    Some(DialogEvent::Terminated { reason }) => return Err(Exit::Ended { reason, status: None }),
                    None => return Err(Exit::Ended { reason: "sip-stopped".into(), status: None }),
                    Some(_) => {}
                },
                cmd = self.commands.recv() => {
                    if let Some(CallCommand::Hangup { reason }) = cmd {
                        return Err(self.reject(480, "Temporarily Unavailable", &reason));
                    }
                }
            }
        }
    }

    /// The answered call's loop.
    async fn event_loop(&mut self) -> Exit {
        loop {
            let app_deadline = self.app.as_ref().and_then(|a| a.poll_timeout()).map(Instant::from_std);
            let playout_check = self.playout_check;
            let hold = self.bridge.is_some() || self.queued.is_some() || self.supervise_holds_agent();
            let media = &mut self.media;
            // The agent is on hold while a second leg owns the caller's audio.
            let mut held = None;
            let voice = if hold { &mut held } else { &mut self.voice };
            let input = tokio::select! {
                ev = bridge::next_bridge(&mut self.bridge) => Input::Bridge(ev),
                ev = queued::next_queued(&mut self.queued) => Input::Queued(ev),
                ev = monitor::next_monitor(&mut self.monitor) => Input::Monitor(ev),
                ev = self.events.recv() => Input::Dialog(ev),
                cmd = self.commands.recv() => Input::Command(cmd),
                ev = next_media(media) => Input::Media(ev),
                ev = next_voice(voice) => Input::Voice(ev),
                msg = amd::next_message(&mut self.amd) => Input::AmdMessage(msg),
                _ = sleep_opt(app_deadline) => Input::AppTimeout,
                _ = sleep_opt(playout_check) => Input::PlayoutCheck,
            };
            let flow = match input {
                Input::Dialog(ev) => self.on_dialog(ev).await,
                Input::Command(Some(cmd)) => self.on_command(cmd).await,
                Input::Command(None) => None,
                Input::Media(ev) => self.on_media(ev).await,
                Input::AppTimeout => {
                    self.app_input(AppInput::Timeout).await
                }
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

    async fn on_dialog(&mut self, ev: Option<DialogEvent>) -> Option<Exit> {
        match ev {
            None => Some(Exit::Ended { reason: "sip-stopped".into(), status: self.record.sip_status }),
            Some(DialogEvent::Bye) => Some(Exit::Ended { reason: "remote-bye".into(), status: self.record.sip_status }),
            Some(DialogEvent::Cancelled) => Some(Exit::Ended { reason: "cancelled".into(), status: Some(487) }),
            Some(DialogEvent::Terminated { reason }) => Some(Exit::Ended { reason, status: self.record.sip_status }),
            Some(DialogEvent::ReInvite { sdp_offer }) => {
                self.on_reinvite(sdp_offer).await;
                None
            }
            Some(DialogEvent::Acked) => {
                tracing::debug!("ACK received");
                None
            }
            Some(ev @ (DialogEvent::ReferAccepted | DialogEvent::ReferFailed { .. } | DialogEvent::ReferProgress { .. })) => {
                self.on_refer_event(ev).await
            }
            Some(DialogEvent::ReferRequested { refer_to }) => {
                tracing::info!("the peer asked for a transfer (REFER): refused");
                self.event("transfer.requested", serde_json::json!({ "refer_to": refer_to })).await;
                self.app_input(AppInput::Referred(&refer_to)).await
            }
            Some(other) => {
                tracing::debug!(?other, "dialog event ignored");
                None
            }
        }
    }

    /// A re-INVITE: hold/resume (direction), new remote address, codec change.
    async fn on_reinvite(&mut self, offer: Option<String>) {
        let Some(media) = self.media.as_mut() else {
            self.dialog.reject_reinvite(491);
            return;
        };
        match media.renegotiate(offer.as_deref()) {
            Ok((answer, hold)) => {
                self.dialog.accept_reinvite(answer);
                if let Some(on_hold) = hold {
                    let state = if on_hold { CallState::OnHold } else { CallState::Answered };
                    self.set_state(state).await;
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "re-INVITE not acceptable: 488");
                self.dialog.reject_reinvite(488);
            }
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

    async fn on_media(&mut self, ev: RtpEvent) -> Option<Exit> {
        match ev {
            RtpEvent::Audio(payload) => {
                let m = self.media.as_mut()?;
                m.codec.decode(payload.as_deref(), &mut m.pcm16);
                let frame = std::mem::take(&mut m.pcm16);
                if self.monitor.is_some() {
                    self.monitor_audio(&frame);
                    if let Some(m) = self.media.as_mut() {
                        m.pcm16 = frame;
                    }
                    return None;
                }
                if let Some(exit) = self.supervise_caller_frame(&frame).await {
                    return Some(exit);
                }
                if self.bridged() || self.queued() || self.supervise_owns_caller() {
                    if let Some(rec) = self.recorder.as_mut()
                        && let Err(e) = rec.write(&frame)
                    {
                        tracing::warn!(error = %e, "recording failed; stopping it");
                        self.recorder = None;
                    }
                    if self.bridged() || self.queued() {
                        let to_target = self.supervision.to_target(&frame);
                        self.bridge_caller_audio(&to_target);
                    } else {
                        // Barge on or takeover of an agent's call: the
                        // recording goes on with the supervisors' side.
                        self.stereo_tick(&frame);
                    }
                    if let Some(m) = self.media.as_mut() {
                        m.pcm16 = frame;
                    }
                    return None;
                }
                if let Some(rec) = self.recorder.as_mut()
                    && let Err(e) = rec.write(&frame) {
                        tracing::warn!(error = %e, "recording failed; stopping it");
                        self.recorder = None;
                    }
                let mut exit = self.app_input(AppInput::Audio(&frame)).await;
                if exit.is_none() {
                    exit = match self.amd_audio(&frame).await {
                        Ok(()) => self.voice_audio(&frame).await,
                        Err(kept) => kept,
                    };
                }
                if let Some(m) = self.media.as_mut() {
                    m.pcm16 = frame;
                }
                exit
            }
            RtpEvent::Dtmf { digit, duration_ms } => {
                tracing::info!(%digit, duration_ms, "DTMF");
                self.record.dtmf.push(digit);
                self.save(false).await;
                if self.monitor.is_some() {
                    return self.monitor_digit(digit).await;
                }
                if self.bridged() || self.queued() {
                    self.bridge_caller_dtmf(digit);
                    return None;
                }
                if let (Some(v), Some(m)) = (self.voice.as_mut(), self.media.as_mut()) {
                    let now_ms = self.answered_at.map(|a| a.elapsed().as_millis() as i64).unwrap_or(0);
                    let actions = v.on_dtmf(digit, m, now_ms).await;
                    return self.voice_actions(actions).await;
                }
                self.app_input(AppInput::Dtmf(digit)).await
            }
            RtpEvent::Latched(addr) => {
                tracing::debug!(addr = %crate::observability::Pii(addr), "RTP latched");
                None
            }
            RtpEvent::Inactive => {
                tracing::warn!("no RTP for the inactivity timeout: ending the call");
                Some(self.hangup("rtp-timeout").await)
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
        let queued = self.media.as_ref().map(|m| m.stream_outbound_len()).unwrap_or(0);
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
                    if let Some(m) = self.media.as_mut() {
                        m.stream.session_mut().clear_outbound();
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
        let Some(m) = self.media.as_mut() else { return };
        m.play(audio);
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
                let ptime = self
                    .media
                    .as_ref()
                    .map(|m| Duration::from_millis(m.negotiated.ptime_ms as u64))
                    .unwrap_or(Duration::from_millis(20));
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
        let (Some(v), Some(m)) = (self.voice.as_mut(), self.media.as_mut()) else { return None };
        let actions = v.on_audio(frame, m, now_ms).await;
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
        let (Some(v), Some(m)) = (self.voice.as_mut(), self.media.as_ref()) else { return None };
        let (audio, actions) = v.on_tick(m, now_ms);
        self.supervision.agent_audio(&audio);
        if self.stereo.is_some() {
            self.agent_sent.extend_from_slice(&audio);
        }
        self.voice_actions(actions).await
    }

    async fn on_voice_event(&mut self, ev: VoiceEvent) -> Option<Exit> {
        let now_ms = self.call_ms();
        let (Some(v), Some(m)) = (self.voice.as_mut(), self.media.as_mut()) else { return None };
        let actions = v.on_event(ev, m, now_ms).await;
        self.voice_actions(actions).await
    }

    /// Carries out the voice agent's actions.
    async fn voice_actions(&mut self, actions: Vec<VoiceAction>) -> Option<Exit> {
        for a in actions {
            match a {
                VoiceAction::Turn(t) => {
                    self.svc.record_turn(&t).await;
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
            && let Err(e) = r.finalize() {
                tracing::warn!(error = %e, "recording not finalized");
            }
    }

    fn build_app(&self, name: &str) -> Result<Box<dyn Application>, String> {
        let ctx = AppContext {
            call_id: self.record.id,
            recordings_dir: self.svc.config.data_dir.join("recordings"),
        };
        apps::build(&self.svc.config, name, &ctx).map_err(|e| {
            tracing::error!(error = %e, app = name, "cannot start application");
            format!("app-error: {e}")
        })
    }

    fn start_media(&mut self, sockets: RtpSockets, n: Negotiated, local: LocalMedia) {
        self.record.codec = Some(match n.codec {
            AudioCodec::Pcmu => "PCMU".into(),
            AudioCodec::Pcma => "PCMA".into(),
        });
        self.media = Some(self.new_media(sockets, n, local));
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
    async fn context_in(&mut self, context: ContextIn) -> &mut Self {
        let ctx = match context {
            ContextIn::None => return self,
            ContextIn::Inline(c) => Ok(*c),
            ContextIn::ByRef(url, token) => fetch_context(&url, &token).await,
            ContextIn::Rejected(why) => Err(why),
        };
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
        self
    }

    /// Queues RFC 4733 telephone-events for `digits` (others ignored).
    fn send_dtmf(&mut self, digits: &str) {
        if let Some(m) = self.media.as_mut() {
            for d in digits.chars().filter(|c| "0123456789*#ABCDabcd".contains(*c)) {
                m.stream.session_mut().queue_dtmf(d.to_ascii_uppercase(), DTMF_TONE);
            }
        }
    }

    /// Stores an event on the call (logged when the store fails).
    async fn event(&mut self, kind: &str, data: serde_json::Value) {
        let e = CallEvent { call_id: Some(self.record.id), twilio_call_sid: None, kind: kind.into(), at: now_ms(), data };
        self.svc.record_event(e).await;
    }

    /// The context handed on with a transfer ([`outgoing_context`]).
    fn transfer_context(&self, req: &TransferRequest) -> CallContext {
        let transcript = format!("{}/api/v1/calls/{}", self.svc.api_base(), self.record.id);
        outgoing_context(self.context.as_ref(), &self.record, transcript, self.voice.as_ref(), req)
    }

    /// The agent asked for a transfer. Cold: REFER the caller to the target
    /// with the call's context in the Refer-To headers. Warm: call the
    /// target first ([`bridge`]).
    async fn start_transfer(&mut self, req: TransferRequest) -> Option<Exit> {
        if let Some(queue) = req.target.strip_prefix("queue:") {
            let queue = queue.to_string();
            return self.join_queue(req, &queue).await;
        }
        if req.mode == TransferMode::Warm {
            return self.start_bridge(req, "warm").await;
        }
        let mut ctx = self.transfer_context(&req);
        ctx.escalation_reason.get_or_insert_with(|| "caller asked for a person".into());
        let key = self.svc.config.context_key.clone().unwrap_or_default();
        let uri = refer_to(&req.target, &ctx, key.as_bytes(), &self.svc.contexts, &self.svc.api_base());
        tracing::info!(target = %req.target, "transfer: sending REFER");
        self.event("transfer.started", serde_json::json!({ "target": req.target, "mode": "cold", "context": ctx })).await;
        self.set_state(CallState::Transferring).await;
        self.dialog.refer(uri);
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
        self.voice_actions(actions).await
    }

    /// REFER outcome and NOTIFY progress.
    async fn on_refer_event(&mut self, ev: DialogEvent) -> Option<Exit> {
        self.transfer.as_ref()?;
        match ev {
            DialogEvent::ReferAccepted => {
                self.event("transfer.accepted", serde_json::json!({})).await;
                None
            }
            DialogEvent::ReferFailed { status } => {
                // The caller's side will not call the target itself: skald does,
                // and bridges the two legs (RFC 3515 leaves REFER to the UA's policy).
                let (req, _) = self.transfer.take()?;
                tracing::info!(status, "REFER refused: calling the target and bridging");
                self.event("transfer.refer_refused", serde_json::json!({ "status": status })).await;
                self.start_bridge(req, "refer-refused").await
            }
            DialogEvent::ReferProgress { status, done } => {
                self.event("transfer.progress", serde_json::json!({ "status": status, "done": done })).await;
                if (200..300).contains(&status) {
                    let (req, _) = self.transfer.take()?;
                    tracing::info!(target = %req.target, "transfer completed: leaving the call");
                    self.event("transfer.completed", serde_json::json!({ "target": req.target, "mode": "cold", "bridged": false })).await;
                    return Some(self.hangup("transferred").await);
                }
                if done {
                    return self.transfer_failed(&format!("the target answered {status}")).await;
                }
                None
            }
            _ => None,
        }
    }

    /// Sends BYE (or CANCEL/error) and waits, bounded, for the dialog to end.
    async fn hangup(&mut self, reason: &str) -> Exit {
        self.set_state(CallState::Ending).await;
        self.dialog.hangup();
        self.wait_terminated().await;
        Exit::Ended { reason: reason.to_string(), status: self.record.sip_status }
    }

    async fn wait_terminated(&mut self) {
        let deadline = Instant::now() + HANGUP_WAIT;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("no final response to BYE/CANCEL in time");
                    return;
                }
                ev = self.events.recv() => match ev {
                    Some(DialogEvent::Terminated { .. }) | Some(DialogEvent::Bye) | None => return,
                    Some(_) => {}
                }
            }
        }
    }

    /// Rejects the INVITE with a final response and returns the exit.
    fn reject(&mut self, status: u16, phrase: &str, reason: &str) -> Exit {
        self.dialog.reject(status, phrase);
        Exit::Ended { reason: reason.to_string(), status: Some(status) }
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
        let res = if insert {
            self.svc.store.insert_call(&self.record).await
        } else {
            self.svc.store.update_call(&self.record).await
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "cannot write call record");
        }
    }

    async fn finish(&mut self, reason: &str, status: Option<u16>) {
        self.bridge_hangup();
        self.leave_contact_center();
        self.stop_recording();
        if let Some(r) = self.stereo.take()
            && let Err(e) = r.finalize() {
                tracing::warn!(error = %e, "recording not finalized");
            }
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
        self.voice = None;
        self.record.end_reason = Some(reason.to_string());
        self.record.sip_status = status.or(self.record.sip_status);
        self.record.ended_at = Some(now_ms());
        if let Some(m) = &self.media {
            let s = m.stream_stats();
            self.record.rtp_packets_in = Some(s.packets_received);
            self.record.rtp_packets_out = Some(s.packets_sent);
            self.record.rtp_lost = Some(s.packets_lost);
            self.record.jitter_ms = Some(s.jitter_ms);
            let jb = m.stream.session().jitter_stats();
            tracing::info!(
                jitter_buffer = ?jb,
                rx = s.packets_received,
                tx = s.packets_sent,
                lost = s.packets_lost,
                jitter_ms = s.jitter_ms,
                "media stats"
            );
        }
        self.media = None;
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

impl Media {
    /// Encodes 16 kHz audio into ptime frames queued on the RTP session;
    /// returns how many frames. The tail is padded to a whole frame.
    fn play(&mut self, audio: &[i16]) -> usize {
        let session = self.stream.session_mut();
        self.codec.encode(audio, |f| session.queue_audio(f))
    }

    /// Applies a re-INVITE's offer to this leg (RFC 3264 §8): a new remote
    /// address, direction (hold: `sendonly`/`inactive` or a zero address,
    /// RFC 3264 §8.4) or codec. Returns the SDP for the 200 OK and, when
    /// the offer had SDP, whether the peer now holds the call. An offer-less
    /// re-INVITE gets our current media as the offer (RFC 3261 §14.2).
    /// Errors: the offer is not acceptable (answer 488).
    fn renegotiate(&mut self, offer: Option<&str>) -> Result<(String, Option<bool>), sdp::SdpError> {
        let Some(offer) = offer else {
            self.local.session_version += 1;
            return Ok((sdp::offer(&self.local), None));
        };
        let mut local = self.local.clone();
        local.session_version += 1;
        let (answer, n) = sdp::answer(offer, &local)?;
        self.local = local;
        let session = self.stream.session_mut();
        session.set_remote(n.remote_rtp);
        let (send, recv) = match n.direction {
            Direction::SendRecv => (true, true),
            Direction::SendOnly => (true, false),
            Direction::RecvOnly => (false, true),
            Direction::Inactive => (false, false),
        };
        let on_hold = !send || n.remote_rtp.ip().is_unspecified();
        session.set_direction(send && !n.remote_rtp.ip().is_unspecified(), recv);
        if n.codec != self.negotiated.codec {
            let law = law_of(n.codec);
            session.set_payload_type(n.payload_type, vec![law.silence(); self.codec.frame_bytes()]);
            self.codec.set_law(law);
        }
        tracing::info!(codec = ?n.codec, direction = ?n.direction, "re-INVITE accepted");
        self.negotiated = n;
        Ok((answer, Some(on_hold)))
    }

    fn stream_outbound_len(&self) -> usize {
        self.stream.session().outbound_len()
    }

    fn stream_stats(&self) -> crate::rtp::proto::session::RtpStats {
        self.stream.session().stats()
    }
}

impl AudioOut for Media {
    fn play(&mut self, pcm16k: &[i16]) -> usize {
        Media::play(self, pcm16k)
    }
    fn queued(&self) -> usize {
        self.stream.session().outbound_len()
    }
    fn pause(&mut self) -> Vec<Vec<u8>> {
        self.stream.session_mut().take_outbound()
    }
    fn resume(&mut self, frames: Vec<Vec<u8>>) {
        self.stream.session_mut().requeue_front(frames);
    }
}

/// One input to the loop, gathered by `select!`.
enum Input {
    Bridge(bridge::BridgeInput),
    Queued(queued::QueuedInput),
    Monitor(monitor::MonitorInput),
    Voice(VoiceEvent),
    AmdMessage(Result<Vec<i16>, String>),
    Dialog(Option<DialogEvent>),
    Command(Option<CallCommand>),
    Media(RtpEvent),
    AppTimeout,
    PlayoutCheck,
}

fn law_of(codec: AudioCodec) -> Law {
    match codec {
        AudioCodec::Pcmu => Law::Mu,
        AudioCodec::Pcma => Law::A,
    }
}

async fn next_media(media: &mut Option<Media>) -> RtpEvent {
    match media {
        Some(m) => m.stream.next_event().await,
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
pub(super) async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
