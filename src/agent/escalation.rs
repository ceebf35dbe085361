//! Escalation edges and the conditions that trigger them.
//!
//! An LLM agent's file lists `handoffs` (to another LLM agent of the same
//! call, the conversation kept) and `escalations` (to an agent, a queue, a
//! SIP URI or a phone number through a trunk). Each edge has one
//! [`Condition`]; [`Condition::matches`] decides, purely, whether an
//! [`GraphEvent`] fires it. The text detectors
//! used for utterances live here too: [`is_human_request`] (the caller asks
//! for a person) and [`sentiment`] (a tiny lexicon scorer with negation).
//!
//! No IO, no clock: everything here is a function of its arguments.

use super::graph::GraphEvent;
use super::text::{find_contiguous, normalize};
use serde::{Deserialize, Serialize};

/// How a transfer hands the caller on (agent files: `transfer.mode`; the
/// LLM tools `transfer` and `warm_transfer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferMode {
    /// Blind: REFER (RFC 3515) asks the caller's side to call the target and
    /// skald leaves the call; when the caller's side refuses REFER, skald
    /// calls the target itself and bridges the two legs.
    #[default]
    Cold,
    /// Attended: skald calls the target first while the caller hears
    /// ringback, briefs whoever answers, then bridges the caller to them; if
    /// nobody answers, the caller is back with the agent.
    Warm,
}

/// How a warm transfer briefs the target before the caller is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Brief {
    /// skald speaks a short summary (TTS) to the person who answers, then
    /// connects the caller.
    #[default]
    Spoken,
    /// The summary travels only in the INVITE's context headers (a receiving
    /// agent reads it and greets with it): the caller is connected as soon as
    /// the target answers.
    Context,
}

/// A transfer an agent asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// `sip:`/`sips:` URI, or a phone number dialed through a trunk.
    pub target: String,
    /// Blind or attended.
    pub mode: TransferMode,
    /// How a warm transfer briefs the target (ignored when cold).
    pub brief: Brief,
    /// What the receiver should know, in a sentence or two (the agent's own
    /// words; `None` lets the call build one from the intent and slots).
    pub summary: Option<String>,
}

impl TransferRequest {
    /// A cold transfer to `target`.
    pub fn cold(target: impl Into<String>) -> Self {
        TransferRequest { target: target.into(), mode: TransferMode::Cold, brief: Brief::Spoken, summary: None }
    }
}

/// Where an escalation sends the call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "TargetFile")]
pub enum EscalationTarget {
    /// Another agent of the graph (flow or LLM), which starts fresh with the
    /// call context (not the conversation).
    Agent(String),
    /// A contact-center queue by name.
    Queue(String),
    /// A SIP URI (`sip:` or `sips:`).
    SipUri(String),
    /// A phone number (E.164 preferred), dialed through `trunk` when given.
    Number {
        /// The number.
        number: String,
        /// The trunk to dial out through (the default trunk when `None`).
        trunk: Option<String>,
    },
}

/// The YAML shape of a target: exactly one of `agent`, `queue`, `sip`,
/// `number` (with an optional `trunk`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    agent: Option<String>,
    queue: Option<String>,
    sip: Option<String>,
    number: Option<String>,
    trunk: Option<String>,
}

impl TryFrom<TargetFile> for EscalationTarget {
    type Error = String;

    fn try_from(f: TargetFile) -> Result<Self, String> {
        let set = [f.agent.is_some(), f.queue.is_some(), f.sip.is_some(), f.number.is_some()];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err("a target is exactly one of `agent`, `queue`, `sip`, `number`".into());
        }
        if f.trunk.is_some() && f.number.is_none() {
            return Err("`trunk` goes with `number` only".into());
        }
        let nonempty = |field: &str, v: String| {
            if v.trim().is_empty() { Err(format!("`{field}` must not be empty")) } else { Ok(v) }
        };
        if let Some(a) = f.agent {
            return Ok(EscalationTarget::Agent(nonempty("agent", a)?));
        }
        if let Some(q) = f.queue {
            return Ok(EscalationTarget::Queue(nonempty("queue", q)?));
        }
        if let Some(s) = f.sip {
            if !(s.starts_with("sip:") || s.starts_with("sips:")) || s.len() < 6 {
                return Err(format!("`sip: {s}` is not a SIP URI (sip:user@host)"));
            }
            return Ok(EscalationTarget::SipUri(s));
        }
        let number = nonempty("number", f.number.unwrap_or_default())?;
        let digits = number.strip_prefix('+').unwrap_or(&number);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`number: {number}` is not a phone number (digits, optional leading +)"));
        }
        Ok(EscalationTarget::Number { number, trunk: f.trunk })
    }
}

impl std::fmt::Display for EscalationTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EscalationTarget::Agent(a) => write!(f, "agent {a}"),
            EscalationTarget::Queue(q) => write!(f, "queue {q}"),
            EscalationTarget::SipUri(s) => f.write_str(s),
            EscalationTarget::Number { number, trunk: Some(t) } => write!(f, "{number} via {t}"),
            EscalationTarget::Number { number, trunk: None } => f.write_str(number),
        }
    }
}

/// What triggers an edge (`when:` in YAML; exactly one key).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ConditionFile")]
pub enum Condition {
    /// The model called this tool (built-in or HTTP).
    Tool(String),
    /// The model reported this intent (through the `set_intent` tool).
    Intent(String),
    /// The caller asked for a person (`true` is the only useful value).
    HumanRequest(bool),
    /// This many consecutive failures (provider errors, malformed tool
    /// calls given up on).
    Failures(u32),
    /// The caller said one of these words or phrases.
    Keywords(Vec<String>),
    /// The caller's utterance scored this sentiment.
    Sentiment(SentimentKind),
}

/// The YAML shape of a condition: exactly one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionFile {
    tool: Option<String>,
    intent: Option<String>,
    human_request: Option<bool>,
    failures: Option<u32>,
    keywords: Option<Vec<String>>,
    sentiment: Option<SentimentKind>,
}

impl TryFrom<ConditionFile> for Condition {
    type Error = String;

    fn try_from(f: ConditionFile) -> Result<Self, String> {
        let mut found = Vec::new();
        if let Some(t) = f.tool {
            found.push(Condition::Tool(t));
        }
        if let Some(i) = f.intent {
            found.push(Condition::Intent(i));
        }
        if let Some(h) = f.human_request {
            found.push(Condition::HumanRequest(h));
        }
        if let Some(n) = f.failures {
            found.push(Condition::Failures(n));
        }
        if let Some(k) = f.keywords {
            found.push(Condition::Keywords(k));
        }
        if let Some(s) = f.sentiment {
            found.push(Condition::Sentiment(s));
        }
        match (found.pop(), found.is_empty()) {
            (Some(c), true) => Ok(c),
            _ => Err("a condition is exactly one of `tool`, `intent`, `human_request`, `failures`, `keywords`, `sentiment`".into()),
        }
    }
}

/// Sentiment classes a condition can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SentimentKind {
    /// Score at or below [`NEGATIVE_THRESHOLD`].
    Negative,
}

/// An utterance whose [`sentiment`] is at or below this is negative.
pub const NEGATIVE_THRESHOLD: i32 = -2;

impl Condition {
    /// Whether `event` fires this condition; `failures` is the count of
    /// consecutive failures so far, including the one being reported.
    pub fn matches(&self, event: &GraphEvent, failures: u32) -> bool {
        match (self, event) {
            (Condition::Tool(t), GraphEvent::ToolCalled { name, .. }) => t == name,
            (Condition::Intent(i), GraphEvent::IntentRecognized(name)) => i == name,
            (Condition::HumanRequest(true), GraphEvent::HumanRequested) => true,
            (Condition::HumanRequest(true), GraphEvent::Utterance(text)) => is_human_request(text),
            (Condition::Failures(n), GraphEvent::Failure) => failures >= *n,
            (Condition::Keywords(words), GraphEvent::Utterance(text)) => keyword_hit(words, text).is_some(),
            (Condition::Sentiment(SentimentKind::Negative), GraphEvent::Utterance(text)) => {
                sentiment(text) <= NEGATIVE_THRESHOLD
            }
            _ => false,
        }
    }

    /// The reason recorded when this condition fires on `event`
    /// (`tool:transfer`, `intent:billing`, `human-request`, `failures:3`,
    /// `keyword:refund`, `sentiment:negative`).
    pub fn reason(&self, event: &GraphEvent) -> String {
        match self {
            Condition::Tool(t) => format!("tool:{t}"),
            Condition::Intent(i) => format!("intent:{i}"),
            Condition::HumanRequest(_) => "human-request".into(),
            Condition::Failures(n) => format!("failures:{n}"),
            Condition::Keywords(words) => match event {
                GraphEvent::Utterance(text) => {
                    format!("keyword:{}", keyword_hit(words, text).unwrap_or_default())
                }
                _ => "keyword".into(),
            },
            Condition::Sentiment(SentimentKind::Negative) => "sentiment:negative".into(),
        }
    }
}

/// The first of `words` (phrases) said in `text`, as written.
pub fn keyword_hit(words: &[String], text: &str) -> Option<String> {
    let tokens = normalize(text);
    let toks: Vec<&str> = tokens.iter().map(String::as_str).collect();
    words.iter().find(|w| find_contiguous(&toks, &normalize(w)).is_some()).cloned()
}

/// Phrases that ask for a person (normalized, matched contiguously).
const HUMAN_PHRASES: &[&str] = &[
    "human",
    "a person",
    "real person",
    "live person",
    "actual person",
    "agent",
    "representative",
    "operator",
    "talk to someone",
    "speak to someone",
    "speak with someone",
    "talk with someone",
    "a manager",
    "supervisor",
    "customer service",
    "real people",
];

/// Words before a request that negate it ("I don't need a person").
const HUMAN_NEGATIONS: &[&str] = &["dont need", "dont want", "do not need", "do not want", "no need"];

/// Whether the caller asks for a person: "can I talk to a human", "agent
/// please", "get me a representative", "operator". "I don't need a
/// person" is not a request.
pub fn is_human_request(text: &str) -> bool {
    let tokens = normalize(text);
    let toks: Vec<&str> = tokens.iter().map(|t| t.trim_end_matches('s')).collect();
    let hit = HUMAN_PHRASES.iter().find_map(|p| {
        let phrase: Vec<String> = p.split(' ').map(|w| w.trim_end_matches('s').to_string()).collect();
        exact_run(&toks, &phrase)
    });
    let Some(start) = hit else { return false };
    let before: Vec<&str> = tokens[..start].iter().map(String::as_str).collect();
    !HUMAN_NEGATIONS.iter().any(|n| {
        let phrase: Vec<String> = n.split(' ').map(str::to_string).collect();
        exact_run(&before, &phrase).is_some()
    })
}

/// Start of the first contiguous run of `phrase` in `tokens` (exact words).
fn exact_run(tokens: &[&str], phrase: &[String]) -> Option<usize> {
    if phrase.is_empty() || phrase.len() > tokens.len() {
        return None;
    }
    (0..=tokens.len() - phrase.len()).find(|&i| phrase.iter().zip(&tokens[i..]).all(|(w, t)| w == t))
}

/// Lexicon: word → weight.
const LEXICON: &[(&str, i32)] = &[
    ("terrible", -2),
    ("awful", -2),
    ("horrible", -2),
    ("ridiculous", -2),
    ("useless", -2),
    ("worst", -2),
    ("hate", -2),
    ("furious", -2),
    ("unacceptable", -2),
    ("pathetic", -2),
    ("incompetent", -2),
    ("stupid", -2),
    ("disgusting", -2),
    ("scam", -2),
    ("angry", -2),
    ("bad", -1),
    ("annoyed", -1),
    ("annoying", -1),
    ("frustrated", -1),
    ("frustrating", -1),
    ("upset", -1),
    ("disappointed", -1),
    ("wrong", -1),
    ("broken", -1),
    ("sucks", -1),
    ("waste", -1),
    ("good", 1),
    ("great", 2),
    ("thanks", 1),
    ("thank", 1),
    ("perfect", 2),
    ("excellent", 2),
    ("helpful", 1),
    ("love", 2),
    ("wonderful", 2),
    ("happy", 1),
    ("nice", 1),
];

/// Words that flip the next scored word within three tokens ("not good").
const NEGATORS: &[&str] = &["not", "no", "never", "dont", "isnt", "wasnt", "arent", "cant", "wont", "didnt"];

/// Sentiment of one utterance: the sum of lexicon weights, each flipped
/// when one of the three words before it negates it. Negative below zero;
/// [`NEGATIVE_THRESHOLD`] marks a clearly unhappy caller ("this is
/// ridiculous", "terrible service, I'm frustrated").
pub fn sentiment(text: &str) -> i32 {
    let tokens = normalize(text);
    let mut score = 0;
    for (i, t) in tokens.iter().enumerate() {
        let Some(&(_, w)) = LEXICON.iter().find(|(word, _)| word == t) else { continue };
        let negated = tokens[i.saturating_sub(3)..i].iter().any(|p| NEGATORS.contains(&p.as_str()));
        score += if negated { -w } else { w };
    }
    score
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_requests_are_detected() {
        for yes in [
            "Can I talk to a human?",
            "agent please",
            "Get me a representative.",
            "OPERATOR",
            "I want to speak to someone",
            "let me talk to a real person",
            "Agents!",
        ] {
            assert!(is_human_request(yes), "{yes}");
        }
        for no in ["I'd like to book a table", "I don't need a person, thanks", "personal details", "humane"] {
            assert!(!is_human_request(no), "{no}");
        }
    }

    #[test]
    fn sentiment_scores_with_negation() {
        assert!(sentiment("This is ridiculous, terrible service") <= NEGATIVE_THRESHOLD);
        assert!(sentiment("I'm so frustrated, this is useless") <= NEGATIVE_THRESHOLD);
        assert_eq!(sentiment("not bad at all"), 1);
        assert!(sentiment("thanks, that's great") > 0);
        assert!(sentiment("that's wrong") > NEGATIVE_THRESHOLD, "mild is not negative");
        assert_eq!(sentiment("book me for tuesday"), 0);
    }

    #[test]
    fn targets_parse_exactly_one_kind() {
        let t: EscalationTarget = serde_yaml_ng::from_str("{number: '+15550100', trunk: main}").unwrap();
        assert_eq!(t, EscalationTarget::Number { number: "+15550100".into(), trunk: Some("main".into()) });
        let t: EscalationTarget = serde_yaml_ng::from_str("{sip: 'sip:a@b.example'}").unwrap();
        assert_eq!(t.to_string(), "sip:a@b.example");
        assert!(serde_yaml_ng::from_str::<EscalationTarget>("{queue: a, agent: b}").is_err());
        assert!(serde_yaml_ng::from_str::<EscalationTarget>("{sip: 'tel:1'}").is_err());
        assert!(serde_yaml_ng::from_str::<EscalationTarget>("{number: 'call me'}").is_err());
        assert!(serde_yaml_ng::from_str::<EscalationTarget>("{queue: a, trunk: t}").is_err());
    }

    #[test]
    fn keywords_match_phrases_and_inflections() {
        let words = vec!["refund".to_string(), "cancel my account".to_string()];
        assert_eq!(keyword_hit(&words, "I want refunds now"), Some("refund".into()));
        assert_eq!(keyword_hit(&words, "Please cancel my account."), Some("cancel my account".into()));
        assert_eq!(keyword_hit(&words, "cancel the account"), None);
    }
}
