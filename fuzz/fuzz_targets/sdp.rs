//! SDP offers from the network: answering never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skald::sip::sdp::{self, AudioCodec, Direction, LocalMedia};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let local = LocalMedia {
        ip: "127.0.0.1".parse().unwrap(),
        port: 20000,
        codecs: vec![AudioCodec::Pcmu, AudioCodec::Pcma],
        ptime_ms: 20,
        dtmf: true,
        session_id: 1,
        session_version: 1,
        direction: Direction::SendRecv,
    };
    let _ = sdp::answer(text, &local);
    let _ = sdp::accept_answer(text, &local);
});
