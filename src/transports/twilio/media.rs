//! Twilio Media Streams, bidirectional (`<Connect><Stream>`): the sans-IO
//! protocol core of one stream.
//!
//! Source: Twilio docs "Media Streams - WebSocket Messages". Every message
//! is a JSON text frame with an `event`:
//! - from Twilio: `connected`, `start` (streamSid, callSid, accountSid,
//!   tracks, customParameters, mediaFormat `audio/x-mulaw` 8000 Hz mono),
//!   `media` (track, chunk, timestamp in ms, base64 µ-law payload; counters
//!   are strings), `dtmf` (digit), `mark` (a mark we sent has been played,
//!   or cleared), `stop`;
//! - to Twilio: `media` (base64 µ-law), `mark` (echoed back by Twilio when
//!   the audio before it has played) and `clear` (drop the buffered audio).
//!
//! ## Run loop
//! Time is an argument; the session never reads the clock or touches a
//! socket. The driver feeds each text frame to
//! [`MediaStreamSession::handle_text`], then drains
//! [`MediaStreamSession::poll_event`] (what happened: start, caller audio,
//! DTMF, marks played, stop) and [`MediaStreamSession::poll_transmit`]
//! (frames to send now) until both are empty, and sleeps until
//! [`MediaStreamSession::poll_timeout`] or the next input.
//!
//! ## Outbound pacing and marks
//! Agent audio is queued as whole 20 ms µ-law frames ([`MediaStreamSession::play`]),
//! each call followed by a `mark` (also one every [`MARK_EVERY`] frames, so
//! what was heard is known to that grain). Frames are released on the media
//! clock, at most [`LEAD`] ahead of the estimated end of Twilio's playout
//! buffer: real time, never a burst. Twilio echoes each mark once the audio
//! before it has played; the frames up to the last echoed mark are the
//! ones the caller heard. [`MediaStreamSession::pause`] (a barge-in) sends
//! `clear` and hands back every frame not yet acknowledged as played (the
//! unsent ones and the ones Twilio just dropped); the marks cleared with
//! them are still echoed by Twilio and are then ignored.
//!
//! ## Bad input
//! Never fatal: a frame that is not JSON, media before `start`, an unknown
//! streamSid, bad base64 or a payload of the wrong size is counted, reported
//! as [`StreamError`] and dropped; the stream lives on.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// One frame: 20 ms of µ-law at 8 kHz = 160 bytes.
pub const FRAME_BYTES: usize = 160;
/// Duration of one frame.
pub const FRAME: Duration = Duration::from_millis(20);
/// How far outbound audio may run ahead of Twilio's playout (5 frames).
pub const LEAD: Duration = Duration::from_millis(100);
/// A mark at least every this many frames (200 ms).
pub const MARK_EVERY: usize = 10;
/// Longest gap in the caller's audio (by media timestamps) filled with
/// silence; a longer jump is treated as a restart of the clock.
const MAX_GAP_FRAMES: u64 = 50;

/// What the stream told us.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The stream started: who and what.
    Start(StreamStart),
    /// One 20 ms frame of the caller's audio (160 bytes µ-law); `None` for a
    /// frame missing from the sequence (by `timestamp`), to be played as
    /// silence.
    Audio(Option<Vec<u8>>),
    /// A DTMF digit from the caller.
    Dtmf(char),
    /// Twilio played our audio up to a mark: `frames_played` frames (since
    /// the stream began) have been heard.
    Played {
        /// Frames acknowledged as played, in all.
        frames_played: u64,
    },
    /// Twilio ended the stream (the call hung up or the TwiML moved on).
    Stop,
}

/// The `start` message's metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamStart {
    /// `MZ…`.
    pub stream_sid: String,
    /// `CA…`.
    pub call_sid: String,
    /// `AC…`.
    pub account_sid: String,
    /// `<Parameter>`s of the TwiML.
    pub custom_parameters: BTreeMap<String, String>,
    /// Tracks announced (`inbound`, `outbound`).
    pub tracks: Vec<String>,
}

/// A message that was dropped, and why. The stream goes on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StreamError {
    /// Not JSON or not a Media Streams message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// An `event` this core does not know.
    #[error("unknown event `{0}`")]
    UnknownEvent(String),
    /// `media`/`dtmf`/`mark` before `start`.
    #[error("`{0}` before `start`")]
    BeforeStart(&'static str),
    /// A second `start`.
    #[error("a second `start`")]
    DuplicateStart,
    /// A streamSid that is not this stream's.
    #[error("unknown streamSid `{0}`")]
    UnknownStream(String),
    /// The payload is not base64.
    #[error("media payload is not base64")]
    BadBase64,
    /// A media payload that is not one 20 ms frame.
    #[error("media payload of {0} bytes (want 160)")]
    WrongSize(usize),
    /// A media format other than µ-law 8 kHz mono.
    #[error("unsupported media format {0}")]
    UnsupportedFormat(String),
    /// A message after `stop`.
    #[error("message after `stop`")]
    AfterStop,
}

/// One queued outbound item.
#[derive(Debug)]
enum Out {
    /// A 160-byte µ-law frame.
    Frame(Vec<u8>),
    /// A mark after the frames before it.
    Mark,
}

/// A mark sent and not yet echoed.
#[derive(Debug)]
struct SentMark {
    /// Its name.
    name: String,
    /// Frames sent before it, in all.
    frames: u64,
}

/// The protocol state of one Media Stream.
#[derive(Debug, Default)]
pub struct MediaStreamSession {
    /// Set by `start`.
    start: Option<StreamStart>,
    /// `stop` received.
    stopped: bool,
    /// Media timestamp (ms) expected next, for gap filling.
    next_ts: Option<u64>,
    /// What happened, for `poll_event`.
    events: VecDeque<StreamEvent>,
    /// Outbound frames and marks not yet sent, in order.
    queue: VecDeque<Out>,
    /// Sent frames not yet acknowledged as played (kept to hand back on a
    /// barge-in), oldest first.
    unacked: VecDeque<Vec<u8>>,
    /// Marks sent and not yet echoed, oldest first.
    marks: VecDeque<SentMark>,
    /// Names of marks whose audio was cleared; their echoes are ignored.
    cleared: HashSet<String>,
    /// A `clear` to send before anything else.
    clear_pending: bool,
    /// Frames queued since the last mark.
    since_mark: usize,
    /// Frames sent in all.
    frames_sent: u64,
    /// Frames acknowledged as played in all.
    frames_played: u64,
    /// Next mark number.
    next_mark: u64,
    /// Estimated end of Twilio's playout buffer.
    buffer_end: Option<Instant>,
    /// Messages dropped as bad input.
    pub dropped: u64,
}

/// Wire shape of messages from Twilio (only the fields used).
#[derive(Deserialize)]
struct Msg {
    event: String,
    #[serde(rename = "streamSid")]
    stream_sid: Option<String>,
    start: Option<StartBody>,
    media: Option<MediaBody>,
    dtmf: Option<DtmfBody>,
    mark: Option<MarkBody>,
}

#[derive(Deserialize)]
struct StartBody {
    #[serde(rename = "streamSid")]
    stream_sid: String,
    #[serde(rename = "callSid", default)]
    call_sid: String,
    #[serde(rename = "accountSid", default)]
    account_sid: String,
    #[serde(default)]
    tracks: Vec<String>,
    #[serde(rename = "customParameters", default)]
    custom_parameters: BTreeMap<String, String>,
    #[serde(rename = "mediaFormat")]
    media_format: Option<MediaFormat>,
}

#[derive(Deserialize)]
struct MediaFormat {
    encoding: String,
    #[serde(rename = "sampleRate")]
    sample_rate: u32,
    channels: u32,
}

#[derive(Deserialize)]
struct MediaBody {
    #[serde(default)]
    track: Option<String>,
    /// Milliseconds since the stream started, as a string.
    #[serde(default)]
    timestamp: Option<String>,
    payload: String,
}

#[derive(Deserialize)]
struct DtmfBody {
    digit: String,
}

#[derive(Deserialize)]
struct MarkBody {
    name: String,
}

impl MediaStreamSession {
    /// A session waiting for `connected`/`start`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `start` metadata, once received.
    pub fn started(&self) -> Option<&StreamStart> {
        self.start.as_ref()
    }

    /// True after `stop`.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Handles one text frame from Twilio. Errors describe a dropped
    /// message; the session is unchanged by it and the stream goes on.
    pub fn handle_text(&mut self, text: &str, _now: Instant) -> Result<(), StreamError> {
        let r = self.handle(text);
        if r.is_err() {
            self.dropped += 1;
        }
        r
    }

    /// The next thing that happened, oldest first.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// Queues 20 ms µ-law frames of agent audio (each [`FRAME_BYTES`]; a
    /// short last frame is padded with µ-law silence), followed by a mark.
    pub fn play(&mut self, frames: impl IntoIterator<Item = Vec<u8>>) {
        let mut any = false;
        for mut f in frames {
            f.resize(FRAME_BYTES, 0xFF);
            self.queue.push_back(Out::Frame(f));
            any = true;
            self.since_mark += 1;
            if self.since_mark >= MARK_EVERY {
                self.queue.push_back(Out::Mark);
                self.since_mark = 0;
            }
        }
        if any && self.since_mark > 0 {
            self.queue.push_back(Out::Mark);
            self.since_mark = 0;
        }
    }

    /// Frames queued or sent and not yet acknowledged as played.
    pub fn unplayed(&self) -> usize {
        self.queued_frames() + self.unacked.len()
    }

    /// Frames queued and not yet sent.
    pub fn unsent(&self) -> usize {
        self.queued_frames()
    }

    /// Frames acknowledged as played, in all.
    pub fn frames_played(&self) -> u64 {
        self.frames_played
    }

    /// Barge-in: stops the agent's audio now. Queues a `clear` (Twilio drops
    /// what it buffered) and returns every frame not acknowledged as played,
    /// oldest first, for a possible [`MediaStreamSession::resume`].
    pub fn pause(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut frames: Vec<Vec<u8>> = self.unacked.drain(..).collect();
        frames.extend(self.queue.drain(..).filter_map(|o| match o {
            Out::Frame(f) => Some(f),
            Out::Mark => None,
        }));
        self.since_mark = 0;
        for m in self.marks.drain(..) {
            self.cleared.insert(m.name);
        }
        self.frames_sent = self.frames_played;
        self.buffer_end = Some(now);
        if self.start.is_some() && !self.stopped {
            self.clear_pending = true;
        }
        frames
    }

    /// Puts paused frames back at the head of the queue (a false
    /// interruption).
    pub fn resume(&mut self, frames: Vec<Vec<u8>>) {
        let n = frames.len();
        let mut head: VecDeque<Out> = frames.into_iter().map(Out::Frame).collect();
        if n > 0 {
            head.push_back(Out::Mark);
        }
        head.extend(self.queue.drain(..));
        self.queue = head;
    }

    /// The next message to send now, as JSON text: a pending `clear`, then
    /// queued frames and marks while the playout lead allows.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<String> {
        let sid = self.start.as_ref()?.stream_sid.clone();
        if self.stopped {
            return None;
        }
        if self.clear_pending {
            self.clear_pending = false;
            return Some(serde_json::json!({"event": "clear", "streamSid": sid}).to_string());
        }
        match self.queue.front()? {
            Out::Mark => {
                self.queue.pop_front();
                self.next_mark += 1;
                let name = format!("skald-{}", self.next_mark);
                self.marks.push_back(SentMark { name: name.clone(), frames: self.frames_sent });
                Some(serde_json::json!({"event": "mark", "streamSid": sid, "mark": {"name": name}}).to_string())
            }
            Out::Frame(_) => {
                let end = self.buffer_end.map_or(now, |e| e.max(now));
                if end > now + LEAD {
                    return None;
                }
                let Some(Out::Frame(f)) = self.queue.pop_front() else { return None };
                self.buffer_end = Some(end + FRAME);
                self.frames_sent += 1;
                let payload = B64.encode(&f);
                self.unacked.push_back(f);
                Some(
                    serde_json::json!({"event": "media", "streamSid": sid, "media": {"payload": payload}})
                        .to_string(),
                )
            }
        }
    }

    /// When `poll_transmit` may next have something (a frame waiting for
    /// the playout lead); `None` when nothing waits on time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.start.is_none() || self.stopped || self.clear_pending {
            return None;
        }
        match self.queue.front()? {
            Out::Frame(_) => self.buffer_end.map(|e| e.checked_sub(LEAD).unwrap_or(e)),
            Out::Mark => None,
        }
    }

    fn queued_frames(&self) -> usize {
        self.queue.iter().filter(|o| matches!(o, Out::Frame(_))).count()
    }

    fn handle(&mut self, text: &str) -> Result<(), StreamError> {
        let msg: Msg = serde_json::from_str(text).map_err(|e| StreamError::Malformed(e.to_string()))?;
        if self.stopped {
            return Err(StreamError::AfterStop);
        }
        match msg.event.as_str() {
            "connected" => Ok(()),
            "start" => self.on_start(msg),
            "media" => self.on_media(msg),
            "dtmf" => {
                self.check_sid("dtmf", msg.stream_sid.as_deref())?;
                let d = msg.dtmf.ok_or_else(|| StreamError::Malformed("dtmf without `dtmf`".into()))?;
                let mut chars = d.digit.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if "0123456789*#ABCD".contains(c.to_ascii_uppercase()) => {
                        self.events.push_back(StreamEvent::Dtmf(c.to_ascii_uppercase()));
                        Ok(())
                    }
                    _ => Err(StreamError::Malformed(format!("DTMF digit `{}`", d.digit))),
                }
            }
            "mark" => {
                self.check_sid("mark", msg.stream_sid.as_deref())?;
                let m = msg.mark.ok_or_else(|| StreamError::Malformed("mark without `mark`".into()))?;
                self.on_mark(&m.name);
                Ok(())
            }
            "stop" => {
                self.check_sid("stop", msg.stream_sid.as_deref())?;
                self.stopped = true;
                self.events.push_back(StreamEvent::Stop);
                Ok(())
            }
            other => Err(StreamError::UnknownEvent(other.chars().take(32).collect())),
        }
    }

    fn on_start(&mut self, msg: Msg) -> Result<(), StreamError> {
        if self.start.is_some() {
            return Err(StreamError::DuplicateStart);
        }
        let s = msg.start.ok_or_else(|| StreamError::Malformed("start without `start`".into()))?;
        if let Some(f) = &s.media_format
            && (f.encoding != "audio/x-mulaw" || f.sample_rate != 8000 || f.channels != 1)
        {
            return Err(StreamError::UnsupportedFormat(format!("{} {} Hz x{}", f.encoding, f.sample_rate, f.channels)));
        }
        let start = StreamStart {
            stream_sid: s.stream_sid,
            call_sid: s.call_sid,
            account_sid: s.account_sid,
            custom_parameters: s.custom_parameters,
            tracks: s.tracks,
        };
        self.start = Some(start.clone());
        self.events.push_back(StreamEvent::Start(start));
        Ok(())
    }

    fn on_media(&mut self, msg: Msg) -> Result<(), StreamError> {
        self.check_sid("media", msg.stream_sid.as_deref())?;
        let m = msg.media.ok_or_else(|| StreamError::Malformed("media without `media`".into()))?;
        if m.track.as_deref().is_some_and(|t| t != "inbound" && t != "inbound_track") {
            return Ok(()); // only the caller's track is ours to hear
        }
        let bytes = B64.decode(m.payload.as_bytes()).map_err(|_| StreamError::BadBase64)?;
        if bytes.len() != FRAME_BYTES {
            return Err(StreamError::WrongSize(bytes.len()));
        }
        let ts = m.timestamp.as_deref().and_then(|t| t.parse::<u64>().ok());
        if let (Some(ts), Some(expected)) = (ts, self.next_ts) {
            let frame_ms = FRAME.as_millis() as u64;
            let missing = ts.saturating_sub(expected) / frame_ms;
            if (1..=MAX_GAP_FRAMES).contains(&missing) {
                for _ in 0..missing {
                    self.events.push_back(StreamEvent::Audio(None));
                }
            }
        }
        if let Some(ts) = ts {
            self.next_ts = Some(ts + FRAME.as_millis() as u64);
        }
        self.events.push_back(StreamEvent::Audio(Some(bytes)));
        Ok(())
    }

    fn on_mark(&mut self, name: &str) {
        if self.cleared.remove(name) {
            return;
        }
        let Some(pos) = self.marks.iter().position(|m| m.name == name) else {
            return;
        };
        let mark = self.marks.drain(..=pos).next_back().expect("pos is in range");
        let newly = mark.frames.saturating_sub(self.frames_played);
        for _ in 0..newly {
            self.unacked.pop_front();
        }
        self.frames_played = self.frames_played.max(mark.frames);
        self.events.push_back(StreamEvent::Played { frames_played: self.frames_played });
    }

    fn check_sid(&self, what: &'static str, sid: Option<&str>) -> Result<(), StreamError> {
        let start = self.start.as_ref().ok_or(StreamError::BeforeStart(what))?;
        match sid {
            Some(s) if s != start.stream_sid => Err(StreamError::UnknownStream(s.chars().take(64).collect())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "tests/media.rs"]
mod tests;
