//! The dental front desk's conversations, as scripted in
//! `sip-config/scenarios/`: each test starts a fresh `skald serve` with the
//! example config and runs `skald simulate` (the binary) with one shipped
//! scenario against it over SIP; every check of the scenario must pass.
//!
//! Tests named `turn_taking_*` show the voice agent's turn-taking: one
//! reply to a turn said in several phrases, backchannels that do not stop
//! the reply. Every call's own record must show at most 2 s of dead air.
//!
//! The calls run one at a time: the scenarios hold the agent to the real
//! budgets (2 s of dead air at most), which two voice calls and their
//! simulators sharing two cores would not measure fairly. Each test prints
//! the simulator's report and skald's own transcript of the call.

mod common;

use common::*;
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// One conversation at a time (see the module docs).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Longest dead air any call of the suite may have, ms, as skald's own
/// call record measures it (end of the caller's speech to its first reply
/// packet).
const MAX_DEAD_AIR_MS: u64 = 2000;

/// Runs `sip-config/scenarios/NAME.yaml` against a fresh skald over SIP;
/// returns the JSON report, after asserting that every check passed.
fn run_scenario(name: &str) -> serde_json::Value {
    run_scenario_via(name, false).0
}

/// The same, over SIP or as a Twilio Media Stream (`twilio`); also returns
/// the texts of the caller turns in skald's own transcript.
fn run_scenario_via(name: &str, twilio: bool) -> (serde_json::Value, Vec<String>) {
    const TOKEN: &str = "conversation-test-auth-token-0123456789";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start_with_env(&example_config_with_agents(dir.path(), |_, t| t), &[("TWILIO_AUTH_TOKEN", TOKEN)]);
    let scenario = repo().join(format!("sip-config/scenarios/{name}.yaml"));
    let json = dir.path().join("report.json");
    let started = Instant::now();
    let target = if twilio {
        ["--twilio-url".to_string(), format!("ws://127.0.0.1:{}/api/v1/twilio/media-stream", skald.http_port)]
    } else {
        ["--target".to_string(), skald.uri("+15550123")]
    };
    let out = Command::new(env!("CARGO_BIN_EXE_skald"))
        .arg("simulate")
        .arg(&scenario)
        .args(&target)
        .arg("--json")
        .arg(&json)
        .env("RUST_LOG", "warn")
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .output()
        .expect("run skald simulate");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{name}: exit {:?} in {:.1} s\n{text}{}",
        out.status.code(),
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    // What skald itself heard and said (its transcript), to tell a
    // turn-taking failure from a misheard caller.
    let mut dead_air = Vec::new();
    let mut caller_turns = Vec::new();
    for c in skald.wait_ended(1, std::time::Duration::from_secs(15)) {
        let detail = skald.get_json(&format!("/api/v1/calls/{}", c["id"].as_str().unwrap_or_default()));
        for t in detail["turns"].as_array().cloned().unwrap_or_default() {
            if t["speaker"] == "caller" {
                caller_turns.push(t["text"].as_str().unwrap_or_default().to_string());
            }
            eprintln!(
                "  skald {:>6} ms {:<6} {}  {}",
                t["start_ms"],
                t["speaker"].as_str().unwrap_or("?"),
                t["text"].as_str().unwrap_or(""),
                if t["latency"].is_null() { String::new() } else { t["latency"].to_string() }
            );
        }
        eprintln!("  skald end_reason: {}, longest dead air {} ms", detail["end_reason"], detail["longest_dead_air_ms"]);
        dead_air.push(detail["longest_dead_air_ms"].as_u64());
    }
    let report: serde_json::Value = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| panic!("{name}: no report (exit {:?})\n{}", out.status.code(), String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{name}: a check failed:\n{text}");
    assert_eq!(report["passed"], true);
    for d in dead_air {
        let d = d.unwrap_or_else(|| panic!("{name}: the call record has no longest_dead_air_ms"));
        assert!(d <= MAX_DEAD_AIR_MS, "{name}: {d} ms of dead air on the line (skald's record)");
    }
    (report, caller_turns)
}


#[test]
fn barge_in() {
    let r = run_scenario("barge-in");
    assert_eq!(r["caller_audio"][1]["kind"], "barge_in");
}

#[test]
fn silent_caller() {
    run_scenario("silent-caller");
}

/// Every caller turn pauses in mid-sentence; the booking completes, each
/// turn answered in time, and skald hears one caller turn per sentence
/// (six), however many pauses it holds.
#[test]
fn turn_taking_booking_with_pauses() {
    let (r, caller) = run_scenario_via("booking-with-pauses", false);
    assert_eq!(r["end"]["passed"], true);
    assert_eq!(caller.len(), 6, "one caller turn per sentence: {caller:?}");
}

/// "Uh-huh" twice over the agent's reply is a backchannel, not an
/// interruption: the whole reply is heard.
#[test]
fn turn_taking_backchannels() {
    run_scenario("backchannels");
}

/// One LibriVox sentence said in three phrases with real pauses gets
/// exactly one reply, heard within 1.5 s of the end of the speech.
#[test]
fn turn_taking_librivox_three_phrases() {
    run_scenario("librivox-three-phrases");
}

/// The same sentence over Twilio Media Streams: one reply, no talk-over.
#[test]
fn turn_taking_librivox_three_phrases_over_twilio() {
    let (r, caller) = run_scenario_via("librivox-three-phrases", true);
    assert_eq!(r["transport"], "twilio");
    assert_eq!(caller.len(), 1, "one caller turn: {caller:?}");
}
