//! End to end: a transfer between two skald instances with the call's
//! context in SIP headers. Instance A runs the Tier-1 agent, instance B the
//! front desk (another config). The caller's phone is sipp, a real RFC 3515
//! transferee: it answers A's REFER with 202, reports progress in NOTIFYs,
//! and its new call to the Refer-To target (a second sipp, started by the
//! test from the Refer-To URI sipp logged) carries the URI's headers
//! (`X-Skald-Context`) as RFC 3515 §2.1 asks. The test is the caller's RTP
//! endpoint on both legs and speaks with Piper's voice.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Both instances trust contexts signed with this key.
const KEY: &str = "test-context-key-shared-by-a-and-b";

/// Config dir with the dental agent; `edit` changes the agent file.
fn config(dir: &Path, edit: impl Fn(String) -> String) -> String {
    example_config_with_agents(dir, |name, text| if name == "dental-front-desk.yaml" { edit(text) } else { text })
}

/// Instance B: the front desk, greeting differently.
fn start_b(dir: &Path) -> Skald {
    let yaml = config(dir, |t| {
        t.replace("greeting: Thanks for calling Bright Smile Dental.", "greeting: Front desk of Bright Smile Dental.")
    });
    Skald::start_with_env(&yaml, &[("SKALD_CONTEXT_KEY", KEY)])
}

/// Instance A: Tier-1, transferring to B's front desk.
fn start_a(dir: &Path, b: &Skald) -> Skald {
    start_a_to(dir, &b.uri("frontdesk"), "cold", "spoken")
}

/// Instance A transferring to `target` in `mode` (`cold`, `warm`) with
/// `brief` (`spoken`, `context`).
fn start_a_to(dir: &Path, target: &str, mode: &str, brief: &str) -> Skald {
    let yaml = config(dir, |t| {
        t.replace("target: sip:frontdesk@clinic.example", &format!("target: {target}"))
            .replace("  mode: cold\n", &format!("  mode: {mode}\n"))
            .replace("  brief: spoken\n", &format!("  brief: {brief}\n"))
    });
    Skald::start_with_env(&yaml, &[("SKALD_CONTEXT_KEY", KEY)])
}

/// The caller's phone toward A: a plain call (sipp, `uac_call.xml`) with
/// the test's RTP endpoint, hanging up after `hold_ms`.
fn caller(a: &Skald, dir: &Path, peer: &RtpPeer, hold_ms: u64) -> std::thread::JoinHandle<std::process::Output> {
    call_target(&a.uri("+15550123"), dir, peer, hold_ms)
}

/// What the target's phone does with skald's INVITE.
enum Target {
    Answer,
    Hold,
    Busy,
}

/// A person's phone as the transfer target (sipp, `uas_target.xml`): it
/// checks the INVITE's context headers and caller number, rings for
/// `ring_ms`, then does what `part` says (`tests/sipp/target_*.xml.part`):
/// answers with media at `peer` (`Answer`), answers and puts the call on
/// hold and back (`Hold`), or refuses with 486 Busy Here (`Busy`). Returns
/// sipp's thread and its SIP URI.
fn target_phone(dir: &Path, peer: &RtpPeer, ring_ms: u64, part: Target) -> (std::thread::JoinHandle<std::process::Output>, String) {
    let part = match part {
        Target::Answer => "target_answer.xml.part",
        Target::Hold => "target_hold.xml.part",
        Target::Busy => "target_busy.xml.part",
    };
    let vars = [
        ("FROM_RE", "sip:\\+15550199@".to_string()),
        ("RING_MS", ring_ms.to_string()),
        ("MEDIA_PORT", peer.port.to_string()),
        ("BYE_TIMEOUT", "90000".to_string()),
        ("HOLD_AFTER_MS", "2000".to_string()),
        ("HOLD_MS", "2000".to_string()),
    ];
    sipp_target(dir, "sam", part, &vars)
}

/// Share of `w`'s energy (8 kHz samples) at 440 and 480 Hz, the two
/// ringback tones: about 1 for ringback, small for speech.
fn ringback_share(w: &[i16]) -> f64 {
    let energy: f64 = w.iter().map(|&x| (x as f64).powi(2)).sum();
    let power = |hz: f64| {
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &x) in w.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * hz * n as f64 / 8000.0;
            re += x as f64 * ph.cos();
            im -= x as f64 * ph.sin();
        }
        re * re + im * im
    };
    (power(440.0) + power(480.0)) / (w.len() as f64 / 2.0 * energy.max(1.0))
}

/// Waits until the live call on `skald` has an event `kind`; returns when.
fn wait_event(skald: &Skald, kind: &str, timeout: Duration) -> Instant {
    wait_events(skald, kind, 1, timeout)
}

/// Waits until the live call on `skald` has `n` events `kind`; returns when.
fn wait_events(skald: &Skald, kind: &str, n: usize, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(c) = skald.calls().first() {
            let d = skald.get_json(&format!("/api/v1/calls/{}", c["id"].as_str().unwrap()));
            if events(&d, kind).len() >= n {
                return Instant::now();
            }
        }
        assert!(Instant::now() < deadline, "no `{kind}` event in {timeout:?}:\n{}", skald.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until A's call is bridged to the target; returns when.
fn wait_bridged(a: &Skald, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if a.calls().iter().any(|c| c["state"] == "bridged") {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "the call was not bridged in {timeout:?}:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the peer heard after `since` until the far side was quiet for
/// `quiet`, transcribed (lowercase).
fn heard_after(peer: &RtpPeer, since: Instant, quiet: Duration) -> String {
    let end = peer.wait_agent_turn(since, quiet, Duration::from_secs(30));
    let frames: Vec<_> = peer.heard().into_iter().filter(|(t, _)| *t >= since && *t <= end).collect();
    transcribe_heard(&frames).to_lowercase()
}

/// sipp as the caller's phone toward A: the transferee scenario with
/// `refer_status` and `end` (what happens after the REFER).
fn transferee(
    a: &Skald,
    dir: &Path,
    peer: &RtpPeer,
    refer_status: &str,
    after_refer: &str,
    end: &str,
) -> (std::thread::JoinHandle<std::process::Output>, std::path::PathBuf) {
    let part = |name: &str| std::fs::read_to_string(repo().join("tests/sipp").join(name)).unwrap();
    let mut s = std::fs::read_to_string(scenario("uac_transferee.xml")).unwrap();
    s = s.replace("@AFTER_REFER@", &if after_refer.is_empty() { String::new() } else { part(after_refer) });
    s = s.replace("@END@", &part(end));
    for (k, v) in [
        ("MEDIA_PORT", peer.port.to_string()),
        ("MEDIA", String::new()),
        ("REFER_STATUS", refer_status.to_string()),
        ("REFER_TIMEOUT", "60000".to_string()),
        ("CONNECT_MS", "4000".to_string()),
        ("FINAL_STATUS", "200 OK".to_string()),
        ("BYE_TIMEOUT", "20000".to_string()),
        ("HANGUP_MS", "25000".to_string()),
    ] {
        s = s.replace(&format!("@{k}@"), &v);
    }
    let sf = dir.join("transferee.xml");
    std::fs::write(&sf, s).unwrap();
    let log = dir.join("transferee.log");
    let target = format!("127.0.0.1:{}", a.sip_port);
    let (sf, logf) = (sf.display().to_string(), log.display().to_string());
    let t = std::thread::spawn(move || {
        let p = free_port().to_string();
        sipp(
            &[&target, "-s", "+15550123", "-i", "127.0.0.1", "-p", &p, "-m", "1", "-sf", &sf, "-trace_logs", "-log_file", &logf],
            Duration::from_secs(120),
        )
    });
    (t, log)
}

/// The Refer-To URI sipp logged, once the REFER arrived.
fn wait_refer_to(log: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("REFER-TO ")) {
            return line.split("REFER-TO ").nth(1).unwrap().trim().to_string();
        }
        assert!(Instant::now() < deadline, "no REFER within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The transferee's call to the target: INVITE to `uri`'s host with the
/// URI's headers copied into the request (RFC 3515 §2.1).
fn call_target(uri: &str, dir: &Path, peer: &RtpPeer, hold_ms: u64) -> std::thread::JoinHandle<std::process::Output> {
    sipp_phone(uri, "uac_call.xml", dir, peer, hold_ms)
}

fn detail(skald: &Skald) -> serde_json::Value {
    let c = &skald.wait_ended(1, Duration::from_secs(30))[0];
    skald.get_json(&format!("/api/v1/calls/{}", c["id"].as_str().unwrap()))
}

fn events(d: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    d["events"].as_array().map(|a| a.iter().filter(|e| e["kind"] == kind).cloned().collect()).unwrap_or_default()
}

fn agent_turns(d: &serde_json::Value) -> Vec<String> {
    d["turns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["speaker"] == "agent")
        .map(|t| t["text"].as_str().unwrap().to_string())
        .collect()
}

/// The caller books halfway on A, asks for a person, is REFERred to B with
/// the context, and B's first words carry on the booking.
#[test]
fn a_cold_transfer_carries_the_context_to_the_next_skald() {
    let book = piper_ulaw("I would like to book a cleaning next Tuesday.");
    let person = piper_ulaw("Can I talk to a person please?");
    let dir = tempfile::tempdir().unwrap();
    let b = start_b(&dir.path().join("b"));
    let a = start_a(&dir.path().join("a"), &b);
    let peer = RtpPeer::start();
    let (sipp_a, log) = transferee(&a, dir.path(), &peer, "202 Accepted", "notify_progress.xml.part", "end_wait_bye.xml.part");
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&book);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&person);
    let refer_to = wait_refer_to(&log, Duration::from_secs(30));
    eprintln!("Refer-To: {refer_to}");
    assert!(refer_to.starts_with(&format!("sip:frontdesk@127.0.0.1:{}?X-Skald-Context=", b.sip_port)), "{refer_to}");
    // The transferee calls the target with the headers.
    let peer_b = RtpPeer::start();
    let sipp_b = call_target(&refer_to, dir.path(), &peer_b, 12_000);
    let t0 = Instant::now();
    let end = peer_b.wait_agent_turn(t0, Duration::from_millis(1500), Duration::from_secs(25));
    let greeting: Vec<_> = peer_b.heard().into_iter().filter(|(t, _)| *t <= end).collect();
    eprintln!("B's greeting: {} frames, {} loud", greeting.len(), greeting.iter().filter(|(_, f)| is_loud(f)).count());
    let heard = transcribe_heard(&greeting).to_lowercase();
    eprintln!("B said: {heard}");
    assert!(sipp_a.join().unwrap().status.success(), "transferee scenario:\n{}", a.log());
    assert!(sipp_b.join().unwrap().status.success(), "call to B:\n{}", b.log());

    let da = detail(&a);
    assert_eq!(da["end_reason"], "transferred", "{da:#}");
    for kind in ["transfer.started", "transfer.accepted", "transfer.completed"] {
        assert_eq!(events(&da, kind).len(), 1, "A's `{kind}` event: {:#}", da["events"]);
    }
    let sent = &events(&da, "transfer.started")[0]["data"]["context"];
    assert_eq!(sent["intent"], "book", "{sent:#}");
    assert_eq!(sent["slots"]["visit_type"], "cleaning");

    let db = detail(&b);
    let got = events(&db, "context.received");
    assert_eq!(got.len(), 1, "B stored the context: {:#}", db["events"]);
    assert_eq!(got[0]["data"]["intent"], "book");
    assert_eq!(got[0]["data"]["slots"]["visit_type"], "cleaning");
    assert_eq!(got[0]["data"]["previous_agents"][0], "dental-front-desk");
    let first = &agent_turns(&db)[0];
    assert!(first.starts_with("Front desk of Bright Smile Dental. I see you were booking a cleaning for Tuesday"), "{first}");
    assert!(heard.contains("cleaning") && heard.contains("tuesday"), "B's first words use the context: {heard}");
}

/// A tampered context is ignored: the call is a fresh call.
#[test]
fn a_tampered_context_header_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let b = start_b(&dir.path().join("b"));
    let ctx = r#"{"v":1,"intent":"book","slots":{"visit_type":"cleaning"}}"#;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // A payload that says "book", signed with the wrong key.
    let forged = format!("{}.{}", b64.encode(ctx), b64.encode([7u8; 32]));
    let uri = format!("sip:frontdesk@127.0.0.1:{}?X-Skald-Context={forged}", b.sip_port);
    let peer = RtpPeer::start();
    let t = call_target(&uri, dir.path(), &peer, 6_000);
    assert!(t.join().unwrap().status.success());
    let db = detail(&b);
    assert!(events(&db, "context.received").is_empty(), "{:#}", db["events"]);
    assert_eq!(events(&db, "context.rejected").len(), 1, "{:#}", db["events"]);
    assert_eq!(agent_turns(&db)[0], "Front desk of Bright Smile Dental. How can I help you today?");
    assert!(b.log().contains("context headers ignored"), "a warning is logged");
}

/// A transferee that refuses the REFER (603): skald calls the target itself
/// with the context and bridges the caller to it.
#[test]
fn a_refused_refer_is_bridged_by_skald() {
    let book = piper_ulaw("I would like to book a cleaning next Tuesday.");
    let person = piper_ulaw("Can I talk to a person please?");
    let dir = tempfile::tempdir().unwrap();
    let b = start_b(&dir.path().join("b"));
    let a = start_a(&dir.path().join("a"), &b);
    let peer = RtpPeer::start();
    let (sipp_a, log) = transferee(&a, dir.path(), &peer, "603 Decline", "", "end_send_bye.xml.part");
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&book);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&person);
    wait_refer_to(&log, Duration::from_secs(30));
    let t = wait_bridged(&a, Duration::from_secs(15));
    let heard = heard_after(&peer, t, Duration::from_millis(1500));
    eprintln!("the caller heard through A: {heard}");
    assert!(sipp_a.join().unwrap().status.success(), "{}", a.log());

    let da = detail(&a);
    assert_eq!(da["end_reason"], "remote-bye", "{da:#}");
    assert_eq!(events(&da, "transfer.refer_refused")[0]["data"]["status"], 603, "{:#}", da["events"]);
    let done = events(&da, "transfer.completed");
    assert_eq!(done.len(), 1, "{:#}", da["events"]);
    assert_eq!(done[0]["data"]["bridged"], true);
    assert_eq!(done[0]["data"]["why"], "refer-refused");
    let db = detail(&b);
    assert_eq!(db["end_reason"], "remote-bye", "A hung up B when the caller left: {db:#}");
    assert_eq!(events(&db, "context.received")[0]["data"]["slots"]["visit_type"], "cleaning", "{:#}", db["events"]);
    assert!(db["from_uri"].as_str().unwrap().contains("+15550199"), "the caller's number is presented: {db:#}");
    let first = &agent_turns(&db)[0];
    assert!(first.starts_with("Front desk of Bright Smile Dental. I see you were booking a cleaning for Tuesday"), "{first}");
    assert!(heard.contains("cleaning") && heard.contains("tuesday"), "the caller hears B through A: {heard}");
}

/// Warm transfer to another skald whose agent reads the context (`brief:
/// context`): A calls B while the caller hears ringback, then bridges; the
/// caller hears B's context-aware greeting and talks with B through A.
#[test]
fn a_warm_transfer_hands_the_caller_to_the_next_skald() {
    let book = piper_ulaw("I would like to book a cleaning next Tuesday.");
    let person = piper_ulaw("Can I talk to a person please?");
    let hours = piper_ulaw("What are your opening hours?");
    let dir = tempfile::tempdir().unwrap();
    let b = start_b(&dir.path().join("b"));
    let a = start_a_to(&dir.path().join("a"), &b.uri("frontdesk"), "warm", "context");
    let peer = RtpPeer::start();
    let call = caller(&a, dir.path(), &peer, 45_000);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&book);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&person);
    let t = wait_bridged(&a, Duration::from_secs(30));
    let greeting = heard_after(&peer, t, Duration::from_millis(1500));
    eprintln!("B's greeting through A: {greeting}");
    peer.say(&hours);
    let answer = heard_after(&peer, Instant::now() + Duration::from_secs(2), Duration::from_millis(1500));
    eprintln!("B's answer through A: {answer}");
    assert!(call.join().unwrap().status.success(), "caller:\n{}", a.log());

    let da = detail(&a);
    assert_eq!(da["end_reason"], "remote-bye", "{da:#}");
    let started = events(&da, "transfer.started");
    assert_eq!(started[0]["data"]["mode"], "warm", "{:#}", da["events"]);
    assert_eq!(started[0]["data"]["context"]["intent"], "book");
    assert_eq!(events(&da, "transfer.answered").len(), 1, "{:#}", da["events"]);
    assert_eq!(events(&da, "transfer.completed")[0]["data"]["why"], "warm");
    let db = detail(&b);
    assert_eq!(events(&db, "context.received")[0]["data"]["intent"], "book", "{:#}", db["events"]);
    let first = &agent_turns(&db)[0];
    assert!(first.starts_with("Front desk of Bright Smile Dental. I see you were booking a cleaning for Tuesday"), "{first}");
    assert!(greeting.contains("cleaning") && greeting.contains("tuesday"), "{greeting}");
    let said_to_b: Vec<String> = db["turns"].as_array().unwrap().iter().filter(|t| t["speaker"] == "caller").map(|t| t["text"].as_str().unwrap().to_lowercase()).collect();
    assert!(said_to_b.iter().any(|t| t.contains("opening hours")), "the caller's words reach B: {said_to_b:?}");
    assert!(answer.contains("monday") && answer.contains("friday"), "B's answer reaches the caller: {answer}");
}

/// Warm transfer to a person's phone (`brief: spoken`): the person hears a
/// spoken summary first, then talks with the caller; their phone got the
/// context headers and the caller's number.
#[test]
fn a_warm_transfer_briefs_the_person_then_connects() {
    let book = piper_ulaw("I would like to book a cleaning next Tuesday.");
    let person = piper_ulaw("Can I talk to a person please?");
    let hello = piper_ulaw("Hi, this is Sam from the front desk. How can I help?");
    let dir = tempfile::tempdir().unwrap();
    let sam = RtpPeer::start();
    let (phone, uri) = target_phone(dir.path(), &sam, 1500, Target::Answer);
    let a = start_a_to(&dir.path().join("a"), &uri, "warm", "spoken");
    let peer = RtpPeer::start();
    let call = caller(&a, dir.path(), &peer, 45_000);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&book);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    let asked = Instant::now();
    peer.say(&person);
    let brief = heard_after(&sam, asked, Duration::from_millis(1200));
    eprintln!("Sam heard: {brief}");
    let t = wait_bridged(&a, Duration::from_secs(20));
    sam.say(&hello);
    let heard = heard_after(&peer, t, Duration::from_millis(1200));
    eprintln!("the caller heard: {heard}");
    assert!(call.join().unwrap().status.success(), "caller:\n{}", a.log());
    let out = phone.join().unwrap();
    assert!(out.status.success(), "the person's phone (context headers, caller number, BYE):\n{}\n{}", String::from_utf8_lossy(&out.stderr), a.log());

    assert!(says(&brief, "virtual assistant") && says(&brief, "cleaning"), "the brief: {brief}");
    assert!(says(&heard, "sam") && says(&heard, "front desk"), "the person reaches the caller: {heard}");
    // Ringback (440 + 480 Hz), not silence, while Sam's phone rang and
    // heard the brief.
    let waiting: Vec<i16> = peer.heard().into_iter().filter(|(at, _)| *at > asked && *at < t).flat_map(|(_, f)| f).collect();
    let ringing = waiting.chunks_exact(800).filter(|w| is_loud(w) && ringback_share(w) > 0.6).count();
    assert!(ringing >= 10, "at least 1 s of ringback while waiting: {ringing} × 100 ms");
    let da = detail(&a);
    assert_eq!(events(&da, "transfer.completed")[0]["data"]["mode"], "warm", "{:#}", da["events"]);
    assert_eq!(da["state"], "ended");
}

/// A warm transfer whose target is busy: ringback stops, the caller is
/// told, and the agent goes on with the call.
#[test]
fn a_busy_transfer_target_returns_the_caller_to_the_agent() {
    let person = piper_ulaw("Can I talk to a person please?");
    let hours = piper_ulaw("What are your opening hours?");
    let dir = tempfile::tempdir().unwrap();
    let sam = RtpPeer::start();
    let (phone, uri) = target_phone(dir.path(), &sam, 800, Target::Busy);
    let a = start_a_to(&dir.path().join("a"), &uri, "warm", "spoken");
    let peer = RtpPeer::start();
    let call = caller(&a, dir.path(), &peer, 40_000);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&person);
    let failed_at = wait_event(&a, "transfer.failed", Duration::from_secs(30));
    let sorry = heard_after(&peer, failed_at, Duration::from_millis(900));
    eprintln!("after the busy target: {sorry}");
    peer.say(&hours);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    assert!(phone.join().unwrap().status.success(), "{}", a.log());
    assert!(call.join().unwrap().status.success(), "{}", a.log());
    let da = detail(&a);
    assert_eq!(da["end_reason"], "remote-bye", "{da:#}");
    let failed = events(&da, "transfer.failed");
    assert_eq!(failed.len(), 1, "{:#}", da["events"]);
    assert!(failed[0]["data"]["why"].as_str().unwrap().contains("486"), "{failed:?}");
    let said = agent_turns(&da).join(" | ");
    assert!(said.contains("nobody at the front desk could take your call"), "{said}");
    assert!(said.contains("Monday to Friday"), "the agent goes on: {said}");
    assert!(da["errors"].to_string().contains("transfer to sip:sam@"), "{:#}", da["errors"]);
}

/// The person's softphone puts the bridged caller on hold and back with
/// re-INVITEs (RFC 3264 §8.4: `sendonly`, then `sendrecv`): skald answers
/// each on the target leg (`recvonly`, then `sendrecv`; the phone's
/// scenario checks), records `transfer.hold`, and the call goes on: the
/// caller hears the person after the resume.
#[test]
fn the_person_puts_the_bridged_caller_on_hold_and_back() {
    let person = piper_ulaw("Can I talk to a person please?");
    let back = piper_ulaw("Thanks for holding, this is Sam again.");
    let dir = tempfile::tempdir().unwrap();
    let sam = RtpPeer::start();
    let (phone, uri) = target_phone(dir.path(), &sam, 300, Target::Hold);
    let a = start_a_to(&dir.path().join("a"), &uri, "warm", "context");
    let peer = RtpPeer::start();
    let call = caller(&a, dir.path(), &peer, 25_000);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&person);
    wait_bridged(&a, Duration::from_secs(20));
    // The phone holds 2 s after answering, for 2 s.
    let resumed = wait_events(&a, "transfer.hold", 2, Duration::from_secs(15));
    sam.say(&back);
    let heard = heard_after(&peer, resumed, Duration::from_millis(1200));
    eprintln!("after the resume the caller heard: {heard}");
    let out = phone.join().unwrap();
    assert!(out.status.success(), "the person's phone (hold and resume answered):\n{}\n{}", String::from_utf8_lossy(&out.stderr), a.log());
    assert!(call.join().unwrap().status.success(), "caller:\n{}", a.log());
    assert!(says(&heard, "sam") || says(&heard, "holding"), "the call goes on after the hold: {heard}");
    let da = detail(&a);
    let holds: Vec<bool> = events(&da, "transfer.hold").iter().map(|e| e["data"]["on_hold"].as_bool().unwrap()).collect();
    assert_eq!(holds, [true, false], "{:#}", da["events"]);
    assert_eq!(da["end_reason"], "remote-bye", "{da:#}");
}
