//! `skald simulate`: a caller simulator for developers. It places a real
//! call to a running skald (SIP with RTP, or a Twilio Media Stream), plays
//! the caller from a scenario file, listens to the agent, and scores the
//! call: what the agent said, how fast, whether it talked over the caller,
//! left dead air, and how the call ended.
//!
//! ```text
//! skald simulate SCENARIO.yaml [--target sip:…|--twilio-url ws://…] [--json OUT.json]
//!                [--junit OUT.xml] [--models-dir DIR] [--from USER] [--ring-timeout S]
//! ```
//! Exit status: 0 every check passed, 1 a check failed, 2 usage or scenario
//! error (`FILE:LINE: …`), 3 the call could not be made (no answer within
//! the ring timeout, connection refused, models missing).
//!
//! ## Scenario format (YAML; unknown keys are errors)
//! ```yaml
//! name: booking-with-pauses               # required: names the report and the JUnit suite
//! target: sip:+15550123@127.0.0.1:5060    # or ws://HOST/api/v1/twilio/media-stream; a flag wins
//! max_duration_s: 120                     # the caller hangs up after this (default 120)
//! think_ms: 300                           # caller's pause after a reply, before its turn (300)
//! reply_gap_ms: 1000                      # agent silence that ends a reply (1000)
//! reply_timeout_ms: 15000                 # how long the caller waits for a reply (15000)
//! twilio: {parameters: {did: "+15550123"}}   # Media Streams `start` customParameters
//! steps:
//!   - expect: {words: [smile], regex: "(?i)help", max_latency_ms: 1500}   # the greeting
//!   - say:                                # one caller turn, parts back to back
//!       - text: "I would like to book"    # spoken by the local Piper voice
//!       - pause_ms: 1000                  # silence inside the turn
//!       - wav: speech.wav                 # a recording (relative to this file)
//!         from_ms: 200                    # optional clip
//!         to_ms: 1800
//!       - text: "a cleaning please."
//!     during_reply:                       # while the agent's reply to this turn plays
//!       - {at_ms: 800, text: "uh-huh", max_pause_ms: 500}   # a backchannel
//!       - {at_ms: 2500, wav: speech.wav, barge_in: true, max_stop_ms: 600}   # an interruption
//!   - expect: {words: [day], max_latency_ms: 1500, no_talk_over: true, replies: 1}
//!   - say: Next Tuesday.                  # a turn of one text part
//!   - silent_s: 12                        # the caller says nothing
//!   - expect: {regex: "(?i)still there"}
//! end: {by: agent_hangup, within_s: 60}   # or caller_hangup (default) / transferred
//! checks: {max_dead_air_ms: 2000}
//! ```
//! Text parts separated by pauses (no `wav` between them) are spoken as one
//! sentence and cut at its own pauses, so the pause sounds mid-sentence:
//! `[text: "I'd like to book,", pause_ms: 1000, text: "a cleaning."]` is
//! one Piper utterance, "I'd like to book, a cleaning.", with the 1000 ms
//! of silence put in its comma pause (the continuing intonation of a
//! caller who hesitates, not a fragment said as a finished sentence). A
//! comma ends a part at a clean cut; without one the cut is the quiet
//! point nearest where the letters put it ([`render::cut_points`]).
//!
//! ## What the steps mean
//! - `say` waits until the reply the caller is owed (to its previous turn;
//!   at the start, the greeting) has ended, pauses `think_ms`, and speaks.
//!   Speech parts are trimmed of leading and trailing quiet, so a
//!   `pause_ms` is the pause the agent hears. `during_reply` items play
//!   `at_ms` after the first audio of the reply to this turn, if it still
//!   plays then; a `barge_in` item is an interruption: the reply it cut ends
//!   with it, and the next `expect` checks the agent's answer to it.
//! - `expect` checks a reply. After a `say` (or a barge-in) it takes the
//!   answer to it: the first reply playing when the caller's audio ended or
//!   starting after it, with every reply since the caller's audio began
//!   (`replies` counts them); otherwise it takes the next reply not yet
//!   taken (the greeting, a re-prompt heard during `silent_s`). What the
//!   agent adds after a pause, before the caller's next turn, continues
//!   that answer (its words count; it is no extra reply). Its checks:
//!   `words` (every word or phrase, compared as lowercase words without
//!   punctuation), `regex` (on the transcript), `max_latency_ms` (end of the
//!   caller's last audio to the answer's first audio; negative when the
//!   agent started before the caller finished), `no_talk_over` (no
//!   agent audio while the caller's turn played, its pauses included),
//!   `replies` (exactly that many replies). A reply is required.
//! - `silent_s` says nothing for that long (the call may end meanwhile).
//! - `end`: `agent_hangup` (SIP BYE; Media Streams: skald closes the
//!   socket), `transferred` (SIP REFER; not observable over Media Streams),
//!   or `caller_hangup`: the caller hangs up after the last step (after
//!   the answer to a last `say`) and the agent must not have ended first.
//! - `checks.max_dead_air_ms`: the longest silence from the end of a caller
//!   turn or barge-in to the agent's next audio.
//!
//! ## How it listens
//! The caller hears what a phone hears (skald's SIP stack: jitter buffer,
//! G.711, 16 kHz; Media Streams: a playout buffer of `media` frames). A 20 ms
//! frame louder than [`LOUD_RMS`] is agent speech; three of them start a
//! reply, `reply_gap_ms` of quiet ends it ([`caller`]). After the call each
//! reply is transcribed with the local STT (Moonshine) and the steps are
//! scored ([`report`]).
//!
//! ## Parts
//! [`scenario`] (the file), [`render`] (the caller's audio, made before the
//! call), [`caller`] (the sans-IO caller, tested in virtual time),
//! [`sip`] and [`twilio`] (the two transports), [`report`] (scoring and the
//! text, JSON and JUnit outputs).

pub mod caller;
pub mod loadtest;
pub mod render;
pub mod report;
pub mod scenario;
pub mod sip;
pub mod twilio;

use crate::config::PortRange;
use crate::providers::local::models::ModelPaths;
use caller::{Caller, CallerConfig, CallLog};
use report::{Report, RunInfo, Timings};
use scenario::{EndBy, Scenario, ScenarioError};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// RMS (PCM16 units, 16 kHz) above which a heard 20 ms frame is agent speech.
pub const LOUD_RMS: f64 = 300.0;
/// Audio kept around a reply for its transcription, ms.
const TRANSCRIBE_EDGE_MS: usize = 150;

/// Why a simulation could not run (a failed check is not an error: see
/// [`Report::passed`]).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario file is bad (names FILE:LINE).
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A command-line problem.
    #[error("{0}")]
    Usage(String),
    /// The caller's audio cannot be made from the scenario (FILE:LINE).
    #[error("{file}:{line}: {message}")]
    Audio {
        /// The scenario file.
        file: PathBuf,
        /// The line naming the text or WAV (0: unknown).
        line: usize,
        /// What went wrong.
        message: String,
    },
    /// The local models cannot be loaded.
    #[error("{0}")]
    Models(String),
    /// The target cannot be reached (refused, bad address).
    #[error("{0}")]
    Connect(String),
    /// The target did not answer (rejected, or no answer in time).
    #[error("{0}")]
    NotAnswered(String),
    /// The call could not be run.
    #[error("{0}")]
    Call(String),
    /// An output file cannot be written.
    #[error("{0}")]
    Output(String),
}

impl SimError {
    /// The process exit status: 2 for usage and scenario errors, 3 when the
    /// call could not be made or scored.
    pub fn exit_code(&self) -> i32 {
        match self {
            SimError::Scenario(_) | SimError::Usage(_) | SimError::Audio { .. } => 2,
            _ => 3,
        }
    }
}

/// What `skald simulate` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scenario file.
    pub scenario: PathBuf,
    /// `--target`: a SIP URI (wins over the scenario's `target`).
    pub target: Option<String>,
    /// `--twilio-url`: a Media Streams WebSocket URL.
    pub twilio_url: Option<String>,
    /// `--models-dir` (default: `SKALD_MODELS_DIR` or `~/.cache/skald/models`).
    pub models_dir: Option<PathBuf>,
    /// The caller's SIP user / `from` parameter.
    pub from: String,
    /// Give up when not answered within this time.
    pub ring_timeout: Duration,
    /// SIP listen address (default: 127.0.0.1:0 for a loopback target,
    /// else 0.0.0.0:0).
    pub sip_listen: Option<SocketAddr>,
    /// RTP ports of the simulator.
    pub rtp_ports: PortRange,
    /// Auth token to sign the Media Streams upgrade (`TWILIO_AUTH_TOKEN`).
    pub twilio_auth_token: Option<String>,
    /// Account SID for `start` (`TWILIO_ACCOUNT_SID`).
    pub twilio_account_sid: Option<String>,
}

/// Where the call goes.
#[derive(Debug, Clone)]
enum Target {
    /// A SIP URI.
    Sip(String),
    /// A Media Streams URL.
    Twilio(String),
}

/// Loads the scenario, renders the caller's audio, places the call, runs
/// the caller, transcribes and scores. Errors: see [`SimError`]; a call
/// whose checks fail is a report with `passed: false`.
pub async fn run(o: &Options) -> Result<Report, SimError> {
    let scenario = Scenario::load(&o.scenario)?;
    let target = choose_target(o, &scenario)?;
    if matches!(target, Target::Twilio(_)) && scenario.end.by == EndBy::Transferred {
        return Err(SimError::Usage(format!(
            "{}:{}: end.by transferred cannot be observed over Media Streams (skald moves a Twilio call with Twilio's REST API)",
            scenario.file.display(),
            scenario.line_of("transferred")
        )));
    }
    let models = o.models_dir.clone().unwrap_or_else(ModelPaths::default_dir);
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let t = Instant::now();
    let script = {
        let (s, m) = (scenario.clone(), models.clone());
        tokio::task::spawn_blocking(move || render::render(&s, &m))
            .await
            .map_err(|e| SimError::Call(format!("rendering failed: {e}")))?
    };
    let script = script.map_err(|e| match e {
        render::RenderError::Voice(_) => SimError::Models(e.to_string()),
        other => SimError::Audio {
            file: scenario.file.clone(),
            line: other.needle().map(|n| scenario.line_of(&n)).unwrap_or(0),
            message: other.to_string(),
        },
    })?;
    let render_ms = t.elapsed().as_millis() as u64;
    let within = scenario.end.within_s.unwrap_or(scenario.max_duration_s) * 1000;
    let caller = Caller::new(
        script,
        CallerConfig {
            think_ms: scenario.think_ms,
            reply_gap_ms: scenario.reply_gap_ms,
            reply_timeout_ms: scenario.reply_timeout_ms,
            max_duration_ms: scenario.max_duration_s * 1000,
            end: scenario.end.by,
            end_within_ms: within,
            loud_rms: LOUD_RMS,
        },
    );
    let t = Instant::now();
    let (log, target_text, transport) = match &target {
        Target::Sip(uri) => {
            let listen = o.sip_listen.unwrap_or_else(|| default_listen(uri));
            let so = sip::SipOptions {
                target: uri.clone(),
                from: o.from.clone(),
                ring_timeout: o.ring_timeout,
                listen,
                rtp_ports: o.rtp_ports,
                max_duration: Duration::from_secs(scenario.max_duration_s),
            };
            (sip::run(&so, caller).await?, uri.clone(), "sip")
        }
        Target::Twilio(url) => {
            let mut parameters: BTreeMap<String, String> = scenario.twilio_parameters.clone();
            parameters.entry("from".into()).or_insert_with(|| o.from.clone());
            let to = twilio::TwilioOptions {
                url: url.clone(),
                auth_token: o.twilio_auth_token.clone(),
                account_sid: o.twilio_account_sid.clone().unwrap_or_else(|| format!("AC{}", "0".repeat(32))),
                parameters,
            };
            (twilio::run(&to, caller).await?, url.clone(), "twilio")
        }
    };
    let call_ms = t.elapsed().as_millis() as u64;
    let t = Instant::now();
    let transcripts = transcribe(&log, &models).await?;
    let transcribe_ms = t.elapsed().as_millis() as u64;
    let info = RunInfo {
        target: target_text,
        transport: transport.into(),
        started_at,
        timings: Timings { render_ms, call_ms, transcribe_ms },
    };
    Ok(report::score(&scenario, &log, &transcripts, info))
}

/// The flag, else the scenario's `target`; a `ws://`/`wss://` target is a
/// Media Stream.
fn choose_target(o: &Options, s: &Scenario) -> Result<Target, SimError> {
    if o.target.is_some() && o.twilio_url.is_some() {
        return Err(SimError::Usage("give --target or --twilio-url, not both".into()));
    }
    if let Some(url) = &o.twilio_url {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("ws://") || lower.starts_with("wss://")) {
            return Err(SimError::Usage(format!("--twilio-url `{url}` must start with ws:// or wss://")));
        }
        return Ok(Target::Twilio(url.clone()));
    }
    let t = o.target.clone().or_else(|| s.target.clone()).ok_or_else(|| {
        SimError::Usage(format!("{}: no target: give --target sip:… (or --twilio-url ws://…), or `target:` in the scenario", s.file.display()))
    })?;
    let lower = t.to_ascii_lowercase();
    if lower.starts_with("ws://") || lower.starts_with("wss://") {
        return Ok(Target::Twilio(t));
    }
    if !scenario::is_target(&t) || !t.contains('@') && !t.trim_start_matches("sips:").trim_start_matches("sip:").contains('.') {
        return Err(SimError::Usage(format!("target `{t}` is not a SIP URI (sip:USER@HOST[:PORT])")));
    }
    Ok(Target::Sip(t))
}

/// 127.0.0.1:0 for a loopback target (or `localhost`), else 0.0.0.0:0.
fn default_listen(uri: &str) -> SocketAddr {
    let host = uri.split('@').next_back().unwrap_or("").split([':', ';', '>']).next().unwrap_or("");
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let ip = if loopback { [127, 0, 0, 1] } else { [0, 0, 0, 0] };
    SocketAddr::from((ip, 0))
}

/// Transcribes every reply with the local STT (blocking work on a
/// blocking thread).
async fn transcribe(log: &CallLog, models: &std::path::Path) -> Result<Vec<String>, SimError> {
    if log.replies.is_empty() {
        return Ok(Vec::new());
    }
    let edge = TRANSCRIBE_EDGE_MS * 16;
    let clips: Vec<Vec<i16>> = log
        .replies
        .iter()
        .map(|r| {
            let a = r.start_sample.saturating_sub(edge);
            let b = (r.end_sample + edge).min(log.heard.len());
            log.heard[a.min(b)..b].to_vec()
        })
        .collect();
    let models = models.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use crate::providers::local::{moonshine::Moonshine, onnx};
        let paths = ModelPaths::in_dir(&models);
        let hint = "(run `skald models fetch`, or give --models-dir)";
        onnx::init_runtime(&paths.onnxruntime).map_err(|e| SimError::Models(format!("ONNX Runtime: {e} {hint}")))?;
        let (enc, dec) = Moonshine::model_files(&paths);
        let model = Moonshine::load_with_threads(&enc, &dec, &paths.moonshine_tokenizer, 2)
            .map_err(|e| SimError::Models(format!("the local STT (Moonshine): {e} {hint}")))?;
        clips
            .iter()
            .map(|c| model.transcribe(c).map(|t| t.trim().to_string()).map_err(|e| SimError::Call(format!("transcription: {e}"))))
            .collect()
    })
    .await
    .map_err(|e| SimError::Call(format!("transcription failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_target_gets_a_loopback_listener() {
        assert_eq!(default_listen("sip:+15550123@127.0.0.1:5060"), "127.0.0.1:0".parse().unwrap());
        assert_eq!(default_listen("sip:bob@localhost"), "127.0.0.1:0".parse().unwrap());
        assert_eq!(default_listen("sip:bob@192.0.2.7:5060;transport=tcp"), "0.0.0.0:0".parse().unwrap());
    }

    #[test]
    fn exit_codes_separate_usage_from_unreachable_targets() {
        assert_eq!(SimError::Usage("x".into()).exit_code(), 2);
        assert_eq!(SimError::NotAnswered("x".into()).exit_code(), 3);
        assert_eq!(SimError::Connect("x".into()).exit_code(), 3);
    }
}
