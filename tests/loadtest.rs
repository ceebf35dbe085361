//! End to end: `skald loadtest` against a real `skald serve` in load-test
//! mode (`sip-config/loadtest.yaml`: stand-in STT and TTS, real media path,
//! VAD, smart-turn and turn-taking). Three callers over Twilio Media
//! Streams speak real speech; each turn is answered, nothing is missed, and
//! the report has the latency, pacing, CPU and RSS figures.

mod common;

use common::*;
use std::process::Command;

#[test]
fn the_load_generator_measures_a_running_skald_from_outside() {
    let yaml = std::fs::read_to_string(repo().join("sip-config/loadtest.yaml"))
        .unwrap()
        .replace("agents_dir: agents", &format!("agents_dir: {}", repo().join("sip-config/agents").display()));
    let skald = Skald::start_with(&yaml);
    let json = skald.dir.path().join("load.json");
    let out = Command::new(env!("CARGO_BIN_EXE_skald"))
        .args(["loadtest", "--twilio-url", &format!("ws://127.0.0.1:{}/api/v1/twilio/media-stream", skald.http_port)])
        .args(["--calls", "1,3", "--duration", "12", "--every", "6", "--pid", &skald.pid().to_string()])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}\n{}\n{}", String::from_utf8_lossy(&out.stderr), skald.log());
    assert!(table.starts_with("| calls | completed |"), "{table}");
    let reports: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let steps = reports.as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for (step, n) in steps.iter().zip([1, 3]) {
        assert_eq!(step["calls"], n, "{step}");
        assert_eq!(step["completed"], n, "{step}");
        assert_eq!(step["missed"], 0, "{step}");
        let turns = step["turns"].as_u64().unwrap();
        assert!(turns >= n as u64, "{step}");
        assert_eq!(step["replies"].as_u64().unwrap(), turns, "every turn answered: {step}");
        let p50 = step["latency_p50_ms"].as_f64().unwrap();
        assert!((100.0..3000.0).contains(&p50), "reply latency from the end of speech: {step}");
        assert!(step["gap_p99_ms"].as_f64().is_some(), "{step}");
        assert!(step["cpu_cores"].as_f64().is_some_and(|c| c > 0.0), "{step}");
        assert!(step["rss_mib"].as_f64().is_some_and(|m| m > 10.0), "{step}");
    }
}
