//! WebSocket legs: a call whose audio comes over a WebSocket (a Twilio
//! Media Stream, the control page's microphone) as one [`Leg`].
//!
//! Two halves, as everywhere in skald: a sans-IO protocol core with its
//! codec ([`StreamTransport`]: `twilio::leg::TwilioStream`,
//! `browser::BrowserStream`) and this IO edge ([`WsLeg`]), which owns the
//! socket's two halves. The HTTP layer accepts the WebSocket and hands its
//! frames here ([`WsLeg::new`] is generic over any stream of [`WsInput`]
//! and sink of [`WsOutput`], so tests and other WebSocket stacks can drive
//! it).
//!
//! The edge's loop: send everything the core releases now (paced by the
//! core on its media clock), report the core's next event, else wait for a
//! frame, the core's next pacing deadline or a transfer request's outcome.
//! Sending is cancel-safe: a frame taken from the core waits in a one-slot
//! outbox until the sink is ready.
//!
//! Ending: the far end's `stop` (`remote-stop`: the socket is closed from
//! our side), a socket that fails (`stream-error`) or closes without `stop`
//! (`stream-closed`), a flood of bad messages (`stream-misbehaved`: more
//! than [`MAX_BAD_MESSAGES`]). After a transfer the transport took, the
//! stream's end is `transferred`.

use super::leg::{AudioOut, Leg, LegEvent, LegFacts, LegFuture, TransferEvent, TransferTo};
use super::twilio::media::StreamStart;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Bad messages tolerated before the stream is ended as misbehaving.
pub const MAX_BAD_MESSAGES: u64 = 200;

/// An input from the WebSocket: a data frame (the end of the socket is the
/// end of the stream, or an error).
#[derive(Debug)]
pub enum WsInput {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

/// A frame to send on the WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub enum WsOutput {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

/// What a WebSocket protocol core reported, in the leg's terms.
#[derive(Debug)]
pub enum TransportEvent {
    /// The stream started: who and what.
    Start(StreamStart),
    /// One 20 ms caller frame, decoded into the buffer given to
    /// [`StreamTransport::poll_event`] (16 kHz mono).
    Audio,
    /// A DTMF digit from the caller.
    Dtmf(char),
    /// The far end acknowledged playout of agent audio.
    Played,
    /// The far end ended the stream.
    Stop,
}

/// A transfer request running against a provider's API: its outcome.
pub type TransferJob = LegFuture<'static, Result<(), String>>;

/// One WebSocket protocol core and its codec, as [`WsLeg`] drives it. The
/// run loop is the core's own: feed one frame to
/// [`StreamTransport::handle_input`], drain [`StreamTransport::poll_event`]
/// and [`StreamTransport::poll_transmit`], sleep until
/// [`StreamTransport::poll_timeout`].
pub trait StreamTransport: AudioOut {
    /// The record's `transport`.
    const NAME: &'static str;
    /// The record's `codec`.
    const CODEC: &'static str;
    /// How the transport transfers a call, if it can.
    const TRANSFER: Option<&'static str> = None;
    /// Handles one frame; an error describes a dropped message (counted in
    /// [`StreamTransport::dropped`]), the stream goes on.
    fn handle_input(&mut self, input: WsInput, now: Instant) -> Result<(), String>;
    /// The next event, oldest first; caller audio is decoded into `pcm16k`.
    fn poll_event(&mut self, pcm16k: &mut Vec<i16>) -> Option<TransportEvent>;
    /// The next frame to send now.
    fn poll_transmit(&mut self, now: Instant) -> Option<WsOutput>;
    /// When [`StreamTransport::poll_transmit`] may next have something.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Messages dropped as bad input.
    fn dropped(&self) -> u64;
    /// A transcript turn was stored (a transport may show it to the caller).
    fn on_turn(&mut self, _speaker: &str, _text: &str) {}
    /// Starts a transfer of the call `call_sid` to `to` through the
    /// provider; the future is its outcome. Errors: the transport cannot
    /// transfer, or not to this target.
    fn transfer(&mut self, _call_sid: Option<&str>, _to: &TransferTo) -> Result<TransferJob, String> {
        Err(format!("a {} call cannot be transferred", Self::NAME))
    }
}

/// The frames of the socket, as a leg reads them.
type WsRx = Pin<Box<dyn Stream<Item = Result<WsInput, String>> + Send>>;
/// The socket's sink, as a leg writes it.
type WsTx = Pin<Box<dyn Sink<WsOutput, Error = String> + Send>>;

/// A WebSocket call leg over protocol core `T`.
pub struct WsLeg<T: StreamTransport> {
    /// Protocol core and codec.
    core: T,
    /// Frames in.
    rx: WsRx,
    /// Frames out.
    tx: WsTx,
    /// A frame taken from the core, waiting for the sink.
    outbox: Option<WsOutput>,
    /// What this leg is.
    facts: LegFacts,
    /// The leg is over: events stay pending.
    over: bool,
    /// The end to report, and whether to close the socket first (kept
    /// here so that a cancelled close loses nothing).
    ending: Option<(LegEvent, bool)>,
    /// The socket was closed from our side.
    closed: bool,
    /// A transfer request under way.
    transfer: Option<oneshot::Receiver<Result<(), String>>>,
    /// The provider took the call to a transfer target.
    transferred: bool,
}

impl<T: StreamTransport + 'static> WsLeg<T> {
    /// A leg over the socket halves `rx` and `tx` (from `remote`) speaking
    /// `core`. Nothing is read until [`WsLeg::start`].
    pub fn new<R, S, E>(core: T, remote: String, rx: R, tx: S) -> Self
    where
        R: Stream<Item = Result<WsInput, E>> + Send + 'static,
        S: Sink<WsOutput> + Send + 'static,
        E: std::fmt::Display,
    {
        let facts = LegFacts {
            transport: T::NAME,
            codec: Some(T::CODEC.into()),
            remote,
            call_sid: None,
            ptime_ms: 20,
            transfer: T::TRANSFER,
        };
        WsLeg {
            core,
            rx: Box::pin(rx.map(|r| r.map_err(|e| e.to_string()))),
            tx: Box::pin(tx.sink_map_err(|_| "the socket is closed".to_string())),
            outbox: None,
            facts,
            over: false,
            ending: None,
            closed: false,
            transfer: None,
            transferred: false,
        }
    }

    /// Reads frames until the stream's start (dropping bad ones). `None`,
    /// with the socket closed, when the socket ends, floods bad messages or
    /// the start does not come within `timeout`.
    pub async fn start(&mut self, timeout: Duration) -> Option<StreamStart> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut scratch = Vec::new();
        loop {
            while let Some(ev) = self.core.poll_event(&mut scratch) {
                if let TransportEvent::Start(s) = ev {
                    self.facts.call_sid = Some(s.call_sid.clone()).filter(|s| !s.is_empty());
                    return Some(s);
                }
            }
            if self.core.dropped() > MAX_BAD_MESSAGES {
                tracing::warn!("media stream floods bad messages before `start`: closed");
                break;
            }
            let frame = tokio::select! {
                f = self.rx.next() => f,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(remote = %crate::observability::Pii(&self.facts.remote), "media stream sent no `start` in time: closed");
                    break;
                }
            };
            match frame {
                Some(Ok(input)) => {
                    if let Err(e) = self.core.handle_input(input, Instant::now()) {
                        tracing::warn!(error = %e, "media stream message dropped");
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "media stream socket failed before `start`");
                    break;
                }
                None => break,
            }
        }
        let _ = self.tx.close().await;
        None
    }


    /// Sends everything the core releases now. Cancel-safe.
    async fn send_due(&mut self) -> Result<(), String> {
        loop {
            if self.outbox.is_none() {
                self.outbox = self.core.poll_transmit(Instant::now());
            }
            let Some(_) = self.outbox.as_ref() else { break };
            std::future::poll_fn(|cx| self.tx.as_mut().poll_ready(cx)).await?;
            if let Some(frame) = self.outbox.take() {
                self.tx.as_mut().start_send(frame)?;
            }
        }
        std::future::poll_fn(|cx| self.tx.as_mut().poll_flush(cx)).await
    }

    /// Sends what is due, then closes the socket from our side. Safe to
    /// call again after a cancelled call.
    async fn close(&mut self) {
        if !self.closed {
            let _ = self.send_due().await;
            let _ = self.tx.close().await;
            self.closed = true;
        }
    }

    /// The leg ends with `reason` (the record gets `error`); `close`: the
    /// socket is closed from our side first.
    fn end(&mut self, reason: &str, error: Option<String>, close: bool) {
        self.ending = Some((LegEvent::Ended { reason: reason.into(), status: None, error }, close));
    }

    async fn event(&mut self, pcm16k: &mut Vec<i16>) -> LegEvent {
        loop {
            if let Some((_, close)) = &self.ending {
                if *close {
                    self.close().await;
                }
                self.over = true;
                if let Some((ev, _)) = self.ending.take() {
                    return ev;
                }
            }
            if self.over {
                return std::future::pending().await;
            }
            if self.send_due().await.is_err() {
                self.end("stream-closed", None, false);
                continue;
            }
            if let Some(ev) = self.core.poll_event(pcm16k) {
                match ev {
                    TransportEvent::Audio => return LegEvent::Audio,
                    TransportEvent::Dtmf(d) => return LegEvent::Dtmf(d),
                    TransportEvent::Played => return LegEvent::Played,
                    TransportEvent::Start(_) => continue,
                    TransportEvent::Stop => {
                        let reason = if self.transferred {
                            tracing::info!(transport = T::NAME, "the stream stopped: the provider dials the transfer target");
                            "transferred"
                        } else {
                            tracing::info!(transport = T::NAME, "the far end stopped the stream (caller hung up)");
                            "remote-stop"
                        };
                        self.end(reason, None, true);
                        continue;
                    }
                }
            }
            let pace = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                frame = self.rx.next() => match frame {
                    Some(Ok(input)) => {
                        if let Err(e) = self.core.handle_input(input, Instant::now()) {
                            tracing::warn!(error = %e, "media stream message dropped");
                            let dropped = self.core.dropped();
                            if dropped > MAX_BAD_MESSAGES {
                                tracing::warn!(dropped, "media stream misbehaves: ended");
                                self.end("stream-misbehaved", Some(format!("stream: {dropped} bad messages")), true);
                                continue;
                            }
                            return LegEvent::Dropped(e);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "media stream socket failed");
                        self.end("stream-error", Some(format!("stream: socket failed: {e}")), false);
                    }
                    None if self.transferred => self.end("transferred", None, false),
                    None => {
                        tracing::warn!("media stream closed without `stop`");
                        self.end("stream-closed", Some("stream: closed without `stop`".into()), false);
                    }
                },
                r = transfer_outcome(&mut self.transfer) => {
                    self.transfer = None;
                    return LegEvent::Transfer(match r {
                        Ok(()) => {
                            self.transferred = true;
                            TransferEvent::Completed
                        }
                        Err(why) => TransferEvent::Failed(why),
                    });
                }
                _ = sleep_opt(pace) => {}
            }
        }
    }
}

/// The outcome of the transfer request under way; pending forever without one.
async fn transfer_outcome(t: &mut Option<oneshot::Receiver<Result<(), String>>>) -> Result<(), String> {
    match t {
        Some(rx) => rx.await.unwrap_or_else(|_| Err("the transfer request was dropped".into())),
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; pending forever when `None`.
async fn sleep_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl<T: StreamTransport> AudioOut for WsLeg<T> {
    fn play(&mut self, pcm16k: &[i16]) -> usize {
        self.core.play(pcm16k)
    }
    fn queued(&self) -> usize {
        self.core.queued()
    }
    fn unsent(&self) -> usize {
        self.core.unsent()
    }
    fn pause(&mut self) -> Vec<Vec<u8>> {
        self.core.pause()
    }
    fn resume(&mut self, frames: Vec<Vec<u8>>) {
        self.core.resume(frames)
    }
}

impl<T: StreamTransport + 'static> Leg for WsLeg<T> {
    fn facts(&self) -> &LegFacts {
        &self.facts
    }
    fn next_event<'a>(&'a mut self, pcm16k: &'a mut Vec<i16>) -> LegFuture<'a, LegEvent> {
        Box::pin(self.event(pcm16k))
    }
    fn transfer(&mut self, to: TransferTo) -> Result<(), String> {
        let request = self.core.transfer(self.facts.call_sid.as_deref(), &to)?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(request.await);
        });
        self.transfer = Some(rx);
        Ok(())
    }
    fn hangup(&mut self) -> LegFuture<'_, ()> {
        Box::pin(async move {
            self.over = true;
            self.close().await;
        })
    }
    fn show_turn(&mut self, speaker: &str, text: &str) {
        self.core.on_turn(speaker, text);
    }
}
