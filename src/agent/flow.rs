//! The YAML flow agent. CONTRACT STUB.

use std::collections::BTreeMap;
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
        /// Reason for the call record (`goodbye`, `no-input`, …).
        reason: String,
    },
    /// Hand the caller to a person or number (not carried out yet: said and logged).
    Transfer {
        /// SIP URI or number.
        target: String,
    },
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
pub struct AgentDef {}

impl AgentDef {
    /// The agent's name (its `name:` field).
    pub fn name(&self) -> &str {
        todo!()
    }
}

/// Loads every `*.yaml` in `dir`, keyed by agent name. Errors name file,
/// line and field (unknown node in a transition, bad pattern, …).
pub fn load_agents(dir: &Path) -> Result<BTreeMap<String, Arc<AgentDef>>, AgentConfigError> {
    let _ = dir;
    todo!()
}

/// One conversation with an agent (per call).
#[derive(Debug)]
pub struct FlowAgent {}

impl FlowAgent {
    /// A conversation; `today` resolves relative dates ("tomorrow").
    pub fn new(def: Arc<AgentDef>, today: time::Date) -> Self {
        let _ = (def, today);
        todo!()
    }
    /// The call was answered: the greeting.
    pub fn start(&mut self) -> Vec<AgentAction> {
        todo!()
    }
    /// The caller said `text` (a final transcript of one turn).
    pub fn on_user_turn(&mut self, text: &str) -> Vec<AgentAction> {
        let _ = text;
        todo!()
    }
    /// The caller said nothing for [`FlowAgent::silence_timeout`] after the
    /// agent finished speaking.
    pub fn on_silence(&mut self) -> Vec<AgentAction> {
        todo!()
    }
    /// How long to wait for the caller before `on_silence`.
    pub fn silence_timeout(&self) -> Duration {
        todo!()
    }
    /// Slots collected so far (name → normalized value).
    pub fn slots(&self) -> &BTreeMap<String, String> {
        todo!()
    }
    /// Current node name.
    pub fn node(&self) -> &str {
        todo!()
    }
}
