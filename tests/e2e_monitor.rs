//! End to end: a supervisor dials in from a SIP phone and monitors a live
//! call between a caller and a person the agent warm-transferred them to.
//! The supervisor's phone is baresip (driven over its `ctrl_tcp` socket:
//! RFC 4733 keys, and its audio source switched to what it says; what it
//! hears is recorded by its `sndfile` module). The caller and the person
//! are sipp phones with the test's RTP endpoint. The supervisor enters the
//! PIN and the caller's last digits, listens (hears the caller), whispers
//! (the person hears it, the caller must not), then barges in (the caller
//! hears it).

mod common;

use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PIN_ENV: &str = "SKALD_TEST_SUPERVISOR_PIN";
const PIN: &str = "2468";

/// Config: the dental agent warm-transfers to `person` (context brief:
/// connected at once); DID 5500 is the supervisors' dial-in line.
fn config(dir: &Path, person: &str) -> String {
    example_config_with_agents(dir, |name, text| {
        if name != "dental-front-desk.yaml" {
            return text;
        }
        text.replace("target: sip:frontdesk@clinic.example", &format!("target: {person}"))
            .replace("  mode: cold\n", "  mode: warm\n")
            .replace("  brief: spoken\n", "  brief: context\n")
    })
        .replacen("  dids:\n", "  dids:\n    \"5500\": supervisors\n", 1)
        .replacen(
            "applications:\n",
            &format!("applications:\n  supervisors:\n    type: supervisor-dial-in\n    pin_env: {PIN_ENV}\n"),
            1,
        )
}

/// A phone calling `user` at skald (sipp `uac_call.xml`), media at `peer`,
/// hanging up after `hold_ms`.
fn phone(skald: &Skald, user: &str, dir: &Path, peer: &RtpPeer, hold_ms: u64) -> std::thread::JoinHandle<std::process::Output> {
    sipp_phone(&skald.uri(user), "uac_call.xml", dir, peer, hold_ms)
}

/// The person's phone: sipp answering with media at `peer`.
fn person_phone(dir: &Path, peer: &RtpPeer) -> (std::thread::JoinHandle<std::process::Output>, String) {
    let vars = [("FROM_RE", "sip:".into()), ("RING_MS", "300".into()), ("MEDIA_PORT", peer.port.to_string()), ("BYE_TIMEOUT", "90000".into())];
    sipp_target(dir, "sam", "target_answer.xml.part", &vars)
}

/// Waits until a call on `skald` is in `state`.
fn wait_state(skald: &Skald, state: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !skald.calls().iter().any(|c| c["state"] == state) {
        assert!(Instant::now() < deadline, "no call `{state}` in {timeout:?}:\n{}", skald.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `peer` heard between `from` and `to`, transcribed (lowercase).
fn heard_between(peer: &RtpPeer, from: Instant, to: Instant) -> String {
    let frames: Vec<_> = peer.heard().into_iter().filter(|(t, _)| *t >= from && *t <= to).collect();
    transcribe_heard(&frames).to_lowercase()
}

/// A supervisor's baresip phone dialing `uri`, controlled over
/// `ctrl_tcp` (JSON commands in netstrings), recording what it hears.
struct BaresipPhone {
    ctrl: std::net::TcpStream,
    rec: PathBuf,
    run: std::thread::JoinHandle<String>,
}

impl BaresipPhone {
    /// Starts baresip in `dir`, silent, and dials `uri`; runs for `secs`.
    fn dial(dir: &Path, uri: &str, secs: u32) -> BaresipPhone {
        let (sip, ctrl) = (free_port(), free_port());
        let rec = dir.join("rec");
        std::fs::create_dir_all(&rec).unwrap();
        let silence = dir.join("silence.wav");
        write_speech_wav(&silence, &[]);
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method epoll\nsip_listen 127.0.0.1:{sip}\nnet_interface 127.0.0.1\n\
                 audio_player nil,nil\naudio_source aufile,{}\naudio_alert nil,nil\n\
                 module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule sndfile.so\n\
                 module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n\
                 ctrl_tcp_listen 127.0.0.1:{ctrl}\nsnd_path {}\n",
                silence.display(),
                rec.display()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("accounts"), format!("<sip:supervisor@127.0.0.1:{sip}>;regint=0\n")).unwrap();
        let (d, uri) = (dir.to_path_buf(), uri.to_string());
        let run = std::thread::spawn(move || {
            let out = std::process::Command::new("timeout")
                .arg((secs + 10).to_string())
                .arg("baresip")
                .arg("-f")
                .arg(&d)
                .args(["-t", &secs.to_string(), "-e", &format!("/dial {uri}")])
                .output()
                .expect("baresip (installed by `make test`)");
            String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let ctrl = loop {
            match std::net::TcpStream::connect(("127.0.0.1", ctrl)) {
                Ok(c) => break c,
                Err(e) => assert!(Instant::now() < deadline, "baresip's ctrl_tcp: {e}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        ctrl.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        BaresipPhone { ctrl, rec, run }
    }

    /// Runs one baresip command; panics unless it reports `ok`.
    fn command(&mut self, command: &str, params: &str) {
        let msg = serde_json::json!({"command": command, "params": params, "token": "t"}).to_string();
        write!(self.ctrl, "{}:{msg},", msg.len()).unwrap();
        // The response (events may come first): `LEN:{json},`.
        loop {
            let mut len = Vec::new();
            let mut b = [0u8; 1];
            while self.ctrl.read_exact(&mut b).is_ok() && b[0] != b':' {
                len.push(b[0]);
            }
            let n: usize = String::from_utf8_lossy(&len).trim().parse().expect("a netstring from baresip");
            let mut body = vec![0u8; n + 1];
            self.ctrl.read_exact(&mut body).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body[..n]).unwrap();
            if v["response"] == true {
                assert_eq!(v["ok"], true, "baresip `{command} {params}`: {v}");
                return;
            }
        }
    }

    /// Presses keys (RFC 4733 telephone-events).
    fn keys(&mut self, digits: &str) {
        self.command("sndcode", digits);
    }

    /// Says `ulaw` (8 kHz µ-law) into the call from now on.
    fn say(&mut self, dir: &Path, name: &str, ulaw: &[u8]) {
        let wav = dir.join(format!("{name}.wav"));
        write_speech_wav(&wav, ulaw);
        self.command("ausrc", &format!("aufile,{}", wav.display()));
    }

    /// Waits for baresip to exit; returns everything it heard in the call
    /// (its `sndfile` recording), split at silences and transcribed.
    fn heard(self) -> (Vec<String>, String) {
        let log = self.run.join().unwrap();
        // sndfile starts a new file (named by the second) whenever the
        // audio source changes: read them in order.
        let mut decs: Vec<PathBuf> =
            std::fs::read_dir(&self.rec).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().ends_with("-dec.wav")).collect();
        decs.sort();
        eprintln!("recordings: {decs:?} {:?}", decs.iter().map(|p| read_wav(p).0.len() / 8000).collect::<Vec<_>>());
        assert!(!decs.is_empty(), "no recording of what the supervisor heard:\n{log}");
        let pcm: Vec<i16> = decs
            .iter()
            .flat_map(|p| {
                let (pcm, rate) = read_wav(p);
                assert_eq!(rate, 8000);
                pcm
            })
            .collect();
        let frames: Vec<Vec<i16>> = pcm.chunks_exact(160).map(<[i16]>::to_vec).collect();
        // Utterances: loud stretches separated by ≥ 600 ms of quiet.
        let mut parts = Vec::new();
        let (mut start, mut quiet) = (None, 0);
        for (i, f) in frames.iter().enumerate() {
            if is_loud(f) {
                start.get_or_insert(i);
                quiet = 0;
            } else if let Some(s) = start {
                quiet += 1;
                if quiet >= 30 || i + 1 == frames.len() {
                    let t0 = Instant::now();
                    let part: Vec<_> = frames[s..=i].iter().enumerate().map(|(k, f)| (t0 + Duration::from_millis(20 * k as u64), f.clone())).collect();
                    parts.push(transcribe_heard(&part).to_lowercase());
                    start = None;
                }
            }
        }
        (parts, log)
    }
}

/// Waits until the monitored call `id` has the audited SIP supervisor
/// actions `actions`.
fn wait_actions(skald: &Skald, id: &str, actions: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = skald.get_json(&format!("/api/v1/calls/{id}"));
        let seen: Vec<String> = d["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "supervisor.action" && e["data"]["via"] == "sip")
            .map(|e| e["data"]["action"].as_str().unwrap().to_string())
            .collect();
        if seen == actions {
            return;
        }
        assert!(Instant::now() < deadline, "actions {seen:?}, waiting for {actions:?}:\n{}", skald.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_supervisor_phone_listens_whispers_and_barges_in() {
    let person_ask = piper_ulaw("Can I talk to a person please?");
    let caller_line = piper_ulaw("I have a question about my bill.");
    let whisper = piper_ulaw("Offer them the spring discount.");
    let barge = piper_ulaw("Hello, this is the supervisor joining the call.");
    let dir = tempfile::tempdir().unwrap();
    let sam = RtpPeer::start();
    let (sam_phone, sam_uri) = person_phone(dir.path(), &sam);
    let skald = Skald::start_with_env(&config(dir.path(), &sam_uri), &[(PIN_ENV, PIN)]);

    // The caller (From +15550199, see uac_call.xml) reaches the agent and is
    // connected to Sam.
    let caller = RtpPeer::start();
    let call = phone(&skald, "+15550123", dir.path(), &caller, 50_000);
    caller.wait_agent_turn(Instant::now(), Duration::from_millis(900), Duration::from_secs(20));
    caller.say(&person_ask);
    wait_state(&skald, "bridged", Duration::from_secs(30));
    let id = skald.calls().into_iter().find(|c| c["did"] == "+15550123").expect("the caller's call")["id"].as_str().unwrap().to_string();

    // The supervisor dials in and keys the PIN and the caller's last
    // digits; the keypad dialog takes keys while it prompts.
    let sup_dir = dir.path().join("supervisor");
    std::fs::create_dir_all(&sup_dir).unwrap();
    let mut sup = BaresipPhone::dial(&sup_dir, &format!("sip:5500@127.0.0.1:{}", skald.sip_port), 36);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !skald.calls().iter().any(|c| c["did"] == "5500" && c["state"] != "ringing") {
        assert!(Instant::now() < deadline, "the dial-in was not answered:\n{}", skald.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    sup.keys(&format!("{PIN}#"));
    std::thread::sleep(Duration::from_millis(1500));
    sup.keys("0199#");
    wait_actions(&skald, &id, &["listen"]);
    // The menu ("Listening. Press 1 to listen…") is read out, mixed over
    // the call; the caller speaks after it, so that its words transcribe
    // cleanly from the supervisor's recording.
    std::thread::sleep(Duration::from_secs(8));

    // Listen: the supervisor hears the caller (checked in its recording).
    caller.say(&caller_line);
    std::thread::sleep(Duration::from_secs(4));

    // Whisper: Sam hears the supervisor, the caller does not.
    sup.keys("2");
    wait_actions(&skald, &id, &["listen", "whisper"]);
    let t = Instant::now();
    sup.say(&sup_dir, "whisper", &whisper);
    std::thread::sleep(Duration::from_secs(4));
    let sam_heard = heard_between(&sam, t, Instant::now());
    let caller_frames: Vec<_> = caller.heard().into_iter().filter(|(at, _)| *at >= t && *at <= Instant::now()).collect();
    let caller_loud = caller_frames.iter().filter(|(_, f)| is_loud(f)).count();
    eprintln!("Sam heard the whisper: {sam_heard}; the caller got {caller_loud} loud frames");
    assert!(says(&sam_heard, "discount") || says(&sam_heard, "spring"), "the whisper reaches the person: {sam_heard}");
    assert!(caller_loud < 5, "the caller must not hear the whisper ({caller_loud} loud frames)");

    // Barge: the caller hears the supervisor.
    sup.keys("3");
    wait_actions(&skald, &id, &["listen", "whisper", "barge"]);
    let t = Instant::now();
    sup.say(&sup_dir, "barge", &barge);
    std::thread::sleep(Duration::from_secs(5));
    let caller_heard = heard_between(&caller, t, Instant::now());
    eprintln!("the caller heard the barge: {caller_heard}");
    assert!(says(&caller_heard, "supervisor") || says(&caller_heard, "joining"), "barge reaches the caller: {caller_heard}");

    let (sup_heard, sup_log) = sup.heard();
    eprintln!("the supervisor heard: {sup_heard:?}");
    assert!(
        sup_heard.iter().any(|p| says(p, "bill") || says(p, "question")),
        "listen: the supervisor hears the caller: {sup_heard:?}\n{sup_log}"
    );
    assert!(!sup_heard.iter().any(|p| says(p, "discount") || says(p, "joining")), "the supervisor does not hear itself: {sup_heard:?}");
    assert!(call.join().unwrap().status.success(), "caller:\n{}", skald.log());
    assert!(sam_phone.join().unwrap().status.success(), "person's phone");
    let ended = skald.wait_ended(2, Duration::from_secs(30));
    assert!(ended.iter().any(|c| c["id"] == id.as_str()), "the caller's call ended");
    wait_actions(&skald, &id, &["listen", "whisper", "barge"]);
}
