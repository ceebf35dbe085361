//! The control page in a real browser: headless Chromium (Debian
//! `chromium`, installed by `make test`) driven over the Chrome DevTools
//! Protocol from this test (a plain WebSocket client, no npm).
//!
//! skald runs the example config. The test logs in through the page's form
//! with the admin token, places a real call (sipp signals, the test is the
//! caller's RTP endpoint) and sees it appear on the dashboard with the
//! dental agent's greeting in its transcript; presses listen and take over
//! (see [`assert_supervise_outcome`]); starts a test call from the panel to
//! skald's own SIP URI and sees it appear; looks at the agents page; hangs
//! the first call up. Screenshots go to `target/gui-screenshots/*.png`.

mod common;

use base64::Engine;
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// True once the supervisor API (`POST /api/v1/calls/{id}/supervise`) is
/// part of this skald: the test then expects listen and take over to
/// succeed. While false it expects the page to show the API's 404 clearly.
/// The test fails with a reminder when this is stale.
const SUPERVISE_API_MERGED: bool = true;

/// What the page must show in `#sup-result` after pressing `label`.
fn assert_supervise_outcome(label: &str, shown: &str) {
    if SUPERVISE_API_MERGED {
        assert!(shown.starts_with(&format!("{label}: ok — mode ")), "{label} should succeed; the page shows {shown:?}");
    } else {
        assert_eq!(
            shown,
            format!("{label} failed — 404 not_found: no such route"),
            "the page shows the API's error for {label}"
        );
    }
}

/// True once `GET /api/v1/talk?app=NAME` (talk in the browser) is part of
/// this skald; while false the page must say clearly that it is missing.
const TALK_API_MERGED: bool = true;

/// What the page must show in `#talk-result` after pressing "Talk in the browser".
fn assert_talk_outcome(shown: &str) {
    if TALK_API_MERGED {
        assert!(shown.starts_with("Connected to front-desk"), "talk should connect; the page shows {shown:?}");
    } else {
        assert_eq!(shown, "Talk in the browser is not available — 404 not_found: no such route");
    }
}

/// A headless Chromium and one page of it, driven over CDP.
struct Browser {
    /// The browser process.
    child: Child,
    /// Its profile directory.
    _profile: tempfile::TempDir,
    /// The DevTools WebSocket (browser endpoint).
    ws: WebSocket<TcpStream>,
    /// Next command id.
    next_id: u64,
    /// The page's flattened session.
    session: String,
    /// Console messages and exceptions of the page, for failure reports.
    console: Arc<Mutex<Vec<String>>>,
    /// Where screenshots go.
    shots: PathBuf,
}

impl Browser {
    /// Starts Chromium and opens a blank page.
    fn start() -> Browser {
        let exe = ["chromium", "chromium-browser"]
            .into_iter()
            .find(|c| Command::new("which").arg(c).output().is_ok_and(|o| o.status.success()))
            .unwrap_or_else(|| {
                panic!("chromium is not installed: run `make test` (its installer, scripts/install-debs.sh, installs Debian `chromium`)")
            });
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--headless=new",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Reads on until Chromium exits, so its pipe never fills.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("ws://") {
                    let _ = tx.send(line[i..].trim().to_string());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("chromium printed no `DevTools listening on ws://…` line within 30 s")
        });
        let host = url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
        let stream = TcpStream::connect(&host).unwrap();
        // The handshake may take a while on a loaded machine; reads are
        // polled (200 ms) only once it is done.
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let (ws, _) = tungstenite::client::client(url.as_str(), stream).expect("DevTools WebSocket");
        ws.get_ref().set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let shots = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| repo().join("target"), PathBuf::from)
            .join("gui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            next_id: 1,
            session: String::new(),
            console: Arc::default(),
            shots,
        };
        let target = b.call("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = b.call("Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }));
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b.call("Emulation.setDeviceMetricsOverride", json!({ "width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false }));
        b
    }

    /// Sends one CDP command (to the page once attached) and waits for its
    /// answer; panics on a protocol error.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::Text(msg.to_string().into())).expect("send to DevTools");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method} within 30 s");
            let text = match self.ws.read() {
                Ok(Message::Text(t)) => t,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    continue;
                }
                Err(e) => panic!("DevTools connection: {e}"),
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
            if v["id"] == id {
                if let Some(err) = v.get("error") {
                    panic!("{method}: {err}");
                }
                return v["result"].clone();
            }
            self.note_event(&v);
        }
    }

    /// Keeps the page's console output and exceptions.
    fn note_event(&self, v: &Value) {
        let line = match v["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = v["params"]["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a["value"].as_str().map_or_else(|| a["description"].to_string(), str::to_string))
                    .collect();
                format!("console.{}: {}", v["params"]["type"].as_str().unwrap_or("log"), args.join(" "))
            }
            Some("Runtime.exceptionThrown") => format!("exception: {}", v["params"]["exceptionDetails"]),
            _ => return,
        };
        self.console.lock().unwrap().push(line);
    }

    /// Evaluates `js` in the page (awaiting a promise) and returns its value.
    fn eval(&mut self, js: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({ "expression": js, "returnByValue": true, "awaitPromise": true }));
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{js}: {ex}\nconsole: {:#?}", self.console.lock().unwrap());
        }
        r["result"]["value"].clone()
    }

    /// Navigates and waits for the document to load.
    fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_for("document.readyState === 'complete'", Duration::from_secs(15), "page load");
    }

    /// Polls `js` until it is truthy; returns its value. On timeout, saves a
    /// screenshot and fails with the page's text and console.
    fn wait_for(&mut self, js: &str, timeout: Duration, what: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(js);
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("failed-{}", what.replace(' ', "-")));
                let text = self.eval("document.body.innerText");
                panic!(
                    "waited {timeout:?} for {what} ({js})\npage text:\n{}\nconsole: {:#?}",
                    text.as_str().unwrap_or(""),
                    self.console.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Clicks the element `selector` (a real click event on it).
    fn click(&mut self, selector: &str) {
        let ok = self.eval(&format!(
            "(() => {{ const e = document.querySelector({s}); if (!e) return false; e.scrollIntoView(); e.click(); return true; }})()",
            s = json!(selector)
        ));
        assert_eq!(ok, true, "no element {selector} to click");
    }

    /// Focuses `selector` and types `text` into it (CDP keyboard input).
    fn type_into(&mut self, selector: &str, text: &str) {
        let ok = self.eval(&format!(
            "(() => {{ const e = document.querySelector({s}); if (!e) return false; e.focus(); e.value = ''; return true; }})()",
            s = json!(selector)
        ));
        assert_eq!(ok, true, "no element {selector} to type into");
        self.call("Input.insertText", json!({ "text": text }));
    }

    /// Text of `selector` (empty when absent).
    fn text(&mut self, selector: &str) -> String {
        let v = self.eval(&format!("(document.querySelector({}) || {{}}).textContent || ''", json!(selector)));
        v.as_str().unwrap_or_default().trim().to_string()
    }

    /// Saves a PNG of the page to `target/gui-screenshots/NAME.png`.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true }));
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap_or_default()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sipp caller to `service` whose RTP goes to a fresh [`RtpPeer`]; it
/// hangs up after `ms` unless skald does first.
fn call(skald: &Skald, service: &str, dir: &Path, ms: u64) -> (RtpPeer, std::thread::JoinHandle<std::process::Output>) {
    let peer = RtpPeer::start();
    let t = sipp_phone(&skald.uri(service), "uac_call.xml", dir, &peer, ms);
    (peer, t)
}

/// The API's OpenAPI description lists `path`.
fn api_has(skald: &Skald, path: &str) -> bool {
    skald.get_json("/api/v1/openapi.json")["paths"].get(path).is_some()
}

#[test]
fn log_in_watch_a_live_call_supervise_it_and_start_a_test_call() {
    let supervise_route = "/api/v1/calls/{id}/supervise";
    let dir = tempfile::tempdir().unwrap();
    let skald = Skald::start();
    assert_eq!(
        api_has(&skald, supervise_route),
        SUPERVISE_API_MERGED,
        "{supervise_route} is {}in this skald: set SUPERVISE_API_MERGED to match",
        if SUPERVISE_API_MERGED { "not " } else { "" }
    );
    assert_eq!(api_has(&skald, "/api/v1/talk"), TALK_API_MERGED, "/api/v1/talk: set TALK_API_MERGED to match");
    let base = format!("http://127.0.0.1:{}", skald.http_port);
    let mut b = Browser::start();

    // Log in through the form.
    b.goto(&format!("{base}/agent/gui"));
    b.wait_for("!document.querySelector('#view-login').hidden", Duration::from_secs(10), "login form");
    b.screenshot("01-login");
    b.type_into("#login-token", "not-the-token");
    b.click("#login-form button[type=submit]");
    let err = b.wait_for("document.querySelector('#login-error').hidden ? '' : document.querySelector('#login-error').textContent", Duration::from_secs(10), "login error");
    assert_eq!(err, "Login failed — 401 unauthorized: invalid token");
    b.type_into("#login-token", ADMIN_TOKEN);
    b.click("#login-form button[type=submit]");
    b.wait_for("!document.querySelector('#view-dashboard').hidden", Duration::from_secs(10), "dashboard");
    b.wait_for("document.querySelector('#live-status').textContent === 'live'", Duration::from_secs(10), "event stream");
    b.screenshot("02-dashboard");

    // A real call appears live, with the agent's greeting in its transcript.
    let (peer, sipp_t) = call(&skald, "+15550123", dir.path(), 60_000);
    let row = "#live-calls tbody tr[data-call-id]";
    let id = b.wait_for(&format!("(document.querySelector('{row}') || {{dataset: {{}}}}).dataset.callId"), Duration::from_secs(15), "live call row");
    let id = id.as_str().unwrap().to_string();
    b.wait_for(&format!("document.querySelector('{row}').textContent.includes('answered')"), Duration::from_secs(15), "answered");
    let row_text = b.text(row);
    assert!(row_text.contains("front-desk / dental-front-desk"), "app and agent shown: {row_text}");
    assert!(row_text.contains("+15550123"), "the DID shown: {row_text}");
    b.screenshot("03-live-call");
    b.click(&format!("{row} a"));
    b.wait_for(&format!("location.hash === '#/calls/{id}' && !document.querySelector('#view-call').hidden"), Duration::from_secs(5), "call view");
    let greeting = b.wait_for(
        "[...document.querySelectorAll('#transcript li.agent .text')].map(e => e.textContent).join(' ')",
        Duration::from_secs(30),
        "the agent's greeting",
    );
    assert!(greeting.as_str().unwrap().contains("Thanks for calling Bright Smile Dental."), "{greeting}");
    assert!(!peer.heard().is_empty(), "the caller hears skald");
    b.wait_for("document.querySelector('#events').textContent.includes('transcript.final')", Duration::from_secs(5), "events list");
    b.screenshot("04-call-transcript");

    // Supervisor buttons.
    for (button, label, shot) in [("#sup-listen", "Listen", "05-listen"), ("#sup-takeover", "Take over", "06-takeover")] {
        b.eval("document.querySelector('#sup-result').textContent = ''");
        b.click(button);
        let shown = b.wait_for(
            "(t => t && !t.endsWith('…') ? t : '')(document.querySelector('#sup-result').textContent)",
            Duration::from_secs(10),
            label,
        );
        assert_supervise_outcome(label, shown.as_str().unwrap());
        b.screenshot(shot);
    }

    // A test call from the panel to skald's own SIP URI (the echo application).
    b.goto(&format!("{base}/agent/gui#/test"));
    b.wait_for("document.querySelector('#tc-app option[value=echo]')", Duration::from_secs(10), "applications");
    b.type_into("#tc-to", &skald.uri("echo"));
    b.eval("document.querySelector('#tc-app').value = 'echo'");
    b.click("#test-call-form button[type=submit]");
    let placed = b.wait_for(
        "(a => a ? a.dataset.callId : '')(document.querySelector('#tc-result a[data-call-id]')) || (document.querySelector('#tc-result.error') || {}).textContent",
        Duration::from_secs(10),
        "test call result",
    );
    let placed = placed.as_str().unwrap().to_string();
    assert_eq!(placed.len(), 36, "a call id, not an error: {placed}");
    b.screenshot("07-test-call");
    // Talk in the browser (the fake microphone of `--use-fake-device-for-media-stream`).
    b.click("#talk-start");
    let talk = b.wait_for(
        "(e => e.classList.contains('ok') || e.classList.contains('error') ? e.textContent : '')(document.querySelector('#talk-result'))",
        Duration::from_secs(10),
        "talk in the browser",
    );
    assert_talk_outcome(talk.as_str().unwrap());
    b.screenshot("07b-talk");
    b.click("#talk-stop");
    b.click("#nav a[data-view=dashboard]");
    b.wait_for(&format!("document.querySelector('#live-calls tr[data-call-id=\"{placed}\"], #recent-calls tr[data-call-id=\"{placed}\"]')"), Duration::from_secs(15), "the test call on the dashboard");
    // skald answers its own call too: the inbound leg to `echo` is live.
    b.wait_for("[...document.querySelectorAll('#live-calls tbody tr')].filter(r => r.textContent.includes('echo')).length >= 2", Duration::from_secs(15), "both legs of the test call");
    b.screenshot("08-dashboard-with-test-call");

    // The agents, read-only.
    b.click("#nav a[data-view=agents]");
    b.wait_for("document.querySelector('#agents [data-agent=dental-front-desk] .badge.ok')", Duration::from_secs(10), "agents");
    b.screenshot("09-agents");

    // The first call was taken over; its supervisor left the page, so the
    // call ended (`supervisor-left`: the AI had left it for good).
    if SUPERVISE_API_MERGED {
        let d = skald.get_json(&format!("/api/v1/calls/{id}"));
        assert_eq!(d["end_reason"], "supervisor-left", "{d:#}");
    }
    // Hang the test call up from its page.
    let id = placed;
    b.goto(&format!("{base}/agent/gui#/calls/{id}"));
    b.wait_for("!document.querySelector('#sup-hangup').disabled", Duration::from_secs(10), "call page");
    b.click("#sup-hangup");
    let shown = b.wait_for(
        "(t => t && !t.endsWith('…') ? t : '')(document.querySelector('#sup-result').textContent)",
        Duration::from_secs(10),
        "hang up",
    );
    assert_eq!(shown, "Hang up: the call is ending.");
    b.wait_for("document.querySelector('#call-facts').textContent.includes('ended')", Duration::from_secs(15), "call ended");
    b.screenshot("10-ended");
    let _ = sipp_t.join();
}
