//! Tests of `server_non_invite` in virtual time (the only place this core meets a clock:
//! the tests pick their starting instant).

use super::*;
use std::time::Duration;

#[test]
fn absorbs_then_resends_final_until_j() {
    let t0 = crate::test_clock::epoch();
    let mut tx = ServerNonInviteTx::new(false, Timers::default());
    assert!(tx.handle_retransmission().is_empty());
    tx.send_response(&Response::new(200, "OK"), t0);
    assert_eq!(tx.handle_retransmission().len(), 1);
    assert!(tx.send_response(&Response::new(500, "x"), t0).is_empty());
    assert_eq!(tx.next_timeout(), Some(t0 + Duration::from_secs(32)));
    tx.handle_timeout(t0 + Duration::from_secs(32));
    assert!(tx.is_terminated());
    let mut tcp = ServerNonInviteTx::new(true, Timers::default());
    tcp.send_response(&Response::new(200, "OK"), t0);
    assert_eq!(tcp.next_timeout(), Some(t0));
}
