//! Call state, derived from the leg's signaling state (never stored twice).

use serde::Serialize;

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// INVITE received or sent, not answered yet.
    Ringing,
    /// 200 OK sent/received; media flowing.
    Answered,
    /// The far end put the call on hold (sendonly/inactive).
    OnHold,
    /// skald asked the caller's side to call another party (REFER) and
    /// waits for the outcome.
    Transferring,
    /// The caller waits in a contact-center queue (hold music).
    Queued,
    /// The caller is connected to a transfer target through skald (a warm
    /// transfer, or a cold one whose REFER was refused): skald relays media.
    Bridged,
    /// BYE sent or received; cleaning up.
    Ending,
    /// Over.
    Ended,
}

impl CallState {
    /// The name stored in call records.
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Ringing => "ringing",
            CallState::Answered => "answered",
            CallState::OnHold => "on_hold",
            CallState::Transferring => "transferring",
            CallState::Queued => "queued",
            CallState::Bridged => "bridged",
            CallState::Ending => "ending",
            CallState::Ended => "ended",
        }
    }
}
