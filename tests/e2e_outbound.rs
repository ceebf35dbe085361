//! End to end: skald places outbound calls through a configured trunk to a
//! sipp UAS (tests/sipp/uas_voicemail.xml) that challenges with 401, checks
//! the caller ID and the dialled number, answers and plays a pcap built here
//! from real synthesized speech (espeak-ng) and a sox beep. skald runs the
//! dental front-desk voice agent with answering-machine detection.
//!
//! * voicemail: AMD decides Machine, skald stays silent through the greeting
//!   and beep, then leaves its message (seen in the stereo recording: the
//!   agent channel starts after the beep) and hangs up
//!   (`voicemail-message-left`);
//! * a person ("Hello?", then silence): AMD decides Human and the agent's
//!   greeting is spoken (an agent turn is stored);
//! * the person's callee sends 183 with SDP first: media starts early and
//!   the 200 keeps it;
//! * `skald call --trunk` places the same kind of call from the CLI.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const CALLER_ID: &str = "+15550123";
const CALLEE: &str = "+15557654321";
const MESSAGE: &str = "Hello, this is the dental office calling about your appointment tomorrow. Please call us back.";

/// 8 kHz µ-law silence.
fn silence(ms: usize) -> Vec<u8> {
    vec![0xFF; ms * 8]
}

/// A sine beep from sox, 8 kHz µ-law.
fn beep(ms: u64, hz: u32) -> Vec<u8> {
    let out = std::process::Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-t", "ul", "-", "synth", &format!("{}", ms as f64 / 1000.0), "sine"])
        .arg(hz.to_string())
        .args(["vol", "0.5"])
        .output()
        .expect("sox");
    assert!(out.status.success());
    out.stdout
}

/// Renders the UAS scenario into `dir` for `pcap`; returns its path.
/// With `early_media`, the callee sends 183 with SDP and rings 1 s before
/// answering; else 180 without a body.
fn scenario_for(dir: &Path, pcap: &Path, bye_timeout_ms: u64, early_media: bool) -> String {
    let (status, body, ring) = if early_media {
        (
            "183 Session Progress",
            "      Content-Type: application/sdp\n      Content-Length: [len]\n\n      v=0\n      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]\n      s=-\n      c=IN IP[media_ip_type] [media_ip]\n      t=0 0\n      m=audio [media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000",
            "1000",
        )
    } else {
        ("180 Ringing", "      Content-Length: 0\n", "0")
    };
    let s = std::fs::read_to_string(scenario("uas_voicemail.xml"))
        .unwrap()
        .replace("@PROVISIONAL_BODY@", body)
        .replace("@PROVISIONAL@", status)
        .replace("@RING_MS@", ring)
        .replace("@PCAP@", &pcap.display().to_string())
        .replace("@FROM_RE@", &format!("sip:\\{CALLER_ID}@"))
        .replace("@RURI_RE@", &format!("INVITE sip:\\{CALLEE}@127\\.0\\.0\\.1:[0-9]+ SIP/2\\.0"))
        .replace("@BYE_TIMEOUT@", &bye_timeout_ms.to_string());
    let path = dir.join("uas_voicemail.xml");
    std::fs::write(&path, s).unwrap();
    path.display().to_string()
}

/// Runs the sipp UAS on `port` in a thread.
fn uas(port: u16, scenario: String) -> std::thread::JoinHandle<std::process::Output> {
    let mp = free_port().to_string();
    let t = std::thread::spawn(move || {
        let p = port.to_string();
        sipp(&["-i", "127.0.0.1", "-p", &p, "-mi", "127.0.0.1", "-mp", &mp, "-m", "1", "-sf", &scenario], Duration::from_secs(90))
    });
    std::thread::sleep(Duration::from_millis(500));
    t
}

fn assert_uas_ok(out: &std::process::Output, skald_log: &str) {
    assert!(
        out.status.success(),
        "sipp uas saw a failed call:\n{}\n{}\nskald log:\n{skald_log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example config plus a trunk to sipp on `port` and an outbound
/// voice-agent application with AMD.
fn config(port: u16) -> String {
    let agents = repo().join("sip-config/agents");
    let app = format!(
        "applications:\n  outbound:\n    type: voice-agent\n    agent: dental-front-desk\n    record: true\n    amd:\n      on_machine: leave-message\n      message: \"{MESSAGE}\"\n"
    );
    let trunk = format!(
        "trunks:\n  carrier:\n    uri: sip:127.0.0.1:{port}\n    username: alice\n    password_env: SKALD_TEST_TRUNK_PASSWORD\n    caller_id: \"{CALLER_ID}\"\n    from_display: Dental Office\n    ring_timeout_s: 20\n"
    );
    let base = example_config();
    assert!(base.contains(&format!("agents_dir: {}", agents.display())));
    assert!(base.contains("\ntrunks: {}\n"), "the example config has an empty trunks section");
    base.replacen("applications:\n", &app, 1).replacen("trunks: {}\n", &trunk, 1)
}

/// Places the call through the API; returns the call id.
fn dial(skald: &Skald) -> String {
    let body = format!(r#"{{"to": "{CALLEE}", "trunk": "carrier", "app": "outbound"}}"#);
    let (status, text) = http_body(skald.http_port, "POST", "/api/v1/calls", &body).unwrap();
    assert_eq!(status, 202, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Waits until call `id` has ended; returns its detail (turns, events).
fn wait_call_end(skald: &Skald, id: &str, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let d = skald.get_json(&format!("/api/v1/calls/{id}"));
        if d["state"] == "ended" {
            return d;
        }
        assert!(Instant::now() < deadline, "call not ended in {timeout:?}: {d:#}\n{}", skald.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn events<'a>(d: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    d["events"].as_array().unwrap().iter().filter(|e| e["kind"] == kind).map(|e| &e["data"]).collect()
}

/// Reads a 16 kHz stereo WAV as (left, right).
fn read_stereo(path: &Path) -> (Vec<i16>, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap();
    assert_eq!(r.spec().channels, 2);
    let all: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    (all.iter().step_by(2).copied().collect(), all.iter().skip(1).step_by(2).copied().collect())
}

/// Indexes of the 20 ms frames (320 samples at 16 kHz) louder than [`LOUD`].
fn loud_frames(x: &[i16]) -> Vec<usize> {
    x.chunks(320).enumerate().filter(|(_, f)| is_loud(f)).map(|(i, _)| i).collect()
}

#[test]
fn voicemail_gets_the_message_after_the_beep() {
    let dir = tempfile::tempdir().unwrap();
    let greeting = espeak_ulaw(
        "Hi, you have reached the voicemail of John Smith. I can't take your call right now. \
         Please leave your name, your number and a short message after the tone.",
    );
    let greeting_ms = greeting.len() / 8;
    let mut audio = silence(400);
    audio.extend(greeting);
    audio.extend(silence(500));
    let beep_at_ms = audio.len() / 8;
    audio.extend(beep(500, 1000));
    let beep_end_ms = audio.len() / 8;
    audio.extend(silence(9000));
    let pcap = dir.path().join("voicemail.pcap");
    write_rtp_pcap(&pcap, &audio, 0);

    let port = free_port();
    let sipp = uas(port, scenario_for(dir.path(), &pcap, 60_000, false));
    let skald = Skald::start_with_env(&config(port), &[("SKALD_TEST_TRUNK_PASSWORD", "secret")]);
    let id = dial(&skald);
    let d = wait_call_end(&skald, &id, Duration::from_secs(60));
    assert_uas_ok(&sipp.join().unwrap(), &skald.log());

    assert_eq!(d["end_reason"], "voicemail-message-left", "{d:#}");
    assert_eq!(d["direction"], "outbound");
    assert!(d["from_uri"].as_str().unwrap().starts_with(&format!("sip:{CALLER_ID}@")), "{d:#}");
    let decision = events(&d, "amd.decision");
    assert_eq!(decision.len(), 1, "{d:#}");
    assert_eq!(decision[0]["result"], "machine", "{d:#}");
    let decided_ms = decision[0]["at_ms"].as_u64().unwrap();
    assert!(decided_ms < beep_at_ms as u64, "a long greeting is a machine before its beep: {d:#}");
    let beeps = events(&d, "amd.beep");
    assert_eq!(beeps.len(), 1, "{d:#}");
    let heard_beep_end = beeps[0]["end_ms"].as_u64().unwrap();
    assert!(heard_beep_end.abs_diff(beep_end_ms as u64) <= 150, "beep end {heard_beep_end} vs {beep_end_ms}: {d:#}");
    let ready = events(&d, "amd.ready");
    assert_eq!(ready[0]["after_beep"], true, "{d:#}");
    let msg = events(&d, "amd.message");
    assert_eq!(msg.len(), 1, "{d:#}");
    let msg_ms = msg[0]["at_ms"].as_u64().unwrap();
    // The detector places a beep's end to within one 10 ms hop (±60 ms tolerance).
    assert!(msg_ms + 60 >= beep_end_ms as u64, "message at {msg_ms} ms, beep ended at {beep_end_ms} ms");

    // What skald sent, from its stereo recording (caller left, skald right):
    // nothing during the greeting and beep, then the message.
    let rec = d["recording_path"].as_str().expect("recording");
    let (left, right) = read_stereo(Path::new(rec));
    let caller = loud_frames(&left);
    let agent = loud_frames(&right);
    let caller_last = *caller.last().expect("greeting and beep recorded");
    let agent_first = *agent.first().expect("skald left a message");
    assert!(agent_first > caller_last, "skald spoke at frame {agent_first}, the beep ended at frame {caller_last}");
    assert!(agent_first - caller_last < 100, "the message starts within 2 s of the beep: {agent_first} vs {caller_last}");
    assert!(agent.len() > 100, "the message was spoken ({} loud frames)", agent.len());
    // The agent never greeted the machine: no agent turn.
    assert!(d["turns"].as_array().unwrap().iter().all(|t| t["speaker"] != "agent"), "{d:#}");
    eprintln!(
        "voicemail: greeting {greeting_ms} ms, AMD decided machine at {decided_ms} ms ({}), beep {beep_at_ms}-{beep_end_ms} ms (heard end {heard_beep_end}), message at {msg_ms} ms; recording: beep ended frame {caller_last}, skald first loud frame {agent_first}",
        decision[0]["reason"]
    );
}

#[test]
fn a_person_gets_the_agents_greeting() {
    let dir = tempfile::tempdir().unwrap();
    let mut audio = silence(500);
    audio.extend(espeak_ulaw("Hello?"));
    audio.extend(silence(12_000));
    let pcap = dir.path().join("human.pcap");
    write_rtp_pcap(&pcap, &audio, 0);

    let port = free_port();
    let sipp = uas(port, scenario_for(dir.path(), &pcap, 60_000, true));
    let skald = Skald::start_with_env(&config(port), &[("SKALD_TEST_TRUNK_PASSWORD", "secret")]);
    let id = dial(&skald);
    // Wait for the agent's greeting to be spoken and stored.
    let deadline = Instant::now() + Duration::from_secs(40);
    let d = loop {
        let d = skald.get_json(&format!("/api/v1/calls/{id}"));
        if d["turns"].as_array().unwrap().iter().any(|t| t["speaker"] == "agent") {
            break d;
        }
        assert_ne!(d["state"], "ended", "call ended before the agent spoke: {d:#}");
        assert!(Instant::now() < deadline, "no agent turn: {d:#}\n{}", skald.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let decision = events(&d, "amd.decision");
    assert_eq!(decision.len(), 1, "{d:#}");
    assert_eq!(decision[0]["result"], "human", "{d:#}");
    let decided_ms = decision[0]["at_ms"].as_u64().unwrap();
    let greeting = d["turns"].as_array().unwrap().iter().find(|t| t["speaker"] == "agent").unwrap();
    let greet_ms = greeting["start_ms"].as_i64().unwrap();
    assert!(greet_ms as u64 + 100 >= decided_ms, "the agent waited for the decision: greeting at {greet_ms}, decision at {decided_ms}");
    assert!(events(&d, "amd.message").is_empty(), "{d:#}");
    // The 183 with SDP started media before the answer (early media).
    assert_eq!(events(&d, "early_media").len(), 1, "{d:#}");
    assert_eq!(events(&d, "early_media")[0]["status"], 183, "{d:#}");
    let (status, body) = skald.try_http("POST", &format!("/api/v1/calls/{id}/hangup")).unwrap();
    assert_eq!(status, 202, "{body}");
    let d = wait_call_end(&skald, &id, Duration::from_secs(15));
    assert_eq!(d["end_reason"], "api", "{d:#}");
    assert_uas_ok(&sipp.join().unwrap(), &skald.log());
    eprintln!(
        "human: AMD decided human at {decided_ms} ms ({}); agent greeting started at {greet_ms} ms: {}",
        decision[0]["reason"], greeting["text"]
    );
}

#[test]
fn skald_call_dials_a_number_through_a_trunk() {
    let dir = tempfile::tempdir().unwrap();
    let mut audio = silence(200);
    audio.extend(espeak_ulaw("Hello?"));
    let pcap = dir.path().join("short.pcap");
    write_rtp_pcap(&pcap, &audio, 0);
    let port = free_port();
    let sipp = uas(port, scenario_for(dir.path(), &pcap, 20_000, false));
    let cfg = dir.path().join("skald.yaml");
    std::fs::write(
        &cfg,
        format!(
            "applications:\n  echo: {{type: echo}}\nroutes:\n  default: echo\ntrunks:\n  carrier:\n    uri: sip:127.0.0.1:{port}\n    username: alice\n    password_env: SKALD_TEST_TRUNK_PASSWORD\n    caller_id: \"{CALLER_ID}\"\n"
        ),
    )
    .unwrap();
    let base = 41500 + (std::process::id() % 50) as u16 * 10;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skald"))
        .args(["call", "--trunk", "carrier", "--to", CALLEE, "--app", "echo", "--duration", "2"])
        .arg("--config")
        .arg(&cfg)
        .args(["--sip-listen", "127.0.0.1:0", "--rtp-ports", &format!("{base}-{}", base + 9)])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("SKALD_TEST_TRUNK_PASSWORD", "secret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "skald call failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("answered; ended: duration"), "{stdout}");
    assert_uas_ok(&sipp.join().unwrap(), &stderr);

    // A bad number never reaches SIP.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_skald"))
        .args(["call", "--trunk", "carrier", "--to", "call me", "--config"])
        .arg(&cfg)
        .args(["--sip-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data2"))
        .env("SKALD_TEST_TRUNK_PASSWORD", "secret")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a phone number"), "{}", String::from_utf8_lossy(&bad.stderr));
}
