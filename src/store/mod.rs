//! Call records (sqlx `Any` driver: SQLite by default, PostgreSQL by URL).
//!
//! This module owns the `calls` table: one row per call, written when the
//! call starts ([`Store::insert_call`]) and overwritten on every state change
//! ([`Store::update_call`]), so no call record is lost when skald stops.
//!
//! The schema is created at [`Store::open`] (`CREATE TABLE IF NOT EXISTS`),
//! in SQL that SQLite and PostgreSQL both accept: `TEXT`, `BIGINT`,
//! `INTEGER`, `DOUBLE PRECISION`, and `$1, $2, …` placeholders (sqlx's SQLite
//! driver binds `$N` by number). Timestamps are `BIGINT` Unix milliseconds,
//! UTC. Unsigned counters are stored as `BIGINT` (saturating at `i64::MAX`).
//!
//! SQLite specifics: the parent directory of the database file is created,
//! `mode=rwc` is added to the URL when no `mode` is given (so the file is
//! created), the journal is switched to WAL (readers never block the writer)
//! and every connection waits up to 5 s on a locked database (`busy_timeout`).
//! An in-memory database (`sqlite::memory:`) uses a single connection, since
//! each connection would otherwise see its own empty database.

pub mod events;
pub mod turns;

use crate::ids::CallId;
use serde::Serialize;
use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Executor, Row};
use std::time::Duration;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Database error.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported database url (want sqlite: or postgres:)")]
    UnsupportedUrl,
    /// Creating the SQLite file's parent directory failed.
    #[error("creating database directory: {0}")]
    Dir(#[from] std::io::Error),
    /// `insert_call` for an id that already has a record.
    #[error("call {0} already has a record")]
    Duplicate(CallId),
    /// `update_call` for an id that has no record.
    #[error("no record for call {0}")]
    NotFound(CallId),
    /// A stored row does not decode into a [`CallRecord`] (bad id text).
    #[error("corrupt row: {0}")]
    Corrupt(String),
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
    /// How the call reached skald: `sip` or `twilio-stream`.
    pub transport: Option<String>,
    /// SIP transport protocol of a SIP call (`udp`, `tcp`).
    pub sip_transport: Option<String>,
    /// Twilio's CallSid (`CA…`) of a call that came through Twilio.
    pub twilio_call_sid: Option<String>,
    /// Voice-agent calls: the longest dead air, ms: silence on the open line
    /// while the agent owed the caller an answer (from the end of the
    /// caller's speech to the agent's first audio on the wire).
    pub longest_dead_air_ms: Option<u64>,
    /// RTP packets received.
    pub rtp_packets_in: Option<u64>,
    /// RTP packets sent.
    pub rtp_packets_out: Option<u64>,
    /// RTP packets lost (RFC 3550 A.3 cumulative loss).
    pub rtp_lost: Option<u64>,
    /// Last interarrival jitter, ms (RFC 3550 §6.4.1).
    pub jitter_ms: Option<f64>,
    /// What failed during the call and what skald fell back to, in order
    /// (e.g. `stt: fatal: …; spoke fallback`). Stored as a JSON array.
    pub errors: Vec<String>,
}

/// Handle to the store (cheap to clone: a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    /// The connection pool; closed by [`Store::close`].
    pool: AnyPool,
}

/// Which SQL database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The columns, in the order of [`bind_all`] (`$1` … `$26`). A macro so
/// the SQL below stays `&'static str` (sqlx audits dynamic SQL).
macro_rules! columns {
    () => {
        "id, sip_call_id, direction, from_uri, to_uri, did, remote_addr, app, codec, state, \
         invited_at, answered_at, ended_at, end_reason, sip_status, dtmf, recording_path, \
         transport, rtp_packets_in, rtp_packets_out, rtp_lost, jitter_ms, errors, \
         sip_transport, twilio_call_sid, longest_dead_air_ms"
    };
}

const INSERT_CALL: &str = concat!(
    "INSERT INTO calls (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     $18, $19, $20, $21, $22, $23, $24, $25, $26)"
);

const UPDATE_CALL: &str = "UPDATE calls SET sip_call_id = $2, direction = $3, from_uri = $4, \
     to_uri = $5, did = $6, remote_addr = $7, app = $8, codec = $9, state = $10, \
     invited_at = $11, answered_at = $12, ended_at = $13, end_reason = $14, sip_status = $15, \
     dtmf = $16, recording_path = $17, transport = $18, rtp_packets_in = $19, \
     rtp_packets_out = $20, rtp_lost = $21, jitter_ms = $22, errors = $23, \
     sip_transport = $24, twilio_call_sid = $25, longest_dead_air_ms = $26 WHERE id = $1";

const GET_CALL: &str = concat!("SELECT ", columns!(), " FROM calls WHERE id = $1");

const LIST_CALLS: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM calls ORDER BY invited_at DESC, id DESC LIMIT $1"
);

const CREATE_CALLS: &str = "CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    sip_call_id TEXT NOT NULL,
    direction TEXT NOT NULL,
    from_uri TEXT NOT NULL,
    to_uri TEXT NOT NULL,
    did TEXT NOT NULL,
    remote_addr TEXT NOT NULL,
    app TEXT,
    codec TEXT,
    state TEXT NOT NULL,
    invited_at BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at BIGINT,
    end_reason TEXT,
    sip_status INTEGER,
    dtmf TEXT NOT NULL,
    recording_path TEXT,
    transport TEXT,
    rtp_packets_in BIGINT,
    rtp_packets_out BIGINT,
    rtp_lost BIGINT,
    jitter_ms DOUBLE PRECISION,
    errors TEXT,
    sip_transport TEXT,
    twilio_call_sid TEXT,
    longest_dead_air_ms BIGINT
)";

/// Columns added after the first schema: `ALTER TABLE … ADD COLUMN` for a
/// database created before them (an "already exists" error is expected on
/// every other start and ignored).
const ADDED_COLUMNS: [&str; 3] = [
    "ALTER TABLE calls ADD COLUMN sip_transport TEXT",
    "ALTER TABLE calls ADD COLUMN twilio_call_sid TEXT",
    "ALTER TABLE calls ADD COLUMN longest_dead_air_ms BIGINT",
];

const CREATE_INDEX: &str = "CREATE INDEX IF NOT EXISTS calls_invited_at ON calls (invited_at)";

/// How long a connection waits on a locked SQLite database (5 s).
const SQLITE_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 5000";

/// Upper bound on [`Store::ping`].
const PING_TIMEOUT: Duration = Duration::from_secs(2);

impl Store {
    /// Opens the database at `url` and creates the schema if missing.
    /// `url`: `sqlite://path/to/file.db[?mode=rwc]`, `sqlite::memory:`, or
    /// `postgres://user:pass@host/db`. Errors: [`StoreError::UnsupportedUrl`],
    /// [`StoreError::Dir`] when the SQLite directory cannot be created,
    /// [`StoreError::Db`] when connecting or creating the schema fails.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url).ok_or(StoreError::UnsupportedUrl)?;
        let mut url = url.to_owned();
        let mut opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            if memory {
                // Every connection to `:memory:` is its own database; keep one
                // forever.
                opts = opts
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            } else {
                if let Some(parent) =
                    sqlite_path(&url).and_then(|p| p.parent().map(|d| d.to_owned()))
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent)?;
                }
                if !url.contains("mode=") {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str("mode=rwc");
                }
            }
            opts = opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(SQLITE_BUSY_TIMEOUT).await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await?;
        if backend == Backend::Sqlite && !url.contains(":memory:") && !url.contains("mode=memory") {
            // Persistent in the file: later connections inherit it.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        pool.execute(CREATE_CALLS).await?;
        for alter in ADDED_COLUMNS {
            if let Err(e) = pool.execute(alter).await {
                let msg = e.to_string();
                if !msg.contains("duplicate column") && !msg.contains("already exists") {
                    return Err(e.into());
                }
            }
        }
        pool.execute(CREATE_INDEX).await?;
        pool.execute(turns::CREATE_TURNS).await?;
        for sql in events::CREATE_EVENTS {
            pool.execute(sql).await?;
        }
        Ok(Store { pool })
    }

    /// Inserts a new record. Errors: [`StoreError::Duplicate`] when the id
    /// already has one, else [`StoreError::Db`].
    pub async fn insert_call(&self, rec: &CallRecord) -> Result<(), StoreError> {
        match bind_all(sqlx::query(INSERT_CALL), rec)
            .execute(&self.pool)
            .await
        {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Duplicate(rec.id))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Overwrites every column of the record with the same id. Errors:
    /// [`StoreError::NotFound`] when there is none, else [`StoreError::Db`].
    pub async fn update_call(&self, rec: &CallRecord) -> Result<(), StoreError> {
        let done = bind_all(sqlx::query(UPDATE_CALL), rec)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(rec.id));
        }
        Ok(())
    }

    /// One record, `None` when the id has none.
    pub async fn get_call(&self, id: CallId) -> Result<Option<CallRecord>, StoreError> {
        let row = sqlx::query(GET_CALL)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// Up to `limit` records, most recent first (by `invited_at`, then id).
    pub async fn list_calls(&self, limit: u32) -> Result<Vec<CallRecord>, StoreError> {
        let rows = sqlx::query(LIST_CALLS)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// True when the database answers `SELECT 1` within 2 s.
    pub async fn ping(&self) -> bool {
        if self.pool.is_closed() {
            return false;
        }
        let q = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(tokio::time::timeout(PING_TIMEOUT, q).await, Ok(Ok(_)))
    }

    /// Closes the pool: waits for queries in flight, then closes every
    /// connection (SQLite checkpoints its WAL). Later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The backend a URL names, by scheme.
fn backend_of(url: &str) -> Option<Backend> {
    if url.starts_with("sqlite:") {
        Some(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Some(Backend::Postgres)
    } else {
        None
    }
}

/// The file path of a `sqlite:` URL (`sqlite://a/b.db?x` → `a/b.db`).
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty()).then(|| path.into())
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds every column of `rec`, in `columns!()` order.
fn bind_all<'q>(q: AnyQuery<'q>, rec: &CallRecord) -> AnyQuery<'q> {
    let count = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    q.bind(rec.id.to_string())
        .bind(rec.sip_call_id.clone())
        .bind(rec.direction.clone())
        .bind(rec.from_uri.clone())
        .bind(rec.to_uri.clone())
        .bind(rec.did.clone())
        .bind(rec.remote_addr.clone())
        .bind(rec.app.clone())
        .bind(rec.codec.clone())
        .bind(rec.state.clone())
        .bind(rec.invited_at)
        .bind(rec.answered_at)
        .bind(rec.ended_at)
        .bind(rec.end_reason.clone())
        .bind(rec.sip_status.map(i32::from))
        .bind(rec.dtmf.clone())
        .bind(rec.recording_path.clone())
        .bind(rec.transport.clone())
        .bind(count(rec.rtp_packets_in))
        .bind(count(rec.rtp_packets_out))
        .bind(count(rec.rtp_lost))
        .bind(rec.jitter_ms)
        .bind(serde_json::to_string(&rec.errors).unwrap_or_else(|_| "[]".into()))
        .bind(rec.sip_transport.clone())
        .bind(rec.twilio_call_sid.clone())
        .bind(count(rec.longest_dead_air_ms))
}

/// One row of `SELECT columns!()` back into a record.
fn decode(r: &AnyRow) -> Result<CallRecord, StoreError> {
    let id_text: String = r.try_get("id")?;
    let id = CallId::parse(&id_text).map_err(|_| StoreError::Corrupt(format!("id {id_text:?}")))?;
    let count = |col: &str| -> Result<Option<u64>, sqlx::Error> {
        Ok(r.try_get::<Option<i64>, _>(col)?
            .map(|n| u64::try_from(n).unwrap_or(0)))
    };
    let sip_status = r
        .try_get::<Option<i64>, _>("sip_status")?
        .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt(format!("sip_status {s}"))))
        .transpose()?;
    Ok(CallRecord {
        id,
        sip_call_id: r.try_get("sip_call_id")?,
        direction: r.try_get("direction")?,
        from_uri: r.try_get("from_uri")?,
        to_uri: r.try_get("to_uri")?,
        did: r.try_get("did")?,
        remote_addr: r.try_get("remote_addr")?,
        app: r.try_get("app")?,
        codec: r.try_get("codec")?,
        state: r.try_get("state")?,
        invited_at: r.try_get("invited_at")?,
        answered_at: r.try_get("answered_at")?,
        ended_at: r.try_get("ended_at")?,
        end_reason: r.try_get("end_reason")?,
        sip_status,
        dtmf: r.try_get("dtmf")?,
        recording_path: r.try_get("recording_path")?,
        transport: r.try_get("transport")?,
        rtp_packets_in: count("rtp_packets_in")?,
        rtp_packets_out: count("rtp_packets_out")?,
        rtp_lost: count("rtp_lost")?,
        jitter_ms: r.try_get("jitter_ms")?,
        errors: r
            .try_get::<Option<String>, _>("errors")?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default(),
        sip_transport: r.try_get("sip_transport")?,
        twilio_call_sid: r.try_get("twilio_call_sid")?,
        longest_dead_air_ms: count("longest_dead_air_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(invited_at: i64) -> CallRecord {
        CallRecord {
            id: CallId::new(),
            sip_call_id: format!("abc-{invited_at}@192.0.2.1"),
            direction: "inbound".into(),
            from_uri: "sip:+4915112345642@192.0.2.1".into(),
            to_uri: "sip:1000@198.51.100.2".into(),
            did: "1000".into(),
            remote_addr: "192.0.2.1:5060".into(),
            app: Some("echo".into()),
            state: "ringing".into(),
            invited_at,
            ..Default::default()
        }
    }

    fn db_url(dir: &tempfile::TempDir) -> String {
        format!("sqlite://{}/sub/dir/calls.db", dir.path().display())
    }

    #[tokio::test]
    async fn insert_then_get_returns_equal_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&db_url(&dir)).await.unwrap();
        let rec = record(1_700_000_000_000);
        store.insert_call(&rec).await.unwrap();
        assert_eq!(store.get_call(rec.id).await.unwrap(), Some(rec.clone()));
        assert_eq!(store.get_call(CallId::new()).await.unwrap(), None);
        assert!(
            matches!(store.insert_call(&rec).await, Err(StoreError::Duplicate(id)) if id == rec.id)
        );
        assert!(store.ping().await);
        store.close().await;
        assert!(!store.ping().await);
    }

    #[tokio::test]
    async fn update_overwrites_every_column() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&db_url(&dir)).await.unwrap();
        let mut rec = record(1_000);
        store.insert_call(&rec).await.unwrap();
        rec.state = "ended".into();
        rec.codec = Some("PCMU".into());
        rec.answered_at = Some(2_000);
        rec.ended_at = Some(9_000);
        rec.end_reason = Some("remote-bye".into());
        rec.sip_status = Some(200);
        rec.dtmf = "12#".into();
        rec.recording_path = Some("/tmp/r.wav".into());
        rec.transport = Some("sip".into());
        rec.sip_transport = Some("udp".into());
        rec.twilio_call_sid = Some("CA0123456789abcdef0123456789abcdef".into());
        rec.rtp_packets_in = Some(350);
        rec.rtp_packets_out = Some(351);
        rec.rtp_lost = Some(u64::MAX); // saturates to i64::MAX in storage
        rec.jitter_ms = Some(3.25);
        rec.longest_dead_air_ms = Some(640);
        store.update_call(&rec).await.unwrap();
        let got = store.get_call(rec.id).await.unwrap().unwrap();
        assert_eq!(got.rtp_lost, Some(i64::MAX as u64));
        rec.rtp_lost = got.rtp_lost;
        assert_eq!(got, rec);

        let missing = record(5);
        assert!(
            matches!(store.update_call(&missing).await, Err(StoreError::NotFound(id)) if id == missing.id)
        );
    }

    #[tokio::test]
    async fn list_is_newest_first_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&db_url(&dir)).await.unwrap();
        for t in [30, 10, 50, 20, 40] {
            store.insert_call(&record(t)).await.unwrap();
        }
        let all: Vec<i64> = store
            .list_calls(100)
            .await
            .unwrap()
            .iter()
            .map(|r| r.invited_at)
            .collect();
        assert_eq!(all, [50, 40, 30, 20, 10]);
        let two: Vec<i64> = store
            .list_calls(2)
            .await
            .unwrap()
            .iter()
            .map(|r| r.invited_at)
            .collect();
        assert_eq!(two, [50, 40]);
        assert!(store.list_calls(0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let url = db_url(&dir);
        let rec = record(77);
        {
            let store = Store::open(&url).await.unwrap();
            store.insert_call(&rec).await.unwrap();
            store.close().await;
        }
        let store = Store::open(&format!("{url}?mode=rwc")).await.unwrap();
        assert_eq!(store.get_call(rec.id).await.unwrap(), Some(rec));
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn memory_database_works() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let rec = record(1);
        store.insert_call(&rec).await.unwrap();
        assert_eq!(store.list_calls(10).await.unwrap(), vec![rec]);
    }

    /// Runs the same checks on PostgreSQL when `SKALD_TEST_PG_URL` names a
    /// throwaway database (its `calls` table is dropped first); skipped
    /// otherwise.
    #[tokio::test]
    async fn postgres_when_configured() {
        let Ok(url) = std::env::var("SKALD_TEST_PG_URL") else {
            eprintln!("SKALD_TEST_PG_URL not set; skipping the PostgreSQL test");
            return;
        };
        {
            let store = Store::open(&url).await.unwrap();
            store.pool.execute("DROP TABLE calls").await.unwrap();
            store.close().await;
        }
        let store = Store::open(&url).await.unwrap();
        let mut rec = record(1_700_000_000_000);
        store.insert_call(&rec).await.unwrap();
        assert_eq!(store.get_call(rec.id).await.unwrap(), Some(rec.clone()));
        assert!(matches!(
            store.insert_call(&rec).await,
            Err(StoreError::Duplicate(_))
        ));
        rec.sip_status = Some(487);
        rec.ended_at = Some(1_700_000_001_000);
        rec.rtp_packets_in = Some(10);
        rec.jitter_ms = Some(1.5);
        store.update_call(&rec).await.unwrap();
        assert_eq!(store.get_call(rec.id).await.unwrap(), Some(rec.clone()));
        store.insert_call(&record(5)).await.unwrap();
        let list = store.list_calls(1).await.unwrap();
        assert_eq!(list, vec![rec]);
        assert!(store.ping().await);
    }

    #[tokio::test]
    async fn rejects_unknown_scheme() {
        assert!(matches!(
            Store::open("mysql://x/y").await,
            Err(StoreError::UnsupportedUrl)
        ));
    }

    #[test]
    fn sqlite_path_parsing() {
        assert_eq!(
            sqlite_path("sqlite://a/b.db?mode=rwc"),
            Some("a/b.db".into())
        );
        assert_eq!(sqlite_path("sqlite:///abs/c.db"), Some("/abs/c.db".into()));
        assert_eq!(sqlite_path("sqlite:rel.db"), Some("rel.db".into()));
    }
}
