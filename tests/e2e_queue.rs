//! End to end: a caller escalated to a contact-center queue. The dental
//! agent's transfer goes to `queue:front`; the queue has two human agents
//! in round-robin order: alice at a fixed URI (a sipp phone that checks the
//! INVITE's context headers and answers 486 Busy Here) and bob, a baresip
//! phone that registers with skald's registrar (digest auth) while the
//! caller waits and answers automatically, speaking real (Piper) speech.
//! The caller (sipp signaling, the test's RTP endpoint) must hear hold
//! music, a spoken position announcement, then bob. Another test routes
//! longest-idle between two registered baresip agents, one of which
//! answers and receives the context headers.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWORD_ENV: &str = "SKALD_TEST_BOB_PASSWORD";
const PASSWORD: &str = "bob-secret-123";
/// A supervisor limited to the `billing` queue.
const SUP_TOKEN: &str = "billing-supervisor-token-0123";

/// Config dir: the dental agent transferring to `queue:front`, a registrar
/// for bob, and `queues.yaml` with alice (at `alice_uri`) and bob.
fn config(dir: &Path, alice_uri: &str) -> String {
    let hold = repo().join("sip-config/prompts/hold.wav");
    config_with(
        dir,
        &format!(
            "agents:\n  - id: alice\n    uri: {alice_uri}\n    ring_timeout_secs: 10\n  \
             - id: bob\n    sip_user: bob\n    ring_timeout_secs: 10\n\
             queues:\n  front:\n    hold_music: {}\n    announce_every_secs: 4\n    \
             strategy: round-robin\n    members: [alice, bob]\n",
            hold.display()
        ),
    )
}

/// Config dir as [`config`], with this `queues.yaml`; the registrar knows
/// bob, carol and dave (all with [`PASSWORD`]).
fn config_with(dir: &Path, queues_yaml: &str) -> String {
    let example = example_config_with_agents(dir, |name, text| {
        if name == "dental-front-desk.yaml" { text.replace("target: sip:frontdesk@clinic.example", "target: queue:front") } else { text }
    });
    std::fs::write(dir.join("queues.yaml"), queues_yaml).unwrap();
    let tokens = "http:\n  listen: 127.0.0.1:8080\n  tokens:\n    \
        - {name: sam, role: supervisor, token_env: SKALD_TEST_SUP_TOKEN, queues: [billing]}\n";
    let start = example.find("http:\n").expect("http section in the example");
    let end = start + example[start..].find("\n\n").expect("end of the http section");
    format!("{}{tokens}{}", &example[..start], &example[end + 1..])
        .replacen(
            "sip:\n",
            &format!(
                "sip:\n  registrar:\n    realm: skald\n    algorithms: [MD5]\n    users:\n{}",
                ["bob", "carol", "dave"].map(|u| format!("      - user: {u}\n        password_env: {PASSWORD_ENV}\n")).concat()
            ),
            1,
        )
        .lines()
        .map(|l| if l.starts_with("queues_file:") { format!("queues_file: {}", dir.join("queues.yaml").display()) } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// alice's phone: sipp checking the context headers and the caller's
/// number, then refusing with 486.
fn alice_phone(dir: &Path) -> (std::thread::JoinHandle<std::process::Output>, String) {
    sipp_target(dir, "alice", "target_busy.xml.part", &[("FROM_RE", "sip:\\+15550199@".into()), ("RING_MS", "500".into())])
}

/// A human agent's phone: baresip registering as `user`, answering
/// automatically and playing `wav` into the call, for `secs` seconds.
/// Returns baresip's output, with its SIP trace (`-s`): every message it
/// sent and received.
fn agent_phone(dir: &Path, skald: &Skald, user: &str, wav: &Path, secs: u32) -> std::thread::JoinHandle<String> {
    let port = free_port();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\n\
             audio_player nil,nil\naudio_source aufile,{}\naudio_alert nil,nil\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\n\
             module_app account.so\nmodule_app menu.so\n",
            wav.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:{user}@127.0.0.1:{}>;auth_pass={PASSWORD};regint=60;answermode=auto\n", skald.sip_port),
    )
    .unwrap();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let out = Command::new("timeout")
            .arg((secs + 10).to_string())
            .arg("baresip")
            .arg("-f")
            .arg(&dir)
            .args(["-s", "-t", &secs.to_string()])
            .output()
            .expect("baresip (installed by `make test`)");
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    })
}

/// Waits until the contact center sees `agent` with `presence`.
fn wait_presence(skald: &Skald, agent: &str, presence: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let q = skald.get_json("/api/v1/queues");
        if q["agents"].as_array().unwrap().iter().any(|a| a["id"] == agent && a["presence"] == presence) {
            return;
        }
        assert!(Instant::now() < deadline, "{agent} not {presence} in {timeout:?}: {q}\n{}", skald.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first INVITE a baresip SIP trace shows received, as text.
fn received_invite(trace: &str) -> Option<String> {
    let start = trace.find("\nINVITE sip:")?;
    let end = trace[start..].find("\n\n").map_or(trace.len(), |e| start + e);
    Some(trace[start + 1..end].to_string())
}

/// Waits until a call on `skald` is in `state`; returns when.
fn wait_state(skald: &Skald, state: &str, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if skald.calls().iter().any(|c| c["state"] == state) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "no call `{state}` in {timeout:?}:\n{}", skald.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Share of the energy of an 8 kHz window at the frequencies `hz`.
fn tone_share(w: &[i16], hz: &[f64]) -> f64 {
    let energy: f64 = w.iter().map(|&x| (x as f64).powi(2)).sum();
    let power = |f: f64| {
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &x) in w.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * f * n as f64 / 8000.0;
            re += x as f64 * ph.cos();
            im -= x as f64 * ph.sin();
        }
        re * re + im * im
    };
    hz.iter().map(|&f| power(f)).sum::<f64>() / (w.len() as f64 / 2.0 * energy.max(1.0))
}

#[test]
fn a_queued_caller_hears_hold_music_and_the_position_then_the_registered_agent() {
    let person = piper_ulaw("Can I talk to a person please?");
    let dir = tempfile::tempdir().unwrap();
    let (alice, alice_uri) = alice_phone(dir.path());
    let yaml = config(dir.path(), &alice_uri);
    let skald = Skald::start_with_env(&yaml, &[(PASSWORD_ENV, PASSWORD), ("SKALD_TEST_SUP_TOKEN", SUP_TOKEN)]);
    let bob_wav = dir.path().join("bob.wav");
    write_speech_wav(&bob_wav, &piper_ulaw("Hi, this is Bob from the front desk. How can I help you?"));

    let peer = RtpPeer::start();
    let caller = caller_call(&skald, dir.path(), &peer, 32_000);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&person);
    let queued_at = wait_state(&skald, "queued", Duration::from_secs(20));
    // alice is rung first (round-robin) and is busy; bob is not registered
    // yet: the caller waits, with music and an announcement.
    std::thread::sleep(Duration::from_secs(5));
    // The queue as the control page sees it; a supervisor of another queue
    // may not act on this call.
    let q = skald.get_json("/api/v1/queues");
    eprintln!("queues: {q}");
    let front = q["queues"].as_array().unwrap().iter().find(|q| q["name"] == "front").unwrap().clone();
    assert_eq!(front["waiting"], 1, "{q}");
    assert_eq!(front["calls"][0]["position"], 1, "{q}");
    let presence = |id: &str| q["agents"].as_array().unwrap().iter().find(|a| a["id"] == id).unwrap()["presence"].clone();
    assert_eq!(presence("alice"), "wrap_up", "alice was busy and rests: {q}");
    assert_eq!(presence("bob"), "offline", "bob has not registered: {q}");
    let id = front["calls"][0]["id"].as_str().unwrap().to_string();
    let r = http_raw(skald.http_port, "POST", &format!("/api/v1/calls/{id}/hangup"), &[("Authorization", &format!("Bearer {SUP_TOKEN}"))], "").unwrap();
    assert_eq!(r.status, 403, "a billing supervisor may not hang up a `front` call: {}", r.body);
    std::thread::sleep(Duration::from_secs(2));
    let bob = agent_phone(&dir.path().join("bob"), &skald, "bob", &bob_wav, 40);
    let bridged_at = wait_state(&skald, "bridged", Duration::from_secs(20));
    let end = peer.wait_agent_turn(bridged_at, Duration::from_millis(1500), Duration::from_secs(20));
    let heard: Vec<_> = peer.heard().into_iter().filter(|(t, _)| *t >= bridged_at && *t <= end).collect();
    let from_bob = transcribe_heard(&heard).to_lowercase();
    eprintln!("the caller heard bob: {from_bob}");

    let waiting: Vec<(Instant, Vec<i16>)> =
        peer.heard().into_iter().filter(|(t, _)| *t >= queued_at && *t < bridged_at).collect();
    // The announcement: what is heard while waiting that is not music.
    let chord = [261.6, 329.6, 392.0, 523.3];
    let spoken: Vec<(Instant, Vec<i16>)> = waiting
        .chunks(5)
        .filter(|w| {
            let s: Vec<i16> = w.iter().flat_map(|(_, f)| f.clone()).collect();
            tone_share(&s, &chord) < 0.3
        })
        .flat_map(|w| w.to_vec())
        .collect();
    let announcement = transcribe_heard(&spoken).to_lowercase();
    eprintln!("while waiting ({} of {} frames not music): {announcement}", spoken.len(), waiting.len());
    let samples: Vec<i16> = waiting.iter().flat_map(|(_, f)| f.clone()).collect();
    // Hold music (sip-config/prompts/hold.wav: a C-major chord, C4 E4 G4
    // C5), not ringback and not silence.
    let windows: Vec<&[i16]> = samples.chunks_exact(800).collect();
    let music = windows.iter().filter(|w| is_loud(w) && tone_share(w, &chord) > 0.5).count();
    let ringback = windows.iter().filter(|w| is_loud(w) && tone_share(w, &[440.0, 480.0]) > 0.6).count();
    eprintln!("{} windows of 100 ms: {music} music, {ringback} ringback", windows.len());
    assert!(music >= 20, "at least 2 s of hold music: {music} × 100 ms");
    assert_eq!(ringback, 0, "music, not ringback");
    assert!(says(&from_bob, "bob") && says(&from_bob, "front desk"), "bob reaches the caller: {from_bob}");

    let c = caller.join().unwrap();
    assert!(c.status.success(), "caller:\n{}\n{}", String::from_utf8_lossy(&c.stderr), String::from_utf8_lossy(&c.stdout));
    let out = alice.join().unwrap();
    assert!(out.status.success(), "alice's phone (context headers, caller number):\n{}", String::from_utf8_lossy(&out.stderr));
    let bob_out = bob.join().unwrap();
    assert!(bob_out.contains("200 OK"), "bob registered:\n{bob_out}");

    let c = &skald.wait_ended(1, Duration::from_secs(30))[0];
    let d = skald.get_json(&format!("/api/v1/calls/{}", c["id"].as_str().unwrap()));
    let kinds: Vec<&str> = d["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    eprintln!("events: {kinds:?}");
    let offers: Vec<String> = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "queue.offer")
        .map(|e| e["data"]["agent"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(says(&announcement, "next in line"), "the position is announced: {announcement}");
    assert_eq!(offers, ["alice", "bob"], "round-robin: alice first, then bob once registered");
    for kind in ["queue.joined", "queue.declined", "queue.position", "queue.answered", "queue.left", "transfer.completed"] {
        assert!(kinds.contains(&kind), "`{kind}` in {kinds:?}");
    }
    assert_eq!(d["end_reason"], "remote-bye", "{d:#}");
}

/// Longest-idle routing with two registered baresip agents: carol came
/// online first, so she is idle longest and is offered the call although
/// dave is listed first. Her phone receives the call's signed context in
/// the INVITE (read from baresip's SIP trace and verified with the shared
/// key) and the caller hears her; dave is never rung.
#[test]
fn the_longest_idle_registered_agent_answers_and_receives_the_context() {
    const KEY: &str = "queue-test-context-key-0123456789";
    let person = piper_ulaw("Can I talk to a person please?");
    let dir = tempfile::tempdir().unwrap();
    let hold = repo().join("sip-config/prompts/hold.wav");
    let yaml = config_with(
        dir.path(),
        &format!(
            "agents:\n  - id: carol\n    sip_user: carol\n    ring_timeout_secs: 10\n  \
             - id: dave\n    sip_user: dave\n    ring_timeout_secs: 10\n\
             queues:\n  front:\n    hold_music: {}\n    strategy: longest-idle\n    members: [dave, carol]\n",
            hold.display()
        ),
    );
    let skald = Skald::start_with_env(&yaml, &[(PASSWORD_ENV, PASSWORD), ("SKALD_CONTEXT_KEY", KEY), ("SKALD_TEST_SUP_TOKEN", SUP_TOKEN)]);
    let (carol_wav, dave_wav) = (dir.path().join("carol.wav"), dir.path().join("dave.wav"));
    write_speech_wav(&carol_wav, &piper_ulaw("Hi, this is Carol at the front desk. What can I do for you?"));
    write_speech_wav(&dave_wav, &piper_ulaw("This is Dave speaking."));
    let carol = agent_phone(&dir.path().join("carol"), &skald, "carol", &carol_wav, 35);
    wait_presence(&skald, "carol", "available", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    let dave = agent_phone(&dir.path().join("dave"), &skald, "dave", &dave_wav, 35);
    wait_presence(&skald, "dave", "available", Duration::from_secs(10));

    let peer = RtpPeer::start();
    let caller = caller_call(&skald, dir.path(), &peer, 25_000);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&person);
    let bridged_at = wait_state(&skald, "bridged", Duration::from_secs(30));
    let end = peer.wait_agent_turn(bridged_at, Duration::from_millis(1500), Duration::from_secs(20));
    let heard: Vec<_> = peer.heard().into_iter().filter(|(t, _)| *t >= bridged_at && *t <= end).collect();
    let from_carol = transcribe_heard(&heard).to_lowercase();
    eprintln!("the caller heard carol: {from_carol}");
    assert!(says(&from_carol, "front desk") && says(&from_carol, "do for you"), "carol reaches the caller: {from_carol}");
    let q = skald.get_json("/api/v1/queues");
    let presence = |id: &str| q["agents"].as_array().unwrap().iter().find(|a| a["id"] == id).unwrap()["presence"].clone();
    assert_eq!(presence("carol"), "on_call", "{q}");
    assert_eq!(presence("dave"), "available", "{q}");

    let c = caller.join().unwrap();
    assert!(c.status.success(), "caller:\n{}\n{}", String::from_utf8_lossy(&c.stderr), String::from_utf8_lossy(&c.stdout));
    let c = &skald.wait_ended(1, Duration::from_secs(30))[0];
    let d = skald.get_json(&format!("/api/v1/calls/{}", c["id"].as_str().unwrap()));
    let offers: Vec<&str> =
        d["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "queue.offer").map(|e| e["data"]["agent"].as_str().unwrap_or_default()).collect();
    assert_eq!(offers, ["carol"], "longest idle first, and she answered");
    let (carol_trace, dave_trace) = (carol.join().unwrap(), dave.join().unwrap());
    assert!(received_invite(&dave_trace).is_none(), "dave was rung:\n{dave_trace}");
    let invite = received_invite(&carol_trace).unwrap_or_else(|| panic!("carol got no INVITE:\n{carol_trace}"));
    eprintln!("carol's INVITE:\n{invite}");
    let header = |name: &str| invite.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(|v| v.trim().to_string()));
    let signed = header("X-Skald-Context").unwrap_or_else(|| panic!("no X-Skald-Context:\n{invite}"));
    let ctx = skald::agent::context::CallContext::decode_signed(&signed, KEY.as_bytes()).expect("signed with the shared key");
    assert!(ctx.caller.as_deref().is_some_and(|c| c.contains("+15550199")), "{ctx:?}");
    assert_eq!(ctx.intent.as_deref(), Some("person"), "{ctx:?}");
    assert_eq!(ctx.previous_agents, ["dental-front-desk"], "{ctx:?}");
    assert!(ctx.escalation_reason.is_some() || ctx.intent.is_some(), "why the caller is here: {ctx:?}");
    assert!(invite.contains("From: ") && invite.lines().any(|l| l.starts_with("From:") && l.contains("+15550199")), "the caller's number in From:\n{invite}");
}

/// Places a call from the test's caller phone to the dental agent.
fn caller_call(skald: &Skald, dir: &Path, peer: &RtpPeer, hold_ms: u64) -> std::thread::JoinHandle<std::process::Output> {
    sipp_phone(&skald.uri("+15550123"), "uac_call.xml", dir, peer, hold_ms)
}

/// Nobody takes the call within the queue's maximum wait: it overflows to
/// voicemail; the caller hears the prompt and the tone, and the message is
/// recorded.
#[test]
fn a_call_that_waits_too_long_leaves_a_voicemail() {
    let person = piper_ulaw("Can I talk to a person please?");
    let message = piper_ulaw("Please call me back about my appointment tomorrow.");
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_with(
        dir.path(),
        "agents:\n  - id: bob\n    sip_user: bob\nqueues:\n  front:\n    announce_every_secs: 0\n    \
         max_wait_secs: 4\n    overflow: { voicemail: true }\n    members: [bob]\n",
    );
    let skald = Skald::start_with_env(&yaml, &[(PASSWORD_ENV, PASSWORD), ("SKALD_TEST_SUP_TOKEN", SUP_TOKEN)]);
    let peer = RtpPeer::start();
    let call = caller_call(&skald, dir.path(), &peer, 30_000);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&person);
    let queued_at = wait_state(&skald, "queued", Duration::from_secs(20));
    // Ringback (no hold music configured), then the overflow prompt.
    let prompt_end = peer.wait_agent_turn(queued_at + Duration::from_secs(4), Duration::from_millis(900), Duration::from_secs(20));
    let heard: Vec<_> = peer.heard().into_iter().filter(|(t, _)| *t >= queued_at + Duration::from_secs(4) && *t <= prompt_end).collect();
    let prompt = transcribe_heard(&heard).to_lowercase();
    eprintln!("overflow prompt: {prompt}");
    peer.say(&message);
    assert!(call.join().unwrap().status.success(), "caller:\n{}", skald.log());
    assert!(says(&prompt, "leave a message"), "the voicemail prompt: {prompt}");

    let c = &skald.wait_ended(1, Duration::from_secs(30))[0];
    let d = skald.get_json(&format!("/api/v1/calls/{}", c["id"].as_str().unwrap()));
    let ev = |k: &str| d["events"].as_array().unwrap().iter().find(|e| e["kind"] == k).cloned();
    assert_eq!(ev("queue.overflow").expect("overflow event")["data"]["queue"], "front", "{:#}", d["events"]);
    let path = ev("voicemail.started").expect("voicemail event")["data"]["path"].as_str().unwrap().to_string();
    let (samples, rate) = read_wav(Path::new(&path));
    assert_eq!(rate, 16_000);
    let frames: Vec<(Instant, Vec<i16>)> =
        samples.chunks(320).map(|c| (Instant::now(), c.iter().step_by(2).copied().collect())).collect();
    let said = transcribe_heard(&frames).to_lowercase();
    eprintln!("voicemail: {said}");
    assert!(said.contains("appointment"), "the message is recorded: {said}");
}

/// A queue whose AI member takes calls first (`prefer: ai`): the caller
/// is handed to the AI agent at once, which greets them.
#[test]
fn an_ai_member_takes_the_queued_call() {
    let person = piper_ulaw("Can I talk to a person please?");
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_with(
        dir.path(),
        "agents:\n  - id: bob\n    sip_user: bob\nqueues:\n  front:\n    prefer: ai\n    \
         members: [bob, {ai: dental-front-desk, capacity: 1}]\n",
    );
    let skald = Skald::start_with_env(&yaml, &[(PASSWORD_ENV, PASSWORD), ("SKALD_TEST_SUP_TOKEN", SUP_TOKEN)]);
    let peer = RtpPeer::start();
    let call = caller_call(&skald, dir.path(), &peer, 20_000);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    let asked = Instant::now();
    peer.say(&person);
    // "Sure, let me connect you…", then the AI member's greeting.
    let deadline = Instant::now() + Duration::from_secs(30);
    let handed = loop {
        let calls = skald.calls();
        let d = skald.get_json(&format!("/api/v1/calls/{}", calls[0]["id"].as_str().unwrap()));
        if d["events"].as_array().unwrap().iter().any(|e| e["kind"] == "agent.started") {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "no hand-over to the AI member:\n{}", skald.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    let end = peer.wait_agent_turn(handed, Duration::from_millis(1200), Duration::from_secs(30));
    let heard: Vec<_> = peer.heard().into_iter().filter(|(at, _)| *at >= asked && *at <= end).collect();
    let greeting = transcribe_heard(&heard).to_lowercase();
    eprintln!("the AI member: {greeting}");
    assert!(call.join().unwrap().status.success(), "caller:\n{}", skald.log());
    // The local STT may run the name together ("brightsmilevental").
    assert!(
        says(&greeting, "connect you") && greeting.contains("smile") && says(&greeting, "how can i help"),
        "the AI member greets: {greeting}"
    );
    let c = &skald.wait_ended(1, Duration::from_secs(30))[0];
    let d = skald.get_json(&format!("/api/v1/calls/{}", c["id"].as_str().unwrap()));
    let started: Vec<_> = d["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "agent.started").collect();
    assert_eq!(started.len(), 1, "{:#}", d["events"]);
    assert_eq!(started[0]["data"]["from"], "queue");
    assert!(d["events"].as_array().unwrap().iter().any(|e| e["kind"] == "queue.offer" && e["data"]["ai"] == "dental-front-desk"));
}
