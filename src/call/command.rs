//! The one command type every caller of a call uses (HTTP API, CLI,
//! applications, shutdown).

use super::actor::supervise::{SessionInfo, SuperviseAction, SuperviseError, SupervisorLink};
use crate::agent::escalation::TransferMode;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// A command to a live call's actor. Serde-tagged by `action` so the HTTP
/// API and the event stream speak the same JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CallCommand {
    /// Answer an incoming call now (200 OK with SDP).
    Answer,
    /// End the call: BYE when answered, else a final error response.
    Hangup {
        /// Reason recorded on the call (`api`, `shutdown`, …).
        reason: String,
    },
    /// Play a WAV prompt to the caller (any rate; resampled).
    Play {
        /// WAV file.
        path: PathBuf,
    },
    /// Start recording the caller to a WAV file (16 kHz mono).
    Record {
        /// WAV file to write.
        path: PathBuf,
    },
    /// Send DTMF digits as RFC 4733 telephone-events.
    SendDtmf {
        /// Digits `0-9*#A-D`.
        digits: String,
    },
    /// Transfer the caller: cold (REFER, RFC 3515; skald bridges when the
    /// caller's side refuses) or warm (skald calls the target first).
    Transfer {
        /// Target SIP URI (or a number dialed through the first trunk).
        target: String,
        /// `cold` (default) or `warm`.
        #[serde(default)]
        mode: TransferMode,
    },
    /// A supervisor starts, changes or ends a supervision session on the
    /// call (`listen`, `whisper`, `barge`, `takeover`, `leave`; see
    /// [`super::actor::supervise`]). Answered on `reply`.
    Supervise {
        /// The session to change; `None` starts a new one.
        session: Option<String>,
        /// What the supervisor does.
        mode: SuperviseAction,
        /// Whisper text: an instruction to an LLM agent for the rest of the call.
        text: Option<String>,
        /// Who (the API principal's name), for events.
        by: String,
        /// Where the actor answers.
        #[serde(skip)]
        reply: Reply<Result<SessionInfo, SuperviseError>>,
    },
    /// A supervisor's audio socket attaches to its session: the actor
    /// answers with the two audio channels.
    SuperviseAttach {
        /// The session (from the `Supervise` answer).
        session: String,
        /// Where the actor answers.
        #[serde(skip)]
        reply: Reply<Result<SupervisorLink, SuperviseError>>,
    },
}

/// A one-shot answer channel carried inside a [`CallCommand`]. Commands are
/// cloneable and serializable (broadcast, events), an answer channel is
/// neither: clones share the one sender (the first [`Reply::send`] wins),
/// it serializes to nothing, compares by identity, and a deserialized one
/// answers nobody.
pub struct Reply<T>(Arc<Mutex<Option<oneshot::Sender<T>>>>);

impl<T> Reply<T> {
    /// A reply channel and the receiver of its answer.
    pub fn new() -> (Reply<T>, oneshot::Receiver<T>) {
        let (tx, rx) = oneshot::channel();
        (Reply(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// Answers (once; later answers and an asker who left are ignored).
    pub fn send(&self, value: T) {
        let tx = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tx) = tx {
            let _ = tx.send(value);
        }
    }
}

impl<T> Default for Reply<T> {
    fn default() -> Self {
        Reply(Arc::new(Mutex::new(None)))
    }
}

impl<T> Clone for Reply<T> {
    fn clone(&self) -> Self {
        Reply(self.0.clone())
    }
}

impl<T> PartialEq for Reply<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}
