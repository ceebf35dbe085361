//! The SIP IO edge: owns the UDP/TCP sockets, the clock and the sans-IO
//! endpoint; turns dialogs into handles and event channels for call actors.
//!
//! CONTRACT STUB: signatures are the interface the call layer uses.

use crate::config::SipConfig;
use crate::ids::DialogId;
use crate::observability::Metrics;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Errors of the SIP edge.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    /// Binding a listener failed.
    #[error("cannot bind SIP {transport} on {addr}: {source}")]
    Bind {
        /// `udp` or `tcp`.
        transport: &'static str,
        /// Address tried.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The target URI is not a usable SIP URI.
    #[error("bad SIP URI `{0}`")]
    BadUri(String),
    /// The stack has stopped.
    #[error("SIP stack stopped")]
    Stopped,
    /// A request timed out (Timer B/F).
    #[error("request timed out")]
    Timeout,
}

/// Transport a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// Digest credentials for outbound requests (RFC 8760 / RFC 2617).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

/// An outbound INVITE to place (UAC).
#[derive(Debug, Clone)]
pub struct OutboundInvite {
    /// Target SIP URI, e.g. `sip:alice@127.0.0.1:5070`.
    pub target: String,
    /// User part of the From URI (caller id).
    pub from_user: String,
    /// Display name of From.
    pub from_display: Option<String>,
    /// SDP offer body.
    pub sdp_offer: String,
    /// Credentials used when challenged with 401/407.
    pub credentials: Option<Credentials>,
    /// Extra headers (name, value) added to the INVITE.
    pub extra_headers: Vec<(String, String)>,
    /// Send CANCEL when no final response within this time.
    pub ring_timeout: Duration,
}

/// What skald learned from an incoming INVITE.
#[derive(Debug, Clone)]
pub struct InviteInfo {
    /// SIP Call-ID.
    pub sip_call_id: String,
    /// From URI.
    pub from_uri: String,
    /// User part of the From URI (the caller number).
    pub from_user: String,
    /// Display name in From, if any.
    pub from_display: Option<String>,
    /// To URI.
    pub to_uri: String,
    /// Called number: user part of the Request-URI (falls back to To).
    pub did: String,
    /// Source address of the INVITE.
    pub remote_addr: SocketAddr,
    /// Transport it arrived on.
    pub transport: Transport,
    /// SDP offer, when the INVITE carried one.
    pub sdp_offer: Option<String>,
    /// All headers (name, value) in order, for context extraction.
    pub headers: Vec<(String, String)>,
}

/// Events of one dialog, delivered to the call actor that owns it.
#[derive(Debug, Clone, PartialEq)]
pub enum DialogEvent {
    /// The ACK for skald's 2xx arrived (UAS).
    Acked,
    /// The caller sent CANCEL before the answer; 487 has been sent.
    Cancelled,
    /// A re-INVITE arrived; answer with accept/reject_reinvite.
    ReInvite {
        /// SDP offer in the re-INVITE (None: offer expected in our 2xx).
        sdp_offer: Option<String>,
    },
    /// The peer sent BYE; 200 OK has been sent.
    Bye,
    /// UAC: a provisional response (18x), maybe with early-media SDP.
    Provisional {
        /// Status code.
        status: u16,
        /// SDP answer in it, if any.
        sdp: Option<String>,
    },
    /// UAC: 2xx received and ACKed.
    Answered {
        /// SDP answer.
        sdp_answer: Option<String>,
    },
    /// UAC: the INVITE failed with a final non-2xx response (or timed out: 408).
    Rejected {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// The dialog is over (after a BYE exchange, an ACK timeout or an error).
    Terminated {
        /// Why, in words for the call record.
        reason: String,
    },
}

/// A handle on one dialog; commands are queued to the SIP driver.
#[derive(Debug, Clone)]
pub struct DialogHandle {
    /// The dialog.
    pub id: DialogId,
}

impl DialogHandle {
    /// Sends 180 Ringing (UAS, before answer).
    pub fn ring(&self) {
        todo!()
    }
    /// Sends 200 OK with an SDP answer; retransmitted until ACK (RFC 3261 §13.3.1.4).
    pub fn answer(&self, sdp: String) {
        let _ = sdp;
        todo!()
    }
    /// Rejects the INVITE with a final status (UAS, before answer).
    pub fn reject(&self, status: u16, reason: &str) {
        let _ = (status, reason);
        todo!()
    }
    /// Ends the dialog: BYE when confirmed, CANCEL when an early UAC dialog,
    /// 480 when an unanswered UAS dialog. A `Terminated` event follows.
    pub fn hangup(&self) {
        todo!()
    }
    /// Answers a pending re-INVITE with 200 OK and this SDP.
    pub fn accept_reinvite(&self, sdp: String) {
        let _ = sdp;
        todo!()
    }
    /// Rejects a pending re-INVITE (e.g. 488).
    pub fn reject_reinvite(&self, status: u16) {
        let _ = status;
        todo!()
    }
}

/// An incoming call handed to the call layer.
#[derive(Debug)]
pub struct IncomingCall {
    /// Handle to act on the dialog.
    pub dialog: DialogHandle,
    /// What the INVITE said.
    pub info: InviteInfo,
    /// The dialog's events.
    pub events: mpsc::Receiver<DialogEvent>,
}

/// An outbound call placed by [`SipHandle::invite`].
#[derive(Debug)]
pub struct OutboundCall {
    /// Handle to act on the dialog.
    pub dialog: DialogHandle,
    /// SIP Call-ID of the INVITE.
    pub sip_call_id: String,
    /// The dialog's events.
    pub events: mpsc::Receiver<DialogEvent>,
}

/// Cloneable handle on the running SIP stack.
#[derive(Debug, Clone)]
pub struct SipHandle {}

impl SipHandle {
    /// Bound listen address (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        todo!()
    }
    /// Host written in Via/Contact.
    pub fn advertised_host(&self) -> String {
        todo!()
    }
    /// From now on, new INVITEs get 503 with this Retry-After.
    pub fn set_draining(&self, retry_after: Duration) {
        let _ = retry_after;
        todo!()
    }
    /// Places an outbound INVITE; returns once it is sent.
    pub async fn invite(&self, req: OutboundInvite) -> Result<OutboundCall, SipError> {
        let _ = req;
        todo!()
    }
    /// Sends OPTIONS and returns the final status code.
    pub async fn options(&self, target: &str) -> Result<u16, SipError> {
        let _ = target;
        todo!()
    }
}

/// Binds UDP and TCP on `cfg.listen` and runs the stack until `shutdown`.
pub async fn start(
    cfg: &SipConfig,
    metrics: Metrics,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(SipHandle, mpsc::Receiver<IncomingCall>), SipError> {
    let _ = (cfg, metrics, shutdown, tracker);
    todo!()
}
