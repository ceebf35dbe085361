//! Scoring a simulated call, and its three outputs: the human report
//! (stdout), JSON (every measurement) and JUnit XML (one test case per
//! step, plus the call's end and the whole-call checks).
//!
//! [`score`] turns the scenario, the [`CallLog`] and the transcript of each
//! reply into a [`Report`]; it is pure (the transcripts come in as text),
//! so it is tested without models. A step passes when all its checks do;
//! the score counts the steps, the end and each whole-call check.
//!
//! Measurements (ms since the answer, heard audio through the caller's
//! jitter buffer as a phone hears it):
//! - *latency*: end of the caller's last audio (turn or barge-in) → first
//!   audio of the answer; for the greeting, answer → first audio;
//! - *talk-over*: agent audio heard while the caller's turn plays (from
//!   its first to its last sample, pauses included);
//! - *replies*: separate replies from the start of the caller's audio to
//!   the answer;
//! - *stop* (barge-in): the caller's interruption starts → the agent's
//!   audio stops (the start of its first [`STOP_QUIET_MS`] of quiet);
//! - *pause* (backchannel): the longest quiet in the agent's audio that
//!   starts while the backchannel plays (or [`PAUSE_SLACK_MS`] after),
//!   until its audio resumes;
//! - *dead air*: end of a caller turn or barge-in → the agent's next
//!   audio (or the caller's next audio, or the end of the call).

use super::caller::{CallLog, CallerAudioKind, EndCause, HeardFrame, UtteranceKind};
use super::scenario::{EndBy, Expect, Scenario, Speech, Step, normalize_words};
use serde::Serialize;

/// Quiet that counts as the agent having stopped after a barge-in, ms.
pub const STOP_QUIET_MS: u64 = 300;
/// A backchannel's pause may start this long after the backchannel ends, ms.
pub const PAUSE_SLACK_MS: u64 = 300;

/// Errors writing the outputs.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// JSON could not be written.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// XML could not be written.
    #[error("JUnit XML: {0}")]
    Xml(String),
}

/// The scored call.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's `name`.
    pub scenario: String,
    /// The scenario file.
    pub file: String,
    /// What was called.
    pub target: String,
    /// `sip` or `twilio`.
    pub transport: String,
    /// When the call was placed (RFC 3339, UTC).
    pub started_at: String,
    /// True when every check passed.
    pub passed: bool,
    /// Items passed out of items scored (steps, the end, whole-call checks).
    pub score: Score,
    /// One per step.
    pub steps: Vec<StepReport>,
    /// How the call ended, against `end:`.
    pub end: ItemReport,
    /// The whole-call checks (`checks:`).
    pub checks: Vec<ItemReport>,
    /// Every reply heard, with its transcript.
    pub replies: Vec<ReplyReport>,
    /// Everything the caller said (ms since the answer).
    pub caller_audio: Vec<super::caller::CallerAudio>,
    /// Where the time went.
    pub timings: Timings,
}

/// Items passed of items scored.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Score {
    /// Passed.
    pub passed: usize,
    /// Scored.
    pub total: usize,
}

/// Wall-clock time of the simulator's phases, ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    /// Synthesizing and reading the caller's audio.
    pub render_ms: u64,
    /// The call, from dialing to its end.
    pub call_ms: u64,
    /// Transcribing the replies.
    pub transcribe_ms: u64,
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// 1-based step number.
    pub step: usize,
    /// Line in the scenario file (0: unknown).
    pub line: usize,
    /// `expect`, `say` or `silent`.
    pub kind: &'static str,
    /// What the step is, in words.
    pub description: String,
    /// When it began and ended, ms since the answer (none: not reached).
    pub started_ms: Option<u64>,
    /// End, ms.
    pub ended_ms: Option<u64>,
    /// All checks passed.
    pub passed: bool,
    /// `expect`: the transcript of the replies it took.
    pub heard: Option<String>,
    /// `expect`: latency of the answer, ms; negative when the agent
    /// started before the caller finished.
    pub latency_ms: Option<i64>,
    /// `expect`: indices of the replies it took (see [`Report::replies`]).
    pub replies: Vec<usize>,
    /// Each check.
    pub checks: Vec<Check>,
}

/// One check of a step.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    /// What is checked (`reply`, `words`, `regex`, `max_latency_ms`, …).
    pub name: String,
    /// Passed.
    pub passed: bool,
    /// The measurement or finding, in words.
    pub detail: String,
}

/// The end or a whole-call check.
#[derive(Debug, Clone, Serialize)]
pub struct ItemReport {
    /// `end` or the check's key.
    pub name: String,
    /// What was required.
    pub expected: String,
    /// Passed.
    pub passed: bool,
    /// What was measured.
    pub detail: String,
    /// The measurement (ms), when there is one.
    pub value_ms: Option<u64>,
}

/// One reply as heard.
#[derive(Debug, Clone, Serialize)]
pub struct ReplyReport {
    /// Index (steps refer to it).
    pub index: usize,
    /// First audio, ms since the answer.
    pub start_ms: u64,
    /// Last audio, ms.
    pub end_ms: u64,
    /// Its transcript (local STT).
    pub text: String,
    /// Cut by a barge-in.
    pub interrupted: bool,
    /// Still playing when the call ended.
    pub open: bool,
}

/// Facts about the run that are not in the log.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// What was called.
    pub target: String,
    /// `sip` or `twilio`.
    pub transport: String,
    /// When (RFC 3339).
    pub started_at: String,
    /// Where the time went.
    pub timings: Timings,
}

/// Scores the call. `transcripts[i]` is the transcript of
/// `log.replies[i]` (missing ones count as empty).
pub fn score(scenario: &Scenario, log: &CallLog, transcripts: &[String], info: RunInfo) -> Report {
    let text_of = |i: usize| transcripts.get(i).cloned().unwrap_or_default();
    let mut steps = Vec::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        let slog = log.steps.get(i).cloned().unwrap_or_default();
        let mut r = StepReport {
            step: i + 1,
            line: scenario.step_lines.get(i).copied().unwrap_or(0),
            kind: step.kind(),
            description: describe(step),
            started_ms: slog.started_ms,
            ended_ms: slog.ended_ms,
            passed: true,
            heard: None,
            latency_ms: None,
            replies: Vec::new(),
            checks: Vec::new(),
        };
        match step {
            Step::Expect(e) => score_expect(e, &slog, log, &text_of, &mut r),
            Step::Say(say) => {
                let said = slog.turn.is_some() && !slog.cut;
                let detail = match (slog.started_ms, slog.turn, slog.cut) {
                    (None, _, _) => "not reached: the call ended first".to_string(),
                    (Some(_), None, _) => "not said: the call ended first".to_string(),
                    (Some(_), Some(t), cut) => {
                        let a = &log.caller_audio[t];
                        let how = if cut { "cut off by the end of the call" } else { "said" };
                        format!("{how}, {} to {}", secs(a.start_ms), secs(a.end_ms))
                    }
                };
                r.checks.push(Check { name: "said".into(), passed: said, detail });
                for (item, spec) in say.during_reply.iter().enumerate() {
                    score_interjection(i, item, spec, log, &mut r);
                }
            }
            Step::Silent { .. } => {
                let detail = match slog.started_ms {
                    None => "not reached: the call ended first".into(),
                    Some(s) => format!("silent from {} to {}", secs(s), slog.ended_ms.map(secs).unwrap_or_else(|| "the end".into())),
                };
                r.checks.push(Check { name: "silent".into(), passed: slog.started_ms.is_some(), detail });
            }
        }
        r.passed = r.checks.iter().all(|c| c.passed);
        steps.push(r);
    }
    let end = score_end(scenario, log);
    let mut checks = Vec::new();
    if let Some(max) = scenario.checks.max_dead_air_ms {
        checks.push(score_dead_air(max, log));
    }
    let passed_items = steps.iter().filter(|s| s.passed).count()
        + usize::from(end.passed)
        + checks.iter().filter(|c| c.passed).count();
    let total = steps.len() + 1 + checks.len();
    let replies = log
        .replies
        .iter()
        .enumerate()
        .map(|(i, r)| ReplyReport {
            index: i,
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            text: text_of(i),
            interrupted: r.interrupted,
            open: r.open,
        })
        .collect();
    Report {
        scenario: scenario.name.clone(),
        file: scenario.file.display().to_string(),
        target: info.target,
        transport: info.transport,
        started_at: info.started_at,
        passed: passed_items == total,
        score: Score { passed: passed_items, total },
        steps,
        end,
        checks,
        replies,
        caller_audio: log.caller_audio.clone(),
        timings: info.timings,
    }
}

/// The checks of one `expect`.
fn score_expect(e: &Expect, slog: &super::caller::StepLog, log: &CallLog, text_of: &dyn Fn(usize) -> String, r: &mut StepReport) {
    let Some(wait) = &slog.wait else {
        r.checks.push(Check { name: "reply".into(), passed: false, detail: "not reached: the call ended first".into() });
        return;
    };
    r.replies = wait.window.iter().chain(&wait.continued).copied().collect();
    let heard = r.replies.iter().map(|&i| text_of(i)).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ");
    r.heard = Some(heard.clone());
    let answer = wait.answer.and_then(|a| log.replies.get(a).map(|r| (a, r)));
    let reply_detail = match (answer, wait.timed_out, wait.call_ended) {
        (Some((a, rep)), _, _) => format!("reply {} at {}", a + 1, secs(rep.start_ms)),
        (None, _, true) => "no reply: the call ended first".into(),
        (None, true, _) => "no reply in time (reply_timeout_ms)".into(),
        (None, false, false) => "no reply".into(),
    };
    r.checks.push(Check { name: "reply".into(), passed: answer.is_some(), detail: reply_detail });
    // Latency is owed to caller audio (or the answer of the call); a reply
    // taken after a silence has none.
    if let (Some((_, rep)), Some(u)) = (answer, wait.utterance) {
        r.latency_ms = Some(rep.start_ms as i64 - u.end_ms as i64);
    }
    if !e.words.is_empty() {
        let have = format!(" {} ", normalize_words(&heard).join(" "));
        let missing: Vec<&str> = e
            .words
            .iter()
            .filter(|w| !have.contains(&format!(" {} ", normalize_words(w).join(" "))))
            .map(String::as_str)
            .collect();
        let detail = if missing.is_empty() {
            format!("all of {:?}", e.words)
        } else {
            format!("missing {missing:?}")
        };
        r.checks.push(Check { name: "words".into(), passed: missing.is_empty(), detail });
    }
    if let Some(re) = &e.regex {
        let ok = re.is_match(&heard);
        let detail = format!("/{}/ {}", re.as_str(), if ok { "matches" } else { "does not match" });
        r.checks.push(Check { name: "regex".into(), passed: ok, detail });
    }
    if let Some(max) = e.max_latency_ms {
        let (ok, detail) = match r.latency_ms {
            Some(l) if l < 0 => (true, format!("{l} ms: the agent started before the caller finished (max {max} ms)")),
            Some(l) => (l <= max as i64, format!("{l} ms (max {max} ms)")),
            None => (false, format!("no reply (max {max} ms)")),
        };
        r.checks.push(Check { name: "max_latency_ms".into(), passed: ok, detail });
    }
    if e.no_talk_over {
        let (ok, detail) = talk_over(wait.utterance, log);
        r.checks.push(Check { name: "no_talk_over".into(), passed: ok, detail });
    }
    if let Some(n) = e.replies {
        let starts: Vec<String> = wait
            .window
            .iter()
            .filter_map(|&i| log.replies.get(i))
            .map(|rep| {
                let during = wait.utterance.is_some_and(|u| u.kind != UtteranceKind::CallStart && rep.start_ms < u.end_ms);
                format!("{}{}", secs(rep.start_ms), if during { " (while the caller was speaking)" } else { "" })
            })
            .collect();
        let count = wait.window.len();
        let detail = format!("{count} (expected {n}){}", if starts.is_empty() { String::new() } else { format!(": {}", starts.join(", ")) });
        r.checks.push(Check { name: "replies".into(), passed: count == n, detail });
    }
}

/// Agent audio heard during the caller's turn that `u` belongs to.
fn talk_over(u: Option<super::caller::Utterance>, log: &CallLog) -> (bool, String) {
    let Some(u) = u.filter(|u| u.kind != UtteranceKind::CallStart) else {
        return (true, "no caller turn before this reply".into());
    };
    let Some(turn) = log.caller_audio.iter().find(|a| a.step == u.step && a.kind == CallerAudioKind::Turn) else {
        return (true, "no caller turn before this reply".into());
    };
    let loud: Vec<&HeardFrame> =
        log.frames.iter().filter(|f| f.loud && f.at_ms >= turn.start_ms && f.at_ms < turn.end_ms).collect();
    match loud.first() {
        None => (true, format!("quiet during the caller's turn ({} to {})", secs(turn.start_ms), secs(turn.end_ms))),
        Some(f) => {
            let ms: u64 = loud.iter().map(|f| (f.len / 16) as u64).sum();
            (
                false,
                format!(
                    "agent audio from {} ({} ms into the caller's turn), {ms} ms of it before the turn ended at {}",
                    secs(f.at_ms),
                    f.at_ms - turn.start_ms,
                    secs(turn.end_ms)
                ),
            )
        }
    }
}

/// A `during_reply` item: said at all, and its stop or pause limit.
fn score_interjection(step: usize, item: usize, spec: &super::scenario::Interjection, log: &CallLog, r: &mut StepReport) {
    let kind = if spec.barge_in { "barge_in" } else { "backchannel" };
    let name = format!("{kind} at {} ms", spec.at_ms);
    let Some(il) = log.interjections.iter().find(|l| l.step == step && l.item == item) else {
        r.checks.push(Check { name, passed: false, detail: "not said: the turn was not reached".into() });
        return;
    };
    let Some(said) = il.said.and_then(|i| log.caller_audio.get(i)) else {
        let why = il.skipped.clone().unwrap_or_else(|| "no reply to time it against".into());
        r.checks.push(Check { name, passed: false, detail: format!("not said: {why}") });
        return;
    };
    r.checks.push(Check {
        name: name.clone(),
        passed: true,
        detail: format!("{} said at {}", describe_speech(&spec.speech), secs(said.start_ms)),
    });
    let end = log.end.as_ref().map(|e| e.at_ms).unwrap_or(u64::MAX);
    if spec.barge_in {
        let stop = stop_after(&log.frames, said.start_ms);
        let detail = match stop {
            Some(ms) => format!("the agent stopped {ms} ms after the interruption began"),
            None => "the agent did not stop".into(),
        };
        let passed = match spec.max_stop_ms {
            Some(max) => stop.is_some_and(|s| s <= max),
            None => true,
        };
        let limit = spec.max_stop_ms.map(|m| format!(" (max {m} ms)")).unwrap_or_default();
        r.checks.push(Check { name: "max_stop_ms".into(), passed, detail: format!("{detail}{limit}") });
    } else {
        let (pause, resumed) = pause_after(&log.frames, said.start_ms, said.end_ms + PAUSE_SLACK_MS, end);
        let detail = if resumed {
            format!("the agent's audio paused {pause} ms at most, then went on")
        } else {
            format!("the agent's audio stopped {pause} ms before the end of what was heard and did not resume")
        };
        let passed = match spec.max_pause_ms {
            Some(max) => resumed && pause <= max,
            None => true,
        };
        let limit = spec.max_pause_ms.map(|m| format!(" (max {m} ms)")).unwrap_or_default();
        r.checks.push(Check { name: "max_pause_ms".into(), passed, detail: format!("{detail}{limit}") });
    }
}

/// Ms from `from_ms` to the start of the first quiet stretch of
/// [`STOP_QUIET_MS`] at or after it (none: the agent never went quiet).
pub fn stop_after(frames: &[HeardFrame], from_ms: u64) -> Option<u64> {
    let after: Vec<&HeardFrame> = frames.iter().filter(|f| f.end_ms() > from_ms).collect();
    let mut quiet_start: Option<u64> = None;
    for f in &after {
        if f.loud {
            quiet_start = None;
            continue;
        }
        let s = *quiet_start.get_or_insert(f.at_ms.max(from_ms));
        if f.end_ms() - s >= STOP_QUIET_MS {
            return Some(s - from_ms);
        }
    }
    None
}

/// The longest quiet in the agent's audio starting in `[from_ms, until_ms]`,
/// measured until its audio resumes; `(ms, resumed)`. When the audio never
/// resumes before `end_ms` (or the last frame), that stretch counts, not
/// resumed. No quiet at all: `(0, true)`.
pub fn pause_after(frames: &[HeardFrame], from_ms: u64, until_ms: u64, end_ms: u64) -> (u64, bool) {
    let mut best = (0u64, true);
    let mut quiet_start: Option<u64> = None;
    for f in frames.iter().filter(|f| f.end_ms() > from_ms && f.at_ms < end_ms) {
        if f.loud {
            if let Some(s) = quiet_start.take()
                && s <= until_ms
            {
                best.0 = best.0.max(f.at_ms - s);
            }
            continue;
        }
        if quiet_start.is_none() {
            quiet_start = Some(f.at_ms.max(from_ms));
        }
    }
    if let Some(s) = quiet_start
        && s <= until_ms
    {
        let last = frames.iter().filter(|f| f.at_ms < end_ms).map(HeardFrame::end_ms).max().unwrap_or(s);
        return (last.saturating_sub(s).max(best.0), false);
    }
    best
}

/// How the call ended, against `end:`.
fn score_end(scenario: &Scenario, log: &CallLog) -> ItemReport {
    let within = scenario.end.within_s.unwrap_or(scenario.max_duration_s) * 1000;
    let by = scenario.end.by;
    let expected = format!("{} within {} s", by.as_str(), within / 1000);
    let Some(end) = &log.end else {
        return ItemReport { name: "end".into(), expected, passed: false, detail: "the call did not end".into(), value_ms: None };
    };
    let caller_reason = log.caller_hangup.as_ref().map(|(_, r)| r.as_str());
    let what = match end.cause {
        EndCause::AgentHangup => format!("the agent hung up at {}", secs(end.at_ms)),
        EndCause::Transferred => match &log.transfer {
            Some((at, to)) => {
                let to = to.split('?').next().unwrap_or(to);
                format!("the agent transferred the call to {to} at {}", secs(*at))
            }
            None => format!("the agent transferred the call at {}", secs(end.at_ms)),
        },
        EndCause::CallerHangup => match caller_reason {
            Some("max-duration") => format!("the caller hung up at max_duration_s ({})", secs(end.at_ms)),
            Some("end-timeout") => format!("the agent had not ended the call by {}: the caller hung up", secs(end.at_ms)),
            _ => format!("the caller hung up after the last step at {}", secs(end.at_ms)),
        },
        EndCause::Other => format!("the call ended at {}: {}", secs(end.at_ms), end.reason),
    };
    let passed = match by {
        EndBy::AgentHangup => end.cause == EndCause::AgentHangup && end.at_ms <= within,
        EndBy::Transferred => end.cause == EndCause::Transferred && end.at_ms <= within,
        EndBy::CallerHangup => end.cause == EndCause::CallerHangup && caller_reason == Some("caller-hangup"),
    };
    ItemReport { name: "end".into(), expected, passed, detail: what, value_ms: Some(end.at_ms) }
}

/// The longest wait for the agent after a caller turn or barge-in.
fn score_dead_air(max: u64, log: &CallLog) -> ItemReport {
    let end = log.end.as_ref().map(|e| e.at_ms).unwrap_or(u64::MAX);
    let mut worst: Option<(u64, String)> = None;
    for (i, a) in log.caller_audio.iter().enumerate() {
        let what = match a.kind {
            CallerAudioKind::Turn => format!("after the turn of step {}", a.step + 1),
            CallerAudioKind::BargeIn { .. } => format!("after the barge-in of step {}", a.step + 1),
            CallerAudioKind::Backchannel { .. } => continue,
        };
        // The caller's own next audio ends the wait too.
        let next_caller = log.caller_audio[i + 1..].iter().map(|n| n.start_ms).filter(|&s| s >= a.end_ms).min().unwrap_or(u64::MAX);
        let agent = log.frames.iter().find(|f| f.loud && f.at_ms >= a.end_ms).map(|f| f.at_ms).unwrap_or(u64::MAX);
        let stop = agent.min(next_caller).min(end);
        if stop == u64::MAX {
            continue;
        }
        let dead = stop - a.end_ms;
        if worst.as_ref().is_none_or(|(w, _)| dead > *w) {
            worst = Some((dead, what));
        }
    }
    let expected = format!("at most {max} ms");
    match worst {
        None => ItemReport {
            name: "max_dead_air_ms".into(),
            expected,
            passed: true,
            detail: "the caller was never owed an answer".into(),
            value_ms: None,
        },
        Some((ms, what)) => ItemReport {
            name: "max_dead_air_ms".into(),
            expected,
            passed: ms <= max,
            detail: format!("longest {ms} ms ({what})"),
            value_ms: Some(ms),
        },
    }
}

/// A step in words.
fn describe(step: &Step) -> String {
    match step {
        Step::Expect(e) => {
            let mut parts = Vec::new();
            if !e.words.is_empty() {
                parts.push(format!("words {:?}", e.words));
            }
            if let Some(re) = &e.regex {
                parts.push(format!("/{}/", re.as_str()));
            }
            if parts.is_empty() { "a reply".into() } else { parts.join(" ") }
        }
        Step::Say(s) => s.describe(),
        Step::Silent { ms } => format!("{:.1} s of silence", *ms as f64 / 1000.0),
    }
}

fn describe_speech(s: &Speech) -> String {
    s.describe()
}

/// `12.34 s`.
fn secs(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

impl Report {
    /// The human report: one block per step, the end, the checks, the score.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "scenario {} ({}) -> {} over {}", self.scenario, self.file, self.target, self.transport);
        for s in &self.steps {
            let verdict = if s.passed { "PASS" } else { "FAIL" };
            let line = if s.line > 0 { format!("line {}", s.line) } else { String::new() };
            let mut head = format!("{verdict}  step {:>2} {:<6} {:<8} {}", s.step, s.kind, line, s.description);
            if let Some(l) = s.latency_ms {
                let _ = write!(head, "  [latency {l} ms]");
            }
            let _ = writeln!(out, "{head}");
            if let Some(h) = &s.heard {
                let _ = writeln!(out, "        heard: \"{h}\"");
            }
            for c in &s.checks {
                let mark = if c.passed { "ok  " } else { "FAIL" };
                let _ = writeln!(out, "        {mark} {}: {}", c.name, c.detail);
            }
        }
        for item in std::iter::once(&self.end).chain(self.checks.iter()) {
            let verdict = if item.passed { "PASS" } else { "FAIL" };
            let _ = writeln!(out, "{verdict}  {} ({}): {}", item.name, item.expected, item.detail);
        }
        let _ = writeln!(
            out,
            "score {}/{}: {}  (render {} ms, call {} ms, transcribe {} ms)",
            self.score.passed,
            self.score.total,
            if self.passed { "PASS" } else { "FAIL" },
            self.timings.render_ms,
            self.timings.call_ms,
            self.timings.transcribe_ms
        );
        out
    }

    /// The report as pretty JSON (every measurement).
    pub fn to_json(&self) -> Result<String, ReportError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// JUnit XML: a suite named after the scenario, one test case per step,
    /// one for the end and one per whole-call check; a failed case carries a
    /// `<failure>` with the failed checks.
    pub fn to_junit(&self) -> Result<String, ReportError> {
        use quick_xml::Writer;
        use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
        let xml = |e: std::io::Error| ReportError::Xml(e.to_string());
        let failures = self.score.total - self.score.passed;
        let total_s = format!("{:.3}", self.timings.call_ms as f64 / 1000.0);
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None))).map_err(xml)?;
        let mut suites = BytesStart::new("testsuites");
        suites.push_attribute(("name", "skald simulate"));
        suites.push_attribute(("tests", self.score.total.to_string().as_str()));
        suites.push_attribute(("failures", failures.to_string().as_str()));
        suites.push_attribute(("time", total_s.as_str()));
        w.write_event(Event::Start(suites)).map_err(xml)?;
        let mut suite = BytesStart::new("testsuite");
        suite.push_attribute(("name", self.scenario.as_str()));
        suite.push_attribute(("tests", self.score.total.to_string().as_str()));
        suite.push_attribute(("failures", failures.to_string().as_str()));
        suite.push_attribute(("errors", "0"));
        suite.push_attribute(("time", total_s.as_str()));
        suite.push_attribute(("timestamp", self.started_at.as_str()));
        w.write_event(Event::Start(suite)).map_err(xml)?;
        let class = format!("skald.simulate.{}", self.scenario);
        let mut case = |name: String, secs_taken: f64, failure: Option<String>, out: Option<String>| -> Result<(), ReportError> {
            let mut tc = BytesStart::new("testcase");
            tc.push_attribute(("name", name.as_str()));
            tc.push_attribute(("classname", class.as_str()));
            tc.push_attribute(("time", format!("{secs_taken:.3}").as_str()));
            w.write_event(Event::Start(tc)).map_err(xml)?;
            if let Some(f) = failure {
                let first = f.lines().next().unwrap_or_default().to_string();
                let mut fe = BytesStart::new("failure");
                fe.push_attribute(("message", first.as_str()));
                fe.push_attribute(("type", "check"));
                w.write_event(Event::Start(fe)).map_err(xml)?;
                w.write_event(Event::Text(BytesText::new(&f))).map_err(xml)?;
                w.write_event(Event::End(BytesEnd::new("failure"))).map_err(xml)?;
            }
            if let Some(o) = out {
                w.write_event(Event::Start(BytesStart::new("system-out"))).map_err(xml)?;
                w.write_event(Event::Text(BytesText::new(&o))).map_err(xml)?;
                w.write_event(Event::End(BytesEnd::new("system-out"))).map_err(xml)?;
            }
            w.write_event(Event::End(BytesEnd::new("testcase"))).map_err(xml)?;
            Ok(())
        };
        for s in &self.steps {
            let line = if s.line > 0 { format!(" (line {})", s.line) } else { String::new() };
            let name = format!("step {}: {} {}{line}", s.step, s.kind, s.description);
            let took = match (s.started_ms, s.ended_ms) {
                (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1000.0,
                _ => 0.0,
            };
            let failure = (!s.passed).then(|| {
                s.checks.iter().filter(|c| !c.passed).map(|c| format!("{}: {}", c.name, c.detail)).collect::<Vec<_>>().join("\n")
            });
            let mut out: Vec<String> = s.checks.iter().filter(|c| c.passed).map(|c| format!("{}: {}", c.name, c.detail)).collect();
            if let Some(h) = &s.heard {
                out.insert(0, format!("heard: {h}"));
            }
            case(name, took, failure, (!out.is_empty()).then(|| out.join("\n")))?;
        }
        for item in std::iter::once(&self.end).chain(self.checks.iter()) {
            let name = format!("{} ({})", item.name, item.expected);
            let failure = (!item.passed).then(|| item.detail.clone());
            case(name, 0.0, failure, item.passed.then(|| item.detail.clone()))?;
        }
        w.write_event(Event::End(BytesEnd::new("testsuite"))).map_err(xml)?;
        w.write_event(Event::End(BytesEnd::new("testsuites"))).map_err(xml)?;
        String::from_utf8(w.into_inner()).map_err(|e| ReportError::Xml(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::caller::{CallerAudio, EndLog, ExpectLog, InterjectionLog, Reply, StepLog, Utterance};
    use std::path::Path;

    const SCENARIO: &str = r#"name: demo
steps:
  - expect: {words: [smile], max_latency_ms: 1500}
  - say: I would like to book a cleaning.
    during_reply:
      - {at_ms: 800, text: uh-huh, max_pause_ms: 700}
  - expect: {words: [day, "come in"], regex: "(?i)what day", max_latency_ms: 1000, no_talk_over: true, replies: 1}
  - silent_s: 5
end: {by: agent_hangup, within_s: 30}
checks: {max_dead_air_ms: 2000}
"#;

    /// 20 ms frames from 0 to `until` ms, loud inside `loud` intervals.
    fn frames(until: u64, loud: &[(u64, u64)]) -> Vec<HeardFrame> {
        (0..until / 20)
            .map(|i| {
                let at = i * 20;
                HeardFrame { at_ms: at, start: i as usize * 320, len: 320, loud: loud.iter().any(|&(a, b)| a <= at && at < b) }
            })
            .collect()
    }

    fn reply(start_ms: u64, end_ms: u64) -> Reply {
        Reply { start_ms, end_ms, start_sample: start_ms as usize * 16, end_sample: end_ms as usize * 16, open: false, interrupted: false }
    }

    /// Greeting 300–2300; turn 3600–5600; talk-over 5000–5200; answer
    /// 6100–9000 with a backchannel at 6900–7100 and a 600 ms pause after
    /// it; the agent hangs up at 20 s.
    fn log() -> CallLog {
        let turn = Utterance { kind: UtteranceKind::Turn, step: 1, start_ms: 3600, end_ms: 5600 };
        CallLog {
            answered: true,
            heard: Vec::new(),
            frames: frames(20_000, &[(300, 2300), (5000, 5200), (6100, 7000), (7600, 9000)]),
            replies: vec![reply(300, 2300), reply(5000, 5200), reply(6100, 9000)],
            caller_audio: vec![
                CallerAudio { step: 1, kind: CallerAudioKind::Turn, start_ms: 3600, end_ms: 5600, speech_ms: vec![(3600, 5600)] },
                CallerAudio { step: 1, kind: CallerAudioKind::Backchannel { item: 0 }, start_ms: 6900, end_ms: 7100, speech_ms: vec![(6900, 7100)] },
            ],
            steps: vec![
                StepLog {
                    started_ms: Some(0),
                    ended_ms: Some(3300),
                    wait: Some(ExpectLog {
                        utterance: Some(Utterance { kind: UtteranceKind::CallStart, step: 0, start_ms: 0, end_ms: 0 }),
                        window: vec![0],
                        answer: Some(0),
                        timed_out: false,
                        call_ended: false,
                        continued: Vec::new(),
                    }),
                    ..StepLog::default()
                },
                StepLog { started_ms: Some(3300), ended_ms: Some(5600), turn: Some(0), ..StepLog::default() },
                StepLog {
                    started_ms: Some(5600),
                    ended_ms: Some(10_000),
                    wait: Some(ExpectLog {
                        utterance: Some(turn),
                        window: vec![1, 2],
                        answer: Some(2),
                        timed_out: false,
                        call_ended: false,
                        continued: Vec::new(),
                    }),
                    ..StepLog::default()
                },
                StepLog { started_ms: Some(10_000), ended_ms: Some(15_000), ..StepLog::default() },
            ],
            interjections: vec![InterjectionLog { step: 1, item: 0, barge_in: false, reply: Some(2), said: Some(1), skipped: None }],
            end: Some(EndLog { cause: EndCause::AgentHangup, at_ms: 20_000, reason: "remote-bye".into() }),
            caller_hangup: None,
            transfer: None,
        }
    }

    fn report() -> Report {
        let s = Scenario::parse(SCENARIO, Path::new("/tmp/demo.yaml")).unwrap();
        let texts = vec![
            "Thanks for calling Bright Smile Dental.".to_string(),
            "Sorry?".to_string(),
            "What day would you like to come in?".to_string(),
        ];
        score(&s, &log(), &texts, RunInfo { target: "sip:x@127.0.0.1".into(), transport: "sip".into(), ..RunInfo::default() })
    }

    fn check<'a>(r: &'a Report, step: usize, name: &str) -> &'a Check {
        r.steps[step].checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no {name} in {:#?}", r.steps[step]))
    }

    #[test]
    fn each_check_is_measured_and_scored() {
        let r = report();
        assert!(r.steps[0].passed, "{:#?}", r.steps[0]);
        assert_eq!(r.steps[0].latency_ms, Some(300));
        assert!(r.steps[1].passed, "{:#?}", r.steps[1]);
        let pause = check(&r, 1, "max_pause_ms");
        assert!(pause.passed && pause.detail.contains("paused 600 ms"), "{pause:?}");
        // The answer's words and latency pass; the talk-over and the two
        // replies fail.
        let s = &r.steps[2];
        assert_eq!(s.latency_ms, Some(500));
        assert_eq!(s.heard.as_deref(), Some("Sorry? What day would you like to come in?"));
        assert!(check(&r, 2, "words").passed);
        assert!(check(&r, 2, "regex").passed);
        assert!(check(&r, 2, "max_latency_ms").passed);
        let talk = check(&r, 2, "no_talk_over");
        assert!(!talk.passed && talk.detail.contains("1400 ms into the caller's turn"), "{talk:?}");
        let replies = check(&r, 2, "replies");
        assert!(!replies.passed && replies.detail.starts_with("2 (expected 1)"), "{replies:?}");
        assert!(replies.detail.contains("while the caller was speaking"), "{replies:?}");
        assert!(!s.passed);
        assert!(r.steps[3].passed);
        assert!(r.end.passed, "{:?}", r.end);
        assert_eq!(r.checks[0].value_ms, Some(500), "{:?}", r.checks[0]);
        assert!(r.checks[0].passed);
        assert!(!r.passed);
        assert_eq!(r.score, Score { passed: 5, total: 6 });
    }

    #[test]
    fn a_backchannel_pause_is_measured_until_the_audio_resumes() {
        let f = frames(10_000, &[(6100, 7000), (7600, 9000)]);
        assert_eq!(pause_after(&f, 6900, 7400, 20_000), (600, true));
        // Stopped for good: the rest of what was heard counts, not resumed.
        let f = frames(10_000, &[(6100, 7000)]);
        assert_eq!(pause_after(&f, 6900, 7400, 20_000), (3000, false));
        assert_eq!(pause_after(&frames(10_000, &[(0, 10_000)]), 100, 400, 20_000), (0, true));
        // A barge-in: the agent stopped 200 ms after it began.
        let f = frames(10_000, &[(1000, 3200)]);
        assert_eq!(stop_after(&f, 3000), Some(200));
        assert_eq!(stop_after(&frames(10_000, &[(0, 10_000)]), 3000), None);
    }

    #[test]
    fn the_end_must_be_the_one_the_scenario_names() {
        let s = Scenario::parse(SCENARIO, Path::new("/tmp/demo.yaml")).unwrap();
        let mut l = log();
        l.end = Some(EndLog { cause: EndCause::CallerHangup, at_ms: 30_000, reason: "end-timeout".into() });
        l.caller_hangup = Some((30_000, "end-timeout".into()));
        let r = score(&s, &l, &[], RunInfo::default());
        assert!(!r.end.passed);
        assert!(r.end.detail.contains("had not ended the call"), "{}", r.end.detail);
        // No transcripts: the words are missing, the step fails.
        assert!(!check(&r, 2, "words").passed);
        assert!(check(&r, 2, "words").detail.contains("missing"));
    }

    #[test]
    fn the_text_report_shows_every_step_and_the_score() {
        let text = report().to_text();
        assert!(text.contains("PASS  step  1 expect"), "{text}");
        assert!(text.contains("FAIL  step  3 expect"), "{text}");
        assert!(text.contains("heard: \"Sorry? What day would you like to come in?\""), "{text}");
        assert!(text.contains("FAIL no_talk_over"), "{text}");
        assert!(text.contains("PASS  end (agent_hangup within 30 s): the agent hung up at 20.00 s"), "{text}");
        assert!(text.contains("score 5/6: FAIL"), "{text}");
    }

    #[test]
    fn json_carries_every_measurement() {
        let v: serde_json::Value = serde_json::from_str(&report().to_json().unwrap()).unwrap();
        assert_eq!(v["scenario"], "demo");
        assert_eq!(v["passed"], false);
        assert_eq!(v["score"]["passed"], 5);
        assert_eq!(v["steps"][2]["latency_ms"], 500);
        assert_eq!(v["steps"][2]["replies"], serde_json::json!([1, 2]));
        assert_eq!(v["replies"][2]["text"], "What day would you like to come in?");
        assert_eq!(v["caller_audio"][1]["kind"], "backchannel");
        assert_eq!(v["end"]["value_ms"], 20_000);
        assert_eq!(v["checks"][0]["name"], "max_dead_air_ms");
    }

    #[test]
    fn junit_has_a_test_case_per_step_with_failures() {
        let xml = report().to_junit().unwrap();
        let mut reader = quick_xml::Reader::from_str(&xml);
        let (mut cases, mut failures, mut suite_failures) = (Vec::new(), 0, String::new());
        loop {
            match reader.read_event().unwrap() {
                quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                    let attr = |k: &str| {
                        e.try_get_attribute(k).unwrap().map(|a| a.unescape_value().unwrap().to_string()).unwrap_or_default()
                    };
                    match e.name().as_ref() {
                        b"testcase" => cases.push(attr("name")),
                        b"failure" => failures += 1,
                        b"testsuite" => suite_failures = attr("failures"),
                        _ => {}
                    }
                }
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(cases.len(), 6, "{cases:?}");
        assert!(cases[2].starts_with("step 3: expect"), "{cases:?}");
        assert_eq!(cases[4], "end (agent_hangup within 30 s)");
        assert_eq!(failures, 1);
        assert_eq!(suite_failures, "1");
        assert!(xml.contains("no_talk_over: agent audio from"), "{xml}");
    }
}
