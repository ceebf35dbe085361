//! An LLM agent on a call: drives [`LlmAgent`] (pure) with the IO it asks
//! for. Streams completions from the agent's provider list
//! ([`FallbackLlm`]: first-token timeout, one retry, fallback providers),
//! runs tools while the caller waits (a filler line when one is slow),
//! follows handoffs to other LLM agents inside the call, and turns the
//! agent's steps into what [`super::voice::VoiceAgent`] does: speak a
//! sentence (as soon as the stream completes one), close the reply, and
//! after the reply has played hang up or transfer.

use crate::agent::escalation::{Brief, EscalationTarget, TransferMode, TransferRequest};
use crate::agent::graph::LlmAgentDef;
use crate::agent::llm_agent::{AgentStep, LlmAgent, LlmRequest};
use crate::providers::llm::FallbackLlm;
use crate::providers::{LlmEvent, ProviderError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// An LLM agent definition with its providers, as loaded at start.
pub type LlmAgents = BTreeMap<String, (Arc<LlmAgentDef>, Arc<FallbackLlm>)>;

/// What the voice layer must do for the LLM agent, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmOut {
    /// Speak this sentence as part of the current reply.
    Say(String),
    /// The agent's reply is complete: listen to the caller.
    Close,
    /// After the reply has played: end the call with this reason.
    HangupAfter(String),
    /// After the reply has played: transfer to this SIP URI or number.
    TransferAfter(crate::agent::escalation::TransferRequest),
    /// Send these DTMF digits now (RFC 4733).
    SendDtmf(String),
    /// Record a failure on the call (provider fallbacks, tool errors).
    Error(String),
}

/// What woke the LLM side up.
#[derive(Debug)]
pub enum LlmWake {
    /// An event of the streamed completion (`None`: the stream ended).
    Stream(Option<Result<LlmEvent, ProviderError>>),
    /// A tool finished: (call id, result).
    Tool(String, Result<serde_json::Value, String>),
    /// A tool has run longer than the agent's `filler_after`.
    ToolSlow,
}

/// The LLM agent of one call and its IO in flight.
pub struct LlmBrain {
    /// The conversation (pure).
    agent: LlmAgent,
    /// The agent's providers.
    llm: Arc<FallbackLlm>,
    /// All LLM agents (handoff targets).
    agents: Arc<LlmAgents>,
    /// The completion being streamed.
    stream: Option<mpsc::Receiver<Result<LlmEvent, ProviderError>>>,
    /// Tools running: (call id, result).
    tools: JoinSet<(String, Result<serde_json::Value, String>)>,
    /// When to say the filler if a tool is still running.
    slow_at: Option<Instant>,
    /// When the caller's turn was handed to the model, until its first
    /// streamed event (time to first token).
    asked_at: Option<Instant>,
    /// Time to first token of the last caller turn, ms (taken once).
    first_token_ms: Option<u32>,
}

impl LlmBrain {
    /// The LLM agent `name` for a call that came with `ctx` (if any).
    /// `None` when no such agent is loaded.
    pub fn new(agents: Arc<LlmAgents>, name: &str, ctx: Option<&crate::agent::context::CallContext>) -> Option<LlmBrain> {
        let (def, llm) = agents.get(name)?.clone();
        Some(LlmBrain {
            agent: LlmAgent::new(def, ctx),
            llm,
            agents,
            stream: None,
            tools: JoinSet::new(),
            slow_at: None,
            asked_at: None,
            first_token_ms: None,
        })
    }

    /// Restarts the conversation with a context (a call transferred in).
    pub fn set_context(&mut self, ctx: &crate::agent::context::CallContext) {
        self.agent = LlmAgent::new(self.agent.def().clone(), Some(ctx));
    }

    /// The greeting.
    pub async fn greeting(&mut self) -> Vec<LlmOut> {
        let steps = self.agent.greeting();
        self.run(steps).await
    }

    /// The caller's final transcript.
    pub async fn on_caller_turn(&mut self, text: &str) -> Vec<LlmOut> {
        self.stop();
        self.asked_at = Some(Instant::now());
        self.first_token_ms = None;
        let steps = self.agent.on_caller_turn(text);
        self.run(steps).await
    }

    /// A supervisor's typed whisper: an instruction to the model for the
    /// rest of the call (see [`LlmAgent::add_instruction`]).
    pub fn add_instruction(&mut self, text: &str) {
        self.agent.add_instruction(text);
    }

    /// The call context as this agent sees it (for a transfer).
    pub fn context(&self) -> crate::agent::context::CallContext {
        self.agent.context()
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.agent.def().name
    }

    /// The agent's fallback phrase (said when nothing else can be).
    pub fn fallback_phrase(&self) -> String {
        self.agent.def().fallback_phrase.clone()
    }

    /// The conversation as it stands (before a caller turn), to restore if
    /// that turn turns out to continue into the next one.
    pub fn snapshot(&self) -> crate::agent::llm_agent::LlmAgent {
        self.agent.clone()
    }

    /// Drops what is in flight and puts the conversation back as
    /// [`LlmBrain::snapshot`] saw it.
    pub fn restore(&mut self, agent: crate::agent::llm_agent::LlmAgent) {
        self.stop();
        self.agent = agent;
    }

    /// Time from the caller's last turn to the model's first streamed
    /// event, ms, once (the LLM's time to first token).
    pub fn take_first_token_ms(&mut self) -> Option<u32> {
        self.first_token_ms.take()
    }

    /// The caller talked over the agent and said something: the stream and
    /// tools are dropped and the agent's last message becomes what was heard.
    pub fn interrupted(&mut self, heard: &str) {
        self.stop();
        self.agent.on_heard(heard);
    }

    /// Waits for the stream, a tool, or the filler deadline. Cancel-safe;
    /// pending forever when nothing is in flight.
    pub async fn next_event(&mut self) -> LlmWake {
        let slow_at = self.slow_at;
        let has_tools = !self.tools.is_empty();
        tokio::select! {
            ev = recv_opt(&mut self.stream) => LlmWake::Stream(ev),
            Some(done) = self.tools.join_next(), if has_tools => match done {
                Ok((id, result)) => LlmWake::Tool(id, result),
                Err(e) => LlmWake::Tool(String::new(), Err(format!("tool task failed: {e}"))),
            },
            _ = super::actor::sleep_opt(slow_at) => LlmWake::ToolSlow,
        }
    }

    /// Handles what [`LlmBrain::next_event`] returned.
    pub async fn on_wake(&mut self, wake: LlmWake) -> Vec<LlmOut> {
        let steps = match wake {
            LlmWake::Stream(Some(ev)) => {
                if let Some(at) = self.asked_at.take() {
                    self.first_token_ms = Some(at.elapsed().as_millis() as u32);
                }
                // After `Done` or an error the provider closes the stream:
                // that end is not a failure.
                if matches!(ev, Ok(LlmEvent::Done) | Err(_)) {
                    self.stream = None;
                }
                self.agent.on_llm_event(ev)
            }
            LlmWake::Stream(None) => {
                self.stream = None;
                self.agent.on_llm_event(Err(ProviderError::Retryable("the reply stream ended early".into())))
            }
            LlmWake::Tool(id, result) => {
                if self.tools.is_empty() {
                    self.slow_at = None;
                }
                self.agent.on_tool_result(&id, result)
            }
            LlmWake::ToolSlow => {
                self.slow_at = None;
                self.agent.on_tool_slow()
            }
        };
        self.run(steps).await
    }

    /// Drops the stream and running tools.
    fn stop(&mut self) {
        self.stream = None;
        self.tools.abort_all();
        self.slow_at = None;
    }

    /// Carries out the agent's steps (and the steps they lead to).
    async fn run(&mut self, steps: Vec<AgentStep>) -> Vec<LlmOut> {
        let mut out = Vec::new();
        let mut queue: VecDeque<AgentStep> = steps.into();
        while let Some(step) = queue.pop_front() {
            match step {
                AgentStep::Say(s) | AgentStep::Filler(s) => out.push(LlmOut::Say(s)),
                AgentStep::Done => out.push(LlmOut::Close),
                AgentStep::Request(req) => queue.extend(self.request(req, &mut out).await),
                AgentStep::RunTool { id, name, arguments } => {
                    if name == "detect_voicemail" {
                        // The call layer's detector runs on outbound calls
                        // from the answer; here the caller is talking.
                        let v = serde_json::json!({ "result": "human", "reason": "the caller is in a conversation" });
                        queue.extend(self.agent.on_tool_result(&id, Ok(v)));
                        continue;
                    }
                    let def = self.agent.def().clone();
                    tracing::info!(tool = %name, "running tool");
                    self.tools.spawn(async move {
                        let r = crate::agent::tools::execute(&def, &name, &arguments).await;
                        (id, r)
                    });
                    self.slow_at = Some(Instant::now() + self.agent.filler_after());
                }
                AgentStep::Handoff { to } => match self.agents.get(&to).cloned() {
                    Some((def, llm)) => {
                        tracing::info!(from = %self.name(), %to, "handoff");
                        let agent = std::mem::replace(&mut self.agent, LlmAgent::new(def.clone(), None));
                        self.agent = agent.handoff(def);
                        self.llm = llm;
                        queue.extend(self.agent.greeting());
                    }
                    None => {
                        out.push(LlmOut::Error(format!("handoff to unknown agent `{to}`")));
                        out.push(LlmOut::Say(self.fallback_phrase()));
                        out.push(LlmOut::Close);
                    }
                },
                AgentStep::Escalate { target, reason } => {
                    tracing::info!(?target, %reason, "escalation");
                    match target {
                        EscalationTarget::SipUri(uri) => out.push(LlmOut::TransferAfter(TransferRequest::cold(uri))),
                        EscalationTarget::Number { number, .. } => {
                            out.push(LlmOut::TransferAfter(TransferRequest::cold(number)))
                        }
                        EscalationTarget::Agent(name) => queue.push_back(AgentStep::Handoff { to: name }),
                        EscalationTarget::Queue(q) => out.push(LlmOut::TransferAfter(TransferRequest::cold(format!("queue:{q}")))),
                    }
                    out.push(LlmOut::Close);
                }
                AgentStep::Hangup { reason } => out.push(LlmOut::HangupAfter(reason)),
                AgentStep::SendDtmf(d) => out.push(LlmOut::SendDtmf(d)),
                AgentStep::Transfer { target, warm, summary } => out.push(LlmOut::TransferAfter(TransferRequest {
                    target,
                    mode: if warm { TransferMode::Warm } else { TransferMode::Cold },
                    brief: Brief::Spoken,
                    summary: Some(summary).filter(|s| !s.trim().is_empty()),
                })),
            }
        }
        out
    }

    /// Starts streaming `req`; on failure returns the agent's steps for it.
    async fn request(&mut self, req: LlmRequest, out: &mut Vec<LlmOut>) -> Vec<AgentStep> {
        match self.llm.stream_with_report(&req.messages, &req.tools).await {
            Ok((rx, report)) => {
                if !report.failures.is_empty() {
                    out.push(LlmOut::Error(format!(
                        "llm: {} answered after: {}",
                        report.provider,
                        report.failures.join("; ")
                    )));
                }
                self.stream = Some(rx);
                Vec::new()
            }
            Err(failure) => {
                out.push(LlmOut::Error(format!("llm: no provider answered: {}", failure.failures.join("; "))));
                self.agent.on_llm_event(Err(failure.error))
            }
        }
    }
}

async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}
