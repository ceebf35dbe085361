//! `sip-config/queues.yaml`: human agents and queues, parsed, validated and
//! turned into [`AgentProfile`]s and [`QueueSettings`].
//!
//! Parsing follows [`crate::config`]: `serde_yaml_ng` through
//! `serde_path_to_error`, unknown keys rejected, and every error names the
//! file, the 1-based line and what is wrong, e.g.
//! `sip-config/queues.yaml:12: queue "billing": overflow queue "nosuch" is not defined`.
//!
//! ## Schema
//! ```yaml
//! agents:                       # human agents (optional list)
//!   - id: alice                 # unique id, used in queue members
//!     name: Alice Moreau        # display name (default: the id)
//!     sip_user: alice           # rung at her registration with skald …
//!     # uri: sip:alice@10.0.0.7 # … or at a fixed SIP URI (exactly one of the two)
//!     skills: [billing, french] # default []
//!     wrap_up_secs: 10          # after-call work before the next offer (default 10, may be 0)
//!     ring_timeout_secs: 15     # an unanswered offer moves on after this (default 15, ≥ 1)
//! queues:                       # queue name → queue
//!   billing:
//!     hold_music: prompts/hold.wav  # WAV, relative to this file's directory (optional)
//!     announce_every_secs: 30   # position announcements; 0 = never (default 30)
//!     max_wait_secs: 300        # optional; requires `overflow`
//!     overflow: { queue: general }  # or { agent: <AI agent> }, { voicemail: true }, { callback: true }
//!     strategy: longest-idle    # or round-robin (default longest-idle)
//!     prefer: human             # or ai: who is offered calls first (default human)
//!     skills: [billing]         # every human member must have all of them (default [])
//!     members:                  # at least one
//!       - alice                 # a human agent id
//!       - ai: tier2-billing     # an AI agent (`name:` of a file in agents/)
//!         capacity: 4           # calls it holds at once from this queue (default 1)
//! ```
//!
//! Refused, with the line of the offending entry: duplicate agent ids, an
//! agent with neither or both of `sip_user`/`uri`, a `sip_user` not among
//! the known SIP users (when given), a `uri` not starting with `sip:` or
//! `sips:`, a zero ring timeout, a queue without members, an unknown or
//! repeated member, a human member lacking a required skill, an unknown AI
//! agent, a zero AI capacity, a missing hold-music file, an overflow to an
//! unknown queue or AI agent, `voicemail`/`callback: false`, `max_wait_secs`
//! without `overflow` (or the reverse), and overflow cycles (`a → b → a`).

use super::agents::AgentProfile;
use super::queue::{AiMember, OverflowTarget, QueueSettings};
use super::routing::{Prefer, Strategy};
use crate::agent::config::Locator;
use crate::ids::{HumanAgentId, QueueId};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An error in `queues.yaml`, pointing at the offending place.
#[derive(Debug, thiserror::Error)]
pub enum QueueConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// Path of the file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed, a key is unknown or has the wrong type, or a
    /// value or reference is not acceptable.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// Path of the file.
        file: PathBuf,
        /// 1-based line of the offending entry (0 when unknown).
        line: usize,
        /// What is wrong: the field path for syntax errors, else the agent or queue.
        message: String,
    },
}

/// The validated contact-center configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactCenterConfig {
    /// Human agents, in file order.
    pub agents: Vec<HumanAgentConfig>,
    /// Queues by name.
    pub queues: BTreeMap<QueueId, QueueConfig>,
}

/// One human agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanAgentConfig {
    /// Id, skills, wrap-up and ring timeout.
    pub profile: AgentProfile,
    /// Display name.
    pub name: String,
    /// Where the agent is rung.
    pub endpoint: AgentEndpoint,
}

impl HumanAgentConfig {
    /// Whether the agent is rung at a fixed URI (so is available without
    /// registering).
    pub fn is_fixed_uri(&self) -> bool {
        matches!(self.endpoint, AgentEndpoint::Uri(_))
    }
}

/// Where a human agent is rung.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEndpoint {
    /// The contacts this SIP user registered with skald (credentials are
    /// configured elsewhere).
    SipUser(String),
    /// A fixed SIP URI (`sip:` or `sips:`).
    Uri(String),
}

/// One queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The hold-music WAV, resolved against the config file's directory.
    pub hold_music: Option<PathBuf>,
    /// Ordering, announcements, overflow, members and strategy.
    pub settings: QueueSettings,
}

/// Loads and validates `path`. `known_ai_agents` are the `name:`s of the AI
/// agent files (for AI members and overflow to an agent);
/// `known_sip_users`, when given, are the SIP users an agent's `sip_user`
/// may name. Errors carry the file and line (see [`QueueConfigError`]).
pub fn load(
    path: &Path,
    known_ai_agents: &[String],
    known_sip_users: Option<&[String]>,
) -> Result<ContactCenterConfig, QueueConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| QueueConfigError::Io { file: path.to_path_buf(), source })?;
    parse(&text, path, known_ai_agents, known_sip_users)
}

/// Like [`load`], for `text` already read from `path` (`path` names the
/// file in errors, and its directory anchors `hold_music`).
pub fn parse(
    text: &str,
    path: &Path,
    known_ai_agents: &[String],
    known_sip_users: Option<&[String]>,
) -> Result<ContactCenterConfig, QueueConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let loc = Locator::new(text);
    let raw: File = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map_or_else(|| loc.line(&field), |l| l.line());
        // serde_yaml_ng's text already names the enclosing field and ends
        // with the location, which the error carries as its line.
        let text = inner.to_string();
        let text = text.rsplit_once(" at line ").map_or(text.as_str(), |(t, _)| t);
        let top = field.split(['.', '[']).next().unwrap_or("");
        let message = if top.is_empty() || top == "." || text.starts_with(top) {
            text.to_string()
        } else {
            format!("{field}: {text}")
        };
        QueueConfigError::Invalid { file: path.to_path_buf(), line, message }
    })?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Validator { file: path, dir, loc, known_ai_agents, known_sip_users }.validate(raw)
}

// ------------------------------------------------------------ file schema

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    agents: Vec<AgentFile>,
    #[serde(default)]
    queues: BTreeMap<String, QueueFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    id: String,
    name: Option<String>,
    sip_user: Option<String>,
    uri: Option<String>,
    #[serde(default)]
    skills: Vec<String>,
    #[serde(default = "default_wrap_up_secs")]
    wrap_up_secs: u32,
    #[serde(default = "default_ring_timeout_secs")]
    ring_timeout_secs: u32,
}

fn default_wrap_up_secs() -> u32 {
    10
}

fn default_ring_timeout_secs() -> u32 {
    15
}

fn default_announce_every_secs() -> u32 {
    30
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueFile {
    hold_music: Option<String>,
    #[serde(default = "default_announce_every_secs")]
    announce_every_secs: u32,
    max_wait_secs: Option<u32>,
    overflow: Option<OverflowFile>,
    #[serde(default)]
    strategy: Strategy,
    #[serde(default)]
    prefer: Prefer,
    #[serde(default)]
    skills: Vec<String>,
    #[serde(default)]
    members: Vec<MemberFile>,
}

/// `overflow:`: exactly one of its keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverflowFile {
    queue: Option<String>,
    agent: Option<String>,
    voicemail: Option<bool>,
    callback: Option<bool>,
}

impl OverflowFile {
    fn queue(&self) -> Option<&str> {
        self.queue.as_deref().filter(|_| self.agent.is_none() && self.voicemail.is_none() && self.callback.is_none())
    }
}

/// A member entry: a plain string (human agent id) or `{ai, capacity}`.
enum MemberFile {
    Human(String),
    Ai(AiMemberFile),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AiMemberFile {
    ai: String,
    #[serde(default = "default_capacity")]
    capacity: usize,
}

fn default_capacity() -> usize {
    1
}

impl<'de> Deserialize<'de> for MemberFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MemberFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a human agent id or {ai: <AI agent>, capacity: <n>}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MemberFile, E> {
                Ok(MemberFile::Human(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<MemberFile, A::Error> {
                AiMemberFile::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(MemberFile::Ai)
            }
        }
        d.deserialize_any(V)
    }
}

// ------------------------------------------------------------ validation

struct Validator<'a> {
    file: &'a Path,
    dir: &'a Path,
    loc: Locator,
    known_ai_agents: &'a [String],
    known_sip_users: Option<&'a [String]>,
}

impl Validator<'_> {
    fn err(&self, path: &str, message: String) -> QueueConfigError {
        QueueConfigError::Invalid { file: self.file.to_path_buf(), line: self.loc.line(path), message }
    }

    fn validate(&self, raw: File) -> Result<ContactCenterConfig, QueueConfigError> {
        let mut agents: Vec<HumanAgentConfig> = Vec::new();
        for (i, a) in raw.agents.into_iter().enumerate() {
            agents.push(self.agent(&format!("agents[{i}]"), a, &agents)?);
        }
        let mut queues = BTreeMap::new();
        for (name, q) in &raw.queues {
            let settings = self.queue(name, q, &agents, &raw.queues)?;
            let hold_music = q.hold_music.as_ref().map(|h| self.dir.join(h));
            if let Some(h) = hold_music.as_ref().filter(|h| !h.is_file()) {
                let path = format!("queues.{name}.hold_music");
                return Err(self.err(&path, format!("queue \"{name}\": hold_music {} does not exist", h.display())));
            }
            queues.insert(QueueId(name.clone()), QueueConfig { hold_music, settings });
        }
        self.check_cycles(&raw.queues)?;
        Ok(ContactCenterConfig { agents, queues })
    }

    fn agent(&self, path: &str, a: AgentFile, before: &[HumanAgentConfig]) -> Result<HumanAgentConfig, QueueConfigError> {
        let id = &a.id;
        if id.is_empty() {
            return Err(self.err(&format!("{path}.id"), "agent id is empty".into()));
        }
        if before.iter().any(|b| b.profile.id.0 == *id) {
            return Err(self.err(&format!("{path}.id"), format!("agent \"{id}\" is defined twice")));
        }
        let endpoint = match (a.sip_user, a.uri) {
            (Some(user), None) => {
                if let Some(known) = self.known_sip_users.filter(|k| !k.contains(&user)) {
                    let msg = format!("agent \"{id}\": sip_user \"{user}\" is not a known SIP user ({})", known.join(", "));
                    return Err(self.err(&format!("{path}.sip_user"), msg));
                }
                AgentEndpoint::SipUser(user)
            }
            (None, Some(uri)) => {
                if !(uri.starts_with("sip:") || uri.starts_with("sips:")) {
                    let msg = format!("agent \"{id}\": uri \"{uri}\" must start with sip: or sips:");
                    return Err(self.err(&format!("{path}.uri"), msg));
                }
                AgentEndpoint::Uri(uri)
            }
            (None, None) => {
                return Err(self.err(path, format!("agent \"{id}\": needs sip_user or uri")));
            }
            (Some(_), Some(_)) => {
                return Err(self.err(path, format!("agent \"{id}\": has both sip_user and uri; keep one")));
            }
        };
        if a.ring_timeout_secs == 0 {
            return Err(self.err(&format!("{path}.ring_timeout_secs"), format!("agent \"{id}\": ring_timeout_secs must be at least 1")));
        }
        Ok(HumanAgentConfig {
            profile: AgentProfile {
                id: HumanAgentId(id.clone()),
                skills: a.skills.into_iter().collect(),
                wrap_up: Duration::from_secs(a.wrap_up_secs.into()),
                ring_timeout: Duration::from_secs(a.ring_timeout_secs.into()),
            },
            name: a.name.unwrap_or_else(|| id.clone()),
            endpoint,
        })
    }

    fn queue(
        &self,
        name: &str,
        q: &QueueFile,
        agents: &[HumanAgentConfig],
        queues: &BTreeMap<String, QueueFile>,
    ) -> Result<QueueSettings, QueueConfigError> {
        let path = format!("queues.{name}");
        if q.members.is_empty() {
            return Err(self.err(&path, format!("queue \"{name}\": has no members")));
        }
        let skills: BTreeSet<String> = q.skills.iter().cloned().collect();
        let mut humans: Vec<HumanAgentId> = Vec::new();
        let mut ai: Vec<AiMember> = Vec::new();
        for (i, m) in q.members.iter().enumerate() {
            let mpath = format!("{path}.members[{i}]");
            match m {
                MemberFile::Human(id) => {
                    let Some(agent) = agents.iter().find(|a| a.profile.id.0 == *id) else {
                        return Err(self.err(&mpath, format!("queue \"{name}\": member \"{id}\" is not an agent under agents:")));
                    };
                    if humans.contains(&agent.profile.id) {
                        return Err(self.err(&mpath, format!("queue \"{name}\": member \"{id}\" is listed twice")));
                    }
                    if let Some(s) = skills.difference(&agent.profile.skills).next() {
                        let msg = format!("queue \"{name}\": member \"{id}\" lacks the required skill \"{s}\"");
                        return Err(self.err(&mpath, msg));
                    }
                    humans.push(agent.profile.id.clone());
                }
                MemberFile::Ai(a) => {
                    self.known_ai(&mpath, name, "AI member", &a.ai)?;
                    if ai.iter().any(|x| x.name == a.ai) {
                        return Err(self.err(&mpath, format!("queue \"{name}\": AI member \"{}\" is listed twice", a.ai)));
                    }
                    if a.capacity == 0 {
                        return Err(self.err(&mpath, format!("queue \"{name}\": AI member \"{}\" needs capacity ≥ 1", a.ai)));
                    }
                    ai.push(AiMember { name: a.ai.clone(), capacity: a.capacity });
                }
            }
        }
        let opath = format!("{path}.overflow");
        let overflow = match &q.overflow {
            None => None,
            Some(o) => Some(self.overflow(&opath, name, o, queues)?),
        };
        match (q.max_wait_secs, overflow.is_some()) {
            (Some(_), false) => {
                return Err(self.err(&format!("{path}.max_wait_secs"), format!("queue \"{name}\": max_wait_secs needs an overflow target")));
            }
            (None, true) => {
                return Err(self.err(&opath, format!("queue \"{name}\": overflow needs max_wait_secs")));
            }
            _ => {}
        }
        let secs = |s: u32| Duration::from_secs(s.into());
        Ok(QueueSettings {
            announce_every: Some(q.announce_every_secs).filter(|s| *s > 0).map(secs),
            max_wait: q.max_wait_secs.map(secs),
            overflow,
            strategy: q.strategy,
            prefer: q.prefer,
            skills,
            humans,
            ai,
        })
    }

    fn overflow(
        &self,
        path: &str,
        name: &str,
        o: &OverflowFile,
        queues: &BTreeMap<String, QueueFile>,
    ) -> Result<OverflowTarget, QueueConfigError> {
        let target = match (&o.queue, &o.agent, o.voicemail, o.callback) {
            (Some(target), None, None, None) => {
                if !queues.contains_key(target) {
                    return Err(self.err(path, format!("queue \"{name}\": overflow queue \"{target}\" is not defined")));
                }
                OverflowTarget::Queue(QueueId(target.clone()))
            }
            (None, Some(target), None, None) => {
                self.known_ai(path, name, "overflow agent", target)?;
                OverflowTarget::Agent(target.clone())
            }
            (None, None, Some(true), None) => OverflowTarget::Voicemail,
            (None, None, None, Some(true)) => OverflowTarget::Callback,
            (None, None, Some(false), None) | (None, None, None, Some(false)) => {
                return Err(self.err(path, format!("queue \"{name}\": overflow must be true when given (or remove it)")));
            }
            _ => {
                let msg = format!("queue \"{name}\": overflow needs exactly one of queue, agent, voicemail, callback");
                return Err(self.err(path, msg));
            }
        };
        Ok(target)
    }

    fn known_ai(&self, path: &str, queue: &str, what: &str, name: &str) -> Result<(), QueueConfigError> {
        if self.known_ai_agents.iter().any(|a| a == name) {
            return Ok(());
        }
        let known = self.known_ai_agents.join(", ");
        Err(self.err(path, format!("queue \"{queue}\": {what} \"{name}\" is not a known AI agent ({known})")))
    }

    /// Refuses a chain of queue overflows that comes back to a queue.
    fn check_cycles(&self, queues: &BTreeMap<String, QueueFile>) -> Result<(), QueueConfigError> {
        let next = |q: &str| queues.get(q).and_then(|f| f.overflow.as_ref()).and_then(OverflowFile::queue);
        for start in queues.keys() {
            let mut chain = vec![start.as_str()];
            let mut at = start.as_str();
            while let Some(t) = next(at) {
                chain.push(t);
                if t == start {
                    let msg = format!("queue \"{start}\": overflow cycle {}", chain.join(" → "));
                    return Err(self.err(&format!("queues.{start}.overflow"), msg));
                }
                if chain[..chain.len() - 1].contains(&t) {
                    break; // a cycle not through `start`: reported from its own queue
                }
                at = t;
            }
        }
        Ok(())
    }
}
