//! The scenario file of `skald simulate`: parsing and validation.
//!
//! A scenario is YAML (format in the [module docs](super)). Parsing goes
//! through `serde_yaml_ng` with `serde_path_to_error`, as the server's
//! config does: every error names `FILE:LINE` and the field path, unknown
//! keys are errors. Rules that span several keys (a step is exactly one of
//! `expect`, `say`, `silent_s`; a part is exactly one of `text`,
//! `pause_ms`, `wav`; a regex compiles) are checked while the mapping they
//! belong to is read, so their errors carry that mapping's line too. Files
//! named by `wav:` resolve against the scenario file's directory and must
//! exist; their errors name the line that names them.

use crate::config::find_line;
use regex::Regex;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// Default `max_duration_s`.
pub const DEFAULT_MAX_DURATION_S: u64 = 120;
/// Default `think_ms`: the caller's pause after the agent's reply.
pub const DEFAULT_THINK_MS: u64 = 300;
/// Default `reply_gap_ms`: agent silence that ends a reply.
pub const DEFAULT_REPLY_GAP_MS: u64 = 1000;
/// Default `reply_timeout_ms`: how long the caller waits for a reply to start.
pub const DEFAULT_REPLY_TIMEOUT_MS: u64 = 15_000;

/// Why a scenario cannot be used. Every variant names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The scenario file.
        file: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// YAML syntax, a wrong type, an unknown key or a broken rule.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// The scenario file.
        file: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// What is wrong, with the field path.
        message: String,
    },
}

/// One parsed and validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `name`: names the report and the JUnit test suite.
    pub name: String,
    /// The scenario file.
    pub file: PathBuf,
    /// `target`: a `sip:` URI or a `ws://`/`wss://` Media Streams URL (a
    /// command-line flag wins).
    pub target: Option<String>,
    /// `max_duration_s`: the caller hangs up after this long (seconds).
    pub max_duration_s: u64,
    /// `think_ms`: the caller's pause between the end of a reply and its
    /// next turn (ms).
    pub think_ms: u64,
    /// `reply_gap_ms`: silence (ms) that ends an agent reply.
    pub reply_gap_ms: u64,
    /// `reply_timeout_ms`: how long (ms) the caller waits for a reply to
    /// start before going on without one.
    pub reply_timeout_ms: u64,
    /// `twilio.parameters`: the `customParameters` of the Media Streams
    /// `start` message (Twilio mode only).
    pub twilio_parameters: BTreeMap<String, String>,
    /// `steps`, in order.
    pub steps: Vec<Step>,
    /// 1-based line of each step in the file (0 when unknown).
    pub step_lines: Vec<usize>,
    /// `end`: how the call must end.
    pub end: End,
    /// `checks`: whole-call checks.
    pub checks: Checks,
}

/// One step of the script.
#[derive(Debug, Clone)]
pub enum Step {
    /// `expect:` the agent's next reply (or the reply to the caller's last
    /// turn) and what it must satisfy.
    Expect(Expect),
    /// `say:` one caller turn, and what the caller says during the reply
    /// to it.
    Say(Say),
    /// `silent_s:` the caller says nothing for this many milliseconds (the
    /// file gives seconds).
    Silent {
        /// Duration, ms.
        ms: u64,
    },
}

/// What a reply must satisfy; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Words (or phrases of several words) that must all be in the reply,
    /// compared as lowercase words without punctuation.
    pub words: Vec<String>,
    /// A regular expression the reply's transcript must match.
    pub regex: Option<Regex>,
    /// Most latency allowed, ms: end of the caller's last audio to the
    /// first agent audio heard.
    pub max_latency_ms: Option<u64>,
    /// The agent's audio must not be heard while the caller's turn plays
    /// (its pauses included); barge-ins are exempt.
    pub no_talk_over: bool,
    /// Exactly this many separate agent replies from the start of the
    /// caller's turn to the end of the answer (1: one reply per turn,
    /// however many pauses the caller made).
    pub replies: Option<usize>,
}

/// One caller turn.
#[derive(Debug, Clone, Default)]
pub struct Say {
    /// The turn's parts, played back to back.
    pub parts: Vec<Part>,
    /// Things said while the agent's reply to this turn plays.
    pub during_reply: Vec<Interjection>,
}

/// One part of a caller turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Speech synthesized by the local Piper voice.
    Text(String),
    /// Silence, ms.
    Pause(u64),
    /// A recording (any rate, mono or first channel), optionally clipped.
    Wav(WavClip),
}

/// A stretch of a WAV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavClip {
    /// The file (resolved against the scenario's directory).
    pub path: PathBuf,
    /// Start of the clip, ms (default 0).
    pub from_ms: Option<u64>,
    /// End of the clip, ms (default: the end of the file).
    pub to_ms: Option<u64>,
}

/// What the caller says: synthesized text or a recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Speech {
    /// Spoken by Piper.
    Text(String),
    /// A recording.
    Wav(WavClip),
}

/// Something said while the agent's reply plays: a backchannel ("uh-huh")
/// or, with `barge_in`, an interruption.
#[derive(Debug, Clone, PartialEq)]
pub struct Interjection {
    /// When, ms after the reply's first audio.
    pub at_ms: u64,
    /// What.
    pub speech: Speech,
    /// True: the caller interrupts; the agent must stop and answer this.
    pub barge_in: bool,
    /// Barge-in only: the agent's audio must stop within this many ms of
    /// the interruption's start.
    pub max_stop_ms: Option<u64>,
    /// Backchannel only: the agent's audio may pause at most this many ms
    /// around the backchannel (its reply goes on).
    pub max_pause_ms: Option<u64>,
}

/// How the call must end (`end:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// Who ends it.
    pub by: EndBy,
    /// Within this many seconds of the answer (default: `max_duration_s`).
    pub within_s: Option<u64>,
}

/// Who ends the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndBy {
    /// The agent hangs up (SIP BYE received; Media Streams: skald closes
    /// the socket).
    AgentHangup,
    /// The caller hangs up after the last step (the default).
    CallerHangup,
    /// The agent transfers the call (SIP REFER received).
    Transferred,
}

impl EndBy {
    /// The name used in the file and the reports.
    pub fn as_str(self) -> &'static str {
        match self {
            EndBy::AgentHangup => "agent_hangup",
            EndBy::CallerHangup => "caller_hangup",
            EndBy::Transferred => "transferred",
        }
    }
}

/// Whole-call checks (`checks:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checks {
    /// Longest silence allowed (ms) while the caller is owed an answer:
    /// from the end of each caller turn (or barge-in) to the agent's audio.
    pub max_dead_air_ms: Option<u64>,
}

impl Scenario {
    /// Reads, parses and validates a scenario file. Errors: unreadable
    /// file, YAML or rule errors, missing WAV files; all with FILE:LINE.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io { file: path.to_path_buf(), source })?;
        Scenario::parse(&text, path)
    }

    /// Parses and validates scenario text; `path` names the file in errors
    /// and is the base of relative `wav:` paths.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawScenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.location().map(|l| l.line()).unwrap_or(0);
            let mut message = inner.to_string();
            if let Some(at) = message.rfind(" at line ") {
                message.truncate(at);
            }
            // serde_yaml_ng starts the text with the path of the value it was in.
            if let Some((head, rest)) = message.split_once(": ")
                && !head.contains(' ')
                && field.starts_with(head)
            {
                message = rest.to_string();
            }
            let message = if field.is_empty() || field == "." { message } else { format!("{field}: {message}") };
            ScenarioError::Invalid { file: path.to_path_buf(), line, message }
        })?;
        let invalid = |needle: &str, message: String| ScenarioError::Invalid {
            file: path.to_path_buf(),
            line: find_line(text, needle),
            message,
        };
        if raw.steps.is_empty() {
            return Err(invalid("steps", "steps: a scenario needs at least one step".into()));
        }
        if raw.name.trim().is_empty() {
            return Err(invalid("name", "name: must not be empty".into()));
        }
        let max_duration_s = raw.max_duration_s.unwrap_or(DEFAULT_MAX_DURATION_S);
        if max_duration_s == 0 {
            return Err(invalid("max_duration_s", "max_duration_s: must be at least 1".into()));
        }
        if let Some(t) = &raw.target
            && !is_target(t)
        {
            return Err(invalid("target", format!("target: `{t}` is neither a sip: URI nor a ws:// or wss:// URL")));
        }
        let end = raw.end.map(|e| End { by: e.by.into(), within_s: e.within_s }).unwrap_or(End { by: EndBy::CallerHangup, within_s: None });
        if let Some(w) = end.within_s
            && (w == 0 || w > max_duration_s)
        {
            return Err(invalid("within_s", format!("end.within_s: {w} must be between 1 and max_duration_s ({max_duration_s})")));
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut steps = raw.steps;
        for (i, step) in steps.iter_mut().enumerate() {
            if let Step::Silent { ms } = step
                && *ms > max_duration_s * 1000
            {
                return Err(invalid("silent_s", format!("steps[{i}].silent_s: longer than max_duration_s ({max_duration_s})")));
            }
            let Step::Say(say) = step else { continue };
            for clip in say.clips_mut() {
                let named = clip.path.display().to_string();
                if clip.path.is_relative() {
                    clip.path = base.join(&clip.path);
                }
                if !clip.path.is_file() {
                    return Err(invalid(&named, format!("steps[{i}]: wav file {} not found", clip.path.display())));
                }
            }
        }
        let step_lines = step_lines(text, steps.len());
        Ok(Scenario {
            name: raw.name,
            file: path.to_path_buf(),
            target: raw.target,
            max_duration_s,
            think_ms: raw.think_ms.unwrap_or(DEFAULT_THINK_MS),
            reply_gap_ms: raw.reply_gap_ms.unwrap_or(DEFAULT_REPLY_GAP_MS),
            reply_timeout_ms: raw.reply_timeout_ms.unwrap_or(DEFAULT_REPLY_TIMEOUT_MS),
            twilio_parameters: raw.twilio.map(|t| t.parameters).unwrap_or_default(),
            steps,
            step_lines,
            end,
            checks: raw.checks.map(|c| Checks { max_dead_air_ms: c.max_dead_air_ms }).unwrap_or_default(),
        })
    }

    /// The line of `needle`'s first occurrence in the file (for errors
    /// found after parsing, e.g. a WAV clip past the end of its file).
    pub fn line_of(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.file).map(|t| find_line(&t, needle)).unwrap_or(0)
    }

    /// Every text the caller speaks (to synthesize before the call).
    pub fn texts(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for step in &self.steps {
            let Step::Say(say) = step else { continue };
            for p in &say.parts {
                if let Part::Text(t) = p {
                    out.push(t.as_str());
                }
            }
            for i in &say.during_reply {
                if let Speech::Text(t) = &i.speech {
                    out.push(t.as_str());
                }
            }
        }
        out
    }
}

impl Step {
    /// `expect`, `say` or `silent`.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Expect(_) => "expect",
            Step::Say(_) => "say",
            Step::Silent { .. } => "silent",
        }
    }
}

impl Say {
    /// Every WAV clip of the turn and of its interjections.
    fn clips_mut(&mut self) -> impl Iterator<Item = &mut WavClip> {
        let parts = self.parts.iter_mut().filter_map(|p| match p {
            Part::Wav(c) => Some(c),
            _ => None,
        });
        let during = self.during_reply.iter_mut().filter_map(|i| match &mut i.speech {
            Speech::Wav(c) => Some(c),
            Speech::Text(_) => None,
        });
        parts.chain(during)
    }

    /// The turn as words, for reports: texts quoted, pauses and clips named.
    pub fn describe(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => format!("\"{t}\""),
                Part::Pause(ms) => format!("<{ms} ms>"),
                Part::Wav(c) => format!("[{}]", c.describe()),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl WavClip {
    /// `file.wav` or `file.wav 200-1800 ms`.
    pub fn describe(&self) -> String {
        let name = self.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        match (self.from_ms, self.to_ms) {
            (None, None) => name,
            (f, t) => format!(
                "{name} {}-{} ms",
                f.unwrap_or(0),
                t.map(|t| t.to_string()).unwrap_or_else(|| "end".into())
            ),
        }
    }
}

impl Speech {
    /// The speech as words, for reports.
    pub fn describe(&self) -> String {
        match self {
            Speech::Text(t) => format!("\"{t}\""),
            Speech::Wav(c) => format!("[{}]", c.describe()),
        }
    }
}

/// True for a `sip:`/`sips:` URI with a host or a `ws://`/`wss://` URL.
pub fn is_target(t: &str) -> bool {
    let lower = t.to_ascii_lowercase();
    (lower.starts_with("sip:") || lower.starts_with("sips:")) && t.len() > 4
        || lower.starts_with("ws://") && t.len() > 5
        || lower.starts_with("wss://") && t.len() > 6
}

/// The line of each item of the top-level `steps:` block sequence (0 for
/// each when the steps are not a block sequence).
fn step_lines(text: &str, n: usize) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim_end() == "steps:" || l.starts_with("steps:") && l.trim_end().ends_with(':')) else {
        return vec![0; n];
    };
    let mut found = Vec::new();
    let mut indent = None;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let ind = l.len() - trimmed.len();
        if ind == 0 && !trimmed.starts_with('-') {
            break;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            match indent {
                None => {
                    indent = Some(ind);
                    found.push(i + 1);
                }
                Some(x) if x == ind => found.push(i + 1),
                Some(x) if ind < x => break,
                _ => {}
            }
        }
    }
    found.resize(n, 0);
    found
}

/// The file as written (before the rules).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    max_duration_s: Option<u64>,
    #[serde(default)]
    think_ms: Option<u64>,
    #[serde(default)]
    reply_gap_ms: Option<u64>,
    #[serde(default)]
    reply_timeout_ms: Option<u64>,
    #[serde(default)]
    twilio: Option<RawTwilio>,
    steps: Vec<Step>,
    #[serde(default)]
    end: Option<RawEnd>,
    #[serde(default)]
    checks: Option<RawChecks>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTwilio {
    #[serde(default)]
    parameters: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnd {
    by: EndByName,
    #[serde(default)]
    within_s: Option<u64>,
}

/// `end.by` as written.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum EndByName {
    AgentHangup,
    CallerHangup,
    Transferred,
}

impl From<EndByName> for EndBy {
    fn from(n: EndByName) -> EndBy {
        match n {
            EndByName::AgentHangup => EndBy::AgentHangup,
            EndByName::CallerHangup => EndBy::CallerHangup,
            EndByName::Transferred => EndBy::Transferred,
        }
    }
}

impl<'de> Deserialize<'de> for EndBy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EndBy, D::Error> {
        EndByName::deserialize(d).map(EndBy::from)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChecks {
    #[serde(default)]
    max_dead_air_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    expect: Option<RawExpect>,
    #[serde(default)]
    say: Option<Parts>,
    #[serde(default)]
    during_reply: Option<Vec<Interjection>>,
    #[serde(default)]
    silent_s: Option<f64>,
}

impl TryFrom<RawStep> for Step {
    type Error = String;
    fn try_from(r: RawStep) -> Result<Step, String> {
        let given = [r.expect.is_some(), r.say.is_some(), r.silent_s.is_some()].iter().filter(|b| **b).count();
        if given != 1 {
            return Err("a step is exactly one of `expect`, `say`, `silent_s`".into());
        }
        if r.during_reply.is_some() && r.say.is_none() {
            return Err("`during_reply` goes with `say` (things said during the reply to that turn)".into());
        }
        if let Some(s) = r.silent_s {
            if !(s.is_finite() && s > 0.0) {
                return Err(format!("silent_s: {s} must be a positive number of seconds"));
            }
            return Ok(Step::Silent { ms: (s * 1000.0).round() as u64 });
        }
        if let Some(Parts(parts)) = r.say {
            if !parts.iter().any(|p| matches!(p, Part::Text(_) | Part::Wav(_))) {
                return Err("say: a turn needs at least one `text` or `wav` part".into());
            }
            return Ok(Step::Say(Say { parts, during_reply: r.during_reply.unwrap_or_default() }));
        }
        let e = r.expect.unwrap_or_default();
        let regex = match e.regex {
            Some(src) => Some(Regex::new(&src).map_err(|err| format!("expect.regex: {err}"))?),
            None => None,
        };
        if e.words.iter().any(|w| normalize_words(w).is_empty()) {
            return Err("expect.words: every entry needs a letter or digit".into());
        }
        if e.replies == Some(0) {
            return Err("expect.replies: at least 1 (a silence is `silent_s`)".into());
        }
        Ok(Step::Expect(Expect {
            words: e.words,
            regex,
            max_latency_ms: e.max_latency_ms,
            no_talk_over: e.no_talk_over.unwrap_or(false),
            replies: e.replies,
        }))
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Step, D::Error> {
        checked_map::<D, RawStep, Step>(d)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default)]
    words: Vec<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    max_latency_ms: Option<u64>,
    #[serde(default)]
    no_talk_over: Option<bool>,
    #[serde(default)]
    replies: Option<usize>,
}

/// A turn's parts: a list of parts, or one string (a single `text` part).
struct Parts(Vec<Part>);

impl<'de> Deserialize<'de> for Parts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Parts, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Parts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a text, or a list of parts ({text}, {pause_ms}, {wav})")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Parts, E> {
                if v.trim().is_empty() {
                    return Err(E::custom("say: empty text"));
                }
                Ok(Parts(vec![Part::Text(v.to_string())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parts, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element::<Part>()? {
                    parts.push(p);
                }
                Ok(Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    pause_ms: Option<u64>,
    #[serde(default)]
    wav: Option<PathBuf>,
    #[serde(default)]
    from_ms: Option<u64>,
    #[serde(default)]
    to_ms: Option<u64>,
}

impl TryFrom<RawPart> for Part {
    type Error = String;
    fn try_from(r: RawPart) -> Result<Part, String> {
        let given = [r.text.is_some(), r.pause_ms.is_some(), r.wav.is_some()].iter().filter(|b| **b).count();
        if given != 1 {
            return Err("a part is exactly one of `text`, `pause_ms`, `wav`".into());
        }
        if r.wav.is_none() && (r.from_ms.is_some() || r.to_ms.is_some()) {
            return Err("`from_ms`/`to_ms` clip a `wav` part only".into());
        }
        if let Some(t) = r.text {
            if normalize_words(&t).is_empty() {
                return Err("text: nothing to say".into());
            }
            return Ok(Part::Text(t));
        }
        if let Some(ms) = r.pause_ms {
            if ms == 0 || ms > 60_000 {
                return Err(format!("pause_ms: {ms} must be between 1 and 60000"));
            }
            return Ok(Part::Pause(ms));
        }
        let clip = wav_clip(r.wav.unwrap_or_default(), r.from_ms, r.to_ms)?;
        Ok(Part::Wav(clip))
    }
}

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Part, D::Error> {
        checked_map::<D, RawPart, Part>(d)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterjection {
    at_ms: Option<u64>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    wav: Option<PathBuf>,
    #[serde(default)]
    from_ms: Option<u64>,
    #[serde(default)]
    to_ms: Option<u64>,
    #[serde(default)]
    barge_in: bool,
    #[serde(default)]
    max_stop_ms: Option<u64>,
    #[serde(default)]
    max_pause_ms: Option<u64>,
}

impl TryFrom<RawInterjection> for Interjection {
    type Error = String;
    fn try_from(r: RawInterjection) -> Result<Interjection, String> {
        let Some(at_ms) = r.at_ms else {
            return Err("during_reply: each item needs `at_ms` (ms into the reply)".into());
        };
        let speech = match (r.text, r.wav) {
            (Some(t), None) if !normalize_words(&t).is_empty() => {
                if r.from_ms.is_some() || r.to_ms.is_some() {
                    return Err("`from_ms`/`to_ms` clip a `wav` only".into());
                }
                Speech::Text(t)
            }
            (None, Some(w)) => Speech::Wav(wav_clip(w, r.from_ms, r.to_ms)?),
            _ => return Err("during_reply: each item says exactly one `text` or `wav`".into()),
        };
        if r.max_stop_ms.is_some() && !r.barge_in {
            return Err("max_stop_ms goes with `barge_in: true` (how fast the agent must stop)".into());
        }
        if r.max_pause_ms.is_some() && r.barge_in {
            return Err("max_pause_ms goes with a backchannel (`barge_in: false`)".into());
        }
        Ok(Interjection { at_ms, speech, barge_in: r.barge_in, max_stop_ms: r.max_stop_ms, max_pause_ms: r.max_pause_ms })
    }
}

impl<'de> Deserialize<'de> for Interjection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Interjection, D::Error> {
        checked_map::<D, RawInterjection, Interjection>(d)
    }
}

/// A WAV clip with its range checked.
fn wav_clip(path: PathBuf, from_ms: Option<u64>, to_ms: Option<u64>) -> Result<WavClip, String> {
    if path.as_os_str().is_empty() {
        return Err("wav: empty path".into());
    }
    if let (Some(f), Some(t)) = (from_ms, to_ms)
        && t <= f
    {
        return Err(format!("to_ms ({t}) must be after from_ms ({f})"));
    }
    Ok(WavClip { path, from_ms, to_ms })
}

/// Lowercase words without punctuation ("I'd" → "id", "front-desk." →
/// "front desk"): how replies and expected words are compared.
pub fn normalize_words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '’')
        .map(|w| w.replace(['\'', '’'], ""))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Deserializes a mapping as `R`, then converts it to `T`. The conversion
/// runs inside the mapping's visitor, so `serde_yaml_ng` marks its error
/// with the mapping's line (a `try_from` attribute would mark the parent).
fn checked_map<'de, D, R, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    R: Deserialize<'de>,
    T: TryFrom<R, Error = String>,
{
    struct V<R, T>(PhantomData<(R, T)>);
    impl<'de, R: Deserialize<'de>, T: TryFrom<R, Error = String>> Visitor<'de> for V<R, T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let raw = R::deserialize(de::value::MapAccessDeserializer::new(map))?;
            T::try_from(raw).map_err(de::Error::custom)
        }
    }
    d.deserialize_map(V::<R, T>(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"name: booking-with-pauses
target: sip:+15550123@127.0.0.1:5060
max_duration_s: 90
steps:
  - expect: {words: [smile], regex: "(?i)help", max_latency_ms: 1500}
  - say:
      - text: "I would like to book"
      - pause_ms: 1000
      - wav: speech.wav
        from_ms: 200
        to_ms: 1800
      - pause_ms: 800
      - text: "a cleaning please."
    during_reply:
      - {at_ms: 800, text: "uh-huh", max_pause_ms: 400}
      - {at_ms: 2500, wav: speech.wav, barge_in: true, max_stop_ms: 500}
  - expect: {words: [day, "come in"], max_latency_ms: 1500, no_talk_over: true, replies: 1}
  - silent_s: 12
  - say: Next Tuesday.
  - expect: {regex: "(?i)still there"}
end: {by: agent_hangup, within_s: 60}
checks: {max_dead_air_ms: 2000}
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let dir = std::env::temp_dir().join(format!("skald-scenario-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("speech.wav"), b"RIFF").unwrap();
        Scenario::parse(text, &dir.join("s.yaml"))
    }

    fn error(text: &str) -> (usize, String) {
        match parse(text) {
            Err(ScenarioError::Invalid { line, message, .. }) => (line, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_scenario_parses_with_every_field() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.name, "booking-with-pauses");
        assert_eq!(s.target.as_deref(), Some("sip:+15550123@127.0.0.1:5060"));
        assert_eq!(s.max_duration_s, 90);
        assert_eq!(s.think_ms, DEFAULT_THINK_MS);
        assert_eq!(s.steps.len(), 6);
        assert_eq!(s.step_lines, vec![5, 6, 17, 18, 19, 20]);
        let Step::Expect(e) = &s.steps[0] else { panic!() };
        assert_eq!(e.words, ["smile"]);
        assert!(e.regex.as_ref().unwrap().is_match("How can I HELP"));
        assert_eq!(e.max_latency_ms, Some(1500));
        assert!(!e.no_talk_over);
        let Step::Say(say) = &s.steps[1] else { panic!() };
        assert_eq!(say.parts.len(), 5);
        assert_eq!(say.parts[1], Part::Pause(1000));
        let Part::Wav(clip) = &say.parts[2] else { panic!() };
        assert!(clip.path.is_absolute() && clip.path.ends_with("speech.wav"), "resolved: {clip:?}");
        assert_eq!((clip.from_ms, clip.to_ms), (Some(200), Some(1800)));
        assert_eq!(say.during_reply.len(), 2);
        assert_eq!(say.during_reply[0].speech, Speech::Text("uh-huh".into()));
        assert!(!say.during_reply[0].barge_in);
        assert_eq!(say.during_reply[0].max_pause_ms, Some(400));
        assert!(say.during_reply[1].barge_in);
        assert_eq!(say.during_reply[1].max_stop_ms, Some(500));
        let Step::Expect(e) = &s.steps[2] else { panic!() };
        assert!(e.no_talk_over);
        assert_eq!(e.replies, Some(1));
        assert!(matches!(s.steps[3], Step::Silent { ms: 12_000 }));
        let Step::Say(say) = &s.steps[4] else { panic!() };
        assert_eq!(say.parts, vec![Part::Text("Next Tuesday.".into())]);
        assert_eq!(s.end, End { by: EndBy::AgentHangup, within_s: Some(60) });
        assert_eq!(s.checks.max_dead_air_ms, Some(2000));
        assert_eq!(s.texts(), vec!["I would like to book", "a cleaning please.", "uh-huh", "Next Tuesday."]);
    }

    #[test]
    fn defaults_apply_when_keys_are_left_out() {
        let s = parse("name: n\nsteps:\n  - expect: {}\n").unwrap();
        assert_eq!(s.max_duration_s, DEFAULT_MAX_DURATION_S);
        assert_eq!(s.reply_gap_ms, DEFAULT_REPLY_GAP_MS);
        assert_eq!(s.end, End { by: EndBy::CallerHangup, within_s: None });
        assert_eq!(s.checks, Checks::default());
        assert!(s.target.is_none());
    }

    #[test]
    fn an_unknown_key_is_an_error_at_its_line() {
        let (line, msg) = error("name: n\nsteps:\n  - expect: {words: [hi]}\n  - say: hello\n    during_replay: []\n");
        assert_eq!(line, 5, "{msg}");
        assert!(msg.contains("unknown field `during_replay`"), "{msg}");
        assert!(msg.starts_with("steps[1]"), "{msg}");
        let (line, msg) = error("name: n\nmax_duration: 3\nsteps:\n  - expect: {}\n");
        assert_eq!(line, 2);
        assert!(msg.contains("unknown field `max_duration`"), "{msg}");
        let (line, msg) = error("name: n\nsteps:\n  - say:\n      - text: hi\n        speed: 2\n");
        assert_eq!(line, 5);
        assert!(msg.contains("unknown field `speed`"), "{msg}");
    }

    #[test]
    fn broken_rules_name_the_line_of_their_mapping() {
        let (line, msg) = error("name: n\nsteps:\n  - expect: {}\n  - expect: {}\n    silent_s: 2\n");
        assert_eq!(line, 4, "{msg}");
        assert!(msg.contains("exactly one of `expect`, `say`, `silent_s`"), "{msg}");
        let (line, msg) = error("name: n\nsteps:\n  - say:\n      - text: hi\n      - {pause_ms: 10, text: x}\n");
        assert_eq!(line, 5, "{msg}");
        assert!(msg.contains("exactly one of `text`, `pause_ms`, `wav`"), "{msg}");
        let (line, msg) = error("name: n\nsteps:\n  - expect: {regex: \"(unclosed\"}\n");
        assert_eq!(line, 3, "{msg}");
        assert!(msg.contains("regex"), "{msg}");
        let (line, msg) = error("name: n\nsteps:\n  - say: hi\n    during_reply:\n      - {text: uh-huh}\n");
        assert_eq!(line, 5, "{msg}");
        assert!(msg.contains("at_ms"), "{msg}");
        let (_, msg) = error("name: n\nsteps:\n  - expect: {}\n    during_reply: []\n");
        assert!(msg.contains("`during_reply` goes with `say`"), "{msg}");
        let (line, msg) = error("name: n\nsteps:\n  - silent_s: -1\n");
        assert_eq!(line, 3, "{msg}");
        let (line, msg) = error("name: n\nsteps:\n  - say: [{pause_ms: 100}]\n");
        assert_eq!(line, 3, "{msg}");
        assert!(msg.contains("at least one `text` or `wav`"), "{msg}");
    }

    #[test]
    fn wrong_types_and_values_are_errors_with_lines() {
        let (line, msg) = error("name: n\nsteps:\n  - expect: {max_latency_ms: soon}\n");
        assert_eq!(line, 3, "{msg}");
        assert!(msg.contains("max_latency_ms"), "{msg}");
        let (line, msg) = error("name: n\nsteps:\n  - expect: {}\nend: {by: agent}\n");
        assert_eq!(line, 4, "{msg}");
        assert!(msg.contains("agent_hangup"), "{msg}");
        let (line, msg) = error("name: n\ntarget: http://x\nsteps:\n  - expect: {}\n");
        assert_eq!(line, 2, "{msg}");
        let (line, msg) = error("name: n\nsteps: []\n");
        assert_eq!(line, 2, "{msg}");
        let (_, msg) = error("steps:\n  - expect: {}\n");
        assert!(msg.contains("name"), "{msg}");
        let (line, msg) = error("name: n\nsteps:\n  - say:\n      - wav: missing.wav\n");
        assert_eq!(line, 4, "{msg}");
        assert!(msg.contains("not found"), "{msg}");
        let (line, msg) = error("name: n\nsteps:\n  - say:\n      - {wav: speech.wav, from_ms: 900, to_ms: 100}\n");
        assert_eq!(line, 4, "{msg}");
        let (line, msg) = error("name: n\nsteps:\n  - expect: {}\n\tbad: tab\n");
        assert!(line > 0, "{msg}");
    }

    #[test]
    fn words_are_compared_without_case_or_punctuation() {
        assert_eq!(normalize_words("I'd like a Front-desk, please."), ["id", "like", "a", "front", "desk", "please"]);
        assert!(normalize_words("?!").is_empty());
    }
}
