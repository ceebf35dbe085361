//! The registrar (RFC 3261 §10.3) behind a [`SipEndpoint`], in virtual
//! time: REGISTERs go in as datagrams, responses come out of the non-INVITE
//! server transaction, bindings and events are read back.

use super::config;
use crate::sip::msg::{self, Response, SipMessage};
use crate::sip::proto::auth::{self, Algorithm, Challenge};
use crate::sip::proto::registrar::{Registrar, RegistrarConfig, RegistrarEvent, UnregisterReason};
use crate::sip::proto::{ALLOW_WITH_REGISTER, Event, Output, SipEndpoint, Transport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The packet source of the phone (behind NAT: its Contact says 10.0.0.7).
const PHONE: ([u8; 4], u16) = ([192, 0, 2, 7], 40123);
const RURI: &str = "sip:127.0.0.1:5060";

fn t0() -> Instant {
    crate::test_clock::epoch()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A test phone: its address, Call-ID, next CSeq and branch counter.
struct Phone {
    from: SocketAddr,
    call_id: String,
    cseq: u32,
    branch: u32,
}

struct Rig {
    ep: SipEndpoint,
    events: Vec<RegistrarEvent>,
    /// Source of the last request (responses go back there: rport).
    last_from: SocketAddr,
}

fn rig() -> Rig {
    let mut ep = SipEndpoint::new(config(5060), 3, t0());
    let users = vec![("alice".to_string(), "secret".to_string()), ("bob".to_string(), "hunter2".to_string())];
    ep.set_registrar(Some(Registrar::new(RegistrarConfig::new("skald", users), [7; 32], t0())));
    Rig { ep, events: Vec::new(), last_from: SocketAddr::from(PHONE) }
}

impl Phone {
    fn new(call_id: &str) -> Phone {
        Phone { from: SocketAddr::from(PHONE), call_id: call_id.into(), cseq: 1, branch: 0 }
    }

    /// A REGISTER for `aor` with `extra` header lines; uses the next CSeq
    /// and a new branch.
    fn register(&mut self, aor: &str, extra: &str) -> String {
        self.branch += 1;
        let text = format!(
            "REGISTER {RURI} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK{}-{};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{aor}@127.0.0.1>;tag=ph1\r\nTo: <sip:{aor}@127.0.0.1>\r\nCall-ID: {}\r\n\
CSeq: {} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n",
            self.call_id, self.branch, self.call_id, self.cseq
        );
        self.cseq += 1;
        text
    }
}

impl Rig {
    /// Sends `text` from `from` at `now`; returns the one response.
    fn send(&mut self, from: SocketAddr, text: &str, now: Instant) -> Response {
        self.last_from = from;
        self.ep.handle_datagram(from, Transport::Udp, text.as_bytes(), now);
        let out = self.drain();
        assert_eq!(out.len(), 1, "one response expected, got {}", out.len());
        out.into_iter().next().unwrap()
    }

    fn drain(&mut self) -> Vec<Response> {
        let mut out = Vec::new();
        loop {
            match self.ep.poll_output() {
                Output::Transmit(t) => match msg::parse(&t.bytes) {
                    Ok(SipMessage::Response(r)) => {
                        assert_eq!(t.dest, self.last_from, "rport: back to the packet source");
                        out.push(r)
                    }
                    other => panic!("unexpected transmit {other:?}"),
                },
                Output::Event(Event::Registrar(e)) => self.events.push(e),
                Output::Event(e) => panic!("unexpected event {e:?}"),
                Output::Timeout(_) => return out,
            }
        }
    }

    fn timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        assert!(self.drain().is_empty());
    }

    /// REGISTER, 401, REGISTER with credentials: the final response.
    fn register_as(&mut self, phone: &mut Phone, aor: &str, user: &str, pw: &str, extra: &str, now: Instant) -> Response {
        let r = self.send(phone.from, &phone.register(aor, extra), now);
        assert_eq!(r.status, 401, "{r:?}");
        let auth = answer(&r, Algorithm::Md5, user, pw);
        self.send(phone.from, &phone.register(aor, &format!("Authorization: {auth}\r\n{extra}")), now)
    }
}

/// The registrar's own next timeout (the endpoint's also has the
/// transactions' timers).
fn reg_timeout(rig: &Rig) -> Option<Instant> {
    rig.ep.registrar().and_then(|r| r.poll_timeout())
}

/// The challenge of `alg` in a 401.
fn challenge(r: &Response, alg: Algorithm) -> Challenge {
    r.headers
        .get_all("WWW-Authenticate")
        .filter_map(|v| Challenge::parse(v).ok())
        .find(|c| c.algorithm == alg)
        .unwrap_or_else(|| panic!("no {alg:?} challenge in {r:?}"))
}

fn answer(r: &Response, alg: Algorithm, user: &str, pw: &str) -> String {
    auth::authorization(&challenge(r, alg), user, pw, "REGISTER", RURI, "c0ffee", 1)
}

fn contacts(r: &Response) -> Vec<String> {
    r.headers.list("Contact").into_iter().map(str::to_string).collect()
}

const CONTACT: &str = "Contact: <sip:alice@10.0.0.7:5062;transport=udp>;+sip.instance=\"<urn:uuid:1>\"\r\n";

#[test]
fn challenge_then_good_credentials_gives_200_with_bindings() {
    let mut rig = rig();
    let mut phone = Phone::new("reg-1");
    let r = rig.send(phone.from, &phone.register("alice", CONTACT), t0());
    assert_eq!((r.status, r.reason.as_str()), (401, "Unauthorized"));
    assert!(r.headers.to().unwrap().tag().is_some());
    let offered: Vec<Challenge> = r.headers.get_all("WWW-Authenticate").map(|v| Challenge::parse(v).unwrap()).collect();
    assert_eq!(offered.iter().map(|c| c.algorithm).collect::<Vec<_>>(), [Algorithm::Md5, Algorithm::Sha256]);
    assert!(offered.iter().all(|c| c.realm == "skald" && c.offers_auth_qop() && !c.stale));
    assert!(rig.events.is_empty() && rig.ep.bindings("alice", t0()).is_empty());

    let auth = answer(&r, Algorithm::Md5, "alice", "secret");
    let ok = rig.send(phone.from, &phone.register("alice", &format!("Authorization: {auth}\r\n{CONTACT}")), t0() + secs(1));
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(contacts(&ok), ["<sip:alice@10.0.0.7:5062;transport=udp>;expires=3600"]);
    let b = rig.ep.bindings("alice", t0() + secs(1));
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].contact, "sip:alice@10.0.0.7:5062;transport=udp");
    assert_eq!(b[0].source, SocketAddr::from(PHONE), "reached where it registered from");
    assert_eq!(b[0].transport, Transport::Udp);
    assert_eq!(b[0].expires_at, t0() + secs(3601));
    assert_eq!(
        rig.events,
        [RegistrarEvent::Registered {
            aor: "alice".into(),
            contact: "sip:alice@10.0.0.7:5062;transport=udp".into(),
            source: SocketAddr::from(PHONE),
            expires: secs(3600),
        }]
    );
    assert_eq!(reg_timeout(&rig), Some(t0() + secs(3601)), "next timeout: the binding's expiry");

    // SHA-256 works too (a refresh of the same contact), and the remaining
    // time is listed.
    let r = rig.send(phone.from, &phone.register("alice", "Expires: 600\r\n"), t0() + secs(100));
    let auth = answer(&r, Algorithm::Sha256, "alice", "secret");
    let ok = rig.send(phone.from, &phone.register("alice", &format!("Authorization: {auth}\r\nExpires: 600\r\n{CONTACT}")), t0() + secs(100));
    assert_eq!(ok.status, 200);
    assert_eq!(contacts(&ok), ["<sip:alice@10.0.0.7:5062;transport=udp>;expires=600"]);
    assert_eq!(rig.ep.bindings("alice", t0() + secs(100)).len(), 1);
}

#[test]
fn register_is_allowed_only_with_the_registrar_on() {
    let mut rig = rig();
    let opts = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bKo1;rport\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let r = rig.send(SocketAddr::from(PHONE), opts, t0());
    assert_eq!(r.headers.get("Allow"), Some(ALLOW_WITH_REGISTER));
    rig.ep.set_registrar(None);
    let mut phone = Phone::new("off");
    let r = rig.send(phone.from, &phone.register("alice", CONTACT), t0());
    assert_eq!(r.status, 405);
    assert!(!r.headers.get("Allow").unwrap().contains("REGISTER"));
}

#[test]
fn retransmitted_register_is_absorbed_by_the_transaction() {
    let mut rig = rig();
    let mut phone = Phone::new("rtx");
    let r = rig.send(phone.from, &phone.register("alice", CONTACT), t0());
    let auth = answer(&r, Algorithm::Md5, "alice", "secret");
    let req = phone.register("alice", &format!("Authorization: {auth}\r\n{CONTACT}"));
    let first = rig.send(phone.from, &req, t0());
    let again = rig.send(phone.from, &req, t0() + Duration::from_millis(500));
    assert_eq!(first, again, "the same 200 again, from the transaction");
    assert_eq!(rig.events.len(), 1, "the registrar saw the REGISTER once");
}

#[test]
fn wrong_password_and_unknown_user_get_403_after_the_same_challenge() {
    let mut rig = rig();
    let mut phone = Phone::new("bad");
    let r = rig.register_as(&mut phone, "alice", "alice", "wrong", CONTACT, t0());
    assert_eq!((r.status, r.reason.as_str()), (403, "Forbidden"));
    assert!(!r.headers.contains("WWW-Authenticate"));
    // An unknown user is challenged like a known one, then refused.
    let mut mallory = Phone::new("who");
    let challenge_known = rig.send(phone.from, &phone.register("alice", ""), t0());
    let challenge_unknown = rig.send(mallory.from, &mallory.register("mallory", ""), t0());
    assert_eq!(challenge_known.status, challenge_unknown.status);
    assert_eq!(challenge_known.headers.get_all("WWW-Authenticate").count(), challenge_unknown.headers.get_all("WWW-Authenticate").count());
    let r = rig.register_as(&mut mallory, "mallory", "mallory", "guess", "", t0());
    assert_eq!(r.status, 403);
    assert!(rig.events.is_empty() && rig.ep.bindings("alice", t0()).is_empty());
}

#[test]
fn old_nonce_gets_401_stale_and_a_forged_one_a_new_challenge() {
    let mut rig = rig();
    let mut phone = Phone::new("stale");
    let r = rig.send(phone.from, &phone.register("alice", CONTACT), t0());
    let auth = answer(&r, Algorithm::Md5, "alice", "secret");
    // Valid response, but the nonce is 301 s old: stale, not a failure.
    let later = t0() + secs(301);
    let stale = rig.send(phone.from, &phone.register("alice", &format!("Authorization: {auth}\r\n{CONTACT}")), later);
    assert_eq!(stale.status, 401);
    let ch = challenge(&stale, Algorithm::Md5);
    assert!(ch.stale);
    assert_ne!(ch.nonce, challenge(&r, Algorithm::Md5).nonce);
    // Retrying with the fresh nonce succeeds.
    let auth = answer(&stale, Algorithm::Md5, "alice", "secret");
    let ok = rig.send(phone.from, &phone.register("alice", &format!("Authorization: {auth}\r\n{CONTACT}")), later);
    assert_eq!(ok.status, 200);
    // A wrong password on an old nonce is refused, not called stale (that
    // would tell the guesser the password was right).
    let bad = answer(&r, Algorithm::Md5, "alice", "wrong");
    let r2 = rig.send(phone.from, &phone.register("alice", &format!("Authorization: {bad}\r\n{CONTACT}")), later);
    assert_eq!(r2.status, 403);
    // A nonce skald did not make: a plain new challenge.
    let forged = auth.replacen("nonce=\"", "nonce=\"0", 1);
    let r3 = rig.send(phone.from, &phone.register("alice", &format!("Authorization: {forged}\r\n{CONTACT}")), later);
    assert_eq!(r3.status, 401);
    assert!(!challenge(&r3, Algorithm::Md5).stale);
}

#[test]
fn binding_expires_exactly_at_its_expiry() {
    let mut rig = rig();
    let mut phone = Phone::new("exp");
    let ok = rig.register_as(&mut phone, "alice", "alice", "secret", &format!("Expires: 60\r\n{CONTACT}"), t0());
    assert_eq!(contacts(&ok), ["<sip:alice@10.0.0.7:5062;transport=udp>;expires=60"]);
    assert_eq!(reg_timeout(&rig), Some(t0() + secs(60)));
    rig.events.clear();
    let just_before = t0() + secs(60) - Duration::from_millis(1);
    rig.timeout(just_before);
    assert_eq!(rig.ep.bindings("alice", just_before).len(), 1);
    assert!(rig.events.is_empty());
    rig.timeout(t0() + secs(60));
    assert!(rig.ep.bindings("alice", t0() + secs(60)).is_empty());
    assert_eq!(
        rig.events,
        [RegistrarEvent::Unregistered {
            aor: "alice".into(),
            contact: "sip:alice@10.0.0.7:5062;transport=udp".into(),
            reason: UnregisterReason::Expired,
        }]
    );
    assert_eq!(rig.ep.registrar().unwrap().binding_count(), 0);
}

#[test]
fn expires_zero_removes_one_binding() {
    let mut rig = rig();
    let mut phone = Phone::new("zero");
    let two = "Contact: <sip:alice@10.0.0.7:5062>, <sip:alice@10.0.0.8:5062>;expires=120\r\n";
    let ok = rig.register_as(&mut phone, "alice", "alice", "secret", two, t0());
    assert_eq!(contacts(&ok), ["<sip:alice@10.0.0.7:5062>;expires=3600", "<sip:alice@10.0.0.8:5062>;expires=120"]);
    rig.events.clear();
    let ok = rig.register_as(&mut phone, "alice", "alice", "secret", "Contact: <sip:alice@10.0.0.8:5062>;expires=0\r\n", t0() + secs(1));
    assert_eq!(contacts(&ok), ["<sip:alice@10.0.0.7:5062>;expires=3599"]);
    assert_eq!(
        rig.events,
        [RegistrarEvent::Unregistered {
            aor: "alice".into(),
            contact: "sip:alice@10.0.0.8:5062".into(),
            reason: UnregisterReason::Removed,
        }]
    );
}

#[test]
fn star_with_expires_zero_removes_all() {
    let mut rig = rig();
    let mut phone = Phone::new("star");
    let two = "Contact: <sip:alice@10.0.0.7:5062>\r\nContact: <sip:alice@10.0.0.8:5062>\r\n";
    assert_eq!(rig.register_as(&mut phone, "alice", "alice", "secret", two, t0()).status, 200);
    let r = rig.register_as(&mut phone, "alice", "alice", "secret", "Contact: *\r\n", t0());
    assert_eq!(r.status, 400, "* without Expires: 0");
    let r = rig.register_as(&mut phone, "alice", "alice", "secret", "Contact: *, <sip:alice@10.0.0.9>\r\nExpires: 0\r\n", t0());
    assert_eq!(r.status, 400, "* with another contact");
    assert_eq!(rig.ep.bindings("alice", t0()).len(), 2);
    rig.events.clear();
    let ok = rig.register_as(&mut phone, "alice", "alice", "secret", "Contact: *\r\nExpires: 0\r\n", t0());
    assert_eq!(ok.status, 200);
    assert!(contacts(&ok).is_empty());
    assert!(rig.ep.bindings("alice", t0()).is_empty());
    assert_eq!(rig.events.len(), 2);
    assert!(rig.events.iter().all(|e| matches!(e, RegistrarEvent::Unregistered { reason: UnregisterReason::Removed, .. })));
}

#[test]
fn too_brief_gets_423_with_min_expires_and_long_ones_are_capped() {
    let mut rig = rig();
    let mut phone = Phone::new("brief");
    let r = rig.register_as(&mut phone, "alice", "alice", "secret", "Contact: <sip:alice@10.0.0.7>;expires=30\r\n", t0());
    assert_eq!((r.status, r.reason.as_str()), (423, "Interval Too Brief"));
    assert_eq!(r.headers.get("Min-Expires"), Some("60"));
    assert!(rig.ep.bindings("alice", t0()).is_empty());
    let r = rig.register_as(&mut phone, "alice", "alice", "secret", "Expires: 86400\r\nContact: <sip:alice@10.0.0.7>\r\n", t0());
    assert_eq!(contacts(&r), ["<sip:alice@10.0.0.7>;expires=7200"]);
}

#[test]
fn authenticated_user_must_match_the_aor() {
    let mut rig = rig();
    let mut phone = Phone::new("mismatch");
    let r = rig.register_as(&mut phone, "bob", "alice", "secret", "Contact: <sip:bob@10.0.0.7>\r\n", t0());
    assert_eq!(r.status, 403);
    assert!(rig.ep.bindings("bob", t0()).is_empty());
    // Not a password failure: alice is not blocked by it.
    for _ in 0..6 {
        let r = rig.register_as(&mut phone, "bob", "alice", "secret", "", t0());
        assert_eq!(r.status, 403);
    }
    assert_eq!(rig.register_as(&mut phone, "alice", "alice", "secret", CONTACT, t0()).status, 200);
    let no_user = phone.register("alice", "").replace("To: <sip:alice@127.0.0.1>", "To: <sip:127.0.0.1>");
    assert_eq!(rig.send(phone.from, &no_user, t0()).status, 404);
}

#[test]
fn same_call_id_needs_a_higher_cseq() {
    let mut rig = rig();
    let mut phone = Phone::new("order");
    let r = rig.send(phone.from, &phone.register("alice", ""), t0());
    let auth = answer(&r, Algorithm::Md5, "alice", "secret");
    let extra = format!("Authorization: {auth}\r\n{CONTACT}");
    phone.cseq = 5;
    assert_eq!(rig.send(phone.from, &phone.register("alice", &extra), t0()).status, 200);
    phone.cseq = 5; // same CSeq, new transaction (a replay)
    let r = rig.send(phone.from, &phone.register("alice", &extra), t0());
    assert_eq!((r.status, r.reason.as_str()), (500, "Server Internal Error"));
    phone.cseq = 4;
    assert_eq!(rig.send(phone.from, &phone.register("alice", &extra), t0()).status, 500);
    phone.cseq = 6;
    assert_eq!(rig.send(phone.from, &phone.register("alice", &extra), t0()).status, 200);
    // Another Call-ID (the phone rebooted) may start low again.
    let mut rebooted = Phone::new("order-2");
    assert_eq!(rig.register_as(&mut rebooted, "alice", "alice", "secret", CONTACT, t0()).status, 200);
    let b = rig.ep.bindings("alice", t0());
    assert_eq!((b.len(), b[0].call_id.as_str(), b[0].cseq), (1, "order-2", 2));
}

#[test]
fn a_register_without_contact_is_a_query() {
    let mut rig = rig();
    let mut phone = Phone::new("query");
    let r = rig.register_as(&mut phone, "alice", "alice", "secret", "", t0());
    assert_eq!((r.status, contacts(&r).len()), (200, 0));
    rig.register_as(&mut phone, "alice", "alice", "secret", "Contact: <sip:alice@10.0.0.7>;expires=300\r\n", t0());
    rig.events.clear();
    let r = rig.register_as(&mut phone, "alice", "alice", "secret", "", t0() + secs(100));
    assert_eq!(contacts(&r), ["<sip:alice@10.0.0.7>;expires=200"]);
    assert!(rig.events.is_empty(), "a query changes nothing");
}

#[test]
fn sixth_failure_from_one_address_is_blocked_for_60_s() {
    let mut rig = rig();
    let mut phone = Phone::new("brute");
    let r = rig.send(phone.from, &phone.register("alice", ""), t0());
    let good = answer(&r, Algorithm::Md5, "alice", "secret");
    let users = ["alice", "bob", "carol", "dave", "erin"];
    for (i, user) in users.iter().enumerate() {
        let at = t0() + secs(i as u64);
        let r = rig.register_as(&mut phone, user, user, "wrong", "", at);
        assert_eq!(r.status, 403, "failure {}", i + 1);
    }
    // From the 6th attempt on: 403, no challenge, even with the right password.
    let blocked_at = t0() + secs(4);
    for (extra, what) in [(String::new(), "no credentials"), (format!("Authorization: {good}\r\n{CONTACT}"), "right password")] {
        let r = rig.send(phone.from, &phone.register("alice", &extra), blocked_at + secs(59));
        assert_eq!(r.status, 403, "{what}");
        assert!(!r.headers.contains("WWW-Authenticate"), "{what}");
    }
    // Another address is not blocked (no user reached 5 failures).
    let mut other = Phone::new("other");
    other.from = SocketAddr::from(([192, 0, 2, 99], 5060));
    assert_eq!(rig.send(other.from, &other.register("alice", ""), blocked_at).status, 401);
    // 60 s after the 5th failure the block lifts.
    let lifted = blocked_at + secs(60);
    let r = rig.send(phone.from, &phone.register("alice", ""), lifted);
    assert_eq!(r.status, 401);
    let auth = answer(&r, Algorithm::Md5, "alice", "secret");
    let ok = rig.send(phone.from, &phone.register("alice", &format!("Authorization: {auth}\r\n{CONTACT}")), lifted);
    assert_eq!(ok.status, 200);
}

#[test]
fn five_failures_for_one_user_from_many_addresses_block_that_user() {
    let mut rig = rig();
    for i in 0..5u8 {
        let mut p = Phone::new(&format!("spray-{i}"));
        p.from = SocketAddr::from(([198, 51, 100, i + 1], 5060));
        assert_eq!(rig.register_as(&mut p, "alice", "alice", "wrong", "", t0()).status, 403);
    }
    // Yet another address: alice is blocked, bob is not.
    let mut p = Phone::new("spray-x");
    p.from = SocketAddr::from(([198, 51, 100, 200], 5060));
    let r = rig.send(p.from, &p.register("alice", ""), t0() + secs(1));
    assert_eq!(r.status, 403);
    assert!(!r.headers.contains("WWW-Authenticate"));
    assert_eq!(rig.send(p.from, &p.register("bob", ""), t0() + secs(1)).status, 401);
    assert_eq!(rig.send(p.from, &p.register("alice", ""), t0() + secs(60)).status, 401);
}

#[test]
fn failures_spread_over_more_than_the_window_do_not_block() {
    let mut rig = rig();
    let mut phone = Phone::new("slow");
    for i in 0..8u64 {
        // one failure every 15 s: never 5 within 60 s
        let r = rig.register_as(&mut phone, "alice", "alice", "wrong", "", t0() + secs(i * 15));
        assert_eq!(r.status, 403);
    }
    let r = rig.register_as(&mut phone, "alice", "alice", "secret", CONTACT, t0() + secs(8 * 15));
    assert_eq!(r.status, 200);
    // Failure records are forgotten once stale (memory stays bounded).
    rig.timeout(t0() + secs(8 * 15 + 3601));
    assert_eq!(reg_timeout(&rig), None);
}
