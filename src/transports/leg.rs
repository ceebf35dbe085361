//! The leg interface: what a call actor sees of one transport.
//!
//! A leg is one party's connection to a call, whatever wire carries it: a
//! SIP dialog with its RTP session ([`super::sip_rtp`]), a Twilio Media
//! Stream ([`super::twilio::leg`]), the control page's microphone
//! ([`super::browser`]). The leg turns its protocol into the same inbound
//! events ([`LegEvent`]: audio frames, DTMF, hold, remote hang-up, transfer
//! progress) and the same outbound actions ([`Leg`]: audio to play, flush,
//! DTMF, hang-up, transfer) into its own wire actions (RTP queue drop or
//! Twilio `clear`; REFER or Twilio's REST "Update a Call").
//!
//! Audio crosses the interface as the pipeline's format: mono PCM16 at
//! 16 kHz, one ptime frame at a time (20 ms = 320 samples by default).
//! Outbound audio is queued on the leg, which paces it on its own media
//! clock (RTP: one packet per ptime; WebSocket legs: at most a short lead
//! ahead of the far end's playout).
//!
//! Data flow (DESIGN.md "Architecture"): socket → protocol core (sans-IO:
//! `sip::proto`, `rtp::proto`, `twilio::media`, `browser`) → leg (this
//! interface) → call actor (`call::actor`) → pipeline and voice agent →
//! providers, and back the same way.

use std::future::Future;
use std::pin::Pin;

/// A future borrowed from a leg (legs are used as `dyn Leg`).
pub type LegFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a leg's outbound audio goes: the voice agent, the applications and
/// the bridge queue 16 kHz audio here and account for what was heard.
pub trait AudioOut: Send {
    /// Queues 16 kHz mono audio after what is queued; returns the number of
    /// ptime frames it became (the tail is padded to a whole frame).
    fn play(&mut self, pcm16k: &[i16]) -> usize;
    /// Frames queued and not yet heard: for RTP, not yet sent; for a
    /// transport that acknowledges playout (Twilio marks), not yet
    /// acknowledged as played. What was heard is what the transcript keeps.
    fn queued(&self) -> usize;
    /// Frames not yet on the wire (for the first-packet latency); the same
    /// as [`AudioOut::queued`] unless the transport buffers beyond the wire.
    fn unsent(&self) -> usize {
        self.queued()
    }
    /// Stops sending now (Twilio and the page are told to drop what they
    /// buffered: `clear`); returns the unheard frames, already encoded.
    fn pause(&mut self) -> Vec<Vec<u8>>;
    /// Puts paused frames back at the head of the queue.
    fn resume(&mut self, frames: Vec<Vec<u8>>);
}

/// What a leg reports, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub enum LegEvent {
    /// One ptime frame of the far end's audio, decoded into the buffer
    /// given to [`Leg::next_event`]: mono PCM16 at 16 kHz (a lost RTP
    /// packet is concealed with silence).
    Audio,
    /// A DTMF digit `0-9*#A-D` (RFC 4733 telephone-event, Twilio `dtmf`,
    /// the page's keypad).
    Dtmf(char),
    /// The far end put the call on hold (`true`: SDP `sendonly`/`inactive`
    /// or a zero address, RFC 3264 §8.4) or resumed it (`false`).
    Hold(bool),
    /// The far end reported playout of our audio (Twilio `mark`): the
    /// "heard up to" point moved.
    Played,
    /// Our INVITE rings (a provisional response, 180/183; outbound legs).
    Ringing {
        /// The provisional status.
        status: u16,
    },
    /// Early media flows (an 18x with SDP, RFC 3960): announcements and
    /// ringback from the far end, for nobody yet.
    EarlyMedia {
        /// The provisional status.
        status: u16,
    },
    /// The far end answered our INVITE (outbound legs): media flows.
    Answered,
    /// The far end refused our INVITE (a 3xx–6xx final response).
    Rejected {
        /// Its status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The far end asked us to call someone else (an incoming REFER, RFC
    /// 3515; refused by the leg); carries the Refer-To URI.
    Referred(String),
    /// Progress of a transfer this leg was asked for ([`Leg::transfer`]).
    Transfer(TransferEvent),
    /// No media from the far end for the inactivity timeout.
    MediaTimeout,
    /// A message from the far end was dropped as bad input; the leg goes
    /// on (the actor keeps the first few reasons in the record).
    Dropped(String),
    /// The leg is over (the far end hung up, cancelled, or the transport
    /// failed). The leg has done its own closing: the actor must not hang
    /// it up again.
    Ended {
        /// The record's end reason (`remote-bye`, `remote-stop`, …).
        reason: String,
        /// A final SIP status to record, when this end set one (487 for a
        /// CANCEL).
        status: Option<u16>,
        /// What went wrong, for the record's errors (a failed socket).
        error: Option<String>,
    },
}

/// Progress of a transfer made by the leg's own transport.
#[derive(Debug, Clone, PartialEq)]
pub enum TransferEvent {
    /// The far end accepted to make the transfer (REFER answered 202).
    Accepted,
    /// The far end will not call the target itself (REFER answered
    /// 4xx–6xx): the actor may call the target and bridge instead.
    Refused {
        /// The REFER's final status.
        status: u16,
    },
    /// How the far end's call to the target goes (NOTIFY with a
    /// `message/sipfrag` status line, RFC 3515 §2.4.5); `done` when the
    /// subscription ended.
    Progress {
        /// The status line's code.
        status: u16,
        /// The last NOTIFY.
        done: bool,
    },
    /// The transport took the call to the target (Twilio accepted the new
    /// TwiML); the leg ends on its own, with reason `transferred`.
    Completed,
    /// The transfer request failed (the REST request was refused).
    Failed(String),
}

/// What a cold transfer asks a leg to do.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferTo {
    /// The target as the agent named it: a SIP URI or an E.164 number.
    pub target: String,
    /// The target as a SIP URI carrying the call's context in its header
    /// fields (RFC 3261 §19.1.1), as REFER's Refer-To sends it.
    pub uri: String,
    /// The caller ID to present when dialling a number (the call's DID).
    pub caller_id: Option<String>,
}

/// What a leg is, for the record and the actor's choices.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LegFacts {
    /// The record's `transport`: `sip`, `twilio-stream`, `browser`.
    pub transport: &'static str,
    /// The codec on the wire (`PCMU`, `PCMA`, `L16/16000`), once known.
    pub codec: Option<String>,
    /// The far end's address, as text.
    pub remote: String,
    /// The provider's call id (Twilio CallSid), if any.
    pub call_sid: Option<String>,
    /// Audio frame duration, ms (the ptime).
    pub ptime_ms: u32,
    /// How this leg transfers a call (`refer`, `twilio`), or `None` when it
    /// cannot.
    pub transfer: Option<&'static str>,
}

/// Media counters of a leg at its end (RTP legs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LegStats {
    /// Packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// Packets lost (RFC 3550 §6.4.1 cumulative).
    pub packets_lost: u64,
    /// Interarrival jitter, ms (RFC 3550 §6.4.1).
    pub jitter_ms: f64,
}

/// One transport leg of a call, as its call actor drives it. The actor
/// waits on [`Leg::next_event`] with its other inputs and acts on the
/// outcome; every method but `next_event` and `hangup` returns at once.
pub trait Leg: AudioOut {
    /// What this leg is.
    fn facts(&self) -> &LegFacts;
    /// The next event; caller audio is decoded into `pcm16k` (16 kHz mono,
    /// one ptime frame). Cancel-safe: dropping the future loses nothing.
    /// After [`LegEvent::Ended`] it stays pending.
    fn next_event<'a>(&'a mut self, pcm16k: &'a mut Vec<i16>) -> LegFuture<'a, LegEvent>;
    /// Drops every queued outbound frame now (RTP queue drop, Twilio
    /// `clear`, the page's `clear`).
    fn flush(&mut self) {
        drop(self.pause());
    }
    /// Keeps at most `max` − 1 frames queued, dropping the oldest, before
    /// the next frame is queued (a relay between two media clocks must not
    /// build delay).
    fn trim(&mut self, max: usize) {
        if self.queued() >= max {
            let mut frames = self.pause();
            let keep = frames.split_off(frames.len().saturating_sub(max.saturating_sub(1)));
            self.resume(keep);
        }
    }
    /// Sends one DTMF digit (RFC 4733: 100 ms, then a gap). Returns `false`
    /// when the leg cannot send DTMF.
    fn send_dtmf(&mut self, _digit: char) -> bool {
        false
    }
    /// Asks the far end's side to take the call to `to` (REFER with the
    /// context in Refer-To; Twilio REST "Update a Call" with a `<Dial>`).
    /// The outcome arrives as [`LegEvent::Transfer`]. Errors: the leg
    /// cannot transfer, or cannot reach this target; nothing was sent.
    fn transfer(&mut self, _to: TransferTo) -> Result<(), String> {
        Err(format!("a {} call cannot be transferred", self.facts().transport))
    }
    /// Hangs up from our side (BYE, CANCEL or a rejection before the
    /// answer; closing the WebSocket) and waits, bounded, until the leg is
    /// over.
    fn hangup(&mut self) -> LegFuture<'_, ()>;
    /// Media counters, for RTP legs.
    fn stats(&self) -> Option<LegStats> {
        None
    }
    /// A transcript turn was stored (a leg with a screen may show it).
    fn show_turn(&mut self, _speaker: &str, _text: &str) {}
    /// Samples in one ptime frame at 16 kHz.
    fn frame_samples(&self) -> usize {
        self.facts().ptime_ms as usize * 16
    }
}
