//! RTP and RTCP datagrams from the network: parsing never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skald::rtp::proto::{packet::RtpPacket, rtcp};

fuzz_target!(|data: &[u8]| {
    let _ = RtpPacket::parse(data);
    let _ = rtcp::parse_compound(data);
});
