//! The Twilio Media Streams edge of the simulator: it connects to a
//! skald's Media Streams WebSocket as Twilio does for `<Connect><Stream>`
//! and plays the caller's side of the stream.
//!
//! Written from Twilio's "Media Streams - WebSocket Messages" reference:
//! the upgrade carries `X-Twilio-Signature` (HMAC-SHA1 of the URL with the
//! account's auth token, when one is given); then `connected`, `start`
//! (streamSid, callSid, accountSid, tracks, customParameters, mediaFormat
//! `audio/x-mulaw` 8000 Hz mono), one `media` message per 20 ms (base64
//! µ-law, with sequenceNumber, chunk and timestamp as strings), and `stop`
//! when the caller hangs up. skald's `media` goes into a playout buffer
//! played one frame per 20 ms; each `mark` is echoed when the audio before
//! it has played; `clear` empties the buffer and echoes its marks at once.
//! skald closing the socket is the agent hanging up.
//!
//! [`TwilioPeer`] is the sans-IO protocol core (messages in and out, the
//! playout buffer); [`run`] is the IO loop on the media clock.

use super::SimError;
use super::caller::{Action, Caller, CallLog, EndCause};
use crate::rtp::codec::frames::G711Frames;
use crate::rtp::codec::g711::Law;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// One 20 ms µ-law frame, bytes.
pub const FRAME_BYTES: usize = 160;
/// µ-law silence.
const SILENCE: u8 = 0xFF;

/// How the simulator reaches the stream.
#[derive(Debug, Clone)]
pub struct TwilioOptions {
    /// `ws://` or `wss://` URL of skald's Media Streams endpoint.
    pub url: String,
    /// Auth token to sign the upgrade with (`TWILIO_AUTH_TOKEN`).
    pub auth_token: Option<String>,
    /// Account SID in `start` (`TWILIO_ACCOUNT_SID`, else a placeholder).
    pub account_sid: String,
    /// `customParameters` of `start`.
    pub parameters: BTreeMap<String, String>,
}

/// One item of the playout buffer.
#[derive(Debug, Clone, PartialEq)]
enum Play {
    /// A frame of skald's audio.
    Frame(Vec<u8>),
    /// A mark to echo once the frames before it have played.
    Mark(String),
}

/// The caller's side of one Media Stream, without IO.
#[derive(Debug)]
pub struct TwilioPeer {
    /// `MZ…`.
    stream_sid: String,
    /// `CA…`.
    call_sid: String,
    /// `AC…`.
    account_sid: String,
    /// Last `sequenceNumber` sent.
    seq: u64,
    /// Media chunks sent.
    chunk: u64,
    /// skald's audio and marks, in order.
    playout: VecDeque<Play>,
    /// Messages from skald that break the protocol (for the log).
    pub violations: Vec<String>,
}

impl TwilioPeer {
    /// A stream with fresh random SIDs.
    pub fn new(account_sid: &str) -> TwilioPeer {
        let hex = || format!("{:032x}", rand::random::<u128>());
        TwilioPeer {
            stream_sid: format!("MZ{}", hex()),
            call_sid: format!("CA{}", hex()),
            account_sid: account_sid.to_string(),
            seq: 0,
            chunk: 0,
            playout: VecDeque::new(),
            violations: Vec::new(),
        }
    }

    /// The call's SID.
    pub fn call_sid(&self) -> &str {
        &self.call_sid
    }

    /// `connected`, then `start` with `parameters`.
    pub fn opening(&mut self, parameters: &BTreeMap<String, String>) -> Vec<String> {
        let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        let seq = self.next_seq();
        let start = json!({
            "event": "start", "sequenceNumber": seq, "streamSid": self.stream_sid,
            "start": {
                "accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
                "tracks": ["inbound"], "customParameters": parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            }
        });
        vec![connected.to_string(), start.to_string()]
    }

    /// One `media` message with the caller's 160-byte frame.
    pub fn media(&mut self, frame: &[u8]) -> String {
        self.chunk += 1;
        let seq = self.next_seq();
        json!({
            "event": "media", "sequenceNumber": seq, "streamSid": self.stream_sid,
            "media": {"track": "inbound", "chunk": self.chunk.to_string(),
                      "timestamp": ((self.chunk - 1) * 20).to_string(), "payload": B64.encode(frame)}
        })
        .to_string()
    }

    /// `stop` (the caller hung up).
    pub fn stop(&mut self) -> String {
        let seq = self.next_seq();
        json!({"event": "stop", "sequenceNumber": seq, "streamSid": self.stream_sid,
               "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
        .to_string()
    }

    /// A message from skald; returns the messages to send at once (marks
    /// echoed on `clear`).
    pub fn handle_text(&mut self, text: &str) -> Vec<String> {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.violations.push(format!("not JSON: {e}"));
                return Vec::new();
            }
        };
        match v["event"].as_str() {
            Some("media") => match v["media"]["payload"].as_str().map(|p| B64.decode(p)) {
                Some(Ok(b)) if b.len() == FRAME_BYTES => self.playout.push_back(Play::Frame(b)),
                other => self.violations.push(format!("media payload is not 160 bytes of base64: {other:?}")),
            },
            Some("mark") => {
                let name = v["mark"]["name"].as_str().unwrap_or_default().to_string();
                self.playout.push_back(Play::Mark(name));
            }
            Some("clear") => {
                let marks: Vec<String> = self
                    .playout
                    .drain(..)
                    .filter_map(|p| match p {
                        Play::Mark(n) => Some(n),
                        Play::Frame(_) => None,
                    })
                    .collect();
                return marks.iter().map(|n| self.mark(n)).collect();
            }
            other => self.violations.push(format!("unexpected event {other:?}")),
        }
        Vec::new()
    }

    /// One 20 ms tick of playout: the frame heard now (none: silence) and
    /// the marks reached (to echo).
    pub fn play_tick(&mut self) -> (Option<Vec<u8>>, Vec<String>) {
        let mut marks = Vec::new();
        let mut frame = None;
        while let Some(p) = self.playout.pop_front() {
            match p {
                Play::Mark(n) => marks.push(self.mark(&n)),
                Play::Frame(f) if frame.is_none() => frame = Some(f),
                Play::Frame(f) => {
                    self.playout.push_front(Play::Frame(f));
                    break;
                }
            }
        }
        // Marks right behind the frame just played are reached too.
        while let Some(Play::Mark(_)) = self.playout.front() {
            if let Some(Play::Mark(n)) = self.playout.pop_front() {
                marks.push(self.mark(&n));
            }
        }
        (frame, marks)
    }

    /// Frames waiting to be played.
    pub fn buffered(&self) -> usize {
        self.playout.iter().filter(|p| matches!(p, Play::Frame(_))).count()
    }

    fn mark(&mut self, name: &str) -> String {
        let seq = self.next_seq();
        json!({"event": "mark", "sequenceNumber": seq, "streamSid": self.stream_sid, "mark": {"name": name}}).to_string()
    }

    fn next_seq(&mut self) -> String {
        self.seq += 1;
        self.seq.to_string()
    }
}

/// The two halves of an open Media Stream socket.
pub type StreamSocket = (
    futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, Message>,
    futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>,
);

/// Opens the Media Stream WebSocket at `o.url` as Twilio does, the upgrade
/// signed with `o.auth_token` when given. Errors: the URL is unusable, the
/// connection is refused, the upgrade is refused (e.g. 403 for a bad
/// signature).
pub async fn connect(o: &TwilioOptions) -> Result<StreamSocket, SimError> {
    let mut req = o
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| SimError::Usage(format!("--twilio-url {}: {e}", o.url)))?;
    if let Some(token) = o.auth_token.as_deref().filter(|t| !t.is_empty()) {
        let sig = crate::transports::twilio::signature::expected_signature(&o.url, &[], token);
        let value = sig.parse().map_err(|_| SimError::Usage("the signature is not a header value".into()))?;
        req.headers_mut().insert("X-Twilio-Signature", value);
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await.map_err(|e| {
        use tokio_tungstenite::tungstenite::Error;
        let why = match e {
            Error::Http(resp) => format!("the upgrade was refused: HTTP {}", resp.status()),
            other => other.to_string(),
        };
        SimError::Connect(format!("cannot open the Media Stream at {}: {why}", o.url))
    })?;
    Ok(ws.split())
}

/// Opens the stream and runs `caller` on it; returns its log. Errors: as
/// [`connect`].
pub async fn run(o: &TwilioOptions, mut caller: Caller) -> Result<CallLog, SimError> {
    let (mut sink, mut stream) = connect(o).await?;
    let mut peer = TwilioPeer::new(&o.account_sid);
    for m in peer.opening(&o.parameters) {
        sink.send(Message::Text(m.into())).await.map_err(|e| SimError::Connect(e.to_string()))?;
    }
    tracing::info!(call_sid = peer.call_sid(), "media stream open");
    let mut codec = G711Frames::new(Law::Mu, 20);
    let mut out: VecDeque<Vec<u8>> = VecDeque::new();
    let mut pcm = Vec::new();
    caller.handle_answered(Instant::now().into_std());
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let ended: (EndCause, String) = loop {
        let deadline = caller.poll_timeout().map(Instant::from_std);
        let mut send = Vec::new();
        tokio::select! {
            _ = tick.tick() => {
                let frame = out.pop_front().unwrap_or_else(|| vec![SILENCE; FRAME_BYTES]);
                send.push(peer.media(&frame));
                let (heard, marks) = peer.play_tick();
                send.extend(marks);
                codec.decode(heard.as_deref(), &mut pcm);
                caller.handle_audio(&pcm, Instant::now().into_std());
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => send.extend(peer.handle_text(&t)),
                Some(Ok(Message::Close(_))) | None => break (EndCause::AgentHangup, "skald closed the stream".into()),
                Some(Err(e)) => break (EndCause::Other, format!("stream error: {e}")),
                Some(Ok(_)) => {}
            },
            _ = sleep_until(deadline) => caller.handle_timeout(Instant::now().into_std()),
        }
        let mut hangup = None;
        while let Some(a) = caller.poll_action() {
            match a {
                Action::Play(audio) => {
                    codec.encode(&audio, |f| out.push_back(f));
                }
                Action::Hangup(reason) => hangup = Some(reason),
            }
        }
        for m in send {
            if sink.send(Message::Text(m.into())).await.is_err() {
                break;
            }
        }
        if let Some(reason) = hangup {
            let _ = sink.send(Message::Text(peer.stop().into())).await;
            let _ = sink.close().await;
            break (EndCause::CallerHangup, reason);
        }
    };
    if !peer.violations.is_empty() {
        tracing::warn!(violations = ?peer.violations, "skald's messages broke the Media Streams protocol");
    }
    caller.handle_ended(ended.0, &ended.1, Instant::now().into_std());
    Ok(caller.into_log())
}

/// Sleeps until `at`; forever when `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(m: &str) -> Value {
        serde_json::from_str(m).unwrap()
    }

    #[test]
    fn the_stream_opens_with_connected_and_start_as_twilio_sends_them() {
        let mut p = TwilioPeer::new("AC00");
        let params = BTreeMap::from([("did".to_string(), "+15550123".to_string())]);
        let open = p.opening(&params);
        assert_eq!(event(&open[0])["event"], "connected");
        let start = event(&open[1]);
        assert_eq!(start["event"], "start");
        assert_eq!(start["sequenceNumber"], "1");
        assert_eq!(start["start"]["mediaFormat"]["encoding"], "audio/x-mulaw");
        assert_eq!(start["start"]["mediaFormat"]["sampleRate"], 8000);
        assert_eq!(start["start"]["customParameters"]["did"], "+15550123");
        assert!(start["start"]["callSid"].as_str().unwrap().starts_with("CA"));
        let m = event(&p.media(&[0xFF; 160]));
        assert_eq!(m["sequenceNumber"], "2");
        assert_eq!(m["media"]["chunk"], "1");
        assert_eq!(m["media"]["timestamp"], "0");
        let m = event(&p.media(&[0xFF; 160]));
        assert_eq!(m["media"]["timestamp"], "20");
        assert_eq!(B64.decode(m["media"]["payload"].as_str().unwrap()).unwrap().len(), 160);
        assert_eq!(event(&p.stop())["event"], "stop");
    }

    #[test]
    fn marks_are_echoed_after_their_audio_and_at_once_on_clear() {
        let mut p = TwilioPeer::new("AC00");
        let media = |b: u8| json!({"event": "media", "media": {"payload": B64.encode([b; 160])}}).to_string();
        let mark = |n: &str| json!({"event": "mark", "mark": {"name": n}}).to_string();
        for m in [media(1), media(2), mark("a"), media(3), mark("b")] {
            assert!(p.handle_text(&m).is_empty());
        }
        let (f, marks) = p.play_tick();
        assert_eq!(f.unwrap()[0], 1);
        assert!(marks.is_empty());
        let (f, marks) = p.play_tick();
        assert_eq!(f.unwrap()[0], 2);
        assert_eq!(marks.len(), 1, "the mark right after the frame just played");
        assert_eq!(event(&marks[0])["mark"]["name"], "a");
        let echoed = p.handle_text(&json!({"event": "clear"}).to_string());
        assert_eq!(echoed.len(), 1);
        assert_eq!(event(&echoed[0])["mark"]["name"], "b");
        assert_eq!(p.buffered(), 0);
        assert_eq!(p.play_tick(), (None, Vec::new()));
        p.handle_text("not json");
        p.handle_text(&json!({"event": "media", "media": {"payload": "AAAA"}}).to_string());
        assert_eq!(p.violations.len(), 2);
    }
}
