//! End to end: real SIP peers (sipp from Debian `sip-tester`) call a real
//! `skald serve` on loopback with real RTP; assertions read skald's HTTP API,
//! recordings and the RTP it sends.

mod common;

use common::*;
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

const DTMF_PCAP_DIR: &str = "/usr/share/sip-tester";

/// Renders a scenario template into `dir`, replacing `@KEY@` placeholders.
fn render(template: &str, vars: &[(&str, String)], dir: &Path) -> String {
    let mut s = std::fs::read_to_string(scenario(template)).unwrap();
    for (k, v) in vars {
        s = s.replace(&format!("@{k}@"), v);
    }
    assert!(!s.contains("@MEDIA"), "unfilled placeholder in {template}");
    let out = dir.join(template);
    std::fs::write(&out, s).unwrap();
    out.display().to_string()
}

fn play(pcap: &str, then_ms: u64) -> String {
    format!(
        "  <nop><action><exec play_pcap_audio=\"{pcap}\"/></action></nop>\n  <pause milliseconds=\"{then_ms}\"/>\n"
    )
}

/// The speech fixture as a pcap of PCMU RTP; returns (path, duration ms).
fn speech_pcap(dir: &Path) -> (String, u64) {
    let ulaw = speech_mulaw_8k();
    let path = dir.join("speech.pcap");
    write_rtp_pcap(&path, &ulaw, 0);
    (path.display().to_string(), (ulaw.len() / 8) as u64)
}

fn common_args<'a>(skald: &'a Skald, service: &'a str, media_port: &'a str) -> Vec<String> {
    vec![
        format!("127.0.0.1:{}", skald.sip_port),
        "-s".into(),
        service.into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_port().to_string(),
        "-mi".into(),
        "127.0.0.1".into(),
        "-mp".into(),
        media_port.into(),
        "-m".into(),
        "1".into(),
    ]
}

fn run_sipp(skald: &Skald, service: &str, scenario_path: &str, extra: &[&str], timeout_s: u64) -> std::process::Output {
    let mp = free_port().to_string();
    let mut args = common_args(skald, service, &mp);
    args.push("-sf".into());
    args.push(scenario_path.into());
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    sipp(&refs, Duration::from_secs(timeout_s))
}

#[test]
fn echo_call_answers_pcmu_with_dtmf_and_records_it() {
    let skald = Skald::start();
    let dir = tempfile::tempdir().unwrap();
    let (speech, ms) = speech_pcap(dir.path());
    let media = play(&speech, ms + 200) + &play(&format!("{DTMF_PCAP_DIR}/dtmf_2833_1.pcap"), 600);
    let sf = render(
        "uac_call.xml",
        &[
            ("PTS", "0 8 101".into()),
            ("MEDIA_PORT", "[media_port]".into()),
            ("ANSWER_RE", "m=audio [0-9]+ RTP/AVP 0 101".into()),
            ("MEDIA", media),
        ],
        dir.path(),
    );
    let out = run_sipp(&skald, "echo", &sf, &["-d", "200"], 60);
    assert_sipp_ok(&out, &skald);
    let calls = skald.wait_ended(1, Duration::from_secs(10));
    let c = &calls[0];
    assert_eq!(c["codec"], "PCMU", "{c:#}");
    assert_eq!(c["app"], "echo");
    assert_eq!(c["did"], "echo");
    assert_eq!(c["sip_status"], 200);
    assert_eq!(c["end_reason"], "remote-bye");
    assert_eq!(c["dtmf"], "1", "each digit once: {c:#}");
    assert!(c["answered_at"].as_i64().unwrap() >= c["invited_at"].as_i64().unwrap());
    assert!(c["ended_at"].as_i64().unwrap() >= c["answered_at"].as_i64().unwrap());
    // Metrics saw the call.
    let (_, metrics) = skald.try_http("GET", "/metrics").unwrap();
    assert!(metrics.contains("skald_calls_total"), "{metrics}");
}

/// The test itself is the caller's RTP endpoint (sipp does the signaling
/// with an SDP pointing at the test's socket): it sends real speech paced at
/// 20 ms and checks what skald sends back: one packet per 20 ms, consecutive
/// sequence numbers and timestamps, and the caller's own speech, delayed by
/// a small, steady amount.
#[test]
fn echo_returns_callers_audio_paced_at_20ms() {
    let skald = Skald::start();
    let dir = tempfile::tempdir().unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    rtp.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let port = rtp.local_addr().unwrap().port();
    let sf = render(
        "uac_call.xml",
        &[
            ("PTS", "0 101".into()),
            ("MEDIA_PORT", port.to_string()),
            ("ANSWER_RE", "m=audio [0-9]+ RTP/AVP 0".into()),
            ("MEDIA", String::new()),
        ],
        dir.path(),
    );
    let sipp_thread = {
        let sf = sf.clone();
        let target = format!("127.0.0.1:{}", skald.sip_port);
        std::thread::spawn(move || {
            let p = free_port().to_string();
            sipp(
                &[&target, "-s", "echo", "-i", "127.0.0.1", "-p", &p, "-m", "1", "-sf", &sf, "-d", "6000"],
                Duration::from_secs(30),
            )
        })
    };
    let speech = speech_mulaw_8k();
    let frames: Vec<&[u8]> = speech.chunks_exact(160).take(200).collect(); // 4 s
    let mut received: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut buf = [0u8; 2048];
    // Wait for skald's first packet: it tells us skald's RTP address.
    let deadline = Instant::now() + Duration::from_secs(10);
    let skald_rtp = loop {
        if let Ok((n, from)) = rtp.recv_from(&mut buf) {
            received.push((Instant::now(), buf[..n].to_vec()));
            break from;
        }
        assert!(Instant::now() < deadline, "no RTP from skald:\n{}", skald.log());
    };
    let start = Instant::now();
    let mut next = 0usize;
    let mut seq: u16 = 4000;
    while start.elapsed() < Duration::from_millis(4800) {
        let due = start + Duration::from_millis(20 * next as u64);
        if next < frames.len() && Instant::now() >= due {
            let mut p = vec![0x80, 0x00];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(160u32 * next as u32).to_be_bytes());
            p.extend_from_slice(&0xabcd_0001u32.to_be_bytes());
            p.extend_from_slice(frames[next]);
            rtp.send_to(&p, skald_rtp).unwrap();
            seq = seq.wrapping_add(1);
            next += 1;
        }
        if let Ok((n, _)) = rtp.recv_from(&mut buf) {
            received.push((Instant::now(), buf[..n].to_vec()));
        }
    }
    let out = sipp_thread.join().unwrap();
    assert_sipp_ok(&out, &skald);

    // Pacing: one packet per 20 ms, sequence and timestamp consecutive.
    let pkts: Vec<_> = received.iter().filter(|(_, p)| p.len() == 172 && p[1] & 0x7f == 0).collect();
    assert!(pkts.len() > 200, "too few packets: {}", pkts.len());
    let mut gaps_ms: Vec<f64> = Vec::new();
    for w in pkts.windows(2) {
        let (t0, a) = w[0];
        let (t1, b) = w[1];
        let s0 = u16::from_be_bytes([a[2], a[3]]);
        let s1 = u16::from_be_bytes([b[2], b[3]]);
        assert_eq!(s1, s0.wrapping_add(1), "sequence gap");
        let ts0 = u32::from_be_bytes([a[4], a[5], a[6], a[7]]);
        let ts1 = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        assert_eq!(ts1.wrapping_sub(ts0), 160, "timestamp step");
        gaps_ms.push(t1.duration_since(*t0).as_secs_f64() * 1000.0);
    }
    gaps_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = gaps_ms[gaps_ms.len() / 2];
    let total = pkts.last().unwrap().0.duration_since(pkts[0].0).as_secs_f64() * 1000.0;
    let expected = 20.0 * (pkts.len() - 1) as f64;
    assert!((19.0..=21.0).contains(&median), "median inter-packet gap {median} ms");
    assert!((total - expected).abs() < 60.0, "no bursts or drift: {total} ms for {expected} ms of packets");
    let bursts = gaps_ms.iter().filter(|g| **g < 5.0).count();
    assert!(bursts * 50 < gaps_ms.len(), "{bursts} packets came in bursts: {gaps_ms:?}");

    // Content: the caller's speech comes back. Compare 10 ms energy envelopes.
    let sent: Vec<i16> = frames.concat().iter().map(|&b| mulaw_to_linear(b)).collect();
    let back: Vec<i16> = pkts.iter().flat_map(|(_, p)| p[12..].iter().map(|&b| mulaw_to_linear(b))).collect();
    let env_sent = envelope(&sent, 80);
    let env_back = envelope(&back, 80);
    let needle = &env_sent[..env_sent.len().min(300)];
    let (offset, corr) = best_fit(&env_back, needle);
    assert!(corr > 0.9, "echoed audio does not match what was sent (r = {corr:.3})");
    // The speech started going out when skald's first packet arrived (pkts[0]);
    // the offset in 10 ms steps is skald's echo delay plus scheduling noise.
    let delay_ms = offset as f64 * 10.0;
    assert!(delay_ms <= 300.0, "echo delay {delay_ms} ms");
    eprintln!("echo: {} packets, median gap {median:.2} ms, delay ~{delay_ms} ms, r = {corr:.3}", pkts.len());
}

#[test]
fn greeting_plays_prompt_then_records_until_pound() {
    let skald = Skald::start();
    let dir = tempfile::tempdir().unwrap();
    let (speech, ms) = speech_pcap(dir.path());
    let media = "  <pause milliseconds=\"7600\"/>\n".to_string()
        + &play(&speech, ms + 300)
        // No pause after the `#`: skald's BYE may come at once.
        + &format!("  <nop><action><exec play_pcap_audio=\"{DTMF_PCAP_DIR}/dtmf_2833_pound.pcap\"/></action></nop>\n");
    let sf = render(
        "uac_wait_bye.xml",
        &[
            ("PTS", "0 8 101".into()),
            ("MEDIA_PORT", "[media_port]".into()),
            ("ANSWER_RE", "m=audio [0-9]+ RTP/AVP 0 101".into()),
            ("BYE_TIMEOUT", "15000".into()),
            ("MEDIA", media),
        ],
        dir.path(),
    );
    let out = run_sipp(&skald, "voicemail", &sf, &[], 60);
    assert_sipp_ok(&out, &skald);
    let c = &skald.wait_ended(1, Duration::from_secs(10))[0];
    assert_eq!(c["codec"], "PCMU", "{c:#}");
    assert_eq!(c["end_reason"], "recording-complete", "{c:#}");
    assert_eq!(c["dtmf"], "#");
    let path = c["recording_path"].as_str().expect("recording path");
    let (rec, rate) = read_wav(Path::new(path));
    assert_eq!(rate, 16000);
    let rec_s = rec.len() as f64 / 16000.0;
    assert!(rec_s > ms as f64 / 1000.0 - 0.5, "recording only {rec_s} s");
    let (src, src_rate) = read_wav(Path::new(SPEECH_WAV));
    assert_eq!(src_rate, 16000);
    let (off, corr) = best_fit(&envelope(&rec, 160), &envelope(&src, 160));
    assert!(corr > 0.9, "recording does not match the caller's speech (r = {corr:.3})");
    assert!(off < 150, "speech starts {off}0 ms into the recording");
}

#[test]
fn menu_routes_a_key_press_to_the_echo_app() {
    let skald = Skald::start();
    let dir = tempfile::tempdir().unwrap();
    let media = "  <pause milliseconds=\"1500\"/>\n".to_string()
        + &play(&format!("{DTMF_PCAP_DIR}/dtmf_2833_1.pcap"), 1500);
    let sf = render(
        "uac_call.xml",
        &[
            ("PTS", "0 101".into()),
            ("MEDIA_PORT", "[media_port]".into()),
            ("ANSWER_RE", "m=audio [0-9]+ RTP/AVP 0 101".into()),
            ("MEDIA", media),
        ],
        dir.path(),
    );
    let out = run_sipp(&skald, "+15550100", &sf, &["-d", "100"], 30);
    assert_sipp_ok(&out, &skald);
    let c = &skald.wait_ended(1, Duration::from_secs(10))[0];
    assert_eq!(c["did"], "+15550100");
    assert_eq!(c["dtmf"], "1", "{c:#}");
    assert_eq!(c["app"], "echo", "the menu handed the call to echo: {c:#}");
    assert!(skald.log().contains("switching application"));
}

#[test]
fn cancel_before_answer_gets_487() {
    let skald = Skald::start_with(&example_config().replace("answer_delay_ms: 0", "answer_delay_ms: 4000"));
    let dir = tempfile::tempdir().unwrap();
    let sf = render("uac_cancel.xml", &[("PTS", "0".into()), ("MEDIA_PORT", "[media_port]".into())], dir.path());
    let out = run_sipp(&skald, "echo", &sf, &[], 30);
    assert_sipp_ok(&out, &skald);
    let c = &skald.wait_ended(1, Duration::from_secs(10))[0];
    assert_eq!(c["sip_status"], 487, "{c:#}");
    assert_eq!(c["end_reason"], "cancelled");
    assert!(c["answered_at"].is_null());
}

fn rejected(skald: &Skald, service: &str, pts: &str, code: u16, header_re: &str) {
    let dir = tempfile::tempdir().unwrap();
    let sf = render(
        "uac_rejected.xml",
        &[
            ("PTS", pts.into()),
            ("MEDIA_PORT", "[media_port]".into()),
            ("CODE", code.to_string()),
            ("HEADER_RE", header_re.into()),
        ],
        dir.path(),
    );
    let out = run_sipp(skald, service, &sf, &[], 30);
    assert_sipp_ok(&out, skald);
}

#[test]
fn unrouted_number_gets_404_and_no_common_codec_gets_488() {
    let yaml = example_config().replace("  default: front-desk", "  default: null");
    let skald = Skald::start_with(&yaml);
    rejected(&skald, "+15559999", "0", 404, "SIP/2.0 404");
    rejected(&skald, "echo", "18", 488, "SIP/2.0 488");
    let calls = skald.wait_ended(2, Duration::from_secs(10));
    let statuses: Vec<_> = calls.iter().map(|c| c["sip_status"].as_i64().unwrap()).collect();
    assert!(statuses.contains(&404) && statuses.contains(&488), "{statuses:?}");
}

#[test]
fn options_probe_gets_200_with_allow() {
    let skald = Skald::start();
    let out = run_sipp(&skald, "probe", &scenario("options.xml"), &[], 20);
    assert_sipp_ok(&out, &skald);
}

#[test]
fn hold_and_resume_by_reinvite() {
    let skald = Skald::start();
    let dir = tempfile::tempdir().unwrap();
    let sf = render(
        "uac_hold.xml",
        &[
            ("PTS", "0 101".into()),
            ("MEDIA_PORT", "[media_port]".into()),
            ("ANSWER_RE", "m=audio [0-9]+ RTP/AVP 0".into()),
        ],
        dir.path(),
    );
    let out = run_sipp(&skald, "echo", &sf, &["-d", "300"], 30);
    assert_sipp_ok(&out, &skald);
    let c = &skald.wait_ended(1, Duration::from_secs(10))[0];
    assert_eq!(c["end_reason"], "remote-bye", "{c:#}");
}

#[test]
fn call_over_tcp() {
    let skald = Skald::start();
    let dir = tempfile::tempdir().unwrap();
    let sf = render(
        "uac_call.xml",
        &[
            ("PTS", "8 101".into()),
            ("MEDIA_PORT", "[media_port]".into()),
            ("ANSWER_RE", "m=audio [0-9]+ RTP/AVP 8 101".into()),
            ("MEDIA", String::new()),
        ],
        dir.path(),
    );
    let out = run_sipp(&skald, "echo", &sf, &["-t", "t1", "-d", "500"], 30);
    assert_sipp_ok(&out, &skald);
    let c = &skald.wait_ended(1, Duration::from_secs(10))[0];
    assert_eq!(c["codec"], "PCMA");
    assert_eq!(c["end_reason"], "remote-bye");
}

#[test]
fn dead_media_path_ends_call_with_bye() {
    let yaml = example_config().replace("inactivity_timeout_s: 30", "inactivity_timeout_s: 2");
    let skald = Skald::start_with(&yaml);
    let dir = tempfile::tempdir().unwrap();
    let sf = render(
        "uac_wait_bye.xml",
        &[
            ("PTS", "0".into()),
            ("MEDIA_PORT", "[media_port]".into()),
            ("ANSWER_RE", "m=audio".into()),
            ("BYE_TIMEOUT", "10000".into()),
            ("MEDIA", String::new()),
        ],
        dir.path(),
    );
    let out = run_sipp(&skald, "echo", &sf, &[], 30);
    assert_sipp_ok(&out, &skald);
    let c = &skald.wait_ended(1, Duration::from_secs(10))[0];
    assert_eq!(c["end_reason"], "rtp-timeout", "{c:#}");
}

#[test]
fn api_hangup_sends_bye_and_ended_call_gets_409() {
    let skald = Skald::start();
    let dir = tempfile::tempdir().unwrap();
    let sf = render(
        "uac_wait_bye.xml",
        &[
            ("PTS", "0".into()),
            ("MEDIA_PORT", "[media_port]".into()),
            ("ANSWER_RE", "m=audio".into()),
            ("BYE_TIMEOUT", "20000".into()),
            ("MEDIA", String::new()),
        ],
        dir.path(),
    );
    let target = format!("127.0.0.1:{}", skald.sip_port);
    let t = std::thread::spawn(move || {
        let p = free_port().to_string();
        let mp = free_port().to_string();
        sipp(&[&target, "-s", "echo", "-i", "127.0.0.1", "-p", &p, "-mp", &mp, "-m", "1", "-sf", &sf], Duration::from_secs(30))
    });
    let live = skald.wait_live(Duration::from_secs(10));
    let id = live["id"].as_str().unwrap().to_string();
    let (status, body) = skald.try_http("POST", &format!("/api/v1/calls/{id}/hangup")).unwrap();
    assert_eq!(status, 202, "{body}");
    let out = t.join().unwrap();
    assert_sipp_ok(&out, &skald);
    let c = &skald.wait_ended(1, Duration::from_secs(10))[0];
    assert_eq!(c["end_reason"], "api");
    let (status, _) = skald.try_http("POST", &format!("/api/v1/calls/{id}/hangup")).unwrap();
    assert_eq!(status, 409);
}

#[test]
fn malformed_sip_gets_400_and_server_stays_up() {
    let skald = Skald::start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = sock.local_addr().unwrap();
    let target = ("127.0.0.1", skald.sip_port);
    // Garbage: dropped silently.
    sock.send_to(b"\x00\x01garbage\xff\xfe", target).unwrap();
    // A request whose request line and Via parse but whose CSeq is broken: 400.
    let bad = format!(
        "INVITE sip:echo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbad1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: bad-cseq@test\r\nCSeq: notanumber INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(bad.as_bytes(), target).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("a response to the malformed request");
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("SIP/2.0 400"), "{resp}");
    // An unknown method: 501 with Allow.
    let unknown = format!(
        "FOO sip:echo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKfoo1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: foo@test\r\nCSeq: 1 FOO\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(unknown.as_bytes(), target).unwrap();
    let (n, _) = sock.recv_from(&mut buf).expect("a response to FOO");
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("SIP/2.0 501"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("allow:"), "{resp}");
    // An INVITE whose SDP is garbage: 400 (after 100 Trying), no call set up.
    let body = "this is not SDP";
    let bad_sdp = format!(
        "INVITE sip:echo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKsdp1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: bad-sdp@test\r\nCSeq: 1 INVITE\r\nContact: <sip:a@{me}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.send_to(bad_sdp.as_bytes(), target).unwrap();
    let final_status = loop {
        let (n, _) = sock.recv_from(&mut buf).expect("responses to the bad-SDP INVITE");
        let resp = String::from_utf8_lossy(&buf[..n]).to_string();
        let code: u16 = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
        if code >= 200 {
            break code;
        }
    };
    assert_eq!(final_status, 400);
    let c = &skald.wait_ended(1, Duration::from_secs(10))[0];
    assert_eq!(c["end_reason"], "sdp-malformed");
    // Still serving.
    let out = run_sipp(&skald, "probe", &scenario("options.xml"), &[], 20);
    assert_sipp_ok(&out, &skald);
    assert!(skald.try_http("GET", "/health/ready").unwrap().0 == 200);
}

/// Runs `skald call` against `target`; returns (success, stdout, stderr).
fn skald_call(target: &str, extra: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let base = 41000 + (std::process::id() % 50) as u16 * 20 + (free_port() % 2) * 10;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skald"))
        .args(["call", target, "--app", "echo", "--duration", "2"])
        .args(extra)
        .args(["--config", &repo().join("sip-config/skald.yaml").display().to_string()])
        .args(["--sip-listen", "127.0.0.1:0", "--rtp-ports", &format!("{base}-{}", base + 9)])
        .arg("--data-dir")
        .arg(dir.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn sipp_uas(port: u16, scenario_args: Vec<String>) -> std::thread::JoinHandle<std::process::Output> {
    let mp = free_port().to_string();
    std::thread::spawn(move || {
        let mut args = vec!["-i".to_string(), "127.0.0.1".into(), "-p".into(), port.to_string(), "-mp".into(), mp, "-m".into(), "1".into()];
        args.extend(scenario_args);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        sipp(&refs, Duration::from_secs(30))
    })
}

fn assert_uas_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "sipp uas saw a failed call:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn skald_places_a_call_to_a_sipp_uas() {
    let port = free_port();
    let uas = sipp_uas(port, vec!["-sn".into(), "uas".into()]);
    std::thread::sleep(Duration::from_millis(500));
    let (ok, stdout, stderr) = skald_call(&format!("sip:service@127.0.0.1:{port}"), &[], &[]);
    assert!(ok, "skald call failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("answered"), "{stdout}");
    assert_uas_ok(&uas.join().unwrap());
}

#[test]
fn skald_answers_a_digest_challenge_when_calling_out() {
    let port = free_port();
    let uas = sipp_uas(port, vec!["-sf".into(), scenario("uas_auth.xml")]);
    std::thread::sleep(Duration::from_millis(500));
    let target = format!("sip:service@127.0.0.1:{port}");
    let (ok, stdout, stderr) = skald_call(&target, &["--auth-user", "alice"], &[("SKALD_SIP_PASSWORD", "secret")]);
    assert!(ok, "skald call failed:\n{stdout}\n{stderr}");
    assert_uas_ok(&uas.join().unwrap());

    // Wrong password: the callee refuses (403) and skald reports the failure.
    let port = free_port();
    let uas = sipp_uas(port, vec!["-sf".into(), scenario("uas_auth.xml")]);
    std::thread::sleep(Duration::from_millis(500));
    let target = format!("sip:service@127.0.0.1:{port}");
    let (ok, stdout, stderr) = skald_call(&target, &["--auth-user", "alice"], &[("SKALD_SIP_PASSWORD", "wrong")]);
    assert!(!ok, "a call with a bad password must fail:\n{stdout}\n{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    let _ = uas.join();
}

#[test]
fn sigterm_drains_new_calls_with_503_then_byes_live_ones() {
    let yaml = example_config().replace("grace_s: 10", "grace_s: 2");
    let mut skald = Skald::start_with(&yaml);
    let dir = tempfile::tempdir().unwrap();
    let sf = render(
        "uac_wait_bye.xml",
        &[
            ("PTS", "0".into()),
            ("MEDIA_PORT", "[media_port]".into()),
            ("ANSWER_RE", "m=audio".into()),
            ("BYE_TIMEOUT", "20000".into()),
            ("MEDIA", String::new()),
        ],
        dir.path(),
    );
    let target = format!("127.0.0.1:{}", skald.sip_port);
    let t = std::thread::spawn(move || {
        let p = free_port().to_string();
        let mp = free_port().to_string();
        sipp(&[&target, "-s", "echo", "-i", "127.0.0.1", "-p", &p, "-mp", &mp, "-m", "1", "-sf", &sf], Duration::from_secs(30))
    });
    skald.wait_live(Duration::from_secs(10));
    unsafe_kill(skald.pid(), "TERM");
    std::thread::sleep(Duration::from_millis(300));
    rejected(&skald, "echo", "0", 503, "Retry-After");
    let out = t.join().unwrap();
    assert_sipp_ok(&out, &skald);
    assert_eq!(skald.terminate(Duration::from_secs(15)), Some(0));
    assert!(skald.log().contains("shutdown"), "{}", skald.log());
}
