//! The registry of live calls: who is up, and a mailbox to each call's actor.

use super::command::CallCommand;
use super::state::CallState;
use crate::ids::CallId;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Errors sending to a call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    /// No live call with that id.
    #[error("no live call {0}")]
    NotFound(CallId),
    /// The call is ending and takes no more commands.
    #[error("call {0} is ending")]
    Gone(CallId),
}

/// A live call as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CallSummary {
    /// skald call id.
    pub id: CallId,
    /// SIP Call-ID.
    pub sip_call_id: String,
    /// Caller number.
    pub from: String,
    /// Called number.
    pub did: String,
    /// Application.
    pub app: String,
    /// Current state.
    pub state: CallState,
    /// Unix ms when it started.
    pub started_at: i64,
    /// The contact-center queue the call waits in or was answered from.
    pub queue: Option<String>,
}

struct Entry {
    summary: CallSummary,
    tx: mpsc::Sender<CallCommand>,
}

/// Cheap-to-clone handle on the live-call table. The lock is held only for
/// map operations, never across an await or on the audio path.
#[derive(Clone, Default)]
pub struct CallRegistry {
    inner: Arc<Mutex<HashMap<CallId, Entry>>>,
}

impl CallRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a call and its command mailbox.
    pub fn insert(&self, summary: CallSummary, tx: mpsc::Sender<CallCommand>) {
        let id = summary.id;
        self.lock().insert(id, Entry { summary, tx });
    }

    /// Updates the state shown for a call.
    pub fn set_state(&self, id: CallId, state: CallState) {
        if let Some(e) = self.lock().get_mut(&id) {
            e.summary.state = state;
        }
    }

    /// Sets the queue a call joined (supervisors limited to queues may act
    /// on it).
    pub fn set_queue(&self, id: CallId, queue: &str) {
        if let Some(e) = self.lock().get_mut(&id) {
            e.summary.queue = Some(queue.to_string());
        }
    }

    /// Removes a call (its actor has ended).
    pub fn remove(&self, id: CallId) {
        self.lock().remove(&id);
    }

    /// Live calls, oldest first.
    pub fn list(&self) -> Vec<CallSummary> {
        let mut v: Vec<_> = self.lock().values().map(|e| e.summary.clone()).collect();
        v.sort_by_key(|s| s.started_at);
        v
    }

    /// One live call.
    pub fn get(&self, id: CallId) -> Option<CallSummary> {
        self.lock().get(&id).map(|e| e.summary.clone())
    }

    /// Number of live calls.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no call is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends a command to a call's actor. Errors: `NotFound` when no such
    /// live call, `Gone` when its mailbox is closed or full (ending).
    pub fn send(&self, id: CallId, cmd: CallCommand) -> Result<(), RegistryError> {
        let tx = self.lock().get(&id).map(|e| e.tx.clone()).ok_or(RegistryError::NotFound(id))?;
        tx.try_send(cmd).map_err(|_| RegistryError::Gone(id))
    }

    /// Sends a command to every live call (shutdown).
    pub fn broadcast(&self, cmd: &CallCommand) {
        let txs: Vec<_> = self.lock().values().map(|e| e.tx.clone()).collect();
        for tx in txs {
            let _ = tx.try_send(cmd.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CallId, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single inserts/removes), so recover from poisoning.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
