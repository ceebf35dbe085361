//! End to end: a supervisor dials in from a SIP phone and monitors a live
//! call between a caller and a person the agent warm-transferred them to.
//! Every party is a sipp phone with the test's RTP endpoint (real RTP, real
//! RFC 4733 keys): the supervisor enters the PIN and the caller's last
//! digits, listens (hears both sides), whispers (the person hears it, the
//! caller must not), then barges in (the caller hears it).

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const PIN_ENV: &str = "SKALD_TEST_SUPERVISOR_PIN";
const PIN: &str = "2468";

/// Config: the dental agent warm-transfers to `person` (context brief:
/// connected at once); DID 5500 is the supervisors' dial-in line.
fn config(dir: &Path, person: &str) -> String {
    let agents = dir.join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    for e in std::fs::read_dir(repo().join("sip-config/agents")).unwrap() {
        let p = e.unwrap().path();
        let mut text = std::fs::read_to_string(&p).unwrap();
        if p.ends_with("dental-front-desk.yaml") {
            text = text
                .replace("target: sip:frontdesk@clinic.example", &format!("target: {person}"))
                .replace("  mode: cold\n", "  mode: warm\n")
                .replace("  brief: spoken\n", "  brief: context\n");
        }
        std::fs::write(agents.join(p.file_name().unwrap()), text).unwrap();
    }
    example_config()
        .lines()
        .map(|l| if l.starts_with("agents_dir:") { format!("agents_dir: {}", agents.display()) } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
        .replacen("  dids:\n", "  dids:\n    \"5500\": supervisors\n", 1)
        .replacen(
            "applications:\n",
            &format!("applications:\n  supervisors:\n    type: supervisor-dial-in\n    pin_env: {PIN_ENV}\n"),
            1,
        )
}

/// A phone calling `user` at skald (sipp `uac_call.xml`), media at `peer`,
/// hanging up after `hold_ms`.
fn phone(skald: &Skald, user: &str, dir: &Path, peer: &RtpPeer, hold_ms: u64) -> std::thread::JoinHandle<std::process::Output> {
    let mut s = std::fs::read_to_string(scenario("uac_call.xml")).unwrap();
    for (k, v) in [
        ("PTS", "0 101".to_string()),
        ("MEDIA_PORT", peer.port.to_string()),
        ("ANSWER_RE", "m=audio [0-9]+ RTP/AVP 0".to_string()),
        ("MEDIA", String::new()),
    ] {
        s = s.replace(&format!("@{k}@"), &v);
    }
    let sf = dir.join(format!("phone-{}.xml", free_port()));
    std::fs::write(&sf, s).unwrap();
    let target = format!("127.0.0.1:{}", skald.sip_port);
    let user = user.to_string();
    std::thread::spawn(move || {
        let (sf, p, d) = (sf.display().to_string(), free_port().to_string(), hold_ms.to_string());
        sipp(&[&target, "-s", &user, "-i", "127.0.0.1", "-p", &p, "-m", "1", "-sf", &sf, "-d", &d], Duration::from_secs(hold_ms / 1000 + 60))
    })
}

/// The person's phone: sipp answering with media at `peer`.
fn person_phone(dir: &Path, peer: &RtpPeer) -> (std::thread::JoinHandle<std::process::Output>, String) {
    let mut s = std::fs::read_to_string(scenario("uas_target.xml")).unwrap();
    s = s.replace("@FINAL@", &std::fs::read_to_string(repo().join("tests/sipp/target_answer.xml.part")).unwrap());
    for (k, v) in [
        ("FROM_RE", "sip:".to_string()),
        ("RING_MS", "300".to_string()),
        ("MEDIA_PORT", peer.port.to_string()),
        ("BYE_TIMEOUT", "90000".to_string()),
    ] {
        s = s.replace(&format!("@{k}@"), &v);
    }
    let sf = dir.join("person.xml");
    std::fs::write(&sf, s).unwrap();
    let port = free_port();
    let sf = sf.display().to_string();
    let t = std::thread::spawn(move || {
        let p = port.to_string();
        sipp(&["-sf", &sf, "-i", "127.0.0.1", "-p", &p, "-m", "1"], Duration::from_secs(150))
    });
    std::thread::sleep(Duration::from_millis(300));
    (t, format!("sip:sam@127.0.0.1:{port}"))
}

/// Waits until a call on `skald` is in `state`.
fn wait_state(skald: &Skald, state: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !skald.calls().iter().any(|c| c["state"] == state) {
        assert!(Instant::now() < deadline, "no call `{state}` in {timeout:?}:\n{}", skald.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `peer` heard between `from` and `to`, transcribed (lowercase).
fn heard_between(peer: &RtpPeer, from: Instant, to: Instant) -> String {
    let frames: Vec<_> = peer.heard().into_iter().filter(|(t, _)| *t >= from && *t <= to).collect();
    transcribe_heard(&frames).to_lowercase()
}

#[test]
fn a_supervisor_phone_listens_whispers_and_barges_in() {
    let person_ask = piper_ulaw("Can I talk to a person please?");
    let caller_line = piper_ulaw("I have a question about my bill.");
    let whisper = piper_ulaw("Offer them the spring discount.");
    let barge = piper_ulaw("Hello, this is the supervisor joining the call.");
    let dir = tempfile::tempdir().unwrap();
    let sam = RtpPeer::start();
    let (sam_phone, sam_uri) = person_phone(dir.path(), &sam);
    let skald = Skald::start_with_env(&config(dir.path(), &sam_uri), &[(PIN_ENV, PIN)]);

    // The caller (From +15550199, see uac_call.xml) reaches the agent and is
    // connected to Sam.
    let caller = RtpPeer::start();
    let call = phone(&skald, "+15550123", dir.path(), &caller, 60_000);
    caller.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    caller.say(&person_ask);
    wait_state(&skald, "bridged", Duration::from_secs(30));

    // The supervisor dials in, enters the PIN and the caller's last digits.
    let sup = RtpPeer::start();
    let sup_call = phone(&skald, "5500", dir.path(), &sup, 40_000);
    sup.wait_agent_turn(Instant::now(), Duration::from_millis(800), Duration::from_secs(20));
    sup.dtmf(&format!("{PIN}#"));
    sup.wait_agent_turn(Instant::now(), Duration::from_millis(800), Duration::from_secs(20));
    sup.dtmf("0199#");
    // "Listening. Press 1 to listen…"
    sup.wait_agent_turn(Instant::now(), Duration::from_millis(800), Duration::from_secs(20));

    // Listen: the supervisor hears the caller.
    let t = Instant::now();
    caller.say(&caller_line);
    std::thread::sleep(Duration::from_secs(4));
    let listened = heard_between(&sup, t, Instant::now());
    eprintln!("the supervisor heard: {listened}");
    assert!(listened.contains("bill") || listened.contains("question"), "listen hears the caller: {listened}");

    // Whisper: Sam hears the supervisor, the caller does not.
    sup.dtmf("2");
    std::thread::sleep(Duration::from_millis(600));
    let t = Instant::now();
    sup.say(&whisper);
    std::thread::sleep(Duration::from_secs(4));
    let sam_heard = heard_between(&sam, t, Instant::now());
    let caller_frames: Vec<_> = caller.heard().into_iter().filter(|(at, _)| *at >= t && *at <= Instant::now()).collect();
    let caller_loud = caller_frames.iter().filter(|(_, f)| is_loud(f)).count();
    eprintln!("Sam heard the whisper: {sam_heard}; the caller got {caller_loud} loud frames");
    assert!(sam_heard.contains("discount") || sam_heard.contains("spring"), "the whisper reaches the person: {sam_heard}");
    assert!(caller_loud < 5, "the caller must not hear the whisper ({caller_loud} loud frames)");

    // Barge: the caller hears the supervisor.
    sup.dtmf("3");
    std::thread::sleep(Duration::from_millis(600));
    let t = Instant::now();
    sup.say(&barge);
    std::thread::sleep(Duration::from_secs(5));
    let caller_heard = heard_between(&caller, t, Instant::now());
    eprintln!("the caller heard the barge: {caller_heard}");
    assert!(caller_heard.contains("supervisor") || caller_heard.contains("joining"), "barge reaches the caller: {caller_heard}");

    assert!(sup_call.join().unwrap().status.success(), "supervisor phone:\n{}", skald.log());
    assert!(call.join().unwrap().status.success(), "caller:\n{}", skald.log());
    assert!(sam_phone.join().unwrap().status.success(), "person's phone");
    let ended = skald.wait_ended(2, Duration::from_secs(30));
    let monitored = ended.iter().find(|c| c["did"] == "+15550123").expect("the caller's call");
    let d = skald.get_json(&format!("/api/v1/calls/{}", monitored["id"].as_str().unwrap()));
    let actions: Vec<String> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "supervisor.action" && e["data"]["via"] == "sip")
        .map(|e| e["data"]["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["listen", "whisper", "barge"], "audited: {:#}", d["events"]);
}
