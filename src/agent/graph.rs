//! The agent graph: LLM agent definitions, loading and cross-file
//! validation, and the pure transition function.
//!
//! # Files
//! `sip-config/agents/*.yaml` holds one agent per file. A file with
//! `kind: llm` is an LLM agent ([`LlmAgentDef`], schema in
//! [`crate::agent`]); a file without `kind` (or `kind: flow`) is a flow
//! agent ([`AgentDef`]), loaded exactly as [`super::flow::load_agents`]
//! does. [`load_graph`] loads both kinds and checks the edges between them:
//! a handoff names an LLM agent, an escalation `agent:` names any agent,
//! every agent is reachable from the `entry` agents (those the routes
//! name) through handoffs and agent escalations. Errors name the file and
//! line, like the flow agent's.
//!
//! # Transitions
//! [`next`] is a pure function of a [`GraphState`] (the current LLM agent
//! and its consecutive failure count) and one [`GraphEvent`]: the first
//! escalation edge whose condition fires wins, then the first handoff edge;
//! otherwise [`Transition::Stay`]. No IO, no clock.

use super::config::{Locator, parse_agent, peek_kind};
use super::escalation::{Condition, EscalationTarget};
use super::flow::{AgentConfigError, AgentDef};
use super::tools::{BuiltinTool, HttpToolDef, HttpToolFile, SET_INTENT, check_schema, placeholders};
use crate::providers::ToolSpec;
use crate::providers::llm::LlmConfig;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

// ------------------------------------------------------------ types

/// A speech provider an LLM agent may choose for STT or TTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeechProvider {
    /// The offline default (Moonshine STT, Piper TTS).
    Local,
    /// Deepgram streaming STT.
    Deepgram,
    /// ElevenLabs streaming TTS.
    Elevenlabs,
    /// OpenAI TTS.
    Openai,
}

impl SpeechProvider {
    fn name(self) -> &'static str {
        match self {
            SpeechProvider::Local => "local",
            SpeechProvider::Deepgram => "deepgram",
            SpeechProvider::Elevenlabs => "elevenlabs",
            SpeechProvider::Openai => "openai",
        }
    }
}

/// A tool an agent offers the model.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentTool {
    /// A built-in.
    Builtin(BuiltinTool),
    /// An HTTP tool defined in the agent's file.
    Http(HttpToolDef),
}

impl AgentTool {
    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            AgentTool::Builtin(b) => b.name(),
            AgentTool::Http(h) => &h.name,
        }
    }
}

/// A handoff edge: to another LLM agent of the same call, which keeps the
/// conversation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    /// The LLM agent taking over.
    pub to: String,
    /// What triggers it.
    pub when: Condition,
}

/// An escalation edge: the call leaves this agent for a target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// Where the call goes.
    pub to: EscalationTarget,
    /// What triggers it.
    pub when: Condition,
}

/// A loaded, validated LLM agent (shared by all its calls).
#[derive(Debug, Clone)]
pub struct LlmAgentDef {
    /// `name:`, unique across the directory.
    pub name: String,
    /// `language:` (BCP 47, default `en`).
    pub language: String,
    /// Said when the call starts.
    pub greeting: String,
    /// The system prompt template (`{caller}`, `{did}`, `{intent}`,
    /// `{summary}`, `{language}`, `{tier}` and context slot names).
    pub instructions: String,
    /// LLM fallback list, tried in order (see `FallbackLlm`).
    pub llm: Vec<LlmConfig>,
    /// STT provider, when not the service default.
    pub stt: Option<SpeechProvider>,
    /// TTS provider, when not the service default.
    pub tts: Option<SpeechProvider>,
    /// TTS voice name.
    pub voice: Option<String>,
    /// Tools in the order listed.
    pub tools: Vec<AgentTool>,
    /// Said when a tool takes longer than `filler_after`.
    pub filler: String,
    /// How long a tool may run before the filler.
    pub filler_after: Duration,
    /// Handoff edges, tried in order after the escalations.
    pub handoffs: Vec<Handoff>,
    /// Escalation edges, tried in order first.
    pub escalations: Vec<Escalation>,
    /// Consecutive failures after which the agent gives up (hangs up) when
    /// no `failures` edge took the call first.
    pub max_failures: u32,
    /// Said when the model cannot answer (provider error, malformed tool
    /// call after its re-ask).
    pub fallback_phrase: String,
    /// Said before an escalation the agent decides on its own (a caller
    /// request, keywords, sentiment, failures).
    pub escalation_say: String,
}

impl LlmAgentDef {
    /// Parses and validates one LLM agent file's text (edges to other
    /// agents are checked by [`load_graph`]); `file` names it in errors.
    pub fn from_yaml(text: &str, file: &Path) -> Result<LlmAgentDef, AgentConfigError> {
        parse_llm_agent(text, file).map(|(def, _)| def)
    }

    /// The HTTP tool with this name.
    pub fn http_tool(&self, name: &str) -> Option<&HttpToolDef> {
        self.tools.iter().find_map(|t| match t {
            AgentTool::Http(h) if h.name == name => Some(h),
            _ => None,
        })
    }

    /// Whether the agent offers the tool `name`.
    pub fn has_tool(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name() == name) || (name == SET_INTENT && !self.intents().is_empty())
    }

    /// Intent names its edges react to (the `set_intent` tool's choices).
    pub fn intents(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let conds = self.escalations.iter().map(|e| &e.when).chain(self.handoffs.iter().map(|h| &h.when));
        for c in conds {
            if let Condition::Intent(i) = c
                && !out.contains(i)
            {
                out.push(i.clone());
            }
        }
        out
    }

    /// The tools as the model sees them (plus `set_intent` when an edge
    /// reacts to intents).
    pub fn tool_specs(&self) -> Vec<ToolSpec> {
        let mut out: Vec<ToolSpec> = self
            .tools
            .iter()
            .map(|t| match t {
                AgentTool::Builtin(b) => b.spec(),
                AgentTool::Http(h) => h.spec(),
            })
            .collect();
        let intents = self.intents();
        if !intents.is_empty() {
            out.push(super::tools::set_intent_spec(&intents));
        }
        out
    }
}

/// Every agent of a directory, edges validated.
#[derive(Debug, Default)]
pub struct AgentGraph {
    /// LLM agents by name.
    llm: BTreeMap<String, Arc<LlmAgentDef>>,
    /// Flow agents by name.
    flow: BTreeMap<String, Arc<AgentDef>>,
}

impl AgentGraph {
    /// The LLM agent `name`.
    pub fn llm_agent(&self, name: &str) -> Option<&Arc<LlmAgentDef>> {
        self.llm.get(name)
    }

    /// The flow agent `name`.
    pub fn flow_agent(&self, name: &str) -> Option<&Arc<AgentDef>> {
        self.flow.get(name)
    }

    /// All flow agents (what [`super::flow::load_agents`] returns).
    pub fn flow_agents(&self) -> &BTreeMap<String, Arc<AgentDef>> {
        &self.flow
    }

    /// All LLM agents.
    pub fn llm_agents(&self) -> &BTreeMap<String, Arc<LlmAgentDef>> {
        &self.llm
    }

    /// Whether an agent of either kind is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.llm.contains_key(name) || self.flow.contains_key(name)
    }
}

/// Where a call stands in the graph: the LLM agent talking and its
/// consecutive failures (including the one being reported by
/// [`GraphEvent::Failure`]).
#[derive(Debug, Clone)]
pub struct GraphState {
    /// The agent in charge.
    pub agent: Arc<LlmAgentDef>,
    /// Consecutive failures so far.
    pub failures: u32,
}

/// Something that happened in the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum GraphEvent {
    /// The model called a tool.
    ToolCalled {
        /// Tool name.
        name: String,
        /// Its arguments.
        args: serde_json::Value,
    },
    /// The model reported an intent (`set_intent`).
    IntentRecognized(String),
    /// The caller asked for a person by other means (DTMF 0, a button).
    HumanRequested,
    /// The model failed once more (already counted in `GraphState::failures`).
    Failure,
    /// The caller said this (human requests, keywords, sentiment).
    Utterance(String),
}

/// What the graph decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Carry on with the same agent.
    Stay,
    /// Another LLM agent takes over the conversation (messages kept).
    Handoff {
        /// The agent's name.
        to_agent: String,
    },
    /// The call leaves this agent.
    Escalate {
        /// Where to.
        target: EscalationTarget,
        /// Why (see [`Condition::reason`]).
        reason: String,
    },
}

/// The transition for `event` in `state`: the first escalation whose
/// condition fires, else the first handoff, else [`Transition::Stay`].
pub fn next(state: &GraphState, event: &GraphEvent) -> Transition {
    let def = &state.agent;
    if let Some(e) = def.escalations.iter().find(|e| e.when.matches(event, state.failures)) {
        return Transition::Escalate { target: e.to.clone(), reason: e.when.reason(event) };
    }
    if let Some(h) = def.handoffs.iter().find(|h| h.when.matches(event, state.failures)) {
        return Transition::Handoff { to_agent: h.to.clone() };
    }
    Transition::Stay
}

// ------------------------------------------------------------ the file as written

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LlmAgentFile {
    #[allow(dead_code)]
    kind: String,
    name: String,
    #[serde(default = "default_language")]
    language: String,
    greeting: String,
    instructions: String,
    llm: Vec<LlmConfig>,
    stt: Option<SpeechProvider>,
    tts: Option<SpeechProvider>,
    voice: Option<String>,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    http_tools: BTreeMap<String, HttpToolFile>,
    #[serde(default = "default_filler")]
    filler: String,
    #[serde(default = "default_filler_after_ms")]
    filler_after_ms: u64,
    #[serde(default)]
    handoffs: Vec<Handoff>,
    #[serde(default)]
    escalations: Vec<Escalation>,
    #[serde(default = "default_max_failures")]
    max_failures: u32,
    #[serde(default = "default_fallback_phrase")]
    fallback_phrase: String,
    #[serde(default = "default_escalation_say")]
    escalation_say: String,
}

fn default_language() -> String {
    "en".into()
}
fn default_filler() -> String {
    "One moment while I check that.".into()
}
fn default_filler_after_ms() -> u64 {
    1200
}
fn default_max_failures() -> u32 {
    3
}
fn default_fallback_phrase() -> String {
    "I'm sorry, I'm having trouble answering right now. Could you say that again?".into()
}
fn default_escalation_say() -> String {
    "Let me connect you with someone who can help. One moment please.".into()
}

// ------------------------------------------------------------ loading

/// Loads every `*.yaml` / `*.yml` in `dir` (both kinds) and validates the
/// graph with `entry` as the agents calls start with (those the routes
/// name). Errors name file and line: everything [`super::flow::load_agents`]
/// reports, plus for LLM agents an unknown tool, an HTTP tool without a
/// `parameters` schema (or a bad one, or a URL placeholder it does not
/// define), a bad `llm` entry, an unknown `stt`/`tts` name, a handoff or
/// escalation naming no agent, a `tool:` condition naming a tool the agent
/// does not offer, and an agent no entry reaches. An entry naming no agent
/// is an error on `dir` (line 0).
pub fn load_graph(dir: &Path, entry: &[String]) -> Result<AgentGraph, AgentConfigError> {
    let io_err = |file: &Path, e: std::io::Error| AgentConfigError {
        file: file.to_path_buf(),
        line: 0,
        message: format!("cannot read: {e}"),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut sources = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| io_err(&file, e))?;
        sources.push((file, text));
    }
    graph_from_sources(dir, &sources, entry)
}

/// One loaded file, kept for cross-file errors.
struct Loaded<'a> {
    file: &'a Path,
    loc: Locator,
}

/// [`load_graph`] over file contents already read (`dir` names the
/// directory in entry errors).
pub(crate) fn graph_from_sources(
    dir: &Path,
    sources: &[(PathBuf, String)],
    entry: &[String],
) -> Result<AgentGraph, AgentConfigError> {
    let mut graph = AgentGraph::default();
    let mut loaded: BTreeMap<String, Loaded> = BTreeMap::new();
    for (file, text) in sources {
        let loc = Locator::new(text);
        let name = if peek_kind(text).as_deref() == Some("llm") {
            let (def, _) = parse_llm_agent(text, file)?;
            let name = def.name.clone();
            if !graph.contains(&name) {
                graph.llm.insert(name.clone(), Arc::new(def));
            }
            name
        } else {
            let def = parse_agent(text, file)?;
            let name = def.name().to_string();
            if !graph.contains(&name) {
                graph.flow.insert(name.clone(), Arc::new(def));
            }
            name
        };
        if let Some(first) = loaded.get(&name) {
            return Err(AgentConfigError {
                file: file.clone(),
                line: loc.line("name"),
                message: format!("name: agent `{name}` is already defined by {}", first.file.display()),
            });
        }
        loaded.insert(name, Loaded { file, loc });
    }
    validate_graph(&graph, &loaded, dir, entry)?;
    Ok(graph)
}

/// Edges name existing agents; every agent is reachable from `entry`.
fn validate_graph(
    graph: &AgentGraph,
    loaded: &BTreeMap<String, Loaded>,
    dir: &Path,
    entry: &[String],
) -> Result<(), AgentConfigError> {
    let err = |agent: &str, path: &str, message: String| {
        let l = &loaded[agent];
        AgentConfigError { file: l.file.to_path_buf(), line: l.loc.line(path), message: format!("{path}: {message}") }
    };
    let known = || {
        let mut names: Vec<&str> = loaded.keys().map(String::as_str).collect();
        names.sort();
        names.join(", ")
    };
    for (name, def) in &graph.llm {
        for (i, h) in def.handoffs.iter().enumerate() {
            let path = format!("handoffs[{i}].to");
            if graph.flow.contains_key(&h.to) {
                return Err(err(
                    name,
                    &path,
                    format!("`{}` is a flow agent; a handoff keeps the conversation and needs an LLM agent (escalate to a flow agent instead)", h.to),
                ));
            }
            if !graph.llm.contains_key(&h.to) {
                return Err(err(name, &path, format!("unknown agent `{}` (agents: {})", h.to, known())));
            }
        }
        for (i, e) in def.escalations.iter().enumerate() {
            if let EscalationTarget::Agent(a) = &e.to
                && !graph.contains(a)
            {
                return Err(err(name, &format!("escalations[{i}].to.agent"), format!("unknown agent `{a}` (agents: {})", known())));
            }
        }
    }
    for e in entry {
        if !graph.contains(e) {
            return Err(AgentConfigError {
                file: dir.to_path_buf(),
                line: 0,
                message: format!("entry agent `{e}` is not defined in this directory (agents: {})", known()),
            });
        }
    }
    // reachability from the entries through handoffs and agent escalations
    let mut reached: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = entry.iter().map(String::as_str).collect();
    while let Some(a) = todo.pop() {
        if !reached.insert(a) {
            continue;
        }
        let Some(def) = graph.llm.get(a) else { continue };
        todo.extend(def.handoffs.iter().map(|h| h.to.as_str()));
        todo.extend(def.escalations.iter().filter_map(|e| match &e.to {
            EscalationTarget::Agent(a) => Some(a.as_str()),
            _ => None,
        }));
    }
    if let Some(lost) = loaded.keys().find(|n| !reached.contains(n.as_str())) {
        return Err(err(
            lost,
            "name",
            format!(
                "agent `{lost}` is unreachable: it is not an entry agent ({}) and no handoff or escalation leads to it",
                entry.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Parses and validates one LLM agent file (its own fields; edges to other
/// agents are checked by [`validate_graph`]).
fn parse_llm_agent(text: &str, file: &Path) -> Result<(LlmAgentDef, Locator), AgentConfigError> {
    let loc = Locator::new(text);
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let raw: LlmAgentFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line()).unwrap_or_else(|| loc.line(&field));
        let text = inner.to_string();
        let message = if field.is_empty() || field == "." || text.starts_with(&field) {
            text
        } else {
            format!("{field}: {text}")
        };
        AgentConfigError { file: file.to_path_buf(), line, message }
    })?;
    let err = |path: &str, message: String| AgentConfigError {
        file: file.to_path_buf(),
        line: loc.line(path),
        message: format!("{path}: {message}"),
    };
    if raw.name.trim().is_empty() {
        return Err(err("name", "must not be empty".into()));
    }
    if raw.instructions.trim().is_empty() {
        return Err(err("instructions", "must not be empty".into()));
    }
    if raw.llm.is_empty() {
        return Err(err("llm", "at least one LLM is needed".into()));
    }
    for (i, c) in raw.llm.iter().enumerate() {
        c.validate().map_err(|e| err(&format!("llm[{i}]"), e.to_string()))?;
    }
    if let Some(s) = raw.stt
        && !matches!(s, SpeechProvider::Local | SpeechProvider::Deepgram)
    {
        return Err(err("stt", format!("`{}` has no STT here (local, deepgram)", s.name())));
    }
    if let Some(t) = raw.tts
        && t == SpeechProvider::Deepgram
    {
        return Err(err("tts", format!("`{}` has no TTS here (local, elevenlabs, openai)", t.name())));
    }
    if raw.filler_after_ms == 0 || raw.filler_after_ms > 60_000 {
        return Err(err("filler_after_ms", "must be in 1..=60000".into()));
    }
    if raw.max_failures == 0 {
        return Err(err("max_failures", "must be at least 1".into()));
    }
    // HTTP tools
    let mut http: BTreeMap<&str, HttpToolDef> = BTreeMap::new();
    for (name, f) in &raw.http_tools {
        let path = format!("http_tools.{name}");
        if BuiltinTool::from_name(name).is_some() || name == SET_INTENT {
            return Err(err(&path, format!("`{name}` is a built-in tool name")));
        }
        let Some(parameters) = &f.parameters else {
            return Err(err(&path, format!("HTTP tool `{name}` has no `parameters` JSON schema")));
        };
        check_schema(parameters).map_err(|m| err(&format!("{path}.parameters"), m))?;
        if !(f.url.starts_with("http://") || f.url.starts_with("https://")) {
            return Err(err(&format!("{path}.url"), "must start with http:// or https://".into()));
        }
        let props = parameters.get("properties").and_then(|p| p.as_object());
        for p in placeholders(&f.url) {
            if !props.is_some_and(|m| m.contains_key(&p)) {
                return Err(err(&format!("{path}.url"), format!("`{{{p}}}` is not a property of `parameters`")));
            }
        }
        if f.timeout_ms == 0 || f.timeout_ms > 120_000 {
            return Err(err(&format!("{path}.timeout_ms"), "must be in 1..=120000".into()));
        }
        http.insert(
            name,
            HttpToolDef {
                name: name.clone(),
                method: f.method,
                url: f.url.clone(),
                description: f.description.clone(),
                parameters: parameters.clone(),
                timeout: Duration::from_millis(f.timeout_ms),
                headers: f.headers.clone(),
            },
        );
    }
    let mut tools = Vec::new();
    for (i, t) in raw.tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        if raw.tools[..i].contains(t) {
            return Err(err(&path, format!("tool `{t}` is listed twice")));
        }
        let tool = match (BuiltinTool::from_name(t), http.get(t.as_str())) {
            (Some(b), _) => AgentTool::Builtin(b),
            (None, Some(h)) => AgentTool::Http(h.clone()),
            (None, None) => {
                let builtins: Vec<&str> = BuiltinTool::ALL.iter().map(|b| b.name()).collect();
                return Err(err(
                    &path,
                    format!(
                        "unknown tool `{t}` (built-ins: {}; or define it under `http_tools`)",
                        builtins.join(", ")
                    ),
                ));
            }
        };
        tools.push(tool);
    }
    if let Some(unused) = http.keys().find(|n| !raw.tools.iter().any(|t| t == *n)) {
        return Err(err(&format!("http_tools.{unused}"), format!("HTTP tool `{unused}` is not listed under `tools`")));
    }
    let conds = raw
        .escalations
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("escalations[{i}].when"), &e.when))
        .chain(raw.handoffs.iter().enumerate().map(|(i, h)| (format!("handoffs[{i}].when"), &h.when)));
    for (path, c) in conds {
        match c {
            Condition::Tool(t) if !raw.tools.contains(t) => {
                return Err(err(&path, format!("tool `{t}` is not one of this agent's `tools`")));
            }
            Condition::Failures(0) => return Err(err(&path, "`failures` must be at least 1".into())),
            Condition::Keywords(k) if k.is_empty() || k.iter().any(|w| w.trim().is_empty()) => {
                return Err(err(&path, "`keywords` needs at least one non-empty word".into()));
            }
            Condition::HumanRequest(false) => {
                return Err(err(&path, "`human_request: false` never fires; use `true`".into()));
            }
            Condition::Intent(i) if i.trim().is_empty() => {
                return Err(err(&path, "`intent` must not be empty".into()));
            }
            _ => {}
        }
    }
    let def = LlmAgentDef {
        name: raw.name,
        language: raw.language,
        greeting: raw.greeting,
        instructions: raw.instructions,
        llm: raw.llm,
        stt: raw.stt,
        tts: raw.tts,
        voice: raw.voice,
        tools,
        filler: raw.filler,
        filler_after: Duration::from_millis(raw.filler_after_ms),
        handoffs: raw.handoffs,
        escalations: raw.escalations,
        max_failures: raw.max_failures,
        fallback_phrase: raw.fallback_phrase,
        escalation_say: raw.escalation_say,
    };
    Ok((def, loc))
}

#[cfg(test)]
#[path = "tests_graph.rs"]
mod tests;
