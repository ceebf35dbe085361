//! End to end: a call through Twilio Media Streams. The test plays Twilio:
//! a WebSocket client written from Twilio's "Media Streams - WebSocket
//! Messages" reference (not from skald's code) opens the stream the way
//! Twilio does for `<Connect><Stream>` (signed upgrade, `connected`,
//! `start` with custom parameters, 20 ms `media` in real time, `dtmf`,
//! `stop`), plays skald's `media` back in real time from a playout buffer,
//! echoes each `mark` when the audio before it has played, and on `clear`
//! drops its buffer and echoes the pending marks at once.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "test-auth-token-0123456789abcdef";
const STREAM_PATH: &str = "/api/v1/twilio/media-stream";

/// The example config (voice agent on every number) with Twilio set up.
fn config() -> String {
    example_config().replace("twilio:\n", &format!("twilio:\n  auth_token: {TOKEN}\n  account_sid: {ACCOUNT}\n"))
}

/// Twilio's signature of a request with no POST parameters: base64
/// HMAC-SHA1 of the URL, keyed with the Auth Token.
fn sign(url: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TOKEN.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    B64.encode(mac.finalize().into_bytes())
}

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

/// Twilio's voice webhook for an incoming call to `to`, signed as Twilio
/// documents (URL + parameters sorted by name); returns the `<Stream url>`
/// and the `<Parameter>`s of the TwiML answer.
async fn webhook(skald: &Skald, call_sid: &str, from: &str, to: &str) -> (String, Value) {
    let host = format!("127.0.0.1:{}", skald.http_port);
    let mut params = vec![
        ("AccountSid", ACCOUNT),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", from),
        ("To", to),
    ];
    params.sort();
    let mut signed = format!("https://{host}/api/v1/sip/inbound/webhook");
    for (k, v) in &params {
        signed.push_str(k);
        signed.push_str(v);
    }
    let resp = reqwest::Client::new()
        .post(format!("http://{host}/api/v1/sip/inbound/webhook"))
        .header("X-Twilio-Signature", sign(&signed))
        .header("X-Forwarded-Proto", "https")
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let xml = resp.text().await.unwrap();
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut url, mut custom, mut path) = (String::new(), serde_json::Map::new(), Vec::new());
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                let attr = |k: &str| {
                    e.try_get_attribute(k).unwrap().map(|a| a.unescape_value().unwrap().to_string()).unwrap_or_default()
                };
                match name.as_str() {
                    "Stream" => url = attr("url"),
                    "Parameter" => {
                        custom.insert(attr("name"), Value::String(attr("value")));
                    }
                    _ => {}
                }
                path.push(name);
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert!(path.starts_with(&["Response".into(), "Connect".into(), "Stream".into()]), "{xml}");
    (url, Value::Object(custom))
}

/// One item of Twilio's playout buffer.
enum Play {
    Frame(Vec<u8>),
    Mark(String),
}

/// What the simulated Twilio saw and did.
#[derive(Default)]
struct State {
    /// Caller audio (µ-law) waiting to be sent, one frame per 20 ms.
    to_say: VecDeque<u8>,
    /// Send time of each loud caller frame.
    caller_loud: Vec<Instant>,
    /// skald's audio as played to the caller, with play time.
    heard: Vec<(Instant, Vec<i16>)>,
    /// Playout buffer.
    playout: VecDeque<Play>,
    /// Deepest the buffer got, in frames.
    max_depth: usize,
    /// `media` messages received from skald.
    media_in: usize,
    /// Marks received, in order.
    marks_in: Vec<String>,
    /// Marks echoed after playing, and after a clear.
    marks_played: Vec<String>,
    marks_cleared: Vec<String>,
    /// When each `clear` arrived.
    clears: Vec<Instant>,
    /// Anything skald sent that breaks the protocol.
    violations: Vec<String>,
    /// The socket closed (by skald or after our stop).
    closed: bool,
}

/// A simulated Twilio Media Stream.
struct Twilio {
    state: Arc<Mutex<State>>,
    out: tokio::sync::mpsc::UnboundedSender<String>,
    seq: Arc<Mutex<u64>>,
    /// Closes the socket (the network going away: no `stop`).
    closer: Arc<tokio::sync::Notify>,
}

const SID: &str = "MZ00000000000000000000000000000001";

impl Twilio {
    /// Opens the stream to skald as Twilio would for `<Connect><Stream>`.
    async fn connect(skald: &Skald, call_sid: &str, params: Value) -> Twilio {
        // Twilio reaches skald through a TLS-terminating proxy: it signs the
        // wss:// URL from the TwiML; the proxy forwards the scheme.
        let host = format!("127.0.0.1:{}", skald.http_port);
        let mut req = format!("ws://{host}{STREAM_PATH}").into_client_request().unwrap();
        req.headers_mut().insert("X-Twilio-Signature", sign(&format!("wss://{host}{STREAM_PATH}")).parse().unwrap());
        req.headers_mut().insert("X-Forwarded-Proto", "https".parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.expect("upgrade accepted");
        let (mut sink, mut stream) = ws.split();
        let state = Arc::new(Mutex::new(State::default()));
        let (out, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let seq = Arc::new(Mutex::new(0u64));
        let closer = Arc::new(tokio::sync::Notify::new());
        let close = closer.clone();
        tokio::spawn(async move {
            loop {
                let t = tokio::select! {
                    t = out_rx.recv() => t,
                    _ = close.notified() => None,
                };
                let Some(t) = t else { break };
                if sink.send(Message::Text(t.into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        // Reader: skald → Twilio.
        let st = state.clone();
        let echo = out.clone();
        let sq = seq.clone();
        tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                let Ok(Message::Text(t)) = m else { continue };
                let v: Value = match serde_json::from_str(&t) {
                    Ok(v) => v,
                    Err(e) => {
                        st.lock().unwrap().violations.push(format!("not JSON: {e}"));
                        continue;
                    }
                };
                let mut s = st.lock().unwrap();
                if v["streamSid"] != SID {
                    s.violations.push(format!("wrong streamSid in {v}"));
                }
                match v["event"].as_str() {
                    Some("media") => {
                        s.media_in += 1;
                        match v["media"]["payload"].as_str().map(|p| B64.decode(p)) {
                            Some(Ok(b)) if b.len() == 160 => {
                                s.playout.push_back(Play::Frame(b));
                                let depth = s.playout.iter().filter(|p| matches!(p, Play::Frame(_))).count();
                                s.max_depth = s.max_depth.max(depth);
                            }
                            other => s.violations.push(format!("media payload not 160 bytes of base64: {other:?}")),
                        }
                    }
                    Some("mark") => {
                        let name = v["mark"]["name"].as_str().unwrap_or_default().to_string();
                        s.marks_in.push(name.clone());
                        s.playout.push_back(Play::Mark(name));
                    }
                    Some("clear") => {
                        s.clears.push(Instant::now());
                        // Twilio empties its buffer and sends back the marks in it.
                        let pending: Vec<String> = s
                            .playout
                            .drain(..)
                            .filter_map(|p| match p {
                                Play::Mark(n) => Some(n),
                                Play::Frame(_) => None,
                            })
                            .collect();
                        for n in pending {
                            let _ = echo.send(mark_msg(&sq, &n));
                            s.marks_cleared.push(n);
                        }
                    }
                    other => s.violations.push(format!("unexpected event {other:?}")),
                }
            }
            st.lock().unwrap().closed = true;
        });
        let t = Twilio { state: state.clone(), out: out.clone(), seq: seq.clone(), closer };
        t.send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}));
        let n = t.next_seq();
        t.send(json!({
            "event": "start", "sequenceNumber": n.to_string(), "streamSid": SID,
            "start": {
                "accountSid": "AC0123456789abcdef0123456789abcdef", "streamSid": SID, "callSid": call_sid,
                "tracks": ["inbound"], "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            }
        }));
        // The media clock: one caller frame out and one frame of skald's
        // audio played every 20 ms.
        let (st, tx, sq) = (state, out, seq);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut chunk = 0u64;
            loop {
                tick.tick().await;
                let mut s = st.lock().unwrap();
                if s.closed {
                    break;
                }
                let frame: Vec<u8> = (0..160).map(|_| s.to_say.pop_front().unwrap_or(0xFF)).collect();
                let pcm: Vec<i16> = frame.iter().map(|&b| mulaw_to_linear(b)).collect();
                if is_loud(&pcm) {
                    s.caller_loud.push(Instant::now());
                }
                chunk += 1;
                let n = { let mut q = sq.lock().unwrap(); *q += 1; *q };
                let msg = json!({
                    "event": "media", "sequenceNumber": n.to_string(), "streamSid": SID,
                    "media": {"track": "inbound", "chunk": chunk.to_string(),
                              "timestamp": ((chunk - 1) * 20).to_string(), "payload": B64.encode(&frame)}
                });
                let _ = tx.send(msg.to_string());
                // Play: marks at the head were reached; then one frame.
                let mut played_frame = false;
                while let Some(p) = s.playout.pop_front() {
                    match p {
                        Play::Mark(name) => {
                            let _ = tx.send(mark_msg(&sq, &name));
                            s.marks_played.push(name);
                        }
                        Play::Frame(f) if !played_frame => {
                            s.heard.push((Instant::now(), f.iter().map(|&b| mulaw_to_linear(b)).collect()));
                            played_frame = true;
                        }
                        Play::Frame(f) => {
                            s.playout.push_front(Play::Frame(f));
                            break;
                        }
                    }
                }
            }
        });
        t
    }

    fn next_seq(&self) -> u64 {
        let mut q = self.seq.lock().unwrap();
        *q += 1;
        *q
    }

    fn send(&self, v: Value) {
        let _ = self.out.send(v.to_string());
    }

    fn say(&self, ulaw: &[u8]) {
        self.state.lock().unwrap().to_say.extend(ulaw.iter().copied());
    }

    fn dtmf(&self, digit: &str) {
        let n = self.next_seq();
        self.send(json!({"event": "dtmf", "streamSid": SID, "sequenceNumber": n.to_string(),
                         "dtmf": {"track": "inbound_track", "digit": digit}}));
    }

    fn stop(&self, call_sid: &str) {
        let n = self.next_seq();
        self.send(json!({"event": "stop", "sequenceNumber": n.to_string(), "streamSid": SID,
                         "stop": {"accountSid": "AC0123456789abcdef0123456789abcdef", "callSid": call_sid}}));
    }

    /// The socket goes away without `stop`.
    fn drop_socket(&self) {
        self.closer.notify_one();
    }

    fn heard(&self) -> Vec<(Instant, Vec<i16>)> {
        self.state.lock().unwrap().heard.clone()
    }

    /// Waits until skald's audio was played after `since` and then was
    /// quiet for `quiet`; returns the end of that speech.
    async fn wait_agent_turn(&self, since: Instant, quiet: Duration, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.heard().iter().filter(|(t, f)| *t >= since && is_loud(f)).map(|(t, _)| *t).next_back();
            if let Some(last) = last
                && last.elapsed() >= quiet
            {
                return last;
            }
            assert!(Instant::now() < deadline, "skald did not finish speaking within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until all queued caller audio has been sent.
    async fn said(&self) {
        while !self.state.lock().unwrap().to_say.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn mark_msg(seq: &Mutex<u64>, name: &str) -> String {
    let n = {
        let mut q = seq.lock().unwrap();
        *q += 1;
        *q
    };
    json!({"event": "mark", "sequenceNumber": n.to_string(), "streamSid": SID, "mark": {"name": name}}).to_string()
}

fn turns(detail: &Value) -> Vec<(String, String, bool)> {
    detail["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (t["speaker"].as_str().unwrap().to_string(), t["text"].as_str().unwrap().to_string(), t["interrupted"] == true)
        })
        .collect()
}

/// Waits for the call with this CallSid to be ended; returns its detail.
async fn ended_call(skald: &Skald, call_sid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = skald.calls().into_iter().find(|c| c["twilio_call_sid"] == call_sid && c["state"] == "ended");
        if let Some(c) = found {
            return skald.get_json(&format!("/api/v1/calls/{}", c["id"].as_str().unwrap()));
        }
        assert!(Instant::now() < deadline, "call {call_sid} did not end:\n{}", skald.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole conversation over a Media Stream: greeting, barge-in with
/// `clear`, real speech transcribed, DTMF to the agent, a clean `stop`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_stream_call_talks_barges_in_takes_dtmf_and_stops_cleanly() {
    // The caller's phrases, made before the call (model loading blocks).
    let hold_on = piper_ulaw("Hold on, what are your opening hours?");
    let ids = ["sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0890"];
    let books: Vec<Vec<u8>> = ids.iter().map(|id| librivox_ulaw(id)).collect();
    let skald = Skald::start_with(&config());
    // The live event stream, watched from before the call.
    let mut events_req =
        format!("ws://127.0.0.1:{}/api/v1/events", skald.http_port).into_client_request().unwrap();
    events_req.headers_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
    let (mut events_ws, _) = tokio_tungstenite::connect_async(events_req).await.unwrap();
    let call_sid = "CA11111111111111111111111111111111";
    // Twilio asks the webhook what to do, and connects the stream it names.
    let (url, params) = webhook(&skald, call_sid, "+15557654321", "+15550123").await;
    assert_eq!(url, format!("wss://127.0.0.1:{}{STREAM_PATH}", skald.http_port));
    assert_eq!(params["app"], "front-desk");
    assert_eq!(params["did"], "+15550123");
    assert_eq!(params["direction"], "inbound");
    let tw = Twilio::connect(&skald, call_sid, params).await;

    // The greeting starts; the caller talks over it.
    let t0 = Instant::now();
    while !tw.heard().iter().any(|(_, f)| is_loud(f)) {
        assert!(t0.elapsed() < Duration::from_secs(15), "no greeting:\n{}", skald.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    tw.say(&hold_on);
    let barge = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (speech_start, clear_at) = {
        let s = tw.state.lock().unwrap();
        let start = *s.caller_loud.iter().find(|t| **t >= barge).expect("caller speech sent");
        (start, s.clears.first().copied().expect("skald sent `clear` on barge-in"))
    };
    let after = clear_at.duration_since(speech_start).as_millis() as i64;
    // `clear` must arrive within 200 ms of the caller starting to talk
    // (barge_in_min_ms 80 included).
    eprintln!("clear {after} ms after the caller started talking over the greeting");
    assert!(after <= 200, "clear came {after} ms after the caller started talking");
    // The agent answers the question.
    tw.said().await;
    tw.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20)).await;

    // Real speech (LibriVox) is transcribed.
    for book in &books {
        tw.say(book);
        tw.said().await;
        tw.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(30)).await;
    }

    // A DTMF key reaches the agent: 9 is the opening-hours shortcut.
    tw.dtmf("9");
    let since = Instant::now();
    let end = tw.wait_agent_turn(since, Duration::from_millis(900), Duration::from_secs(20)).await;
    let reply: Vec<_> = tw.heard().into_iter().filter(|(t, _)| *t >= since && *t <= end).collect();
    let reply_text = tokio::task::spawn_blocking(move || transcribe_heard(&reply)).await.unwrap().to_lowercase();
    eprintln!("after DTMF 9 skald said: {reply_text}");
    assert!(reply_text.contains("monday") || reply_text.contains("friday"), "{reply_text}");

    tw.stop(call_sid);
    let detail = ended_call(&skald, call_sid).await;
    {
        let s = tw.state.lock().unwrap();
        assert!(s.violations.is_empty(), "protocol violations: {:?}", s.violations);
    assert!(s.media_in > 200, "skald's speech came back as media ({} frames)", s.media_in);
    assert!(!s.marks_in.is_empty() && !s.marks_played.is_empty(), "marks sent and acknowledged");
    assert!(s.max_depth <= 8, "skald ran {} frames ahead of playout", s.max_depth);
    eprintln!(
        "media in {}, marks {} (played {}, cleared {}), deepest playout buffer {} frames",
        s.media_in,
        s.marks_in.len(),
        s.marks_played.len(),
        s.marks_cleared.len(),
        s.max_depth
    );
    }

    // The live stream told the story: hello, the call answered, every
    // transcript turn, the call ended; `seq` strictly increasing.
    let mut live = Vec::new();
    while let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(500), events_ws.next()).await {
        live.push(serde_json::from_str::<Value>(&t).unwrap());
    }
    assert_eq!(live[0]["type"], "hello");
    assert_eq!(live[0]["schema"], "skald.events.v1");
    let kinds: Vec<String> = live[1..].iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect();
    let states: Vec<&Value> = live[1..].iter().filter(|e| e["kind"] == "call.state").map(|e| &e["data"]["state"]).collect();
    assert_eq!(states.first().map(|s| s.as_str()), Some(Some("answered")), "{kinds:?}");
    assert_eq!(states.last().map(|s| s.as_str()), Some(Some("ended")), "{kinds:?}");
    let turns_live = kinds.iter().filter(|k| *k == "transcript.final").count();
    assert_eq!(turns_live, detail["turns"].as_array().unwrap().len(), "every turn went out live: {kinds:?}");
    assert!(live[1..].windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    assert!(
        live[1..].iter().all(|e| e["call_id"] == detail["id"] || e["kind"].as_str().unwrap().starts_with("twilio.")),
        "one call's events, plus the webhook's: {kinds:?}"
    );
    assert!(kinds.contains(&"twilio.inbound".to_string()), "{kinds:?}");

    assert_eq!(detail["transport"], "twilio-stream");
    assert_eq!(detail["twilio_call_sid"], call_sid);
    assert_eq!(detail["did"], "+15550123");
    assert_eq!(detail["end_reason"], "remote-stop", "{detail:#}");
    assert_eq!(detail["dtmf"], "9");
    let t = turns(&detail);
    eprintln!("turns: {t:#?}");
    // The greeting was cut: its turn holds only what was played.
    let (who, greeting, interrupted) = &t[0];
    assert_eq!(who, "agent");
    assert!(*interrupted, "greeting marked interrupted");
    assert!(greeting.len() < "Thanks for calling Bright Smile Dental. How can I help you today?".len(), "{greeting}");
    assert!(t.iter().any(|(w, x, _)| w == "caller" && x.to_lowercase().contains("hours")), "{t:?}");
    let caller: Vec<&str> = t.iter().filter(|(w, _, _)| w == "caller").map(|(_, x, _)| x.as_str()).collect();
    // A pause inside a sentence may split it into turns: score the turns
    // between the question about hours and the key press together.
    let start = caller.iter().position(|x| x.to_lowercase().contains("hours")).map_or(0, |i| i + 1);
    let end = caller.iter().position(|x| x.starts_with("[DTMF")).unwrap_or(caller.len());
    let said = caller[start..end].join(" ");
    let reference = ids.map(librivox_reference).join(" ");
    let w = wer(&reference, &said);
    eprintln!("LibriVox WER {:.1} % ({said:?})", w * 100.0);
    assert!(w <= 0.15, "real speech transcribed: {said:?} vs {reference:?}");
    let dtmf_at = t.iter().position(|(w, x, _)| w == "caller" && x == "[DTMF 9]").expect("DTMF turn");
    assert!(
        t[dtmf_at..].iter().any(|(w, x, _)| w == "agent" && x.contains("Monday to Friday")),
        "the agent answered the key: {t:?}"
    );
    let (_, metrics) = skald.try_http("GET", "/metrics").unwrap();
    assert!(metrics.contains("skald_barge_ins_total 1") || metrics.contains("skald_barge_ins_total{"), "{metrics}");
}

/// Bad input on one stream is dropped and logged, a stream that dies ends
/// with the reason recorded, and another call is untouched (and ended by
/// the hangup API); an unsigned upgrade is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_stream_ends_cleanly_and_other_calls_go_on() {
    let hours = piper_ulaw("What are your opening hours?");
    let skald = Skald::start_with(&config());
    // Unsigned: 403 before any upgrade.
    let req = format!("ws://127.0.0.1:{}{STREAM_PATH}", skald.http_port).into_client_request().unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("unsigned upgrade accepted: {:?}", other.map(|_| ())),
    }
    let good = Twilio::connect(&skald, "CA22222222222222222222222222222222", json!({"app": "front-desk", "did": "+15550123"})).await;
    let bad = Twilio::connect(&skald, "CA33333333333333333333333333333333", json!({"app": "front-desk", "did": "+15550199"})).await;
    // Garbage, a wrong stream, bad base64 and a short frame: dropped.
    bad.send(json!({"event": "media", "streamSid": "MZnot-this-one", "media": {"payload": B64.encode([0xFFu8; 160])}}));
    bad.send(json!({"event": "media", "streamSid": SID, "media": {"payload": "***"}}));
    bad.send(json!({"event": "media", "streamSid": SID, "media": {"payload": B64.encode([0xFFu8; 80])}}));
    let _ = bad.out.send("{not json".into());
    // Both streams still get their greeting.
    for tw in [&good, &bad] {
        tw.wait_agent_turn(Instant::now() - Duration::from_secs(5), Duration::from_millis(700), Duration::from_secs(20)).await;
    }
    // The bad stream's socket goes away without `stop`.
    bad.drop_socket();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let detail = ended_call(&skald, "CA33333333333333333333333333333333").await;
    assert_eq!(detail["end_reason"], "stream-closed", "{detail:#}");
    let errors = detail["errors"].to_string();
    for what in ["unknown streamSid", "not base64", "80 bytes", "malformed"] {
        assert!(errors.contains(what), "record says `{what}`: {errors}");
    }
    // The good call is still live and hears its agent.
    let live = skald.calls().into_iter().find(|c| c["twilio_call_sid"] == "CA22222222222222222222222222222222").unwrap();
    assert_eq!(live["state"], "answered");
    good.say(&hours);
    good.said().await;
    good.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20)).await;
    // The hangup API ends a stream call as it ends a SIP call: skald closes
    // the socket (Twilio then ends `<Connect>` and the call).
    let id = live["id"].as_str().unwrap();
    let (status, _) = skald.try_http("POST", &format!("/api/v1/calls/{id}/hangup")).unwrap();
    assert_eq!(status, 202);
    let detail = ended_call(&skald, "CA22222222222222222222222222222222").await;
    assert_eq!(detail["end_reason"], "api");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !good.state.lock().unwrap().closed {
        assert!(Instant::now() < deadline, "skald did not close the socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(turns(&detail).iter().any(|(w, x, _)| w == "agent" && x.contains("Monday")), "{detail:#}");
}

/// A mock of Twilio's REST API for "Update a Call": records each request
/// (path, form) and answers 200 with the call, or Twilio's 404 error
/// document while `refuse` is set.
async fn mock_rest() -> (u16, Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>, Arc<std::sync::atomic::AtomicBool>) {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{StatusCode, Uri};
    use axum::response::IntoResponse;
    type Shared = (Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>, Arc<std::sync::atomic::AtomicBool>);
    async fn handle(State((seen, refuse)): State<Shared>, uri: Uri, body: Bytes) -> axum::response::Response {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        seen.lock().unwrap().push((uri.path().to_string(), form));
        let sid = uri.path().rsplit('/').next().unwrap_or_default().trim_end_matches(".json").to_string();
        if refuse.load(std::sync::atomic::Ordering::SeqCst) {
            let e = json!({"code": 20404, "message": format!("The requested resource /Calls/{sid}.json was not found"), "status": 404});
            return (StatusCode::NOT_FOUND, axum::Json(e)).into_response();
        }
        axum::Json(json!({"sid": sid, "status": "in-progress", "direction": "inbound"})).into_response()
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(handle).with_state((seen.clone(), refuse.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen, refuse)
}

/// The agent transfers a Twilio call: skald asks Twilio (REST "Update a
/// Call") to `<Dial><Sip>` the target with the signed context in the URI's
/// headers; Twilio then stops the stream and the call ends `transferred`.
/// When Twilio refuses, the caller is told and the agent goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_asks_twilio_to_dial_the_target_with_the_context() {
    const KEY: &str = "twilio-transfer-context-key-0123";
    let person = piper_ulaw("Can I talk to a person please?");
    let (rest, seen, refuse) = mock_rest().await;
    let yaml = config().replace("twilio:\n", &format!("twilio:\n  api_base_url: http://127.0.0.1:{rest}\n"));
    let skald = Skald::start_with_env(&yaml, &[("SKALD_CONTEXT_KEY", KEY)]);

    // Twilio takes the call to the front desk.
    let call_sid = "CA22222222222222222222222222222222";
    let (_, params) = webhook(&skald, call_sid, "+15557654321", "+15550123").await;
    let tw = Twilio::connect(&skald, call_sid, params).await;
    tw.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20)).await;
    tw.say(&person);
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no REST request:\n{}", skald.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (path, form) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{call_sid}.json"));
    let twiml = form.iter().find(|(k, _)| k == "Twiml").map(|(_, v)| v.clone()).expect("Twiml");
    eprintln!("TwiML: {twiml}");
    let sip = twiml.split("<Sip>").nth(1).and_then(|s| s.split("</Sip>").next()).expect("<Dial><Sip>").replace("&amp;", "&");
    assert!(sip.starts_with("sip:frontdesk@clinic.example?"), "{sip}");
    let value = sip.split(['?', '&']).find_map(|h| h.strip_prefix("X-Skald-Context=")).expect("X-Skald-Context");
    let value = percent_encoding::percent_decode_str(value).decode_utf8().unwrap().to_string();
    let ctx = skald::agent::context::CallContext::decode_signed(&value, KEY.as_bytes()).expect("signed with the shared key");
    assert_eq!(ctx.call_sid.as_deref(), Some(call_sid), "{ctx:?}");
    assert_eq!(ctx.caller.as_deref(), Some("+15557654321"), "{ctx:?}");
    assert_eq!(ctx.intent.as_deref(), Some("person"), "{ctx:?}");
    // Twilio runs the new TwiML: the stream stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tw.stop(call_sid);
    let d = ended_call(&skald, call_sid).await;
    assert_eq!(d["end_reason"], "transferred", "{d:#}");
    let kinds: Vec<&str> = d["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"transfer.started") && kinds.contains(&"transfer.completed"), "{kinds:?}");

    // Twilio refuses the next one: the caller hears so and the agent goes on.
    refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let call_sid = "CA33333333333333333333333333333333";
    let (_, params) = webhook(&skald, call_sid, "+15557654321", "+15550123").await;
    let tw = Twilio::connect(&skald, call_sid, params).await;
    tw.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20)).await;
    tw.say(&person);
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "no REST request:\n{}", skald.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = Instant::now();
    tw.wait_agent_turn(after, Duration::from_millis(900), Duration::from_secs(20)).await;
    tw.stop(call_sid);
    let d = ended_call(&skald, call_sid).await;
    assert_eq!(d["end_reason"], "remote-stop", "{d:#}");
    let failed: Vec<&Value> = d["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "transfer.failed").collect();
    assert_eq!(failed.len(), 1, "{:#}", d["events"]);
    assert!(failed[0]["data"]["why"].as_str().unwrap().contains("404"), "{failed:?}");
    let said: Vec<String> = turns(&d).into_iter().filter(|(w, _, _)| w == "agent").map(|(_, t, _)| t).collect();
    assert!(said.iter().any(|t| t.contains("nobody at the front desk could take your call")), "{said:?}");
}
