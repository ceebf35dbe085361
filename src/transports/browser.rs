//! Browser audio (`GET /api/v1/talk`): the sans-IO protocol core of one
//! conversation between the control page's microphone and a voice agent.
//!
//! The wire format is the control page's (`ui/assets/audio.js`), the same as
//! the supervisor's audio socket:
//! - binary messages both ways: 20 ms of mono PCM16 little-endian at 16 kHz
//!   ([`FRAME_BYTES`] = 640 bytes; a client message may hold several whole
//!   frames);
//! - text messages from skald, JSON: `{"type":"transcript","speaker":
//!   "caller"|"agent","text":…}` as each turn is stored, and
//!   `{"type":"clear"}` on a barge-in (the page drops what its player has
//!   buffered);
//! - text messages from the page, JSON: `{"type":"dtmf","digit":"5"}` and
//!   `{"type":"stop"}` (the page hangs up; closing the socket does the
//!   same).
//!
//! There is no handshake: the conversation starts at the upgrade, with the
//! application chosen by the URL.
//!
//! ## Run loop
//! Time is an argument; the session never reads the clock or touches a
//! socket. The driver feeds each message to [`BrowserSession::handle_binary`]
//! or [`BrowserSession::handle_text`], then drains
//! [`BrowserSession::poll_event`] and [`BrowserSession::poll_transmit`]
//! until both are empty, and sleeps until [`BrowserSession::poll_timeout`]
//! or the next input.
//!
//! ## Outbound pacing and playout
//! Agent audio is queued as whole frames ([`BrowserSession::play`]) and
//! released on the media clock at most [`LEAD`] ahead of the estimated end
//! of the page's playout: real time, never a burst. The page does not
//! acknowledge playout, so a frame counts as heard once its estimated
//! playout time has passed. [`BrowserSession::pause`] (a barge-in) sends
//! `clear` and hands back every frame not yet heard.
//!
//! [`BrowserStream`] is this core as a WebSocket leg's
//! ([`crate::transports::ws::WsLeg`]).
//!
//! ## Bad input
//! Never fatal: a binary message that is not whole frames, text that is not
//! a known JSON message, or anything after `stop` is counted, reported as a
//! [`BrowserError`] and dropped.

#![deny(missing_docs)]

use crate::transports::leg::AudioOut;
use crate::transports::twilio::media::StreamStart;
use crate::transports::ws::{StreamTransport, TransportEvent, WsInput, WsOutput};
use serde::Deserialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Samples in one 20 ms frame at 16 kHz.
pub const FRAME_SAMPLES: usize = 320;
/// Bytes in one frame (PCM16 LE).
pub const FRAME_BYTES: usize = FRAME_SAMPLES * 2;
/// Duration of one frame.
pub const FRAME: Duration = Duration::from_millis(20);
/// How far outbound audio may run ahead of the page's playout (5 frames).
pub const LEAD: Duration = Duration::from_millis(100);

/// What the page told us.
#[derive(Debug, Clone, PartialEq)]
pub enum BrowserEvent {
    /// One 20 ms frame of the microphone: 320 samples at 16 kHz.
    Audio(Vec<i16>),
    /// A DTMF digit typed on the page.
    Dtmf(char),
    /// The page hung up.
    Stop,
}

/// What to send to the page.
#[derive(Debug, Clone, PartialEq)]
pub enum BrowserTransmit {
    /// A JSON text message.
    Text(String),
    /// One binary frame of agent audio.
    Binary(Vec<u8>),
}

/// A message that was dropped, and why. The conversation goes on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BrowserError {
    /// A binary message that is not whole 640-byte frames.
    #[error("audio message of {0} bytes (want a multiple of 640)")]
    WrongSize(usize),
    /// Text that is not a known JSON message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message after `stop`.
    #[error("message after `stop`")]
    AfterStop,
}

/// The protocol state of one browser conversation.
#[derive(Debug, Default)]
pub struct BrowserSession {
    /// `stop` received.
    stopped: bool,
    /// What happened, for `poll_event`.
    events: VecDeque<BrowserEvent>,
    /// Text messages to send before more audio.
    texts: VecDeque<String>,
    /// Outbound frames not yet sent (640 bytes each), in order.
    queue: VecDeque<Vec<u8>>,
    /// Sent frames not yet heard, with the estimated end of their playout,
    /// oldest first (kept to hand back on a barge-in).
    in_flight: VecDeque<(Instant, Vec<u8>)>,
    /// A `clear` to send before anything else.
    clear_pending: bool,
    /// Estimated end of the page's playout buffer.
    buffer_end: Option<Instant>,
    /// Messages dropped as bad input.
    pub dropped: u64,
}

/// Wire shape of text messages from the page.
#[derive(Deserialize)]
struct Msg {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    digit: Option<String>,
}

impl BrowserSession {
    /// A session whose conversation has begun.
    pub fn new() -> Self {
        Self::default()
    }

    /// True after `stop`.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Handles one binary message (microphone audio).
    pub fn handle_binary(&mut self, bytes: &[u8], _now: Instant) -> Result<(), BrowserError> {
        let r = if self.stopped {
            Err(BrowserError::AfterStop)
        } else if bytes.is_empty() || !bytes.len().is_multiple_of(FRAME_BYTES) {
            Err(BrowserError::WrongSize(bytes.len()))
        } else {
            for f in bytes.chunks_exact(FRAME_BYTES) {
                let pcm = f.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                self.events.push_back(BrowserEvent::Audio(pcm));
            }
            Ok(())
        };
        self.count(r)
    }

    /// Handles one text message from the page.
    pub fn handle_text(&mut self, text: &str, _now: Instant) -> Result<(), BrowserError> {
        let r = self.text(text);
        self.count(r)
    }

    /// The next thing that happened, oldest first.
    pub fn poll_event(&mut self) -> Option<BrowserEvent> {
        self.events.pop_front()
    }

    /// Queues 16 kHz agent audio as whole frames (a short last frame is
    /// padded with silence); returns the number of frames.
    pub fn play(&mut self, pcm16k: &[i16]) -> usize {
        let mut n = 0;
        for chunk in pcm16k.chunks(FRAME_SAMPLES) {
            let mut f: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            f.resize(FRAME_BYTES, 0);
            self.queue.push_back(f);
            n += 1;
        }
        n
    }

    /// Queues a transcript line for the page.
    pub fn transcript(&mut self, speaker: &str, text: &str) {
        if !self.stopped {
            self.texts.push_back(serde_json::json!({"type": "transcript", "speaker": speaker, "text": text}).to_string());
        }
    }

    /// Frames queued or sent and not yet heard (as of the last
    /// [`BrowserSession::poll_transmit`]).
    pub fn unplayed(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Frames queued and not yet sent.
    pub fn unsent(&self) -> usize {
        self.queue.len()
    }

    /// Barge-in: stops the agent's audio now. Queues a `clear` (the page
    /// drops what it buffered) and returns every frame not yet heard,
    /// oldest first, for a possible [`BrowserSession::resume`].
    pub fn pause(&mut self, now: Instant) -> Vec<Vec<u8>> {
        self.forget_played(now);
        let mut frames: Vec<Vec<u8>> = self.in_flight.drain(..).map(|(_, f)| f).collect();
        frames.extend(self.queue.drain(..));
        self.buffer_end = Some(now);
        if !self.stopped {
            self.clear_pending = true;
        }
        frames
    }

    /// Puts paused frames back at the head of the queue (a false
    /// interruption).
    pub fn resume(&mut self, frames: Vec<Vec<u8>>) {
        for f in frames.into_iter().rev() {
            self.queue.push_front(f);
        }
    }

    /// The next message to send now: a pending `clear`, then text messages,
    /// then audio frames while the playout lead allows.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<BrowserTransmit> {
        if self.stopped {
            return None;
        }
        self.forget_played(now);
        if self.clear_pending {
            self.clear_pending = false;
            return Some(BrowserTransmit::Text(serde_json::json!({"type": "clear"}).to_string()));
        }
        if let Some(t) = self.texts.pop_front() {
            return Some(BrowserTransmit::Text(t));
        }
        self.queue.front()?;
        let end = self.buffer_end.map_or(now, |e| e.max(now));
        if end > now + LEAD {
            return None;
        }
        let f = self.queue.pop_front()?;
        self.buffer_end = Some(end + FRAME);
        self.in_flight.push_back((end + FRAME, f.clone()));
        Some(BrowserTransmit::Binary(f))
    }

    /// When `poll_transmit` may next have something (a frame waiting for
    /// the playout lead); `None` when nothing waits on time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stopped || self.clear_pending || !self.texts.is_empty() || self.queue.is_empty() {
            return None;
        }
        self.buffer_end.map(|e| e.checked_sub(LEAD).unwrap_or(e))
    }

    fn count(&mut self, r: Result<(), BrowserError>) -> Result<(), BrowserError> {
        if r.is_err() {
            self.dropped += 1;
        }
        r
    }

    fn text(&mut self, text: &str) -> Result<(), BrowserError> {
        if self.stopped {
            return Err(BrowserError::AfterStop);
        }
        let msg: Msg = serde_json::from_str(text).map_err(|e| BrowserError::Malformed(e.to_string()))?;
        match msg.kind.as_str() {
            "stop" => {
                self.stopped = true;
                self.events.push_back(BrowserEvent::Stop);
                Ok(())
            }
            "dtmf" => {
                let d = msg.digit.unwrap_or_default();
                let mut chars = d.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if "0123456789*#ABCD".contains(c.to_ascii_uppercase()) => {
                        self.events.push_back(BrowserEvent::Dtmf(c.to_ascii_uppercase()));
                        Ok(())
                    }
                    _ => Err(BrowserError::Malformed(format!("DTMF digit `{}`", d.chars().take(8).collect::<String>()))),
                }
            }
            other => Err(BrowserError::Malformed(format!("unknown type `{}`", other.chars().take(32).collect::<String>()))),
        }
    }

    /// Drops sent frames whose playout has ended.
    fn forget_played(&mut self, now: Instant) {
        while self.in_flight.front().is_some_and(|(end, _)| *end <= now) {
            self.in_flight.pop_front();
        }
    }
}

/// The control page's microphone as a WebSocket leg's core: PCM16 16 kHz
/// as is, so no codec; the start comes from the URL, not from the wire. A
/// browser call cannot be transferred (the caller is told, the agent goes
/// on) and cannot send DTMF.
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
        self.session.pause(Instant::now())
    }
    fn resume(&mut self, frames: Vec<Vec<u8>>) {
        self.session.resume(frames);
    }
}

impl StreamTransport for BrowserStream {
    const NAME: &'static str = "browser";
    const CODEC: &'static str = "L16/16000";

    fn handle_input(&mut self, input: WsInput, now: Instant) -> Result<(), String> {
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
    fn poll_transmit(&mut self, now: Instant) -> Option<WsOutput> {
        Some(match self.session.poll_transmit(now)? {
            BrowserTransmit::Text(t) => WsOutput::Text(t),
            BrowserTransmit::Binary(b) => WsOutput::Binary(b),
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }
    fn dropped(&self) -> u64 {
        self.session.dropped
    }
    fn on_turn(&mut self, speaker: &str, text: &str) {
        self.session.transcript(speaker, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(v: i16) -> Vec<u8> {
        std::iter::repeat_n(v.to_le_bytes(), FRAME_SAMPLES).flatten().collect()
    }

    #[test]
    fn microphone_frames_become_audio_events() {
        let mut s = BrowserSession::new();
        let now = crate::test_clock::epoch();
        let mut two = frame(7);
        two.extend(frame(-3));
        s.handle_binary(&two, now).unwrap();
        assert_eq!(s.poll_event(), Some(BrowserEvent::Audio(vec![7; FRAME_SAMPLES])));
        assert_eq!(s.poll_event(), Some(BrowserEvent::Audio(vec![-3; FRAME_SAMPLES])));
        assert_eq!(s.poll_event(), None);
        assert_eq!(s.handle_binary(&[0; 100], now), Err(BrowserError::WrongSize(100)));
        assert!(matches!(s.handle_text("{", now), Err(BrowserError::Malformed(_))));
        assert!(matches!(s.handle_text(r#"{"type":"dance"}"#, now), Err(BrowserError::Malformed(_))));
        s.handle_text(r#"{"type":"dtmf","digit":"5"}"#, now).unwrap();
        assert_eq!(s.poll_event(), Some(BrowserEvent::Dtmf('5')));
        s.handle_text(r#"{"type":"stop"}"#, now).unwrap();
        assert_eq!(s.poll_event(), Some(BrowserEvent::Stop));
        assert_eq!(s.handle_binary(&frame(0), now), Err(BrowserError::AfterStop));
        assert_eq!(s.dropped, 4);
    }

    /// Audio goes out in real time, at most `LEAD` ahead; frames count as
    /// heard once their playout time has passed.
    #[test]
    fn agent_audio_is_paced_and_heard_by_the_clock() {
        let mut s = BrowserSession::new();
        let t0 = crate::test_clock::epoch();
        assert_eq!(s.play(&vec![1; FRAME_SAMPLES * 20 - 10]), 20);
        let mut sent = 0;
        while let Some(BrowserTransmit::Binary(f)) = s.poll_transmit(t0) {
            assert_eq!(f.len(), FRAME_BYTES);
            sent += 1;
        }
        assert_eq!(sent, 6, "the lead plus the frame playing now");
        assert_eq!(s.poll_timeout(), Some(t0 + FRAME));
        assert_eq!(s.unplayed(), 20);
        let t1 = t0 + FRAME * 3;
        while s.poll_transmit(t1).is_some() {}
        assert_eq!(s.unplayed(), 17, "three frames played");
        assert_eq!(s.unsent(), 17 - 6);
    }

    /// A barge-in clears the page's buffer first and hands back what was
    /// not heard; resuming puts it back in order.
    #[test]
    fn barge_in_clears_and_hands_back_unheard_frames() {
        let mut s = BrowserSession::new();
        let t0 = crate::test_clock::epoch();
        s.play(&vec![1; FRAME_SAMPLES * 10]);
        s.transcript("agent", "Hello.");
        let Some(BrowserTransmit::Text(t)) = s.poll_transmit(t0) else { panic!("the transcript first") };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v, serde_json::json!({"type": "transcript", "speaker": "agent", "text": "Hello."}));
        while s.poll_transmit(t0).is_some() {}
        let back = s.pause(t0 + FRAME * 2);
        assert_eq!(back.len(), 8);
        assert_eq!(s.poll_transmit(t0 + FRAME * 2), Some(BrowserTransmit::Text(r#"{"type":"clear"}"#.into())));
        assert_eq!(s.poll_transmit(t0 + FRAME * 2), None);
        assert_eq!(s.unplayed(), 0);
        s.resume(back);
        assert_eq!(s.unsent(), 8);
    }
}
