//! The SIP edge of the simulator: skald's own SIP and RTP stack, started in
//! this process (an [`App`] without HTTP, listening on an ephemeral port),
//! dials the target with [`CallServices::dial_app`] and runs the caller as
//! the call's [`Application`]: the call actor decodes the agent's RTP
//! (jitter buffer, G.711, 16 kHz) into [`Caller::handle_audio`] and sends
//! the caller's audio as RTP paced every 20 ms.
//!
//! The caller comes back when the call actor drops the application at the
//! end of the call; how the call ended is read from the call's record
//! (`remote-bye`: the agent hung up; `transferred`: the agent sent a REFER,
//! which the stack refuses and reports, and the caller left).
//!
//! [`CallServices::dial_app`]: crate::call::service::CallServices::dial_app

use super::SimError;
use super::caller::{Action, Caller, CallLog, EndCause};
use crate::app::App;
use crate::call::apps::{AppAction, AppInput, Application};
use crate::call::command::CallCommand;
use crate::config::{Config, PortRange};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The caller's end reasons (what it hangs up with).
const CALLER_REASONS: [&str; 3] = ["caller-hangup", "max-duration", "end-timeout"];
/// How long after `max_duration_s` a call may still run before it is ended.
const OVERRUN: Duration = Duration::from_secs(15);

/// How the simulator's SIP side is set up.
#[derive(Debug, Clone)]
pub struct SipOptions {
    /// The SIP URI to call.
    pub target: String,
    /// From user part.
    pub from: String,
    /// Give up when not answered within this time.
    pub ring_timeout: Duration,
    /// SIP listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// RTP ports of the simulator.
    pub rtp_ports: PortRange,
    /// The call must be over by then (the caller's `max_duration_s`).
    pub max_duration: Duration,
}

/// The caller as the call's application.
pub struct SimApp {
    /// The caller, handed back when dropped.
    caller: Option<Caller>,
    /// Where the caller goes when the call is over (with the drop time).
    done: Option<oneshot::Sender<(Caller, Instant)>>,
}

impl SimApp {
    /// Wraps `caller`; it is sent to `done` when the call ends.
    pub fn new(caller: Caller, done: oneshot::Sender<(Caller, Instant)>) -> SimApp {
        SimApp { caller: Some(caller), done: Some(done) }
    }
}

impl Application for SimApp {
    fn handle(&mut self, input: AppInput<'_>, now: Instant) -> Vec<AppAction> {
        let Some(c) = self.caller.as_mut() else { return Vec::new() };
        match input {
            AppInput::Started => c.handle_answered(now),
            AppInput::Audio(frame) => c.handle_audio(frame, now),
            AppInput::Timeout => c.handle_timeout(now),
            AppInput::Referred(to) => c.handle_referred(to, now),
            AppInput::Dtmf(_) | AppInput::PlayoutDone => {}
        }
        let mut out = Vec::new();
        while let Some(a) = c.poll_action() {
            out.push(match a {
                Action::Play(audio) => AppAction::Play(audio),
                Action::Hangup(reason) => AppAction::Hangup(reason),
            });
        }
        out
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.caller.as_ref().and_then(Caller::poll_timeout)
    }

    fn name(&self) -> &str {
        "simulator"
    }
}

impl Drop for SimApp {
    fn drop(&mut self) {
        if let (Some(c), Some(tx)) = (self.caller.take(), self.done.take()) {
            let _ = tx.send((c, Instant::now()));
        }
    }
}

/// The in-process skald that places the call: no HTTP, no voice models, an
/// in-memory store, routes nothing in.
fn config(o: &SipOptions, data_dir: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.sip.listen = o.listen;
    cfg.sip.user_agent = format!("skald-simulate/{}", env!("CARGO_PKG_VERSION"));
    cfg.rtp.ports = o.rtp_ports;
    cfg.data_dir = data_dir.to_path_buf();
    cfg.store.database_url = Some("sqlite::memory:".into());
    cfg.routes.default = None;
    cfg.shutdown.grace_s = 1;
    cfg
}

/// Places the call and runs `caller` on it; returns its log. Errors: the
/// SIP stack cannot start, the INVITE cannot be sent, the call is not
/// answered in time.
pub async fn run(o: &SipOptions, caller: Caller) -> Result<CallLog, SimError> {
    let data_dir = std::env::temp_dir().join(format!("skald-simulate-{}", std::process::id()));
    let app = App::start(config(o, &data_dir), false)
        .await
        .map_err(|e| SimError::Call(format!("cannot start SIP: {e:#}")))?;
    let result = call(&app, o, caller).await;
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

/// The call itself, on a running `app`.
async fn call(app: &App, o: &SipOptions, caller: Caller) -> Result<CallLog, SimError> {
    let (tx, rx) = oneshot::channel();
    let sim = Box::new(SimApp::new(caller, tx));
    let services = &app.services;
    let id = services
        .dial_app(&o.target, &o.from, sim, o.ring_timeout, None)
        .await
        .map_err(|e| SimError::Connect(format!("cannot call {}: {e}", o.target)))?;
    // Answered, rejected, or no answer in time (a silent target: no
    // provisional response, so no CANCEL can end the INVITE; hang up).
    let answer_by = tokio::time::Instant::now() + o.ring_timeout + Duration::from_secs(1);
    let answered = loop {
        let record = services.store.get_call(id).await.ok().flatten();
        if record.as_ref().is_some_and(|r| r.answered_at.is_some()) {
            break true;
        }
        if record.as_ref().is_some_and(|r| r.ended_at.is_some()) || services.registry.is_empty() {
            break false;
        }
        if tokio::time::Instant::now() >= answer_by {
            let _ = services.registry.send(id, CallCommand::Hangup { reason: "no-answer".into() });
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let limit = if answered { o.max_duration + OVERRUN } else { Duration::from_secs(10) };
    if tokio::time::timeout(limit, app.calls_done()).await.is_err() {
        let _ = services.registry.send(id, CallCommand::Hangup { reason: "max-duration".into() });
        let _ = tokio::time::timeout(Duration::from_secs(8), app.calls_done()).await;
    }
    let record = services.store.get_call(id).await.ok().flatten();
    let (mut caller, ended_at) = match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(back)) => back,
        _ => return Err(SimError::Call("the call did not end in time".into())),
    };
    let Some(record) = record.filter(|r| r.answered_at.is_some()) else {
        let why = match services.store.get_call(id).await.ok().flatten() {
            Some(r) => match (r.sip_status, r.end_reason) {
                (_, Some(reason)) if reason == "no-answer" => format!("no answer within {} s", o.ring_timeout.as_secs()),
                (Some(s), Some(reason)) if s >= 300 => format!("{s} ({reason})"),
                (_, Some(reason)) => reason,
                _ => "no answer".into(),
            },
            None => "no answer".into(),
        };
        return Err(SimError::NotAnswered(format!("{} did not answer: {why}", o.target)));
    };
    let reason = record.end_reason.clone().unwrap_or_default();
    let cause = match reason.as_str() {
        "remote-bye" => EndCause::AgentHangup,
        "transferred" => EndCause::Transferred,
        r if CALLER_REASONS.contains(&r) => EndCause::CallerHangup,
        _ => EndCause::Other,
    };
    caller.handle_ended(cause, &reason, ended_at);
    Ok(caller.into_log())
}
