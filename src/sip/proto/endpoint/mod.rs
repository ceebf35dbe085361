//! `SipEndpoint`: the transport-independent router and UA core.
//!
//! A datagram (or a framed TCP message) becomes, as a value (quinn's
//! `Endpoint` style):
//! * an input to an existing server transaction (retransmission, ACK for a
//!   non-2xx), or to an existing client transaction (response);
//! * a new server transaction, answered by the UA core (§8.2): 100/180/200
//!   for INVITE, 200 for BYE/OPTIONS/CANCEL, the registrar's answer for
//!   REGISTER when one is set ([`SipEndpoint::set_registrar`], §10.3; its
//!   binding changes come out as [`Event::Registrar`]), or a rejection: 400 (malformed,
//!   with the reason phrase saying what is wrong), 405/501 (method), 416
//!   (URI scheme), 420 (Require), 415 (body type), 481 (no dialog or
//!   transaction), 482 (merged request), 483 (Max-Forwards 0), 500 (CSeq out
//!   of order, or a second re-INVITE while one is pending, §14.2), 503
//!   (draining);
//! * an ACK for a 2xx, which goes to the dialog (§13.3.1.4);
//! * nothing: unparseable input, responses without a client transaction,
//!   stray ACKs are dropped.
//!
//! See the parent module for the run-loop contract. Every dialog ends with
//! exactly one final event: `Bye`, `Cancelled`, `Rejected` or `Terminated`
//! (none after the application's own `reject`).

mod refer;
#[cfg(test)]
pub(crate) use refer::sipfrag_status;
mod uac;
mod uas;

use super::dialog::{Dialog, Role};
use super::registrar::{Binding, Registrar, RegistrarEvent};
use super::timers::Timers;
use super::transaction::{
    ClientInviteTx, ClientKey, ClientNonInviteTx, ServerInviteTx, ServerKey, ServerNonInviteTx,
    TxOutput,
};
use crate::ids::DialogId;
use crate::sip::msg::{self, MsgError, Request, Response, SipMessage, Uri};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Methods skald implements, for Allow (RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY";

/// Allow when the registrar is on (RFC 3261 §20.5, §10.3).
pub const ALLOW_WITH_REGISTER: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REGISTER";

/// How long `poll_output` reports as the next timeout when nothing is
/// scheduled.
const IDLE: Duration = Duration::from_secs(3600);

/// Transport a message arrived on or must leave by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (unreliable: retransmission timers run).
    Udp,
    /// TCP (reliable: retransmit timers off, D/I/J/K zero).
    Tcp,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address. For TCP, the driver uses the connection a
    /// request came on when one exists to this address (§18.2.2), else opens
    /// one.
    pub dest: SocketAddr,
    /// Transport to use.
    pub transport: Transport,
    /// The serialized message.
    pub bytes: Vec<u8>,
}

/// What the endpoint asks its driver to do, from [`SipEndpoint::poll_output`].
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a message.
    Transmit(Transmit),
    /// Tell the application something.
    Event(Event),
    /// Nothing more to do now: call `handle_timeout` at this instant at the
    /// latest.
    Timeout(Instant),
}

/// Application-level events.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new INVITE (100 Trying already sent). Answer with `ring`/`answer`/
    /// `reject` on `dialog`.
    IncomingCall {
        /// The new dialog.
        dialog: DialogId,
        /// What the INVITE said.
        info: InviteInfo,
    },
    /// Something happened in a dialog.
    Dialog {
        /// Which dialog.
        dialog: DialogId,
        /// What.
        event: DialogEvent,
    },
    /// Final status of an OPTIONS sent with [`SipEndpoint::options`] (408
    /// when Timer F fired).
    OptionsResult {
        /// The id `options` returned.
        request: u64,
        /// Final status code.
        status: u16,
    },
    /// A registrar binding was added, refreshed or removed (RFC 3261 §10.3;
    /// only with [`SipEndpoint::set_registrar`]).
    Registrar(RegistrarEvent),
}

/// What skald learned from an incoming INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Events of one dialog.
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
    /// UAC: the INVITE failed with a final non-2xx response (or timed out:
    /// 408, also for the ring timeout).
    Rejected {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// The peer accepted skald's REFER (2xx, normally 202): it is calling
    /// the target and reports with NOTIFYs (RFC 3515 §2.4.4).
    ReferAccepted,
    /// The peer refused skald's REFER (or it timed out: 408).
    ReferFailed {
        /// Final status of the REFER.
        status: u16,
    },
    /// A NOTIFY about the transfer: the status of the transferee's call to
    /// the target (the sipfrag status line); `done` when the subscription
    /// ended or the status is final.
    ReferProgress {
        /// Status of the new call (100, 180, 200, 486…).
        status: u16,
        /// No more progress will come.
        done: bool,
    },
    /// The peer asked skald to transfer the call (an in-dialog REFER,
    /// RFC 3515). skald is no transferee: the REFER has been refused (405);
    /// this tells the call who it was to be transferred to (`skald
    /// simulate` scores transfers this way).
    ReferRequested {
        /// The Refer-To URI, without angle brackets.
        refer_to: String,
    },
    /// The dialog is over (after a BYE exchange, an ACK timeout or an error).
    Terminated {
        /// Why, in words for the call record.
        reason: String,
    },
}

/// Static settings of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Host written in Via and Contact (advertised IP or name).
    pub host: String,
    /// Port written in Via and Contact (the listen port).
    pub port: u16,
    /// User-Agent / Server header value.
    pub user_agent: String,
    /// T1/T2/T4.
    pub timers: Timers,
}

/// Parameters of an outbound INVITE ([`SipEndpoint::invite`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteParams {
    /// Target SIP URI (Request-URI and To).
    pub target: String,
    /// Where to send it (the driver resolved the URI).
    pub dest: SocketAddr,
    /// Transport to use.
    pub transport: Transport,
    /// User part of From and Contact.
    pub from_user: String,
    /// Display name of From.
    pub from_display: Option<String>,
    /// SDP offer (sent as application/sdp; empty: no body).
    pub sdp_offer: String,
    /// (username, password) for one 401/407 retry.
    pub credentials: Option<(String, String)>,
    /// Extra headers added to the INVITE.
    pub extra_headers: Vec<(String, String)>,
    /// CANCEL when no final response within this time (`None`: never).
    pub ring_timeout: Option<Duration>,
}

/// Errors of application commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No such dialog (never existed or already over).
    #[error("unknown dialog {0}")]
    UnknownDialog(DialogId),
    /// The command does not fit the dialog's state (e.g. answer twice).
    #[error("{0} not possible in this dialog state")]
    InvalidState(&'static str),
    /// A status code outside the range the command allows.
    #[error("bad status code {0}")]
    BadStatus(u16),
    /// The target is not a usable SIP URI.
    #[error("bad SIP URI `{0}`")]
    BadUri(String),
}

/// The SIP endpoint: transactions, dialogs and the UA core, without IO.
#[derive(Debug)]
pub struct SipEndpoint {
    /// Static settings.
    cfg: EndpointConfig,
    /// Source of tags, branches and Call-IDs (seeded: tests are repeatable).
    rng: StdRng,
    /// Latest `now` seen (for the idle timeout only).
    now: Instant,
    /// Pending outputs, in order.
    outputs: VecDeque<Output>,
    /// Server transactions by §17.2.3 key.
    server_txs: HashMap<ServerKey, ServerTx>,
    /// Client transactions by §17.1.3 key.
    client_txs: HashMap<ClientKey, ClientTx>,
    /// INVITE dialogs (calls) by id.
    calls: HashMap<DialogId, Call>,
    /// (Call-ID, local tag) → dialog, to route in-dialog requests.
    by_tag: HashMap<(String, String), DialogId>,
    /// Next dialog id.
    next_dialog: u64,
    /// Next OPTIONS request id.
    next_request: u64,
    /// `Some(retry_after)` once draining: new INVITEs get 503.
    draining: Option<Duration>,
    /// The registrar answering REGISTER (`None`: REGISTER gets 405).
    registrar: Option<Registrar>,
}

/// A server transaction with its addressing.
#[derive(Debug)]
struct ServerTx {
    /// The state machine.
    kind: ServerTxKind,
    /// The request that created it (to build responses).
    request: Request,
    /// Where responses go (§18.2.2).
    dest: SocketAddr,
    /// Transport of responses.
    transport: Transport,
    /// To tag for responses (the dialog's local tag, or a fresh one).
    to_tag: String,
}

#[derive(Debug)]
enum ServerTxKind {
    Invite(ServerInviteTx),
    NonInvite(ServerNonInviteTx),
}

/// A client transaction with its addressing and purpose.
#[derive(Debug)]
struct ClientTx {
    /// The state machine.
    kind: ClientTxKind,
    /// Where the request went.
    dest: SocketAddr,
    /// Transport used.
    transport: Transport,
    /// What its responses mean to the UA core.
    purpose: Purpose,
}

#[derive(Debug)]
enum ClientTxKind {
    Invite(ClientInviteTx),
    NonInvite(ClientNonInviteTx),
}

/// What a client transaction was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The initial INVITE of a UAC call.
    Invite(DialogId),
    /// CANCEL of that INVITE.
    Cancel,
    /// BYE ending a dialog; `notify` says whether its end is reported.
    Bye { dialog: DialogId, notify: bool },
    /// OPTIONS from [`SipEndpoint::options`].
    Options(u64),
    /// REFER in this dialog ([`SipEndpoint::refer`]).
    Refer(DialogId),
}

/// Why a UAC call wants to CANCEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelReason {
    /// The application hung up before the answer.
    Hangup,
    /// The ring timeout expired.
    RingTimeout,
}

/// Phase of an INVITE dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// UAS: INVITE received, no final response yet.
    Incoming,
    /// UAS: 2xx sent, waiting for the ACK.
    Answered,
    /// UAC: INVITE sent, no final response yet.
    Outgoing,
    /// Confirmed dialog.
    Confirmed,
    /// skald sent BYE and waits for its final response.
    ByeSent,
}

/// 2xx retransmission state (§13.3.1.4).
#[derive(Debug, Clone)]
struct OkRetransmit {
    /// The 2xx as sent.
    bytes: Vec<u8>,
    /// Next retransmission (None on TCP).
    next: Option<Instant>,
    /// Current interval (T1, doubling to T2).
    interval: Duration,
    /// 64·T1 after the first send: give up, send BYE.
    give_up: Instant,
    /// CSeq of the INVITE it answers (the ACK carries it).
    seq: u32,
    /// Whether it answers the initial INVITE (ACK → `Acked` event).
    initial: bool,
}

/// One INVITE dialog usage (a call leg).
#[derive(Debug)]
struct Call {
    /// Which side skald is.
    role: Role,
    /// Where the call stands.
    phase: Phase,
    /// Dialog state, once it exists (UAS: at once; UAC: first To tag).
    dialog: Option<Dialog>,
    /// The INVITE (received, or last sent).
    invite: Request,
    /// Peer address (source of the INVITE / where it was sent).
    peer: SocketAddr,
    /// Transport of the dialog.
    transport: Transport,
    /// skald's tag.
    local_tag: String,
    /// UAS: key of the INVITE server transaction.
    invite_key: Option<ServerKey>,
    /// UAS: where responses to the INVITE go.
    resp_dest: SocketAddr,
    /// 2xx being retransmitted until its ACK.
    ok: Option<OkRetransmit>,
    /// Pending re-INVITE server transaction.
    reinvite: Option<ServerKey>,
    /// UAS: hangup while waiting for the ACK: BYE once it arrives.
    bye_after_ack: bool,
    /// UAC: CANCEL when the ring timeout passes.
    ring_deadline: Option<Instant>,
    /// UAC: credentials for one 401/407 retry.
    credentials: Option<(String, String)>,
    /// UAC: the retry has been made.
    auth_tried: bool,
    /// UAC: a CANCEL is wanted (sent once a provisional arrived).
    cancel: Option<CancelReason>,
    /// UAC: the CANCEL has been sent.
    cancel_sent: bool,
    /// UAC: a provisional response arrived (CANCEL allowed, §9.1).
    provisional: bool,
    /// UAC: the ACK sent for the 2xx, resent on 2xx retransmissions.
    ack: Option<(String, Vec<u8>)>,
}

impl SipEndpoint {
    /// A new endpoint created at `now`. `seed` feeds tag/branch/Call-ID
    /// generation (use a random seed in production, a fixed one in tests).
    pub fn new(cfg: EndpointConfig, seed: u64, now: Instant) -> SipEndpoint {
        SipEndpoint {
            cfg,
            rng: StdRng::seed_from_u64(seed),
            now,
            outputs: VecDeque::new(),
            server_txs: HashMap::new(),
            client_txs: HashMap::new(),
            calls: HashMap::new(),
            by_tag: HashMap::new(),
            next_dialog: 1,
            next_request: 1,
            draining: None,
            registrar: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// A message arrived from `from` over `transport`. Never panics; bad
    /// input is answered (400/505) or dropped.
    pub fn handle_datagram(&mut self, from: SocketAddr, transport: Transport, bytes: &[u8], now: Instant) {
        self.now = now;
        match msg::parse(bytes) {
            Ok(SipMessage::Request(req)) => self.handle_request(req, from, transport, now),
            Ok(SipMessage::Response(resp)) => self.handle_response(resp, now),
            Err(MsgError::Rejected { request, status, reason }) => {
                self.stateless_reject(&request, from, transport, status, &reason)
            }
            Err(e) => tracing::debug!(%from, error = %e, "dropping SIP message"),
        }
    }

    /// Timers due at `now` fire (retransmissions, Timer B/F/H, 2xx
    /// retransmission and ACK wait, ring timeouts).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.server_timeouts(now);
        self.client_timeouts(now);
        self.call_timeouts(now);
        if let Some(r) = self.registrar.as_mut() {
            r.handle_timeout(now);
        }
        self.drain_registrar();
    }

    /// Turns the registrar on (REGISTER is answered by it and listed in
    /// Allow) or off (`None`: REGISTER gets 405, as RFC 3261 §10.3 lets a
    /// UA that is no registrar answer).
    pub fn set_registrar(&mut self, registrar: Option<Registrar>) {
        self.registrar = registrar;
    }

    /// The registrar, when on.
    pub fn registrar(&self) -> Option<&Registrar> {
        self.registrar.as_ref()
    }

    /// Current registrar bindings of AOR user `user` (empty when the
    /// registrar is off); see [`Registrar::bindings`].
    pub fn bindings(&self, user: &str, now: Instant) -> Vec<Binding> {
        self.registrar.as_ref().map(|r| r.bindings(user, now)).unwrap_or_default()
    }

    /// Next output. Returns `Output::Timeout` when there is nothing else to
    /// do; drain until then after every `handle_*` and command.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.outputs.pop_front() {
            return o;
        }
        let next = self.next_timeout();
        Output::Timeout(next.unwrap_or(self.now + IDLE))
    }

    /// From now on, new INVITEs get 503 with `Retry-After: retry_after`
    /// (seconds); `None` stops draining.
    pub fn set_draining(&mut self, retry_after: Option<Duration>) {
        self.draining = retry_after;
    }

    /// Number of live dialogs (calls).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The dialog state of a call, once it has one.
    pub fn dialog(&self, id: DialogId) -> Option<&Dialog> {
        self.calls.get(&id).and_then(|c| c.dialog.as_ref())
    }

    /// Number of live transactions (server + client).
    pub fn transaction_count(&self) -> usize {
        self.server_txs.len() + self.client_txs.len()
    }

    /// UAS: sends 180 Ringing with the dialog's To tag and Contact.
    pub fn ring(&mut self, id: DialogId, now: Instant) -> Result<(), EndpointError> {
        self.uas_ring(id, now)
    }

    /// UAS: sends 200 OK with `sdp` (application/sdp) and retransmits it
    /// until the ACK (T1 doubling to T2); without ACK after 64·T1 the dialog
    /// is ended with BYE and `Terminated`.
    pub fn answer(&mut self, id: DialogId, sdp: &str, now: Instant) -> Result<(), EndpointError> {
        self.uas_answer(id, sdp, now)
    }

    /// UAS: rejects the INVITE with a final status 300–699 (no event follows).
    pub fn reject(&mut self, id: DialogId, status: u16, reason: &str, now: Instant) -> Result<(), EndpointError> {
        self.uas_reject(id, status, reason, now)
    }

    /// Ends the dialog: BYE when confirmed (after the ACK when still
    /// waiting for it), CANCEL for an unanswered UAC INVITE, 480 for an
    /// unanswered UAS INVITE. A `Terminated` event follows.
    pub fn hangup(&mut self, id: DialogId, now: Instant) -> Result<(), EndpointError> {
        self.do_hangup(id, now)
    }

    /// Answers the pending re-INVITE with 200 OK and `sdp`.
    pub fn accept_reinvite(&mut self, id: DialogId, sdp: &str, now: Instant) -> Result<(), EndpointError> {
        self.uas_accept_reinvite(id, sdp, now)
    }

    /// Rejects the pending re-INVITE with `status` (300–699, e.g. 488).
    pub fn reject_reinvite(&mut self, id: DialogId, status: u16, now: Instant) -> Result<(), EndpointError> {
        self.uas_reject_reinvite(id, status, now)
    }

    /// UAC: sends an INVITE; returns the new dialog and its Call-ID.
    /// Errors: `BadUri` when the target is not a SIP/SIPS URI.
    pub fn invite(&mut self, params: InviteParams, now: Instant) -> Result<(DialogId, String), EndpointError> {
        self.uac_invite(params, now)
    }

    /// Asks the peer of dialog `id` to call `refer_to` (REFER, RFC 3515):
    /// see [`DialogEvent::ReferAccepted`] and the progress events.
    /// Errors: unknown dialog, a dialog not confirmed, a bad URI.
    pub fn refer(&mut self, id: DialogId, refer_to: &str, now: Instant) -> Result<(), EndpointError> {
        self.do_refer(id, refer_to, now)
    }

    /// Sends an out-of-dialog OPTIONS to `target` at `dest`; the result
    /// comes as [`Event::OptionsResult`] with the returned id.
    pub fn options(&mut self, target: &str, dest: SocketAddr, transport: Transport, now: Instant) -> Result<u64, EndpointError> {
        self.uac_options(target, dest, transport, now)
    }

    // ------------------------------------------------------------ private

    fn next_timeout(&self) -> Option<Instant> {
        let servers = self.server_txs.values().filter_map(|t| match &t.kind {
            ServerTxKind::Invite(x) => x.next_timeout(),
            ServerTxKind::NonInvite(x) => x.next_timeout(),
        });
        let clients = self.client_txs.values().filter_map(|t| match &t.kind {
            ClientTxKind::Invite(x) => x.next_timeout(),
            ClientTxKind::NonInvite(x) => x.next_timeout(),
        });
        let calls = self.calls.values().flat_map(|c| {
            let ok = c.ok.as_ref().map(|o| match o.next {
                Some(n) => n.min(o.give_up),
                None => o.give_up,
            });
            [ok, c.ring_deadline]
        });
        let registrar = self.registrar.as_ref().and_then(Registrar::poll_timeout);
        servers.chain(clients).chain(calls.flatten()).chain(registrar).min()
    }

    /// Moves the registrar's events to the output queue.
    fn drain_registrar(&mut self) {
        while let Some(e) = self.registrar.as_mut().and_then(Registrar::poll_event) {
            self.emit(Event::Registrar(e));
        }
    }

    /// Methods for Allow: REGISTER only with the registrar on.
    fn allow(&self) -> &'static str {
        if self.registrar.is_some() { ALLOW_WITH_REGISTER } else { ALLOW }
    }

    fn server_timeouts(&mut self, now: Instant) {
        let due: Vec<ServerKey> = self
            .server_txs
            .iter()
            .filter(|(_, t)| {
                let next = match &t.kind {
                    ServerTxKind::Invite(x) => x.next_timeout(),
                    ServerTxKind::NonInvite(x) => x.next_timeout(),
                };
                next.is_some_and(|n| n <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(tx) = self.server_txs.get_mut(&key) else { continue };
            let (outs, done) = match &mut tx.kind {
                ServerTxKind::Invite(x) => (x.handle_timeout(now), x.is_terminated()),
                ServerTxKind::NonInvite(x) => (x.handle_timeout(now), x.is_terminated()),
            };
            let (dest, transport) = (tx.dest, tx.transport);
            for o in outs {
                if let TxOutput::Transmit(bytes) = o {
                    self.transmit(dest, transport, bytes);
                }
            }
            if done {
                self.server_txs.remove(&key);
            }
        }
    }

    fn client_timeouts(&mut self, now: Instant) {
        let due: Vec<ClientKey> = self
            .client_txs
            .iter()
            .filter(|(_, t)| {
                let next = match &t.kind {
                    ClientTxKind::Invite(x) => x.next_timeout(),
                    ClientTxKind::NonInvite(x) => x.next_timeout(),
                };
                next.is_some_and(|n| n <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(tx) = self.client_txs.get_mut(&key) else { continue };
            let (outs, done) = match &mut tx.kind {
                ClientTxKind::Invite(x) => (x.handle_timeout(now), x.is_terminated()),
                ClientTxKind::NonInvite(x) => (x.handle_timeout(now), x.is_terminated()),
            };
            let (dest, transport, purpose) = (tx.dest, tx.transport, tx.purpose);
            if done {
                self.client_txs.remove(&key);
            }
            for o in outs {
                match o {
                    TxOutput::Transmit(bytes) => self.transmit(dest, transport, bytes),
                    TxOutput::Timeout => self.client_timed_out(purpose, now),
                    TxOutput::Response(_) => {}
                }
            }
        }
    }

    fn call_timeouts(&mut self, now: Instant) {
        let ids: Vec<DialogId> = self.calls.keys().copied().collect();
        for id in ids {
            let Some(call) = self.calls.get_mut(&id) else { continue };
            if let Some(ok) = call.ok.as_mut() {
                if ok.give_up <= now {
                    let initial = ok.initial;
                    call.ok = None;
                    tracing::info!(call_id = %call.invite.headers.call_id().unwrap_or_default(), "no ACK for 2xx: ending dialog");
                    self.no_ack(id, initial, now);
                    continue;
                }
                if let Some(next) = ok.next.filter(|n| *n <= now) {
                    let bytes = ok.bytes.clone();
                    ok.interval = (ok.interval * 2).min(self.cfg.timers.t2);
                    ok.next = Some(next + ok.interval);
                    let (dest, transport) = (call.resp_dest, call.transport);
                    self.transmit(dest, transport, bytes);
                }
            }
            let Some(call) = self.calls.get_mut(&id) else { continue };
            if call.ring_deadline.is_some_and(|d| d <= now) {
                call.ring_deadline = None;
                if call.phase == Phase::Outgoing {
                    call.cancel.get_or_insert(CancelReason::RingTimeout);
                    self.try_cancel(id, now);
                }
            }
        }
    }

    /// §13.3.1.4: no ACK within 64·T1: BYE, and the end is reported.
    fn no_ack(&mut self, id: DialogId, initial: bool, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.phase = Phase::Confirmed;
        if initial {
            self.send_bye(id, false, now);
            self.end_call(id, DialogEvent::Terminated { reason: "no ACK for 200 OK".into() });
        } else {
            self.send_bye(id, false, now);
            self.end_call(id, DialogEvent::Terminated { reason: "no ACK for re-INVITE 200 OK".into() });
        }
    }

    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    fn emit_dialog(&mut self, dialog: DialogId, event: DialogEvent) {
        self.emit(Event::Dialog { dialog, event });
    }

    fn transmit(&mut self, dest: SocketAddr, transport: Transport, bytes: Vec<u8>) {
        self.outputs.push_back(Output::Transmit(Transmit { dest, transport, bytes }));
    }

    /// Removes a call and reports its final event.
    fn end_call(&mut self, id: DialogId, event: DialogEvent) {
        self.forget_call(id);
        self.emit_dialog(id, event);
    }

    /// Removes a call silently.
    fn forget_call(&mut self, id: DialogId) {
        if let Some(call) = self.calls.remove(&id) {
            let cid = call.invite.headers.call_id().unwrap_or_default().to_string();
            self.by_tag.remove(&(cid, call.local_tag));
        }
    }

    fn new_dialog_id(&mut self) -> DialogId {
        let id = DialogId(self.next_dialog);
        self.next_dialog += 1;
        id
    }

    fn token(&mut self) -> String {
        format!("{:016x}", self.rng.random::<u64>())
    }

    fn new_branch(&mut self) -> String {
        format!("{}{}", msg::MAGIC_COOKIE, self.token())
    }

    fn via(&mut self, transport: Transport, branch: &str) -> String {
        let t = match transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        };
        format!("SIP/2.0/{t} {}:{};branch={branch};rport", self.cfg.host, self.cfg.port)
    }

    fn contact(&self, user: &str, transport: Transport) -> String {
        let t = match transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        format!("<sip:{user}@{}:{}{t}>", self.cfg.host, self.cfg.port)
    }

    /// Where in-dialog requests go: the next hop's IP literal, else the
    /// dialog's peer address (skald does no DNS in the core).
    fn dialog_dest(&self, call: &Call) -> (SocketAddr, Transport) {
        let next = call.dialog.as_ref().map(Dialog::next_hop);
        match next.and_then(|u| Uri::parse(&u).ok()).and_then(|u| literal_dest(&u)) {
            Some((addr, t)) => (addr, t.unwrap_or(call.transport)),
            None => (call.peer, call.transport),
        }
    }
}

/// The socket address and transport of a SIP URI whose host is an IP
/// literal (`None` for names, which the driver must resolve). The transport
/// is `None` when the URI has no `transport` parameter.
pub fn literal_dest(uri: &Uri) -> Option<(SocketAddr, Option<Transport>)> {
    if !uri.is_sip() {
        return None;
    }
    let host = uri.host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    let default_port = if uri.scheme == "sips" { 5061 } else { 5060 };
    let transport = match uri.transport().as_deref() {
        Some("tcp") => Some(Transport::Tcp),
        Some("udp") => Some(Transport::Udp),
        _ => None,
    };
    Some((SocketAddr::new(ip, uri.port.unwrap_or(default_port)), transport))
}

/// Where responses to `req` go (§18.2.2 with RFC 3581 rport): the source
/// address on TCP; on UDP the source IP with the sent-by port (default
/// 5060), or the source port when `rport` is present or Via is unusable.
fn response_dest(req: &Request, from: SocketAddr, transport: Transport) -> SocketAddr {
    if transport == Transport::Tcp {
        return from;
    }
    match req.headers.top_via() {
        Ok(via) if via.rport().is_none() => SocketAddr::new(from.ip(), via.port.unwrap_or(5060)),
        _ => from,
    }
}

/// The SDP body of a message, if it carries one.
fn sdp_body(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let ct = content_type.unwrap_or("application/sdp");
    if !ct.trim().to_ascii_lowercase().starts_with("application/sdp") {
        return None;
    }
    std::str::from_utf8(body).ok().map(str::to_string)
}

fn response_sdp(resp: &Response) -> Option<String> {
    sdp_body(resp.headers.content_type(), &resp.body)
}
