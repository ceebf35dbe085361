//! Tests of `client_non_invite` in virtual time (the only place this core meets a clock:
//! the tests pick their starting instant).

use super::*;
use crate::sip::msg::{SipMessage, parse};
use std::time::Duration;

fn bye() -> Request {
    let t = "BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n";
    let Ok(SipMessage::Request(r)) = parse(t.as_bytes()) else { panic!() };
    r
}

#[test]
fn timer_e_caps_at_t2_and_f_times_out() {
    let t0 = crate::test_clock::epoch();
    let (mut tx, _) = ClientNonInviteTx::new(bye(), false, Timers::default(), t0);
    let mut sends = Vec::new();
    let mut timeout_at = None;
    while let Some(at) = tx.next_timeout() {
        for o in tx.handle_timeout(at) {
            match o {
                TxOutput::Transmit(_) => sends.push((at - t0).as_millis()),
                TxOutput::Timeout => timeout_at = Some(at - t0),
                _ => panic!(),
            }
        }
    }
    assert_eq!(&sends[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
    assert_eq!(timeout_at, Some(Duration::from_secs(32)));
}

#[test]
fn proceeding_retransmits_every_t2_then_completes() {
    let t0 = crate::test_clock::epoch();
    let (mut tx, _) = ClientNonInviteTx::new(bye(), false, Timers::default(), t0);
    let trying = Response::for_request(&bye(), 100, "Trying");
    tx.handle_response(trying, t0);
    let first = tx.next_timeout().unwrap();
    tx.handle_timeout(first);
    assert_eq!(tx.next_timeout().unwrap() - first, Duration::from_secs(4));
    let ok = Response::for_request(&bye(), 200, "OK");
    assert_eq!(tx.handle_response(ok.clone(), first).len(), 1);
    assert!(tx.handle_response(ok, first).is_empty());
    assert_eq!(tx.next_timeout(), Some(first + Duration::from_secs(5)));
    tx.handle_timeout(first + Duration::from_secs(5));
    assert!(tx.is_terminated());
}
