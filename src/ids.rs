//! Newtype identifiers used across skald, so a call id is never confused with
//! a SIP Call-ID or a dialog id.

use serde::{Deserialize, Serialize};
use std::fmt;

/// skald's own id of one call (one caller's session, possibly many legs).
/// A UUID v4 rendered as 36 characters; stable in records, logs and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct CallId(pub uuid::Uuid);

impl CallId {
    /// A new random call id.
    pub fn new() -> Self {
        CallId(uuid::Uuid::new_v4())
    }

    /// Parses the 36-character form. Errors when the text is not a UUID.
    pub fn parse(s: &str) -> Result<Self, uuid::Error> {
        Ok(CallId(uuid::Uuid::parse_str(s)?))
    }
}

impl Default for CallId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies one SIP dialog inside the SIP endpoint (RFC 3261 §12: Call-ID +
/// local tag + remote tag). An opaque counter: cheap to copy and hash, and
/// valid before the remote tag is known (early dialog, UAC side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DialogId(pub u64);

impl fmt::Display for DialogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dlg-{}", self.0)
    }
}

/// The name of one contact-center queue: a key under `queues:` in
/// `sip-config/queues.yaml` (e.g. `billing`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QueueId(pub String);

impl From<&str> for QueueId {
    fn from(s: &str) -> Self {
        QueueId(s.to_string())
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of one human contact-center agent: an `id:` under `agents:` in
/// `sip-config/queues.yaml` (e.g. `alice`). Not an AI agent's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HumanAgentId(pub String);

impl From<&str> for HumanAgentId {
    fn from(s: &str) -> Self {
        HumanAgentId(s.to_string())
    }
}

impl fmt::Display for HumanAgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
