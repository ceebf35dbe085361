//! End to end: the voice agent on a real call. sipp places the call (SIP);
//! the test is the caller's RTP endpoint: it plays real speech (LibriVox
//! recordings from Debian `pocketsphinx-testdata`) or phrases spoken by
//! espeak-ng, and listens to what skald says back. skald runs the local
//! models (Silero VAD, Moonshine STT, Piper TTS) and the dental front-desk
//! flow agent from the example config.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// The example config with the agents directory made absolute, the agent's
/// silence timeout shortened (for the re-prompt test) when `silence_s` is set.
fn voice_config(dir: &Path, silence_s: Option<u64>) -> String {
    example_config_with_agents(dir, |_, text| match silence_s {
        Some(s) => text
            .lines()
            .map(|l| if l.starts_with("silence_timeout_s:") { format!("silence_timeout_s: {s}") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n"),
        None => text,
    })
}

/// Starts a call to `service` whose RTP goes to a fresh [`RtpPeer`]; sipp
/// waits up to `bye_timeout_s` for skald's BYE (or hangs up itself after
/// `hold_ms` when `hangup_after` is set). Returns the peer and sipp's thread.
fn call(
    skald: &Skald,
    service: &str,
    dir: &Path,
    wait_for_bye: bool,
    ms: u64,
) -> (RtpPeer, std::thread::JoinHandle<std::process::Output>) {
    let peer = RtpPeer::start();
    let template = if wait_for_bye { "uac_wait_bye.xml" } else { "uac_call.xml" };
    let t = sipp_phone(&skald.uri(service), template, dir, &peer, ms);
    (peer, t)
}

fn call_detail(skald: &Skald) -> serde_json::Value {
    let c = &skald.wait_ended(1, Duration::from_secs(20))[0];
    skald.get_json(&format!("/api/v1/calls/{}", c["id"].as_str().unwrap()))
}

fn turns(detail: &serde_json::Value, speaker: &str) -> Vec<String> {
    detail["turns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["speaker"] == speaker)
        .map(|t| t["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn caller_speech_is_transcribed_and_the_agent_answers_with_speech() {
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start_with(&voice_config(dir.path(), None));
    let (peer, sipp_t) = call(&skald, "+15550123", dir.path(), false, 40_000);
    // The greeting.
    let t0 = Instant::now();
    let greeting_end = peer.wait_agent_turn(t0, Duration::from_millis(800), Duration::from_secs(15));
    let greeting: Vec<_> = peer.heard().into_iter().filter(|(t, _)| *t <= greeting_end).collect();
    let said = transcribe_heard(&greeting);
    eprintln!("skald said: {said}");
    let lower = said.to_lowercase();
    assert!(lower.contains("smile") || lower.contains("dental"), "greeting not recognizable: {said:?}");
    // Real speech from two LibriVox recordings (22 words), phone-band
    // (8 kHz µ-law), each followed by the agent's answer.
    let ids = ["sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0890"];
    for id in ids {
        let ulaw = librivox_ulaw(id);
        peer.say(&ulaw);
        let t1 = Instant::now();
        peer.wait_agent_turn(t1, Duration::from_millis(800), Duration::from_secs(30));
    }
    let out = sipp_t.join().unwrap();
    assert_sipp_ok(&out, &skald);
    let detail = call_detail(&skald);
    let caller = turns(&detail, "caller");
    eprintln!("rtp in {} lost {} jitter {} ms", detail["rtp_packets_in"], detail["rtp_lost"], detail["jitter_ms"]);
    assert!(!caller.is_empty(), "no caller turn stored: {detail:#}");
    // A pause inside the sentence may split it into turns: score them together.
    let said = caller.join(" ");
    let reference = ids.map(librivox_reference).join(" ");
    let w = wer(&reference, &said);
    eprintln!("caller: {said:?}\nreference: {reference:?}\nWER {:.1} %", w * 100.0);
    if let Some(rec) = detail["recording_path"].as_str() {
        let _ = std::fs::copy(rec, std::env::temp_dir().join("skald-last-voice-call.wav"));
    }
    assert!(w <= 0.10, "WER {:.1} % > 10 %: {said:?} vs {reference:?}", w * 100.0);
    assert!(turns(&detail, "agent").len() >= 2, "the agent answered: {detail:#}");
    let (_, metrics) = skald.try_http("GET", "/metrics").unwrap();
    assert!(metrics.contains("skald_turn_latency_ms_bucket"), "latency histograms exported");
}

#[test]
fn booking_dialogue_ends_confirmed_and_skald_hangs_up() {
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start_with(&voice_config(dir.path(), None));
    let (peer, sipp_t) = call(&skald, "+15550123", dir.path(), true, 90_000);
    let script = [
        "I would like to book a cleaning please.",
        "Next Tuesday.",
        "Two thirty in the afternoon.",
        "My name is Anna Smith.",
        "Yes, that's right.",
        "No thanks, goodbye.",
    ];
    let mut since = Instant::now();
    peer.wait_agent_turn(since, Duration::from_millis(900), Duration::from_secs(20));
    for line in script {
        peer.say(&piper_ulaw(line));
        since = Instant::now();
        if line.contains("goodbye") {
            break;
        }
        peer.wait_agent_turn(since, Duration::from_millis(900), Duration::from_secs(20));
    }
    let out = sipp_t.join().unwrap();
    assert_sipp_ok(&out, &skald);
    let detail = call_detail(&skald);
    let agent = turns(&detail, "agent").join(" | ").to_lowercase();
    let caller = turns(&detail, "caller").join(" | ");
    eprintln!("agent: {agent}\ncaller: {caller}");
    assert!(agent.contains("all set") || agent.contains("booked"), "no confirmation: {agent}");
    assert!(agent.contains("tuesday"), "{agent}");
    assert!(agent.contains("2:30") || agent.contains("two thirty") || agent.contains("2.30"), "{agent}");
    for t in detail["turns"].as_array().unwrap() {
        if t["speaker"] == "agent" && !t["latency"]["first_packet_ms"].is_null() {
            eprintln!("latency (ms from end of caller speech): {}", t["latency"]);
        }
    }
    let end = detail["end_reason"].as_str().unwrap();
    assert!(end == "goodbye" || end == "completed", "skald hung up for the right reason: {end}");
    let rec = detail["recording_path"].as_str().expect("stereo recording");
    let (_, rate) = read_wav(Path::new(rec));
    assert_eq!(rate, 16000);
    assert_eq!(hound::WavReader::open(rec).unwrap().spec().channels, 2);
}

#[test]
fn talking_over_the_agent_stops_its_audio_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start_with(&voice_config(dir.path(), None));
    let (peer, sipp_t) = call(&skald, "+15550123", dir.path(), false, 14_000);
    // Wait until the greeting is under way, then talk over it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !peer.heard().iter().any(|(_, f)| is_loud(f)) {
        assert!(Instant::now() < deadline, "no greeting");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(600));
    peer.say(&piper_ulaw("Hold on, I want to ask about your opening hours."));
    std::thread::sleep(Duration::from_millis(2500));
    let speech_start = peer.speech_sent()[0];
    let heard = peer.heard();
    // The agent's audio after the caller started: when did it go quiet for
    // good (at least 500 ms, longer than the pauses inside the greeting)?
    let after: Vec<_> = heard.iter().filter(|(t, _)| *t > speech_start).collect();
    let stopped = (0..after.len())
        .find(|&i| {
            let (t, _) = after[i];
            after[i..].iter().take_while(|(u, _)| u.duration_since(*t) < Duration::from_millis(500)).all(|(_, f)| !is_loud(f))
                && after.last().is_some_and(|(u, _)| u.duration_since(*t) >= Duration::from_millis(500))
        })
        .map(|i| after[i].0)
        .expect("agent audio never stopped");
    let after_start = stopped.duration_since(speech_start).as_millis() as i64;
    // The caller's speech reaches skald through its 60 ms jitter buffer;
    // from then, the agent's audio must stop within 200 ms (barge_in_min_ms
    // 80 included).
    let stop_latency = after_start - 60;
    eprintln!("agent audio stopped {after_start} ms after the caller started (≈{stop_latency} ms after skald got the speech)");
    assert!(stop_latency <= 200, "agent kept talking {stop_latency} ms after the caller's speech reached skald");
    let out = sipp_t.join().unwrap();
    assert_sipp_ok(&out, &skald);
    let detail = call_detail(&skald);
    let greeting = &detail["turns"].as_array().unwrap()[0];
    assert_eq!(greeting["speaker"], "agent");
    assert_eq!(greeting["interrupted"], true, "{detail:#}");
    let (_, metrics) = skald.try_http("GET", "/metrics").unwrap();
    assert!(metrics.contains("skald_barge_ins_total 1"), "barge-in counted");
}

#[test]
fn silence_gets_reprompts_then_a_polite_hangup() {
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start_with(&voice_config(dir.path(), Some(2)));
    let (peer, sipp_t) = call(&skald, "+15550123", dir.path(), true, 60_000);
    let out = sipp_t.join().unwrap();
    assert_sipp_ok(&out, &skald);
    drop(peer);
    let detail = call_detail(&skald);
    assert_eq!(detail["end_reason"], "no-input", "{detail:#}");
    let agent = turns(&detail, "agent");
    assert!(agent.len() >= 3, "greeting, re-prompts and goodbye: {agent:?}");
    assert!(turns(&detail, "caller").is_empty(), "silence never became a caller turn");
}

/// Cloud STT and TTS that cannot be reached: the call goes on with the
/// local models, and the call record says what failed and what took over.
#[test]
fn cloud_provider_outages_fall_back_to_local_and_are_recorded() {
    let hours = piper_ulaw("What are your opening hours?");
    let dir = tempfile::tempdir().unwrap();
    let dead = free_port();
    let yaml = voice_config(dir.path(), None).replace(
        "    barge_in_min_ms: 80",
        &format!(
            "    barge_in_min_ms: 80\n    stt:\n      deepgram:\n        base_url: ws://127.0.0.1:{dead}/v1/listen\n        api_key_env: SKALD_TEST_DEEPGRAM_KEY\n    tts:\n      openai:\n        base_url: http://127.0.0.1:{dead}/v1\n        api_key_env: SKALD_TEST_OPENAI_KEY"
        ),
    );
    assert!(yaml.contains("deepgram:"), "the example config changed: {yaml}");
    let skald = Skald::start_with_env(&yaml, &[("SKALD_TEST_DEEPGRAM_KEY", "dg-test"), ("SKALD_TEST_OPENAI_KEY", "sk-test")]);
    let (peer, sipp_t) = call(&skald, "+15550123", dir.path(), false, 20_000);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&hours);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    let out = sipp_t.join().unwrap();
    assert_sipp_ok(&out, &skald);
    let detail = call_detail(&skald);
    let agent = turns(&detail, "agent").join(" | ");
    assert!(agent.contains("Monday to Friday"), "the local models served the call: {agent}");
    let errors = detail["errors"].to_string();
    assert!(errors.contains("stt: deepgram failed") && errors.contains("fell back to moonshine"), "{errors}");
    assert!(errors.contains("tts: openai") && errors.contains("fell back to piper"), "{errors}");
}

/// A local server speaking OpenAI's streaming chat-completions protocol
/// (SSE `chat.completion.chunk`s, tool calls as deltas): asked about hours
/// it streams an answer in pieces; asked about an order it calls the HTTP
/// tool `lookup_order` (served slowly by the same server at
/// `/orders/{id}`) and answers from its result; told goodbye it calls
/// `end_call`. Returns its port and the request bodies it received.
fn mock_openai() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use axum::{Json, Router, routing::{get, post}};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let log = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = Router::new()
                .route(
                    "/orders/{id}",
                    get(|axum::extract::Path(id): axum::extract::Path<String>| async move {
                        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
                        Json(serde_json::json!({"order_id": id, "status": "ships tomorrow"}))
                    }),
                )
                .route(
                "/v1/chat/completions",
                post(move |Json(body): Json<serde_json::Value>| {
                    let log = log.clone();
                    async move {
                        log.lock().unwrap().push(body.clone());
                        let last = body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
                        let said = last["content"].as_str().unwrap_or_default().to_lowercase();
                        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
                            format!(
                                "data: {}\n\n",
                                serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "test",
                                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                            )
                        };
                        let mut sse = chunk(serde_json::json!({"role": "assistant", "content": ""}), None);
                        if last["role"] == "tool" {
                            let status = serde_json::from_str::<serde_json::Value>(last["content"].as_str().unwrap_or("{}"))
                                .ok()
                                .and_then(|v| v["status"].as_str().map(str::to_string))
                                .unwrap_or_else(|| "unknown".into());
                            sse += &chunk(serde_json::json!({"content": format!("Your order {status}. ")}), None);
                            sse += &chunk(serde_json::json!({"content": "Anything else?"}), None);
                            sse += &chunk(serde_json::json!({}), Some("stop"));
                        } else if said.contains("order") {
                            sse += &chunk(serde_json::json!({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                "function": {"name": "lookup_order", "arguments": "{\"order_id\": \"42\"}"}}]}), None);
                            sse += &chunk(serde_json::json!({}), Some("tool_calls"));
                        } else if said.contains("bye") {
                            sse += &chunk(serde_json::json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                "function": {"name": "end_call", "arguments": ""}}]}), None);
                            sse += &chunk(serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"reason\":\"caller "}}]}), None);
                            sse += &chunk(serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": "said goodbye\"}"}}]}), None);
                            sse += &chunk(serde_json::json!({}), Some("tool_calls"));
                        } else {
                            for piece in ["We are open ", "from nine in the morning ", "to five in the evening. ", "Anything else?"] {
                                sse += &chunk(serde_json::json!({"content": piece}), None);
                            }
                            sse += &chunk(serde_json::json!({}), Some("stop"));
                        }
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

/// An LLM agent answers a real call: the model's streamed answer is spoken
/// sentence by sentence; a slow HTTP tool runs while the caller hears the
/// filler, and its result goes back to the model (`tool_call_id`); the
/// model's `end_call` tool call ends the call.
#[test]
fn an_llm_agent_answers_and_ends_the_call_with_a_tool() {
    let hours = piper_ulaw("What are your opening hours?");
    let order = piper_ulaw("Where is my order?");
    let bye = piper_ulaw("No thanks, goodbye.");
    let (port, seen) = mock_openai();
    let dir = tempfile::tempdir().unwrap();
    let yaml = voice_config(dir.path(), None);
    std::fs::write(
        dir.path().join("agents/test-llm.yaml"),
        format!(
            "kind: llm\nname: test-llm\ngreeting: Hello, this is the test line.\ninstructions: You answer questions about opening hours.\nllm:\n  - kind: openai\n    base_url: http://127.0.0.1:{port}/v1\n    model: test\ntools: [end_call, lookup_order]\nfiller: One moment while I check that.\nfiller_after_ms: 800\nhttp_tools:\n  lookup_order:\n    method: GET\n    url: http://127.0.0.1:{port}/orders/{{order_id}}\n    description: Look up an order.\n    parameters:\n      type: object\n      properties:\n        order_id: {{type: string}}\n      required: [order_id]\n    timeout_ms: 5000\n"
        ),
    )
    .unwrap();
    let yaml = yaml
        .replacen("    support: support", "    support: support\n    \"+15550177\": llm-test", 1)
        .replacen("applications:\n", "applications:\n  llm-test:\n    type: voice-agent\n    agent: test-llm\n", 1);
    let skald = Skald::start_with(&yaml);
    let (peer, sipp_t) = call(&skald, "+15550177", dir.path(), true, 40_000);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    peer.say(&hours);
    let since = Instant::now();
    let end = peer.wait_agent_turn(since, Duration::from_millis(900), Duration::from_secs(20));
    let reply: Vec<_> = peer.heard().into_iter().filter(|(t, _)| *t >= since && *t <= end).collect();
    let heard = transcribe_heard(&reply).to_lowercase();
    eprintln!("the LLM agent said: {heard}");
    assert!((heard.contains("nine") || heard.contains('9')) && (heard.contains("five") || heard.contains('5')), "{heard}");
    assert!(!heard.contains("trouble"), "no fallback phrase after a complete answer: {heard}");
    // A slow HTTP tool: the filler is spoken while it runs, then the answer.
    peer.say(&order);
    peer.wait_agent_turn(Instant::now(), Duration::from_millis(2500), Duration::from_secs(30));
    peer.say(&bye);
    let out = sipp_t.join().unwrap();
    assert_sipp_ok(&out, &skald);
    let detail = call_detail(&skald);
    assert_eq!(detail["end_reason"], "caller said goodbye", "{detail:#}");
    let agent = turns(&detail, "agent");
    assert!(agent.iter().any(|t| t.contains("We are open from nine in the morning to five in the evening.")), "{agent:?}");
    assert!(agent.iter().any(|t| t.contains("One moment while I check that.")), "filler while the tool ran: {agent:?}");
    assert!(agent.iter().any(|t| t.contains("Your order ships tomorrow.")), "the tool's result was used: {agent:?}");
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 4, "{} requests", seen.len());
    let tool_msg = seen.iter().flat_map(|b| b["messages"].as_array().cloned().unwrap_or_default()).find(|m| m["role"] == "tool");
    let tool_msg = tool_msg.expect("a tool result went back to the model");
    assert_eq!(tool_msg["tool_call_id"], "call_9");
    assert!(tool_msg["content"].as_str().unwrap().contains("ships tomorrow"), "{tool_msg}");
    assert_eq!(seen[0]["stream"], true);
    assert_eq!(seen[0]["tools"][0]["function"]["name"], "end_call", "{:#}", seen[0]["tools"]);
    let msgs = seen[1]["messages"].as_array().unwrap();
    assert!(msgs.iter().any(|m| m["role"] == "assistant" && m["content"].as_str().is_some_and(|c| c.contains("nine"))), "{msgs:#?}");
}
