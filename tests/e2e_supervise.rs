//! End to end: a supervisor on a real call. sipp places the call, the test
//! is the caller's RTP endpoint ([`RtpPeer`]) and the supervisor's browser
//! (a real WebSocket client on `/api/v1/calls/{id}/audio`); skald runs the
//! local models and the dental front-desk flow agent of the example config.
//!
//! Covered: `listen` hears the agent's greeting and the caller's speech;
//! whisper text to a flow agent is refused (409); `barge` speech reaches
//! the caller; `takeover` silences the agent and the supervisor's speech
//! reaches the caller, and the call ends when that supervisor leaves; a
//! supervisor socket dropped mid-listen leaves the call running; an action
//! on an ended call answers 409; every action is an audited event.

mod common;

use common::supervisor::*;
use common::*;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};


/// The example config with its agents copied to `dir` (as e2e_voice does).
fn voice_config(dir: &Path) -> String {
    example_config_with_agents(dir, |_, text| text)
}

/// A call to the dental agent whose RTP goes to a fresh [`RtpPeer`]; sipp
/// waits for skald's BYE (`wait_for_bye`) or hangs up after `ms`.
fn call(skald: &Skald, dir: &Path, wait_for_bye: bool, ms: u64) -> (RtpPeer, std::thread::JoinHandle<std::process::Output>) {
    call_to(skald, dir, "+15550123", wait_for_bye, ms)
}

/// [`call`] to `service`.
fn call_to(skald: &Skald, dir: &Path, service: &str, wait_for_bye: bool, ms: u64) -> (RtpPeer, std::thread::JoinHandle<std::process::Output>) {
    let peer = RtpPeer::start();
    let template = if wait_for_bye { "uac_wait_bye.xml" } else { "uac_call.xml" };
    let t = sipp_phone(&skald.uri(service), template, dir, &peer, ms);
    (peer, t)
}

fn events(skald: &Skald, id: &str) -> Vec<serde_json::Value> {
    skald.get_json(&format!("/api/v1/calls/{id}"))["events"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_supervisor_listens_barges_in_and_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start_with(&voice_config(dir.path()));
    let (peer, sipp_t) = call(&skald, dir.path(), true, 90_000);
    let id = skald.wait_live(Duration::from_secs(10))["id"].as_str().unwrap().to_string();

    // listen: the greeting, then the caller's question and the agent's answer.
    let (status, joined) = supervise(&skald, &id, serde_json::json!({"action": "listen"}));
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["mode"], "listen");
    let session = joined["session"].as_str().unwrap().to_string();
    assert_eq!(joined["audio"], format!("/api/v1/calls/{id}/audio?session={session}"));
    let sup = Supervisor::connect(&skald, joined["audio"].as_str().unwrap());
    let t0 = Instant::now();
    let greeting_end = peer.wait_agent_turn(t0, Duration::from_millis(800), Duration::from_secs(20));
    let greeting = sup.heard_between(t0, greeting_end + Duration::from_millis(300));
    assert!(greeting.len() > 50, "the supervisor gets 20 ms frames: {}", greeting.len());
    assert!(greeting.iter().all(|(_, f)| f.len() == FRAME));
    let said = transcribe_16k(&greeting).to_lowercase();
    eprintln!("the supervisor heard the agent say: {said}");
    assert!(said.contains("smile") || said.contains("dental"), "greeting not heard by the supervisor: {said:?}");
    assert_eq!(sup.status().first(), Some(&serde_json::json!({"type": "mode", "mode": "listen"})));

    let question = piper_ulaw("What are your opening hours?");
    let asked = Instant::now();
    peer.say(&question);
    let answered = peer.wait_agent_turn(asked, Duration::from_millis(800), Duration::from_secs(20));
    let caller_part = sup.heard_between(asked, asked + Duration::from_millis(question.len() as u64 / 8 + 300));
    let caller_said = transcribe_16k(&caller_part).to_lowercase();
    eprintln!("the supervisor heard the caller say: {caller_said}");
    assert!(caller_said.contains("hours") || caller_said.contains("opening"), "{caller_said:?}");
    let both = transcribe_16k(&sup.heard_between(asked, answered + Duration::from_millis(300))).to_lowercase();
    assert!(both.contains("monday") || both.contains("friday") || both.contains("open"), "the answer too: {both:?}");

    // whisper text needs an LLM agent: 409, and nothing changes.
    let (status, body) = supervise(&skald, &id, serde_json::json!({"action": "whisper", "session": session, "text": "Offer a discount."}));
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("LLM"), "{body}");
    // An unknown session: 404.
    let (status, _) = supervise(&skald, &id, serde_json::json!({"action": "barge", "session": "nope"}));
    assert_eq!(status, 404);

    // barge: the caller hears the supervisor.
    let (status, body) = supervise(&skald, &id, serde_json::json!({"action": "barge", "session": session}));
    assert_eq!((status, body["mode"].as_str()), (200, Some("barge")), "{body}");
    let barge_at = Instant::now();
    sup.say(&piper_ulaw("This is your supervisor speaking, please stay on the line."));
    wait_sent(&sup, Duration::from_millis(500));
    let heard: Vec<_> = peer.heard().into_iter().filter(|(t, _)| *t >= barge_at).collect();
    let caller_heard = transcribe_heard(&heard).to_lowercase();
    eprintln!("the caller heard the barge-in: {caller_heard}");
    assert!(caller_heard.contains("supervisor") && caller_heard.contains("line"), "{caller_heard:?}");

    // takeover: the agent leaves; the caller's question gets no agent answer,
    // the supervisor's speech reaches the caller.
    let (status, body) = supervise(&skald, &id, serde_json::json!({"action": "takeover", "session": session}));
    assert_eq!((status, body["mode"].as_str()), (200, Some("takeover")), "{body}");
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    peer.say(&question);
    std::thread::sleep(Duration::from_millis(question.len() as u64 / 8 + 3000));
    let after: Vec<_> = peer.heard().into_iter().filter(|(t, _)| *t >= asked).collect();
    assert!(after.iter().all(|(_, f)| !is_loud(f)), "the agent spoke after the takeover");
    let heard_question = transcribe_16k(&sup.heard_between(asked, Instant::now())).to_lowercase();
    assert!(heard_question.contains("hours"), "the supervisor hears the caller: {heard_question:?}");
    let takeover_at = Instant::now();
    sup.say(&piper_ulaw("Hello, I am taking over this call now."));
    wait_sent(&sup, Duration::from_millis(500));
    let heard: Vec<_> = peer.heard().into_iter().filter(|(t, _)| *t >= takeover_at).collect();
    let caller_heard = transcribe_heard(&heard).to_lowercase();
    eprintln!("the caller heard the supervisor: {caller_heard}");
    assert!(says(&caller_heard, "taking over"), "{caller_heard:?}");
    assert!(sup.status().iter().any(|s| s["mode"] == "takeover"), "{:?}", sup.status());

    // The last supervisor with the caller leaves: the call ends.
    let (status, body) = supervise(&skald, &id, serde_json::json!({"action": "leave", "session": session}));
    assert_eq!((status, body["mode"].as_str()), (200, Some("leave")), "{body}");
    let out = sipp_t.join().unwrap();
    assert_sipp_ok(&out, &skald);
    drop(peer);
    let ended = skald.wait_ended(1, Duration::from_secs(10));
    assert_eq!(ended[0]["end_reason"], "supervisor-left");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sup.status().last(), Some(&serde_json::json!({"type": "left"})), "{:?}", sup.status());
    sup.close();

    // Every accepted action is audited.
    let evs = events(&skald, &id);
    let actions: Vec<&str> = evs
        .iter()
        .filter(|e| e["kind"] == "supervisor.action")
        .map(|e| e["data"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["listen", "barge", "takeover", "leave"], "{evs:#?}");
    let listen = evs.iter().find(|e| e["kind"] == "supervisor.action").unwrap();
    assert_eq!(listen["data"]["by"], "admin");
    assert_eq!(listen["data"]["role"], "admin");
    assert_eq!(listen["data"]["session"], session.as_str());
    assert!(evs.iter().any(|e| e["kind"] == "supervisor.takeover"), "{evs:#?}");

    // The stereo recording (caller left, the other side right) runs to the
    // end: barge and takeover do not stop it, and the supervisor's words
    // after the takeover are on the right channel.
    let d = skald.get_json(&format!("/api/v1/calls/{id}"));
    let rec = d["recording_path"].as_str().expect("stereo recording");
    let mut wav = hound::WavReader::open(rec).unwrap();
    let rate = wav.spec().sample_rate;
    assert_eq!(wav.spec().channels, 2);
    let pcm: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
    let secs = pcm.len() as f64 / 2.0 / rate as f64;
    let call_secs = (d["ended_at"].as_i64().unwrap() - d["answered_at"].as_i64().unwrap()) as f64 / 1000.0;
    eprintln!("recording {secs:.1} s of a {call_secs:.1} s call");
    assert!((secs - call_secs).abs() < 1.5, "recording {secs:.1} s, call {call_secs:.1} s");
    let right: Vec<i16> = pcm.chunks_exact(2).map(|lr| lr[1]).collect();
    let tail = &right[right.len().saturating_sub(rate as usize * 6)..];
    let loud = tail.chunks_exact(rate as usize / 50).filter(|f| is_loud(f)).count();
    assert!(loud > 25, "the supervisor's takeover speech is recorded ({loud} loud frames in the last 6 s)");

    // An action on the ended call: 409, nothing breaks.
    let (status, body) = supervise(&skald, &id, serde_json::json!({"action": "listen"}));
    assert_eq!(status, 409, "{body}");
    let (status, _) = http_body(skald.http_port, "POST", &format!("/api/v1/calls/{id}/transfer"), r#"{"target":"sip:bob@127.0.0.1"}"#).unwrap();
    assert_eq!(status, 409);
    assert_eq!(skald.try_http("GET", "/health/ready").unwrap().0, 200);
}

#[test]
fn a_supervisor_browser_that_disconnects_mid_listen_leaves_the_call_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start_with(&voice_config(dir.path()));
    let (peer, sipp_t) = call(&skald, dir.path(), false, 25_000);
    let id = skald.wait_live(Duration::from_secs(10))["id"].as_str().unwrap().to_string();
    let (status, joined) = supervise(&skald, &id, serde_json::json!({"action": "listen"}));
    assert_eq!(status, 200, "{joined}");
    let sup = Supervisor::connect(&skald, joined["audio"].as_str().unwrap());
    // A second socket on the same session: 409 before the upgrade.
    let second = Supervisor::try_connect(&skald, joined["audio"].as_str().unwrap()).err();
    assert!(second.as_deref().is_some_and(|e| e.contains("409")), "one socket per session: {second:?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!sup.heard.lock().unwrap().is_empty(), "frames flow");
    sup.close();
    peer.wait_agent_turn(Instant::now() - Duration::from_secs(2), Duration::from_millis(800), Duration::from_secs(20));
    // The caller still gets answers.
    let asked = Instant::now();
    peer.say(&piper_ulaw("What are your opening hours?"));
    peer.wait_agent_turn(asked, Duration::from_millis(800), Duration::from_secs(20));
    let evs = events(&skald, &id);
    let left = evs.iter().find(|e| e["kind"] == "supervisor.left").unwrap_or_else(|| panic!("{evs:#?}"));
    assert_eq!(left["data"]["why"], "socket-closed");
    assert_eq!(left["data"]["session"], joined["session"]);
    let out = sipp_t.join().unwrap();
    assert_sipp_ok(&out, &skald);
    let ended = skald.wait_ended(1, Duration::from_secs(10));
    assert_ne!(ended[0]["end_reason"], "supervisor-left");
    let detail = skald.get_json(&format!("/api/v1/calls/{id}"));
    let agent_turns = detail["turns"].as_array().unwrap().iter().filter(|t| t["speaker"] == "agent").count();
    assert!(agent_turns >= 2, "greeting and answer: {detail:#}");
    let (status, _) = supervise(&skald, &id, serde_json::json!({"action": "listen"}));
    assert_eq!(status, 409, "an action on an ended call");
}

/// A local server speaking OpenAI's streaming chat-completions protocol
/// that answers every request with one sentence; returns its port and the
/// request bodies it received.
fn mock_openai() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    use axum::{Json, Router, routing::post};
    let seen = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let log = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = Router::new().route(
                "/v1/chat/completions",
                post(move |Json(body): Json<serde_json::Value>| {
                    let log = log.clone();
                    async move {
                        log.lock().unwrap().push(body);
                        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
                            let c = serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "test",
                                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
                            format!("data: {c}\n\n")
                        };
                        let mut sse = chunk(serde_json::json!({"role": "assistant", "content": "We are open every day."}), None);
                        sse += &chunk(serde_json::json!({}), Some("stop"));
                        sse += "data: [DONE]\n\n";
                        ([("content-type", "text/event-stream")], sse)
                    }
                }),
            );
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (port, seen)
}

/// A typed whisper to an LLM agent becomes an instruction in every later
/// request to the model.
#[test]
fn a_whispered_instruction_reaches_the_llm_agent() {
    let (port, seen) = mock_openai();
    let dir = tempfile::tempdir().unwrap();
    let yaml = voice_config(dir.path());
    std::fs::write(
        dir.path().join("agents/test-llm.yaml"),
        format!(
            "kind: llm\nname: test-llm\ngreeting: Hello, this is the test line.\ninstructions: You answer questions about opening hours.\nllm:\n  - kind: openai\n    base_url: http://127.0.0.1:{port}/v1\n    model: test\ntools: [end_call]\n"
        ),
    )
    .unwrap();
    let yaml = yaml
        .replacen("    support: support", "    support: support\n    \"+15550177\": llm-test", 1)
        .replacen("applications:\n", "applications:\n  llm-test:\n    type: voice-agent\n    agent: test-llm\n", 1);
    let skald = Skald::start_with(&yaml);
    let (peer, sipp_t) = call_to(&skald, dir.path(), "+15550177", false, 20_000);
    let id = skald.wait_live(Duration::from_secs(10))["id"].as_str().unwrap().to_string();
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(800), Duration::from_secs(20));
    let text = "Offer the caller a ten percent discount.";
    let (status, body) = supervise(&skald, &id, serde_json::json!({"action": "whisper", "text": text}));
    assert_eq!((status, body["mode"].as_str()), (200, Some("whisper")), "{body}");
    let asked = Instant::now();
    peer.say(&piper_ulaw("What are your opening hours?"));
    peer.wait_agent_turn(asked, Duration::from_millis(800), Duration::from_secs(20));
    let seen = seen.lock().unwrap().clone();
    let last = seen.last().expect("the model was asked");
    let system = last["messages"][0]["content"].as_str().unwrap();
    assert!(system.ends_with(&format!("Supervisor instruction: {text}")), "{system}");
    let evs = events(&skald, &id);
    let whisper = evs.iter().find(|e| e["kind"] == "supervisor.action").unwrap_or_else(|| panic!("{evs:#?}"));
    assert_eq!((whisper["data"]["action"].as_str(), whisper["data"]["text"].as_str()), (Some("whisper"), Some(text)));
    let out = sipp_t.join().unwrap();
    assert_sipp_ok(&out, &skald);
}
