//! Tests of `server_invite` in virtual time (the only place this core meets a clock:
//! the tests pick their starting instant).

use super::*;
use std::time::Duration;

#[test]
fn timer_g_retransmits_final_until_h() {
    let t0 = crate::test_clock::epoch();
    let mut tx = ServerInviteTx::new(false, Timers::default());
    assert!(tx.handle_retransmission().is_empty());
    tx.send_response(&Response::new(180, "Ringing"), t0);
    assert_eq!(tx.handle_retransmission().len(), 1);
    tx.send_response(&Response::new(486, "Busy Here"), t0);
    assert_eq!(tx.state(), ServerInviteState::Completed);
    let mut sends = Vec::new();
    let mut timed_out = None;
    while let Some(at) = tx.next_timeout() {
        for o in tx.handle_timeout(at) {
            match o {
                TxOutput::Transmit(_) => sends.push((at - t0).as_millis()),
                TxOutput::Timeout => timed_out = Some(at - t0),
                TxOutput::Response(_) => panic!(),
            }
        }
    }
    assert_eq!(&sends[..5], &[500, 1500, 3500, 7500, 11500]);
    assert_eq!(timed_out, Some(Duration::from_secs(32)));
}

#[test]
fn ack_confirms_then_timer_i() {
    let t0 = crate::test_clock::epoch();
    let mut tx = ServerInviteTx::new(false, Timers::default());
    tx.send_response(&Response::new(487, "Request Terminated"), t0);
    assert!(tx.handle_ack(t0));
    assert!(!tx.handle_ack(t0));
    assert_eq!(tx.next_timeout(), Some(t0 + Duration::from_secs(5)));
    tx.handle_timeout(t0 + Duration::from_secs(5));
    assert!(tx.is_terminated());
}

#[test]
fn reliable_skips_g_and_i() {
    let t0 = crate::test_clock::epoch();
    let mut tx = ServerInviteTx::new(true, Timers::default());
    tx.send_response(&Response::new(486, "Busy Here"), t0);
    assert_eq!(tx.next_timeout(), Some(t0 + Duration::from_secs(32)));
    tx.handle_ack(t0);
    assert_eq!(tx.next_timeout(), Some(t0));
}

#[test]
fn accepted_absorbs_retransmissions() {
    let t0 = crate::test_clock::epoch();
    let mut tx = ServerInviteTx::new(false, Timers::default());
    tx.send_response(&Response::new(200, "OK"), t0);
    assert_eq!(tx.state(), ServerInviteState::Accepted);
    assert!(tx.handle_retransmission().is_empty());
    assert!(tx.send_response(&Response::new(487, "x"), t0).is_empty());
}
