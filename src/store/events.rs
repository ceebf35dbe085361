//! Things that happened to a call, one row each: Twilio status callbacks
//! today, agent events later. Owns the `call_events` table.
//!
//! An event belongs to a call by skald's `call_id`, by Twilio's CallSid, or
//! both (a Twilio status callback can arrive before, or without, a skald
//! call record). `data` is free-form JSON, stored as text.

use super::{Store, StoreError};
use crate::ids::CallId;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

/// One event of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    /// skald's call, when known.
    pub call_id: Option<CallId>,
    /// Twilio's CallSid (`CA…`), when the call came through Twilio.
    pub twilio_call_sid: Option<String>,
    /// What happened, dotted: e.g. `twilio.status`, `twilio.inbound`.
    pub kind: String,
    /// When skald recorded it, Unix ms (UTC).
    pub at: i64,
    /// Details (for `twilio.status`: every parameter Twilio sent).
    pub data: serde_json::Value,
}

/// The `call_events` table and its lookup indexes (portable SQL, see the
/// module doc of [`super`]).
pub(super) const CREATE_EVENTS: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS call_events (
    id TEXT PRIMARY KEY,
    call_id TEXT,
    twilio_call_sid TEXT,
    kind TEXT NOT NULL,
    at BIGINT NOT NULL,
    data TEXT NOT NULL
)",
    "CREATE INDEX IF NOT EXISTS call_events_call_id ON call_events (call_id)",
    "CREATE INDEX IF NOT EXISTS call_events_twilio_call_sid ON call_events (twilio_call_sid)",
];

const INSERT_EVENT: &str = "INSERT INTO call_events (id, call_id, twilio_call_sid, kind, at, data) \
     VALUES ($1, $2, $3, $4, $5, $6)";

const LIST_EVENTS: &str = "SELECT call_id, twilio_call_sid, kind, at, data FROM call_events \
     WHERE call_id = $1 OR twilio_call_sid = $2 ORDER BY at, id";

impl Store {
    /// Appends an event. Its row id is a time-ordered UUID (v7, ordered by
    /// creation within the process), so events of the same millisecond list
    /// in the order they were added. Errors: [`StoreError::Db`].
    pub async fn add_event(&self, e: &CallEvent) -> Result<(), StoreError> {
        sqlx::query(INSERT_EVENT)
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(e.call_id.map(|id| id.to_string()))
            .bind(e.twilio_call_sid.clone())
            .bind(e.kind.clone())
            .bind(e.at)
            .bind(e.data.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The events of a call, by its skald id or its Twilio CallSid (either
    /// may be `None`), oldest first. Rows whose JSON no longer parses show
    /// their text as a JSON string.
    pub async fn events_for_call(
        &self,
        call_id: Option<CallId>,
        twilio_call_sid: Option<&str>,
    ) -> Result<Vec<CallEvent>, StoreError> {
        if call_id.is_none() && twilio_call_sid.is_none() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(LIST_EVENTS)
            .bind(call_id.map(|id| id.to_string()))
            .bind(twilio_call_sid.map(str::to_owned))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }
}

/// One row back into an event.
fn decode(r: &AnyRow) -> Result<CallEvent, StoreError> {
    let call_id = r
        .try_get::<Option<String>, _>("call_id")?
        .map(|t| CallId::parse(&t).map_err(|_| StoreError::Corrupt(format!("event call_id {t:?}"))))
        .transpose()?;
    let data: String = r.try_get("data")?;
    Ok(CallEvent {
        call_id,
        twilio_call_sid: r.try_get("twilio_call_sid")?,
        kind: r.try_get("kind")?,
        at: r.try_get("at")?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(call_id: Option<CallId>, sid: Option<&str>, at: i64) -> CallEvent {
        CallEvent {
            call_id,
            twilio_call_sid: sid.map(str::to_owned),
            kind: "twilio.status".into(),
            at,
            data: json!({"CallStatus": format!("s{at}")}),
        }
    }

    #[tokio::test]
    async fn events_by_call_id_or_call_sid_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/e.db", dir.path().display())).await.unwrap();
        let id = CallId::new();
        let by_sid_late = event(None, Some("CA1"), 30);
        let by_id = event(Some(id), None, 20);
        let by_both = event(Some(id), Some("CA1"), 10);
        let other = event(Some(CallId::new()), Some("CA2"), 15);
        for e in [&by_sid_late, &by_id, &by_both, &other] {
            store.add_event(e).await.unwrap();
        }
        assert_eq!(
            store.events_for_call(Some(id), Some("CA1")).await.unwrap(),
            vec![by_both.clone(), by_id.clone(), by_sid_late.clone()]
        );
        assert_eq!(store.events_for_call(None, Some("CA1")).await.unwrap(), vec![by_both.clone(), by_sid_late]);
        assert_eq!(store.events_for_call(Some(id), None).await.unwrap(), vec![by_both, by_id]);
        assert!(store.events_for_call(None, None).await.unwrap().is_empty());
        assert!(store.events_for_call(None, Some("CA9")).await.unwrap().is_empty());
    }
}
