//! Twilio Media Streams messages from the WebSocket: handling never panics,
//! before or after `start`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skald::transports::twilio::media::MediaStreamSession;

const START: &str = r#"{"event":"start","streamSid":"MZ1","start":{"streamSid":"MZ1","callSid":"CA1","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let now = std::time::Instant::now();
    let mut fresh = MediaStreamSession::new();
    let _ = fresh.handle_text(text, now);
    let mut started = MediaStreamSession::new();
    let _ = started.handle_text(START, now);
    let _ = started.handle_text(text, now);
    while started.poll_event().is_some() {}
    while started.poll_transmit(now).is_some() {}
});
