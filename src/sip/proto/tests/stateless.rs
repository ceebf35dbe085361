//! Single-endpoint request handling: rejections and routing (§8.2).

use super::{config, ms};
use crate::sip::msg::{self, Response, SipMessage};
use crate::sip::proto::{DialogEvent, Event, Output, SipEndpoint, Transmit, Transport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PEER: ([u8; 4], u16) = ([192, 0, 2, 1], 5080);

fn ep() -> SipEndpoint {
    SipEndpoint::new(config(5060), 7, crate::test_clock::epoch())
}

fn drain(ep: &mut SipEndpoint) -> (Vec<Transmit>, Vec<Event>) {
    let (mut tx, mut ev) = (Vec::new(), Vec::new());
    loop {
        match ep.poll_output() {
            Output::Transmit(t) => tx.push(t),
            Output::Event(e) => ev.push(e),
            Output::Timeout(_) => return (tx, ev),
        }
    }
}

fn send(ep: &mut SipEndpoint, text: &str, now: Instant) -> (Vec<Transmit>, Vec<Event>) {
    ep.handle_datagram(SocketAddr::from(PEER), Transport::Udp, text.as_bytes(), now);
    drain(ep)
}

fn response(t: &Transmit) -> Response {
    match msg::parse(&t.bytes) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn request(method: &str, extra: &str) -> String {
    format!(
        "{method} sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bK{method}1\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@192.0.2.1>;tag=f1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: cid-{method}\r\n\
CSeq: 1 {method}\r\nContact: <sip:alice@192.0.2.1:5080>\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn only_status(out: &(Vec<Transmit>, Vec<Event>)) -> u16 {
    assert_eq!(out.0.len(), 1, "one response expected");
    response(&out.0[0]).status
}

#[test]
fn unknown_method_gets_501_with_allow() {
    let mut e = ep();
    let out = send(&mut e, &request("FOO", ""), crate::test_clock::epoch());
    let r = response(&out.0[0]);
    assert_eq!(r.status, 501);
    assert_eq!(r.headers.get("Allow"), Some(crate::sip::proto::ALLOW));
    assert!(r.headers.to().unwrap().tag().is_some());
}

#[test]
fn unsupported_methods_get_405() {
    let mut e = ep();
    for m in ["REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE"] {
        let out = send(&mut e, &request(m, ""), crate::test_clock::epoch());
        let r = response(&out.0[0]);
        assert_eq!(r.status, 405, "{m}");
        assert!(r.headers.contains("Allow"));
    }
}

#[test]
fn malformed_request_gets_400_with_reason_or_is_dropped() {
    let mut e = ep();
    let bad = request("OPTIONS", "").replace("CSeq: 1 OPTIONS\r\n", "CSeq: x OPTIONS\r\n");
    let out = send(&mut e, &bad, crate::test_clock::epoch());
    // the 400 echoes the bad CSeq (§8.2.6), so only its status line is read
    let text = String::from_utf8_lossy(&out.0[0].bytes).to_string();
    let status_line = text.lines().next().unwrap_or_default();
    assert!(status_line.starts_with("SIP/2.0 400 "), "{status_line}");
    assert!(status_line.contains("CSeq"), "{status_line}");
    // to the sent-by port (no rport), source IP
    assert_eq!(out.0[0].dest, SocketAddr::from(PEER));
    let no_via = "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nCall-ID: x\r\n\r\n";
    assert!(send(&mut e, no_via, crate::test_clock::epoch()).0.is_empty());
    assert!(send(&mut e, "\u{1}\u{2}garbage", crate::test_clock::epoch()).0.is_empty());
}

#[test]
fn max_forwards_zero_gets_483() {
    let mut e = ep();
    let inv = request("INVITE", "").replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(only_status(&send(&mut e, &inv, crate::test_clock::epoch())), 483);
}

#[test]
fn draining_answers_503_with_retry_after() {
    let mut e = ep();
    e.set_draining(Some(Duration::from_secs(30)));
    let out = send(&mut e, &request("INVITE", ""), crate::test_clock::epoch());
    let r = response(&out.0[0]);
    assert_eq!(r.status, 503);
    assert_eq!(r.headers.get("Retry-After"), Some("30"));
    assert!(out.1.is_empty());
}

#[test]
fn unknown_require_gets_420_with_unsupported() {
    let mut e = ep();
    let out = send(&mut e, &request("INVITE", "Require: foo, 100rel\r\n"), crate::test_clock::epoch());
    let r = response(&out.0[0]);
    assert_eq!(r.status, 420);
    assert_eq!(r.headers.get("Unsupported"), Some("foo, 100rel"));
}

#[test]
fn unknown_dialog_gets_481() {
    let mut e = ep();
    let bye = request("BYE", "").replace("To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=nope");
    assert_eq!(only_status(&send(&mut e, &bye, crate::test_clock::epoch())), 481);
    assert_eq!(only_status(&send(&mut e, &request("CANCEL", ""), crate::test_clock::epoch())), 481);
}

#[test]
fn stray_response_and_ack_are_dropped() {
    let mut e = ep();
    let req = match msg::parse(request("OPTIONS", "").as_bytes()) {
        Ok(SipMessage::Request(r)) => r,
        _ => panic!(),
    };
    let resp = Response::for_request(&req, 200, "OK");
    e.handle_datagram(SocketAddr::from(PEER), Transport::Udp, &resp.to_bytes(), crate::test_clock::epoch());
    assert!(drain(&mut e).0.is_empty());
    assert!(send(&mut e, &request("ACK", ""), crate::test_clock::epoch()).0.is_empty());
}

#[test]
fn incoming_invite_gets_100_then_event_and_lower_cseq_gets_500() {
    let mut e = ep();
    let t0 = crate::test_clock::epoch();
    let inv = request("INVITE", "Content-Type: application/sdp\r\n").replace("CSeq: 1 INVITE", "CSeq: 5 INVITE");
    let out = send(&mut e, &inv, t0);
    assert_eq!(out.0.len(), 1);
    let trying = response(&out.0[0]);
    assert_eq!(trying.status, 100);
    assert!(trying.headers.to().unwrap().tag().is_none());
    let Some(Event::IncomingCall { dialog, .. }) = out.1.first().cloned() else { panic!() };
    e.answer(dialog, "v=0\r\n", t0).unwrap();
    let (tx, _) = drain(&mut e);
    let ok = response(&tx[0]);
    let tag = ok.headers.to().unwrap().tag().unwrap().to_string();
    assert!(ok.headers.contact().is_some());
    assert_eq!(ok.headers.content_type(), Some("application/sdp"));
    let in_dialog = |m: &str, seq: u32| {
        request(m, "")
            .replace("To: <sip:bob@127.0.0.1>", &format!("To: <sip:bob@127.0.0.1>;tag={tag}"))
            .replace(&format!("cid-{m}"), "cid-INVITE")
            .replace(&format!("CSeq: 1 {m}"), &format!("CSeq: {seq} {m}"))
            .replace(&format!("branch=z9hG4bK{m}1"), &format!("branch=z9hG4bK{m}{seq}"))
    };
    let ack = in_dialog("ACK", 5);
    let (tx, ev) = send(&mut e, &ack, t0 + ms(20));
    assert!(tx.is_empty());
    assert_eq!(ev, vec![Event::Dialog { dialog, event: DialogEvent::Acked }]);
    assert_eq!(only_status(&send(&mut e, &in_dialog("OPTIONS", 4), t0 + ms(30))), 500);
    assert_eq!(only_status(&send(&mut e, &in_dialog("OPTIONS", 6), t0 + ms(40))), 200);
    let out = send(&mut e, &in_dialog("BYE", 7), t0 + ms(50));
    assert_eq!(only_status(&out), 200);
    assert_eq!(out.1, vec![Event::Dialog { dialog, event: DialogEvent::Bye }]);
    // retransmitted BYE: same 200 from the transaction, no new event
    let out = send(&mut e, &in_dialog("BYE", 7), t0 + ms(60));
    assert_eq!(only_status(&out), 200);
    assert!(out.1.is_empty());
}

#[test]
fn rport_sends_responses_to_the_source_port() {
    let mut e = ep();
    let opt = request("OPTIONS", "").replace("5080;branch", "5999;rport;branch");
    let out = send(&mut e, &opt, crate::test_clock::epoch());
    assert_eq!(out.0[0].dest, SocketAddr::from(PEER));
    let no_rport = request("OPTIONS", "").replace("192.0.2.1:5080;branch=z9hG4bKOPTIONS1", "192.0.2.1:5999;branch=z9hG4bKx");
    let out = send(&mut e, &no_rport, crate::test_clock::epoch());
    assert_eq!(out.0[0].dest, SocketAddr::from(([192, 0, 2, 1], 5999)));
}

#[test]
fn wrong_version_gets_505() {
    let mut e = ep();
    let v = request("OPTIONS", "").replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia");
    assert_eq!(only_status(&send(&mut e, &v, crate::test_clock::epoch())), 505);
}
