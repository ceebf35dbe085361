//! A call that reached skald as a Twilio Media Stream (`<Connect><Stream>`):
//! one actor task per stream, with the same voice agent, barge-in, records,
//! transcripts, metrics and hangup API as a SIP call.
//!
//! The HTTP layer accepts the WebSocket and hands it here as a stream of
//! text frames and a sink of text frames ([`StreamCall::run`] is generic
//! over them, so tests and other WebSocket stacks can drive it). The actor
//! owns the [`MediaStreamSession`] (protocol core), the G.711 frame codec
//! and the [`VoiceAgent`]; its loop waits on exactly one of: a WebSocket
//! frame, a [`CallCommand`], a voice-agent event, the session's pacing
//! deadline or the playout check, and handles it to completion.
//!
//! Audio per 20 ms: `media` payload → µ-law decode (8 kHz) → 16 kHz → voice
//! agent. Outbound: agent audio (16 kHz) → 8 kHz µ-law frames → paced
//! `media` messages with `mark`s; a barge-in sends `clear`.
//!
//! Ending: Twilio's `stop` (the caller hung up); the agent or the API
//! hanging up closes the WebSocket, which ends `<Connect>` and, with no
//! TwiML after it, the call. A stream that never starts, closes without
//! `stop`, or floods bad messages ends with the reason in the record.

use super::actor::{next_voice, sleep_opt};
use super::actor::supervise::SuperviseError;
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
use crate::transports::twilio::media::{MediaStreamSession, StreamEvent, StreamStart};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
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

/// An input from the WebSocket: a text frame, or the end of the socket
/// (closed, or failed with the reason).
#[derive(Debug)]
pub enum WsInput {
    /// A text frame.
    Text(String),
    /// A non-text data frame (binary): not part of the protocol.
    Binary(usize),
}

/// What ended the loop.
struct Exit {
    /// Recorded end reason.
    reason: String,
    /// Close the WebSocket from our side.
    close: bool,
}

/// The agent side of a stream: the session and the frame codec, seen by the
/// voice agent as [`AudioOut`].
struct StreamOut {
    /// Protocol core.
    session: MediaStreamSession,
    /// µ-law frames ⇄ 16 kHz audio.
    codec: G711Frames,
}

impl AudioOut for StreamOut {
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

/// The actor of one Media Streams call.
pub struct StreamCall {
    /// Shared services.
    svc: Arc<CallServices>,
    /// Peer address of the WebSocket (for the record).
    remote: String,
    /// The record, once `start` arrived.
    record: CallRecord,
    /// Session + codec.
    out: StreamOut,
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
}

impl StreamCall {
    /// A new actor for a WebSocket from `remote`; nothing happens until
    /// [`StreamCall::run`].
    pub fn new(svc: Arc<CallServices>, remote: String) -> Self {
        StreamCall {
            svc,
            remote,
            record: CallRecord::default(),
            out: StreamOut { session: MediaStreamSession::new(), codec: G711Frames::new(Law::Mu, 20) },
            voice: None,
            stereo: None,
            agent_heard: Vec::new(),
            started_at: Instant::now(),
            pcm16: Vec::with_capacity(320),
        }
    }

    /// Runs the stream to its end: waits for `start`, registers the call,
    /// runs the voice agent, writes the final record. `rx` yields the
    /// socket's frames (`None` or an error: the socket is gone); `tx`
    /// takes text frames to send; closing `tx` closes the socket.
    pub async fn run<R, T, E>(mut self, mut rx: R, mut tx: T)
    where
        R: Stream<Item = Result<WsInput, E>> + Unpin + Send,
        T: Sink<String> + Unpin + Send,
        E: std::fmt::Display,
    {
        let Some(start) = self.wait_start(&mut rx).await else {
            let _ = tx.close().await;
            return;
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        self.register(&start, cmd_tx).await;
        let span = tracing::info_span!("call", call_id = %self.record.id, twilio_call_sid = %start.call_sid);
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
            let frame = tokio::select! {
                f = rx.next() => f,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(remote = %crate::observability::Pii(&self.remote), "media stream sent no `start` in time: closed");
                    return None;
                }
            };
            match frame {
                Some(Ok(WsInput::Text(t))) => {
                    if let Err(e) = self.out.session.handle_text(&t, std::time::Instant::now()) {
                        tracing::warn!(error = %e, "media stream message dropped");
                    }
                    while let Some(ev) = self.out.session.poll_event() {
                        if let StreamEvent::Start(s) = ev {
                            return Some(s);
                        }
                    }
                    if self.out.session.dropped > MAX_BAD_MESSAGES {
                        tracing::warn!("media stream floods bad messages before `start`: closed");
                        return None;
                    }
                }
                Some(Ok(WsInput::Binary(n))) => tracing::warn!(bytes = n, "binary WebSocket frame dropped"),
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
            codec: Some("PCMU".into()),
            state: CallState::Answered.as_str().into(),
            invited_at: now,
            answered_at: Some(now),
            transport: Some("twilio-stream".into()),
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
            "Twilio media stream started"
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

    async fn event_loop<R, T, E>(&mut self, rx: &mut R, tx: &mut T, mut commands: mpsc::Receiver<CallCommand>) -> Exit
    where
        R: Stream<Item = Result<WsInput, E>> + Unpin + Send,
        T: Sink<String> + Unpin + Send,
        E: std::fmt::Display,
    {
        let mut playout = tokio::time::interval(PLAYOUT_CHECK);
        playout.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.flush(tx).await.is_err() {
                return Exit { reason: "stream-closed".into(), close: false };
            }
            let pace = self.out.session.poll_timeout().map(Instant::from_std);
            let voice = &mut self.voice;
            let flow = tokio::select! {
                frame = rx.next() => self.on_frame(frame).await,
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd).await,
                    None => None,
                },
                ev = next_voice(voice) => self.on_voice_event(ev).await,
                _ = sleep_opt(pace) => None,
                _ = playout.tick() => self.voice_tick().await,
            };
            if let Some(exit) = flow {
                return exit;
            }
        }
    }

    /// Sends everything the session releases now.
    async fn flush<T: Sink<String> + Unpin>(&mut self, tx: &mut T) -> Result<(), ()> {
        let now = std::time::Instant::now();
        while let Some(text) = self.out.session.poll_transmit(now) {
            tx.send(text).await.map_err(|_| ())?;
        }
        Ok(())
    }

    async fn on_frame<E: std::fmt::Display>(&mut self, frame: Option<Result<WsInput, E>>) -> Option<Exit> {
        let text = match frame {
            Some(Ok(WsInput::Text(t))) => t,
            Some(Ok(WsInput::Binary(n))) => {
                tracing::warn!(bytes = n, "binary WebSocket frame dropped");
                self.out.session.dropped += 1;
                return self.check_flood();
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "media stream socket failed");
                self.record.errors.push(format!("stream: socket failed: {e}"));
                return Some(Exit { reason: "stream-error".into(), close: false });
            }
            None => {
                tracing::warn!("media stream closed without `stop`");
                self.record.errors.push("stream: closed without `stop`".into());
                return Some(Exit { reason: "stream-closed".into(), close: false });
            }
        };
        if let Err(e) = self.out.session.handle_text(&text, std::time::Instant::now()) {
            tracing::warn!(error = %e, "media stream message dropped");
            if self.record.errors.len() < MAX_ERRORS_RECORDED {
                self.record.errors.push(format!("stream: dropped: {e}"));
            }
            return self.check_flood();
        }
        while let Some(ev) = self.out.session.poll_event() {
            if let Some(exit) = self.on_stream_event(ev).await {
                return Some(exit);
            }
        }
        None
    }

    fn check_flood(&mut self) -> Option<Exit> {
        (self.out.session.dropped > MAX_BAD_MESSAGES).then(|| {
            tracing::warn!(dropped = self.out.session.dropped, "media stream misbehaves: ended");
            self.record.errors.push(format!("stream: {} bad messages", self.out.session.dropped));
            Exit { reason: "stream-misbehaved".into(), close: true }
        })
    }

    async fn on_stream_event(&mut self, ev: StreamEvent) -> Option<Exit> {
        match ev {
            StreamEvent::Audio(payload) => {
                let mut pcm = std::mem::take(&mut self.pcm16);
                self.out.codec.decode(payload.as_deref(), &mut pcm);
                let exit = self.voice_audio(&pcm).await;
                self.pcm16 = pcm;
                exit
            }
            StreamEvent::Dtmf(digit) => {
                self.record.dtmf.push(digit);
                let now_ms = self.call_ms();
                let v = self.voice.as_mut()?;
                let actions = v.on_dtmf(digit, &mut self.out, now_ms).await;
                self.voice_actions(actions).await
            }
            StreamEvent::Played { .. } => self.voice_tick().await,
            StreamEvent::Stop => {
                tracing::info!("Twilio stopped the stream (caller hung up)");
                Some(Exit { reason: "remote-stop".into(), close: true })
            }
            StreamEvent::Start(_) => None,
        }
    }

    async fn on_command(&mut self, cmd: CallCommand) -> Option<Exit> {
        match cmd {
            CallCommand::Hangup { reason } => Some(Exit { reason, close: true }),
            CallCommand::Supervise { reply, .. } => {
                reply.send(Err(SuperviseError::NotPossible("supervision is not supported on this transport".into())));
                None
            }
            CallCommand::SuperviseAttach { reply, .. } => {
                reply.send(Err(SuperviseError::NotPossible("supervision is not supported on this transport".into())));
                None
            }
            other => {
                tracing::warn!(command = ?other, "command not supported on a media stream call");
                None
            }
        }
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
        if let Some(rec) = self.stereo.as_mut() {
            let agent = std::mem::take(&mut self.agent_heard);
            if let Err(e) = rec.tick(frame, &agent) {
                tracing::warn!(error = %e, "recording failed; stopping it");
                self.stereo = None;
            }
        }
        exit
    }

    async fn voice_tick(&mut self) -> Option<Exit> {
        let now_ms = self.call_ms();
        let v = self.voice.as_mut()?;
        let (audio, actions) = v.on_tick(&self.out, now_ms);
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
                }
                VoiceAction::Error(e) => {
                    self.record.errors.push(e);
                    self.save().await;
                }
                VoiceAction::Transfer(t) => {
                    let target = t.target;
                    tracing::warn!(%target, "transfer requested; transfers are not supported yet: ending the call");
                    return Some(Exit { reason: format!("transfer-requested: {target}"), close: true });
                }
                VoiceAction::SendDtmf(digits) => {
                    tracing::warn!(%digits, "sending DTMF is not possible on a media stream");
                }
                VoiceAction::Hangup(reason) => return Some(Exit { reason, close: true }),
            }
        }
        None
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
        if let Some(v) = self.voice.take() {
            self.record.errors.extend(v.provider_failures());
        }
        let dropped = self.out.session.dropped;
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
