//! The simulated caller: a sans-IO state machine driven by the agent's
//! audio and by time.
//!
//! ## Run loop
//! The transport (a SIP call's application, or the Media Streams client)
//! feeds [`Caller::handle_answered`] once, then every 20 ms frame of what
//! the caller hears ([`Caller::handle_audio`], mono PCM16 at 16 kHz), calls
//! [`Caller::handle_timeout`] when [`Caller::poll_timeout`] has passed, and
//! after each input drains [`Caller::poll_action`] (audio to play, hang
//! up). When the call is over it calls [`Caller::handle_ended`] and takes
//! the [`CallLog`]. Time is always an argument; nothing here reads the
//! clock, so the tests run whole calls in virtual time.
//!
//! ## Listening
//! A frame whose RMS exceeds [`CallerConfig::loud_rms`] is agent speech.
//! [`MIN_REPLY_FRAMES`] loud frames open a *reply*; it closes after
//! `reply_gap_ms` of quiet (its end is its last loud frame). A barge-in
//! also closes the reply it interrupted when the caller's interruption
//! ends, so the agent's answer to it is a reply of its own.
//!
//! ## Speaking
//! The script runs step by step. `say` waits until the reply the caller is
//! owed (to its previous turn, or the greeting at the start) has ended,
//! pauses `think_ms`, and plays its whole turn (parts and pauses) as one
//! buffer; the `during_reply` items are then armed and played at `at_ms`
//! after the first audio of the reply to that turn, while it lasts.
//! `expect` waits for the reply it checks (see [`ExpectLog`]); `silent_s`
//! waits. After the last step the caller hangs up (`caller_hangup`, after
//! the reply it is owed) or waits for the agent to end the call. The caller
//! hangs up by itself at `max_duration_s`.
//!
//! Everything heard and said is kept in the [`CallLog`], in milliseconds
//! since the answer; the report scores it after the call.

use crate::pipeline::rms;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Samples per millisecond at 16 kHz.
const SAMPLES_PER_MS: usize = 16;
/// Loud frames in a row (with short gaps) that make a reply: a click or a
/// single loud frame does not.
pub const MIN_REPLY_FRAMES: usize = 3;
/// Quiet that drops a reply candidate that has not reached [`MIN_REPLY_FRAMES`].
const CANDIDATE_GAP_MS: u64 = 200;

/// Settings of the caller (from the scenario).
#[derive(Debug, Clone)]
pub struct CallerConfig {
    /// Pause between the end of a reply and the caller's next turn, ms.
    pub think_ms: u64,
    /// Agent silence that ends a reply, ms.
    pub reply_gap_ms: u64,
    /// How long the caller waits for a reply to start, ms.
    pub reply_timeout_ms: u64,
    /// The caller hangs up after this long, ms since the answer.
    pub max_duration_ms: u64,
    /// Who should end the call after the last step.
    pub end: super::scenario::EndBy,
    /// The agent must end the call by this time (ms since the answer);
    /// then the caller hangs up.
    pub end_within_ms: u64,
    /// RMS (PCM16 units) above which a heard frame is speech.
    pub loud_rms: f64,
}

/// One step, with its audio rendered (16 kHz mono PCM16).
#[derive(Debug, Clone)]
pub enum ScriptStep {
    /// Wait for and take a reply.
    Expect,
    /// A caller turn.
    Say(Turn),
    /// Say nothing for this many ms.
    Silent(u64),
}

/// A caller turn's audio.
#[derive(Debug, Clone)]
pub struct Turn {
    /// The whole turn, parts and pauses, 16 kHz mono PCM16.
    pub audio: Arc<Vec<i16>>,
    /// Sample ranges of the speech parts inside `audio` (pauses excluded).
    pub speech: Vec<(usize, usize)>,
    /// Things said during the reply to this turn.
    pub during: Vec<Interjection>,
}

/// Something said while the reply plays.
#[derive(Debug, Clone)]
pub struct Interjection {
    /// When, ms after the reply's first audio.
    pub at_ms: u64,
    /// 16 kHz mono PCM16.
    pub audio: Arc<Vec<i16>>,
    /// True: an interruption (the agent must stop and answer it).
    pub barge_in: bool,
}

/// What the caller asks the transport to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this audio (16 kHz mono PCM16) after what is queued.
    Play(Arc<Vec<i16>>),
    /// End the call with this reason.
    Hangup(String),
}

/// How the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndCause {
    /// The agent hung up (SIP BYE; Media Streams: skald closed the socket).
    AgentHangup,
    /// The caller (this simulator) hung up.
    CallerHangup,
    /// The agent transferred the call (SIP REFER).
    Transferred,
    /// Anything else (media timeout, network error).
    Other,
}

/// Everything that happened on the call, in ms since the answer.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CallLog {
    /// Whether the call was answered.
    pub answered: bool,
    /// What the caller heard: 16 kHz mono PCM16 from the answer on.
    #[serde(skip)]
    pub heard: Vec<i16>,
    /// Each heard frame: when, where in `heard`, loud or not.
    #[serde(skip)]
    pub frames: Vec<HeardFrame>,
    /// The agent's replies, in order.
    pub replies: Vec<Reply>,
    /// Every stretch of audio the caller sent.
    pub caller_audio: Vec<CallerAudio>,
    /// Per step of the script: when it ran and what it took.
    pub steps: Vec<StepLog>,
    /// The `during_reply` items: when said, or why not.
    pub interjections: Vec<InterjectionLog>,
    /// How and when the call ended.
    pub end: Option<EndLog>,
    /// When the caller hung up by itself (ms), and why.
    pub caller_hangup: Option<(u64, String)>,
    /// When the agent asked to transfer the call (ms), and to whom.
    pub transfer: Option<(u64, String)>,
}

/// One heard frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeardFrame {
    /// Arrival, ms since the answer.
    pub at_ms: u64,
    /// First sample in [`CallLog::heard`].
    pub start: usize,
    /// Samples.
    pub len: usize,
    /// Louder than the speech threshold.
    pub loud: bool,
}

impl HeardFrame {
    /// End of the frame, ms since the answer.
    pub fn end_ms(&self) -> u64 {
        self.at_ms + (self.len / SAMPLES_PER_MS) as u64
    }
}

/// One agent reply: speech bounded by `reply_gap_ms` of quiet.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Reply {
    /// First loud frame, ms since the answer.
    pub start_ms: u64,
    /// End of the last loud frame, ms.
    pub end_ms: u64,
    /// First sample in [`CallLog::heard`].
    #[serde(skip)]
    pub start_sample: usize,
    /// End (exclusive) in [`CallLog::heard`].
    #[serde(skip)]
    pub end_sample: usize,
    /// Still going (the call ended while it played).
    pub open: bool,
    /// Cut by the caller's barge-in (closed when the barge-in ended).
    pub interrupted: bool,
}

/// What a stretch of caller audio was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CallerAudioKind {
    /// A `say` turn.
    Turn,
    /// A backchannel during a reply (`during_reply`, no barge-in).
    Backchannel {
        /// Index in the step's `during_reply`.
        item: usize,
    },
    /// An interruption (`during_reply` with `barge_in`).
    BargeIn {
        /// Index in the step's `during_reply`.
        item: usize,
    },
}

/// A stretch of audio the caller sent.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallerAudio {
    /// The `say` step it belongs to.
    pub step: usize,
    /// Turn, backchannel or barge-in.
    #[serde(flatten)]
    pub kind: CallerAudioKind,
    /// Start, ms since the answer.
    pub start_ms: u64,
    /// End, ms.
    pub end_ms: u64,
    /// The speech inside it (pauses excluded), ms intervals.
    pub speech_ms: Vec<(u64, u64)>,
}

/// What the caller was waiting for an answer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UtteranceKind {
    /// The call's start (the greeting is owed).
    CallStart,
    /// A `say` turn.
    Turn,
    /// A barge-in.
    BargeIn,
}

/// The caller audio an answer is owed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Utterance {
    /// Call start, turn or barge-in.
    pub kind: UtteranceKind,
    /// The `say` step (0 for the call start).
    pub step: usize,
    /// Start, ms since the answer.
    pub start_ms: u64,
    /// End, ms (0 for the call start).
    pub end_ms: u64,
}

/// The replies a wait took: by an `expect`, or before a `say`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExpectLog {
    /// The caller audio the answer was owed to (none: the next reply).
    pub utterance: Option<Utterance>,
    /// Indices in [`CallLog::replies`] from the utterance's start to the
    /// answer: more than one means the agent answered more than once.
    pub window: Vec<usize>,
    /// The answer: the first reply playing at or starting after the
    /// utterance's end.
    pub answer: Option<usize>,
    /// No reply started within `reply_timeout_ms`.
    pub timed_out: bool,
    /// The call ended before the answer.
    pub call_ended: bool,
    /// Replies after the answer, before the caller's next turn (the agent
    /// went on after a pause longer than `reply_gap_ms`): part of what the
    /// `expect` checks, not counted as replies.
    pub continued: Vec<usize>,
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StepLog {
    /// When it began, ms (none: never reached).
    pub started_ms: Option<u64>,
    /// When it was done, ms.
    pub ended_ms: Option<u64>,
    /// `expect`: the replies it took; `say`: the wait for the owed reply
    /// before speaking.
    pub wait: Option<ExpectLog>,
    /// `say`: index of its turn in [`CallLog::caller_audio`].
    pub turn: Option<usize>,
    /// `say`: the call ended before the turn was (fully) said.
    pub cut: bool,
}

/// A `during_reply` item.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InterjectionLog {
    /// Its `say` step.
    pub step: usize,
    /// Index in the step's `during_reply`.
    pub item: usize,
    /// Barge-in or backchannel.
    pub barge_in: bool,
    /// The reply it was timed against.
    pub reply: Option<usize>,
    /// When it was said (index in [`CallLog::caller_audio`]).
    pub said: Option<usize>,
    /// Why it was not said.
    pub skipped: Option<String>,
}

/// The end of the call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EndLog {
    /// Who ended it.
    pub cause: EndCause,
    /// When, ms since the answer.
    pub at_ms: u64,
    /// The transport's words (SIP end reason, socket close…).
    pub reason: String,
}

/// Where the script is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Not answered yet.
    Ringing,
    /// A step is running.
    Step(StepState),
    /// After the last step: waiting for the agent to end the call.
    Finishing,
    /// The caller hung up or the call ended.
    Done,
}

/// Within a step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StepState {
    /// Just reached.
    Begin,
    /// Waiting for a reply (since).
    Wait(Instant),
    /// Pausing before speaking (until).
    Think(Instant),
    /// Speaking (until the turn's audio ends).
    Speaking(Instant),
    /// Silent (until).
    Silent(Instant),
}

/// An item of `during_reply` waiting to be said.
#[derive(Debug, Clone)]
struct Armed {
    /// Index in [`CallLog::interjections`].
    log: usize,
    /// Its audio.
    audio: Arc<Vec<i16>>,
    /// When to say it, ms after the reply's start.
    at_ms: u64,
    /// The reply must start at or after this (the turn's end), ms.
    after_ms: u64,
    /// Fire time, once the reply started.
    due: Option<Instant>,
}

/// A barge-in being said: when it ends, the reply it interrupted closes.
#[derive(Debug, Clone, Copy)]
struct BargeInPlaying {
    /// End of its audio.
    until: Instant,
    /// It, as the utterance owed an answer.
    utterance: Utterance,
}

/// The simulated caller (see module docs).
#[derive(Debug)]
pub struct Caller {
    /// Settings.
    cfg: CallerConfig,
    /// The rendered script.
    script: Vec<ScriptStep>,
    /// The answer; every ms in the log counts from here.
    t0: Option<Instant>,
    /// Where the script is.
    state: State,
    /// The current step.
    idx: usize,
    /// The caller audio an answer is owed to.
    owed: Option<Utterance>,
    /// First reply not yet taken.
    cursor: usize,
    /// The caller's audio is being sent until then.
    busy_until: Option<Instant>,
    /// `during_reply` items waiting.
    armed: Vec<Armed>,
    /// A barge-in being said.
    barge: Option<BargeInPlaying>,
    /// A reply candidate: (start ms, start sample, loud frames, last loud end ms).
    candidate: Option<(u64, usize, usize, u64)>,
    /// The open reply (index in the log).
    open: Option<usize>,
    /// What happened.
    log: CallLog,
    /// Actions not yet polled.
    actions: VecDeque<Action>,
}

impl Caller {
    /// A caller that will run `script` once the call is answered.
    pub fn new(script: Vec<ScriptStep>, cfg: CallerConfig) -> Caller {
        let steps = vec![StepLog::default(); script.len()];
        Caller {
            cfg,
            script,
            t0: None,
            state: State::Ringing,
            idx: 0,
            owed: None,
            cursor: 0,
            busy_until: None,
            armed: Vec::new(),
            barge: None,
            candidate: None,
            open: None,
            log: CallLog { steps, ..CallLog::default() },
            actions: VecDeque::new(),
        }
    }

    /// The call was answered at `now`: the script starts (the greeting is
    /// owed first).
    pub fn handle_answered(&mut self, now: Instant) {
        if self.t0.is_some() {
            return;
        }
        self.t0 = Some(now);
        self.log.answered = true;
        self.owed = Some(Utterance { kind: UtteranceKind::CallStart, step: 0, start_ms: 0, end_ms: 0 });
        self.state = State::Step(StepState::Begin);
        self.advance(now);
    }

    /// One frame of what the caller hears (16 kHz mono PCM16), at `now`.
    pub fn handle_audio(&mut self, frame: &[i16], now: Instant) {
        if self.t0.is_none() || self.state == State::Done && self.log.end.is_some() {
            return;
        }
        let at = self.ms(now);
        let start = self.log.heard.len();
        self.log.heard.extend_from_slice(frame);
        let loud = rms(frame) > self.cfg.loud_rms;
        let f = HeardFrame { at_ms: at, start, len: frame.len(), loud };
        self.log.frames.push(f);
        if loud {
            self.on_loud(f, now);
        }
        self.close_quiet(now);
        self.advance(now);
    }

    /// A deadline from [`Caller::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.t0.is_none() {
            return;
        }
        self.close_quiet(now);
        self.advance(now);
    }

    /// The call is over (`cause`, in the transport's words `reason`), at
    /// `now`. Steps not reached take what was heard.
    pub fn handle_ended(&mut self, cause: EndCause, reason: &str, now: Instant) {
        if self.log.end.is_some() {
            return;
        }
        let at = self.t0.map(|_| self.ms(now)).unwrap_or(0);
        self.log.end = Some(EndLog { cause, at_ms: at, reason: reason.to_string() });
        if self.t0.is_none() {
            self.state = State::Done;
            return;
        }
        if let Some(i) = self.open.take() {
            self.log.replies[i].open = true;
        }
        self.candidate = None;
        self.barge = None;
        for a in std::mem::take(&mut self.armed) {
            if self.log.interjections[a.log].said.is_none() {
                self.log.interjections[a.log].skipped = Some("the call ended first".into());
            }
        }
        // The step under way, then the rest: an `expect` still takes what
        // was heard; `say` and `silent` are cut or not reached.
        if let State::Step(st) = self.state {
            if let Some(step) = self.log.steps.get_mut(self.idx)
                && matches!(st, StepState::Speaking(_))
            {
                step.cut = true;
            }
            while self.idx < self.script.len() {
                let idx = self.idx;
                let began = self.log.steps[idx].started_ms.is_some();
                match self.script[idx] {
                    ScriptStep::Expect => {
                        self.log.steps[idx].started_ms.get_or_insert(at);
                        let wait = self.take_answer(true, now);
                        self.log.steps[idx].wait = Some(wait);
                        self.log.steps[idx].ended_ms = Some(at);
                    }
                    ScriptStep::Say(_) => {
                        if began && self.log.steps[idx].turn.is_none() {
                            self.log.steps[idx].cut = true;
                        }
                        if began {
                            self.log.steps[idx].ended_ms.get_or_insert(at);
                        }
                    }
                    ScriptStep::Silent(_) => {
                        if began {
                            self.log.steps[idx].ended_ms.get_or_insert(at);
                        }
                    }
                }
                self.idx += 1;
            }
        }
        self.state = State::Done;
    }

    /// The agent asked at `now` to transfer the call to `refer_to` (a SIP
    /// REFER): the caller leaves the call (hangs up with `transferred`), as
    /// it would once transferred; the steps left take what was heard.
    pub fn handle_referred(&mut self, refer_to: &str, now: Instant) {
        if self.t0.is_none() || self.state == State::Done || self.log.transfer.is_some() {
            return;
        }
        self.log.transfer = Some((self.ms(now), refer_to.to_string()));
        self.hang_up("transferred", now);
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next deadline (a step's timer, a reply's end, an interjection).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t0 = self.t0?;
        if self.state == State::Done {
            return None;
        }
        let mut next = Some(t0 + ms_dur(self.cfg.max_duration_ms));
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        if let Some(i) = self.open {
            take(Some(t0 + ms_dur(self.log.replies[i].end_ms + self.cfg.reply_gap_ms)));
        }
        if let Some(b) = self.barge {
            take(Some(b.until));
        }
        for a in &self.armed {
            take(a.due);
        }
        match self.state {
            State::Step(StepState::Wait(since)) => take(Some(since + ms_dur(self.cfg.reply_timeout_ms))),
            State::Step(StepState::Think(t) | StepState::Speaking(t) | StepState::Silent(t)) => take(Some(t)),
            State::Finishing => take(Some(t0 + ms_dur(self.cfg.end_within_ms))),
            _ => {}
        }
        if let Some(u) = self.owed.filter(|u| u.kind != UtteranceKind::CallStart) {
            take(Some(t0 + ms_dur(u.end_ms + self.cfg.reply_timeout_ms)));
        }
        next
    }

    /// True once the caller hung up or the call ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The log so far (the whole call once ended).
    pub fn log(&self) -> &CallLog {
        &self.log
    }

    /// Takes the log.
    pub fn into_log(self) -> CallLog {
        self.log
    }

    /// Ms since the answer.
    fn ms(&self, now: Instant) -> u64 {
        self.t0.map(|t| now.saturating_duration_since(t).as_millis() as u64).unwrap_or(0)
    }

    /// A loud frame: extends the open reply, or grows a candidate.
    fn on_loud(&mut self, f: HeardFrame, now: Instant) {
        if let Some(i) = self.open {
            let r = &mut self.log.replies[i];
            r.end_ms = f.end_ms();
            r.end_sample = f.start + f.len;
            return;
        }
        let (start_ms, start_sample, n) = match self.candidate {
            Some((s, ss, n, last)) if f.at_ms.saturating_sub(last) < CANDIDATE_GAP_MS => (s, ss, n + 1),
            _ => (f.at_ms, f.start, 1),
        };
        if n < MIN_REPLY_FRAMES {
            self.candidate = Some((start_ms, start_sample, n, f.end_ms()));
            return;
        }
        self.candidate = None;
        let reply = Reply {
            start_ms,
            end_ms: f.end_ms(),
            start_sample,
            end_sample: f.start + f.len,
            open: false,
            interrupted: false,
        };
        self.log.replies.push(reply);
        let idx = self.log.replies.len() - 1;
        self.open = Some(idx);
        // The reply to a turn times that turn's `during_reply` items.
        let t0 = self.t0.unwrap_or(now);
        for a in self.armed.iter_mut().filter(|a| a.due.is_none() && start_ms >= a.after_ms) {
            a.due = Some(t0 + ms_dur(start_ms + a.at_ms));
            self.log.interjections[a.log].reply = Some(idx);
        }
    }

    /// Closes the open reply after `reply_gap_ms` of quiet, and the one a
    /// finished barge-in interrupted.
    fn close_quiet(&mut self, now: Instant) {
        let at = self.ms(now);
        if let Some(b) = self.barge
            && now >= b.until
        {
            self.barge = None;
            if let Some(i) = self.open.take() {
                self.log.replies[i].interrupted = true;
                self.skip_armed_for(i, "its reply was interrupted first");
            }
            self.candidate = None;
            self.owed = Some(b.utterance);
        }
        if let Some(i) = self.open
            && at >= self.log.replies[i].end_ms + self.cfg.reply_gap_ms
        {
            self.open = None;
            self.skip_armed_for(i, "the reply ended first");
        }
        if let Some((_, _, _, last)) = self.candidate
            && at.saturating_sub(last) >= CANDIDATE_GAP_MS
        {
            self.candidate = None;
        }
    }

    /// Items timed against reply `i` that are not said yet: skipped.
    fn skip_armed_for(&mut self, i: usize, why: &str) {
        let log = &mut self.log;
        self.armed.retain(|a| {
            let mine = log.interjections[a.log].reply == Some(i);
            if mine {
                log.interjections[a.log].skipped = Some(why.to_string());
            }
            !mine
        });
    }

    /// Runs the script until it has to wait.
    fn advance(&mut self, now: Instant) {
        self.fire_interjections(now);
        loop {
            if self.state == State::Done {
                return;
            }
            if self.ms(now) >= self.cfg.max_duration_ms {
                self.hang_up("max-duration", now);
                return;
            }
            let progressed = match self.state {
                State::Ringing | State::Done => false,
                State::Finishing => {
                    if self.ms(now) >= self.cfg.end_within_ms {
                        self.hang_up("end-timeout", now);
                    }
                    false
                }
                State::Step(st) => self.step(st, now),
            };
            if !progressed {
                return;
            }
        }
    }

    /// Plays the `during_reply` items that are due while their reply lasts.
    fn fire_interjections(&mut self, now: Instant) {
        while let Some(pos) = self.armed.iter().position(|a| a.due.is_some_and(|d| d <= now)) {
            let a = self.armed.remove(pos);
            let l = &self.log.interjections[a.log];
            let (step, item, barge_in) = (l.step, l.item, l.barge_in);
            let Some(reply) = l.reply.filter(|r| self.open == Some(*r)) else {
                self.log.interjections[a.log].skipped = Some("the reply ended first".into());
                continue;
            };
            let _ = reply;
            let kind = if barge_in { CallerAudioKind::BargeIn { item } } else { CallerAudioKind::Backchannel { item } };
            let (start, end) = self.play(a.audio.clone(), now);
            let at = (self.ms(start), self.ms(end));
            self.log.caller_audio.push(CallerAudio { step, kind, start_ms: at.0, end_ms: at.1, speech_ms: vec![at] });
            self.log.interjections[a.log].said = Some(self.log.caller_audio.len() - 1);
            if barge_in {
                let utterance = Utterance { kind: UtteranceKind::BargeIn, step, start_ms: at.0, end_ms: at.1 };
                self.barge = Some(BargeInPlaying { until: end, utterance });
            }
        }
    }

    /// One step's state; true when it moved on (call again).
    fn step(&mut self, st: StepState, now: Instant) -> bool {
        let Some(script) = self.script.get(self.idx) else {
            return self.finish(now);
        };
        let at = self.ms(now);
        match (script, st) {
            (_, StepState::Begin) => {
                self.log.steps[self.idx].started_ms = Some(at);
                let next = match script {
                    ScriptStep::Expect => StepState::Wait(now),
                    ScriptStep::Say(_) if self.owed.is_some() || self.open.is_some() => StepState::Wait(now),
                    ScriptStep::Say(_) => StepState::Think(now + ms_dur(self.cfg.think_ms)),
                    ScriptStep::Silent(ms) => StepState::Silent(now + ms_dur(*ms)),
                };
                self.state = State::Step(next);
                true
            }
            (ScriptStep::Expect, StepState::Wait(since)) => {
                if !self.answer_ready(since, now) {
                    return false;
                }
                let wait = self.take_answer(false, now);
                self.log.steps[self.idx].wait = Some(wait);
                self.next_step(now);
                true
            }
            (ScriptStep::Say(_), StepState::Wait(since)) => {
                if self.owed.is_some() {
                    if !self.answer_ready(since, now) {
                        return false;
                    }
                    let wait = self.take_answer(false, now);
                    self.log.steps[self.idx].wait = Some(wait);
                }
                if self.open.is_some() || self.barge.is_some() {
                    return false;
                }
                self.state = State::Step(StepState::Think(now + ms_dur(self.cfg.think_ms)));
                true
            }
            (ScriptStep::Say(turn), StepState::Think(until)) => {
                if now < until {
                    return false;
                }
                if self.open.is_some() {
                    // The agent started talking again: let it finish first.
                    self.state = State::Step(StepState::Wait(now));
                    return true;
                }
                let turn = turn.clone();
                self.speak(&turn, now);
                true
            }
            (ScriptStep::Say(_), StepState::Speaking(until)) => {
                if now < until {
                    return false;
                }
                self.next_step(now);
                true
            }
            (ScriptStep::Silent(_), StepState::Silent(until)) => {
                if now < until {
                    return false;
                }
                self.next_step(now);
                true
            }
            _ => false,
        }
    }

    /// Plays a turn and arms its `during_reply` items.
    fn speak(&mut self, turn: &Turn, now: Instant) {
        let idx = self.idx;
        // What the agent said after the previous `expect`'s answer, before
        // this turn, continues that answer.
        let later: Vec<usize> = (self.cursor..self.log.replies.len()).collect();
        if let Some(prev) = idx.checked_sub(1)
            && matches!(self.script[prev], ScriptStep::Expect)
            && let Some(w) = self.log.steps[prev].wait.as_mut().filter(|w| w.answer.is_some())
        {
            w.continued = later;
        }
        let (start, end) = self.play(turn.audio.clone(), now);
        let (s, e) = (self.ms(start), self.ms(end));
        let speech_ms = turn
            .speech
            .iter()
            .map(|(a, b)| (s + (*a / SAMPLES_PER_MS) as u64, s + (*b / SAMPLES_PER_MS) as u64))
            .collect();
        self.log.caller_audio.push(CallerAudio { step: idx, kind: CallerAudioKind::Turn, start_ms: s, end_ms: e, speech_ms });
        self.log.steps[idx].turn = Some(self.log.caller_audio.len() - 1);
        self.owed = Some(Utterance { kind: UtteranceKind::Turn, step: idx, start_ms: s, end_ms: e });
        // Replies that began before this turn are not answers to it.
        self.cursor = self.log.replies.len();
        for (item, i) in turn.during.iter().enumerate() {
            self.log.interjections.push(InterjectionLog {
                step: idx,
                item,
                barge_in: i.barge_in,
                reply: None,
                said: None,
                skipped: None,
            });
            self.armed.push(Armed {
                log: self.log.interjections.len() - 1,
                audio: i.audio.clone(),
                at_ms: i.at_ms,
                after_ms: e,
                due: None,
            });
        }
        self.state = State::Step(StepState::Speaking(end));
    }

    /// Queues audio; returns when it will start and end.
    fn play(&mut self, audio: Arc<Vec<i16>>, now: Instant) -> (Instant, Instant) {
        let start = self.busy_until.filter(|b| *b > now).unwrap_or(now);
        let end = start + ms_dur((audio.len() / SAMPLES_PER_MS) as u64);
        self.busy_until = Some(end);
        self.actions.push_back(Action::Play(audio));
        (start, end)
    }

    /// Whether the reply a wait is for has ended (or will not come).
    fn answer_ready(&self, since: Instant, now: Instant) -> bool {
        if self.barge.is_some() {
            return false;
        }
        let at = self.ms(now);
        match self.owed {
            Some(u) => {
                match self.answer_index(u) {
                    Some(i) => self.open != Some(i),
                    None => {
                        // Items waiting for the reply keep the wait going
                        // until the timeout.
                        let start = if u.kind == UtteranceKind::CallStart { self.ms(since) } else { u.end_ms };
                        at >= start.max(u.end_ms) + self.cfg.reply_timeout_ms
                    }
                }
            }
            None => match self.log.replies.get(self.cursor) {
                Some(_) => self.open != Some(self.cursor),
                None => now >= since + ms_dur(self.cfg.reply_timeout_ms),
            },
        }
    }

    /// The answer to `u`: the first reply not yet taken that starts after
    /// its end, or that began during it and still played when it ended (a
    /// loud frame after its end: a reply the agent began in a pause and
    /// stopped when the caller went on is not the answer, even while the
    /// gap that closes it runs).
    fn answer_index(&self, u: Utterance) -> Option<usize> {
        (self.cursor..self.log.replies.len()).find(|&i| {
            let r = &self.log.replies[i];
            let playing_at_end = r.end_ms > u.end_ms;
            r.start_ms >= u.end_ms || r.start_ms >= u.start_ms && playing_at_end
        })
    }

    /// Takes the replies of a finished wait (`ended`: the call is over, take
    /// what is there).
    fn take_answer(&mut self, ended: bool, now: Instant) -> ExpectLog {
        let at = self.ms(now);
        match self.owed.take() {
            Some(u) => {
                let answer = self.answer_index(u);
                let last = answer.map(|a| a + 1).unwrap_or(self.log.replies.len());
                let window: Vec<usize> =
                    (self.cursor..last).filter(|&i| self.log.replies[i].start_ms >= u.start_ms).collect();
                self.cursor = last.max(self.cursor);
                let timed_out = answer.is_none() && !ended && at >= u.end_ms + self.cfg.reply_timeout_ms;
                ExpectLog {
                    utterance: Some(u),
                    window,
                    answer,
                    timed_out,
                    call_ended: ended && answer.is_none(),
                    continued: Vec::new(),
                }
            }
            None => {
                let answer = (self.cursor < self.log.replies.len()).then_some(self.cursor);
                if answer.is_some() {
                    self.cursor += 1;
                }
                ExpectLog {
                    utterance: None,
                    window: answer.into_iter().collect(),
                    answer,
                    timed_out: answer.is_none() && !ended,
                    call_ended: ended && answer.is_none(),
                    continued: Vec::new(),
                }
            }
        }
    }

    /// Marks the step done and goes to the next.
    fn next_step(&mut self, now: Instant) {
        let at = self.ms(now);
        self.log.steps[self.idx].ended_ms = Some(at);
        self.idx += 1;
        self.state = State::Step(StepState::Begin);
    }

    /// After the last step; true when it moved on.
    fn finish(&mut self, now: Instant) -> bool {
        match self.cfg.end {
            super::scenario::EndBy::CallerHangup => {
                // Hear the answer to the last turn out first.
                if self.owed.is_some_and(|u| u.kind == UtteranceKind::CallStart) {
                    self.owed = None;
                }
                if self.owed.is_some() && !self.answer_ready(now, now) || self.open.is_some() || self.barge.is_some() {
                    return false;
                }
                self.owed = None;
                self.hang_up("caller-hangup", now);
                false
            }
            _ => {
                self.state = State::Finishing;
                true
            }
        }
    }

    /// Hangs up (once).
    fn hang_up(&mut self, reason: &str, now: Instant) {
        if self.log.caller_hangup.is_none() {
            self.log.caller_hangup = Some((self.ms(now), reason.to_string()));
            self.actions.push_back(Action::Hangup(reason.to_string()));
        }
        if let State::Step(StepState::Speaking(_)) = self.state
            && let Some(s) = self.log.steps.get_mut(self.idx)
        {
            s.cut = true;
        }
        self.state = State::Done;
        self.finish_steps_on_hangup(now);
    }

    /// The caller hung up: steps not reached are left as they are, except
    /// `expect`s, which take what was heard.
    fn finish_steps_on_hangup(&mut self, now: Instant) {
        let at = self.ms(now);
        while self.idx < self.script.len() {
            if matches!(self.script[self.idx], ScriptStep::Expect) {
                self.log.steps[self.idx].started_ms.get_or_insert(at);
                let wait = self.take_answer(true, now);
                self.log.steps[self.idx].wait = Some(wait);
                self.log.steps[self.idx].ended_ms = Some(at);
            } else if self.log.steps[self.idx].started_ms.is_some() {
                self.log.steps[self.idx].ended_ms.get_or_insert(at);
            }
            self.idx += 1;
        }
    }
}

fn ms_dur(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::scenario::EndBy;

    /// A fake agent that hears the caller's speech (runs of non-zero
    /// samples in what the caller plays, merged across gaps shorter than
    /// `merge_gap_ms`) and answers each run `latency_ms` after it ends,
    /// for `reply_ms`. Caller speech of 250 ms or more that starts while
    /// it talks is a barge-in: it stops 150 ms later. Shorter speech is a
    /// backchannel: it goes on.
    struct FakeAgent {
        /// Its own speech, (start, end) ms.
        talk: Vec<(u64, u64)>,
        /// Caller speech runs handled.
        handled: usize,
        latency_ms: u64,
        reply_ms: u64,
        merge_gap_ms: u64,
    }

    impl FakeAgent {
        fn new(greeting: Option<(u64, u64)>, latency_ms: u64, reply_ms: u64) -> FakeAgent {
            FakeAgent { talk: greeting.into_iter().collect(), handled: 0, latency_ms, reply_ms, merge_gap_ms: 0 }
        }

        fn loud(&mut self, at: u64, speech: &[(u64, u64)]) -> bool {
            let runs = merge(speech, self.merge_gap_ms);
            while let Some(&(s, e)) = runs.get(self.handled) {
                if at < s {
                    break;
                }
                let talking = self.talk.iter().position(|&(a, b)| a <= s && s < b);
                if let Some(i) = talking {
                    if e - s < 250 && at >= e {
                        self.handled += 1; // a backchannel: go on
                        continue;
                    }
                    if e - s >= 250 || at >= s + 250 {
                        self.talk[i].1 = self.talk[i].1.min(s + 150);
                    }
                }
                if at < e + self.latency_ms {
                    break;
                }
                self.talk.push((e + self.latency_ms, e + self.latency_ms + self.reply_ms));
                self.handled += 1;
            }
            self.talk.iter().any(|&(a, b)| a <= at && at < b)
        }
    }

    fn merge(runs: &[(u64, u64)], gap: u64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &(s, e) in runs {
            match out.last_mut() {
                Some(last) if s <= last.1 + gap => last.1 = e,
                _ => out.push((s, e)),
            }
        }
        out
    }

    fn cfg() -> CallerConfig {
        CallerConfig {
            think_ms: 300,
            reply_gap_ms: 1000,
            reply_timeout_ms: 5000,
            max_duration_ms: 60_000,
            end: EndBy::CallerHangup,
            end_within_ms: 60_000,
            loud_rms: 300.0,
        }
    }

    /// `ms` of speech (a loud tone), 16 kHz.
    fn speech(ms: u64) -> Vec<i16> {
        (0..ms as usize * 16).map(|i| ((i as f64 * 0.2).sin() * 6000.0) as i16).collect()
    }

    /// A turn of speech parts (ms) separated by pauses (ms).
    fn turn(parts: &[u64], pause_ms: u64, during: Vec<Interjection>) -> ScriptStep {
        let mut audio = Vec::new();
        let mut ranges = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                audio.resize(audio.len() + pause_ms as usize * 16, 0);
            }
            let s = speech(*p);
            ranges.push((audio.len(), audio.len() + s.len()));
            audio.extend(s);
        }
        ScriptStep::Say(Turn { audio: Arc::new(audio), speech: ranges, during })
    }

    fn say(ms: u64) -> ScriptStep {
        turn(&[ms], 0, Vec::new())
    }

    fn item(at_ms: u64, ms: u64, barge_in: bool) -> Interjection {
        Interjection { at_ms, audio: Arc::new(speech(ms)), barge_in }
    }

    /// What the harness saw.
    struct Run {
        log: CallLog,
        hangup: Option<(u64, String)>,
    }

    /// Runs a call in virtual time, 20 ms per frame, until the caller hangs
    /// up or `agent_hangs_up_ms` (the agent ends the call) or `limit_ms`.
    fn run(script: Vec<ScriptStep>, cfg: CallerConfig, mut agent: FakeAgent, agent_hangs_up_ms: Option<u64>, limit_ms: u64) -> Run {
        let t0 = Instant::now();
        let mut c = Caller::new(script, cfg);
        c.handle_answered(t0);
        let mut speech_runs: Vec<(u64, u64)> = Vec::new();
        let mut busy = 0u64;
        let mut hangup = None;
        let mut at = 0u64;
        let tone = speech(20);
        while at < limit_ms {
            let now = t0 + Duration::from_millis(at);
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
            if agent_hangs_up_ms.is_some_and(|h| at >= h) {
                c.handle_ended(EndCause::AgentHangup, "remote-bye", now);
                break;
            }
            let frame = if agent.loud(at, &speech_runs) { tone.clone() } else { vec![0; 320] };
            c.handle_audio(&frame, now);
            while let Some(a) = c.poll_action() {
                match a {
                    Action::Play(audio) => {
                        let start = busy.max(at);
                        // Runs of speech (non-zero 10 ms windows) in the audio.
                        let mut run: Option<u64> = None;
                        for (w, chunk) in audio.chunks(160).enumerate() {
                            let t = start + w as u64 * 10;
                            let loud = chunk.iter().any(|&s| s != 0);
                            match (loud, run) {
                                (true, None) => run = Some(t),
                                (false, Some(s)) => {
                                    speech_runs.push((s, t));
                                    run = None;
                                }
                                _ => {}
                            }
                        }
                        busy = start + (audio.len() / 16) as u64;
                        if let Some(s) = run {
                            speech_runs.push((s, busy));
                        }
                    }
                    Action::Hangup(r) => hangup = Some((at, r)),
                }
            }
            if hangup.is_some() {
                c.handle_ended(EndCause::CallerHangup, "caller-hangup", now);
                break;
            }
            at += 20;
        }
        Run { log: c.into_log(), hangup }
    }

    fn near(a: u64, b: u64, tol: u64) -> bool {
        a.abs_diff(b) <= tol
    }

    #[test]
    fn each_turn_waits_for_the_reply_then_thinks_then_speaks() {
        let script = vec![ScriptStep::Expect, say(1000), ScriptStep::Expect, say(500), ScriptStep::Expect];
        let agent = FakeAgent::new(Some((200, 2200)), 600, 2000);
        let r = run(script, cfg(), agent, None, 30_000);
        let log = &r.log;
        assert_eq!(log.replies.len(), 3, "{:#?}", log.replies);
        assert!(near(log.replies[0].start_ms, 200, 20) && near(log.replies[0].end_ms, 2200, 20), "{:?}", log.replies[0]);
        let greeting = log.steps[0].wait.as_ref().unwrap();
        assert_eq!(greeting.answer, Some(0));
        assert_eq!(greeting.utterance.unwrap().kind, UtteranceKind::CallStart);
        // Reply end + reply_gap_ms (1000) detects its end, + think_ms (300).
        let t1 = &log.caller_audio[0];
        assert!(near(t1.start_ms, 2200 + 1000 + 300, 40), "turn 1 at {}", t1.start_ms);
        assert_eq!(t1.end_ms - t1.start_ms, 1000);
        let second = log.steps[2].wait.as_ref().unwrap();
        assert_eq!(second.answer, Some(1));
        assert_eq!(second.window, vec![1]);
        assert!(near(log.replies[1].start_ms - t1.end_ms, 600, 40), "latency {}", log.replies[1].start_ms - t1.end_ms);
        let t2 = &log.caller_audio[1];
        assert!(near(t2.start_ms, log.replies[1].end_ms + 1300, 40));
        assert_eq!(log.steps[4].wait.as_ref().unwrap().answer, Some(2));
        // The last step done: the caller hangs up at once.
        let (at, reason) = r.hangup.unwrap();
        assert_eq!(reason, "caller-hangup");
        assert!(near(at, log.replies[2].end_ms + 1000, 40), "hung up at {at}");
        assert_eq!(log.end.as_ref().unwrap().cause, EndCause::CallerHangup);
    }

    #[test]
    fn a_barge_in_cuts_the_reply_and_the_next_expect_takes_the_answer_to_it() {
        let script = vec![ScriptStep::Expect, turn(&[800], 0, vec![item(1000, 800, true)]), ScriptStep::Expect];
        let agent = FakeAgent::new(Some((200, 1200)), 600, 5000);
        let r = run(script, cfg(), agent, None, 30_000);
        let log = &r.log;
        assert_eq!(log.replies.len(), 3, "{:#?}", log.replies);
        let cut = &log.replies[1];
        assert!(cut.interrupted, "{cut:?}");
        let barge = &log.caller_audio[1];
        assert_eq!(barge.kind, CallerAudioKind::BargeIn { item: 0 });
        assert!(near(barge.start_ms, cut.start_ms + 1000, 40), "barge at {} vs reply {}", barge.start_ms, cut.start_ms);
        assert!(near(cut.end_ms, barge.start_ms + 160, 40), "the agent stopped at {}", cut.end_ms);
        let wait = log.steps[2].wait.as_ref().unwrap();
        let u = wait.utterance.unwrap();
        assert_eq!(u.kind, UtteranceKind::BargeIn);
        assert_eq!((u.start_ms, u.end_ms), (barge.start_ms, barge.end_ms));
        assert_eq!(wait.answer, Some(2));
        assert_eq!(wait.window, vec![2]);
        assert!(near(log.replies[2].start_ms, barge.end_ms + 600, 40));
        assert_eq!(log.interjections[0].said, Some(1));
        assert_eq!(log.interjections[0].reply, Some(1));
    }

    #[test]
    fn backchannels_do_not_split_the_reply_they_are_said_over() {
        let during = vec![item(800, 200, false), item(2500, 200, false)];
        let script = vec![ScriptStep::Expect, turn(&[600], 0, during), ScriptStep::Expect];
        let agent = FakeAgent::new(Some((200, 1200)), 500, 5000);
        let r = run(script, cfg(), agent, None, 30_000);
        let log = &r.log;
        assert_eq!(log.replies.len(), 2, "{:#?}", log.replies);
        let reply = &log.replies[1];
        assert!(near(reply.end_ms - reply.start_ms, 5000, 40), "{reply:?}");
        let kinds: Vec<_> = log.caller_audio.iter().map(|a| a.kind).collect();
        assert_eq!(kinds[1..], [CallerAudioKind::Backchannel { item: 0 }, CallerAudioKind::Backchannel { item: 1 }]);
        assert!(near(log.caller_audio[1].start_ms, reply.start_ms + 800, 40));
        assert!(near(log.caller_audio[2].start_ms, reply.start_ms + 2500, 40));
        let wait = log.steps[2].wait.as_ref().unwrap();
        assert_eq!(wait.window, vec![1]);
        assert_eq!(wait.utterance.unwrap().kind, UtteranceKind::Turn);
    }

    #[test]
    fn a_reply_in_the_callers_pause_counts_as_a_second_reply() {
        let script = vec![ScriptStep::Expect, turn(&[1000, 1000], 1500, Vec::new()), ScriptStep::Expect];
        // Eager: answers 600 ms after any speech (the caller's pause is 1.5 s).
        let eager = FakeAgent::new(Some((200, 1200)), 600, 2000);
        let log = run(script.clone(), cfg(), eager, None, 30_000).log;
        let wait = log.steps[2].wait.as_ref().unwrap();
        assert_eq!(wait.window.len(), 2, "{:#?}", log.replies);
        let turn = &log.caller_audio[0];
        assert!(log.replies[wait.window[0]].start_ms < turn.end_ms, "the first reply came during the turn");
        assert_eq!(wait.answer, Some(wait.window[1]));
        // Patient: waits out pauses under 2 s: one reply.
        let mut patient = FakeAgent::new(Some((200, 1200)), 600, 2000);
        patient.merge_gap_ms = 2000;
        let log = run(script, cfg(), patient, None, 30_000).log;
        let wait = log.steps[2].wait.as_ref().unwrap();
        assert_eq!(wait.window.len(), 1, "{:#?}", log.replies);
        assert!(near(log.replies[wait.window[0]].start_ms, log.caller_audio[0].end_ms + 600, 40));
    }

    #[test]
    fn replies_heard_while_silent_are_taken_by_the_expects_after_it() {
        let script = vec![ScriptStep::Expect, ScriptStep::Silent(30_000), ScriptStep::Expect, ScriptStep::Expect, ScriptStep::Expect];
        let mut agent = FakeAgent::new(Some((200, 1200)), 600, 1000);
        agent.talk.extend([(7200, 8200), (14200, 15200), (20000, 22000)]);
        let mut c = cfg();
        c.end = EndBy::AgentHangup;
        let r = run(script, c, agent, Some(22_500), 60_000);
        let log = &r.log;
        assert_eq!(log.replies.len(), 4);
        assert_eq!(log.steps[2].wait.as_ref().unwrap().answer, Some(1));
        assert_eq!(log.steps[3].wait.as_ref().unwrap().answer, Some(2));
        assert_eq!(log.steps[4].wait.as_ref().unwrap().answer, Some(3));
        assert!(log.replies[3].open || log.replies[3].end_ms <= 22_000);
        assert_eq!(log.steps[1].ended_ms, Some(22_500), "the silence ends with the call");
        let end = log.end.as_ref().unwrap();
        assert_eq!((end.cause, end.at_ms), (EndCause::AgentHangup, 22_500));
        assert!(r.hangup.is_none());
    }

    #[test]
    fn the_caller_hangs_up_at_max_duration_and_marks_the_cut_turn() {
        let script = vec![ScriptStep::Expect, say(3000), ScriptStep::Expect];
        let mut c = cfg();
        c.reply_timeout_ms = 3000;
        c.max_duration_ms = 5000;
        let r = run(script, c, FakeAgent::new(None, 600, 1000), None, 60_000);
        let log = &r.log;
        let first = log.steps[0].wait.as_ref().unwrap();
        assert!(first.timed_out && first.answer.is_none(), "{first:?}");
        assert_eq!(r.hangup.as_ref().map(|h| h.1.as_str()), Some("max-duration"));
        assert!(near(r.hangup.unwrap().0, 5000, 20));
        assert!(log.steps[1].cut, "the turn was cut: {:?}", log.steps[1]);
        assert!(log.steps[2].wait.as_ref().unwrap().call_ended);
    }

    #[test]
    fn waiting_for_the_agent_to_end_the_call_gives_up_at_within_s() {
        let script = vec![ScriptStep::Expect];
        let mut c = cfg();
        c.end = EndBy::AgentHangup;
        c.end_within_ms = 8000;
        let r = run(script, c, FakeAgent::new(Some((200, 1200)), 600, 1000), None, 60_000);
        assert_eq!(r.hangup.as_ref().map(|h| h.1.as_str()), Some("end-timeout"));
        assert!(near(r.hangup.unwrap().0, 8000, 20));
    }

    #[test]
    fn a_pause_inside_the_answer_continues_it_until_the_caller_speaks() {
        let script = vec![ScriptStep::Expect, say(500), ScriptStep::Expect];
        let mut agent = FakeAgent::new(Some((200, 900)), 600, 1000);
        agent.talk.push((2100, 4000)); // the greeting stalls for 1.2 s
        let log = run(script, cfg(), agent, None, 30_000).log;
        let greeting = log.steps[0].wait.as_ref().unwrap();
        assert_eq!((greeting.answer, &greeting.window, &greeting.continued), (Some(0), &vec![0], &vec![1]));
        assert!(log.caller_audio[0].start_ms >= 4000 + 1000 + 300, "the caller waited for the rest");
        assert_eq!(log.steps[2].wait.as_ref().unwrap().answer, Some(2));
    }

    #[test]
    fn a_transfer_request_makes_the_caller_leave() {
        let t0 = Instant::now();
        let mut c = Caller::new(vec![ScriptStep::Expect, say(500), ScriptStep::Expect], cfg());
        c.handle_answered(t0);
        for i in 0..50 {
            let f = if (5..60).contains(&i) { speech(20) } else { vec![0; 320] };
            c.handle_audio(&f, t0 + Duration::from_millis(20 * i));
        }
        c.handle_referred("sip:frontdesk@clinic.example", t0 + Duration::from_millis(1000));
        assert_eq!(c.poll_action(), Some(Action::Hangup("transferred".into())));
        c.handle_ended(EndCause::Transferred, "transferred", t0 + Duration::from_millis(1100));
        let log = c.into_log();
        assert_eq!(log.transfer, Some((1000, "sip:frontdesk@clinic.example".into())));
        assert_eq!(log.end.unwrap().cause, EndCause::Transferred);
        assert_eq!(log.steps[0].wait.as_ref().unwrap().answer, Some(0), "the greeting heard so far");
        assert!(log.steps[2].wait.as_ref().unwrap().call_ended);
    }

    #[test]
    fn a_click_is_not_a_reply_and_nothing_happens_before_the_answer() {
        let mut c = Caller::new(vec![ScriptStep::Expect], cfg());
        let t0 = Instant::now();
        c.handle_audio(&speech(20), t0);
        assert!(c.poll_timeout().is_none() && c.poll_action().is_none(), "not answered yet");
        c.handle_answered(t0);
        c.handle_audio(&speech(20), t0 + Duration::from_millis(20));
        for i in 2..100 {
            c.handle_audio(&[0; 320], t0 + Duration::from_millis(20 * i));
        }
        assert!(c.log().replies.is_empty(), "one loud frame is not a reply");
        assert_eq!(rms(&[]), 0.0);
    }
}
