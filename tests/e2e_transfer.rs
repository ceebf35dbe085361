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
    let agents = dir.join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    for e in std::fs::read_dir(repo().join("sip-config/agents")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let text = if p.ends_with("dental-front-desk.yaml") { edit(text) } else { text };
        std::fs::write(agents.join(p.file_name().unwrap()), text).unwrap();
    }
    example_config()
        .lines()
        .map(|l| if l.starts_with("agents_dir:") { format!("agents_dir: {}", agents.display()) } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
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
    let target = format!("target: sip:frontdesk@127.0.0.1:{}", b.sip_port);
    let yaml = config(dir, |t| t.replace("target: sip:frontdesk@clinic.example", &target));
    Skald::start_with_env(&yaml, &[("SKALD_CONTEXT_KEY", KEY)])
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
    let (base, headers) = uri.split_once('?').unwrap_or((uri, ""));
    let user = base.trim_start_matches("sip:").split('@').next().unwrap().to_string();
    let hostport = base.split('@').nth(1).unwrap().to_string();
    let mut lines = String::new();
    for h in headers.split('&').filter(|h| !h.is_empty()) {
        let (name, value) = h.split_once('=').unwrap();
        let value = percent_encoding::percent_decode_str(value).decode_utf8().unwrap();
        lines.push_str(&format!("      {name}: {value}\n"));
    }
    let mut s = std::fs::read_to_string(scenario("uac_call.xml")).unwrap();
    s = s.replacen("      User-Agent: sipp\n", &format!("      User-Agent: sipp\n{lines}"), 1);
    for (k, v) in [
        ("PTS", "0 101".to_string()),
        ("MEDIA_PORT", peer.port.to_string()),
        ("ANSWER_RE", "m=audio [0-9]+ RTP/AVP 0".to_string()),
        ("MEDIA", String::new()),
    ] {
        s = s.replace(&format!("@{k}@"), &v);
    }
    let sf = dir.join(format!("target-{}.xml", free_port()));
    std::fs::write(&sf, s).unwrap();
    let sf = sf.display().to_string();
    std::thread::spawn(move || {
        let p = free_port().to_string();
        let d = hold_ms.to_string();
        sipp(
            &[&hostport, "-s", &user, "-i", "127.0.0.1", "-p", &p, "-m", "1", "-sf", &sf, "-d", &d],
            Duration::from_secs(hold_ms / 1000 + 60),
        )
    })
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

/// A transferee that refuses the REFER: the caller is told, and the agent
/// goes on with the call.
#[test]
fn a_refused_transfer_returns_to_the_agent() {
    let person = piper_ulaw("Can I talk to a person please?");
    let hours = piper_ulaw("What are your opening hours?");
    let dir = tempfile::tempdir().unwrap();
    let b = start_b(&dir.path().join("b"));
    let a = start_a(&dir.path().join("a"), &b);
    let peer = RtpPeer::start();
    let (sipp_a, log) = transferee(&a, dir.path(), &peer, "603 Decline", "", "end_send_bye.xml.part");
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&person);
    wait_refer_to(&log, Duration::from_secs(30));
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&hours);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    assert!(sipp_a.join().unwrap().status.success(), "{}", a.log());
    let da = detail(&a);
    assert_eq!(da["end_reason"], "remote-bye", "{da:#}");
    assert_eq!(events(&da, "transfer.failed").len(), 1, "{:#}", da["events"]);
    let said = agent_turns(&da).join(" | ");
    assert!(said.contains("nobody at the front desk could take your call"), "{said}");
    assert!(said.contains("Monday to Friday"), "the agent goes on: {said}");
    assert!(da["errors"].to_string().contains("transfer to sip:frontdesk@"), "{:#}", da["errors"]);
}
