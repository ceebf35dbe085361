//! Agent files: the YAML schema (documented with a full example in
//! [`crate::agent`]), loading, cross-reference validation and compilation
//! into an [`AgentDef`].
//!
//! Parsing follows `crate::config`: `serde_yaml_ng` through
//! `serde_path_to_error`, unknown keys rejected, every error carrying the
//! file, the 1-based line and the dotted field path. Cross-references (a
//! `next` to an unknown node, an unknown slot, a bad regex or template, a
//! node with no way out) are checked after parsing; their line is found by
//! [`Locator`], which maps field paths to lines of the block-style YAML.

use super::flow::{AgentConfigError, AgentDef};
use super::slots::{EnumValue, SlotKind, SlotType};
use super::template::Template;
use super::text::normalize;
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

// ------------------------------------------------------------ the file as written

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    /// `flow` (the default); `kind: llm` files are LLM agents (`super::graph`).
    #[serde(default)]
    #[allow(dead_code)]
    kind: Option<FlowKind>,
    name: String,
    #[serde(default = "default_language")]
    language: String,
    #[serde(default = "default_start")]
    start: String,
    greeting: String,
    #[serde(default = "default_silence_timeout")]
    silence_timeout_s: f64,
    #[serde(default = "default_max_reprompts")]
    max_reprompts: u32,
    #[serde(default = "default_earliest_hour")]
    earliest_hour: u8,
    #[serde(default = "default_fallback")]
    fallback: String,
    #[serde(default = "default_silence_prompt")]
    silence_prompt: String,
    #[serde(default = "default_goodbye")]
    goodbye: String,
    #[serde(default)]
    give_up: GiveUpFile,
    transfer: Option<TransferFile>,
    /// Intent name → line said after the greeting when a transferred call
    /// brings a context with that intent (slots rendered from the context).
    #[serde(default)]
    resume: BTreeMap<String, String>,
    #[serde(default)]
    slots: BTreeMap<String, SlotFile>,
    #[serde(default)]
    global_intents: Vec<IntentFile>,
    nodes: BTreeMap<String, NodeFile>,
}

/// The only `kind` a flow agent file may declare.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FlowKind {
    Flow,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GiveUpFile {
    #[serde(default = "default_give_up_no_input")]
    no_input: String,
    #[serde(default = "default_give_up_no_match")]
    no_match: String,
}

impl Default for GiveUpFile {
    fn default() -> Self {
        GiveUpFile { no_input: default_give_up_no_input(), no_match: default_give_up_no_match() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferFile {
    target: String,
    /// `cold` (REFER, default) or `warm` (attended, bridged by skald).
    #[serde(default)]
    mode: super::escalation::TransferMode,
    /// Warm only: `spoken` (default) or `context`.
    #[serde(default)]
    brief: super::escalation::Brief,
    #[serde(default = "default_transfer_say")]
    say: String,
    #[serde(default = "default_transfer_failed")]
    failed: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotFile {
    #[serde(rename = "type")]
    kind: SlotType,
    ask: String,
    retry: Option<String>,
    values: Option<BTreeMap<String, Option<Vec<String>>>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ConfirmFile {
    Yes,
    No,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ActionFile {
    Hangup,
    Transfer,
    Repeat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntentFile {
    name: String,
    #[serde(default)]
    phrases: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    dtmf: Option<String>,
    confirm: Option<ConfirmFile>,
    #[serde(default)]
    slots: Vec<String>,
    #[serde(default)]
    reuse: Vec<String>,
    #[serde(default)]
    reset: Vec<String>,
    ack: Option<String>,
    reply: Option<String>,
    next: Option<String>,
    action: Option<ActionFile>,
    target: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    say: Option<String>,
    #[serde(default)]
    intents: Vec<IntentFile>,
    inherit: Option<String>,
    on_no_match: Option<NoMatchFile>,
    on_silence: Option<SilenceFile>,
    #[serde(default)]
    end: bool,
    transfer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoMatchFile {
    say: Option<String>,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceFile {
    say: String,
}

fn default_language() -> String {
    "en".into()
}
fn default_start() -> String {
    "start".into()
}
fn default_silence_timeout() -> f64 {
    6.0
}
fn default_max_reprompts() -> u32 {
    2
}
fn default_earliest_hour() -> u8 {
    8
}
fn default_fallback() -> String {
    "Sorry, I didn't catch that.".into()
}
fn default_silence_prompt() -> String {
    "Are you still there?".into()
}
fn default_goodbye() -> String {
    "Thanks for calling. Goodbye!".into()
}
fn default_give_up_no_input() -> String {
    "I'm sorry, I can't hear you. Please call us back. Goodbye.".into()
}
fn default_give_up_no_match() -> String {
    "I'm sorry I couldn't help this time. Please call us back. Goodbye.".into()
}
fn default_transfer_say() -> String {
    "Let me connect you with someone who can help.".into()
}

fn default_transfer_failed() -> String {
    "I'm sorry, I couldn't connect you right now.".into()
}

// ------------------------------------------------------------ compiled form

/// A slot definition.
#[derive(Debug)]
pub(crate) struct SlotDef {
    /// Its key under `slots:`.
    pub(crate) name: String,
    /// Type (with enum values).
    pub(crate) kind: SlotKind,
    /// Asked when the slot is missing.
    pub(crate) ask: Template,
    /// Asked again after a turn that did not fill it (default: fallback + ask).
    pub(crate) retry: Option<Template>,
}

/// A terminal or special intent action.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Say the reply (or the goodbye) and hang up with reason `goodbye`.
    Hangup,
    /// Say the reply (or the transfer line) and transfer to this target.
    Transfer(String),
    /// Say again what was said last.
    Repeat,
}

/// A compiled intent.
#[derive(Debug, Clone)]
pub(crate) struct Intent {
    /// Its `name`.
    pub(crate) name: String,
    /// Normalized phrases (token lists).
    pub(crate) phrases: Vec<Vec<String>>,
    /// Regexes over the normalized utterance text.
    pub(crate) patterns: Vec<Regex>,
    /// A DTMF key that selects it (`0-9`, `*`, `#`), e.g. "press 0 for a person".
    pub(crate) dtmf: Option<char>,
    /// Matches a yes (`Some(true)`) or no (`Some(false)`) answer.
    pub(crate) confirm: Option<bool>,
    /// Slots to collect, in asking order (indexes into `AgentDef::slots`).
    pub(crate) slots: Vec<usize>,
    /// Slots whose earlier value is kept when the intent starts.
    pub(crate) reuse: Vec<usize>,
    /// Slots forgotten when the intent matches.
    pub(crate) reset: Vec<usize>,
    /// Said when the intent is recognized.
    pub(crate) ack: Option<Template>,
    /// Said when the intent completes (all slots collected).
    pub(crate) reply: Option<Template>,
    /// Node entered on completion (index into `AgentDef::nodes`).
    pub(crate) next: Option<usize>,
    /// Special action instead of a transition.
    pub(crate) action: Option<Action>,
}

/// A compiled node.
#[derive(Debug)]
pub(crate) struct Node {
    /// Its key under `nodes:`.
    pub(crate) name: String,
    /// Said on entry; also the question repeated on re-prompts.
    pub(crate) say: Option<Template>,
    /// Own intents, then inherited ones.
    pub(crate) intents: Vec<Intent>,
    /// Re-prompt after a turn that matched nothing.
    pub(crate) on_no_match: Option<Template>,
    /// Where to go once re-prompts are used up (instead of hanging up).
    pub(crate) no_match_next: Option<usize>,
    /// Re-prompt after silence.
    pub(crate) on_silence: Option<Template>,
    /// Hang up (`completed`) after `say`.
    pub(crate) end: bool,
    /// Transfer to this target after `say`.
    pub(crate) transfer: Option<String>,
}

// ------------------------------------------------------------ loading

/// Loads every `*.yaml` / `*.yml` file in `dir` (sorted by file name).
pub(crate) fn load_dir(dir: &Path) -> Result<BTreeMap<String, Arc<AgentDef>>, AgentConfigError> {
    let io_err = |file: &Path, e: std::io::Error| AgentConfigError {
        file: file.to_path_buf(),
        line: 0,
        message: format!("cannot read: {e}"),
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut out = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| io_err(&file, e))?;
        if peek_kind(&text).as_deref() == Some("llm") {
            continue; // an LLM agent: loaded by `super::graph::load_graph`
        }
        let def = parse_agent(&text, &file)?;
        if out.contains_key(&def.name) {
            return Err(AgentConfigError {
                line: Locator::new(&text).line("name"),
                message: format!("name: agent `{}` is already defined by another file in {}", def.name, dir.display()),
                file,
            });
        }
        out.insert(def.name.clone(), Arc::new(def));
    }
    Ok(out)
}

/// The top-level `kind:` of an agent file, when it is a string (`None` when
/// absent or when the YAML does not parse: the full parse reports that).
pub(crate) fn peek_kind(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Kind {
        kind: Option<String>,
    }
    serde_yaml_ng::from_str::<Kind>(text).ok().and_then(|k| k.kind)
}

/// Parses, validates and compiles one agent file's text (`file` names it in errors).
pub(crate) fn parse_agent(text: &str, file: &Path) -> Result<AgentDef, AgentConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let raw: AgentFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line()).unwrap_or_else(|| Locator::new(text).line(&field));
        let message = if field.is_empty() || field == "." { inner.to_string() } else { format!("{field}: {inner}") };
        AgentConfigError { file: file.to_path_buf(), line, message }
    })?;
    Compiler { file, loc: Locator::new(text), raw: &raw }.compile()
}

struct Compiler<'a> {
    file: &'a Path,
    loc: Locator,
    raw: &'a AgentFile,
}

impl Compiler<'_> {
    fn err(&self, path: &str, message: impl std::fmt::Display) -> AgentConfigError {
        AgentConfigError {
            file: self.file.to_path_buf(),
            line: self.loc.line(path),
            message: format!("{path}: {message}"),
        }
    }

    fn slot(&self, name: &str) -> Option<usize> {
        self.raw.slots.keys().position(|k| k == name)
    }

    fn node(&self, name: &str) -> Option<usize> {
        self.raw.nodes.keys().position(|k| k == name)
    }

    fn template(&self, path: &str, src: &str) -> Result<Template, AgentConfigError> {
        Template::parse(src, |s| self.slot(s)).map_err(|m| self.err(path, m))
    }

    fn opt_template(&self, path: &str, src: Option<&String>) -> Result<Option<Template>, AgentConfigError> {
        src.map(|s| self.template(path, s)).transpose()
    }

    fn node_ref(&self, path: &str, name: &str) -> Result<usize, AgentConfigError> {
        self.node(name).ok_or_else(|| {
            let known: Vec<&str> = self.raw.nodes.keys().map(String::as_str).collect();
            self.err(path, format!("unknown node `{name}` (nodes: {})", known.join(", ")))
        })
    }

    fn slot_refs(&self, path: &str, names: &[String]) -> Result<Vec<usize>, AgentConfigError> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                self.slot(n).ok_or_else(|| {
                    let known: Vec<&str> = self.raw.slots.keys().map(String::as_str).collect();
                    self.err(&format!("{path}[{i}]"), format!("unknown slot `{n}` (slots: {})", known.join(", ")))
                })
            })
            .collect()
    }

    fn compile(&self) -> Result<AgentDef, AgentConfigError> {
        let raw = self.raw;
        if raw.name.trim().is_empty() {
            return Err(self.err("name", "must not be empty"));
        }
        if !(raw.silence_timeout_s.is_finite() && raw.silence_timeout_s > 0.0 && raw.silence_timeout_s <= 600.0) {
            return Err(self.err("silence_timeout_s", "must be a number of seconds in (0, 600]"));
        }
        if !(1..=12).contains(&raw.earliest_hour) {
            return Err(self.err("earliest_hour", "must be an hour from 1 to 12"));
        }
        if raw.nodes.is_empty() {
            return Err(self.err("nodes", "at least one node is needed"));
        }
        let start_path = if self.loc.has("start") { "start" } else { "nodes" };
        let start = self
            .node(&raw.start)
            .ok_or_else(|| self.err(start_path, format!("start node `{}` is not defined under `nodes`", raw.start)))?;
        let transfer_target = match &raw.transfer {
            Some(t) if t.target.trim().is_empty() => return Err(self.err("transfer.target", "must not be empty")),
            Some(t) => Some(t.target.clone()),
            None => None,
        };
        let slots = self.compile_slots()?;
        let global_intents = raw
            .global_intents
            .iter()
            .enumerate()
            .map(|(i, f)| self.compile_intent(&format!("global_intents[{i}]"), f, transfer_target.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        check_unique_names(&raw.global_intents)
            .map_err(|i| self.err(&format!("global_intents[{i}].name"), "duplicate intent name"))?;
        let nodes = self.compile_nodes(transfer_target.as_deref())?;
        Ok(AgentDef {
            name: raw.name.clone(),
            language: raw.language.clone(),
            greeting: self.template("greeting", &raw.greeting)?,
            start,
            silence_timeout: Duration::from_secs_f64(raw.silence_timeout_s),
            max_reprompts: raw.max_reprompts,
            earliest_hour: raw.earliest_hour,
            fallback: self.template("fallback", &raw.fallback)?,
            silence_prompt: self.template("silence_prompt", &raw.silence_prompt)?,
            goodbye: self.template("goodbye", &raw.goodbye)?,
            give_up_no_input: self.template("give_up.no_input", &raw.give_up.no_input)?,
            give_up_no_match: self.template("give_up.no_match", &raw.give_up.no_match)?,
            transfer_say: match &raw.transfer {
                Some(t) => self.template("transfer.say", &t.say)?,
                None => self.template("transfer", &default_transfer_say())?,
            },
            transfer_failed: match &raw.transfer {
                Some(t) => self.template("transfer.failed", &t.failed)?,
                None => self.template("transfer", &default_transfer_failed())?,
            },
            transfer_mode: raw.transfer.as_ref().map(|t| t.mode).unwrap_or_default(),
            transfer_brief: raw.transfer.as_ref().map(|t| t.brief).unwrap_or_default(),
            resume: {
                let mut out = BTreeMap::new();
                for (intent, text) in &raw.resume {
                    let known = nodes.iter().any(|n| n.intents.iter().any(|i| &i.name == intent));
                    if !known {
                        return Err(self.err(&format!("resume.{intent}"), format!("no node intent named `{intent}`")));
                    }
                    out.insert(intent.clone(), self.template(&format!("resume.{intent}"), text)?);
                }
                out
            },
            slots,
            global_intents,
            nodes,
        })
    }

    fn compile_slots(&self) -> Result<Vec<SlotDef>, AgentConfigError> {
        let mut out = Vec::new();
        for (name, f) in &self.raw.slots {
            let path = format!("slots.{name}");
            let kind = match (f.kind, &f.values) {
                (SlotType::Enum, None) => {
                    return Err(self.err(&path, "an enum slot needs `values` (value: [synonyms])"));
                }
                (SlotType::Enum, Some(values)) => {
                    if values.is_empty() {
                        return Err(self.err(&format!("{path}.values"), "needs at least one value"));
                    }
                    let mut vals = Vec::new();
                    for (value, syns) in values {
                        let mut synonyms = vec![normalize(value)];
                        for (i, s) in syns.iter().flatten().enumerate() {
                            let n = normalize(s);
                            if n.is_empty() {
                                return Err(self.err(
                                    &format!("{path}.values.{value}[{i}]"),
                                    format!("synonym `{s}` has no words"),
                                ));
                            }
                            synonyms.push(n);
                        }
                        synonyms.retain(|s| !s.is_empty());
                        if synonyms.is_empty() {
                            return Err(self.err(&format!("{path}.values.{value}"), "value has no words"));
                        }
                        synonyms.sort_by_key(|s| std::cmp::Reverse(s.len()));
                        vals.push(EnumValue { value: value.clone(), synonyms });
                    }
                    SlotKind::Enum(vals)
                }
                (_, Some(_)) => return Err(self.err(&format!("{path}.values"), "only enum slots have values")),
                (SlotType::Date, None) => SlotKind::Date,
                (SlotType::Time, None) => SlotKind::Time,
                (SlotType::Number, None) => SlotKind::Number,
                (SlotType::YesNo, None) => SlotKind::YesNo,
                (SlotType::Name, None) => SlotKind::Name,
            };
            out.push(SlotDef {
                name: name.clone(),
                kind,
                ask: self.template(&format!("{path}.ask"), &f.ask)?,
                retry: self.opt_template(&format!("{path}.retry"), f.retry.as_ref())?,
            });
        }
        Ok(out)
    }

    fn compile_intent(&self, path: &str, f: &IntentFile, transfer: Option<&str>) -> Result<Intent, AgentConfigError> {
        if f.name.trim().is_empty() {
            return Err(self.err(&format!("{path}.name"), "must not be empty"));
        }
        let mut phrases = Vec::new();
        for (i, p) in f.phrases.iter().enumerate() {
            let n = normalize(p);
            if n.is_empty() {
                return Err(self.err(&format!("{path}.phrases[{i}]"), format!("phrase `{p}` has no words")));
            }
            phrases.push(n);
        }
        let mut patterns = Vec::new();
        for (i, p) in f.patterns.iter().enumerate() {
            let re = Regex::new(p).map_err(|e| {
                let msg = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
                self.err(&format!("{path}.patterns[{i}]"), format!("bad regex `{p}`: {msg}"))
            })?;
            patterns.push(re);
        }
        let dtmf = match f.dtmf.as_deref() {
            None => None,
            Some(d) => {
                let mut chars = d.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if "0123456789*#".contains(c) => Some(c),
                    _ => return Err(self.err(&format!("{path}.dtmf"), format!("`{d}` is not one DTMF key (0-9, *, #)"))),
                }
            }
        };
        if phrases.is_empty() && patterns.is_empty() && f.confirm.is_none() && dtmf.is_none() {
            return Err(self.err(
                path,
                format!("intent `{}` never matches: give it phrases, patterns, dtmf or confirm", f.name),
            ));
        }
        let action = match (f.action, &f.target) {
            (Some(ActionFile::Transfer), t) => {
                let Some(target) = t.as_deref().or(transfer) else {
                    return Err(self.err(
                        &format!("{path}.action"),
                        "transfer needs a `target` here or a top-level `transfer.target`",
                    ));
                };
                Some(Action::Transfer(target.to_string()))
            }
            (_, Some(_)) => return Err(self.err(&format!("{path}.target"), "only with `action: transfer`")),
            (Some(ActionFile::Hangup), None) => Some(Action::Hangup),
            (Some(ActionFile::Repeat), None) => Some(Action::Repeat),
            (None, None) => None,
        };
        if action.is_some() && (f.next.is_some() || !f.slots.is_empty()) {
            return Err(self.err(&format!("{path}.action"), "an intent with an action has no `next` or `slots`"));
        }
        Ok(Intent {
            name: f.name.clone(),
            phrases,
            patterns,
            dtmf,
            confirm: f.confirm.map(|c| c == ConfirmFile::Yes),
            slots: self.slot_refs(&format!("{path}.slots"), &f.slots)?,
            reuse: self.slot_refs(&format!("{path}.reuse"), &f.reuse)?,
            reset: self.slot_refs(&format!("{path}.reset"), &f.reset)?,
            ack: self.opt_template(&format!("{path}.ack"), f.ack.as_ref())?,
            reply: self.opt_template(&format!("{path}.reply"), f.reply.as_ref())?,
            next: f.next.as_ref().map(|n| self.node_ref(&format!("{path}.next"), n)).transpose()?,
            action,
        })
    }

    fn compile_nodes(&self, transfer: Option<&str>) -> Result<Vec<Node>, AgentConfigError> {
        let mut nodes = Vec::new();
        for (name, f) in &self.raw.nodes {
            let path = format!("nodes.{name}");
            let intents = f
                .intents
                .iter()
                .enumerate()
                .map(|(i, it)| self.compile_intent(&format!("{path}.intents[{i}]"), it, transfer))
                .collect::<Result<Vec<_>, _>>()?;
            check_unique_names(&f.intents)
                .map_err(|i| self.err(&format!("{path}.intents[{i}].name"), "duplicate intent name in this node"))?;
            if let Some(t) = &f.transfer {
                if t.trim().is_empty() {
                    return Err(self.err(&format!("{path}.transfer"), "must not be empty"));
                }
                if f.end {
                    return Err(self.err(&format!("{path}.transfer"), "a node either ends the call or transfers it"));
                }
            }
            if (f.end || f.transfer.is_some()) && (!f.intents.is_empty() || f.inherit.is_some()) {
                return Err(self.err(
                    &format!("{path}.intents"),
                    "the call leaves an end or transfer node after its `say`; intents there would never be heard",
                ));
            }
            if let Some(inh) = &f.inherit {
                self.node_ref(&format!("{path}.inherit"), inh)?;
            }
            let no_match_next = f
                .on_no_match
                .as_ref()
                .and_then(|n| n.next.as_ref())
                .map(|n| self.node_ref(&format!("{path}.on_no_match.next"), n))
                .transpose()?;
            nodes.push(Node {
                name: name.clone(),
                say: self.opt_template(&format!("{path}.say"), f.say.as_ref())?,
                intents,
                on_no_match: self.opt_template(
                    &format!("{path}.on_no_match.say"),
                    f.on_no_match.as_ref().and_then(|n| n.say.as_ref()),
                )?,
                no_match_next,
                on_silence: self
                    .opt_template(&format!("{path}.on_silence.say"), f.on_silence.as_ref().map(|s| &s.say))?,
                end: f.end,
                transfer: f.transfer.clone(),
            });
        }
        // inherited intents (transitively, own intents first)
        let own: Vec<Vec<Intent>> = nodes.iter().map(|n| n.intents.clone()).collect();
        for (idx, (name, f)) in self.raw.nodes.iter().enumerate() {
            let mut seen = vec![idx];
            let mut cur = f.inherit.as_ref();
            while let Some(parent) = cur {
                let p = self.node_ref(&format!("nodes.{name}.inherit"), parent)?;
                if seen.contains(&p) {
                    return Err(
                        self.err(&format!("nodes.{name}.inherit"), format!("inheritance cycle through `{parent}`"))
                    );
                }
                seen.push(p);
                nodes[idx].intents.extend(own[p].iter().cloned());
                cur = self.raw.nodes.get(parent).and_then(|n| n.inherit.as_ref());
            }
        }
        for n in &nodes {
            let way_out = n.end
                || n.transfer.is_some()
                || n.no_match_next.is_some()
                || n.intents
                    .iter()
                    .any(|i| i.next.is_some() || matches!(i.action, Some(Action::Hangup | Action::Transfer(_))));
            if !way_out {
                return Err(self.err(
                    &format!("nodes.{}", n.name),
                    "node has no way out: give it an intent with `next` or a hangup/transfer action, \
                     `on_no_match.next`, `end: true` or `transfer`",
                ));
            }
        }
        Ok(nodes)
    }
}

/// Index of the first intent whose name repeats an earlier one.
fn check_unique_names(intents: &[IntentFile]) -> Result<(), usize> {
    for (i, it) in intents.iter().enumerate() {
        if intents[..i].iter().any(|o| o.name == it.name) {
            return Err(i);
        }
    }
    Ok(())
}

// ------------------------------------------------------------ field path → line

/// Maps dotted field paths (`nodes.start.intents[0].next`) to the 1-based
/// line where they are written, for block-style YAML (mappings and `- `
/// sequences; flow collections `[a, b]` resolve to their key's line; block
/// scalars `|`/`>` are skipped). An unknown path falls back to its nearest
/// known ancestor, then 0.
#[derive(Debug, Default)]
pub(crate) struct Locator {
    lines: HashMap<String, usize>,
}

impl Locator {
    /// Indexes `text`.
    pub(crate) fn new(text: &str) -> Self {
        let mut lines = HashMap::new();
        // (indent, path, is a sequence item)
        let mut stack: Vec<(usize, String, bool)> = Vec::new();
        let mut counters: HashMap<String, usize> = HashMap::new();
        let mut block_scalar: Option<usize> = None;
        for (n, raw) in text.lines().enumerate() {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut indent = raw.len() - trimmed.len();
            if let Some(bi) = block_scalar {
                if indent > bi {
                    continue;
                }
                block_scalar = None;
            }
            if trimmed.starts_with("---") || trimmed.starts_with("...") {
                stack.clear();
                continue;
            }
            let mut rest = trimmed;
            while rest == "-" || rest.starts_with("- ") {
                while stack.last().is_some_and(|(i, _, item)| *i > indent || (*i == indent && *item)) {
                    stack.pop();
                }
                let parent = stack.last().map(|s| s.1.clone()).unwrap_or_default();
                let counter = counters.entry(parent.clone()).or_insert(0);
                let path = format!("{parent}[{counter}]");
                *counter += 1;
                lines.entry(path.clone()).or_insert(n + 1);
                stack.push((indent, path, true));
                let after = rest[1..].trim_start();
                indent += rest.len() - after.len();
                rest = after;
            }
            let Some((key, value)) = split_key(rest) else { continue };
            while stack.last().is_some_and(|(i, _, _)| *i >= indent) {
                stack.pop();
            }
            let path = match stack.last() {
                Some((_, p, _)) => format!("{p}.{key}"),
                None => key.to_string(),
            };
            lines.entry(path.clone()).or_insert(n + 1);
            counters.remove(&path);
            stack.push((indent, path, false));
            let v = value.trim();
            if v.starts_with('|') || v.starts_with('>') {
                block_scalar = Some(indent);
            }
        }
        Locator { lines }
    }

    /// Line of `path` or of its nearest written ancestor; 0 when none.
    pub(crate) fn line(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return *l;
            }
            let cut = p.rfind(['.', '[']);
            match cut {
                Some(c) if c > 0 => p = &p[..c],
                _ => return 0,
            }
        }
    }

    /// Whether `path` itself is written in the file.
    pub(crate) fn has(&self, path: &str) -> bool {
        self.lines.contains_key(path)
    }
}

/// `key: value` → (key, value) for a plain or quoted key.
fn split_key(s: &str) -> Option<(&str, &str)> {
    if s.starts_with(['{', '[']) {
        return None;
    }
    if let Some(q) = s.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let close = s[1..].find(q)? + 1;
        let after = s[close + 1..].trim_start();
        let value = after.strip_prefix(':')?;
        return Some((&s[1..close], value));
    }
    let pos = s.find(": ").or_else(|| s.strip_suffix(':').map(|k| k.len()))?;
    let key = s[..pos].trim_end();
    if key.is_empty() || key.contains(" #") {
        return None;
    }
    Some((key, s.get(pos + 1..).unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locator_finds_nested_fields() {
        let y = "\
name: x
nodes:
  start:
    say: |
      hello
      next: fake
    intents:
      - name: a
        phrases: [hi]
        next: end
      - name: b
        next: start
  end:
    intents:
    - name: c
      next: start
";
        let l = Locator::new(y);
        assert_eq!(l.line("name"), 1);
        assert_eq!(l.line("nodes.start.say"), 4);
        assert_eq!(l.line("nodes.start.intents[0]"), 8);
        assert_eq!(l.line("nodes.start.intents[0].next"), 10);
        assert_eq!(l.line("nodes.start.intents[1].next"), 12);
        assert_eq!(l.line("nodes.start.intents[0].phrases[0]"), 9);
        assert_eq!(l.line("nodes.end.intents[0].next"), 16);
        assert_eq!(l.line("nodes.start.next"), 3, "falls back to the ancestor");
        assert_eq!(l.line("other"), 0);
    }

    #[test]
    fn quoted_keys_and_values_with_colons() {
        let y = "a:\n  \"b c\": 1\n  d: 'x: y'\n";
        let l = Locator::new(y);
        assert_eq!(l.line("a.b c"), 2);
        assert_eq!(l.line("a.d"), 3);
    }
}
