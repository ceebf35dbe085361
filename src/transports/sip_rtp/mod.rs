//! The SIP/RTP leg: one SIP dialog (RFC 3261 §12) and its RTP session
//! (RFC 3550) as one [`Leg`]. The only way from the call layer to
//! `sip::*` and `rtp::*`.
//!
//! Owned here: SDP offer/answer (RFC 3264) for the INVITE, early media
//! (an 18x with SDP), re-INVITEs (hold and resume, RFC 3264 §8.4; a new
//! address or codec), the jitter buffer and G.711 ([`media`]), RFC 4733
//! DTMF both ways, REFER for transfers (RFC 3515, outcome by NOTIFY), the
//! BYE/CANCEL at the end, and placing outbound INVITEs on fresh RTP ports
//! ([`SipLegs::invite`]). Phones registered at skald's registrar are
//! reported through [`registrations`].
//!
//! Inbound setup belongs to the call (it routes and decides); the leg does
//! the SIP of it: [`SipLeg::negotiate`] (ports and SDP answer, or the
//! status to refuse with), [`SipLeg::ring`], [`SipLeg::answer`],
//! [`SipLeg::reject`].

pub mod media;
pub mod registrations;

use crate::observability::{Metrics, Pii};
use crate::rtp::driver::MediaStream;
use crate::rtp::ports::{PortAllocator, RtpSockets};
use crate::rtp::proto::session::RtpEvent;
use crate::sip::driver::{Credentials, DialogEvent, DialogHandle, IncomingCall, OutboundInvite, SipError, SipHandle, Transport};
use crate::sip::sdp::{self, AudioCodec, Direction, LocalMedia, Negotiated, SdpError};
use crate::transports::leg::{AudioOut, Leg, LegEvent, LegFacts, LegFuture, LegStats, TransferEvent, TransferTo};
use media::{DTMF_TONE, Media};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long to wait for the far end to confirm our BYE/CANCEL.
const HANGUP_WAIT: Duration = Duration::from_secs(5);

/// What every SIP leg of this node shares: the SIP stack, the RTP ports
/// and the media settings.
pub struct SipSettings {
    /// The SIP stack.
    sip: SipHandle,
    /// RTP port pairs.
    ports: PortAllocator,
    /// IP written in SDP `c=` lines.
    media_ip: IpAddr,
    /// Codecs offered and accepted, in preference order.
    codecs: Vec<AudioCodec>,
    /// ptime offered, ms.
    ptime_ms: u32,
    /// Jitter buffer target delay.
    jitter: Duration,
    /// No RTP for this long ends the leg ([`LegEvent::MediaTimeout`]).
    inactivity: Duration,
    /// Metrics registry (RTP counters).
    metrics: Metrics,
}

/// The factory of SIP legs: inbound INVITEs become legs, outbound INVITEs
/// are placed. Cheap to clone.
#[derive(Clone)]
pub struct SipLegs(Arc<SipSettings>);

/// Digest credentials (RFC 8760) answering a 401/407 to our INVITE.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// An outbound INVITE to place.
#[derive(Debug, Clone, Default)]
pub struct Invite {
    /// Request-URI (a SIP URI).
    pub target: String,
    /// User part of From.
    pub from_user: String,
    /// Display name of From.
    pub from_display: Option<String>,
    /// Answers a challenge, if given.
    pub credentials: Option<Digest>,
    /// Extra headers (the call's context).
    pub headers: Vec<(String, String)>,
    /// CANCEL after this long without an answer.
    pub ring_timeout: Duration,
}

/// Why an INVITE could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    /// No RTP port pair free.
    #[error("{0}")]
    NoPorts(String),
    /// The target is not a usable SIP URI.
    #[error("bad SIP URI `{0}`")]
    BadUri(String),
    /// The SIP stack refused (stopped, timed out).
    #[error("{0}")]
    Sip(String),
}

/// What an incoming INVITE said (for the call record and routing).
#[derive(Debug, Clone, Default)]
pub struct InviteFacts {
    /// SIP Call-ID.
    pub sip_call_id: String,
    /// From URI.
    pub from_uri: String,
    /// To URI.
    pub to_uri: String,
    /// The called number (user part of the Request-URI).
    pub did: String,
    /// Source address, as text.
    pub remote_addr: String,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    /// All headers (name, value) in order (the call's context).
    pub headers: Vec<(String, String)>,
}

/// The final response an INVITE gets when it cannot be answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Status code (400, 488, 503).
    pub status: u16,
    /// Reason phrase.
    pub phrase: &'static str,
    /// The record's end reason.
    pub reason: &'static str,
}

impl SipLegs {
    /// SIP legs on stack `sip`, with RTP on `ports`, `media_ip` in SDP,
    /// and the `[rtp]` settings.
    pub fn new(sip: SipHandle, ports: PortAllocator, media_ip: IpAddr, rtp: &crate::config::RtpConfig, metrics: Metrics) -> Self {
        let codecs = rtp
            .codecs
            .iter()
            .filter_map(|c| match c.to_ascii_uppercase().as_str() {
                "PCMU" => Some(AudioCodec::Pcmu),
                "PCMA" => Some(AudioCodec::Pcma),
                _ => None,
            })
            .collect();
        SipLegs(Arc::new(SipSettings {
            sip,
            ports,
            media_ip,
            codecs,
            ptime_ms: rtp.ptime_ms,
            jitter: Duration::from_millis(rtp.jitter_ms as u64),
            inactivity: Duration::from_secs(rtp.inactivity_timeout_s),
            metrics,
        }))
    }

    /// The leg of an incoming INVITE (not answered yet) and what it said.
    pub fn inbound(&self, incoming: IncomingCall) -> (InviteFacts, SipLeg) {
        let info = incoming.info;
        let facts = InviteFacts {
            sip_call_id: info.sip_call_id,
            from_uri: info.from_uri,
            to_uri: info.to_uri,
            did: info.did,
            remote_addr: info.remote_addr.to_string(),
            transport: match info.transport {
                Transport::Udp => "udp",
                Transport::Tcp => "tcp",
            },
            headers: info.headers,
        };
        let mut leg = SipLeg::new(self.0.clone(), incoming.dialog, incoming.events, Setup::Inbound { offer: info.sdp_offer, answer: None });
        leg.facts.remote = facts.remote_addr.clone();
        (facts, leg)
    }

    /// Places an INVITE with an SDP offer on freshly allocated RTP ports;
    /// returns its leg (ringing) and the INVITE's Call-ID. Errors: no free
    /// RTP ports, an unusable URI, the SIP stack stopped.
    pub async fn invite(&self, invite: Invite) -> Result<(String, SipLeg), InviteError> {
        let s = &self.0;
        let sockets = s.ports.allocate().await.map_err(|e| InviteError::NoPorts(e.to_string()))?;
        let local = self.local_media(sockets.rtp_port());
        let call = s
            .sip
            .invite(OutboundInvite {
                target: invite.target,
                from_user: invite.from_user,
                from_display: invite.from_display,
                sdp_offer: sdp::offer(&local),
                credentials: invite.credentials.map(|c| Credentials { username: c.username, password: c.password }),
                extra_headers: invite.headers,
                ring_timeout: invite.ring_timeout,
            })
            .await
            .map_err(|e| match e {
                SipError::BadUri(u) => InviteError::BadUri(u),
                other => InviteError::Sip(other.to_string()),
            })?;
        let leg = SipLeg::new(s.clone(), call.dialog, call.events, Setup::Outbound { local, sockets: Some(sockets) });
        Ok((call.sip_call_id, leg))
    }

    /// The host skald puts in its own URIs (From of outbound calls).
    pub fn advertised_host(&self) -> String {
        self.0.sip.advertised_host()
    }

    /// The registrar's reports of phones coming and going, when skald runs
    /// one.
    pub fn registrations(&self) -> Option<registrations::Registrations> {
        self.0.sip.registrar().map(registrations::Registrations::new)
    }

    /// skald's side of the SDP for a leg whose RTP socket is on `port`.
    fn local_media(&self, port: u16) -> LocalMedia {
        let s = &self.0;
        LocalMedia {
            ip: s.media_ip,
            port,
            codecs: s.codecs.clone(),
            ptime_ms: s.ptime_ms,
            dtmf: true,
            session_id: rand::random::<u32>() as u64,
            session_version: 1,
            direction: Direction::SendRecv,
        }
    }
}

/// Where the leg's SDP is.
enum Setup {
    /// An incoming INVITE: its offer, and our answer once negotiated.
    Inbound {
        /// The INVITE's SDP offer.
        offer: Option<String>,
        /// Our answer and what it needs to start media.
        answer: Option<(String, RtpSockets, Negotiated, LocalMedia)>,
    },
    /// Our INVITE: the offer's parameters, and its sockets until media
    /// starts.
    Outbound {
        /// The offer.
        local: LocalMedia,
        /// Bound RTP/RTCP sockets.
        sockets: Option<RtpSockets>,
    },
    /// Media runs.
    Done,
}

/// One SIP dialog and its RTP session.
pub struct SipLeg {
    /// Shared settings.
    settings: Arc<SipSettings>,
    /// Acts on the dialog.
    dialog: DialogHandle,
    /// The dialog's events.
    events: mpsc::Receiver<DialogEvent>,
    /// SDP progress.
    setup: Setup,
    /// Media, once negotiated.
    media: Option<Media>,
    /// Answered (both ways): audio is for the call, not early media.
    answered: bool,
    /// Over: events stay pending.
    over: bool,
    /// What this leg is.
    facts: LegFacts,
}

impl SipLeg {
    fn new(settings: Arc<SipSettings>, dialog: DialogHandle, events: mpsc::Receiver<DialogEvent>, setup: Setup) -> SipLeg {
        let facts = LegFacts {
            transport: "sip",
            codec: None,
            remote: String::new(),
            call_sid: None,
            ptime_ms: settings.ptime_ms,
            transfer: Some("refer"),
        };
        SipLeg { settings, dialog, events, setup, media: None, answered: false, over: false, facts }
    }

    /// Allocates RTP ports and answers the INVITE's SDP offer (sent by
    /// [`SipLeg::answer`]). Errors, as the final response to send: no offer
    /// (488: offer-less INVITEs are not supported), no free ports (503), an
    /// offer with nothing acceptable (488) or malformed SDP (400).
    pub async fn negotiate(&mut self) -> Result<(), Refusal> {
        let Setup::Inbound { offer, answer } = &mut self.setup else { return Ok(()) };
        let Some(offer) = offer.as_deref() else {
            return Err(Refusal { status: 488, phrase: "Not Acceptable Here", reason: "no-sdp-offer" });
        };
        let sockets = match self.settings.ports.allocate().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no RTP ports");
                return Err(Refusal { status: 503, phrase: "Service Unavailable", reason: "no-media-ports" });
            }
        };
        let local = SipLegs(self.settings.clone()).local_media(sockets.rtp_port());
        match sdp::answer(offer, &local) {
            Ok((sdp, n)) => {
                self.facts.ptime_ms = n.ptime_ms;
                *answer = Some((sdp, sockets, n, local));
                Ok(())
            }
            Err(SdpError::NotAcceptable(why)) => {
                tracing::info!(%why, "SDP not acceptable: 488");
                Err(Refusal { status: 488, phrase: "Not Acceptable Here", reason: "sdp-not-acceptable" })
            }
            Err(SdpError::Malformed(why)) => {
                tracing::info!(%why, "malformed SDP: 400");
                Err(Refusal { status: 400, phrase: "Bad SDP", reason: "sdp-malformed" })
            }
        }
    }

    /// Sends 180 Ringing.
    pub fn ring(&self) {
        self.dialog.ring();
    }

    /// Sends 200 OK with the negotiated answer and starts media.
    pub fn answer(&mut self) {
        let Setup::Inbound { answer: Some(_), .. } = &self.setup else {
            tracing::warn!("answer without a negotiated offer: ignored");
            return;
        };
        let Setup::Inbound { answer: Some((sdp, sockets, n, local)), .. } = std::mem::replace(&mut self.setup, Setup::Done) else {
            return;
        };
        self.dialog.answer(sdp);
        self.start_media(sockets, n, local);
        self.answered = true;
    }

    /// Rejects the INVITE with final response `status` (RFC 3261 §13.3.1.3).
    pub fn reject(&mut self, status: u16, phrase: &str) {
        self.dialog.reject(status, phrase);
        self.over = true;
    }

    /// Ends the dialog without waiting for the far end's answer (BYE, or
    /// CANCEL before the answer).
    pub fn release(&mut self) {
        self.dialog.hangup();
        self.over = true;
    }

    fn start_media(&mut self, sockets: RtpSockets, n: Negotiated, local: LocalMedia) {
        let media = Media::new(&self.settings, sockets, n, local);
        self.facts.codec = Some(media.codec_name().into());
        self.facts.ptime_ms = media.negotiated.ptime_ms;
        self.media = Some(media);
    }

    /// Our INVITE's answer (outbound legs): media starts, or moves to the
    /// 2xx's SDP after early media. An answer without usable SDP ends the
    /// leg (`sdp-answer-unusable`, BYE sent).
    fn on_answered(&mut self, sdp_answer: Option<String>) -> LegEvent {
        let Setup::Outbound { local, sockets } = &mut self.setup else {
            self.answered = true;
            return LegEvent::Answered;
        };
        let negotiated = sdp_answer.as_deref().map(|a| sdp::accept_answer(a, local));
        if let Some(media) = self.media.as_mut() {
            if let Some(Ok(n)) = negotiated {
                media.early_media_answered(n);
            }
        } else {
            match (negotiated, sockets.take()) {
                (Some(Ok(n)), Some(s)) => {
                    let local = local.clone();
                    self.start_media(s, n, local);
                }
                (other, _) => {
                    tracing::warn!(?other, "unusable SDP answer: ending the call");
                    self.release();
                    return LegEvent::Ended { reason: "sdp-answer-unusable".into(), status: Some(200), error: None };
                }
            }
        }
        self.setup = Setup::Done;
        self.answered = true;
        LegEvent::Answered
    }

    /// A provisional response; with SDP and no media yet, early media.
    fn on_provisional(&mut self, status: u16, sdp: Option<String>) -> LegEvent {
        tracing::debug!(status, "provisional response");
        if let (Some(answer), None, Setup::Outbound { local, sockets }) = (sdp.as_deref(), self.media.as_ref(), &mut self.setup) {
            match sdp::accept_answer(answer, local) {
                Ok(n) => {
                    tracing::info!(status, remote = %Pii(n.remote_rtp), "early media");
                    if let Some(s) = sockets.take() {
                        let local = local.clone();
                        self.start_media(s, n, local);
                        return LegEvent::EarlyMedia { status };
                    }
                }
                Err(e) => tracing::info!(error = %e, "unusable early-media SDP: ignored"),
            }
        }
        LegEvent::Ringing { status }
    }

    /// A re-INVITE: hold/resume (direction), new remote address, codec
    /// change; answered here.
    fn on_reinvite(&mut self, offer: Option<String>) -> Option<LegEvent> {
        let Some(media) = self.media.as_mut() else {
            self.dialog.reject_reinvite(491);
            return None;
        };
        match media.renegotiate(offer.as_deref()) {
            Ok((answer, hold)) => {
                self.dialog.accept_reinvite(answer);
                self.facts.codec = Some(media.codec_name().into());
                hold.map(LegEvent::Hold)
            }
            Err(e) => {
                tracing::info!(error = %e, "re-INVITE not acceptable: 488");
                self.dialog.reject_reinvite(488);
                None
            }
        }
    }

    /// One dialog event in the leg's terms (`None`: handled here).
    fn on_dialog(&mut self, ev: Option<DialogEvent>) -> Option<LegEvent> {
        let ended = |reason: &str, status| Some(LegEvent::Ended { reason: reason.into(), status, error: None });
        let ev = match ev {
            None => {
                self.over = true;
                return ended("sip-stopped", None);
            }
            Some(ev) => ev,
        };
        match ev {
            DialogEvent::Bye => {
                self.over = true;
                ended("remote-bye", None)
            }
            DialogEvent::Cancelled => {
                self.over = true;
                ended("cancelled", Some(487))
            }
            DialogEvent::Terminated { reason } => {
                self.over = true;
                ended(&reason, None)
            }
            DialogEvent::Provisional { status, sdp } => Some(self.on_provisional(status, sdp)),
            DialogEvent::Answered { sdp_answer } => Some(self.on_answered(sdp_answer)),
            DialogEvent::Rejected { status, reason } => {
                self.over = true;
                Some(LegEvent::Rejected { status, reason })
            }
            DialogEvent::ReInvite { sdp_offer } => self.on_reinvite(sdp_offer),
            DialogEvent::Acked => {
                tracing::debug!("ACK received");
                None
            }
            DialogEvent::ReferAccepted => Some(LegEvent::Transfer(TransferEvent::Accepted)),
            DialogEvent::ReferFailed { status } => Some(LegEvent::Transfer(TransferEvent::Refused { status })),
            DialogEvent::ReferProgress { status, done } => Some(LegEvent::Transfer(TransferEvent::Progress { status, done })),
            DialogEvent::ReferRequested { refer_to } => Some(LegEvent::Referred(refer_to)),
            #[allow(unreachable_patterns)]
            other => {
                tracing::debug!(?other, "dialog event ignored");
                None
            }
        }
    }

    /// One RTP event in the leg's terms (`None`: handled here). Before the
    /// answer, early media is for nobody: audio is dropped, silence from
    /// the far end is no reason to end.
    fn on_rtp(&mut self, ev: RtpEvent, pcm16k: &mut Vec<i16>) -> Option<LegEvent> {
        match ev {
            RtpEvent::Audio(payload) if self.answered => {
                let m = self.media.as_mut()?;
                m.codec.decode(payload.as_deref(), pcm16k);
                Some(LegEvent::Audio)
            }
            RtpEvent::Dtmf { digit, duration_ms } if self.answered => {
                tracing::info!(%digit, duration_ms, "DTMF");
                Some(LegEvent::Dtmf(digit))
            }
            RtpEvent::Inactive if self.answered => {
                tracing::warn!("no RTP for the inactivity timeout");
                Some(LegEvent::MediaTimeout)
            }
            RtpEvent::Latched(addr) => {
                tracing::debug!(addr = %Pii(addr), "RTP latched");
                None
            }
            RtpEvent::Dtmf { digit, .. } => {
                tracing::debug!(%digit, "DTMF in early media ignored");
                None
            }
            RtpEvent::Audio(_) | RtpEvent::Inactive => None,
        }
    }

    async fn event(&mut self, pcm16k: &mut Vec<i16>) -> LegEvent {
        loop {
            if self.over {
                return std::future::pending().await;
            }
            let got = tokio::select! {
                ev = self.events.recv() => self.on_dialog(ev),
                ev = next_rtp(&mut self.media) => self.on_rtp(ev, pcm16k),
            };
            if let Some(ev) = got {
                return ev;
            }
        }
    }
}

/// The media stream's next event; pending forever without media.
async fn next_rtp(media: &mut Option<Media>) -> RtpEvent {
    match media {
        Some(m) => MediaStream::next_event(&mut m.stream).await,
        None => std::future::pending().await,
    }
}

impl AudioOut for SipLeg {
    fn play(&mut self, pcm16k: &[i16]) -> usize {
        self.media.as_mut().map(|m| m.play(pcm16k)).unwrap_or(0)
    }
    fn queued(&self) -> usize {
        self.media.as_ref().map(Media::queued).unwrap_or(0)
    }
    fn pause(&mut self) -> Vec<Vec<u8>> {
        self.media.as_mut().map(|m| m.stream.session_mut().take_outbound()).unwrap_or_default()
    }
    fn resume(&mut self, frames: Vec<Vec<u8>>) {
        if let Some(m) = self.media.as_mut() {
            m.stream.session_mut().requeue_front(frames);
        }
    }
}

impl Leg for SipLeg {
    fn facts(&self) -> &LegFacts {
        &self.facts
    }
    fn next_event<'a>(&'a mut self, pcm16k: &'a mut Vec<i16>) -> LegFuture<'a, LegEvent> {
        Box::pin(self.event(pcm16k))
    }
    fn flush(&mut self) {
        if let Some(m) = self.media.as_mut() {
            m.stream.session_mut().clear_outbound();
        }
    }
    fn send_dtmf(&mut self, digit: char) -> bool {
        let Some(m) = self.media.as_mut() else { return false };
        if "0123456789*#ABCDabcd".contains(digit) {
            m.stream.session_mut().queue_dtmf(digit.to_ascii_uppercase(), DTMF_TONE);
        }
        true
    }
    fn transfer(&mut self, to: TransferTo) -> Result<(), String> {
        if !self.answered || self.over {
            return Err("the call is not answered".into());
        }
        tracing::info!(target = %to.target, "transfer: sending REFER");
        self.dialog.refer(to.uri);
        Ok(())
    }
    fn hangup(&mut self) -> LegFuture<'_, ()> {
        Box::pin(async move {
            if self.over {
                return;
            }
            self.release();
            let deadline = tokio::time::Instant::now() + HANGUP_WAIT;
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
        })
    }
    fn stats(&self) -> Option<LegStats> {
        let m = self.media.as_ref()?;
        let s = m.stream.session().stats();
        tracing::info!(
            jitter_buffer = ?m.stream.session().jitter_stats(),
            rx = s.packets_received,
            tx = s.packets_sent,
            lost = s.packets_lost,
            jitter_ms = s.jitter_ms,
            "media stats"
        );
        Some(LegStats { packets_in: s.packets_received, packets_out: s.packets_sent, packets_lost: s.packets_lost, jitter_ms: s.jitter_ms })
    }
}
