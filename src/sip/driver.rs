//! The SIP IO edge: owns the UDP/TCP sockets, the clock and the sans-IO
//! [`SipEndpoint`]; turns dialogs into handles and event channels for call
//! actors.
//!
//! One task (spawned on the caller's `TaskTracker`) owns the endpoint and
//! the UDP socket and runs the [`crate::sip::proto`] run loop: wait for a
//! datagram, a TCP message, a command or the next timeout, apply it with
//! `Instant::now()`, drain `poll_output`. TCP connections each get a reader
//! task (framing by Content-Length, 64 KiB cap; a bad stream closes only
//! that connection) and a writer task; responses leave over the connection
//! the request came on (§18.2.2), requests to a TCP destination without a
//! connection open one. Handles talk to the task over an unbounded command
//! channel, so their methods are synchronous.
//!
//! With `sip.registrar` configured, the endpoint answers REGISTER with its
//! [`Registrar`] (RFC 3261 §10.3) and [`SipHandle::registrar`] gives a
//! [`RegistrarHandle`]: look up where an agent's phone is registered, or
//! follow bindings as they come and go.

use crate::config::SipConfig;
use crate::ids::DialogId;
use crate::observability::{Dir, Metrics};
use crate::sip::msg::{self, Uri};
use crate::sip::proto::auth::Algorithm;
use crate::sip::proto::registrar::{Registrar, RegistrarConfig};
use crate::sip::proto::{
    EndpointConfig, Event, InviteParams, Output, SipEndpoint, Timers, Transmit, literal_dest,
};
use crate::sip::transport::tcp::Framer;
use crate::sip::transport::udp;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::sip::proto::registrar::{Binding, RegistrarEvent, UnregisterReason};
pub use crate::sip::proto::{DialogEvent, InviteInfo, Transport};

/// Capacity of the IncomingCall channel.
const INCOMING_CAPACITY: usize = 256;
/// Capacity of each dialog's event channel.
const DIALOG_EVENTS_CAPACITY: usize = 64;
/// Capacity of the registrar's event broadcast (a slow subscriber misses
/// the oldest events and should look the bindings up again).
const REGISTRAR_EVENTS_CAPACITY: usize = 256;

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

/// A command from a handle to the driver task.
#[derive(Debug)]
enum Command {
    Ring(DialogId),
    Answer(DialogId, String),
    Reject(DialogId, u16, String),
    Hangup(DialogId),
    AcceptReinvite(DialogId, String),
    RejectReinvite(DialogId, u16),
    Refer(DialogId, String),
    Invite(Box<InviteParams>, oneshot::Sender<Result<OutboundCall, SipError>>),
    Options(String, SocketAddr, Transport, oneshot::Sender<Result<u16, SipError>>),
    Draining(Duration),
    Bindings(String, oneshot::Sender<Vec<Binding>>),
}

/// A handle on one dialog; commands are queued to the SIP driver.
#[derive(Debug, Clone)]
pub struct DialogHandle {
    /// The dialog.
    pub id: DialogId,
    /// Command channel of the driver task.
    commands: mpsc::UnboundedSender<Command>,
}

impl DialogHandle {
    /// Sends 180 Ringing (UAS, before answer).
    pub fn ring(&self) {
        self.send(Command::Ring(self.id));
    }
    /// Sends 200 OK with an SDP answer; retransmitted until ACK (RFC 3261 §13.3.1.4).
    pub fn answer(&self, sdp: String) {
        self.send(Command::Answer(self.id, sdp));
    }
    /// Rejects the INVITE with a final status (UAS, before answer).
    pub fn reject(&self, status: u16, reason: &str) {
        self.send(Command::Reject(self.id, status, reason.to_string()));
    }
    /// Ends the dialog: BYE when confirmed, CANCEL when an early UAC dialog,
    /// 480 when an unanswered UAS dialog. A `Terminated` event follows.
    pub fn hangup(&self) {
        self.send(Command::Hangup(self.id));
    }
    /// Answers a pending re-INVITE with 200 OK and this SDP.
    pub fn accept_reinvite(&self, sdp: String) {
        self.send(Command::AcceptReinvite(self.id, sdp));
    }
    /// Rejects a pending re-INVITE (e.g. 488).
    pub fn reject_reinvite(&self, status: u16) {
        self.send(Command::RejectReinvite(self.id, status));
    }
    /// Asks the peer to call `refer_to` (REFER, RFC 3515); the outcome comes
    /// as `ReferAccepted`/`ReferFailed`, then `ReferProgress` events.
    pub fn refer(&self, refer_to: String) {
        self.send(Command::Refer(self.id, refer_to));
    }

    fn send(&self, cmd: Command) {
        if self.commands.send(cmd).is_err() {
            tracing::debug!(dialog = %self.id, "SIP stack stopped; command dropped");
        }
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
pub struct SipHandle {
    /// Bound address (UDP and TCP share the port).
    local_addr: SocketAddr,
    /// Host written in Via/Contact.
    advertised_host: String,
    /// Command channel of the driver task.
    commands: mpsc::UnboundedSender<Command>,
    /// The registrar's handle, when `sip.registrar` is configured.
    registrar: Option<RegistrarHandle>,
}

/// Cloneable handle on the registrar (RFC 3261 §10.3) inside the running
/// SIP stack: where agents' phones are registered.
#[derive(Debug, Clone)]
pub struct RegistrarHandle {
    /// Command channel of the driver task.
    commands: mpsc::UnboundedSender<Command>,
    /// Every registrar event, as it happens.
    events: broadcast::Sender<RegistrarEvent>,
}

impl RegistrarHandle {
    /// The current bindings of AOR user `user` (e.g. `alice`), oldest
    /// first: each has the Contact URI and the source address and transport
    /// the phone registered from (send requests there: it may be behind
    /// NAT). Empty when the user has none.
    pub async fn lookup(&self, user: &str) -> Result<Vec<Binding>, SipError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Bindings(user.to_string(), tx)).map_err(|_| SipError::Stopped)?;
        rx.await.map_err(|_| SipError::Stopped)
    }

    /// Registrations and unregistrations from now on (a lagging receiver
    /// loses the oldest; look up again after `RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<RegistrarEvent> {
        self.events.subscribe()
    }
}

impl SipHandle {
    /// The registrar, when `sip.registrar` is configured.
    pub fn registrar(&self) -> Option<RegistrarHandle> {
        self.registrar.clone()
    }
    /// Bound listen address (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
    /// Host written in Via/Contact.
    pub fn advertised_host(&self) -> String {
        self.advertised_host.clone()
    }
    /// From now on, new INVITEs get 503 with this Retry-After.
    pub fn set_draining(&self, retry_after: Duration) {
        let _ = self.commands.send(Command::Draining(retry_after));
    }
    /// Places an outbound INVITE; returns once it is sent.
    pub async fn invite(&self, req: OutboundInvite) -> Result<OutboundCall, SipError> {
        let (dest, transport) = resolve(&req.target).await?;
        let params = InviteParams {
            target: req.target,
            dest,
            transport,
            from_user: req.from_user,
            from_display: req.from_display,
            sdp_offer: req.sdp_offer,
            credentials: req.credentials.map(|c| (c.username, c.password)),
            extra_headers: req.extra_headers,
            ring_timeout: (!req.ring_timeout.is_zero()).then_some(req.ring_timeout),
        };
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Invite(Box::new(params), tx)).map_err(|_| SipError::Stopped)?;
        rx.await.map_err(|_| SipError::Stopped)?
    }
    /// Sends OPTIONS and returns the final status code.
    pub async fn options(&self, target: &str) -> Result<u16, SipError> {
        let (dest, transport) = resolve(target).await?;
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Options(target.to_string(), dest, transport, tx))
            .map_err(|_| SipError::Stopped)?;
        rx.await.map_err(|_| SipError::Stopped)?
    }
}

/// Binds UDP and TCP on `cfg.listen` and runs the stack until `shutdown`.
pub async fn start(
    cfg: &SipConfig,
    metrics: Metrics,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(SipHandle, mpsc::Receiver<IncomingCall>), SipError> {
    start_with(cfg, Some(metrics), shutdown, tracker).await
}

/// [`start`] with optional metrics (tests run without a registry).
pub async fn start_with(
    cfg: &SipConfig,
    metrics: Option<Metrics>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(SipHandle, mpsc::Receiver<IncomingCall>), SipError> {
    let udp = udp::bind(cfg.listen)
        .await
        .map_err(|source| SipError::Bind { transport: "udp", addr: cfg.listen, source })?;
    let local_addr = udp
        .local_addr()
        .map_err(|source| SipError::Bind { transport: "udp", addr: cfg.listen, source })?;
    let tcp = TcpListener::bind(local_addr)
        .await
        .map_err(|source| SipError::Bind { transport: "tcp", addr: local_addr, source })?;
    let advertised_host = advertised_host(cfg, local_addr);
    let mut endpoint = SipEndpoint::new(
        EndpointConfig {
            host: advertised_host.clone(),
            port: local_addr.port(),
            user_agent: cfg.user_agent.clone(),
            timers: Timers::from_config(cfg),
        },
        rand::random(),
        std::time::Instant::now(),
    );
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let registrar = cfg.registrar.as_ref().map(|reg| {
        endpoint.set_registrar(Some(Registrar::new(registrar_config(reg), rand::random(), std::time::Instant::now())));
        tracing::info!(realm = %reg.realm, users = reg.users.len(), "SIP registrar on");
        RegistrarHandle { commands: cmd_tx.clone(), events: broadcast::channel(REGISTRAR_EVENTS_CAPACITY).0 }
    });
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_CAPACITY);
    let (net_tx, net_rx) = mpsc::channel(1024);
    tracker.spawn(accept_loop(tcp, net_tx.clone(), shutdown.clone(), tracker.clone()));
    let driver = Driver {
        endpoint,
        udp: Arc::new(udp),
        metrics,
        conns: HashMap::new(),
        dialogs: HashMap::new(),
        options: HashMap::new(),
        incoming: incoming_tx,
        registrar_events: registrar.as_ref().map(|r| r.events.clone()),
        commands: cmd_tx.clone(),
        net_tx,
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    };
    tracker.spawn(driver.run(cmd_rx, net_rx));
    tracing::info!(%local_addr, host = %advertised_host, "SIP listening on UDP and TCP");
    Ok((SipHandle { local_addr, advertised_host, commands: cmd_tx, registrar }, incoming_rx))
}

/// The sans-IO registrar's settings from `sip.registrar` (passwords were
/// resolved from the environment by `Config::load`; a user without one
/// cannot register).
fn registrar_config(reg: &crate::config::SipRegistrarConfig) -> RegistrarConfig {
    let users = reg
        .users
        .iter()
        .filter_map(|u| u.password.clone().map(|p| (u.user.clone(), p)))
        .collect();
    let mut c = RegistrarConfig::new(reg.realm.clone(), users);
    c.default_expires = Duration::from_secs(reg.default_expires_s);
    c.min_expires = Duration::from_secs(reg.min_expires_s);
    c.max_expires = Duration::from_secs(reg.max_expires_s);
    c.algorithms = reg.algorithms.iter().filter_map(|a| Algorithm::parse(a)).collect();
    c
}

/// Input from TCP connection tasks.
#[derive(Debug)]
enum NetIn {
    /// A connection is up; its writer channel.
    Connected(SocketAddr, mpsc::Sender<Vec<u8>>),
    /// A framed message.
    Message(SocketAddr, Vec<u8>),
    /// The connection closed.
    Closed(SocketAddr),
}

/// The driver task's state.
struct Driver {
    /// The sans-IO core.
    endpoint: SipEndpoint,
    /// The UDP socket.
    udp: Arc<UdpSocket>,
    /// Message counters (`None` in tests).
    metrics: Option<Metrics>,
    /// Writer channels of TCP connections by peer address.
    conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    /// Event channels of live dialogs.
    dialogs: HashMap<DialogId, mpsc::Sender<DialogEvent>>,
    /// OPTIONS waiting for their result.
    options: HashMap<u64, oneshot::Sender<Result<u16, SipError>>>,
    /// Where incoming calls go.
    incoming: mpsc::Sender<IncomingCall>,
    /// Where registrar events go (`None`: no registrar).
    registrar_events: Option<broadcast::Sender<RegistrarEvent>>,
    /// For the handles it creates.
    commands: mpsc::UnboundedSender<Command>,
    /// For connection tasks it spawns.
    net_tx: mpsc::Sender<NetIn>,
    /// Spawns connection tasks.
    tracker: TaskTracker,
    /// Stops everything.
    shutdown: CancellationToken,
}

impl Driver {
    async fn run(mut self, mut cmd_rx: mpsc::UnboundedReceiver<Command>, mut net_rx: mpsc::Receiver<NetIn>) {
        let mut buf = vec![0u8; udp::MAX_DATAGRAM];
        let udp = self.udp.clone();
        loop {
            let deadline = self.drain();
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                r = udp.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let bytes = buf.get(..n).unwrap_or_default().to_vec();
                        self.input(from, Transport::Udp, &bytes);
                    }
                    Err(e) => tracing::debug!(error = %e, "UDP receive error"),
                },
                Some(n) = net_rx.recv() => match n {
                    NetIn::Connected(addr, w) => { self.conns.insert(addr, w); }
                    NetIn::Message(addr, bytes) => self.input(addr, Transport::Tcp, &bytes),
                    NetIn::Closed(addr) => { self.conns.remove(&addr); }
                },
                Some(cmd) = cmd_rx.recv() => self.command(cmd),
                _ = tokio::time::sleep_until(deadline) => {
                    self.endpoint.handle_timeout(Instant::now().into_std());
                }
            }
        }
        tracing::info!("SIP driver stopped");
    }

    fn input(&mut self, from: SocketAddr, transport: Transport, bytes: &[u8]) {
        if let (Some(m), Some((method, status))) = (&self.metrics, msg::summary(bytes)) {
            m.sip_message(Dir::In, &method, status);
        }
        self.endpoint.handle_datagram(from, transport, bytes, Instant::now().into_std());
    }

    /// Drains the endpoint; returns when to wake up for its timers.
    fn drain(&mut self) -> Instant {
        loop {
            match self.endpoint.poll_output() {
                Output::Transmit(t) => self.transmit(t),
                Output::Event(e) => self.event(e),
                Output::Timeout(at) => return Instant::from_std(at),
            }
        }
    }

    fn transmit(&mut self, t: Transmit) {
        if let (Some(m), Some((method, status))) = (&self.metrics, msg::summary(&t.bytes)) {
            m.sip_message(Dir::Out, &method, status);
        }
        match t.transport {
            Transport::Udp => {
                if let Err(e) = self.udp.try_send_to(&t.bytes, t.dest) {
                    tracing::debug!(dest = %t.dest, error = %e, "UDP send failed");
                }
            }
            Transport::Tcp => {
                if let Some(w) = self.conns.get(&t.dest) {
                    if w.try_send(t.bytes.clone()).is_ok() {
                        return;
                    }
                    self.conns.remove(&t.dest);
                }
                let (w_tx, w_rx) = mpsc::channel(256);
                let _ = w_tx.try_send(t.bytes);
                self.conns.insert(t.dest, w_tx);
                self.tracker.spawn(connect(t.dest, w_rx, self.net_tx.clone(), self.shutdown.clone()));
            }
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::IncomingCall { dialog, info } => {
                let (tx, rx) = mpsc::channel(DIALOG_EVENTS_CAPACITY);
                let call = IncomingCall {
                    dialog: DialogHandle { id: dialog, commands: self.commands.clone() },
                    info,
                    events: rx,
                };
                match self.incoming.try_send(call) {
                    Ok(()) => {
                        self.dialogs.insert(dialog, tx);
                    }
                    Err(_) => {
                        tracing::warn!(%dialog, "call layer busy: rejecting INVITE with 503");
                        let _ = self.endpoint.reject(dialog, 503, "Service Unavailable", Instant::now().into_std());
                    }
                }
            }
            Event::Dialog { dialog, event } => {
                let last = matches!(
                    event,
                    DialogEvent::Bye | DialogEvent::Cancelled | DialogEvent::Rejected { .. } | DialogEvent::Terminated { .. }
                );
                if let Some(tx) = self.dialogs.get(&dialog) {
                    match tx.try_send(event) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => tracing::warn!(%dialog, "dialog event dropped: the call is not keeping up"),
                        // The call already ended (e.g. the final response to
                        // its own BYE): nothing is waiting for the event.
                        Err(mpsc::error::TrySendError::Closed(ev)) => tracing::debug!(%dialog, event = ?ev, "dialog event after the call ended"),
                    }
                }
                if last {
                    self.dialogs.remove(&dialog);
                }
            }
            Event::OptionsResult { request, status } => {
                if let Some(tx) = self.options.remove(&request) {
                    let _ = tx.send(if status == 408 { Err(SipError::Timeout) } else { Ok(status) });
                }
            }
            Event::Registrar(e) => {
                match &e {
                    RegistrarEvent::Registered { aor, contact, source, expires } => tracing::info!(
                        aor = %aor, contact = %contact, source = %source, expires_s = expires.as_secs(), "sip registered"
                    ),
                    RegistrarEvent::Unregistered { aor, contact, reason } => {
                        tracing::info!(aor = %aor, contact = %contact, reason = ?reason, "sip unregistered")
                    }
                }
                if let Some(tx) = &self.registrar_events {
                    let _ = tx.send(e);
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now().into_std();
        let result = match cmd {
            Command::Ring(id) => self.endpoint.ring(id, now),
            Command::Answer(id, sdp) => self.endpoint.answer(id, &sdp, now),
            Command::Reject(id, status, reason) => {
                let r = self.endpoint.reject(id, status, &reason, now);
                self.dialogs.remove(&id);
                r
            }
            Command::Hangup(id) => self.endpoint.hangup(id, now),
            Command::AcceptReinvite(id, sdp) => self.endpoint.accept_reinvite(id, &sdp, now),
            Command::RejectReinvite(id, status) => self.endpoint.reject_reinvite(id, status, now),
            Command::Refer(id, target) => self.endpoint.refer(id, &target, now),
            Command::Bindings(user, reply) => {
                let _ = reply.send(self.endpoint.bindings(&user, now));
                Ok(())
            }
            Command::Draining(retry) => {
                self.endpoint.set_draining(Some(retry));
                Ok(())
            }
            Command::Invite(params, reply) => {
                let r = self.endpoint.invite(*params, now).map(|(id, call_id)| {
                    let (tx, rx) = mpsc::channel(DIALOG_EVENTS_CAPACITY);
                    self.dialogs.insert(id, tx);
                    OutboundCall {
                        dialog: DialogHandle { id, commands: self.commands.clone() },
                        sip_call_id: call_id,
                        events: rx,
                    }
                });
                let _ = reply.send(r.map_err(|e| SipError::BadUri(e.to_string())));
                Ok(())
            }
            Command::Options(target, dest, transport, reply) => {
                match self.endpoint.options(&target, dest, transport, now) {
                    Ok(n) => {
                        self.options.insert(n, reply);
                    }
                    Err(_) => {
                        let _ = reply.send(Err(SipError::BadUri(target)));
                    }
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "SIP command ignored");
        }
    }
}

/// Resolves a target URI to an address and transport (IP literal or DNS).
async fn resolve(target: &str) -> Result<(SocketAddr, Transport), SipError> {
    let uri = Uri::parse(target).map_err(|_| SipError::BadUri(target.to_string()))?;
    if !uri.is_sip() {
        return Err(SipError::BadUri(target.to_string()));
    }
    let transport = match uri.transport().as_deref() {
        Some("tcp") => Transport::Tcp,
        _ => Transport::Udp,
    };
    if let Some((addr, _)) = literal_dest(&uri) {
        return Ok((addr, transport));
    }
    let port = uri.port.unwrap_or(if uri.scheme == "sips" { 5061 } else { 5060 });
    let mut addrs = tokio::net::lookup_host((uri.host.as_str(), port))
        .await
        .map_err(|_| SipError::BadUri(target.to_string()))?;
    let addr = addrs.next().ok_or_else(|| SipError::BadUri(target.to_string()))?;
    Ok((addr, transport))
}

/// `cfg.advertised_host`, else the listen IP; for 0.0.0.0 the IP of the
/// interface holding the default route, else 127.0.0.1.
fn advertised_host(cfg: &SipConfig, local: SocketAddr) -> String {
    if let Some(h) = &cfg.advertised_host {
        return h.clone();
    }
    if !local.ip().is_unspecified() {
        return local.ip().to_string();
    }
    // A connected UDP socket learns its source address without sending.
    let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).map(|_| s))
        .and_then(|s| s.local_addr());
    match probe {
        Ok(a) if !a.ip().is_loopback() && !a.ip().is_unspecified() => a.ip().to_string(),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(),
    }
}

async fn accept_loop(listener: TcpListener, net: mpsc::Sender<NetIn>, shutdown: CancellationToken, tracker: TaskTracker) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    tracker.spawn(connection(stream, peer, None, net.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Opens a connection for queued outbound messages.
async fn connect(dest: SocketAddr, writes: mpsc::Receiver<Vec<u8>>, net: mpsc::Sender<NetIn>, shutdown: CancellationToken) {
    match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(dest)).await {
        Ok(Ok(stream)) => connection(stream, dest, Some(writes), net, shutdown).await,
        _ => {
            tracing::debug!(%dest, "TCP connect failed");
            let _ = net.send(NetIn::Closed(dest)).await;
        }
    }
}

/// Runs one TCP connection: frames incoming messages, writes outgoing ones.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    writes: Option<mpsc::Receiver<Vec<u8>>>,
    net: mpsc::Sender<NetIn>,
    shutdown: CancellationToken,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut writes = match writes {
        Some(w) => w,
        None => {
            let (tx, rx) = mpsc::channel(256);
            if net.send(NetIn::Connected(peer, tx)).await.is_err() {
                return;
            }
            rx
        }
    };
    let mut framer = Framer::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            w = writes.recv() => match w {
                Some(bytes) => if wr.write_all(&bytes).await.is_err() { break },
                None => break,
            },
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    framer.push(buf.get(..n).unwrap_or_default());
                    let mut closed = false;
                    loop {
                        match framer.next_message() {
                            Ok(Some(m)) => { let _ = net.send(NetIn::Message(peer, m)).await; }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "closing SIP TCP connection");
                                closed = true;
                                break;
                            }
                        }
                    }
                    if closed { break }
                }
            },
        }
    }
    let _ = net.send(NetIn::Closed(peer)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SipConfig {
        SipConfig { listen: "127.0.0.1:0".parse().expect("addr"), ..SipConfig::default() }
    }

    #[test]
    fn advertised_host_prefers_config_then_listen_ip() {
        let mut c = cfg();
        assert_eq!(advertised_host(&c, "127.0.0.1:5060".parse().unwrap()), "127.0.0.1");
        c.advertised_host = Some("sip.example.com".into());
        assert_eq!(advertised_host(&c, "127.0.0.1:5060".parse().unwrap()), "sip.example.com");
        c.advertised_host = None;
        let any = advertised_host(&c, "0.0.0.0:5060".parse().unwrap());
        assert!(any.parse::<IpAddr>().is_ok_and(|ip| !ip.is_unspecified()));
    }

    /// A phone on a real UDP socket registers; the handle finds its binding
    /// (at the packet source) and reports the event.
    #[tokio::test]
    async fn registrar_handle_looks_up_a_registered_phone() {
        use crate::config::{RegistrarUserConfig, SipRegistrarConfig};
        use crate::sip::proto::auth::{Challenge, authorization};
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let mut c = cfg();
        c.registrar = Some(SipRegistrarConfig {
            realm: "skald".into(),
            users: vec![RegistrarUserConfig {
                user: "alice".into(),
                password_env: "UNUSED".into(),
                password: Some("pw".into()),
            }],
            default_expires_s: 3600,
            min_expires_s: 60,
            max_expires_s: 7200,
            algorithms: vec!["MD5".into(), "SHA-256".into()],
        });
        let (sip, _in) = start_with(&c, None, stop.clone(), &tracker).await.unwrap();
        let reg = sip.registrar().expect("registrar on");
        let mut events = reg.subscribe();
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = phone.local_addr().unwrap();
        let ruri = format!("sip:{}", sip.local_addr());
        let register = |cseq: u32, auth: &str| {
            format!(
                "REGISTER {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKr{cseq};rport\r\n\
From: <sip:alice@127.0.0.1>;tag=p\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: drv-reg\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:alice@10.1.2.3:5062>\r\n{auth}Content-Length: 0\r\n\r\n"
            )
        };
        let wait = Duration::from_secs(5);
        let dest = sip.local_addr();
        let exchange = |text: String| {
            let phone = &phone;
            async move {
                let mut buf = vec![0u8; 4096];
                phone.send_to(text.as_bytes(), dest).await.unwrap();
                let (n, _) = tokio::time::timeout(wait, phone.recv_from(&mut buf)).await.unwrap().unwrap();
                match msg::parse(buf.get(..n).unwrap()) {
                    Ok(msg::SipMessage::Response(r)) => r,
                    other => panic!("{other:?}"),
                }
            }
        };
        let r = exchange(register(1, "")).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.headers.get_all("WWW-Authenticate").count(), 2);
        let ch = Challenge::parse(r.headers.get("WWW-Authenticate").unwrap()).unwrap();
        let auth = authorization(&ch, "alice", "pw", "REGISTER", &ruri, "cn", 1);
        let r = exchange(register(2, &format!("Authorization: {auth}\r\n"))).await;
        assert_eq!(r.status, 200);
        let b = reg.lookup("alice").await.unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].contact.as_str(), b[0].source, b[0].transport), ("sip:alice@10.1.2.3:5062", me, Transport::Udp));
        assert!(reg.lookup("bob").await.unwrap().is_empty());
        let ev = tokio::time::timeout(wait, events.recv()).await.unwrap().unwrap();
        assert!(matches!(ev, RegistrarEvent::Registered { ref aor, source, .. } if aor == "alice" && source == me), "{ev:?}");
        stop.cancel();
        tracker.close();
        tokio::time::timeout(wait, tracker.wait()).await.unwrap();
    }

    /// Two real stacks on loopback: UDP call, answer, BYE; TCP OPTIONS.
    #[tokio::test]
    async fn two_stacks_call_over_udp_and_options_over_tcp() {
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let (a, _a_in) = start_with(&cfg(), None, stop.clone(), &tracker).await.unwrap();
        let (b, mut b_in) = start_with(&cfg(), None, stop.clone(), &tracker).await.unwrap();
        assert_eq!(a.local_addr().ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let target = format!("sip:echo@{}", b.local_addr());
        let mut call = a
            .invite(OutboundInvite {
                target: target.clone(),
                from_user: "alice".into(),
                from_display: None,
                sdp_offer: "v=0\r\n".into(),
                credentials: None,
                extra_headers: vec![],
                ring_timeout: Duration::from_secs(5),
            })
            .await
            .unwrap();
        let wait = Duration::from_secs(5);
        let mut incoming = tokio::time::timeout(wait, b_in.recv()).await.unwrap().unwrap();
        assert_eq!(incoming.info.did, "echo");
        assert_eq!(incoming.info.sip_call_id, call.sip_call_id);
        incoming.dialog.ring();
        incoming.dialog.answer("v=0 b\r\n".into());
        let ev = tokio::time::timeout(wait, call.events.recv()).await.unwrap().unwrap();
        assert_eq!(ev, DialogEvent::Provisional { status: 180, sdp: None });
        let ev = tokio::time::timeout(wait, call.events.recv()).await.unwrap().unwrap();
        assert_eq!(ev, DialogEvent::Answered { sdp_answer: Some("v=0 b\r\n".into()) });
        let ev = tokio::time::timeout(wait, incoming.events.recv()).await.unwrap().unwrap();
        assert_eq!(ev, DialogEvent::Acked);
        call.dialog.hangup();
        let ev = tokio::time::timeout(wait, incoming.events.recv()).await.unwrap().unwrap();
        assert_eq!(ev, DialogEvent::Bye);
        let ev = tokio::time::timeout(wait, call.events.recv()).await.unwrap().unwrap();
        assert!(matches!(ev, DialogEvent::Terminated { .. }));
        let status = a.options(&format!("{target};transport=tcp")).await.unwrap();
        assert_eq!(status, 200);
        stop.cancel();
        tracker.close();
        tokio::time::timeout(wait, tracker.wait()).await.unwrap();
    }
}
