//! The one command type every caller of a call uses (HTTP API, CLI,
//! applications, shutdown).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// Transfer the caller (REFER, RFC 3515). Not implemented yet: answered
    /// with an error by the actor.
    Transfer {
        /// Target SIP URI.
        target: String,
    },
}
