//! The media of one SIP leg: the RTP session on its sockets
//! ([`MediaStream`]), the G.711 codec between the wire and the pipeline's
//! 16 kHz frames, and the SDP offer/answer state (RFC 3264) that re-INVITEs
//! and early media change.
//!
//! Audio path per ptime (20 ms): RTP payload → jitter buffer → G.711
//! decode (8 kHz) → 16 kHz. Outbound: 16 kHz → 8 kHz → G.711 encode →
//! queued in the RTP session, which sends one packet per ptime on the
//! media clock.

use super::SipSettings;
use crate::rtp::codec::frames::G711Frames;
use crate::rtp::codec::g711::Law;
use crate::rtp::driver::MediaStream;
use crate::rtp::ports::RtpSockets;
use crate::rtp::proto::session::SessionConfig;
use crate::sip::sdp::{self, AudioCodec, Direction, LocalMedia, Negotiated};
use std::time::Duration;

/// Duration of each DTMF digit sent (RFC 4733), and the gap after it.
pub const DTMF_TONE: Duration = Duration::from_millis(100);

/// Media state of a leg whose SDP is negotiated.
pub(super) struct Media {
    /// Sockets + RTP session.
    pub(super) stream: MediaStream,
    /// G.711 frames to and from 16 kHz audio.
    pub(super) codec: G711Frames,
    /// What was negotiated (for re-INVITE answers).
    pub(super) negotiated: Negotiated,
    /// Our SDP parameters (version bumped on each answer).
    local: LocalMedia,
}

impl Media {
    /// Starts the RTP session of negotiated media `n` on `sockets`.
    pub(super) fn new(settings: &SipSettings, sockets: RtpSockets, n: Negotiated, local: LocalMedia) -> Media {
        let law = law_of(n.codec);
        let frame_8k = (8 * n.ptime_ms) as usize;
        let cfg = SessionConfig {
            ssrc: rand::random(),
            payload_type: n.payload_type,
            dtmf_payload_type: n.dtmf_payload_type,
            clock_rate: 8000,
            ptime: Duration::from_millis(n.ptime_ms as u64),
            remote: (!n.remote_rtp.ip().is_unspecified()).then_some(n.remote_rtp),
            symmetric: true,
            jitter_target: settings.jitter,
            inactivity_timeout: settings.inactivity,
            silence_payload: vec![law.silence(); frame_8k],
        };
        let stream = MediaStream::new(sockets, cfg, settings.metrics.clone(), std::time::Instant::now());
        Media { stream, codec: G711Frames::new(law, n.ptime_ms), negotiated: n, local }
    }

    /// The codec's name for the record.
    pub(super) fn codec_name(&self) -> &'static str {
        match self.negotiated.codec {
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
        }
    }

    /// Encodes 16 kHz audio into ptime frames queued on the RTP session;
    /// returns how many frames. The tail is padded to a whole frame.
    pub(super) fn play(&mut self, audio: &[i16]) -> usize {
        let session = self.stream.session_mut();
        self.codec.encode(audio, |f| session.queue_audio(f))
    }

    /// Frames queued and not yet sent.
    pub(super) fn queued(&self) -> usize {
        self.stream.session().outbound_len()
    }

    /// Applies a re-INVITE's offer to this leg (RFC 3264 §8): a new remote
    /// address, direction (hold: `sendonly`/`inactive` or a zero address,
    /// RFC 3264 §8.4) or codec. Returns the SDP for the 200 OK and, when
    /// the offer had SDP, whether the peer now holds the call. An offer-less
    /// re-INVITE gets our current media as the offer (RFC 3261 §14.2).
    /// Errors: the offer is not acceptable (answer 488).
    pub(super) fn renegotiate(&mut self, offer: Option<&str>) -> Result<(String, Option<bool>), sdp::SdpError> {
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
        self.set_codec(&n);
        tracing::info!(codec = ?n.codec, direction = ?n.direction, "re-INVITE accepted");
        self.negotiated = n;
        Ok((answer, Some(on_hold)))
    }

    /// The 2xx after early media: same session, the 2xx's SDP wins where it
    /// differs (address, codec).
    pub(super) fn early_media_answered(&mut self, n: Negotiated) {
        if n.remote_rtp != self.negotiated.remote_rtp && !n.remote_rtp.ip().is_unspecified() {
            self.stream.session_mut().set_remote(n.remote_rtp);
        }
        self.set_codec(&n);
        self.negotiated = n;
    }

    /// Switches payload type and law when `n` changed the codec.
    fn set_codec(&mut self, n: &Negotiated) {
        if n.codec != self.negotiated.codec {
            let law = law_of(n.codec);
            self.stream.session_mut().set_payload_type(n.payload_type, vec![law.silence(); self.codec.frame_bytes()]);
            self.codec.set_law(law);
        }
    }
}

/// The G.711 law of a negotiated codec.
fn law_of(codec: AudioCodec) -> Law {
    match codec {
        AudioCodec::Pcmu => Law::Mu,
        AudioCodec::Pcma => Law::A,
    }
}
