//! Tests of `client_invite` in virtual time (the only place this core meets a clock:
//! the tests pick their starting instant).

use super::*;
use crate::sip::msg::{SipMessage, parse};
use std::time::Duration;

fn invite() -> Request {
    let t = "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:a@h>\r\n\r\n";
    let Ok(SipMessage::Request(r)) = parse(t.as_bytes()) else { panic!() };
    r
}

fn resp(status: u16) -> Response {
    let mut r = Response::for_request(&invite(), status, "X");
    r.set_to_tag("t");
    r
}

#[test]
fn timer_a_doubles_and_b_times_out() {
    let t0 = crate::test_clock::epoch();
    let (mut tx, out) = ClientInviteTx::new(invite(), false, Timers::default(), t0);
    assert_eq!(out.len(), 1);
    let mut sends = Vec::new();
    while let Some(at) = tx.next_timeout() {
        for o in tx.handle_timeout(at) {
            match o {
                TxOutput::Transmit(_) => sends.push(at - t0),
                TxOutput::Timeout => assert_eq!(at - t0, Duration::from_secs(32)),
                _ => panic!(),
            }
        }
    }
    let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert!(tx.is_terminated());
}

#[test]
fn reliable_has_no_retransmissions() {
    let t0 = crate::test_clock::epoch();
    let (tx, _) = ClientInviteTx::new(invite(), true, Timers::default(), t0);
    assert_eq!(tx.next_timeout(), Some(t0 + Duration::from_secs(32)));
}

#[test]
fn failure_is_acked_and_reacked() {
    let t0 = crate::test_clock::epoch();
    let (mut tx, _) = ClientInviteTx::new(invite(), false, Timers::default(), t0);
    let out = tx.handle_response(resp(486), t0);
    assert!(matches!(&out[0], TxOutput::Transmit(b) if b.starts_with(b"ACK sip:b@h")));
    assert!(matches!(&out[1], TxOutput::Response(r) if r.status == 486));
    assert_eq!(tx.state(), ClientInviteState::Completed);
    let again = tx.handle_response(resp(486), t0);
    assert_eq!(again.len(), 1);
    assert_eq!(tx.next_timeout(), Some(t0 + Duration::from_secs(32)));
}

#[test]
fn accepted_passes_2xx_retransmissions() {
    let t0 = crate::test_clock::epoch();
    let (mut tx, _) = ClientInviteTx::new(invite(), false, Timers::default(), t0);
    assert_eq!(tx.handle_response(resp(180), t0).len(), 1);
    assert_eq!(tx.handle_response(resp(200), t0).len(), 1);
    assert_eq!(tx.state(), ClientInviteState::Accepted);
    assert_eq!(tx.handle_response(resp(200), t0).len(), 1);
}
