//! The YAML flow agent: one [`FlowAgent`] per call runs the conversation
//! defined by a shared [`AgentDef`] (the schema is documented in
//! [`crate::agent`]).
//!
//! # Turn contract
//! The call actor calls [`FlowAgent::start`] once when the call is answered,
//! then [`FlowAgent::on_user_turn`] with each final transcript, and
//! [`FlowAgent::on_silence`] when the caller said nothing for
//! [`FlowAgent::silence_timeout`] after the agent finished speaking. Each
//! returns the actions of one agent turn, in order: at most one
//! [`AgentAction::Say`] (all sentences of the turn joined), then at most one
//! [`AgentAction::Hangup`] or [`AgentAction::Transfer`], which is always
//! last and ends the conversation: afterwards every call returns nothing.
//! An empty transcript (noise, a cough) returns nothing, so the agent never
//! talks to itself.
//!
//! # One user turn
//! 1. Global intents first (goodbye, a person, repeat, opening hours…).
//! 2. While an intent is collecting slots: a strict reading of the slot just
//!    asked for (`at 2`, `my name is …`); else another intent of the node by
//!    its phrases or patterns (the caller changed their mind); else a loose
//!    reading (`2`, `Anna Smith`). Slots fill across turns; the first
//!    missing one is asked next.
//! 3. Otherwise the node's intents (own, then inherited): the one with the
//!    most phrase words matched (patterns count the words they matched; a
//!    yes/no `confirm` counts half a word), ties to the first written.
//! 4. Nothing matched: a re-prompt (`on_no_match`, or `fallback` plus the
//!    current question), up to `max_reprompts` in a row; then
//!    `on_no_match.next` if set, else `give_up.no_match` and
//!    `Hangup { reason: "no-match" }`. Silence works the same way with
//!    `on_silence` / `silence_prompt` and ends with `give_up.no_input` and
//!    `Hangup { reason: "no-input" }`.
//!
//! Intent completion says `reply`, then enters `next` (saying its `say`; an
//! `end` node then hangs up with reason `completed`, a `transfer` node
//! transfers). An intent without `next` stays and asks the current question
//! again. Pure: no IO, no clock; `today` comes in at construction.

use super::config::{Action, Intent, Node, SlotDef};
use super::slots::{self, Ctx, SlotKind};
use super::template::{Filter, Template};
use super::text::{Utterance, phrase_matches};
use std::collections::BTreeMap;
use std::mem::discriminant;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What the agent decides; the call actor carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAction {
    /// Say this text (one or more sentences).
    Say(String),
    /// End the call after what was said has been played.
    Hangup {
        /// Reason for the call record: `goodbye` (the caller said goodbye),
        /// `completed` (an `end` node was reached), `no-input` (silence
        /// re-prompts used up), `no-match` (no-match re-prompts used up).
        reason: String,
    },
    /// Hand the caller to a person or number, cold or warm.
    Transfer(super::escalation::TransferRequest),
}

/// A bad agent file.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {message}")]
pub struct AgentConfigError {
    /// File.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// What is wrong (names the field).
    pub message: String,
}

/// A loaded, validated agent definition (shared by all its calls).
#[derive(Debug)]
pub struct AgentDef {
    pub(crate) name: String,
    pub(crate) language: String,
    pub(crate) greeting: Template,
    /// Index of the start node.
    pub(crate) start: usize,
    pub(crate) silence_timeout: Duration,
    pub(crate) max_reprompts: u32,
    pub(crate) earliest_hour: u8,
    pub(crate) fallback: Template,
    pub(crate) silence_prompt: Template,
    pub(crate) goodbye: Template,
    pub(crate) give_up_no_input: Template,
    pub(crate) give_up_no_match: Template,
    pub(crate) transfer_say: Template,
    /// Said when a transfer could not be completed.
    pub(crate) transfer_failed: Template,
    /// Cold or warm (the file's `transfer.mode`).
    pub(crate) transfer_mode: super::escalation::TransferMode,
    /// How a warm transfer briefs the target (`transfer.brief`).
    pub(crate) transfer_brief: super::escalation::Brief,
    /// Intent name → said after the greeting on a call transferred in with
    /// a context for that intent.
    pub(crate) resume: BTreeMap<String, Template>,
    pub(crate) slots: Vec<SlotDef>,
    pub(crate) global_intents: Vec<Intent>,
    pub(crate) nodes: Vec<Node>,
}

impl AgentDef {
    /// The agent's name (its `name:` field).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its `language:` (BCP 47 tag, default `en`).
    pub fn language(&self) -> &str {
        &self.language
    }

    /// Loads and validates one agent file. Errors carry the file, line and
    /// field (see [`load_agents`]).
    pub fn load(file: &Path) -> Result<AgentDef, AgentConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| AgentConfigError {
            file: file.to_path_buf(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Self::from_yaml(&text, file)
    }

    /// Parses and validates YAML text; `file` only names it in errors.
    pub fn from_yaml(text: &str, file: &Path) -> Result<AgentDef, AgentConfigError> {
        super::config::parse_agent(text, file)
    }

    fn intent(&self, r: IntentRef) -> &Intent {
        match r {
            IntentRef::Global(i) => &self.global_intents[i],
            IntentRef::Node(n, i) => &self.nodes[n].intents[i],
        }
    }
}

/// Loads every `*.yaml` / `*.yml` in `dir`, keyed by agent name. Errors name
/// file, line and field: YAML syntax, unknown keys, wrong types, unknown slot
/// types, a transition (`next`, `inherit`, `on_no_match.next`, `start`) to an
/// unknown node, an intent slot that is not defined, a pattern that is not a
/// valid regex, a template naming an unknown slot or filter, a node with no
/// way out, two files with the same agent name. An unreadable directory is an
/// error with line 0; an empty one gives an empty map. Files with `kind: llm`
/// are LLM agents and are skipped here (see [`super::graph::load_graph`]).
pub fn load_agents(dir: &Path) -> Result<BTreeMap<String, Arc<AgentDef>>, AgentConfigError> {
    super::config::load_dir(dir)
}

/// Which intent: a global one or one of a node's (own or inherited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntentRef {
    Global(usize),
    Node(usize, usize),
}

/// An intent collecting its slots.
#[derive(Debug, Clone, Copy)]
struct Pending {
    intent: IntentRef,
    /// The slot just asked for.
    awaiting: usize,
}

/// The output of one agent turn, gathered while deciding.
#[derive(Debug, Default)]
struct Turn {
    say: Vec<String>,
    end: Option<AgentAction>,
}

impl Turn {
    fn say(&mut self, text: String) {
        if !text.trim().is_empty() {
            self.say.push(text);
        }
    }
}

/// One conversation with an agent (per call). Cloned to try a reply
/// before the caller's turn is confirmed, and to snapshot the conversation
/// before a turn (a continuation restores it).
#[derive(Debug, Clone)]
pub struct FlowAgent {
    /// The shared definition.
    def: Arc<AgentDef>,
    /// Resolves relative dates.
    today: time::Date,
    /// Current node (index into `def.nodes`).
    node: usize,
    /// Collected slots, name → normalized value.
    slots: BTreeMap<String, String>,
    /// The intent collecting slots, if any.
    pending: Option<Pending>,
    /// Consecutive turns that matched nothing.
    no_match_count: u32,
    /// Consecutive silences.
    silence_count: u32,
    /// Everything said in the last agent turn (for "repeat that").
    last_said: String,
    /// Name of the last intent recognized.
    last_intent: Option<String>,
    /// A hangup or transfer was returned.
    finished: bool,
}

impl FlowAgent {
    /// A conversation; `today` resolves relative dates ("tomorrow").
    pub fn new(def: Arc<AgentDef>, today: time::Date) -> Self {
        let node = def.start;
        FlowAgent {
            def,
            today,
            node,
            slots: BTreeMap::new(),
            pending: None,
            no_match_count: 0,
            silence_count: 0,
            last_said: String::new(),
            last_intent: None,
            finished: false,
        }
    }

    /// The call was answered: the greeting, then the start node's `say`.
    pub fn start(&mut self) -> Vec<AgentAction> {
        if self.finished {
            return Vec::new();
        }
        let mut turn = Turn::default();
        turn.say(self.render(&self.def.greeting));
        self.enter(self.def.start, &mut turn);
        self.finish(turn)
    }

    /// A call transferred in with a context (the caller must not repeat
    /// themselves): the slots this agent knows are taken over; when the
    /// context's `intent` is one of this agent's node intents, the greeting
    /// is followed by the `resume` line and the intent goes on (asking the
    /// first slot still missing); otherwise it is a normal [`FlowAgent::start`].
    pub fn resume(&mut self, intent: Option<&str>, slots: &BTreeMap<String, String>) -> Vec<AgentAction> {
        if self.finished {
            return Vec::new();
        }
        let def = Arc::clone(&self.def);
        for (k, v) in slots {
            if def.slots.iter().any(|s| &s.name == k) {
                self.slots.insert(k.clone(), v.clone());
            }
        }
        let found = intent.and_then(|name| {
            def.nodes.iter().enumerate().find_map(|(n, node)| {
                node.intents.iter().position(|i| i.name == name).map(|i| IntentRef::Node(n, i))
            })
        });
        let Some(r) = found else { return self.start() };
        let mut turn = Turn::default();
        turn.say(self.render(&def.greeting));
        if let Some(t) = intent.and_then(|i| def.resume.get(i)) {
            turn.say(self.render(t));
        }
        if let IntentRef::Node(n, _) = r {
            self.node = n;
        }
        self.last_intent = intent.map(str::to_string);
        self.continue_intent(r, &mut turn);
        self.finish(turn)
    }

    /// A transfer the agent asked for could not be completed (refused, not
    /// answered): the conversation goes on with the transfer's `failed`
    /// line and the current question.
    pub fn on_transfer_failed(&mut self) -> Vec<AgentAction> {
        self.finished = false;
        let mut turn = Turn::default();
        turn.say(self.render(&self.def.transfer_failed));
        turn.say(self.question());
        self.finish(turn)
    }

    /// The intent being worked on: the one collecting slots, else the last
    /// one recognized (for the call context handed on at a transfer).
    pub fn goal(&self) -> Option<&str> {
        match self.pending {
            Some(p) => Some(self.def.intent(p.intent).name.as_str()),
            None => self.last_intent.as_deref(),
        }
    }

    /// The caller said `text` (a final transcript of one turn).
    pub fn on_user_turn(&mut self, text: &str) -> Vec<AgentAction> {
        let u = Utterance::new(text);
        if self.finished || u.is_empty() {
            return Vec::new();
        }
        self.silence_count = 0;
        let mut turn = Turn::default();
        let def = Arc::clone(&self.def);
        let globals = best_intent(&def.global_intents, &u, false).map(IntentRef::Global);
        let node = self.node;
        let node_intent = |phrase_only: bool| {
            best_intent(&def.nodes[node].intents, &u, phrase_only).map(|i| IntentRef::Node(node, i))
        };
        if let Some(r) = globals {
            self.run_intent(r, &u, &mut turn);
        } else if let Some(p) = self.pending {
            if self.fill(p.intent, &u, Some((p.awaiting, false))) {
                self.no_match_count = 0;
                self.continue_intent(p.intent, &mut turn);
            } else if let Some(r) = node_intent(true).filter(|r| *r != p.intent) {
                self.run_intent(r, &u, &mut turn);
            } else if self.fill(p.intent, &u, Some((p.awaiting, true))) {
                self.no_match_count = 0;
                self.continue_intent(p.intent, &mut turn);
            } else {
                self.no_match(&mut turn);
            }
        } else if let Some(r) = node_intent(false) {
            self.run_intent(r, &u, &mut turn);
        } else {
            self.no_match(&mut turn);
        }
        self.finish(turn)
    }

    /// The caller pressed a DTMF key (RFC 4733 or a transport's DTMF event):
    /// an intent with that `dtmf:` key runs (this node's first, then the
    /// global ones); otherwise the key is read as the digit said aloud (so
    /// number slots can be keyed in).
    pub fn on_dtmf(&mut self, digit: char) -> Vec<AgentAction> {
        if self.finished {
            return Vec::new();
        }
        let def = Arc::clone(&self.def);
        let node = self.node;
        let keyed = def.nodes[node]
            .intents
            .iter()
            .position(|i| i.dtmf == Some(digit))
            .map(|i| IntentRef::Node(node, i))
            .or_else(|| def.global_intents.iter().position(|i| i.dtmf == Some(digit)).map(IntentRef::Global));
        let Some(r) = keyed else {
            return self.on_user_turn(&digit.to_string());
        };
        self.silence_count = 0;
        self.no_match_count = 0;
        let mut turn = Turn::default();
        self.run_intent(r, &Utterance::new(""), &mut turn);
        self.finish(turn)
    }

    /// The caller said nothing for [`FlowAgent::silence_timeout`] after the
    /// agent finished speaking.
    pub fn on_silence(&mut self) -> Vec<AgentAction> {
        if self.finished {
            return Vec::new();
        }
        let mut turn = Turn::default();
        self.silence_count += 1;
        if self.silence_count > self.def.max_reprompts {
            turn.say(self.render(&self.def.give_up_no_input));
            turn.end = Some(AgentAction::Hangup { reason: "no-input".into() });
        } else if self.pending.is_none()
            && let Some(t) = &self.def.nodes[self.node].on_silence
        {
            turn.say(self.render(t));
        } else {
            turn.say(self.render(&self.def.silence_prompt));
            turn.say(self.question());
        }
        self.finish(turn)
    }

    /// How long to wait for the caller before `on_silence`.
    pub fn silence_timeout(&self) -> Duration {
        self.def.silence_timeout
    }

    /// Slots collected so far (name → normalized value: dates `YYYY-MM-DD`,
    /// times `HH:MM`, numbers in digits, `yes`/`no`, names capitalized, enum
    /// values canonical).
    pub fn slots(&self) -> &BTreeMap<String, String> {
        &self.slots
    }

    /// Current node name.
    pub fn node(&self) -> &str {
        &self.def.nodes[self.node].name
    }

    /// Name of the last intent recognized (`book`, `goodbye`, …), for the
    /// call record; `None` before the first.
    pub fn last_intent(&self) -> Option<&str> {
        self.last_intent.as_deref()
    }

    /// Whether the conversation is over (a hangup or transfer was returned).
    pub fn finished(&self) -> bool {
        self.finished
    }

    // ------------------------------------------------------------ private

    /// Runs a recognized intent.
    fn run_intent(&mut self, r: IntentRef, u: &Utterance, turn: &mut Turn) {
        self.no_match_count = 0;
        let def = Arc::clone(&self.def);
        let intent = def.intent(r);
        self.last_intent = Some(intent.name.clone());
        for &s in &intent.reset {
            self.slots.remove(&def.slots[s].name);
        }
        match &intent.action {
            Some(Action::Hangup) => {
                turn.say(self.render(intent.reply.as_ref().unwrap_or(&def.goodbye)));
                turn.end = Some(AgentAction::Hangup { reason: "goodbye".into() });
                return;
            }
            Some(Action::Transfer(target)) => {
                turn.say(self.render(intent.reply.as_ref().unwrap_or(&def.transfer_say)));
                turn.end = Some(self.transfer_to(target));
                return;
            }
            Some(Action::Repeat) => {
                let again = if self.last_said.is_empty() { self.question() } else { self.last_said.clone() };
                turn.say(again);
                return;
            }
            None => {}
        }
        if let Some(ack) = &intent.ack {
            turn.say(self.render(ack));
        }
        if intent.slots.is_empty() {
            if intent.next.is_some() {
                self.pending = None;
            }
            self.complete(r, turn);
            return;
        }
        if self.pending.map(|p| p.intent) != Some(r) {
            for &s in &intent.slots {
                if !intent.reuse.contains(&s) {
                    self.slots.remove(&def.slots[s].name);
                }
            }
        }
        self.fill(r, u, None);
        self.continue_intent(r, turn);
    }

    /// Asks for the first missing slot of `r`, or completes it.
    fn continue_intent(&mut self, r: IntentRef, turn: &mut Turn) {
        let def = Arc::clone(&self.def);
        let missing = def.intent(r).slots.iter().copied().find(|&s| !self.slots.contains_key(&def.slots[s].name));
        match missing {
            Some(s) => {
                self.pending = Some(Pending { intent: r, awaiting: s });
                turn.say(self.render(&def.slots[s].ask));
            }
            None => {
                self.pending = None;
                self.complete(r, turn);
            }
        }
    }

    /// Says the reply and follows `next`, or asks the current question again.
    fn complete(&mut self, r: IntentRef, turn: &mut Turn) {
        let def = Arc::clone(&self.def);
        let intent = def.intent(r);
        if let Some(reply) = &intent.reply {
            turn.say(self.render(reply));
        }
        match intent.next {
            Some(n) => self.enter(n, turn),
            None => turn.say(self.question()),
        }
    }

    /// Enters node `n`: says its `say`; an end node hangs up, a transfer node transfers.
    fn enter(&mut self, n: usize, turn: &mut Turn) {
        self.node = n;
        self.pending = None;
        self.no_match_count = 0;
        let def = Arc::clone(&self.def);
        let node = &def.nodes[n];
        if let Some(say) = &node.say {
            turn.say(self.render(say));
        }
        if node.end {
            turn.end = Some(AgentAction::Hangup { reason: "completed".into() });
        } else if let Some(target) = &node.transfer {
            turn.end = Some(self.transfer_to(target));
        }
    }

    fn no_match(&mut self, turn: &mut Turn) {
        self.no_match_count += 1;
        let def = Arc::clone(&self.def);
        let node = &def.nodes[self.node];
        if self.no_match_count > def.max_reprompts {
            match node.no_match_next {
                Some(n) => self.enter(n, turn),
                None => {
                    turn.say(self.render(&def.give_up_no_match));
                    turn.end = Some(AgentAction::Hangup { reason: "no-match".into() });
                }
            }
            return;
        }
        match self.pending {
            Some(p) => match &def.slots[p.awaiting].retry {
                Some(t) => turn.say(self.render(t)),
                None => {
                    turn.say(self.render(&def.fallback));
                    turn.say(self.question());
                }
            },
            None => match &node.on_no_match {
                Some(t) => turn.say(self.render(t)),
                None => {
                    turn.say(self.render(&def.fallback));
                    turn.say(self.question());
                }
            },
        }
    }

    /// Extracts the missing slots of intent `r` from `u`: the awaited slot
    /// first (loosely if asked), then the others strictly, at most one slot
    /// per type per utterance (so one date never fills two date slots).
    /// Returns whether anything was filled.
    fn fill(&mut self, r: IntentRef, u: &Utterance, awaited: Option<(usize, bool)>) -> bool {
        let def = Arc::clone(&self.def);
        let ctx = Ctx { today: self.today, earliest_hour: def.earliest_hour };
        let mut toks: Vec<&str> = u.tokens.iter().map(String::as_str).collect();
        let mut order: Vec<(usize, bool)> = awaited.into_iter().collect();
        order.extend(def.intent(r).slots.iter().filter(|&&s| Some(s) != awaited.map(|a| a.0)).map(|&s| (s, false)));
        let mut tried: Vec<(std::mem::Discriminant<SlotKind>, Option<usize>)> = Vec::new();
        let mut any = false;
        for (s, loose) in order {
            let slot = &def.slots[s];
            if self.slots.contains_key(&slot.name) {
                continue;
            }
            // enums are distinct types per slot; other types are shared
            let key = (discriminant(&slot.kind), matches!(slot.kind, SlotKind::Enum(_)).then_some(s));
            if tried.contains(&key) {
                continue;
            }
            tried.push(key);
            if let Some(e) = slots::extract(&slot.kind, &toks, &ctx, loose) {
                for t in toks.iter_mut().take(e.end).skip(e.start) {
                    *t = "";
                }
                self.slots.insert(slot.name.clone(), e.value);
                any = true;
            }
        }
        any
    }

    /// The question the caller is expected to answer now.
    fn question(&self) -> String {
        match self.pending {
            Some(p) => self.render(&self.def.slots[p.awaiting].ask),
            None => self.def.nodes[self.node].say.as_ref().map(|t| self.render(t)).unwrap_or_default(),
        }
    }

    /// The transfer to `target` as this agent's file configures it (the call
    /// builds the summary from the goal and slots).
    fn transfer_to(&self, target: &str) -> AgentAction {
        AgentAction::Transfer(super::escalation::TransferRequest {
            target: target.to_string(),
            mode: self.def.transfer_mode,
            brief: self.def.transfer_brief,
            summary: None,
        })
    }

    fn render(&self, t: &Template) -> String {
        t.render(|i, filter| {
            let slot = &self.def.slots[i];
            let v = self.slots.get(&slot.name)?;
            Some(match filter {
                Filter::Raw => v.clone(),
                Filter::Spoken => slots::spoken(&slot.kind, v, self.today),
            })
        })
    }

    /// Turns the gathered turn into actions and remembers what was said.
    fn finish(&mut self, turn: Turn) -> Vec<AgentAction> {
        let mut out = Vec::new();
        if !turn.say.is_empty() {
            let text = turn.say.join(" ");
            self.last_said = text.clone();
            out.push(AgentAction::Say(text));
        }
        if let Some(end) = turn.end {
            self.finished = true;
            out.push(end);
        }
        out
    }
}

/// The best-matching intent: most phrase words (patterns: words matched),
/// a yes/no `confirm` half a word unless `phrase_only`; ties to the first.
fn best_intent(intents: &[Intent], u: &Utterance, phrase_only: bool) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, intent) in intents.iter().enumerate() {
        let mut score = 0;
        for p in &intent.phrases {
            if phrase_matches(&u.tokens, p) {
                score = score.max(2 * p.len());
            }
        }
        for re in &intent.patterns {
            if let Some(m) = re.find(&u.text) {
                score = score.max(2 * m.as_str().split_whitespace().count().max(1));
            }
        }
        if !phrase_only
            && score == 0
            && let Some(want) = intent.confirm
        {
            let toks: Vec<&str> = u.tokens.iter().map(String::as_str).collect();
            let ctx = Ctx { today: time::Date::MIN, earliest_hour: 8 };
            if let Some(e) = slots::extract(&SlotKind::YesNo, &toks, &ctx, false)
                && (e.value == "yes") == want
            {
                score = 1;
            }
        }
        if score > 0 && best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}
