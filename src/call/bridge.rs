//! The second leg of a call: skald as a back-to-back user agent (B2BUA)
//! for warm (attended) transfers, and for cold transfers whose REFER the
//! caller's side refused (RFC 3515 §2.4.2: a UA may decline REFER; skald
//! then calls the target itself).
//!
//! Owned here: dialing the target with the call's context in the INVITE's
//! headers (`X-Skald-Context`, `User-to-User`, or by reference), ringback
//! to the caller while the target rings, the spoken brief to a person who
//! answers a warm transfer, and the media bridge once connected.
//!
//! ```text
//!  start_bridge ─▶ Ringing ──2xx──▶ Briefing ──brief played──▶ Connected
//!                     │  (brief: spoken)                           │
//!                     │ 2xx (cold, or brief: context) ────────────▶│
//!                     └─ 4xx–6xx / timeout / BYE: back to the agent │
//!                                          either side's BYE ends both
//! ```
//!
//! Audio path when connected, per ptime (20 ms): the caller's leg → 16 kHz
//! → the target's leg, and the same the other way; each direction's send
//! queue is held to `MAX_QUEUED` frames so a slight clock difference
//! between the legs cannot build delay. DTMF is relayed both ways. The stereo recording keeps the caller
//! on the left and the target on the right.

use super::{CallActor, Exit};
use crate::agent::context::{CallContext, invite_headers};
use crate::agent::escalation::{Brief, TransferMode, TransferRequest};
use crate::call::service::OutboundLeg;
use crate::call::state::CallState;
use crate::ids::HumanAgentId;
use crate::transports::leg::{AudioOut, Leg, LegEvent};
use crate::transports::sip_rtp::SipLeg;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the target may ring before skald gives up (CANCEL) and the
/// caller is back with the agent.
const RING_TIMEOUT: Duration = Duration::from_secs(25);
/// Most frames queued toward either side of the bridge (100 ms at 20 ms).
const MAX_QUEUED: usize = 5;
/// Ringback frames kept queued toward the caller while the target rings.
const RINGBACK_AHEAD: usize = 3;

/// Where the second leg is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// INVITE sent; the caller hears ringback.
    Ringing,
    /// The target answered; skald speaks the brief to it (the caller still
    /// hears ringback).
    Briefing,
    /// Caller and target hear each other.
    Connected,
}

/// The second leg and its progress.
pub(super) struct Bridge {
    /// What the agent asked for.
    req: TransferRequest,
    /// The human agent rung for a queued call (a contact-center offer), if
    /// that is what this leg is.
    offer: Option<HumanAgentId>,
    /// Why skald bridges: `warm`, or `refer-refused`.
    why: &'static str,
    /// The Request-URI dialed.
    target_uri: String,
    /// The target's leg (ringing until answered).
    leg: SipLeg,
    /// The target's frame, decoded by its leg (16 kHz).
    pcm16: Vec<i16>,
    /// Progress.
    phase: Phase,
    /// The spoken brief while TTS renders it (16 kHz mono).
    brief_rx: Option<oneshot::Receiver<Vec<i16>>>,
    /// The rendered brief, until it is queued to the target.
    brief: Option<Vec<i16>>,
    /// The brief is queued toward the target (connect once it drained).
    brief_queued: bool,
    /// Ringback tone position, samples.
    ringback_pos: usize,
}

impl Bridge {
    /// The human agent this leg rings for a queued call, if it is an offer.
    pub(super) fn offer(&self) -> Option<&HumanAgentId> {
        self.offer.as_ref()
    }

    /// Whether caller and target hear each other.
    pub(super) fn connected(&self) -> bool {
        self.phase == Phase::Connected
    }
}

/// One input from the second leg, gathered by the actor's `select!`.
pub(super) enum BridgeInput {
    /// An event of the target's leg.
    Leg(LegEvent),
    /// The spoken brief is rendered (`None`: TTS failed).
    Brief(Option<Vec<i16>>),
}

/// The second leg's next input; pending forever without one.
pub(super) async fn next_bridge(bridge: &mut Option<Bridge>) -> BridgeInput {
    let Some(b) = bridge else { return std::future::pending().await };
    let brief = async {
        match b.brief_rx.as_mut() {
            Some(rx) => rx.await.ok(),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        ev = b.leg.next_event(&mut b.pcm16) => BridgeInput::Leg(ev),
        audio = brief => BridgeInput::Brief(audio),
    }
}

/// What skald says to the person who answers a warm transfer, built from
/// the context handed on: who calls, what they want, what is known.
pub fn brief_text(ctx: &CallContext) -> String {
    let mut s = String::from("Hello, this is the virtual assistant with a caller for you.");
    if let Some(summary) = ctx.summary.as_deref().map(str::trim).filter(|x| !x.is_empty()) {
        s.push(' ');
        s.push_str(summary);
        if !summary.ends_with(['.', '!', '?']) {
            s.push('.');
        }
    } else if let Some(intent) = ctx.intent.as_deref() {
        s.push_str(&format!(" They want to {}.", intent.replace('_', " ")));
    }
    if !ctx.slots.is_empty() {
        let known: Vec<String> = ctx.slots.iter().map(|(k, v)| format!("{} {}", k.replace('_', " "), v)).collect();
        s.push_str(&format!(" So far: {}.", known.join(", ")));
    }
    s.push_str(" Connecting you now.");
    s
}

/// Ringback tone (ITU-T E.180 as used in North America: 440 + 480 Hz,
/// 2 s on, 4 s off) at 16 kHz, about −16 dBFS per tone, starting at
/// sample `pos` of the 6 s cadence; `n` samples.
pub fn ringback(pos: usize, n: usize) -> Vec<i16> {
    const RATE: f64 = crate::pipeline::SAMPLE_RATE as f64;
    let cycle = (6.0 * RATE) as usize;
    let on = (2.0 * RATE) as usize;
    (pos..pos + n)
        .map(|i| {
            let t = i % cycle;
            if t >= on {
                return 0;
            }
            let x = i as f64 / RATE;
            let v = (2.0 * std::f64::consts::PI * 440.0 * x).sin() + (2.0 * std::f64::consts::PI * 480.0 * x).sin();
            (v * 0.16 * i16::MAX as f64 / 2.0) as i16
        })
        .collect()
}

impl CallActor {
    /// Calls the transfer target as a second leg (warm transfer, or the
    /// fallback when the caller's side refused REFER). The caller hears
    /// ringback meanwhile; the voice agent is on hold. A target that cannot
    /// even be dialed sends the caller back to the agent at once.
    pub(super) async fn start_bridge(&mut self, req: TransferRequest, why: &'static str) -> Option<Exit> {
        self.start_leg(req, why, None).await
    }

    /// Rings the human agent a queued call is offered to: a second leg
    /// connected as soon as the agent answers; hold music goes on meanwhile.
    pub(super) async fn start_offer(&mut self, req: TransferRequest, agent: HumanAgentId) -> Option<Exit> {
        self.start_leg(req, "queue-offer", Some(agent)).await
    }

    /// Dials the second leg (see [`CallActor::start_bridge`]).
    async fn start_leg(&mut self, req: TransferRequest, why: &'static str, offer: Option<HumanAgentId>) -> Option<Exit> {
        let mut ctx = self.transfer_context(&req);
        ctx.escalation_reason.get_or_insert_with(|| "caller asked for a person".into());
        let key = self.svc.config.context_key.clone().unwrap_or_default();
        let api = self.svc.api_base();
        let contexts = self.svc.contexts.clone();
        let headers = invite_headers(&ctx, key.as_bytes(), |c| {
            let (reference, token) = contexts.put(c.clone());
            (format!("{api}/api/v1/context/{reference}"), token)
        });
        // The caller's identity is presented to the target (a transfer).
        let from_user = caller_user(&self.record.from_uri);
        let leg = if req.target.starts_with("sip:") || req.target.starts_with("sips:") {
            self.svc.invite_uri(&req.target, &from_user, None, None, headers, RING_TIMEOUT).await
        } else {
            match self.svc.config.trunks.keys().next() {
                Some(trunk) => self.svc.invite_leg(&trunk.clone(), &req.target, &from_user, headers).await,
                None => Err(crate::call::service::DialError::UnknownTrunk("(none configured)".into())),
            }
        };
        let OutboundLeg { leg, target, .. } = match leg {
            Ok(l) => l,
            Err(e) if offer.is_some() => {
                tracing::warn!(error = %e, "cannot ring the agent: next");
                self.offer_declined(offer.as_ref()?);
                return None;
            }
            Err(e) => {
                self.transfer = Some((req, tokio::time::Instant::now()));
                return Box::pin(self.transfer_failed(&format!("cannot call the target: {e}"))).await;
            }
        };
        tracing::info!(target = %crate::observability::Pii(&target), why, mode = ?req.mode, "transfer: calling the target");
        let data = serde_json::json!({
            "target": req.target, "mode": mode_name(req.mode), "bridged": true, "why": why, "context": ctx,
        });
        self.event("transfer.started", data).await;
        if offer.is_none() {
            self.set_state(CallState::Transferring).await;
        }
        let brief_rx = (req.mode == TransferMode::Warm && req.brief == Brief::Spoken)
            .then(|| self.render_speech(brief_text(&ctx)))
            .flatten();
        self.bridge = Some(Bridge {
            offer,
            req,
            why,
            target_uri: target,
            leg,
            pcm16: Vec::with_capacity(320),
            phase: Phase::Ringing,
            brief_rx,
            brief: None,
            brief_queued: false,
            ringback_pos: 0,
        });
        if let Some(l) = self.leg.as_mut().filter(|_| self.queued.is_none()) {
            l.flush();
        }
        self.playout_check.get_or_insert_with(|| tokio::time::Instant::now() + super::PLAYOUT_CHECK);
        None
    }

    /// Starts rendering `text` with the call's TTS in a task; the audio
    /// (16 kHz mono) arrives on the returned channel. `None` without TTS.
    pub(super) fn render_speech(&self, text: String) -> Option<oneshot::Receiver<Vec<i16>>> {
        let tts = self.svc.voice.as_ref()?.tts.clone();
        let (tx, rx) = oneshot::channel();
        self.svc.tracker.spawn(async move {
            let mut out = Vec::new();
            let Ok(mut chunks) = tts.synthesize(&text).await else { return };
            while let Some(chunk) = chunks.recv().await {
                let Ok(a) = chunk else { return };
                match crate::pipeline::to_pipeline_rate(&a.pcm, a.sample_rate) {
                    Ok(pcm) => out.extend(pcm),
                    Err(_) => return,
                }
            }
            let _ = tx.send(out);
        });
        Some(rx)
    }

    /// Handles one input from the second leg.
    pub(super) async fn on_bridge(&mut self, input: BridgeInput) -> Option<Exit> {
        let b = self.bridge.as_mut()?;
        match input {
            BridgeInput::Brief(audio) => {
                b.brief_rx = None;
                match audio {
                    Some(a) => b.brief = Some(a),
                    None => {
                        self.record.errors.push("transfer brief: speech synthesis failed; connected without it".into());
                        if self.bridge.as_ref().is_some_and(|b| b.phase == Phase::Briefing) {
                            return self.bridge_connect().await;
                        }
                    }
                }
                self.queue_brief();
                None
            }
            BridgeInput::Leg(ev) => self.bridge_leg(ev).await,
        }
    }

    /// One event of the target's leg: its signaling, and its audio to the
    /// caller once connected.
    async fn bridge_leg(&mut self, ev: LegEvent) -> Option<Exit> {
        let b = self.bridge.as_mut()?;
        let connected = b.phase == Phase::Connected;
        match ev {
            LegEvent::Ringing { status } | LegEvent::EarlyMedia { status } => {
                self.event("transfer.progress", serde_json::json!({ "status": status, "done": false })).await;
                None
            }
            LegEvent::Answered => {
                tracing::info!(target = %crate::observability::Pii(&b.target_uri), "transfer: the target answered");
                self.event("transfer.answered", serde_json::json!({})).await;
                let b = self.bridge.as_mut()?;
                if b.req.mode == TransferMode::Warm && b.req.brief == Brief::Spoken && (b.brief_rx.is_some() || b.brief.is_some()) {
                    b.phase = Phase::Briefing;
                    self.queue_brief();
                    None
                } else {
                    self.bridge_connect().await
                }
            }
            LegEvent::Rejected { status, reason } => self.bridge_failed(&format!("the target answered {status} {reason}")).await,
            LegEvent::Hold(on_hold) => {
                // Hold/resume from the target's phone. Its music on hold
                // (if it sends any) is relayed to the caller.
                tracing::info!(on_hold, "the target's phone changed the call's hold state");
                self.event("transfer.hold", serde_json::json!({ "on_hold": on_hold })).await;
                None
            }
            LegEvent::Ended { reason, .. } if reason == "sdp-answer-unusable" => {
                self.bridge_failed("the target's answer has no usable SDP").await
            }
            LegEvent::Ended { .. } => {
                if connected {
                    self.bridge = None;
                    tracing::info!("the transfer target hung up: ending the call");
                    self.event("transfer.ended", serde_json::json!({ "by": "target" })).await;
                    return Some(self.hangup("target-bye").await);
                }
                self.bridge_failed("the target left before the caller was connected").await
            }
            LegEvent::Audio if connected => {
                let frame = std::mem::take(&mut b.pcm16);
                if let Some(caller) = self.leg.as_mut() {
                    caller.trim(MAX_QUEUED);
                    caller.play(&frame);
                }
                if self.stereo.is_some() {
                    self.agent_sent.extend_from_slice(&frame);
                }
                self.supervision.agent_audio(&frame);
                if let Some(b) = self.bridge.as_mut() {
                    b.pcm16 = frame;
                }
                None
            }
            LegEvent::Dtmf(digit) if connected => {
                if let Some(caller) = self.leg.as_mut() {
                    caller.send_dtmf(digit);
                }
                None
            }
            LegEvent::MediaTimeout if connected => {
                tracing::warn!("no RTP from the transfer target: ending the call");
                Some(self.hangup("target-rtp-timeout").await)
            }
            other => {
                tracing::debug!(?other, "target-leg event ignored");
                None
            }
        }
    }

    /// Caller audio while a second leg exists: to the target once
    /// connected (the agent does not hear it). Recorded either way.
    pub(super) fn bridge_caller_audio(&mut self, frame: &[i16]) {
        if let Some(b) = self.bridge.as_mut().filter(|b| b.phase == Phase::Connected) {
            b.leg.trim(MAX_QUEUED);
            b.leg.play(frame);
        }
        self.stereo_tick(frame);
    }

    /// Caller DTMF while bridged goes to the target.
    pub(super) fn bridge_caller_dtmf(&mut self, digit: char) {
        if let Some(b) = self.bridge.as_mut().filter(|b| b.phase == Phase::Connected) {
            b.leg.send_dtmf(digit);
        }
    }

    /// Every playout check while a second leg exists: keeps ringback queued
    /// to the caller until connected, and connects once the brief has been
    /// sent to the target.
    pub(super) async fn bridge_tick(&mut self) -> Option<Exit> {
        let b = self.bridge.as_mut()?;
        if b.phase == Phase::Connected {
            return None;
        }
        if b.phase == Phase::Briefing && b.brief_queued && b.leg.queued() == 0 {
            return self.bridge_connect().await;
        }
        if self.queued.is_some() {
            // A queued caller hears the queue's music ([`super::queued`]).
            return None;
        }
        let b = self.bridge.as_mut()?;
        if let Some(m) = self.leg.as_mut() {
            let frame = m.frame_samples();
            while m.queued() < RINGBACK_AHEAD {
                let tone = ringback(b.ringback_pos, frame);
                b.ringback_pos += frame;
                m.play(&tone);
                if self.stereo.is_some() {
                    self.agent_sent.extend_from_slice(&tone);
                }
            }
        }
        None
    }

    /// Queues the rendered brief to the answered target.
    fn queue_brief(&mut self) {
        let Some(b) = self.bridge.as_mut() else { return };
        if b.phase != Phase::Briefing || b.brief_queued {
            return;
        }
        let Some(audio) = b.brief.take() else { return };
        b.leg.play(&audio);
        b.brief_queued = true;
        tracing::info!(ms = audio.len() / 16, "transfer: briefing the target");
    }

    /// Connects caller and target: ringback stops, the agent leaves.
    async fn bridge_connect(&mut self) -> Option<Exit> {
        let b = self.bridge.as_mut()?;
        b.phase = Phase::Connected;
        if let Some(agent) = b.offer.clone() {
            self.offer_answered(&agent);
        }
        let b = self.bridge.as_mut()?;
        let data = serde_json::json!({
            "target": b.req.target, "mode": mode_name(b.req.mode), "bridged": true, "why": b.why,
        });
        if let Some(l) = self.leg.as_mut() {
            l.flush();
        }
        if let Some(v) = self.voice.take() {
            self.record.errors.extend(v.provider_failures());
        }
        tracing::info!("transfer: caller and target connected");
        self.event("transfer.completed", data).await;
        self.set_state(CallState::Bridged).await;
        None
    }

    /// The second leg failed before the caller was connected: ringback
    /// stops and the caller is back with the agent, who says so.
    async fn bridge_failed(&mut self, why: &str) -> Option<Exit> {
        let b = self.bridge.take()?;
        if let Some(agent) = &b.offer {
            tracing::info!(%agent, %why, "the agent did not take the call: next");
            self.offer_declined(agent);
            return None;
        }
        if let Some(l) = self.leg.as_mut() {
            l.flush();
        }
        self.transfer = Some((b.req, tokio::time::Instant::now()));
        Box::pin(self.transfer_failed(why)).await
    }

    /// Ends the second leg (the call is ending).
    pub(super) fn bridge_hangup(&mut self) {
        if let Some(mut b) = self.bridge.take() {
            b.leg.release();
        }
    }

    /// Whether the second leg owns the caller's audio (ringing, briefing or
    /// connected): the agent is on hold.
    pub(super) fn bridged(&self) -> bool {
        self.bridge.is_some()
    }
}

/// The user part of a From URI (`sip:+15550123@host` → `+15550123`).
fn caller_user(from_uri: &str) -> String {
    let s = from_uri.trim_start_matches('<');
    let s = s.strip_prefix("sips:").or_else(|| s.strip_prefix("sip:")).unwrap_or(s);
    let user = s.split(['@', ';', '>']).next().unwrap_or("");
    if user.is_empty() { "skald".into() } else { user.to_string() }
}

/// `cold` or `warm`, as events name it.
fn mode_name(m: TransferMode) -> &'static str {
    match m {
        TransferMode::Cold => "cold",
        TransferMode::Warm => "warm",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brief_says_what_the_caller_wants() {
        let mut ctx = CallContext { intent: Some("book".into()), ..Default::default() };
        ctx.slots.insert("visit_type".into(), "cleaning".into());
        ctx.slots.insert("date".into(), "2026-11-24".into());
        assert_eq!(
            brief_text(&ctx),
            "Hello, this is the virtual assistant with a caller for you. They want to book. \
             So far: date 2026-11-24, visit type cleaning. Connecting you now."
        );
        let ctx = CallContext { summary: Some("Billing question about invoice 42".into()), ..Default::default() };
        assert_eq!(
            brief_text(&ctx),
            "Hello, this is the virtual assistant with a caller for you. Billing question about invoice 42. Connecting you now."
        );
    }

    #[test]
    fn ringback_is_two_seconds_on_four_off() {
        let on = ringback(0, 32_000);
        let off = ringback(32_000, 64_000);
        assert!(on.iter().map(|s| s.unsigned_abs() as u32).max().unwrap() > 4000);
        assert!(off.iter().all(|s| *s == 0));
        // Continuous across calls: frame by frame equals all at once.
        let mut pieces = Vec::new();
        for i in 0..10 {
            pieces.extend(ringback(i * 320, 320));
        }
        assert_eq!(pieces, ringback(0, 3200));
    }

    #[test]
    fn the_caller_user_is_presented() {
        assert_eq!(caller_user("sip:+15550123@10.0.0.1:5060"), "+15550123");
        assert_eq!(caller_user("<sips:alice@example.com>;tag=1"), "alice");
        assert_eq!(caller_user("sip:10.0.0.1"), "10.0.0.1");
        assert_eq!(caller_user(""), "skald");
    }
}
