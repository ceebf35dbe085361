//! The LLM agent: one [`LlmAgent`] per call holds the conversation with a
//! language model for an [`LlmAgentDef`], sans-IO.
//!
//! # Turn contract
//! The call layer owns the provider (`FallbackLlm` over the agent's `llm`
//! list: timeouts, one retry, fallback providers), the TTS stream and the
//! tool executor ([`super::tools::execute`]); the agent only decides.
//! 1. [`LlmAgent::greeting`] once when the call is answered (or after a
//!    [`LlmAgent::handoff`]).
//! 2. Each final transcript goes to [`LlmAgent::on_caller_turn`], which
//!    first asks the graph ([`super::graph::next`]) whether the words
//!    escalate (a request for a person, keywords, sentiment) and otherwise
//!    returns [`AgentStep::Request`]: stream that request
//!    ([`LlmRequest`]) and feed every event to [`LlmAgent::on_llm_event`].
//!    ([`LlmAgent::on_user_turn`] is the bare "append and ask" step without
//!    the graph check.)
//! 3. Steps come back in order: [`AgentStep::Say`] one sentence at a time
//!    as tokens arrive (via `SentenceChunker`, so TTS starts on the first
//!    sentence); then, when the reply ends, either [`AgentStep::Done`]
//!    (listen), a follow-up [`AgentStep::Request`] (after tool results or a
//!    re-ask: stream it the same way), [`AgentStep::RunTool`]s to execute
//!    and answer with [`LlmAgent::on_tool_result`] (the last answer returns
//!    the follow-up `Request`), or one terminal step ([`AgentStep::Hangup`],
//!    [`AgentStep::Transfer`], [`AgentStep::Escalate`],
//!    [`AgentStep::Handoff`]) after which the agent ignores further input.
//! 4. While tools run, after [`LlmAgent::filler_after`] the call layer
//!    calls [`LlmAgent::on_tool_slow`], which gives one
//!    [`AgentStep::Filler`] per turn.
//! 5. On barge-in the call layer cancels the stream and TTS and reports
//!    what the caller actually heard with [`LlmAgent::on_heard`], so the
//!    conversation records only that.
//!
//! # Failures
//! A malformed tool call (`is_malformed_tool_call`) is re-asked once per
//! turn with `malformed_tool_call_reask`; a second one in the same turn,
//! or any other provider error (after the provider layer's own retry and
//! fallbacks), says the agent's `fallback_phrase` and counts one failure.
//! Failures are consecutive (a good reply resets them); the graph's
//! `failures: N` edges see the count, and `max_failures` without such an
//! edge hangs up with reason `llm-failures`. `Cancelled` is a barge-in, not
//! a failure.

use super::context::CallContext;
use super::graph::{GraphEvent, GraphState, LlmAgentDef, Transition, next};
use super::escalation::EscalationTarget;
use super::tools::{BuiltinTool, SET_INTENT, validate_args};
use crate::providers::llm::{SentenceChunker, is_malformed_tool_call, malformed_tool_call_reask};
use crate::providers::{ChatMessage, LlmEvent, ProviderError, Role, ToolCallMsg, ToolSpec};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A completion to stream: the whole conversation (system prompt first)
/// and the tools on offer.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// Messages, system prompt first.
    pub messages: Vec<ChatMessage>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
}

/// What the agent asks the call layer to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentStep {
    /// Speak one sentence (as soon as it is complete in the stream).
    Say(String),
    /// Execute a tool (HTTP, `confirm_appointment`, `detect_voicemail`)
    /// and answer with [`LlmAgent::on_tool_result`].
    RunTool {
        /// The model's call id.
        id: String,
        /// Tool name.
        name: String,
        /// Validated arguments (a JSON object).
        arguments: Value,
    },
    /// Speak this while a slow tool runs.
    Filler(String),
    /// Another LLM agent takes over: `LlmAgent::handoff`, then its `greeting`.
    Handoff {
        /// The agent's name.
        to: String,
    },
    /// Leave this agent for a target (the call context goes with it:
    /// [`LlmAgent::context`]).
    Escalate {
        /// Where to.
        target: EscalationTarget,
        /// Why.
        reason: String,
    },
    /// End the call after what was said has played.
    Hangup {
        /// For the call record.
        reason: String,
    },
    /// Send these DTMF digits (`0-9*#A-D`).
    SendDtmf(String),
    /// Transfer to a SIP URI or number.
    Transfer {
        /// Where to.
        target: String,
        /// Warm (brief the receiver with `summary`) or blind.
        warm: bool,
        /// What the receiver should know.
        summary: String,
    },
    /// Stream this follow-up completion and feed its events back.
    Request(LlmRequest),
    /// The agent's turn is over: listen to the caller.
    Done,
}

/// A tool call waiting for the call layer's result.
#[derive(Debug, Clone)]
struct PendingTool {
    id: String,
    name: String,
    args: Value,
}

/// One conversation with an LLM agent (per call). Cloned to snapshot the
/// conversation before a caller turn (a continuation restores it).
#[derive(Debug, Clone)]
pub struct LlmAgent {
    /// The agent in charge.
    def: Arc<LlmAgentDef>,
    /// The system prompt rendered for this call.
    system: String,
    /// The conversation without the system prompt.
    messages: Vec<ChatMessage>,
    /// What the call came with (caller, DID, headers…), kept for `context`.
    start_ctx: CallContext,
    /// The call came with a context worth acknowledging.
    resumed: bool,
    /// The agent this one took the conversation from (`handoff`).
    handed_off_from: Option<String>,
    /// Sentences of the streaming reply.
    chunker: SentenceChunker,
    /// Text of the streaming reply so far.
    reply: String,
    /// Tool calls of the streaming reply.
    calls: Vec<ToolCallMsg>,
    /// Tool calls of this turn without a result yet.
    pending: Vec<PendingTool>,
    /// The malformed-tool-call re-ask was used this turn.
    reasked: bool,
    /// The filler was said this turn.
    filler_said: bool,
    /// Consecutive failures.
    failures: u32,
    /// The caller's intent as last reported.
    intent: Option<String>,
    /// Collected values (from the context and confirmed appointments).
    slots: BTreeMap<String, String>,
    /// Agents before this one, oldest first.
    previous_agents: Vec<String>,
    /// Why the call was escalated, once it was.
    escalation_reason: Option<String>,
    /// A terminal step was returned: further input is ignored.
    finished: bool,
    /// Instructions a supervisor whispered during the call, oldest first
    /// (kept across a handoff; see [`LlmAgent::add_instruction`]).
    instructions: Vec<String>,
}

impl LlmAgent {
    /// A conversation with `def`; `ctx` is the context the call came with
    /// (a transfer from another agent), acknowledged in the greeting and
    /// given to the model.
    pub fn new(def: Arc<LlmAgentDef>, ctx: Option<&CallContext>) -> LlmAgent {
        let start_ctx = ctx.cloned().unwrap_or_default();
        let resumed = ctx.is_some_and(|c| c.intent.is_some() || c.summary.is_some() || !c.slots.is_empty());
        let mut agent = LlmAgent {
            system: String::new(),
            messages: Vec::new(),
            resumed,
            handed_off_from: None,
            chunker: SentenceChunker::new(),
            reply: String::new(),
            calls: Vec::new(),
            pending: Vec::new(),
            reasked: false,
            filler_said: false,
            failures: 0,
            intent: start_ctx.intent.clone(),
            slots: start_ctx.slots.clone(),
            previous_agents: start_ctx.previous_agents.clone(),
            escalation_reason: None,
            finished: false,
            instructions: Vec::new(),
            start_ctx,
            def,
        };
        agent.system = agent.render_system();
        agent
    }

    /// Another LLM agent takes over this call: the conversation is kept,
    /// the system prompt becomes `to`'s; call [`LlmAgent::greeting`] next.
    pub fn handoff(self, to: Arc<LlmAgentDef>) -> LlmAgent {
        let mut previous_agents = self.previous_agents;
        previous_agents.push(self.def.name.clone());
        let mut agent = LlmAgent {
            def: to,
            system: String::new(),
            messages: self.messages,
            start_ctx: self.start_ctx,
            resumed: self.resumed,
            handed_off_from: Some(self.def.name.clone()),
            chunker: SentenceChunker::new(),
            reply: String::new(),
            calls: Vec::new(),
            pending: Vec::new(),
            reasked: false,
            filler_said: false,
            failures: 0,
            intent: self.intent,
            slots: self.slots,
            previous_agents,
            escalation_reason: None,
            finished: false,
            instructions: self.instructions,
        };
        agent.system = agent.render_system();
        agent
    }

    /// The opening: the greeting (plus, for a call that came with a context,
    /// a line acknowledging it) and `Done`; after a handoff, the new agent's
    /// greeting and a `Request` so it answers the caller's pending question.
    pub fn greeting(&mut self) -> Vec<AgentStep> {
        if self.finished {
            return Vec::new();
        }
        let mut text = self.def.greeting.trim().to_string();
        if self.handed_off_from.is_some() {
            let mut steps = sentences(&text);
            steps.push(AgentStep::Request(self.request()));
            return steps;
        }
        if self.resumed {
            let ack = match (&self.intent, &self.start_ctx.summary) {
                (Some(i), _) => format!("I see you were calling about {}. Let's pick up where you left off.", words(i)),
                (None, Some(_)) => "I see you were already speaking with us. Let's pick up where you left off.".into(),
                (None, None) => "I have the details you already gave us.".into(),
            };
            text = format!("{text} {ack}").trim().to_string();
        }
        if !text.is_empty() {
            self.messages.push(ChatMessage::assistant(text.clone()));
        }
        let mut steps = sentences(&text);
        steps.push(AgentStep::Done);
        steps
    }

    /// The caller said `text` (a final transcript): the graph decides first
    /// (a request for a person, keywords, sentiment may escalate or hand
    /// off); otherwise `[Request]` for the model's answer. An empty
    /// transcript returns nothing.
    pub fn on_caller_turn(&mut self, text: &str) -> Vec<AgentStep> {
        if self.finished || text.trim().is_empty() {
            return Vec::new();
        }
        let transition = next(&self.state(), &GraphEvent::Utterance(text.to_string()));
        let request = self.on_user_turn(text);
        match transition {
            Transition::Stay => vec![AgentStep::Request(request)],
            Transition::Handoff { to_agent } => {
                self.finished = true;
                vec![AgentStep::Handoff { to: to_agent }]
            }
            Transition::Escalate { target, reason } => {
                self.finished = true;
                self.escalation_reason = Some(reason.clone());
                self.messages.push(ChatMessage::assistant(self.def.escalation_say.clone()));
                let mut steps = sentences(&self.def.escalation_say);
                steps.push(AgentStep::Escalate { target, reason });
                steps
            }
        }
    }

    /// Appends what the caller said and returns the completion to stream.
    /// Tool calls still running are answered as cancelled (the caller moved
    /// on). No graph check: see [`LlmAgent::on_caller_turn`].
    pub fn on_user_turn(&mut self, text: &str) -> LlmRequest {
        self.abandon_stream();
        for p in std::mem::take(&mut self.pending) {
            self.messages.push(ChatMessage::tool_result(p.id, json!({"error": "cancelled: the caller spoke"}).to_string()));
        }
        self.reasked = false;
        self.filler_said = false;
        self.messages.push(ChatMessage::user(text.trim()));
        self.request()
    }

    /// One event of the streamed completion (see the module doc).
    pub fn on_llm_event(&mut self, ev: Result<LlmEvent, ProviderError>) -> Vec<AgentStep> {
        if self.finished {
            return Vec::new();
        }
        match ev {
            Ok(LlmEvent::Text(t)) => {
                self.reply.push_str(&t);
                self.chunker.push(&t).into_iter().map(AgentStep::Say).collect()
            }
            Ok(LlmEvent::ToolCall { id, name, arguments }) => {
                self.calls.push(ToolCallMsg { id, name, arguments });
                Vec::new()
            }
            Ok(LlmEvent::Done) => self.end_reply(),
            Err(ProviderError::Cancelled) => Vec::new(),
            Err(e) => {
                let mut steps: Vec<AgentStep> = self.chunker.finish().into_iter().map(AgentStep::Say).collect();
                self.commit_partial();
                if is_malformed_tool_call(&e)
                    && !self.reasked
                    && let Some(reask) = malformed_tool_call_reask(&e)
                {
                    self.reasked = true;
                    self.messages.push(reask);
                    steps.push(AgentStep::Request(self.request()));
                    return steps;
                }
                steps.extend(self.fail());
                steps
            }
        }
    }

    /// The result of the tool call `id` (from `RunTool`). Returns the
    /// follow-up `Request` once every tool call of the turn is answered;
    /// nothing for an unknown or stale id.
    pub fn on_tool_result(&mut self, id: &str, result: Result<Value, String>) -> Vec<AgentStep> {
        let Some(i) = self.pending.iter().position(|p| p.id == id) else { return Vec::new() };
        let p = self.pending.remove(i);
        let content = match &result {
            Ok(Value::String(s)) => s.clone(),
            Ok(v) => v.to_string(),
            Err(e) => json!({"error": e}).to_string(),
        };
        if result.is_ok() && p.name == BuiltinTool::ConfirmAppointment.name() {
            for key in ["date", "time", "name"] {
                if let Some(v) = p.args.get(key).and_then(Value::as_str) {
                    self.slots.insert(key.to_string(), v.to_string());
                }
            }
        }
        self.messages.push(ChatMessage::tool_result(p.id, content));
        if self.pending.is_empty() && !self.finished {
            vec![AgentStep::Request(self.request())]
        } else {
            Vec::new()
        }
    }

    /// A tool has run for [`LlmAgent::filler_after`]: the filler phrase,
    /// once per turn, while tool calls are pending.
    pub fn on_tool_slow(&mut self) -> Vec<AgentStep> {
        if self.pending.is_empty() || self.filler_said || self.finished {
            return Vec::new();
        }
        self.filler_said = true;
        vec![AgentStep::Filler(self.def.filler.clone())]
    }

    /// How long a tool may run before [`LlmAgent::on_tool_slow`].
    pub fn filler_after(&self) -> Duration {
        self.def.filler_after
    }

    /// After a barge-in: the agent's last words are trimmed to what the
    /// caller heard (a reply still streaming is closed with exactly that;
    /// its tool calls are dropped). An assistant message left empty is
    /// removed.
    pub fn on_heard(&mut self, heard_text: &str) {
        let heard = heard_text.trim();
        if !self.reply.is_empty() || !self.calls.is_empty() {
            self.chunker.clear();
            self.reply.clear();
            self.calls.clear();
            if !heard.is_empty() {
                self.messages.push(ChatMessage::assistant(heard));
            }
            return;
        }
        let Some(i) = self.messages.iter().rposition(|m| m.role != Role::Tool) else { return };
        let m = &mut self.messages[i];
        if m.role != Role::Assistant {
            return;
        }
        m.content = heard.to_string();
        if heard.is_empty() && m.tool_calls.is_empty() {
            self.messages.remove(i);
        }
    }

    /// A snapshot of the call's context for a transfer or escalation:
    /// intent, slots, a summary of the last turns, the agents so far (this
    /// one last) and the escalation reason.
    pub fn context(&self) -> CallContext {
        let mut ctx = self.start_ctx.clone();
        ctx.language = Some(self.def.language.clone());
        ctx.intent = self.intent.clone();
        ctx.slots = self.slots.clone();
        ctx.summary = self.summary().or(ctx.summary);
        ctx.previous_agents = self.previous_agents.clone();
        ctx.previous_agents.push(self.def.name.clone());
        if self.escalation_reason.is_some() {
            ctx.escalation_reason = self.escalation_reason.clone();
        }
        ctx
    }

    /// A supervisor's instruction for the rest of the call (a typed
    /// whisper): every later request's system message ends with
    /// `Supervisor instruction: {text}` lines, oldest first. It goes into
    /// the system prompt rather than a message of its own so that it stays
    /// in force whatever the conversation's length and works with providers
    /// that take a single system prompt (Anthropic Messages).
    pub fn add_instruction(&mut self, text: &str) {
        let text = text.trim();
        if !text.is_empty() {
            self.instructions.push(text.to_string());
        }
    }

    /// Instructions whispered by supervisors so far, oldest first.
    pub fn instructions(&self) -> &[String] {
        &self.instructions
    }

    /// The conversation so far (without the system prompt).
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// The system prompt for this call.
    pub fn system_prompt(&self) -> &str {
        &self.system
    }

    /// The agent in charge.
    pub fn def(&self) -> &Arc<LlmAgentDef> {
        &self.def
    }

    /// Consecutive failures.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether a terminal step was returned.
    pub fn finished(&self) -> bool {
        self.finished
    }

    // ------------------------------------------------------------ private

    fn state(&self) -> GraphState {
        GraphState { agent: Arc::clone(&self.def), failures: self.failures }
    }

    fn request(&self) -> LlmRequest {
        let mut messages = Vec::with_capacity(self.messages.len() + 1);
        let mut system = self.system.clone();
        for i in &self.instructions {
            system.push_str("\n\nSupervisor instruction: ");
            system.push_str(i);
        }
        messages.push(ChatMessage::system(system));
        messages.extend(self.messages.iter().cloned());
        LlmRequest { messages, tools: self.def.tool_specs() }
    }

    /// Drops a reply still streaming without recording it.
    fn abandon_stream(&mut self) {
        self.chunker.clear();
        self.reply.clear();
        self.calls.clear();
    }

    /// Records the text already said of a reply that failed.
    fn commit_partial(&mut self) {
        let said = std::mem::take(&mut self.reply);
        self.abandon_stream();
        if !said.trim().is_empty() {
            self.messages.push(ChatMessage::assistant(said.trim()));
        }
    }

    /// Says the fallback phrase and counts a failure; the graph may escalate.
    fn fail(&mut self) -> Vec<AgentStep> {
        self.failures += 1;
        let phrase = self.def.fallback_phrase.clone();
        self.messages.push(ChatMessage::assistant(phrase.clone()));
        let mut steps = sentences(&phrase);
        match next(&self.state(), &GraphEvent::Failure) {
            Transition::Escalate { target, reason } => {
                self.finished = true;
                self.escalation_reason = Some(reason.clone());
                steps.extend(sentences(&self.def.escalation_say));
                steps.push(AgentStep::Escalate { target, reason });
            }
            Transition::Handoff { to_agent } => {
                self.finished = true;
                steps.push(AgentStep::Handoff { to: to_agent });
            }
            Transition::Stay if self.failures >= self.def.max_failures => {
                self.finished = true;
                steps.push(AgentStep::Hangup { reason: "llm-failures".into() });
            }
            Transition::Stay => steps.push(AgentStep::Done),
        }
        steps
    }

    /// The reply is complete: the last sentence, then `Done` or the tool calls.
    fn end_reply(&mut self) -> Vec<AgentStep> {
        let mut steps: Vec<AgentStep> = self.chunker.finish().into_iter().map(AgentStep::Say).collect();
        let text = std::mem::take(&mut self.reply).trim().to_string();
        let calls = std::mem::take(&mut self.calls);
        self.failures = 0;
        if calls.is_empty() {
            if !text.is_empty() {
                self.messages.push(ChatMessage::assistant(text));
            }
            steps.push(AgentStep::Done);
            return steps;
        }
        let spoke = !text.is_empty();
        self.messages.push(ChatMessage::assistant_tool_calls(text, calls.clone()));
        for call in calls {
            if self.finished {
                self.answer(&call.id, json!({"error": "not run: the call left this agent"}));
                continue;
            }
            self.tool_call(call, spoke, &mut steps);
        }
        if !self.finished && self.pending.is_empty() {
            steps.push(AgentStep::Request(self.request()));
        }
        steps
    }

    /// Handles one tool call of a finished reply.
    fn tool_call(&mut self, call: ToolCallMsg, spoke: bool, steps: &mut Vec<AgentStep>) {
        let ToolCallMsg { id, name, arguments } = call;
        let args: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            match serde_json::from_str(&arguments) {
                Ok(v) => v,
                Err(e) => return self.answer(&id, json!({"error": format!("arguments are not JSON: {e}")})),
            }
        };
        let Some(spec) = self.def.tool_specs().into_iter().find(|s| s.name == name) else {
            return self.answer(&id, json!({"error": format!("unknown tool `{name}`")}));
        };
        if let Err(e) = validate_args(&spec.parameters, &args) {
            return self.answer(&id, json!({"error": e}));
        }
        let str_arg = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_string);
        let event = if name == SET_INTENT {
            let intent = str_arg("intent").unwrap_or_default();
            self.intent = Some(intent.clone());
            GraphEvent::IntentRecognized(intent)
        } else {
            GraphEvent::ToolCalled { name: name.clone(), args: args.clone() }
        };
        let mut transition = next(&self.state(), &event);
        let builtin = BuiltinTool::from_name(&name);
        if transition == Transition::Stay && builtin == Some(BuiltinTool::Transfer) && str_arg("target").is_none() {
            transition = next(&self.state(), &GraphEvent::HumanRequested);
        }
        match transition {
            Transition::Escalate { target, reason } => {
                self.answer(&id, json!({"ok": true, "escalating_to": target.to_string()}));
                self.finished = true;
                self.escalation_reason = Some(reason.clone());
                if !spoke {
                    steps.extend(sentences(&self.def.escalation_say));
                }
                steps.push(AgentStep::Escalate { target, reason });
                return;
            }
            Transition::Handoff { to_agent } => {
                self.answer(&id, json!({"ok": true, "handed_off_to": to_agent}));
                self.finished = true;
                steps.push(AgentStep::Handoff { to: to_agent });
                return;
            }
            Transition::Stay => {}
        }
        match builtin {
            _ if name == SET_INTENT => self.answer(&id, json!({"ok": true})),
            Some(BuiltinTool::EndCall) => {
                self.answer(&id, json!({"ok": true}));
                self.finished = true;
                steps.push(AgentStep::Hangup { reason: str_arg("reason").unwrap_or_else(|| "completed".into()) });
            }
            Some(BuiltinTool::Transfer) => {
                let Some(target) = str_arg("target") else {
                    return self.answer(
                        &id,
                        json!({"error": "no transfer destination is configured; ask the caller what they need instead"}),
                    );
                };
                self.answer(&id, json!({"ok": true}));
                self.finished = true;
                self.escalation_reason = str_arg("reason");
                steps.push(AgentStep::Transfer { target, warm: false, summary: self.summary().unwrap_or_default() });
            }
            Some(BuiltinTool::WarmTransfer) => {
                self.answer(&id, json!({"ok": true}));
                self.finished = true;
                steps.push(AgentStep::Transfer {
                    target: str_arg("target").unwrap_or_default(),
                    warm: true,
                    summary: str_arg("summary").unwrap_or_default(),
                });
            }
            Some(BuiltinTool::SendDtmf) => {
                let digits = str_arg("digits").unwrap_or_default();
                self.answer(&id, json!({"sent": digits}));
                steps.push(AgentStep::SendDtmf(digits));
            }
            Some(BuiltinTool::ConfirmAppointment | BuiltinTool::DetectVoicemail) | None => {
                self.pending.push(PendingTool { id: id.clone(), name: name.clone(), args: args.clone() });
                steps.push(AgentStep::RunTool { id, name, arguments: args });
            }
        }
    }

    /// Records a tool result produced by the agent itself.
    fn answer(&mut self, id: &str, result: Value) {
        self.messages.push(ChatMessage::tool_result(id, result.to_string()));
    }

    /// The last turns, condensed: `Caller: … Agent: …`, at most
    /// [`SUMMARY_TURNS`] messages and [`SUMMARY_CHARS`] characters (the
    /// most recent kept). `None` before anyone spoke.
    fn summary(&self) -> Option<String> {
        let turns: Vec<String> = self
            .messages
            .iter()
            .filter(|m| matches!(m.role, Role::User | Role::Assistant) && !m.content.trim().is_empty())
            .rev()
            .take(SUMMARY_TURNS)
            .map(|m| {
                let who = if m.role == Role::User { "Caller" } else { "Agent" };
                format!("{who}: {}", clip(m.content.trim(), 160))
            })
            .collect();
        if turns.is_empty() {
            return None;
        }
        let mut out = String::new();
        for t in &turns {
            if out.chars().count() + t.chars().count() + 1 > SUMMARY_CHARS {
                break;
            }
            out = if out.is_empty() { t.clone() } else { format!("{t} {out}") };
        }
        if out.is_empty() {
            out = clip(&turns[0], SUMMARY_CHARS);
        }
        Some(out)
    }

    /// The system prompt: instructions rendered with the context, a note on
    /// the context a transferred call brought, and on a handoff.
    fn render_system(&self) -> String {
        let ctx = &self.start_ctx;
        let mut prompt = render(&self.def.instructions, |name| match name {
            "caller" => ctx.caller.clone(),
            "did" => ctx.did.clone(),
            "intent" => self.intent.clone(),
            "summary" => ctx.summary.clone(),
            "language" => Some(self.def.language.clone()),
            "tier" => ctx.tier.clone(),
            other => self.slots.get(other).cloned(),
        });
        prompt.push_str(
            "\n\nYou are speaking with the caller on the phone: answer in short spoken sentences, \
             without lists, markdown or emoji.",
        );
        if self.resumed {
            prompt.push_str("\n\nThis call was transferred to you with this context from the previous agent:");
            if let Some(i) = &ctx.intent {
                prompt.push_str(&format!("\n- the caller wants: {i}"));
            }
            for (k, v) in &ctx.slots {
                prompt.push_str(&format!("\n- {k}: {v}"));
            }
            if let Some(s) = &ctx.summary {
                prompt.push_str(&format!("\n- conversation so far: {s}"));
            }
            if let Some(r) = &ctx.escalation_reason {
                prompt.push_str(&format!("\n- why it was transferred: {r}"));
            }
            prompt.push_str("\nContinue from there; do not ask again for what is already known.");
        }
        if let Some(from) = &self.handed_off_from {
            prompt.push_str(&format!(
                "\n\nThe conversation below was handled by the agent `{from}` and has been handed to you. \
                 You have just greeted the caller with: \"{}\". Continue the conversation.",
                self.def.greeting.trim()
            ));
        }
        prompt
    }
}

/// Messages a summary looks back on.
const SUMMARY_TURNS: usize = 6;
/// Longest summary, characters.
const SUMMARY_CHARS: usize = 480;

/// `text` as `Say` steps, one per sentence.
fn sentences(text: &str) -> Vec<AgentStep> {
    let mut c = SentenceChunker::new();
    let mut out: Vec<AgentStep> = c.push(text).into_iter().map(AgentStep::Say).collect();
    out.extend(c.finish().map(AgentStep::Say));
    out
}

/// `book_visit` → `book visit`.
fn words(name: &str) -> String {
    name.replace(['_', '-'], " ")
}

/// At most `max` characters of `s`, with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Replaces `{name}` by `value(name)` (nothing when `None`); `{{`/`}}` are
/// literal braces; an unclosed `{` is kept as written.
fn render(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if tail.starts_with('{')
            && let Some(close) = tail.find('}')
        {
            out.push_str(&value(tail[1..close].trim()).unwrap_or_default());
            rest = &tail[close + 1..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}
