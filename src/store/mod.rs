//! Call records (sqlx: SQLite by default, PostgreSQL by URL). CONTRACT STUB.

use crate::ids::CallId;
use serde::Serialize;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Database error.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// One call's record. Timestamps are Unix milliseconds (UTC).
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct CallRecord {
    /// skald call id.
    pub id: CallId,
    /// SIP Call-ID.
    pub sip_call_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Caller (From URI).
    pub from_uri: String,
    /// Callee (To URI).
    pub to_uri: String,
    /// Called number (DID).
    pub did: String,
    /// Peer's signaling address.
    pub remote_addr: String,
    /// Application that ran.
    pub app: Option<String>,
    /// Negotiated codec (`PCMU`/`PCMA`).
    pub codec: Option<String>,
    /// `ringing`, `answered`, `ended`.
    pub state: String,
    /// INVITE received/sent, ms.
    pub invited_at: i64,
    /// Answered, ms.
    pub answered_at: Option<i64>,
    /// Ended, ms.
    pub ended_at: Option<i64>,
    /// Why it ended (`remote-bye`, `local-bye`, `cancelled`, `rtp-timeout`, …).
    pub end_reason: Option<String>,
    /// Final SIP status of the INVITE (200, 404, 487, …).
    pub sip_status: Option<u16>,
    /// DTMF digits received, in order.
    pub dtmf: String,
    /// Recording file, if any.
    pub recording_path: Option<String>,
}

/// Handle to the store (cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {}

impl Store {
    /// Opens (and migrates) the database at `url`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let _ = url;
        todo!()
    }
    /// Inserts a new record.
    pub async fn insert_call(&self, rec: &CallRecord) -> Result<(), StoreError> {
        let _ = rec;
        todo!()
    }
    /// Overwrites the record with the same id.
    pub async fn update_call(&self, rec: &CallRecord) -> Result<(), StoreError> {
        let _ = rec;
        todo!()
    }
    /// One record.
    pub async fn get_call(&self, id: CallId) -> Result<Option<CallRecord>, StoreError> {
        let _ = id;
        todo!()
    }
    /// Most recent records first.
    pub async fn list_calls(&self, limit: u32) -> Result<Vec<CallRecord>, StoreError> {
        let _ = limit;
        todo!()
    }
    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        todo!()
    }
    /// Closes the pool (flushes).
    pub async fn close(&self) {
        todo!()
    }
}
