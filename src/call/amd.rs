//! Answering-machine detection on outbound voice-agent calls: the glue
//! between the call actor and the sans-IO [`AmdDetector`].
//!
//! A child module of [`super`] (the actor), so it adds fields' behaviour
//! without restructuring the actor. Only outbound calls of a voice-agent
//! application with `amd.enabled` get an [`OutboundAmd`]; inbound calls
//! never do.
//!
//! After the answer every caller frame (16 kHz) goes to the detector with
//! the Silero speech probability of a VAD stream of its own (the energy VAD
//! when the model fails), and the agent's greeting is held:
//!
//! | phase | caller audio to | on |
//! |---|---|---|
//! | `Listening` (agent held) | detector only | Human/Unknown → agent greets, `Released`; Machine → below |
//! | `Released` (agent talks) | detector and agent | a late Machine (beep) → agent stopped, below |
//! | `Machine` | detector only | `ReadyForMessage` → `Ready` |
//! | `Ready` | detector only | message audio synthesized → played, `Speaking` |
//! | `Speaking` | nobody | playout drained → BYE, `voicemail-message-left` |
//!
//! Machine with `on_machine: hangup` sends BYE at once (`voicemail-hangup`).
//! The message is synthesized by the voice agent's TTS as soon as a machine
//! is decided, so it is ready by the beep. Each detector event is stored as
//! a call event: `amd.decision` `{result, reason, at_ms}`, `amd.beep`
//! `{at_ms, end_ms, freq_hz}`, `amd.ready` `{at_ms, after_beep}`,
//! `amd.message` `{at_ms, call_ms}`; `at_ms` is audio time from the answer.

use super::{CallActor, Exit, PLAYOUT_CHECK};
use crate::pipeline::amd::{AmdDetector, AmdEvent, AmdResult, OnMachine};
use crate::pipeline::vad::silero::VadStream;
use crate::providers::TtsProvider;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Where the detection of one call stands (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Deciding; the agent's greeting is held.
    Listening,
    /// A person (or unknown): the agent talks; the detector still listens
    /// for a late beep.
    Released,
    /// A machine: waiting for the greeting to end (beep or silence).
    Machine,
    /// Time to speak the message; waiting for its audio.
    Ready,
    /// The message is playing.
    Speaking,
}

/// Answering-machine detection state of one outbound call.
pub(super) struct OutboundAmd {
    /// The detector (audio time from the answer).
    detector: AmdDetector,
    /// Silero stream for the detector's speech probabilities (`None`:
    /// energy VAD).
    vad: Option<VadStream>,
    /// Latest speech probability (a VAD window is 32 ms, a frame 20 ms).
    prob: Option<f32>,
    /// Where it stands.
    phase: Phase,
    /// The message's audio being synthesized (16 kHz).
    synth: Option<oneshot::Receiver<Result<Vec<i16>, String>>>,
    /// The message's audio, once synthesized.
    message: Option<Vec<i16>>,
    /// Message audio queued on RTP and not yet accounted as sent (for the
    /// stereo recording), and the queue length last seen.
    unsent: VecDeque<i16>,
    /// RTP frames queued at the last look.
    queued: usize,
}

impl OutboundAmd {
    /// True while the agent's greeting waits for the decision.
    pub(super) fn holds_agent(&self) -> bool {
        self.phase == Phase::Listening
    }
}

/// Synthesizes `text` to 16 kHz audio.
async fn synthesize(tts: Arc<dyn TtsProvider>, text: String) -> Result<Vec<i16>, String> {
    let mut rx = tts.synthesize(&text).await.map_err(|e| e.to_string())?;
    let mut pcm = Vec::new();
    let mut rate = crate::pipeline::SAMPLE_RATE;
    while let Some(chunk) = rx.recv().await {
        let a = chunk.map_err(|e| e.to_string())?;
        rate = a.sample_rate;
        pcm.extend_from_slice(&a.pcm);
    }
    if pcm.is_empty() {
        return Err("TTS gave no audio".into());
    }
    crate::pipeline::to_pipeline_rate(&pcm, rate)
}

/// The message audio's arrival; pending forever without one in flight.
pub(super) async fn next_message(amd: &mut Option<OutboundAmd>) -> Result<Vec<i16>, String> {
    match amd.as_mut().and_then(|a| a.synth.as_mut()) {
        Some(rx) => rx.await.unwrap_or_else(|_| Err("TTS task ended".into())),
        None => std::future::pending().await,
    }
}

impl CallActor {
    /// Starts detection when application `app` asks for it and its voice
    /// agent runs (outbound calls only; called before [`CallActor::answered`]).
    pub(super) fn amd_start(&mut self, app: &str) {
        let Some(cfg) = self.svc.config.amd_for(app) else { return };
        let Some(voice) = self.svc.voice.as_ref().filter(|_| self.voice.is_some()) else { return };
        tracing::info!(on_machine = ?cfg.on_machine, "answering-machine detection on");
        self.amd = Some(OutboundAmd {
            detector: AmdDetector::new(cfg.clone()),
            vad: Some(voice.vad.stream()),
            prob: None,
            phase: Phase::Listening,
            synth: None,
            message: None,
            unsent: VecDeque::new(),
            queued: 0,
        });
    }

    /// One caller frame (16 kHz) to the detector. `Ok(())`: the agent gets
    /// the frame too; `Err(exit)`: detection kept it (and maybe ends the call).
    pub(super) async fn amd_audio(&mut self, frame: &[i16]) -> Result<(), Option<Exit>> {
        let Some(a) = self.amd.as_mut() else { return Ok(()) };
        let mut events = Vec::new();
        if !a.detector.is_done() {
            if let Some(vad) = a.vad.as_mut() {
                match vad.push(frame) {
                    Ok(p) => a.prob = p.last().copied().or(a.prob),
                    Err(e) => {
                        tracing::warn!(error = %e, "VAD failed: AMD goes on with the energy VAD");
                        a.vad = None;
                        a.prob = None;
                    }
                }
            }
            a.detector.push(frame, a.prob);
            while let Some(ev) = a.detector.poll_event() {
                events.push(ev);
            }
        }
        for ev in events {
            if let Some(exit) = self.amd_event(ev).await {
                return Err(Some(exit));
            }
        }
        let Some(a) = self.amd.as_mut() else { return Ok(()) };
        if a.phase == Phase::Released {
            if a.detector.is_done() {
                self.amd = None;
            }
            return Ok(());
        }
        self.amd_record(frame);
        Err(None)
    }

    /// Acts on one detector event.
    async fn amd_event(&mut self, ev: AmdEvent) -> Option<Exit> {
        match ev {
            AmdEvent::Decided(d) => {
                let result = serde_json::to_value(d.result).unwrap_or_default();
                tracing::info!(result = ?d.result, reason = %d.reason, at_ms = d.at_ms, "AMD decision");
                let data = serde_json::json!({ "result": result, "reason": d.reason, "at_ms": d.at_ms });
                self.event("amd.decision", data).await;
                let phase = self.amd.as_ref()?.phase;
                match d.result {
                    AmdResult::Human | AmdResult::Unknown => {
                        if phase == Phase::Listening {
                            self.amd.as_mut()?.phase = Phase::Released;
                            return self.amd_release_agent().await;
                        }
                        None
                    }
                    AmdResult::Machine => self.amd_machine(phase).await,
                }
            }
            AmdEvent::Beep(b) => {
                let data = serde_json::json!({ "at_ms": b.at_ms, "end_ms": b.end_ms, "freq_hz": b.freq_hz });
                self.event("amd.beep", data).await;
                None
            }
            AmdEvent::ReadyForMessage { at_ms, after_beep } => {
                tracing::info!(at_ms, after_beep, "voicemail: ready for the message");
                self.event("amd.ready", serde_json::json!({ "at_ms": at_ms, "after_beep": after_beep })).await;
                let a = self.amd.as_mut()?;
                if a.phase == Phase::Machine {
                    a.phase = Phase::Ready;
                }
                self.amd_speak().await
            }
        }
    }

    /// A person (or no decision): the agent's greeting, held until now.
    async fn amd_release_agent(&mut self) -> Option<Exit> {
        let v = self.voice.as_mut()?;
        let actions = match &self.context {
            Some(ctx) => v.resume(ctx).await,
            None => v.begin().await,
        };
        self.voice_actions(actions).await
    }

    /// A machine answered (`phase`: where detection stood): hang up, or stop
    /// the agent and get the message ready.
    async fn amd_machine(&mut self, phase: Phase) -> Option<Exit> {
        let cfg = self.amd.as_ref()?.detector.config().clone();
        if cfg.on_machine == OnMachine::Hangup {
            tracing::info!("voicemail: hanging up");
            return Some(self.hangup("voicemail-hangup").await);
        }
        if phase == Phase::Released {
            tracing::info!("late machine decision: the agent stops");
            if let Some(m) = self.leg.as_mut() {
                m.flush();
            }
        }
        // The agent's part is over on a machine; the message is ours.
        self.voice = None;
        let tts = self.svc.voice.as_ref().map(|v| v.tts.clone());
        let a = self.amd.as_mut()?;
        a.phase = Phase::Machine;
        if let Some(tts) = tts {
            let (tx, rx) = oneshot::channel();
            let text = cfg.message.clone();
            self.svc.tracker.spawn(async move {
                let _ = tx.send(synthesize(tts, text).await);
            });
            a.synth = Some(rx);
        }
        if self.playout_check.is_none() {
            self.playout_check = Some(Instant::now() + PLAYOUT_CHECK);
        }
        None
    }

    /// The message's audio arrived (or synthesis failed).
    pub(super) async fn amd_message(&mut self, res: Result<Vec<i16>, String>) -> Option<Exit> {
        let a = self.amd.as_mut()?;
        a.synth = None;
        match res {
            Ok(audio) => {
                a.message = Some(audio);
                self.amd_speak().await
            }
            Err(e) => {
                tracing::error!(error = %e, "voicemail message cannot be synthesized");
                self.record.errors.push(format!("voicemail message: {e}"));
                Some(self.hangup("voicemail-message-failed").await)
            }
        }
    }

    /// Plays the message when it is both time and ready.
    async fn amd_speak(&mut self) -> Option<Exit> {
        let call_ms = self.call_ms();
        let a = self.amd.as_mut()?;
        if a.phase != Phase::Ready || a.message.is_none() {
            return None;
        }
        let audio = a.message.take()?;
        let m = self.leg.as_mut()?;
        m.play(&audio);
        a.queued = m.queued();
        a.unsent = audio.into();
        a.phase = Phase::Speaking;
        let at_ms = a.detector.position_ms();
        tracing::info!(at_ms, "voicemail: leaving the message");
        self.event("amd.message", serde_json::json!({ "at_ms": at_ms, "call_ms": call_ms })).await;
        None
    }

    /// Playout check: the message has been sent in full → BYE.
    pub(super) async fn amd_tick(&mut self) -> Option<Exit> {
        let a = self.amd.as_ref()?;
        if a.phase != Phase::Speaking {
            return None;
        }
        if self.leg.as_ref().is_none_or(|m| m.queued() == 0) {
            tracing::info!("voicemail: message left");
            return Some(self.hangup("voicemail-message-left").await);
        }
        None
    }

    /// The stereo recording while detection keeps the caller's audio: the
    /// caller's frame, and the message audio sent since the last frame.
    fn amd_record(&mut self, frame: &[i16]) {
        let (Some(rec), Some(a)) = (self.stereo.as_mut(), self.amd.as_mut()) else { return };
        let queued = self.leg.as_ref().map(|m| m.queued()).unwrap_or(0);
        let per_frame = self.leg.as_ref().map(|m| m.facts().ptime_ms as usize * 16).unwrap_or(320);
        let sent = a.queued.saturating_sub(queued);
        a.queued = queued;
        let n = (sent * per_frame).min(a.unsent.len());
        let mut agent = std::mem::take(&mut self.agent_sent);
        agent.extend(a.unsent.drain(..n));
        if let Err(e) = rec.tick(frame, &agent) {
            tracing::warn!(error = %e, "recording failed; stopping it");
            self.stereo = None;
        }
    }
}
