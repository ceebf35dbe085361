//! The Media Streams core in virtual time: messages in, events and wire
//! messages out (no sockets, no clock).

use super::*;
use serde_json::Value;

const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";

fn start_msg() -> String {
    serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": SID,
        "start": {
            "accountSid": "AC123", "streamSid": SID, "callSid": "CA456",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"app": "front-desk", "did": "+15550100"}
        }
    })
    .to_string()
}

fn media_msg(seq: u32, ts: u64, payload: &[u8]) -> String {
    serde_json::json!({
        "event": "media", "sequenceNumber": seq.to_string(), "streamSid": SID,
        "media": {"track": "inbound", "chunk": seq.to_string(), "timestamp": ts.to_string(),
                  "payload": B64.encode(payload)}
    })
    .to_string()
}

fn mark_msg(name: &str) -> String {
    serde_json::json!({"event": "mark", "sequenceNumber": "9", "streamSid": SID, "mark": {"name": name}}).to_string()
}

fn started(t0: Instant) -> MediaStreamSession {
    let mut s = MediaStreamSession::new();
    s.handle_text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#, t0).unwrap();
    s.handle_text(&start_msg(), t0).unwrap();
    assert!(matches!(s.poll_event(), Some(StreamEvent::Start(_))));
    s
}

/// Drains every message sendable at `now`, parsed.
fn drain(s: &mut MediaStreamSession, now: Instant) -> Vec<Value> {
    std::iter::from_fn(|| s.poll_transmit(now)).map(|t| serde_json::from_str(&t).unwrap()).collect()
}

fn frames(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![i as u8; FRAME_BYTES]).collect()
}

#[test]
fn start_carries_call_and_custom_parameters() {
    let t0 = crate::test_clock::epoch();
    let mut s = MediaStreamSession::new();
    s.handle_text(&start_msg(), t0).unwrap();
    let Some(StreamEvent::Start(st)) = s.poll_event() else { panic!("no start") };
    assert_eq!(st.stream_sid, SID);
    assert_eq!(st.call_sid, "CA456");
    assert_eq!(st.account_sid, "AC123");
    assert_eq!(st.custom_parameters["app"], "front-desk");
    assert_eq!(st.custom_parameters["did"], "+15550100");
    assert_eq!(s.handle_text(&start_msg(), t0), Err(StreamError::DuplicateStart));
}

#[test]
fn bad_input_is_dropped_and_the_stream_lives_on() {
    let t0 = crate::test_clock::epoch();
    let mut s = MediaStreamSession::new();
    let frame = [0x55u8; FRAME_BYTES];
    assert_eq!(s.handle_text(&media_msg(1, 0, &frame), t0), Err(StreamError::BeforeStart("media")));
    assert!(matches!(s.handle_text("not json", t0), Err(StreamError::Malformed(_))));
    s.handle_text(&start_msg(), t0).unwrap();
    s.poll_event();
    let other = media_msg(2, 0, &frame).replace(SID, "MZother");
    assert!(matches!(s.handle_text(&other, t0), Err(StreamError::UnknownStream(_))));
    let bad_b64 = media_msg(3, 0, &frame).replace(&B64.encode(frame), "!!!not base64!!!");
    assert_eq!(s.handle_text(&bad_b64, t0), Err(StreamError::BadBase64));
    assert_eq!(s.handle_text(&media_msg(4, 0, &[0x55; 100]), t0), Err(StreamError::WrongSize(100)));
    assert!(matches!(s.handle_text(r#"{"event":"bogus"}"#, t0), Err(StreamError::UnknownEvent(_))));
    assert_eq!(s.poll_event(), None, "nothing got through");
    assert_eq!(s.dropped, 6);
    s.handle_text(&media_msg(5, 0, &frame), t0).unwrap();
    assert_eq!(s.poll_event(), Some(StreamEvent::Audio(Some(frame.to_vec()))));
}

#[test]
fn gaps_in_media_timestamps_become_silence_frames() {
    let t0 = crate::test_clock::epoch();
    let mut s = started(t0);
    let f = [0x11u8; FRAME_BYTES];
    for (seq, ts) in [(2, 0), (3, 20), (4, 80)] {
        s.handle_text(&media_msg(seq, ts, &f), t0).unwrap();
    }
    let evs: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    let kinds: Vec<bool> = evs.iter().map(|e| matches!(e, StreamEvent::Audio(Some(_)))).collect();
    assert_eq!(kinds, [true, true, false, false, true], "40 ms and 60 ms are missing: two silent frames");
}

#[test]
fn dtmf_and_stop() {
    let t0 = crate::test_clock::epoch();
    let mut s = started(t0);
    let dtmf = serde_json::json!({"event": "dtmf", "streamSid": SID, "sequenceNumber": "5",
                                  "dtmf": {"track": "inbound_track", "digit": "7"}});
    s.handle_text(&dtmf.to_string(), t0).unwrap();
    assert_eq!(s.poll_event(), Some(StreamEvent::Dtmf('7')));
    let stop = serde_json::json!({"event": "stop", "streamSid": SID, "sequenceNumber": "6",
                                  "stop": {"accountSid": "AC123", "callSid": "CA456"}});
    s.handle_text(&stop.to_string(), t0).unwrap();
    assert_eq!(s.poll_event(), Some(StreamEvent::Stop));
    assert!(s.is_stopped());
    assert_eq!(s.handle_text(&media_msg(7, 0, &[0; FRAME_BYTES]), t0), Err(StreamError::AfterStop));
    s.play(frames(3));
    assert_eq!(s.poll_transmit(t0), None, "nothing is sent after stop");
}

/// Outbound audio leaves in real time: at most LEAD ahead of Twilio's
/// playout, one frame per 20 ms after the first burst, each payload a
/// whole 160-byte frame.
#[test]
fn outbound_frames_are_paced_on_the_media_clock() {
    let t0 = crate::test_clock::epoch();
    let mut s = started(t0);
    s.play(frames(100));
    let first = drain(&mut s, t0);
    let media = |v: &[Value]| v.iter().filter(|m| m["event"] == "media").count();
    assert_eq!(media(&first), 6, "burst of LEAD/20 ms + 1 frames");
    let mut sent = media(&first);
    let mut now = t0;
    while sent < 100 {
        let next = s.poll_timeout().expect("frames wait on the clock");
        assert!(next > now);
        now = next;
        let out = drain(&mut s, now);
        for m in &out {
            assert_eq!(m["streamSid"], SID);
            if m["event"] == "media" {
                let bytes = B64.decode(m["media"]["payload"].as_str().unwrap()).unwrap();
                assert_eq!(bytes.len(), FRAME_BYTES);
            }
        }
        sent += media(&out);
        let elapsed_frames = (now - t0).as_millis() as usize / 20;
        assert!(sent <= elapsed_frames + 6, "{sent} sent after {elapsed_frames} frame times");
    }
    assert_eq!((now - t0).as_millis(), 94 * 20, "100 frames take 94 frame times after a 6-frame lead");
}

/// A mark follows each `play` and every MARK_EVERY frames; Twilio's echo
/// of a mark says how much was heard.
#[test]
fn marks_follow_chunks_and_their_echo_counts_played_frames() {
    let t0 = crate::test_clock::epoch();
    let mut s = started(t0);
    s.play(frames(3));
    s.play(frames(12));
    let mut out = Vec::new();
    let mut now = t0;
    for _ in 0..40 {
        out.extend(drain(&mut s, now));
        now += FRAME;
    }
    let seq: Vec<String> = out
        .iter()
        .map(|m| match m["event"].as_str().unwrap() {
            "media" => "f".to_string(),
            "mark" => format!("[{}]", m["mark"]["name"].as_str().unwrap()),
            e => e.to_string(),
        })
        .collect();
    assert_eq!(seq.join(""), "fff[skald-1]ffffffffff[skald-2]ff[skald-3]");
    assert_eq!(s.unplayed(), 15);
    s.handle_text(&mark_msg("skald-2"), now).unwrap();
    assert_eq!(s.poll_event(), Some(StreamEvent::Played { frames_played: 13 }));
    assert_eq!(s.unplayed(), 2);
    s.handle_text(&mark_msg("skald-3"), now).unwrap();
    assert_eq!(s.poll_event(), Some(StreamEvent::Played { frames_played: 15 }));
    assert_eq!(s.unplayed(), 0);
    s.handle_text(&mark_msg("skald-99"), now).unwrap();
    assert_eq!(s.poll_event(), None, "an unknown mark changes nothing");
}

/// Barge-in: `clear` goes out first, every frame not acknowledged comes
/// back, the cleared marks' echoes are ignored, and a resume sends the
/// frames again.
#[test]
fn pause_clears_twilio_and_returns_unplayed_frames() {
    let t0 = crate::test_clock::epoch();
    let mut s = started(t0);
    s.play(frames(30));
    let mut now = t0;
    for _ in 0..12 {
        drain(&mut s, now);
        now += FRAME;
    }
    s.handle_text(&mark_msg("skald-1"), now).unwrap();
    assert_eq!(s.poll_event(), Some(StreamEvent::Played { frames_played: 10 }));
    let back = s.pause(now);
    assert_eq!(back.len(), 20, "30 queued - 10 heard");
    assert_eq!(back[0], vec![10u8; FRAME_BYTES], "oldest unheard first");
    assert_eq!(s.unplayed(), 0);
    let out = drain(&mut s, now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["event"], "clear");
    assert_eq!(out[0]["streamSid"], SID);
    // Twilio echoes the marks that were pending when it cleared.
    s.handle_text(&mark_msg("skald-2"), now).unwrap();
    assert_eq!(s.poll_event(), None, "a cleared mark is not audio heard");
    assert_eq!(s.frames_played(), 10);
    s.resume(back);
    assert_eq!(s.unplayed(), 20);
    let out = drain(&mut s, now);
    assert_eq!(out.iter().filter(|m| m["event"] == "media").count(), 6, "resumed at the real-time pace");
}

proptest::proptest! {
    /// Any text, or any media payload, is handled without a panic; bad
    /// input only counts as dropped.
    #[test]
    fn any_message_is_handled_without_panic(text in ".{0,400}", payload in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let t0 = crate::test_clock::epoch();
        let mut s = started(t0);
        let before = s.dropped;
        let r = s.handle_text(&text, t0);
        proptest::prop_assert_eq!(r.is_err(), s.dropped == before + 1);
        let r = s.handle_text(&media_msg(2, 0, &payload), t0);
        proptest::prop_assert_eq!(r.is_ok(), payload.len() == FRAME_BYTES);
        while s.poll_event().is_some() {}
    }
}
