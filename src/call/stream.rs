//! A call whose audio comes over a WebSocket: a Twilio Media Stream
//! (`<Connect><Stream>`) or the control page's microphone
//! (`GET /api/v1/talk`). One actor task per socket, with the same voice
//! agent, barge-in, records, transcripts, metrics and hangup API as a SIP
//! call.
//!
//! The HTTP layer accepts the WebSocket and hands it here as a stream of
//! [`WsInput`] frames and a sink of [`WsOutput`] frames ([`StreamCall::run`]
//! is generic over them, so tests and other WebSocket stacks can drive it).
//! The actor is generic over the transport ([`StreamTransport`]: a sans-IO
//! protocol core plus its codec, seen by the voice agent as [`AudioOut`]):
//! [`TwilioStream`] (`transports::twilio::media`) or [`BrowserStream`]
//! (`transports::browser`). Its loop waits on exactly one of: a WebSocket
//! frame, a [`CallCommand`], a voice-agent event, the transport's pacing
//! deadline or the playout check, and handles it to completion.
//!
//! Audio per 20 ms: the transport's frame → 16 kHz → voice agent (Twilio:
//! `media` payload → µ-law decode at 8 kHz → 16 kHz; browser: PCM16 at
//! 16 kHz as is). Outbound: agent audio (16 kHz) → the transport's frames,
//! paced; a barge-in sends the transport's flush (Twilio `clear`, browser
//! `{"type":"clear"}`).
//!
//! Ending: Twilio's `stop` or the page's `{"type":"stop"}` (`remote-stop`);
//! the agent or the API hanging up closes the WebSocket, which for Twilio
//! ends `<Connect>` and, with no TwiML after it, the call. A stream that
//! never starts, closes without `stop` (`stream-closed`), or floods bad
//! messages ends with the reason in the record.
//!
//! Supervisors listen, whisper text, barge in and take over as on a SIP
//! call (the same `Supervision`, mixed per caller frame). A transfer of a
//! Twilio call asks Twilio to move it (REST "Update a Call" with a
//! `<Dial>`; the stream then stops and the call ends `transferred`); a
//! browser call cannot be transferred: the caller is told and the agent
//! goes on, as when a transfer fails.

use super::actor::{next_voice, sleep_opt};
use super::actor::supervise::{CallFacts, Supervision};
use super::transfer::{outgoing_context, refer_to};
use crate::agent::context::CallContext;
use crate::agent::escalation::TransferRequest;
use crate::transports::twilio::rest::TwilioClient;
use crate::transports::twilio::twiml;
use super::command::CallCommand;
use super::registry::CallSummary;
use super::service::{CallServices, now_ms};
use super::state::CallState;
use super::voice::{AudioOut, VoiceAction, VoiceAgent, VoiceConfig, VoiceEvent};
use crate::ids::CallId;
use crate::pipeline::recorder::StereoRecorder;
use crate::rtp::codec::frames::G711Frames;
use crate::rtp::codec::g711::Law;
use crate::store::CallRecord;
use crate::store::turns::TurnRecord;
use crate::transports::browser::{BrowserEvent, BrowserSession, BrowserTransmit};
use crate::transports::twilio::media::{MediaStreamSession, StreamEvent};
pub use crate::transports::twilio::media::StreamStart;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

/// How long a new stream may take to send `start`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often playout acknowledgements are accounted for.
const PLAYOUT_CHECK: Duration = Duration::from_millis(20);
/// Bad messages tolerated before the stream is ended as misbehaving.
const MAX_BAD_MESSAGES: u64 = 200;
/// Bad-message reasons copied into the record (the rest are counted).
const MAX_ERRORS_RECORDED: usize = 5;
/// Commands a stream call's mailbox holds.
const COMMAND_QUEUE: usize = 32;

/// An input from the WebSocket: a data frame (the end of the socket is the
/// end of the stream, or an error).
#[derive(Debug)]
pub enum WsInput {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

/// A frame to send on the WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub enum WsOutput {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

/// What a transport reported, in the call's terms.
#[derive(Debug)]
pub enum TransportEvent {
    /// The stream started: who and what.
    Start(StreamStart),
    /// One 20 ms caller frame, decoded into the buffer given to
    /// [`StreamTransport::poll_event`].
    Audio,
    /// A DTMF digit from the caller.
    Dtmf(char),
    /// The far end acknowledged playout of agent audio.
    Played,
    /// The far end ended the stream.
    Stop,
}

/// One WebSocket transport as the stream actor drives it: a sans-IO
/// protocol core and its codec. The run loop is the cores' own: feed one
/// frame to [`StreamTransport::handle_input`], drain
/// [`StreamTransport::poll_event`] and [`StreamTransport::poll_transmit`],
/// sleep until [`StreamTransport::poll_timeout`].
pub trait StreamTransport: AudioOut {
    /// The record's `transport`.
    const NAME: &'static str;
    /// The record's `codec`.
    const CODEC: &'static str;
    /// Handles one frame; an error describes a dropped message (counted in
    /// [`StreamTransport::dropped`]), the stream goes on.
    fn handle_input(&mut self, input: WsInput, now: std::time::Instant) -> Result<(), String>;
    /// The next event, oldest first; caller audio is decoded into `pcm16k`.
    fn poll_event(&mut self, pcm16k: &mut Vec<i16>) -> Option<TransportEvent>;
    /// The next frame to send now.
    fn poll_transmit(&mut self, now: std::time::Instant) -> Option<WsOutput>;
    /// When [`StreamTransport::poll_transmit`] may next have something.
    fn poll_timeout(&self) -> Option<std::time::Instant>;
    /// Messages dropped as bad input.
    fn dropped(&self) -> u64;
    /// A transcript turn was stored (a transport may show it to the caller).
    fn on_turn(&mut self, _turn: &TurnRecord) {}
}

/// Twilio Media Streams: the session and the µ-law frame codec.
pub struct TwilioStream {
    /// Protocol core.
    session: MediaStreamSession,
    /// µ-law frames ⇄ 16 kHz audio.
    codec: G711Frames,
}

impl TwilioStream {
    /// A stream waiting for Twilio's `start`.
    pub fn new() -> Self {
        TwilioStream { session: MediaStreamSession::new(), codec: G711Frames::new(Law::Mu, 20) }
    }
}

impl Default for TwilioStream {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioOut for TwilioStream {
    fn play(&mut self, pcm16k: &[i16]) -> usize {
        let mut frames = Vec::new();
        let n = self.codec.encode(pcm16k, |f| frames.push(f));
        self.session.play(frames);
        n
    }
    fn queued(&self) -> usize {
        self.session.unplayed()
    }
    fn unsent(&self) -> usize {
        self.session.unsent()
    }
    fn pause(&mut self) -> Vec<Vec<u8>> {
        self.session.pause(std::time::Instant::now())
    }
    fn resume(&mut self, frames: Vec<Vec<u8>>) {
        self.session.resume(frames);
    }
}

impl StreamTransport for TwilioStream {
    const NAME: &'static str = "twilio-stream";
    const CODEC: &'static str = "PCMU";

    fn handle_input(&mut self, input: WsInput, now: std::time::Instant) -> Result<(), String> {
        match input {
            WsInput::Text(t) => self.session.handle_text(&t, now).map_err(|e| e.to_string()),
            WsInput::Binary(b) => {
                self.session.dropped += 1;
                Err(format!("binary frame of {} bytes", b.len()))
            }
        }
    }
    fn poll_event(&mut self, pcm16k: &mut Vec<i16>) -> Option<TransportEvent> {
        Some(match self.session.poll_event()? {
            StreamEvent::Start(s) => TransportEvent::Start(s),
            StreamEvent::Audio(payload) => {
                self.codec.decode(payload.as_deref(), pcm16k);
                TransportEvent::Audio
            }
            StreamEvent::Dtmf(d) => TransportEvent::Dtmf(d),
            StreamEvent::Played { .. } => TransportEvent::Played,
            StreamEvent::Stop => TransportEvent::Stop,
        })
    }
    fn poll_transmit(&mut self, now: std::time::Instant) -> Option<WsOutput> {
        self.session.poll_transmit(now).map(WsOutput::Text)
    }
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.session.poll_timeout()
    }
    fn dropped(&self) -> u64 {
        self.session.dropped
    }
}

/// The control page's microphone: PCM16 16 kHz as is, so no codec; the
/// start comes from the URL, not from the wire.
pub struct BrowserStream {
    /// Protocol core.
    session: BrowserSession,
    /// The start, reported as the first event.
    start: Option<StreamStart>,
}

impl BrowserStream {
    /// A conversation with application `app` for the signed-in `user`.
    pub fn new(app: &str, user: &str) -> Self {
        let mut start = StreamStart::default();
        start.custom_parameters.insert("app".into(), app.into());
        start.custom_parameters.insert("from".into(), user.into());
        BrowserStream { session: BrowserSession::new(), start: Some(start) }
    }
}

impl AudioOut for BrowserStream {
    fn play(&mut self, pcm16k: &[i16]) -> usize {
        self.session.play(pcm16k)
    }
    fn queued(&self) -> usize {
        self.session.unplayed()
    }
    fn unsent(&self) -> usize {
        self.session.unsent()
    }
    fn pause(&mut self) -> Vec<Vec<u8>> {
        self.session.pause(std::time::Instant::now())
    }
    fn resume(&mut self, frames: Vec<Vec<u8>>) {
        self.session.resume(frames);
    }
}

impl StreamTransport for BrowserStream {
    const NAME: &'static str = "browser";
    const CODEC: &'static str = "L16/16000";

    fn handle_input(&mut self, input: WsInput, now: std::time::Instant) -> Result<(), String> {
        match input {
            WsInput::Text(t) => self.session.handle_text(&t, now),
            WsInput::Binary(b) => self.session.handle_binary(&b, now),
        }
        .map_err(|e| e.to_string())
    }
    fn poll_event(&mut self, pcm16k: &mut Vec<i16>) -> Option<TransportEvent> {
        if let Some(s) = self.start.take() {
            return Some(TransportEvent::Start(s));
        }
        Some(match self.session.poll_event()? {
            BrowserEvent::Audio(frame) => {
                pcm16k.clear();
                pcm16k.extend_from_slice(&frame);
                TransportEvent::Audio
            }
            BrowserEvent::Dtmf(d) => TransportEvent::Dtmf(d),
            BrowserEvent::Stop => TransportEvent::Stop,
        })
    }
    fn poll_transmit(&mut self, now: std::time::Instant) -> Option<WsOutput> {
        Some(match self.session.poll_transmit(now)? {
            BrowserTransmit::Text(t) => WsOutput::Text(t),
            BrowserTransmit::Binary(b) => WsOutput::Binary(b),
        })
    }
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.session.poll_timeout()
    }
    fn dropped(&self) -> u64 {
        self.session.dropped
    }
    fn on_turn(&mut self, turn: &TurnRecord) {
        self.session.transcript(&turn.speaker, &turn.text);
    }
}

/// What ended the loop.
struct Exit {
    /// Recorded end reason.
    reason: String,
    /// Close the WebSocket from our side.
    close: bool,
}

/// The actor of one WebSocket call over transport `T`.
pub struct StreamCall<T: StreamTransport> {
    /// Shared services.
    svc: Arc<CallServices>,
    /// Peer address of the WebSocket (for the record).
    remote: String,
    /// The record, once `start` arrived.
    record: CallRecord,
    /// The transport: protocol core + codec.
    out: T,
    /// The voice agent.
    voice: Option<VoiceAgent>,
    /// Stereo recording (caller left, agent right).
    stereo: Option<StereoRecorder>,
    /// Agent audio heard since the last caller frame (for the recording).
    agent_heard: Vec<i16>,
    /// When the stream started (transcript offsets).
    started_at: Instant,
    /// Scratch for the decoded caller frame.
    pcm16: Vec<i16>,
    /// Supervisors on the call (listen, whisper text, barge, takeover).
    supervision: Supervision,
    /// The context the call came with (the webhook's signed `context`).
    context: Option<CallContext>,
    /// A transfer Twilio is being asked to make (REST call under way).
    transfer: Option<PendingTransfer>,
    /// Twilio took the call to a transfer target: the stream's end is the
    /// transfer's, not the caller hanging up.
    transferred: bool,
}

/// A transfer of a Twilio call: the REST request that replaces the call's
/// TwiML with a `<Dial>`, running in its own task.
struct PendingTransfer {
    /// What the agent asked for.
    req: TransferRequest,
    /// The REST request's outcome.
    rx: oneshot::Receiver<Result<(), String>>,
}

/// The outcome of the pending transfer's REST request; pending forever
/// without one.
async fn transfer_result(t: &mut Option<PendingTransfer>) -> Result<(), String> {
    match t {
        Some(t) => (&mut t.rx).await.unwrap_or_else(|_| Err("the transfer request was dropped".into())),
        None => std::future::pending().await,
    }
}

impl<T: StreamTransport> StreamCall<T> {
    /// A new actor for a WebSocket from `remote` speaking `out`; nothing
    /// happens until [`StreamCall::run`].
    pub fn new(svc: Arc<CallServices>, remote: String, out: T) -> Self {
        StreamCall {
            svc,
            remote,
            record: CallRecord::default(),
            out,
            voice: None,
            stereo: None,
            agent_heard: Vec::new(),
            started_at: Instant::now(),
            pcm16: Vec::with_capacity(320),
            supervision: Supervision::default(),
            context: None,
            transfer: None,
            transferred: false,
        }
    }

    /// Runs the stream to its end: waits for `start`, registers the call,
    /// runs the voice agent, writes the final record. `rx` yields the
    /// socket's frames (`None` or an error: the socket is gone); `tx`
    /// takes frames to send; closing `tx` closes the socket.
    pub async fn run<R, S, E>(mut self, mut rx: R, mut tx: S)
    where
        R: Stream<Item = Result<WsInput, E>> + Unpin + Send,
        S: Sink<WsOutput> + Unpin + Send,
        E: std::fmt::Display,
    {
        let Some(start) = self.wait_start(&mut rx).await else {
            let _ = tx.close().await;
            return;
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        self.register(&start, cmd_tx).await;
        let span = tracing::info_span!("call", call_id = %self.record.id, transport = T::NAME, twilio_call_sid = %start.call_sid);
        async move {
            let exit = self.start_voice(&start).await;
            let exit = match exit {
                Some(e) => e,
                None => self.event_loop(&mut rx, &mut tx, cmd_rx).await,
            };
            if exit.close {
                let _ = self.flush(&mut tx).await;
                let _ = tx.close().await;
            }
            self.finish(&exit.reason).await;
        }
        .instrument(span)
        .await;
    }

    /// Reads frames until `start` (dropping bad ones); `None` when the
    /// socket ends or `start` does not come in time.
    async fn wait_start<R, E>(&mut self, rx: &mut R) -> Option<StreamStart>
    where
        R: Stream<Item = Result<WsInput, E>> + Unpin,
        E: std::fmt::Display,
    {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            while let Some(ev) = self.out.poll_event(&mut self.pcm16) {
                if let TransportEvent::Start(s) = ev {
                    return Some(s);
                }
            }
            if self.out.dropped() > MAX_BAD_MESSAGES {
                tracing::warn!("media stream floods bad messages before `start`: closed");
                return None;
            }
            let frame = tokio::select! {
                f = rx.next() => f,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(remote = %crate::observability::Pii(&self.remote), "media stream sent no `start` in time: closed");
                    return None;
                }
            };
            match frame {
                Some(Ok(input)) => {
                    if let Err(e) = self.out.handle_input(input, std::time::Instant::now()) {
                        tracing::warn!(error = %e, "media stream message dropped");
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "media stream socket failed before `start`");
                    return None;
                }
                None => return None,
            }
        }
    }

    /// Writes the first record and registers the call.
    async fn register(&mut self, start: &StreamStart, cmd_tx: mpsc::Sender<CallCommand>) {
        let p = &start.custom_parameters;
        let did = p.get("did").cloned().unwrap_or_default();
        let app = p.get("app").cloned().or_else(|| self.svc.config.route(&did).map(str::to_string));
        let now = now_ms();
        self.record = CallRecord {
            id: CallId::new(),
            sip_call_id: String::new(),
            direction: p.get("direction").cloned().unwrap_or_else(|| "inbound".into()),
            from_uri: p.get("from").cloned().unwrap_or_default(),
            to_uri: did.clone(),
            did,
            remote_addr: self.remote.clone(),
            app,
            codec: Some(T::CODEC.into()),
            state: CallState::Answered.as_str().into(),
            invited_at: now,
            answered_at: Some(now),
            transport: Some(T::NAME.into()),
            twilio_call_sid: Some(start.call_sid.clone()).filter(|s| !s.is_empty()),
            ..Default::default()
        };
        self.started_at = Instant::now();
        self.svc.registry.insert(
            CallSummary {
                id: self.record.id,
                sip_call_id: String::new(),
                from: self.record.from_uri.clone(),
                did: self.record.did.clone(),
                app: self.record.app.clone().unwrap_or_default(),
                state: CallState::Answered,
                started_at: now,
                queue: None,
            },
            cmd_tx,
        );
        self.svc.metrics.call_started();
        if let Err(e) = self.svc.store.insert_call(&self.record).await {
            tracing::error!(error = %e, "cannot write call record");
        }
        self.svc.publish_state(&self.record);
        self.context_in(p.get("context").map(String::as_str)).await;
        tracing::info!(
            did = %crate::observability::Pii(&self.record.did),
            app = ?self.record.app,
            stream_sid = %start.stream_sid,
            transport = T::NAME,
            "media stream started"
        );
    }

    /// The call's context from the `context` stream parameter (signed by
    /// the webhook): kept as a `context.received` event on the call; one
    /// that does not verify is ignored with a warning (the call goes on as a
    /// fresh call).
    async fn context_in(&mut self, value: Option<&str>) {
        let (Some(value), Some(key)) = (value, self.svc.config.context_key.as_deref()) else { return };
        let ctx = match crate::agent::context::CallContext::decode_signed(value, key.as_bytes()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "stream context ignored");
                return;
            }
        };
        self.context = Some(ctx.clone());
        let event = crate::store::events::CallEvent {
            call_id: Some(self.record.id),
            twilio_call_sid: self.record.twilio_call_sid.clone(),
            kind: "context.received".into(),
            at: now_ms(),
            data: serde_json::from_str(&ctx.to_json()).unwrap_or_default(),
        };
        self.svc.record_event(event).await;
    }

    /// Starts the voice agent and its greeting; an exit when it cannot run.
    async fn start_voice(&mut self, start: &StreamStart) -> Option<Exit> {
        let fail = |reason: &str| Some(Exit { reason: reason.to_string(), close: true });
        let Some(app) = self.record.app.clone() else {
            tracing::warn!("media stream for a number with no route: closed");
            return fail("no-route");
        };
        let (cfg, record) = match VoiceConfig::for_app(&self.svc.config, &app) {
            Ok(Some(c)) => c,
            Ok(None) => {
                self.record.errors.push(format!("application `{app}` is not a voice agent; media streams run voice agents"));
                return fail("app-error");
            }
            Err(e) => {
                self.record.errors.push(e);
                return fail("app-error");
            }
        };
        let Some(svc) = self.svc.voice.clone() else {
            return fail("voice-unavailable");
        };
        let today = time::OffsetDateTime::now_utc().date();
        match VoiceAgent::start(svc, cfg, self.record.id, today, Duration::from_millis(20)).await {
            Ok(v) => self.voice = Some(v),
            Err(e) => {
                tracing::error!(error = %e, "voice agent cannot start");
                self.record.errors.push(format!("voice agent: {e}"));
                return fail("voice-unavailable");
            }
        }
        if record {
            let path = self.svc.config.data_dir.join("recordings").join(format!("{}.wav", self.record.id));
            match StereoRecorder::create(&path) {
                Ok(r) => {
                    self.stereo = Some(r);
                    self.record.recording_path = Some(path.display().to_string());
                }
                Err(e) => tracing::warn!(error = %e, "cannot record"),
            }
        }
        if !start.custom_parameters.is_empty() {
            tracing::debug!(params = ?start.custom_parameters.keys().collect::<Vec<_>>(), "stream parameters");
        }
        let v = self.voice.as_mut()?;
        let actions = v.begin().await;
        self.voice_actions(actions).await
    }

    async fn event_loop<R, S, E>(&mut self, rx: &mut R, tx: &mut S, mut commands: mpsc::Receiver<CallCommand>) -> Exit
    where
        R: Stream<Item = Result<WsInput, E>> + Unpin + Send,
        S: Sink<WsOutput> + Unpin + Send,
        E: std::fmt::Display,
    {
        let mut playout = tokio::time::interval(PLAYOUT_CHECK);
        playout.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.flush(tx).await.is_err() {
                return Exit { reason: "stream-closed".into(), close: false };
            }
            let pace = self.out.poll_timeout().map(Instant::from_std);
            // The agent is on hold while a supervisor barges in.
            let mut held = None;
            let voice = if self.supervision.barging() { &mut held } else { &mut self.voice };
            let flow = tokio::select! {
                frame = rx.next() => self.on_frame(frame).await,
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => None,
                },
                ev = next_voice(voice) => self.on_voice_event(ev).await,
                r = transfer_result(&mut self.transfer) => self.on_transfer_result(r).await,
                _ = sleep_opt(pace) => None,
                _ = playout.tick() => self.voice_tick().await,
            };
            if let Some(exit) = flow {
                return exit;
            }
        }
    }

    /// Sends everything the transport releases now.
    async fn flush<S: Sink<WsOutput> + Unpin>(&mut self, tx: &mut S) -> Result<(), ()> {
        let now = std::time::Instant::now();
        while let Some(frame) = self.out.poll_transmit(now) {
            tx.send(frame).await.map_err(|_| ())?;
        }
        Ok(())
    }

    async fn on_frame<E: std::fmt::Display>(&mut self, frame: Option<Result<WsInput, E>>) -> Option<Exit> {
        let input = match frame {
            Some(Ok(input)) => input,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "media stream socket failed");
                self.record.errors.push(format!("stream: socket failed: {e}"));
                return Some(Exit { reason: "stream-error".into(), close: false });
            }
            None if self.transferred => return Some(Exit { reason: "transferred".into(), close: false }),
            None => {
                tracing::warn!("media stream closed without `stop`");
                self.record.errors.push("stream: closed without `stop`".into());
                return Some(Exit { reason: "stream-closed".into(), close: false });
            }
        };
        if let Err(e) = self.out.handle_input(input, std::time::Instant::now()) {
            tracing::warn!(error = %e, "media stream message dropped");
            if self.record.errors.len() < MAX_ERRORS_RECORDED {
                self.record.errors.push(format!("stream: dropped: {e}"));
            }
            return self.check_flood();
        }
        while let Some(ev) = self.out.poll_event(&mut self.pcm16) {
            if let Some(exit) = self.on_stream_event(ev).await {
                return Some(exit);
            }
        }
        None
    }

    fn check_flood(&mut self) -> Option<Exit> {
        let dropped = self.out.dropped();
        (dropped > MAX_BAD_MESSAGES).then(|| {
            tracing::warn!(dropped, "media stream misbehaves: ended");
            self.record.errors.push(format!("stream: {dropped} bad messages"));
            Exit { reason: "stream-misbehaved".into(), close: true }
        })
    }

    async fn on_stream_event(&mut self, ev: TransportEvent) -> Option<Exit> {
        match ev {
            TransportEvent::Audio => {
                let pcm = std::mem::take(&mut self.pcm16);
                let mut exit = self.supervise_frame(&pcm).await;
                if exit.is_none() {
                    exit = if self.supervision.taken_over() || self.supervision.barging() {
                        // Supervisors own the caller: the agent neither
                        // hears nor speaks; the recording goes on.
                        self.stereo_tick(&pcm);
                        None
                    } else {
                        self.voice_audio(&pcm).await
                    };
                }
                self.pcm16 = pcm;
                exit
            }
            TransportEvent::Dtmf(digit) => {
                self.record.dtmf.push(digit);
                let now_ms = self.call_ms();
                let v = self.voice.as_mut()?;
                let actions = v.on_dtmf(digit, &mut self.out, now_ms).await;
                self.voice_actions(actions).await
            }
            TransportEvent::Played => self.voice_tick().await,
            TransportEvent::Stop if self.transferred => {
                tracing::info!(transport = T::NAME, "the stream stopped: Twilio dials the transfer target");
                Some(Exit { reason: "transferred".into(), close: true })
            }
            TransportEvent::Stop => {
                tracing::info!(transport = T::NAME, "the far end stopped the stream (caller hung up)");
                Some(Exit { reason: "remote-stop".into(), close: true })
            }
            TransportEvent::Start(_) => None,
        }
    }

    async fn on_command(&mut self, cmd: CallCommand) -> Option<Exit> {
        match cmd {
            CallCommand::Hangup { reason } => Some(Exit { reason, close: true }),
            CallCommand::Supervise { session, mode, text, by, reply } => {
                let facts = CallFacts {
                    media: true,
                    voice: self.voice.is_some(),
                    llm: self.voice.as_ref().is_some_and(VoiceAgent::is_llm),
                    bridged: false,
                };
                let applied = match self.supervision.command(facts, session, mode, text, &by, std::time::Instant::now()) {
                    Ok(a) => a,
                    Err(e) => {
                        reply.send(Err(e));
                        return None;
                    }
                };
                reply.send(Ok(applied.info.clone()));
                if let (Some(t), Some(v)) = (&applied.instruction, self.voice.as_mut()) {
                    v.add_instruction(t);
                    tracing::info!(%by, "supervisor instruction to the agent");
                }
                if applied.take_over || applied.hold_changed {
                    // The agent's queued audio stops at once.
                    self.out.pause();
                }
                if applied.take_over
                    && let Some(mut v) = self.voice.take()
                {
                    self.record.errors.extend(v.provider_failures());
                    for a in v.finish() {
                        if let VoiceAction::Turn(t) = a {
                            self.svc.record_turn(&t).await;
                        }
                    }
                    tracing::info!("takeover: the agent left the call");
                    self.event("supervisor.takeover", serde_json::json!({})).await;
                }
                applied.abandoned.then(|| Exit { reason: "supervisor-left".into(), close: true })
            }
            CallCommand::SuperviseAttach { session, reply } => {
                reply.send(self.supervision.attach(&session));
                None
            }
            CallCommand::Transfer { target, mode } => self.start_transfer(TransferRequest { mode, ..TransferRequest::cold(target) }).await,
            other => {
                tracing::warn!(command = ?other, "command not supported on a media stream call");
                None
            }
        }
    }

    /// The supervisors' mix for one caller frame (before the agent hears
    /// it): their audio to the caller in barge and takeover. Ends the call
    /// when a takeover's last supervisor left.
    async fn supervise_frame(&mut self, frame: &[i16]) -> Option<Exit> {
        if self.supervision.is_idle() {
            return None;
        }
        let tick = self.supervision.tick(frame, false, std::time::Instant::now());
        if tick.hold_changed && self.voice.is_some() {
            // On hold the agent's audio stops at once; back from hold the
            // supervisors' queued audio is dropped.
            self.out.pause();
        }
        if let Some(audio) = tick.to_caller {
            self.out.play(&audio);
            if self.stereo.is_some() {
                self.agent_heard.extend_from_slice(&audio);
            }
        }
        for e in tick.ended {
            tracing::info!(session = %e.id, by = %e.by, why = e.why, "supervisor left");
            let data = serde_json::json!({ "session": e.id, "by": e.by, "mode": e.mode.as_str(), "why": e.why });
            self.event("supervisor.left", data).await;
        }
        tick.abandoned.then(|| Exit { reason: "supervisor-left".into(), close: true })
    }

    /// An event on this call's record and the live event stream.
    async fn event(&mut self, kind: &str, data: serde_json::Value) {
        let e = crate::store::events::CallEvent {
            call_id: Some(self.record.id),
            twilio_call_sid: self.record.twilio_call_sid.clone(),
            kind: kind.into(),
            at: now_ms(),
            data,
        };
        self.svc.record_event(e).await;
    }

    /// One caller frame into the stereo recording, with the agent's (or
    /// supervisors') audio heard since the last one.
    fn stereo_tick(&mut self, caller: &[i16]) {
        StereoRecorder::tick_or_stop(&mut self.stereo, caller, &mut self.agent_heard);
    }

    /// Milliseconds since the stream started (transcript offsets).
    fn call_ms(&self) -> i64 {
        self.started_at.elapsed().as_millis() as i64
    }

    async fn voice_audio(&mut self, frame: &[i16]) -> Option<Exit> {
        let now_ms = self.call_ms();
        let v = self.voice.as_mut()?;
        let actions = v.on_audio(frame, &mut self.out, now_ms).await;
        if let Some(exit) = self.voice_actions(actions).await {
            return Some(exit);
        }
        let exit = self.voice_tick().await;
        self.stereo_tick(frame);
        exit
    }

    async fn voice_tick(&mut self) -> Option<Exit> {
        let now_ms = self.call_ms();
        let v = self.voice.as_mut()?;
        let (audio, actions) = v.on_tick(&self.out, now_ms);
        self.supervision.agent_audio(&audio);
        if self.stereo.is_some() {
            self.agent_heard.extend_from_slice(&audio);
        }
        self.voice_actions(actions).await
    }

    async fn on_voice_event(&mut self, ev: VoiceEvent) -> Option<Exit> {
        let now_ms = self.call_ms();
        let v = self.voice.as_mut()?;
        let actions = v.on_event(ev, &mut self.out, now_ms).await;
        self.voice_actions(actions).await
    }

    async fn voice_actions(&mut self, actions: Vec<VoiceAction>) -> Option<Exit> {
        for a in actions {
            match a {
                VoiceAction::Turn(t) => {
                    self.svc.record_turn(&t).await;
                    self.out.on_turn(&t);
                }
                VoiceAction::Error(e) => {
                    self.record.errors.push(e);
                    self.save().await;
                }
                VoiceAction::Transfer(req) => {
                    if let Some(exit) = Box::pin(self.start_transfer(req)).await {
                        return Some(exit);
                    }
                }
                VoiceAction::SendDtmf(digits) => {
                    tracing::warn!(%digits, "sending DTMF is not possible on a media stream");
                }
                VoiceAction::Hangup(reason) => return Some(Exit { reason, close: true }),
            }
        }
        None
    }

    /// The agent asked for a transfer. A Twilio call is moved by Twilio:
    /// its TwiML is replaced (REST "Update a Call") with a `<Dial>` to the
    /// target, `<Sip>` with the context in the URI's headers (as a REFER's
    /// Refer-To carries it) or `<Number>` with the DID as caller ID. The
    /// stream then stops and the call ends `transferred`. A browser call,
    /// missing Twilio credentials, a queue target or a refused request: the
    /// caller is told and the agent goes on.
    async fn start_transfer(&mut self, req: TransferRequest) -> Option<Exit> {
        let (client, call_sid, twiml, ctx) = match self.transfer_twiml(&req) {
            Ok(x) => x,
            Err(why) => return self.transfer_failed(&req.target, &why).await,
        };
        tracing::info!(target = %req.target, "transfer: asking Twilio to dial the target");
        self.event("transfer.started", serde_json::json!({ "target": req.target, "mode": "cold", "via": "twilio", "context": ctx })).await;
        self.set_state(CallState::Transferring).await;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let r = client.update_call_twiml(&call_sid, &twiml).await.map(|_| ()).map_err(|e| e.to_string());
            let _ = tx.send(r);
        });
        self.transfer = Some(PendingTransfer { req, rx });
        None
    }

    /// The REST client, the CallSid, the TwiML and the context of a
    /// transfer to `req.target`, or why there is none.
    fn transfer_twiml(&self, req: &TransferRequest) -> Result<(TwilioClient, String, String, CallContext), String> {
        let call_sid = self.record.twilio_call_sid.clone().ok_or("a browser call cannot be transferred")?;
        let target = req.target.as_str();
        if target.starts_with("queue:") {
            return Err("queues take SIP calls; a Twilio Media Streams call cannot join one".into());
        }
        let client = TwilioClient::from_config(&self.svc.config.twilio).map_err(|e| format!("Twilio REST: {e}"))?;
        let transcript = format!("{}/api/v1/calls/{}", self.svc.api_base(), self.record.id);
        let mut ctx = outgoing_context(self.context.as_ref(), &self.record, transcript, self.voice.as_ref(), req);
        ctx.call_sid = Some(call_sid.clone());
        ctx.escalation_reason.get_or_insert_with(|| "caller asked for a person".into());
        let lower = target.to_ascii_lowercase();
        let twiml = if lower.starts_with("sip:") || lower.starts_with("sips:") {
            let key = self.svc.config.context_key.clone().unwrap_or_default();
            twiml::dial_sip(&refer_to(target, &ctx, key.as_bytes(), &self.svc.contexts, &self.svc.api_base()))
        } else if target.strip_prefix('+').is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())) {
            twiml::dial_number(target, Some(&self.record.did).filter(|d| !d.is_empty()).map(String::as_str))
        } else {
            return Err(format!("`{target}` is neither a SIP URI nor an E.164 number"));
        };
        Ok((client, call_sid, twiml, ctx))
    }

    /// Twilio answered the transfer's REST request.
    async fn on_transfer_result(&mut self, r: Result<(), String>) -> Option<Exit> {
        let t = self.transfer.take()?;
        match r {
            Ok(()) => {
                tracing::info!(target = %t.req.target, "transfer: Twilio took the call");
                self.transferred = true;
                let data = serde_json::json!({ "target": t.req.target, "mode": "cold", "via": "twilio", "bridged": false });
                self.event("transfer.completed", data).await;
                None
            }
            Err(why) => self.transfer_failed(&t.req.target, &why).await,
        }
    }

    /// The transfer failed: the caller is told and the agent goes on.
    async fn transfer_failed(&mut self, target: &str, why: &str) -> Option<Exit> {
        tracing::warn!(%target, %why, "transfer failed: back to the agent");
        self.record.errors.push(format!("transfer to {target} failed: {why}"));
        self.event("transfer.failed", serde_json::json!({ "target": target, "why": why })).await;
        self.set_state(CallState::Answered).await;
        let v = self.voice.as_mut()?;
        let actions = v.transfer_failed().await;
        Box::pin(self.voice_actions(actions)).await
    }

    async fn set_state(&mut self, state: CallState) {
        self.record.state = state.as_str().to_string();
        self.svc.registry.set_state(self.record.id, state);
        self.save().await;
        self.svc.publish_state(&self.record);
    }

    async fn save(&mut self) {
        if let Err(e) = self.svc.store.update_call(&self.record).await {
            tracing::error!(error = %e, "cannot write call record");
        }
    }

    /// Final record, registry and metrics.
    async fn finish(&mut self, reason: &str) {
        if let Some(r) = self.stereo.take()
            && let Err(e) = r.finalize()
        {
            tracing::warn!(error = %e, "recording not finalized");
        }
        if let Some(mut v) = self.voice.take() {
            self.record.errors.extend(v.provider_failures());
            for a in v.finish() {
                if let VoiceAction::Turn(t) = a {
                    self.svc.record_turn(&t).await;
                }
            }
            self.record.longest_dead_air_ms = Some(v.longest_dead_air_ms());
        }
        let dropped = self.out.dropped();
        self.record.end_reason = Some(reason.to_string());
        self.record.ended_at = Some(now_ms());
        self.record.state = CallState::Ended.as_str().into();
        self.save().await;
        self.svc.publish_state(&self.record);
        self.svc.metrics.call_ended("completed");
        self.svc.registry.remove(self.record.id);
        tracing::info!(%reason, dropped, "media stream call ended");
    }
}
