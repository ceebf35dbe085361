//! The control page's server side against a real `skald serve`: the page
//! and its assets (types, CSP, no data without a token), `GET
//! /api/v1/agents` (the example agents, then a broken file's error with
//! file:line) and `GET /api/v1/calls/{id}/recording` (409 while live, 200
//! WAV after a real sipp call, 404 for none).

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// The example config with its agents copied into `dir/agents` (so a test
/// may add a file there after startup).
fn config_with_own_agents(dir: &Path) -> String {
    example_config_with_agents(dir, |_, text| text)
}

/// A sipp caller to `service` (RTP to a fresh [`RtpPeer`]) that hangs up
/// after `ms`; returns the peer and sipp's thread.
fn call(skald: &Skald, service: &str, dir: &Path, ms: u64) -> (RtpPeer, std::thread::JoinHandle<std::process::Output>) {
    let peer = RtpPeer::start();
    let t = sipp_phone(&skald.uri(service), "uac_call.xml", dir, &peer, ms);
    (peer, t)
}

#[test]
fn the_page_and_its_assets_are_served_with_types_and_a_strict_csp() {
    let skald = Skald::start();
    let port = skald.http_port;
    // The page is static and open (it shows a login form) …
    let page = http_raw(port, "GET", "/agent/gui", &[], "").unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.body.contains("id=\"login-form\""), "{}", page.body);
    let csp = page.header("content-security-policy").expect("CSP");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'self' ws: wss:",
        "media-src 'self' blob:",
        "img-src 'self' data:",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.split(';').any(|d| d.trim() == directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    for (file, ctype) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("audio.js", "text/javascript; charset=utf-8"),
        ("pcm-worklet.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let a = http_raw(port, "GET", &format!("/agent/gui/assets/{file}"), &[], "").unwrap();
        assert_eq!(a.status, 200, "{file}: {}", a.body);
        assert_eq!(a.header("content-type"), Some(ctype), "{file}");
        assert_eq!(a.header("content-security-policy"), Some(csp), "{file}");
    }
    for linked in ["assets/app.js", "assets/style.css"] {
        assert!(page.body.contains(linked), "the page links {linked}");
    }
    let missing = http_raw(port, "GET", "/agent/gui/assets/nope.js", &[], "").unwrap();
    assert_eq!(missing.status, 404, "{}", missing.body);
    let slash = http_raw(port, "GET", "/agent/gui/", &[], "").unwrap();
    assert_eq!((slash.status, slash.header("location")), (308, Some("/agent/gui")));
    // … but no data is reachable without a token.
    for path in ["/api/v1/agents", "/api/v1/calls", &format!("/api/v1/calls/{}/recording", uuid())] {
        let a = http_raw(port, "GET", path, &[], "").unwrap();
        assert_eq!(a.status, 401, "{path}: {}", a.body);
    }
}

#[test]
fn agents_are_listed_with_their_routes_and_a_broken_file_shows_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start_with(&config_with_own_agents(dir.path()));
    let v = skald.get_json("/api/v1/agents");
    let agents = v["agents"].as_array().unwrap();
    let names: Vec<&str> = agents.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, ["dental-front-desk", "tier1-llm", "tier2-billing"], "{v:#}");
    for a in agents {
        assert_eq!(a["valid"], true, "{a:#}");
        assert!(a["errors"].as_array().unwrap().is_empty(), "{a:#}");
        assert!(a["yaml"].as_str().unwrap().contains(&format!("name: {}", a["name"].as_str().unwrap())));
    }
    let dental = &agents[0];
    assert_eq!(dental["kind"], "flow");
    assert_eq!(dental["applications"], serde_json::json!(["front-desk"]));
    assert_eq!(dental["dids"], serde_json::json!(["*"]), "front-desk is the default route");
    assert_eq!(agents[1]["kind"], "llm");
    assert_eq!(agents[1]["dids"], serde_json::json!(["support"]));
    let support = v["applications"].as_array().unwrap().iter().find(|a| a["name"] == "support").unwrap().clone();
    assert_eq!((support["type"].as_str(), support["agent"].as_str()), (Some("voice-agent"), Some("tier1-llm")));
    assert!(v["errors"].as_array().unwrap().is_empty(), "{v:#}");

    // A file broken on disk after startup: listed with its error, the request still answers.
    let broken = dir.path().join("agents/zz-broken.yaml");
    std::fs::write(&broken, "name: broken\nlanguage: en\ngreting: Hello!\nstart: start\n").unwrap();
    let v = skald.get_json("/api/v1/agents");
    let agents = v["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 4, "{v:#}");
    let b = agents.iter().find(|a| a["file"].as_str().unwrap().ends_with("zz-broken.yaml")).unwrap();
    assert_eq!(b["valid"], false, "{b:#}");
    assert_eq!(b["name"], "broken");
    let text = b["errors"][0]["text"].as_str().unwrap();
    assert!(text.starts_with(&format!("{}:3:", broken.display())), "file:line first: {text}");
    assert!(text.contains("greting"), "names the field: {text}");
    assert_eq!(b["errors"][0]["line"], 3);
    assert_eq!(b["errors"].as_array().unwrap().len(), 1, "the graph's copy of the same error is not repeated: {b:#}");
    assert!(agents.iter().filter(|a| a["name"] != "broken").all(|a| a["valid"] == true), "{v:#}");
}

#[test]
fn a_recorded_call_serves_its_wav_and_other_calls_answer_404() {
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start();
    let port = skald.http_port;
    let (status, body) = http(port, "GET", &format!("/api/v1/calls/{}/recording", uuid())).unwrap();
    assert_eq!(status, 404, "{body}");
    let (status, body) = http(port, "GET", "/api/v1/calls/not-a-uuid/recording").unwrap();
    assert_eq!(status, 400, "{body}");

    // The front desk records (stereo WAV): 409 while live, the WAV after.
    let (_peer, sipp_t) = call(&skald, "+15550123", dir.path(), 3_000);
    let live = skald.wait_live(Duration::from_secs(15));
    let id = live["id"].as_str().unwrap().to_string();
    let (status, body) = http(port, "GET", &format!("/api/v1/calls/{id}/recording")).unwrap();
    assert_eq!(status, 409, "{body}");
    assert_sipp_ok(&sipp_t.join().unwrap(), &skald);
    skald.wait_ended(1, Duration::from_secs(15));
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let wav = loop {
        let r = http_raw(port, "GET", &format!("/api/v1/calls/{id}/recording"), &[("Authorization", &auth)], "").unwrap();
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(wav.status, 200, "{}", wav.body);
    assert_eq!(wav.header("content-type"), Some("audio/wav"));
    let head: String = wav.body.chars().take(24).collect();
    assert!(head.starts_with("RIFF") && head.contains("WAVEfmt"), "a WAV file: {head:?}");
    assert!(wav.body.len() > 16_000, "about 3 s of audio: {} bytes", wav.body.len());

    // The echo application records nothing.
    let (_peer, sipp_t) = call(&skald, "echo", dir.path(), 1_000);
    assert_sipp_ok(&sipp_t.join().unwrap(), &skald);
    let calls = skald.wait_ended(2, Duration::from_secs(15));
    let echo = calls.iter().find(|c| c["app"] == "echo").expect("the echo call");
    let (status, body) = http(port, "GET", &format!("/api/v1/calls/{}/recording", echo["id"].as_str().unwrap())).unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no recording"), "{body}");
}

/// A random call id.
fn uuid() -> String {
    skald::ids::CallId::new().to_string()
}
