//! A Twilio Media Stream as a call leg: the protocol core
//! ([`super::media::MediaStreamSession`]) with its µ-law codec, driven by
//! the WebSocket edge ([`crate::transports::ws::WsLeg`]).
//!
//! Audio per 20 ms: `media` payload → µ-law decode at 8 kHz → 16 kHz, and
//! back; a flush is Twilio's `clear`; playout is acknowledged by `mark`s.
//!
//! Transfer: Twilio moves the call itself. skald replaces the call's TwiML
//! (REST "Update a Call", [`super::rest::TwilioClient::update_call_twiml`])
//! with a `<Dial>`: `<Sip>` with the call's context in the URI's header
//! fields (as a REFER's Refer-To carries it), or `<Number>` with the DID as
//! caller ID. Twilio then stops the stream; the call ends `transferred`.

use super::media::{MediaStreamSession, StreamEvent};
use super::rest::TwilioClient;
use super::twiml;
use crate::rtp::codec::frames::G711Frames;
use crate::rtp::codec::g711::Law;
use crate::transports::leg::{AudioOut, TransferTo};
use crate::transports::ws::{StreamTransport, TransferJob, TransportEvent, WsInput, WsOutput};
use std::time::Instant;

/// Twilio Media Streams: the session and the µ-law frame codec.
pub struct TwilioStream {
    /// Protocol core.
    session: MediaStreamSession,
    /// µ-law frames ⇄ 16 kHz audio.
    codec: G711Frames,
    /// The REST client for transfers, or why there is none.
    rest: Result<TwilioClient, String>,
}

impl TwilioStream {
    /// A stream waiting for Twilio's `start`; transfers go through `rest`
    /// (or fail with its error).
    pub fn new(rest: Result<TwilioClient, String>) -> Self {
        TwilioStream { session: MediaStreamSession::new(), codec: G711Frames::new(Law::Mu, 20), rest }
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
        self.session.pause(Instant::now())
    }
    fn resume(&mut self, frames: Vec<Vec<u8>>) {
        self.session.resume(frames);
    }
}

impl StreamTransport for TwilioStream {
    const NAME: &'static str = "twilio-stream";
    const CODEC: &'static str = "PCMU";
    const TRANSFER: Option<&'static str> = Some("twilio");

    fn handle_input(&mut self, input: WsInput, now: Instant) -> Result<(), String> {
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
    fn poll_transmit(&mut self, now: Instant) -> Option<WsOutput> {
        self.session.poll_transmit(now).map(WsOutput::Text)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }
    fn dropped(&self) -> u64 {
        self.session.dropped
    }
    fn transfer(&mut self, call_sid: Option<&str>, to: &TransferTo) -> Result<TransferJob, String> {
        let call_sid = call_sid.ok_or("the stream has no CallSid")?.to_string();
        let client = self.rest.clone().map_err(|e| format!("Twilio REST: {e}"))?;
        let twiml = transfer_twiml(to)?;
        Ok(Box::pin(async move {
            client.update_call_twiml(&call_sid, &twiml).await.map(|_| ()).map_err(|e| e.to_string())
        }))
    }
}

/// The TwiML that dials a transfer target: `<Dial><Sip>` with the
/// context-carrying URI for a SIP target, `<Dial><Number>` with the DID as
/// caller ID for an E.164 number. Errors: the target is neither.
pub fn transfer_twiml(to: &TransferTo) -> Result<String, String> {
    let target = to.target.as_str();
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        Ok(twiml::dial_sip(&to.uri))
    } else if target.strip_prefix('+').is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())) {
        Ok(twiml::dial_number(target, to.caller_id.as_deref().filter(|d| !d.is_empty())))
    } else {
        Err(format!("`{target}` is neither a SIP URI nor an E.164 number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_dials_a_sip_uri_with_its_context_or_a_number_with_the_did() {
        let to = |target: &str| TransferTo {
            target: target.into(),
            uri: format!("{target}?X-Skald-Context=abc"),
            caller_id: Some("+15550100".into()),
        };
        let sip = transfer_twiml(&to("sip:desk@pbx.example.com")).unwrap();
        assert!(sip.contains("<Sip>sip:desk@pbx.example.com?X-Skald-Context=abc</Sip>"), "{sip}");
        let number = transfer_twiml(&to("+15550123")).unwrap();
        assert!(number.contains("<Number>+15550123</Number>") && number.contains("callerId=\"+15550100\""), "{number}");
        assert!(transfer_twiml(&to("desk")).unwrap_err().contains("neither"));
    }
}
