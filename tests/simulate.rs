//! `skald simulate` end to end: the binary calls a real `skald serve` (the
//! example config's dental front desk, local models) over SIP and over a
//! Twilio Media Stream, plays a scenario and scores the call; a bad
//! scenario and a target that does not answer are clear errors.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Greeting, one caller turn, the agent's answer; the caller hangs up.
/// The limits are loose: this tests the simulator, on a debug build that
/// shares two cores with another test's calls (the shipped scenarios hold
/// the agent to the real budgets).
const SMOKE: &str = r#"name: smoke
steps:
  - expect: {words: [thanks for calling], max_latency_ms: 6000}
  - say: "What are your opening hours?"
  - expect: {words: [monday, friday], max_latency_ms: 6000, no_talk_over: true, replies: 1}
checks: {max_dead_air_ms: 6000}
"#;

/// Runs `skald simulate ARGS` with extra environment variables.
fn simulate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_skald"))
        .arg("simulate")
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("TWILIO_AUTH_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("run skald simulate");
    eprintln!(
        "skald simulate {args:?}: {:?} in {:.1} s\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// The JSON report's essentials for a passing smoke call.
fn assert_smoke_passed(report: &serde_json::Value) {
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["score"]["passed"], 5);
    assert_eq!(report["score"]["total"], 5);
    let greeting = report["steps"][0]["heard"].as_str().unwrap().to_lowercase();
    assert!(greeting.contains("thanks for calling"), "{greeting}");
    let answer = report["steps"][2]["heard"].as_str().unwrap().to_lowercase();
    assert!(answer.contains("monday"), "{answer}");
    let latency = report["steps"][2]["latency_ms"].as_u64().unwrap();
    assert!(latency > 0 && latency <= 6000, "latency {latency} ms");
    assert_eq!(report["end"]["passed"], true);
    assert!(report["replies"].as_array().unwrap().len() >= 2);
    assert_eq!(report["caller_audio"][0]["kind"], "turn");
}

#[test]
fn a_scenario_against_a_real_skald_over_sip_passes_with_json_and_junit() {
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start_with(&example_config_with_agents(dir.path(), |_, t| t));
    let scenario = write(dir.path(), "smoke.yaml", SMOKE);
    let (json, junit) = (dir.path().join("out.json"), dir.path().join("out.xml"));
    let out = simulate(
        &[&scenario, "--target", &skald.uri("+15550123"), "--json", json.to_str().unwrap(), "--junit", junit.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", skald.log());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("score 5/5: PASS"), "{text}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_smoke_passed(&report);
    assert_eq!(report["transport"], "sip");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 5, "{xml}");
    assert!(xml.contains(r#"failures="0""#) && !xml.contains("<failure"), "{xml}");
    // skald heard the caller over real RTP: its own transcript has the turn.
    let calls = skald.wait_ended(1, Duration::from_secs(10));
    let detail = skald.get_json(&format!("/api/v1/calls/{}", calls[0]["id"].as_str().unwrap()));
    let caller: Vec<String> = detail["turns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["speaker"] == "caller")
        .map(|t| t["text"].as_str().unwrap().to_lowercase())
        .collect();
    assert!(caller.iter().any(|t| t.contains("opening hours")), "{caller:?}");
    assert_eq!(detail["end_reason"], "remote-bye", "the simulator hung up: {detail:#}");
}

#[test]
fn a_scenario_over_a_twilio_media_stream_passes() {
    const TOKEN: &str = "simulate-test-auth-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let yaml = example_config_with_agents(dir.path(), |_, t| t);
    let skald = Skald::start_with_env(&yaml, &[("TWILIO_AUTH_TOKEN", TOKEN)]);
    let scenario = write(dir.path(), "smoke.yaml", SMOKE);
    let json = dir.path().join("out.json");
    let url = format!("ws://127.0.0.1:{}/api/v1/twilio/media-stream", skald.http_port);
    let out = simulate(&[&scenario, "--twilio-url", &url, "--json", json.to_str().unwrap()], &[("TWILIO_AUTH_TOKEN", TOKEN)]);
    assert_eq!(out.status.code(), Some(0), "{}", skald.log());
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_smoke_passed(&report);
    assert_eq!(report["transport"], "twilio");
    let calls = skald.wait_ended(1, Duration::from_secs(10));
    assert_eq!(calls[0]["transport"], "twilio-stream", "{:#}", calls[0]);
    // Without the auth token the signed upgrade is refused: no call.
    let out = simulate(&[&scenario, "--twilio-url", &url], &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 403"), "{err}");
}

#[test]
fn a_bad_scenario_exits_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.yaml", "name: bad\nsteps:\n  - expect: {words: [hi]}\n  - say: hello\n    during_replay: []\n");
    let out = simulate(&[&bad, "--target", "sip:x@127.0.0.1:9"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{bad}:5: steps[1]")) && err.contains("unknown field `during_replay`"), "{err}");
    let two = write(dir.path(), "two.yaml", "name: two\nsteps:\n  - expect: {}\n    silent_s: 3\n");
    let out = simulate(&[&two, "--target", "sip:x@127.0.0.1:9"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{two}:3: ")) && err.contains("exactly one of"), "{err}");
    // No target anywhere: a usage error.
    let ok = write(dir.path(), "ok.yaml", "name: ok\nsteps:\n  - expect: {}\n");
    let out = simulate(&[&ok], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no target"));
}

#[test]
fn a_target_that_does_not_answer_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "s.yaml", "name: s\nsteps:\n  - expect: {}\n");
    // A SIP address where nothing answers (the socket swallows the INVITEs).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("sip:+15550123@{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let out = simulate(&[&scenario, "--target", &target, "--ring-timeout", "2"], &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not answer") && err.contains("no answer within 2 s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "gave up in {:?}", started.elapsed());
    // A Media Streams URL with nothing listening.
    let port = free_port();
    let out = simulate(&[&scenario, "--twilio-url", &format!("ws://127.0.0.1:{port}/api/v1/twilio/media-stream")], &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the Media Stream") && err.to_lowercase().contains("refused"), "{err}");
}
