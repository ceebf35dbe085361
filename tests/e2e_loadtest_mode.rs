//! End to end: load-test mode. Every voice agent of the example config runs
//! on stand-in providers (`stt: {fixed: …}`, `tts: {tone: …}`): skald
//! loads neither Moonshine nor Piper, and a real SIP call (sipp, with real
//! recorded speech from the test as the caller's RTP) still goes through
//! the real media path, Silero VAD and turn-taking: the caller hears the
//! greeting and an answer to each turn as tones, and the record holds the
//! fixed transcript. An LLM agent on `llm: [{kind: echo}]` answers with the
//! caller's words, no model and no server.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// The fixed transcript of every caller turn.
const HEARD: &str = "I'd like to book a cleaning";

/// The example config with every voice agent on stand-ins.
fn loadtest_config() -> String {
    on_stand_ins(&example_config())
}

/// `config` with every voice agent on stand-in STT and TTS.
fn on_stand_ins(config: &str) -> String {
    let mut out = Vec::new();
    for line in config.lines() {
        out.push(line.to_string());
        if line.trim_start().starts_with("type: voice-agent") {
            out.push(format!("    stt: {{fixed: {{text: \"{HEARD}\"}}}}"));
            out.push("    tts: {tone: {ms: 700, hz: 600}}".to_string());
        }
    }
    out.join("\n")
}

#[test]
fn stand_in_providers_answer_every_turn_with_the_real_media_path() {
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start_with(&loadtest_config());
    let log = skald.log();
    assert!(log.contains("local_stt=false") && log.contains("local_tts=false"), "neither Moonshine nor Piper loaded:\n{log}");
    let peer = RtpPeer::start();
    let sipp_t = sipp_phone(&skald.uri("+15550123"), "uac_call.xml", dir.path(), &peer, 25_000);
    // The greeting: two sentences, a 700 ms tone each.
    let t0 = Instant::now();
    let greeting_end = peer.wait_agent_turn(t0, Duration::from_millis(600), Duration::from_secs(10));
    let greeting_ms = peer.heard().iter().filter(|(t, f)| *t >= t0 && *t <= greeting_end && is_loud(f)).count() * 20;
    assert!((1000..=2000).contains(&greeting_ms), "two 700 ms tones: {greeting_ms} ms heard");
    let detail = one_turn_answered(&skald, &peer, sipp_t);
    let turns = detail["turns"].as_array().unwrap();
    let caller: Vec<&str> = turns.iter().filter(|t| t["speaker"] == "caller").map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(caller, [HEARD], "{detail:#}");
    let agent: Vec<&str> = turns.iter().filter(|t| t["speaker"] == "agent").map(|t| t["text"].as_str().unwrap()).collect();
    assert!(agent.iter().any(|t| t.contains("book")), "the flow agent answered the booking intent: {agent:?}");
}

/// The LLM agent of the example config (`support`) on the echo LLM: its
/// whole path (conversation, sentences, TTS, records) runs with no model
/// and no server, and the record shows the caller's words said back.
#[test]
fn an_llm_agent_on_the_echo_llm_says_back_the_callers_words() {
    let dir = tempfile::tempdir().unwrap();
    let config = example_config_with_agents(dir.path(), |name, text| {
        if name != "tier1-llm.yaml" {
            return text;
        }
        let start = text.find("\nllm:").expect("tier1-llm has an llm list") + 1;
        let end = start + text[start..].find("\nstt:").expect("stt follows llm") + 1;
        format!("{}llm:\n  - kind: echo\n{}", &text[..start], &text[end..])
    });
    let skald = Skald::start_with(&on_stand_ins(&config));
    let peer = RtpPeer::start();
    let sipp_t = sipp_phone(&skald.uri("support"), "uac_call.xml", dir.path(), &peer, 25_000);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(600), Duration::from_secs(10));
    let detail = one_turn_answered(&skald, &peer, sipp_t);
    let agent: Vec<&str> = detail["turns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["speaker"] == "agent")
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert!(agent.iter().any(|t| t.contains(&format!("You said: {HEARD}"))), "{detail:#}");
}

/// After the greeting: the caller says one real sentence, the agent answers
/// it, sipp hangs up; returns the call's record.
fn one_turn_answered(
    skald: &Skald,
    peer: &RtpPeer,
    sipp_t: std::thread::JoinHandle<std::process::Output>,
) -> serde_json::Value {
    // Real speech; the turn ends on the real VAD and the agent answers.
    peer.say(&librivox_ulaw("sense_and_sensibility_01_austen_64kb-0880"));
    let spoke_end = Instant::now();
    let answer_end = peer.wait_agent_turn(spoke_end, Duration::from_millis(600), Duration::from_secs(10));
    assert!(answer_end > spoke_end, "the agent answered the turn");
    let out = sipp_t.join().unwrap();
    assert_sipp_ok(&out, skald);
    let c = &skald.wait_ended(1, Duration::from_secs(20))[0];
    skald.get_json(&format!("/api/v1/calls/{}", c["id"].as_str().unwrap()))
}
