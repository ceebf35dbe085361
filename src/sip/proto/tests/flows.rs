//! Call flows between two endpoints in virtual time.

use super::{SipPair, Side, is, ms};
use crate::sip::msg::SipMessage;
use crate::sip::proto::{DialogEvent, Event, Transport};
use std::time::Duration;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn timer_a_retransmits_and_timer_b_fires_at_64_t1() {
    let mut p = SipPair::new();
    p.drop = Box::new(|side, _, b| side == Side::A && b.starts_with(b"INVITE"));
    let params = p.invite_params(Transport::Udp);
    let (id, _) = p.a.ep.invite(params, p.now).unwrap();
    p.run_until(secs(40));
    assert_eq!(p.a.sent_times("INVITE"), vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
    let ends: Vec<_> = p.a.events.iter().filter(|(_, e)| matches!(e, Event::Dialog { .. })).collect();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].0, secs(32));
    assert_eq!(
        p.a.dialog_events(id),
        vec![DialogEvent::Rejected { status: 408, reason: "Request Timeout".into() }]
    );
    assert_eq!(p.a.ep.call_count(), 0);
}

#[test]
fn tcp_invite_is_not_retransmitted() {
    let mut p = SipPair::new();
    p.drop = Box::new(|_, _, _| true);
    let params = p.invite_params(Transport::Tcp);
    p.a.ep.invite(params, p.now).unwrap();
    p.run_until(secs(40));
    assert_eq!(p.a.sent_times("INVITE"), vec![0]);
    assert_eq!(p.a.events.len(), 1);
    assert_eq!(p.a.events[0].0, secs(32));
}

#[test]
fn timer_e_caps_at_t2_and_timer_f_fires() {
    let mut p = SipPair::new();
    p.drop = Box::new(|_, _, _| true);
    let (dest, now) = (p.b.addr, p.now);
    let n = p.a.ep.options("sip:bob@127.0.0.1:5070", dest, Transport::Udp, now).unwrap();
    p.run_until(secs(40));
    assert_eq!(
        p.a.sent_times("OPTIONS"),
        vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(p.a.events, vec![(secs(32), Event::OptionsResult { request: n, status: 408 })]);
}

#[test]
fn options_between_peers() {
    let mut p = SipPair::new();
    let (dest, now) = (p.b.addr, p.now);
    let n = p.a.ep.options("sip:bob@127.0.0.1:5070", dest, Transport::Udp, now).unwrap();
    p.run_for(secs(1));
    assert_eq!(p.a.events[0].1, Event::OptionsResult { request: n, status: 200 });
    let Some(SipMessage::Response(ok)) = p.b.sent_msgs("SIP/2.0 200").into_iter().next() else { panic!() };
    assert_eq!(ok.headers.get("Allow"), Some(crate::sip::proto::ALLOW));
    assert_eq!(ok.headers.get("Accept"), Some("application/sdp"));
    assert!(ok.headers.contains("Supported"));
}

/// A calls B, B rings and answers at once; returns (A's dialog, B's dialog).
fn establish(p: &mut SipPair) -> (crate::ids::DialogId, crate::ids::DialogId) {
    let params = p.invite_params(Transport::Udp);
    let (a_id, _) = p.a.ep.invite(params, p.now).unwrap();
    p.run_for(ms(15));
    let b_id = *p.b.incoming().first().expect("incoming call");
    let now = p.now;
    p.b.ep.ring(b_id, now).unwrap();
    p.b.ep.answer(b_id, "v=0 answer\r\n", now).unwrap();
    p.run_for(ms(100));
    (a_id, b_id)
}

#[test]
fn full_call_caller_hangs_up() {
    let mut p = SipPair::new();
    let (a_id, b_id) = establish(&mut p);
    let Some((_, Event::IncomingCall { info, .. })) = p.b.events.first().cloned() else { panic!() };
    assert_eq!(info.from_user, "alice");
    assert_eq!(info.from_display.as_deref(), Some("Alice"));
    assert_eq!(info.did, "bob");
    assert_eq!(info.sdp_offer.as_deref(), Some("v=0\r\n"));
    assert!(info.headers.iter().any(|(n, v)| n == "X-Test" && v == "1"));
    assert_eq!(p.b.sent_times("SIP/2.0 100"), vec![10]);
    assert_eq!(
        p.a.dialog_events(a_id),
        vec![
            DialogEvent::Provisional { status: 180, sdp: None },
            DialogEvent::Answered { sdp_answer: Some("v=0 answer\r\n".into()) },
        ]
    );
    assert_eq!(p.b.dialog_events(b_id), vec![DialogEvent::Acked]);
    // the 2xx was not retransmitted: the ACK arrived in 20 ms
    assert_eq!(p.b.sent_times("SIP/2.0 200").len(), 1);
    let now = p.now;
    p.a.ep.hangup(a_id, now).unwrap();
    p.run_for(secs(1));
    assert_eq!(p.b.dialog_events(b_id).last(), Some(&DialogEvent::Bye));
    assert!(matches!(p.a.dialog_events(a_id).last(), Some(DialogEvent::Terminated { .. })));
    let Some(SipMessage::Request(bye)) = p.a.sent_msgs("BYE").into_iter().next() else { panic!() };
    assert_eq!(bye.headers.cseq().unwrap().seq, 2);
    assert_eq!(bye.uri, "sip:skald@127.0.0.1:5070");
    assert_eq!(p.a.ep.call_count(), 0);
    assert_eq!(p.b.ep.call_count(), 0);
    p.run_for(secs(60));
    assert_eq!(p.a.ep.transaction_count() + p.b.ep.transaction_count(), 0);
}

#[test]
fn full_call_callee_hangs_up() {
    let mut p = SipPair::new();
    let (a_id, b_id) = establish(&mut p);
    let now = p.now;
    p.b.ep.hangup(b_id, now).unwrap();
    p.run_for(secs(1));
    assert_eq!(p.a.dialog_events(a_id).last(), Some(&DialogEvent::Bye));
    assert!(matches!(p.b.dialog_events(b_id).last(), Some(DialogEvent::Terminated { .. })));
    let Some(SipMessage::Request(bye)) = p.b.sent_msgs("BYE").into_iter().next() else { panic!() };
    assert_eq!(bye.uri, "sip:alice@127.0.0.1:5060");
    assert_eq!(p.a.ep.call_count() + p.b.ep.call_count(), 0);
}

#[test]
fn invite_retransmission_is_absorbed() {
    let mut p = SipPair::new();
    // B's first answers are lost: A retransmits the INVITE at 500 ms.
    p.drop = Box::new(|side, at, _| side == Side::B && at < ms(505));
    let params = p.invite_params(Transport::Udp);
    p.a.ep.invite(params, p.now).unwrap();
    p.run_for(ms(15));
    let b_id = p.b.incoming()[0];
    let now = p.now;
    p.b.ep.ring(b_id, now).unwrap();
    p.run_for(secs(2));
    assert_eq!(p.a.sent_times("INVITE"), vec![0, 500]);
    assert_eq!(p.b.incoming().len(), 1, "one IncomingCall for two INVITEs");
    assert_eq!(p.b.sent_times("SIP/2.0 180"), vec![15, 510], "180 resent for the retransmission");
    assert_eq!(p.b.sent_times("SIP/2.0 100"), vec![10]);
}

#[test]
fn caller_cancels_before_answer() {
    let mut p = SipPair::new();
    let params = p.invite_params(Transport::Udp);
    let (a_id, _) = p.a.ep.invite(params, p.now).unwrap();
    p.run_for(ms(15));
    let b_id = p.b.incoming()[0];
    let now = p.now;
    p.b.ep.ring(b_id, now).unwrap();
    p.run_for(ms(100));
    let now = p.now;
    p.a.ep.hangup(a_id, now).unwrap();
    p.run_for(secs(1));
    assert_eq!(p.b.dialog_events(b_id), vec![DialogEvent::Cancelled]);
    assert_eq!(p.b.sent_msgs("SIP/2.0 487").len(), 1);
    let ok = p.b.sent.iter().filter(|(_, t)| is(&t.bytes, "SIP/2.0 200", Some("CANCEL"))).count();
    assert_eq!(ok, 1);
    assert!(matches!(p.a.dialog_events(a_id).last(), Some(DialogEvent::Terminated { .. })));
    // A's INVITE transaction ACKed the 487
    assert_eq!(p.a.sent_times("ACK").len(), 1);
    assert_eq!(p.a.ep.call_count() + p.b.ep.call_count(), 0);
}

#[test]
fn cancel_after_200_only_gets_200() {
    let mut p = SipPair::new();
    p.latency = ms(50);
    let params = p.invite_params(Transport::Udp);
    let (a_id, _) = p.a.ep.invite(params, p.now).unwrap();
    p.run_for(ms(60));
    let b_id = p.b.incoming()[0];
    let now = p.now;
    p.b.ep.ring(b_id, now).unwrap();
    p.run_for(ms(60)); // A has the 180
    let now = p.now;
    p.b.ep.answer(b_id, "v=0\r\n", now).unwrap();
    p.a.ep.hangup(a_id, now).unwrap(); // CANCEL crosses the 200 OK
    p.run_for(secs(2));
    assert!(p.b.sent_msgs("SIP/2.0 487").is_empty());
    let ok_cancel = p.b.sent.iter().filter(|(_, t)| is(&t.bytes, "SIP/2.0 200", Some("CANCEL"))).count();
    assert_eq!(ok_cancel, 1);
    // A ACKs the 2xx and sends BYE because the application hung up
    assert_eq!(p.a.sent_msgs("ACK").len(), 1);
    assert_eq!(p.a.sent_msgs("BYE").len(), 1);
    assert_eq!(p.b.dialog_events(b_id), vec![DialogEvent::Acked, DialogEvent::Bye]);
    assert!(matches!(p.a.dialog_events(a_id).last(), Some(DialogEvent::Terminated { .. })));
    assert!(!p.a.dialog_events(a_id).iter().any(|e| matches!(e, DialogEvent::Answered { .. })));
}

#[test]
fn ok_is_retransmitted_until_ack_then_bye_on_timeout() {
    let mut p = SipPair::new();
    p.drop = Box::new(|side, _, b| side == Side::A && b.starts_with(b"ACK"));
    let params = p.invite_params(Transport::Udp);
    let (a_id, _) = p.a.ep.invite(params, p.now).unwrap();
    p.run_for(ms(15));
    let b_id = p.b.incoming()[0];
    let now = p.now;
    let answered_at = p.elapsed().as_millis();
    p.b.ep.answer(b_id, "v=0\r\n", now).unwrap();
    p.run_for(secs(40));
    let oks: Vec<u128> = p.b.sent_times("SIP/2.0 200").iter().map(|t| t - answered_at).collect();
    // T1 doubling up to T2, until 64*T1 (§13.3.1.4)
    assert_eq!(oks, vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    // every retransmitted 2xx got the same ACK again
    assert_eq!(p.a.sent_msgs("ACK").len(), oks.len());
    let acks = p.a.sent_msgs("ACK");
    assert!(acks.windows(2).all(|w| w[0] == w[1]));
    let bye_at = p.b.sent_times("BYE");
    assert_eq!(bye_at.len(), 1);
    assert_eq!(bye_at[0] - answered_at, 32_000);
    assert_eq!(
        p.b.dialog_events(b_id),
        vec![DialogEvent::Terminated { reason: "no ACK for 200 OK".into() }]
    );
    assert_eq!(p.a.dialog_events(a_id).last(), Some(&DialogEvent::Bye));
}

#[test]
fn hangup_while_waiting_for_ack_sends_bye_after_ack() {
    let mut p = SipPair::new();
    p.latency = ms(100);
    let params = p.invite_params(Transport::Udp);
    p.a.ep.invite(params, p.now).unwrap();
    p.run_for(ms(110));
    let b_id = p.b.incoming()[0];
    let now = p.now;
    p.b.ep.answer(b_id, "v=0\r\n", now).unwrap();
    p.b.ep.hangup(b_id, now).unwrap();
    p.drain();
    assert!(p.b.sent_msgs("BYE").is_empty(), "no BYE before the ACK (§15)");
    p.run_for(secs(1));
    assert_eq!(p.b.sent_msgs("BYE").len(), 1);
    assert!(matches!(p.b.dialog_events(b_id).last(), Some(DialogEvent::Terminated { .. })));
}

#[test]
fn ring_timeout_cancels() {
    let mut p = SipPair::new();
    let mut params = p.invite_params(Transport::Udp);
    params.ring_timeout = Some(secs(5));
    let (a_id, _) = p.a.ep.invite(params, p.now).unwrap();
    p.run_for(ms(15));
    let b_id = p.b.incoming()[0];
    let now = p.now;
    p.b.ep.ring(b_id, now).unwrap();
    p.run_for(secs(10));
    assert_eq!(p.a.sent_times("CANCEL"), vec![5000]);
    assert_eq!(p.b.dialog_events(b_id), vec![DialogEvent::Cancelled]);
    assert_eq!(
        p.a.dialog_events(a_id).last(),
        Some(&DialogEvent::Rejected { status: 408, reason: "Ring Timeout".into() })
    );
}

#[test]
fn rejected_call_is_reported_and_acked() {
    let mut p = SipPair::new();
    let params = p.invite_params(Transport::Udp);
    let (a_id, _) = p.a.ep.invite(params, p.now).unwrap();
    p.run_for(ms(15));
    let b_id = p.b.incoming()[0];
    let now = p.now;
    p.b.ep.reject(b_id, 486, "Busy Here", now).unwrap();
    p.run_for(secs(1));
    assert_eq!(
        p.a.dialog_events(a_id),
        vec![DialogEvent::Rejected { status: 486, reason: "Busy Here".into() }]
    );
    assert_eq!(p.a.sent_msgs("ACK").len(), 1);
    assert_eq!(p.b.sent_times("SIP/2.0 486").len(), 1, "ACK stopped Timer G");
    assert!(p.b.dialog_events(b_id).is_empty());
}

#[test]
fn reinvite_is_offered_and_answered() {
    let mut p = SipPair::new();
    let (a_id, b_id) = establish(&mut p);
    // A (as the peer) sends a re-INVITE built from its dialog
    let mut d = p.a.ep.dialog(a_id).cloned().expect("dialog");
    let reinvite = {
        let mut r = d.new_request(crate::sip::msg::Method::Invite, "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKre1", Some("<sip:alice@127.0.0.1:5060>"));
        r.headers.push("Content-Type", "application/sdp");
        r.body = b"v=0 hold\r\n".to_vec();
        r
    };
    let now = p.now;
    p.b.ep.handle_datagram(p.a.addr, Transport::Udp, &reinvite.to_bytes(), now);
    p.drain();
    assert_eq!(
        p.b.dialog_events(b_id).last(),
        Some(&DialogEvent::ReInvite { sdp_offer: Some("v=0 hold\r\n".into()) })
    );
    // a second re-INVITE while the first is pending: 500 + Retry-After (§14.2)
    let mut second = d.new_request(crate::sip::msg::Method::Invite, "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKre2", None);
    second.headers.push("Contact", "<sip:alice@127.0.0.1:5060>");
    p.b.ep.handle_datagram(p.a.addr, Transport::Udp, &second.to_bytes(), now);
    p.drain();
    let Some(SipMessage::Response(r500)) = p.b.sent_msgs("SIP/2.0 500").pop() else { panic!("no 500") };
    assert!(r500.headers.contains("Retry-After"));
    p.b.ep.accept_reinvite(b_id, "v=0 held\r\n", now).unwrap();
    p.drain();
    let oks = p.b.sent_msgs("SIP/2.0 200");
    let Some(SipMessage::Response(ok)) = oks.last() else { panic!() };
    assert_eq!(ok.headers.cseq().unwrap().seq, 2);
    assert_eq!(ok.body, b"v=0 held\r\n");
    assert_eq!(p.b.ep.accept_reinvite(b_id, "x", now), Err(crate::sip::proto::EndpointError::InvalidState("accept_reinvite")));
}

/// Whether `proto::auth` is implemented in this build (it is written in
/// parallel; until it lands its functions are stubs that panic).
#[test]
fn digest_challenge_is_answered_once() {
    let mut p = SipPair::new();
    let mut params = p.invite_params(Transport::Udp);
    params.credentials = Some(("alice".into(), "secret".into()));
    let (a_id, _) = p.a.ep.invite(params, p.now).unwrap();
    p.drop = Box::new(|_, _, _| true); // the test plays the server by hand
    p.drain();
    let challenge = |inv: &crate::sip::msg::Request| {
        let mut r = crate::sip::msg::Response::for_request(inv, 401, "Unauthorized");
        r.set_to_tag("srv");
        r.headers.push("WWW-Authenticate", "Digest realm=\"skald.test\", nonce=\"abc123\", qop=\"auth\", algorithm=MD5");
        r.to_bytes()
    };
    let Some(SipMessage::Request(first)) = p.a.sent_msgs("INVITE").pop() else { panic!() };
    let now = p.now;
    p.a.ep.handle_datagram(p.b.addr, Transport::Udp, &challenge(&first), now);
    p.drain();
    let invites = p.a.sent_msgs("INVITE");
    assert_eq!(invites.len(), 2);
    let Some(SipMessage::Request(second)) = invites.last().cloned() else { panic!() };
    let auth = second.headers.get("Authorization").expect("Authorization header");
    assert!(auth.starts_with("Digest"), "{auth}");
    assert!(crate::sip::proto::auth::verify(auth, "secret", "INVITE"), "{auth}");
    assert!(!crate::sip::proto::auth::verify(auth, "wrong", "INVITE"));
    assert_eq!(second.headers.cseq().unwrap().seq, first.headers.cseq().unwrap().seq + 1);
    assert_eq!(second.headers.call_id(), first.headers.call_id());
    assert_eq!(second.headers.from().unwrap().tag(), first.headers.from().unwrap().tag());
    assert_ne!(second.headers.top_via().unwrap().branch(), first.headers.top_via().unwrap().branch());
    assert_eq!(p.a.sent_msgs("ACK").len(), 1, "the 401 is ACKed by the transaction");
    // a second challenge is final
    p.a.ep.handle_datagram(p.b.addr, Transport::Udp, &challenge(&second), now);
    p.drain();
    assert_eq!(p.a.sent_msgs("INVITE").len(), 2);
    assert_eq!(
        p.a.dialog_events(a_id),
        vec![DialogEvent::Rejected { status: 401, reason: "Unauthorized".into() }]
    );
}
