//! REFER (RFC 3515) with skald as the transferor, in virtual time: the
//! REFER's shape, a refusal, and NOTIFY progress from the transferee.

use super::super::DialogEvent;
use super::*;
use crate::sip::msg::{Method, SipMessage};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A calls B; B (skald) answers. Returns (A's dialog, B's dialog).
fn establish(p: &mut SipPair) -> (DialogId, DialogId) {
    let params = p.invite_params(Transport::Udp);
    let (a_id, _) = p.a.ep.invite(params, p.now).unwrap();
    p.run_for(ms(15));
    let b_id = *p.b.incoming().first().expect("incoming call");
    let now = p.now;
    p.b.ep.answer(b_id, "v=0 answer\r\n", now).unwrap();
    p.run_for(ms(100));
    (a_id, b_id)
}

/// A NOTIFY from A in its dialog `d` (a copy of A's), as a transferee
/// sends it.
fn notify(p: &mut SipPair, d: &mut crate::sip::proto::dialog::Dialog, frag: &str, state: &str) {
    let via = "SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKnotify".to_string() + &frag.len().to_string() + state;
    let mut req = d.new_request(Method::Notify, &via, Some("<sip:a@127.0.0.1:5071>"));
    req.headers.push("Event", "refer");
    req.headers.push("Subscription-State", state);
    req.headers.push("Content-Type", "message/sipfrag;version=2.0");
    req.body = frag.as_bytes().to_vec();
    let bytes = req.to_bytes();
    let (from, now) = (p.a.addr, p.now);
    p.b.ep.handle_datagram(from, Transport::Udp, &bytes, now);
    p.run_for(ms(10));
}

#[test]
fn refer_carries_refer_to_with_headers_and_referred_by() {
    let mut p = SipPair::new();
    let (_a, b) = establish(&mut p);
    let target = "sip:tier2@127.0.0.1:5090?X-Skald-Context=eyJ2IjoxfQ.c2ln";
    let now = p.now;
    p.b.ep.refer(b, target, now).unwrap();
    p.run_for(ms(50));
    let refers = p.b.sent_msgs("REFER");
    let Some(SipMessage::Request(r)) = refers.first() else { panic!("no REFER sent") };
    assert_eq!(r.headers.get("Refer-To"), Some(format!("<{target}>").as_str()));
    assert!(r.headers.get("Referred-By").is_some_and(|v| v.starts_with("<sip:skald@")));
    assert!(r.headers.get("CSeq").is_some_and(|c| c.ends_with("REFER")));
}

#[test]
fn a_refused_refer_is_reported() {
    let mut p = SipPair::new();
    let (a, b) = establish(&mut p);
    let now = p.now;
    p.b.ep.refer(b, "sip:tier2@127.0.0.1:5090", now).unwrap();
    p.run_for(ms(100));
    // skald's own endpoint is not a transferee: it answers 405, and tells
    // its dialog where the peer wanted the call to go.
    assert!(p.b.dialog_events(b).contains(&DialogEvent::ReferFailed { status: 405 }), "{:?}", p.b.dialog_events(b));
    let requested = DialogEvent::ReferRequested { refer_to: "sip:tier2@127.0.0.1:5090".into() };
    assert!(p.a.dialog_events(a).contains(&requested), "{:?}", p.a.dialog_events(a));
}

#[test]
fn refer_needs_a_confirmed_dialog_and_a_sip_uri() {
    let mut p = SipPair::new();
    let (_a, b) = establish(&mut p);
    let now = p.now;
    assert!(p.b.ep.refer(b, "http://example.com", now).is_err());
    assert!(p.b.ep.refer(DialogId(999), "sip:x@y", now).is_err());
}

#[test]
fn notify_progress_is_reported_until_the_final_status() {
    let mut p = SipPair::new();
    let (a, b) = establish(&mut p);
    let mut d = p.a.ep.dialog(a).expect("A's dialog").clone();
    notify(&mut p, &mut d, "SIP/2.0 100 Trying\r\n", "active;expires=60");
    notify(&mut p, &mut d, "SIP/2.0 200 OK\r\n", "terminated;reason=noresource");
    let ev = p.b.dialog_events(b);
    assert!(ev.contains(&DialogEvent::ReferProgress { status: 100, done: false }), "{ev:?}");
    assert!(ev.contains(&DialogEvent::ReferProgress { status: 200, done: true }), "{ev:?}");
    let oks: Vec<_> = p
        .b
        .sent_msgs("SIP/2.0 200")
        .into_iter()
        .filter(|m| matches!(m, SipMessage::Response(r) if r.headers.get("CSeq").is_some_and(|c| c.ends_with("NOTIFY"))))
        .collect();
    assert_eq!(oks.len(), 2, "each NOTIFY answered 200");
}

#[test]
fn sipfrag_status_lines() {
    use crate::sip::proto::endpoint::sipfrag_status;
    assert_eq!(sipfrag_status(b"SIP/2.0 180 Ringing\r\n"), Some(180));
    assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here"), Some(486));
    assert_eq!(sipfrag_status(b"INVITE sip:x SIP/2.0"), None);
    assert_eq!(sipfrag_status(b""), None);
}
