//! What every call actor shares (config, store, SIP legs, metrics,
//! registry) and the ways a call starts: an incoming INVITE
//! ([`CallServices::accept`]), an outbound dial ([`CallServices::dial`]),
//! or a WebSocket stream ([`CallServices::run_stream`],
//! [`CallServices::run_browser`]). Each becomes a leg
//! ([`crate::transports::leg::Leg`]) run by the one call actor.

use super::actor::{Arrival, CallActor};
use super::registry::{CallRegistry, CallSummary};
use super::state::CallState;
use crate::agent::context::CallContext;
use crate::config::Config;
use crate::ids::CallId;
use crate::observability::Metrics;
use crate::store::{CallRecord, Store};
use crate::transports::leg::Leg;
use crate::transports::sip_rtp::{Digest, Invite, InviteError, InviteFacts, SipLeg, SipLegs};
use crate::transports::ws::{StreamTransport, WsInput, WsLeg, WsOutput};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Commands a call's mailbox holds before the actor drains them.
const COMMAND_QUEUE: usize = 32;

/// How long a new WebSocket stream may take to send its start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// An INVITE on its way: its leg (ringing) and what it was sent with.
pub struct OutboundLeg {
    /// SIP Call-ID of the INVITE.
    pub sip_call_id: String,
    /// The leg.
    pub leg: SipLeg,
    /// The Request-URI dialed.
    pub target: String,
}

/// Errors starting an outbound call.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The INVITE could not be placed (no RTP ports, a bad URI, SIP stopped).
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// The application name is not configured.
    #[error("unknown application `{0}`")]
    UnknownApp(String),
    /// The trunk name is not configured.
    #[error("unknown trunk `{0}`")]
    UnknownTrunk(String),
    /// The destination is neither a phone number nor a SIP URI.
    #[error("`{0}` is not a phone number (+ and digits) or a sip: URI")]
    BadNumber(String),
    /// skald is shutting down and places no new calls.
    #[error("not taking calls (shutting down)")]
    Draining,
}

/// Shared by all calls; cheap to clone through `Arc`.
pub struct CallServices {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Call records.
    pub store: Store,
    /// Metrics registry.
    pub metrics: Metrics,
    /// SIP legs: inbound INVITEs, outbound INVITEs on fresh RTP ports
    /// (`None`: this node has no SIP stack; it takes WebSocket calls only).
    pub sip: Option<SipLegs>,
    /// Live calls.
    pub registry: CallRegistry,
    /// IP this node's media and API are reached at.
    pub media_ip: std::net::IpAddr,
    /// Cancelled when skald shuts down.
    pub shutdown: CancellationToken,
    /// Tracks call tasks for graceful shutdown.
    pub tracker: TaskTracker,
    /// Local voice models and agents, when a voice-agent application is configured.
    pub voice: Option<Arc<super::voice::VoiceServices>>,
    /// By-reference call contexts handed on at transfers (served by
    /// `GET /api/v1/context/{ref}`).
    pub contexts: crate::agent::context::ContextStore,
    /// Live event bus (`GET /api/v1/events`).
    pub events: crate::events::EventBus,
    /// The contact center (queues, human agents), when `queues_file` is set.
    pub contact: Option<super::contact::ContactCenterHandle>,
}

impl CallServices {
    /// Takes an incoming INVITE (its leg and what it said; see
    /// [`SipLegs::inbound`]): registers it, writes its first record and
    /// spawns its actor. Routing, SDP and answering happen in the actor.
    pub fn accept(self: &Arc<Self>, (info, leg): (InviteFacts, SipLeg)) {
        let id = CallId::new();
        let app = self.config.route(&info.did).map(str::to_string);
        let record = CallRecord {
            id,
            sip_call_id: info.sip_call_id.clone(),
            direction: "inbound".into(),
            from_uri: info.from_uri.clone(),
            to_uri: info.to_uri.clone(),
            did: info.did.clone(),
            remote_addr: info.remote_addr.clone(),
            app: app.clone(),
            state: CallState::Ringing.as_str().into(),
            invited_at: now_ms(),
            transport: Some("sip".into()),
            sip_transport: Some(info.transport.into()),
            ..Default::default()
        };
        let key = self.config.context_key.clone().unwrap_or_default();
        let context = super::transfer::context_from_headers(&info.headers, key.as_bytes());
        self.spawn(record, Arrival::Invite { leg: Box::new(leg), context }, app, |_| {});
    }

    /// Places an outbound call to `target` (a SIP URI) running application
    /// `app` once answered. Returns the new call's id once the INVITE is sent.
    pub async fn dial(
        self: &Arc<Self>,
        target: &str,
        from_user: &str,
        app: &str,
        ring_timeout: Duration,
        credentials: Option<Digest>,
    ) -> Result<CallId, DialError> {
        if !self.config.applications.contains_key(app) {
            return Err(DialError::UnknownApp(app.to_string()));
        }
        self.dial_uri(target, from_user, app.to_string(), None, ring_timeout, credentials).await
    }

    /// Places an outbound call to `target` (a SIP URI) that runs `app`, an
    /// application the caller of this function built (not one of the
    /// config's), once answered: the one way to put custom call logic on a
    /// real SIP call. `skald simulate` dials with its caller simulator this
    /// way. The call record's `app` is `app.name()`. Returns the new call's
    /// id once the INVITE is sent; `app` is dropped when the call ends
    /// (answered or not).
    pub async fn dial_app(
        self: &Arc<Self>,
        target: &str,
        from_user: &str,
        app: Box<dyn super::apps::Application>,
        ring_timeout: Duration,
        credentials: Option<Digest>,
    ) -> Result<CallId, DialError> {
        let name = app.name().to_string();
        self.dial_uri(target, from_user, name, Some(app), ring_timeout, credentials).await
    }

    /// [`CallServices::dial`] and [`CallServices::dial_app`]: the INVITE, the
    /// first record and the actor, which runs `supplied` when given, else
    /// the configured application `app`.
    async fn dial_uri(
        self: &Arc<Self>,
        target: &str,
        from_user: &str,
        app: String,
        supplied: Option<Box<dyn super::apps::Application>>,
        ring_timeout: Duration,
        credentials: Option<Digest>,
    ) -> Result<CallId, DialError> {
        let OutboundLeg { sip_call_id, leg, .. } =
            self.invite_uri(target, from_user, None, credentials, Vec::new(), ring_timeout).await?;
        let id = CallId::new();
        let record = CallRecord {
            id,
            sip_call_id,
            direction: "outbound".into(),
            from_uri: format!("sip:{from_user}@{}", self.sip.as_ref().map(SipLegs::advertised_host).unwrap_or_default()),
            to_uri: target.to_string(),
            did: target.to_string(),
            remote_addr: String::new(),
            app: Some(app.clone()),
            state: CallState::Ringing.as_str().into(),
            invited_at: now_ms(),
            transport: Some("sip".into()),
            ..Default::default()
        };
        self.spawn(record, Arrival::Dialed(Box::new(leg)), Some(app), |actor| {
            if let Some(app) = supplied {
                actor.set_application(app);
            }
        });
        Ok(id)
    }

    /// Places an outbound call through trunk `trunk` to `to` (a phone number,
    /// dialled as `sip:NUMBER@TRUNK-HOST`, or a SIP URI, sent as it is),
    /// running application `app` once answered, with `context` as the
    /// conversation's starting point (the agent resumes from its intent and
    /// slots; it also travels signed in `X-Skald-Context`). From carries the
    /// trunk's caller ID (or `from` when given); a 401/407 is answered with
    /// the trunk's credentials; the call is CANCELled after the trunk's ring
    /// timeout. Returns the call's id once the INVITE is sent.
    pub async fn dial_trunk(
        self: &Arc<Self>,
        trunk: &str,
        to: &str,
        app: &str,
        from: Option<&str>,
        context: Option<CallContext>,
    ) -> Result<CallId, DialError> {
        if self.shutdown.is_cancelled() {
            return Err(DialError::Draining);
        }
        let t = self.config.trunks.get(trunk).ok_or_else(|| DialError::UnknownTrunk(trunk.to_string()))?;
        if !self.config.applications.contains_key(app) {
            return Err(DialError::UnknownApp(app.to_string()));
        }
        let from_user = from.or(t.caller_id.as_deref()).unwrap_or("skald").to_string();
        let mut extra_headers = Vec::new();
        if let Some(ctx) = &context {
            let key = self.config.context_key.clone().unwrap_or_default();
            let signed = ctx.encode_signed(key.as_bytes());
            // Big contexts do not fit a UDP INVITE; they still start the agent.
            if signed.len() <= 600 {
                extra_headers.push((crate::agent::context::HEADER_CONTEXT.to_string(), signed));
            }
        }
        let OutboundLeg { sip_call_id, leg, target } = self.invite_leg(trunk, to, &from_user, extra_headers).await?;
        let id = CallId::new();
        let host = t.host_port().map(|(h, _)| h).unwrap_or_default();
        tracing::info!(%id, trunk, to = %crate::observability::Pii(&to), "dialling through trunk");
        let record = CallRecord {
            id,
            sip_call_id,
            direction: "outbound".into(),
            from_uri: format!("sip:{from_user}@{host}"),
            to_uri: target,
            did: to.to_string(),
            remote_addr: String::new(),
            app: Some(app.to_string()),
            state: CallState::Ringing.as_str().into(),
            invited_at: now_ms(),
            transport: Some("sip".into()),
            sip_transport: Some(
                match t.transport {
                    crate::config::TrunkTransport::Udp => "udp",
                    crate::config::TrunkTransport::Tcp => "tcp",
                }
                .into(),
            ),
            ..Default::default()
        };
        self.spawn(record, Arrival::Dialed(Box::new(leg)), Some(app.to_string()), |actor| {
            if let Some(ctx) = context {
                actor.set_context(ctx);
            }
        });
        Ok(id)
    }

    /// Places an outbound INVITE to `to` (a phone number through trunk
    /// `trunk`'s request URI, or a `sip:` URI sent as is) with an SDP offer
    /// on freshly allocated RTP ports: the trunk's digest credentials,
    /// From display name and ring timeout apply. Used by outbound calls and
    /// by the second leg of a bridged transfer. Errors: unknown trunk, a
    /// target that is neither a number nor a SIP URI, no free RTP ports, an
    /// unusable URI.
    pub async fn invite_leg(
        &self,
        trunk: &str,
        to: &str,
        from_user: &str,
        extra_headers: Vec<(String, String)>,
    ) -> Result<OutboundLeg, DialError> {
        let t = self.config.trunks.get(trunk).ok_or_else(|| DialError::UnknownTrunk(trunk.to_string()))?;
        let target = trunk_target(t, to)?;
        let credentials = match (&t.username, &t.password) {
            (Some(username), Some(password)) => {
                Some(Digest { username: username.clone(), password: password.clone() })
            }
            _ => None,
        };
        self.invite_uri(&target, from_user, t.from_display.clone(), credentials, extra_headers, Duration::from_secs(t.ring_timeout_s))
            .await
    }

    /// Places an outbound INVITE to the SIP URI `target` with an SDP offer on
    /// freshly allocated RTP ports, CANCELled after `ring_timeout`. Errors:
    /// no free RTP ports, an unusable URI, the SIP stack stopped.
    pub async fn invite_uri(
        &self,
        target: &str,
        from_user: &str,
        from_display: Option<String>,
        credentials: Option<Digest>,
        extra_headers: Vec<(String, String)>,
        ring_timeout: Duration,
    ) -> Result<OutboundLeg, DialError> {
        let invite = Invite {
            target: target.to_string(),
            from_user: from_user.to_string(),
            from_display,
            credentials,
            headers: extra_headers,
            ring_timeout,
        };
        let sip = self.sip.as_ref().ok_or_else(|| InviteError::Sip("this node has no SIP stack".into()))?;
        let (sip_call_id, leg) = sip.invite(invite).await?;
        Ok(OutboundLeg { sip_call_id, leg, target: target.to_string() })
    }

    /// Runs a call that arrived as a Twilio Media Stream on an accepted
    /// WebSocket (`rx`: its frames, `tx`: frames out) from `remote`,
    /// tracked for graceful shutdown; returns when the call has ended.
    pub async fn run_stream<R, T, E>(self: &Arc<Self>, remote: String, rx: R, tx: T)
    where
        R: futures_util::Stream<Item = Result<WsInput, E>> + Send + 'static,
        T: futures_util::Sink<WsOutput> + Send + 'static,
        E: std::fmt::Display,
    {
        let rest = crate::transports::twilio::rest::TwilioClient::from_config(&self.config.twilio).map_err(|e| e.to_string());
        let core = crate::transports::twilio::leg::TwilioStream::new(rest);
        self.tracker.track_future(self.run_ws(WsLeg::new(core, remote, rx, tx))).await;
    }

    /// Runs a conversation between the control page's microphone (user
    /// `user` at `remote`) and voice application `app` on an accepted
    /// WebSocket, tracked for graceful shutdown; returns when it has ended.
    pub async fn run_browser<R, T, E>(self: &Arc<Self>, remote: String, app: &str, user: &str, rx: R, tx: T)
    where
        R: futures_util::Stream<Item = Result<WsInput, E>> + Send + 'static,
        T: futures_util::Sink<WsOutput> + Send + 'static,
        E: std::fmt::Display,
    {
        let core = crate::transports::browser::BrowserStream::new(app, user);
        self.tracker.track_future(self.run_ws(WsLeg::new(core, remote, rx, tx))).await;
    }

    /// A WebSocket leg's call: waits for the stream's start, registers the
    /// call (its record from the start's parameters: `did`, `app`, `from`,
    /// `direction`, `context`) and runs the actor to the end.
    async fn run_ws<C: StreamTransport + 'static>(self: &Arc<Self>, mut leg: WsLeg<C>) {
        let Some(start) = leg.start(START_TIMEOUT).await else { return };
        let p = &start.custom_parameters;
        let did = p.get("did").cloned().unwrap_or_default();
        let app = p.get("app").cloned().or_else(|| self.config.route(&did).map(str::to_string));
        let now = now_ms();
        let facts = leg.facts().clone();
        let record = CallRecord {
            id: CallId::new(),
            direction: p.get("direction").cloned().unwrap_or_else(|| "inbound".into()),
            from_uri: p.get("from").cloned().unwrap_or_default(),
            to_uri: did.clone(),
            did,
            remote_addr: facts.remote.clone(),
            app: app.clone(),
            codec: facts.codec.clone(),
            state: CallState::Answered.as_str().into(),
            invited_at: now,
            answered_at: Some(now),
            transport: Some(facts.transport.into()),
            twilio_call_sid: facts.call_sid.clone(),
            ..Default::default()
        };
        tracing::info!(
            did = %crate::observability::Pii(&record.did),
            app = ?record.app,
            stream_sid = %start.stream_sid,
            transport = facts.transport,
            "media stream started"
        );
        let context = p.get("context").cloned();
        let span = tracing::info_span!("call", call_id = %record.id, transport = facts.transport, twilio_call_sid = %start.call_sid);
        let actor = self.register(record, Arrival::Stream { leg: Box::new(leg), context }, app, CallState::Answered, |_| {});
        actor.run().instrument(span).await;
    }

    /// Stores an event on the call record and publishes it live. A store
    /// failure is logged; the call goes on.
    pub async fn record_event(&self, event: crate::store::events::CallEvent) {
        if let Err(e) = self.store.add_event(&event).await {
            tracing::error!(error = %e, kind = %event.kind, "cannot store call event");
        }
        self.events.publish(event.call_id, &event.kind, event.at, event.data);
    }

    /// Stores a transcript turn and publishes it live (`transcript.final`).
    pub async fn record_turn(&self, turn: &crate::store::turns::TurnRecord) {
        if let Err(e) = self.store.insert_turn(turn).await {
            tracing::error!(error = %e, "cannot store transcript turn");
        }
        let data = serde_json::to_value(turn).unwrap_or_default();
        self.events.publish(Some(turn.call_id), "transcript.final", now_ms(), data);
    }

    /// Publishes a call's state change live (`call.state`).
    pub fn publish_state(&self, record: &CallRecord) {
        let data = serde_json::json!({
            "state": record.state,
            "did": record.did,
            "from": record.from_uri,
            "app": record.app,
            "transport": record.transport,
            "end_reason": record.end_reason,
        });
        self.events.publish(Some(record.id), "call.state", now_ms(), data);
    }

    /// Base URL of this instance's HTTP API as peers reach it (for
    /// by-reference contexts): `twilio.public_url`, else the HTTP listen
    /// address (the media IP when listening on all interfaces).
    pub fn api_base(&self) -> String {
        if let Some(u) = self.config.twilio.public_url.as_deref().filter(|u| !u.is_empty()) {
            return u.trim_end_matches('/').to_string();
        }
        let l = self.config.http.listen;
        let ip = if l.ip().is_unspecified() { self.media_ip } else { l.ip() };
        format!("http://{}", std::net::SocketAddr::new(ip, l.port()))
    }

    /// Registers the call and runs its actor in a task; `setup` adjusts
    /// the actor before it runs (a context to resume, a supplied
    /// application).
    fn spawn(self: &Arc<Self>, record: CallRecord, arrival: Arrival, app: Option<String>, setup: impl FnOnce(&mut CallActor)) {
        let span = tracing::info_span!("call", call_id = %record.id, sip_call_id = %record.sip_call_id);
        let actor = self.register(record, arrival, app, CallState::Ringing, setup);
        self.tracker.spawn(actor.run().instrument(span));
    }

    /// Enters the call in the registry (state `state`) and builds its actor.
    fn register(
        self: &Arc<Self>,
        record: CallRecord,
        arrival: Arrival,
        app: Option<String>,
        state: CallState,
        setup: impl FnOnce(&mut CallActor),
    ) -> CallActor {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        self.registry.insert(
            CallSummary {
                id: record.id,
                sip_call_id: record.sip_call_id.clone(),
                from: record.from_uri.clone(),
                did: record.did.clone(),
                app: app.clone().unwrap_or_default(),
                state,
                started_at: record.invited_at,
                queue: None,
            },
            tx,
        );
        self.metrics.call_started();
        let mut actor = CallActor::new(self.clone(), record, rx, arrival, app);
        setup(&mut actor);
        actor
    }
}

/// The Request-URI for `to` through trunk `t`: a phone number becomes
/// `sip:NUMBER@TRUNK-HOST[:PORT]`, a SIP URI is kept.
pub fn trunk_target(t: &crate::config::TrunkConfig, to: &str) -> Result<String, DialError> {
    let bad = || DialError::BadNumber(to.to_string());
    let lower = to.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        let ok = to.contains('@') && !to.chars().any(|c| c.is_whitespace() || c == '<' || c == '>');
        return if ok { Ok(to.to_string()) } else { Err(bad()) };
    }
    if !crate::config::is_dialable_number(to) {
        return Err(bad());
    }
    t.request_uri(to).ok_or_else(bad)
}

/// Wall-clock time as Unix milliseconds (records only; never for media timing).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
