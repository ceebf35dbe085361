//! Shared helpers for the end-to-end tests: start a real `skald serve`
//! process on free loopback ports, talk to its HTTP API, run real SIP peers
//! (sipp, baresip), make RTP/pcap fixtures from real speech, and compare audio.
#![allow(dead_code)]

pub mod supervisor;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Real speech from Debian `pocketsphinx-testdata` (LibriVox, public domain), 16 kHz mono.
pub const SPEECH_WAV: &str =
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav";

/// The admin API token every harness skald starts with (`SKALD_ADMIN_TOKEN`),
/// sent by [`http`], [`http_body`] and [`Skald::get_json`].
pub const ADMIN_TOKEN: &str = "skald-test-admin-token-0123456789";

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static NEXT_RTP_BASE: AtomicU16 = AtomicU16::new(0);

/// A port that is free for both UDP and TCP on 127.0.0.1 right now, never
/// handed out before by this test binary (the kernel may give a just-freed
/// port again: a skald's SIP and HTTP ports once came out equal) and
/// outside the RTP ranges of [`rtp_range`].
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().unwrap().port();
        if (RTP_PORTS_LOW..=RTP_PORTS_HIGH).contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The ports [`rtp_range`] hands out.
const RTP_PORTS_LOW: u16 = 42000;
const RTP_PORTS_HIGH: u16 = 61999;

/// A disjoint RTP range per skald instance of this test binary.
fn rtp_range() -> (u16, u16) {
    let n = NEXT_RTP_BASE.fetch_add(1, Ordering::SeqCst);
    // 400 slots of 50 ports in 42000-61999: spread by process and instance.
    let slot = (std::process::id() % 10) as u16 * 40 + n % 40;
    let low = RTP_PORTS_LOW + slot * 50;
    (low, low + 49)
}

/// A running `skald serve` child process.
pub struct Skald {
    /// The process.
    child: Option<Child>,
    /// SIP port (UDP and TCP) on 127.0.0.1.
    pub sip_port: u16,
    /// HTTP port on 127.0.0.1.
    pub http_port: u16,
    /// Private data dir (database, recordings, log).
    pub dir: tempfile::TempDir,
    /// Config file used.
    pub config: PathBuf,
}

/// The example config with prompt paths made absolute, plus `extra` YAML
/// appended at the top level (keys given there must not repeat the example's).
pub fn example_config() -> String {
    std::fs::read_to_string(repo().join("sip-config/skald.yaml"))
        .unwrap()
        .replace("prompts/", &format!("{}/sip-config/prompts/", repo().display()))
        .replace("agents_dir: agents", &format!("agents_dir: {}/sip-config/agents", repo().display()))
        .replace("queues_file: queues.yaml", &format!("queues_file: {}/sip-config/queues.yaml", repo().display()))
}

/// [`example_config`] with its agents copied into `dir/agents` and
/// `agents_dir` pointing there; each agent file's text goes through
/// `edit(file name, text)` on the way (identity: return it as is), and a
/// test may add files there after startup.
pub fn example_config_with_agents(dir: &Path, edit: impl Fn(&str, String) -> String) -> String {
    let agents = dir.join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    for e in std::fs::read_dir(repo().join("sip-config/agents")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let text = edit(&name, std::fs::read_to_string(&p).unwrap());
        std::fs::write(agents.join(&name), text).unwrap();
    }
    example_config()
        .lines()
        .map(|l| if l.starts_with("agents_dir:") { format!("agents_dir: {}", agents.display()) } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Skald {
    /// Starts skald with the example config.
    pub fn start() -> Skald {
        Self::start_with(&example_config())
    }

    /// Starts skald with this YAML config text; waits until `/health/ready`.
    pub fn start_with(yaml: &str) -> Skald {
        Self::start_with_env(yaml, &[])
    }

    /// [`Skald::start_with`] with extra environment variables (they win over
    /// the default `SKALD_ADMIN_TOKEN` = [`ADMIN_TOKEN`]). A port that
    /// another test's process took between [`free_port`] and skald's bind
    /// is retried with fresh ports (twice).
    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Skald {
        let mut attempt = 0;
        loop {
            match Self::try_start(yaml, env) {
                Ok(s) => return s,
                Err(log) if attempt < 2 && log.contains("Address already in use") => attempt += 1,
                Err(log) => panic!("skald exited early:\n{log}"),
            }
        }
    }

    /// One start; `Err(log)` when skald exited before it was ready.
    fn try_start(yaml: &str, env: &[(&str, &str)]) -> Result<Skald, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("skald.yaml");
        std::fs::write(&config, yaml).unwrap();
        let sip_port = free_port();
        let http_port = free_port();
        let (low, high) = rtp_range();
        let log = std::fs::File::create(dir.path().join("skald.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skald"))
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--sip-listen", &format!("127.0.0.1:{sip_port}")])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
            .args(["--rtp-ports", &format!("{low}-{high}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "skald=debug,info")
            .env("SKALD_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn skald");
        let mut s = Skald { child: Some(child), sip_port, http_port, dir, config };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = s.try_http("GET", "/health/ready") {
                return Ok(s);
            }
            if let Some(status) = s.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("({status})\n{}", s.log()));
            }
            assert!(Instant::now() < deadline, "skald not ready in 20 s:\n{}", s.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// skald's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("skald.log")).unwrap_or_default()
    }

    /// `sip:USER@127.0.0.1:PORT`.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.sip_port)
    }

    /// One HTTP/1.1 request; returns (status, body).
    pub fn try_http(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        http(self.http_port, method, path)
    }

    /// GET returning JSON; panics unless 200.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.try_http("GET", path).unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// All call records, newest first.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        self.get_json("/api/v1/calls")["calls"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `n` calls are recorded as ended; returns them newest first.
    pub fn wait_ended(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls();
            let ended: Vec<_> = calls.iter().filter(|c| c["state"] == "ended").cloned().collect();
            if ended.len() >= n {
                return ended;
            }
            assert!(Instant::now() < deadline, "only {} of {n} calls ended: {calls:#?}\n{}", ended.len(), self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until a live call exists; returns its record.
    pub fn wait_live(&self, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.calls().into_iter().find(|c| c["live"] == true && c["state"] == "answered") {
                return c;
            }
            assert!(Instant::now() < deadline, "no live call:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for exit (bounded); returns the exit status code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe_kill(child.id(), "TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("skald did not exit within {timeout:?} of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// PID of the child.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for Skald {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- skald log ----\n{}", self.log());
        }
    }
}

/// Sends a signal with the `kill` command (no libc dependency in tests).
pub fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
}

/// A minimal HTTP/1.1 client on loopback, as the admin ([`ADMIN_TOKEN`]):
/// returns (status, body).
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_body(port, method, path, "")
}

/// [`http`] with a JSON request body (empty: none).
pub fn http_body(port: u16, method: &str, path: &str, json: &str) -> std::io::Result<(u16, String)> {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = http_raw(port, method, path, &[("Authorization", &auth)], json)?;
    Ok((r.status, r.body))
}

/// One answer of [`http_raw`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code (0 when the answer did not parse).
    pub status: u16,
    /// Header lines (name lowercased, value), in order.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: String,
}

impl HttpResponse {
    /// The first header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with exactly these extra `headers` (no token unless
/// given) and a JSON body (empty: none).
pub fn http_raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], json: &str) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let ctype = if json.is_empty() { "" } else { "Content-Type: application/json\r\n" };
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}{ctype}Content-Length: {}\r\n\r\n{json}",
        json.len()
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    Ok(HttpResponse { status, headers, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Runs sipp with `args` (scenario files from tests/sipp/), bounded by `timeout`.
pub fn sipp(args: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg(format!("{}", timeout.as_secs()))
        .arg("sipp")
        .args(args)
        .args(["-nostdin", "-trace_err", "-trace_msg"])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null());
    cmd.output().expect("run sipp (installed by `make test`)")
}

/// A sipp phone calling `uri` (`sip:USER@HOST:PORT`, optionally with
/// `?Name=value&…` headers, percent-encoded, which go into the INVITE), its
/// media at the test's RTP endpoint `peer` (offers PCMU and
/// telephone-event, expects PCMU in the answer). `template` is
/// `uac_call.xml` (hangs up after `ms`) or `uac_wait_bye.xml` (waits up to
/// `ms` for skald's BYE). Returns sipp's thread.
pub fn sipp_phone(uri: &str, template: &str, dir: &Path, peer: &RtpPeer, ms: u64) -> std::thread::JoinHandle<Output> {
    let (base, headers) = uri.split_once('?').unwrap_or((uri, ""));
    let user = base.trim_start_matches("sip:").split('@').next().unwrap().to_string();
    let hostport = base.split('@').nth(1).expect("a SIP URI with a host").to_string();
    let mut lines = String::new();
    for h in headers.split('&').filter(|h| !h.is_empty()) {
        let (name, value) = h.split_once('=').unwrap();
        let value = percent_encoding::percent_decode_str(value).decode_utf8().unwrap();
        lines.push_str(&format!("      {name}: {value}\n"));
    }
    let mut s = std::fs::read_to_string(scenario(template)).unwrap();
    s = s.replacen("      User-Agent: sipp\n", &format!("      User-Agent: sipp\n{lines}"), 1);
    for (k, v) in [
        ("PTS", "0 101".to_string()),
        ("MEDIA_PORT", peer.port.to_string()),
        ("ANSWER_RE", "m=audio [0-9]+ RTP/AVP 0".to_string()),
        ("BYE_TIMEOUT", ms.to_string()),
        ("MEDIA", String::new()),
    ] {
        s = s.replace(&format!("@{k}@"), &v);
    }
    let sf = dir.join(format!("phone-{}-{template}", free_port()));
    std::fs::write(&sf, s).unwrap();
    let sf = sf.display().to_string();
    std::thread::spawn(move || {
        let (p, d) = (free_port().to_string(), ms.to_string());
        sipp(
            &[&hostport, "-s", &user, "-i", "127.0.0.1", "-p", &p, "-m", "1", "-sf", &sf, "-d", &d],
            Duration::from_secs(ms / 1000 + 60),
        )
    })
}

/// A called phone named `user`: sipp running `uas_target.xml` with `part`
/// (`tests/sipp/target_{answer,busy,hold}.xml.part`) in place of `@FINAL@`
/// and each `(NAME, value)` of `vars` in place of `@NAME@`. Returns sipp's
/// thread and the phone's SIP URI, once it listens.
pub fn sipp_target(dir: &Path, user: &str, part: &str, vars: &[(&str, String)]) -> (std::thread::JoinHandle<Output>, String) {
    let mut s = std::fs::read_to_string(scenario("uas_target.xml")).unwrap();
    s = s.replace("@FINAL@", &std::fs::read_to_string(repo().join("tests/sipp").join(part)).unwrap());
    for (k, v) in vars {
        s = s.replace(&format!("@{k}@"), v);
    }
    let port = free_port();
    let sf = dir.join(format!("{user}-{port}.xml"));
    std::fs::write(&sf, s).unwrap();
    let sf = sf.display().to_string();
    let t = std::thread::spawn(move || {
        let p = port.to_string();
        sipp(&["-sf", &sf, "-i", "127.0.0.1", "-p", &p, "-m", "1"], Duration::from_secs(150))
    });
    std::thread::sleep(Duration::from_millis(300));
    (t, format!("sip:{user}@127.0.0.1:{port}"))
}

/// Path of a scenario in tests/sipp/.
pub fn scenario(name: &str) -> String {
    repo().join("tests/sipp").join(name).display().to_string()
}

/// Asserts sipp succeeded, printing its output and skald's log when not.
pub fn assert_sipp_ok(out: &Output, skald: &Skald) {
    assert!(
        out.status.success(),
        "sipp failed ({:?}):\nstdout:\n{}\nstderr:\n{}\nskald log:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        skald.log()
    );
}

/// The speech fixture as 8 kHz µ-law bytes, converted by sox (an independent tool).
pub fn speech_mulaw_8k() -> Vec<u8> {
    let out = Command::new("sox")
        .args([SPEECH_WAV, "-r", "8000", "-c", "1", "-t", "ul", "-"])
        .output()
        .expect("sox (installed by `make test`)");
    assert!(out.status.success(), "sox failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Reads a WAV as mono i16 samples and its rate.
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let ch = spec.channels as usize;
    let all: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    (all.chunks(ch).map(|c| c[0]).collect(), spec.sample_rate)
}

/// G.711 µ-law decode (ITU-T G.711), written here independently of skald's codec.
pub fn mulaw_to_linear(b: u8) -> i16 {
    let b = !b;
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = b & 0x0F;
    let magnitude = ((((mantissa as i32) << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// Energy envelope: RMS per `win` samples.
pub fn envelope(x: &[i16], win: usize) -> Vec<f64> {
    x.chunks(win)
        .map(|c| (c.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
        .collect()
}

/// Pearson correlation of two equal-length series.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let (a, b) = (&a[..n], &b[..n]);
    let ma = a.iter().sum::<f64>() / n as f64;
    let mb = b.iter().sum::<f64>() / n as f64;
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for i in 0..n {
        num += (a[i] - ma) * (b[i] - mb);
        da += (a[i] - ma).powi(2);
        db += (b[i] - mb).powi(2);
    }
    if da == 0.0 || db == 0.0 { 0.0 } else { num / (da * db).sqrt() }
}

/// Finds where `needle` (a shorter series) best fits inside `hay`: returns
/// (offset in `hay`, correlation). Both are envelopes at the same rate.
pub fn best_fit(hay: &[f64], needle: &[f64]) -> (usize, f64) {
    let mut best = (0, f64::MIN);
    if hay.len() < needle.len() {
        return best;
    }
    for off in 0..=(hay.len() - needle.len()) {
        let c = pearson(&hay[off..off + needle.len()], needle);
        if c > best.1 {
            best = (off, c);
        }
    }
    best
}

/// Writes a pcap (Ethernet/IPv4/UDP) of RTP packets, one per 20 ms, that
/// sipp's `play_pcap_audio` replays; payload type `pt`, 160-byte payloads.
pub fn write_rtp_pcap(path: &Path, payload: &[u8], pt: u8) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, chunk) in payload.chunks_exact(160).enumerate() {
        let mut rtp = vec![0x80, pt & 0x7f];
        rtp.extend_from_slice(&(1000u16.wrapping_add(i as u16)).to_be_bytes());
        rtp.extend_from_slice(&(160u32 * i as u32).to_be_bytes());
        rtp.extend_from_slice(&0x5eed_0001u32.to_be_bytes());
        rtp.extend_from_slice(chunk);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut pkt = vec![0u8; 12];
        pkt.extend_from_slice(&[0x08, 0x00]);
        pkt.extend_from_slice(&[0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        pkt.extend_from_slice(&6000u16.to_be_bytes());
        pkt.extend_from_slice(&6002u16.to_be_bytes());
        pkt.extend_from_slice(&(udp_len as u16).to_be_bytes());
        pkt.extend_from_slice(&[0, 0]);
        pkt.extend_from_slice(&rtp);
        let t_us = i as u64 * 20_000;
        f.extend_from_slice(&((t_us / 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
        f.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        f.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        f.extend_from_slice(&pkt);
    }
    std::fs::write(path, f).unwrap();
}

/// A packet from skald with its arrival time.
pub type Packet = (Instant, Vec<u8>);

/// One packet an [`RtpPeer`] sends.
enum Outgoing {
    /// A 160-byte µ-law frame (PT 0).
    Audio(Vec<u8>),
    /// A telephone-event payload (PT 101) of the event starting at slot `start`.
    Event { start: u32, payload: Vec<u8> },
}

/// Distinct start slots for test DTMF events (their RTP timestamps).
static DTMF_EVENT_SLOT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1_000_000);

/// A caller's RTP endpoint run by the test (sipp does the signaling with an
/// SDP pointing here). A thread sends one PCMU packet every 20 ms (queued
/// speech, else silence) to where skald's packets come from, and records
/// every packet skald sends with its arrival time.
pub struct RtpPeer {
    /// Local port (put it in the SDP).
    pub port: u16,
    /// Packets waiting to be sent: frames (160 bytes µ-law, PT 0) or
    /// RFC 4733 telephone-events (PT 101 with the event's start timestamp).
    queue: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Outgoing>>>,
    /// Packets from skald: (arrival, RTP packet).
    received: std::sync::Arc<std::sync::Mutex<Vec<Packet>>>,
    /// (time, frame index) of each speech frame the peer sent.
    sent_speech: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    /// Stops the thread.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RtpPeer {
    /// Binds on 127.0.0.1 and starts the 20 ms send/receive loop.
    pub fn start() -> RtpPeer {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
        let port = sock.local_addr().unwrap().port();
        let queue = Arc::new(Mutex::new(std::collections::VecDeque::<Outgoing>::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let sent_speech = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, r, ss, st) = (queue.clone(), received.clone(), sent_speech.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut remote = None;
            let start = Instant::now();
            let mut n: u32 = 0;
            while !st.load(Ordering::SeqCst) {
                if let Ok((len, from)) = sock.recv_from(&mut buf) {
                    remote.get_or_insert(from);
                    r.lock().unwrap().push((Instant::now(), buf[..len].to_vec()));
                }
                let due = start + Duration::from_millis(20 * n as u64);
                if Instant::now() < due {
                    continue;
                }
                n += 1;
                let Some(dest) = remote else { continue };
                let next = q.lock().unwrap().pop_front();
                let speech = matches!(next, Some(Outgoing::Audio(_)));
                let (pt, ts, payload) = match next {
                    Some(Outgoing::Audio(f)) => (0u8, 160 * n, f),
                    Some(Outgoing::Event { start, payload }) => (101u8, 160 * start, payload),
                    None => (0u8, 160 * n, vec![0xFF; 160]),
                };
                let mut p = vec![0x80, pt];
                p.extend_from_slice(&(n as u16).to_be_bytes());
                p.extend_from_slice(&ts.to_be_bytes());
                p.extend_from_slice(&0x7e57_0001u32.to_be_bytes());
                p.extend_from_slice(&payload);
                let _ = sock.send_to(&p, dest);
                if speech {
                    ss.lock().unwrap().push(Instant::now());
                }
            }
        });
        RtpPeer { port, queue, received, sent_speech, stop }
    }

    /// Queues µ-law 8 kHz audio to send (whole 20 ms frames).
    pub fn say(&self, ulaw: &[u8]) {
        let mut q = self.queue.lock().unwrap();
        for f in ulaw.chunks(160) {
            let mut f = f.to_vec();
            f.resize(160, 0xFF);
            q.push_back(Outgoing::Audio(f));
        }
    }

    /// Queues DTMF `digits` as RFC 4733 telephone-events (payload type
    /// 101): each 100 ms (5 packets, the same start timestamp, growing
    /// duration, the last three with the E bit), then 100 ms of silence.
    pub fn dtmf(&self, digits: &str) {
        let mut q = self.queue.lock().unwrap();
        // The slot the event starts in is only known to the sending thread;
        // the start is marked relative to the queue: the thread numbers slots
        // from its start, so take a far-enough unique slot per event.
        for d in digits.chars() {
            let event = match d {
                '0'..='9' => d as u8 - b'0',
                '*' => 10,
                '#' => 11,
                _ => continue,
            };
            let start = DTMF_EVENT_SLOT.fetch_add(1000, Ordering::SeqCst);
            for i in 0..7u16 {
                let end = i >= 4;
                let duration = 160 * (i.min(4) + 1);
                let mut payload = vec![event, if end { 0x80 | 10 } else { 10 }];
                payload.extend_from_slice(&duration.to_be_bytes());
                q.push_back(Outgoing::Event { start, payload });
            }
            for _ in 0..5 {
                q.push_back(Outgoing::Audio(vec![0xFF; 160]));
            }
        }
    }

    /// Frames still waiting to be sent.
    pub fn pending(&self) -> usize {
        self.queue.lock().unwrap().len()
    }

    /// Send times of the speech frames sent so far.
    pub fn speech_sent(&self) -> Vec<Instant> {
        self.sent_speech.lock().unwrap().clone()
    }

    /// skald's packets so far.
    pub fn received(&self) -> Vec<(Instant, Vec<u8>)> {
        self.received.lock().unwrap().clone()
    }

    /// skald's audio so far, decoded (8 kHz), with the arrival time of each
    /// 160-sample frame.
    pub fn heard(&self) -> Vec<(Instant, Vec<i16>)> {
        self.received()
            .into_iter()
            .filter(|(_, p)| p.len() > 12 && p[1] & 0x7f == 0)
            .map(|(t, p)| (t, p[12..].iter().map(|&b| mulaw_to_linear(b)).collect()))
            .collect()
    }

    /// Waits until skald has spoken (a frame louder than `LOUD`) after `since`
    /// and then been quiet for `quiet`; returns when the speech ended. Panics
    /// after `timeout`.
    pub fn wait_agent_turn(&self, since: Instant, quiet: Duration, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            let frames = self.heard();
            let spoke: Vec<Instant> = frames.iter().filter(|(t, f)| *t >= since && is_loud(f)).map(|(t, _)| *t).collect();
            if let Some(last) = spoke.last()
                && last.elapsed() >= quiet {
                    return *last;
                }
            assert!(Instant::now() < deadline, "skald did not finish speaking within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RtpPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// RMS above which a 20 ms frame counts as speech.
pub const LOUD: f64 = 300.0;

/// True when the frame's RMS is above [`LOUD`].
pub fn is_loud(f: &[i16]) -> bool {
    envelope(f, f.len().max(1)).first().copied().unwrap_or(0.0) > LOUD
}

/// A phrase spoken by espeak-ng (an independent synthesizer) as 8 kHz µ-law.
pub fn espeak_ulaw(text: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("say.wav");
    let st = Command::new("espeak-ng").args(["-v", "en-us", "-s", "150", "-w"]).arg(&wav).arg(text).status().unwrap();
    assert!(st.success(), "espeak-ng failed");
    let out = Command::new("sox").arg(&wav).args(["-r", "8000", "-c", "1", "-t", "ul", "-"]).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Word error rate (skald's scoring: see `skald::providers::wer`).
#[allow(unused_imports)]
pub use skald::providers::wer::word_error_rate as wer;

/// The reference transcript of a pocketsphinx-testdata LibriVox file.
pub fn librivox_reference(file_id: &str) -> String {
    let t = std::fs::read_to_string("/usr/share/pocketsphinx/test/data/librivox/transcription").unwrap();
    t.lines()
        .find(|l| l.contains(&format!("({file_id})")))
        .map(|l| l.split(" (").next().unwrap_or("").replace("<s>", "").replace("</s>", "").trim().to_string())
        .unwrap_or_else(|| panic!("no reference for {file_id}"))
}

/// A caller phrase spoken by Piper (the local TTS, used here as a second
/// voice), as 8 kHz µ-law.
pub fn piper_ulaw(text: &str) -> Vec<u8> {
    use skald::providers::local::{models::ModelPaths, onnx, piper::Piper};
    use std::sync::{Arc, OnceLock};
    static VOICE: OnceLock<Arc<Piper>> = OnceLock::new();
    let voice = VOICE.get_or_init(|| {
        let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
        onnx::init_runtime(&paths.onnxruntime).expect("models (run `skald models fetch`)");
        // The caller's voice without VITS noise sampling: the same audio on
        // every run, so the dialogue does not depend on luck.
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&paths.piper_config).unwrap()).unwrap();
        cfg["inference"]["noise_scale"] = serde_json::json!(0.0);
        cfg["inference"]["noise_w"] = serde_json::json!(0.0);
        let path = std::env::temp_dir().join(format!("skald-test-caller-voice-{}.onnx.json", std::process::id()));
        std::fs::write(&path, cfg.to_string()).unwrap();
        Piper::load(&paths.piper_model, &path).unwrap()
    });
    let pcm = voice.synthesize_sentence(text).unwrap();
    let pcm8 = skald::rtp::codec::resample::resample_all(&pcm, voice.sample_rate(), 8000).unwrap();
    let mut ulaw = Vec::new();
    skald::rtp::codec::g711::Law::Mu.encode(&pcm8, &mut ulaw);
    ulaw
}

/// Writes µ-law 8 kHz speech as a 16-bit 8 kHz WAV for a baresip phone's
/// `aufile` source: half a second of silence, the speech, then 30 s of
/// silence (baresip ends the call when its source file ends).
pub fn write_speech_wav(path: &Path, ulaw: &[u8]) {
    let spec = hound::WavSpec { channels: 1, sample_rate: 8000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    // Half a second of silence first: the caller is connected at the answer.
    for _ in 0..4000 {
        w.write_sample(0i16).unwrap();
    }
    for &b in ulaw {
        w.write_sample(mulaw_to_linear(b)).unwrap();
    }
    // Then silence: baresip ends the call when its source file ends.
    for _ in 0..8000 * 30 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
}

/// Whether a transcription says `phrase`, compared as lowercase words:
/// punctuation, hyphens and case do not matter ("front-desk." says
/// "front desk").
pub fn says(heard: &str, phrase: &str) -> bool {
    let words = |t: &str| -> String {
        t.to_lowercase().split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
    };
    format!(" {} ", words(heard)).contains(&format!(" {} ", words(phrase)))
}

/// Transcribes what the peer heard with skald's own local STT.
pub fn transcribe_heard(frames: &[(Instant, Vec<i16>)]) -> String {
    use skald::providers::local::{models::ModelPaths, moonshine::Moonshine, onnx};
    let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
    onnx::init_runtime(&paths.onnxruntime).expect("models (run `skald models fetch`)");
    let model = Moonshine::load(&paths.moonshine_encoder, &paths.moonshine_decoder, &paths.moonshine_tokenizer).unwrap();
    // Only the stretch with speech (and 100 ms around it): long silences
    // around an utterance only give the model room to stop early.
    let first = frames.iter().position(|(_, f)| is_loud(f)).unwrap_or(0).saturating_sub(5);
    let last = frames.iter().rposition(|(_, f)| is_loud(f)).map_or(frames.len(), |i| (i + 6).min(frames.len()));
    let pcm8: Vec<i16> = frames[first..last.max(first)].iter().flat_map(|(_, f)| f.iter().copied()).collect();
    let pcm16 = skald::rtp::codec::resample::resample_all(&pcm8, 8000, 16000).unwrap();
    model.transcribe(&pcm16).unwrap()
}

/// A LibriVox recording from `pocketsphinx-testdata` as 8 kHz µ-law (sox).
pub fn librivox_ulaw(file_id: &str) -> Vec<u8> {
    let out = Command::new("sox")
        .arg(format!("/usr/share/pocketsphinx/test/data/librivox/{file_id}.wav"))
        .args(["-r", "8000", "-c", "1", "-t", "ul", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "sox failed on {file_id}");
    out.stdout
}
