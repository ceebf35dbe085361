//! The transcript of a call: one row per turn (caller or agent), with the
//! timing of each agent reply. Owns the `turns` table.

use super::{Store, StoreError};
use crate::ids::CallId;
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// Where one agent reply's time went, ms: the latency waterfall. Each
/// stage is measured from the end of the caller's speech (the end of the
/// last speech window before the silence that ended the turn), so the
/// values grow: STT final → end-of-turn decision → agent decided (LLM: first
/// token) → first TTS audio → first RTP packet. With a preemptive reply the
/// agent and TTS may come before the decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnLatency {
    /// End of speech → final transcript.
    pub stt_ms: Option<u32>,
    /// End of speech → end-of-turn decision (model, silence rule or max
    /// silence; see `pipeline::endpointing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_ms: Option<u32>,
    /// End of speech → the LLM's first streamed token (LLM agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_first_token_ms: Option<u32>,
    /// The reply was prepared before the end of the turn was confirmed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preemptive: bool,
    /// End of speech → agent reply text.
    pub agent_ms: Option<u32>,
    /// End of speech → first synthesized audio.
    pub tts_ms: Option<u32>,
    /// End of speech → first RTP packet of the reply on the wire.
    pub first_packet_ms: Option<u32>,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnRecord {
    /// The call.
    pub call_id: CallId,
    /// Order within the call, from 0.
    pub seq: u32,
    /// `caller` or `agent`.
    pub speaker: String,
    /// What was said; for an interrupted agent turn, what the caller heard.
    pub text: String,
    /// Start, ms from the answer.
    pub start_ms: i64,
    /// End, ms from the answer.
    pub end_ms: i64,
    /// True when the caller talked over this agent turn.
    pub interrupted: bool,
    /// Timing of an agent reply (agent turns only).
    pub latency: Option<TurnLatency>,
}

/// The `turns` table (portable SQL, see the module doc of [`super`]).
pub(super) const CREATE_TURNS: &str = "CREATE TABLE IF NOT EXISTS turns (
    call_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    interrupted INTEGER NOT NULL,
    latency TEXT,
    PRIMARY KEY (call_id, seq)
)";

const INSERT_TURN: &str = "INSERT INTO turns (call_id, seq, speaker, text, start_ms, end_ms, interrupted, latency) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const LIST_TURNS: &str = "SELECT call_id, seq, speaker, text, start_ms, end_ms, interrupted, latency \
     FROM turns WHERE call_id = $1 ORDER BY seq";

impl Store {
    /// Appends a turn. Errors: [`StoreError::Db`] (including a repeated seq).
    pub async fn insert_turn(&self, t: &TurnRecord) -> Result<(), StoreError> {
        sqlx::query(INSERT_TURN)
            .bind(t.call_id.to_string())
            .bind(i64::from(t.seq))
            .bind(t.speaker.clone())
            .bind(t.text.clone())
            .bind(t.start_ms)
            .bind(t.end_ms)
            .bind(i64::from(t.interrupted))
            .bind(t.latency.and_then(|l| serde_json::to_string(&l).ok()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A call's turns in order.
    pub async fn list_turns(&self, call_id: CallId) -> Result<Vec<TurnRecord>, StoreError> {
        let rows = sqlx::query(LIST_TURNS).bind(call_id.to_string()).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(TurnRecord {
                    call_id,
                    seq: u32::try_from(r.try_get::<i64, _>("seq")?).unwrap_or(0),
                    speaker: r.try_get("speaker")?,
                    text: r.try_get("text")?,
                    start_ms: r.try_get("start_ms")?,
                    end_ms: r.try_get("end_ms")?,
                    interrupted: r.try_get::<i64, _>("interrupted")? != 0,
                    latency: r
                        .try_get::<Option<String>, _>("latency")?
                        .and_then(|t| serde_json::from_str(&t).ok()),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/t.db", dir.path().display())).await.unwrap();
        let id = CallId::new();
        let agent = TurnRecord {
            call_id: id,
            seq: 1,
            speaker: "agent".into(),
            text: "Hello, Bright Smile Dental".into(),
            start_ms: 1200,
            end_ms: 2900,
            interrupted: true,
            latency: Some(TurnLatency {
                stt_ms: Some(120),
                decision_ms: Some(90),
                agent_ms: Some(121),
                tts_ms: Some(300),
                first_packet_ms: Some(310),
                ..Default::default()
            }),
        };
        let caller = TurnRecord { seq: 0, speaker: "caller".into(), text: "hi".into(), interrupted: false, latency: None, ..agent.clone() };
        store.insert_turn(&agent).await.unwrap();
        store.insert_turn(&caller).await.unwrap();
        assert!(store.insert_turn(&caller).await.is_err(), "seq is unique per call");
        assert_eq!(store.list_turns(id).await.unwrap(), vec![caller, agent]);
        assert!(store.list_turns(CallId::new()).await.unwrap().is_empty());
    }
}
