//! The in-process event bus: every step of every call (state changes,
//! transcript turns, agent and tool events, transfers, context received,
//! Twilio status) as a typed, versioned JSON event, broadcast to live
//! subscribers (`GET /api/v1/events`, the control page).
//!
//! Schema `skald.events.v1`: `{ "v": 1, "seq": N, "at": UNIX_MS,
//! "call_id": "…"|null, "kind": "call.state"|"transcript.final"|…,
//! "data": {…} }`. `seq` increases by one per event of this process, so a
//! subscriber that lagged knows how many it missed. The bus never blocks a
//! call: a slow subscriber loses the oldest events (tokio broadcast
//! semantics) and is told so.

use crate::ids::CallId;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast;

/// Events kept for slow subscribers before they lag.
const CAPACITY: usize = 4096;

/// Schema name of the live events.
pub const SCHEMA: &str = "skald.events.v1";

/// One event, as subscribers receive it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveEvent {
    /// Schema version (1).
    pub v: u32,
    /// Position in this process's event sequence.
    pub seq: u64,
    /// Unix ms.
    pub at: i64,
    /// The call, when the event belongs to one.
    pub call_id: Option<CallId>,
    /// Dotted kind: `call.state`, `transcript.final`, `transfer.started`…
    pub kind: String,
    /// Kind-specific payload.
    pub data: serde_json::Value,
}

/// Cheap-to-clone handle on the bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    /// Broadcast channel of events.
    tx: broadcast::Sender<Arc<LiveEvent>>,
    /// Next `seq`.
    seq: Arc<AtomicU64>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventBus { tx, seq: Arc::new(AtomicU64::new(1)) }
    }

    /// Publishes an event (dropped when nobody listens); returns it.
    pub fn publish(&self, call_id: Option<CallId>, kind: &str, at: i64, data: serde_json::Value) -> Arc<LiveEvent> {
        let e = Arc::new(LiveEvent {
            v: 1,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            at,
            call_id,
            kind: kind.to_string(),
            data,
        });
        let _ = self.tx.send(e.clone());
        e
    }

    /// A new subscriber, receiving events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_in_order_and_lag_is_reported() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        let id = CallId::new();
        bus.publish(Some(id), "call.state", 1, serde_json::json!({"state": "answered"}));
        bus.publish(None, "twilio.status", 2, serde_json::json!({}));
        let a = rx.recv().await.unwrap();
        let b = rx.recv().await.unwrap();
        assert_eq!((a.kind.as_str(), a.call_id, a.seq + 1), ("call.state", Some(id), b.seq));
        for i in 0..(CAPACITY + 10) {
            bus.publish(None, "x", i as i64, serde_json::Value::Null);
        }
        assert!(matches!(rx.recv().await, Err(broadcast::error::RecvError::Lagged(10))));
    }
}
