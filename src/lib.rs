//! # skald
//!
//! A real-time voice agent and SIP telephony server. A caller dials a DID; the
//! call reaches skald over SIP (RFC 3261) from a trunk or softphone, skald
//! answers it with SDP offer/answer (RFC 3264), and media flows both ways as
//! RTP (RFC 3550) paced on the media clock. An application runs the
//! conversation: by default a voice agent (local Silero VAD, Moonshine STT,
//! a YAML flow agent and Piper TTS, with barge-in), or the phone-line
//! basics `echo`, `greeting` and `dtmf-menu`.
//!
//! ## Architecture
//! ```text
//! socket ─► protocol core (sans-IO) ─► leg (IO edge) ─► call actor ─► voice agent ─► providers
//! SIP/RTP:  sip::proto, rtp::proto      transports::sip_rtp    call::actor   call::voice   STT, LLM, TTS
//! Twilio:   transports::twilio::media   transports::ws          (one task     (VAD, turn-
//! browser:  transports::browser         transports::ws           per call)     taking)
//!
//! call::actor: select! { leg event | CallCommand | second leg | voice event | deadline }
//!   leg: 16 kHz frames in (decoded by the leg), audio out queued on the leg and
//!   paced on its own media clock (RTP: one packet per ptime), flush on barge-in.
//! ```
//!
//! ## Module map
//! Imports run one way, top to bottom:
//! `main`/[`app`]/[`simulate`] → [`http`] → [`call`] → ([`transports`], [`agent`], [`pipeline`], [`contact_center`]) →
//! ([`sip`], [`rtp`], [`providers`], [`store`], [`events`]), with [`config`], [`ids`] and
//! [`observability`] usable everywhere.
//!
//! | module | owns |
//! |---|---|
//! | [`app`] | start order, the root cancellation token, graceful shutdown |
//! | [`config`] | `sip-config/skald.yaml`, validated with file:line errors |
//! | [`http`] | health, metrics, access control (tokens, roles, login), the OpenAPI document, `/api/v1/calls` (supervise, transfer, recording), `/api/v1/queues`, `/api/v1/agents`, the live event stream `/api/v1/events`, talk in the browser, the Twilio webhook and status callback, the Media Streams WebSocket, `/api/v1/context`, the control page `/agent/gui` (axum) |
//! | [`call`] | one actor per call whatever its transport ([`call::actor`]: the caller's leg and a second one for warm and bridged transfers, queue waiting, supervision and the supervisors' dial-in), [`call::command::CallCommand`], the live-call registry, DID routing, the built-in applications, the voice agent's turn-taking ([`call::voice`]), transfers with the call context ([`call::transfer`]), the contact center's run loop ([`call::contact`]) |
//! | [`transports`] | call legs ([`transports::leg::Leg`]: 16 kHz frames, DTMF, hold, hang-up, transfer): SIP/RTP ([`transports::sip_rtp`], the call layer's only way to [`sip`] and [`rtp`]), Twilio Media Streams and the browser microphone over WebSocket ([`transports::ws`]); Twilio webhook signatures, TwiML and the REST client |
//! | [`contact_center`] | queues with hold music and position announcements, human agents' presence, routing to human and AI members, the supervisors' keypad dialog (pure), `sip-config/queues.yaml` |
//! | [`agent`] | the YAML flow agent: intents, slots, templates, transitions (pure); the call context and its SIP header codec |
//! | [`pipeline`] | the internal audio format (16 kHz mono PCM16), frames, Silero VAD, turn detection, answering-machine detection, sentence aggregation, the mixer, WAV prompts and recordings |
//! | [`providers`] | STT/LLM/TTS traits; the local models (Moonshine, Piper, ONNX Runtime, `skald models fetch`); cloud providers (Deepgram, ElevenLabs, OpenAI TTS, OpenAI-compatible and Anthropic LLMs) with failover |
//! | [`events`] | the in-process bus of live call events (`skald.events.v1`) |
//! | [`sip`] | SIP messages (own RFC 3261 parser), SDP offer/answer, transactions, dialogs, REFER/NOTIFY (RFC 3515), digest auth, the registrar (RFC 3261 §10.3), UDP/TCP |
//! | [`rtp`] | RTP/RTCP session, jitter buffer, RFC 4733 DTMF, G.711, resampling, port pairs |
//! | [`store`] | call records, transcript turns, call events (SQLite by default, PostgreSQL by URL) |
//! | [`observability`] | tracing, Prometheus metrics, PII redaction |
//! | [`simulate`] | `skald simulate`: a caller simulator that calls a running skald (SIP or Media Streams), plays a scenario and scores the agent |
//!
//! ## The run-loop contract (sans-IO cores)
//! Protocol logic ([`sip::proto`], [`rtp::proto`]) is synchronous and never
//! reads the clock: every input carries `now: Instant`, and after each input
//! the caller drains `poll_output()` until it returns a timeout, then sleeps
//! until that deadline or the next input, whichever comes first. Sockets,
//! tasks and the clock live only in the `driver` modules and the call actor.
//!
//! ## Panic policy
//! Network input never panics: malformed SIP gets a 400 (or is dropped when no
//! response is possible), malformed RTP is counted and dropped. A panic in one
//! call actor ends that call only; the registry notices and writes the record.
#![warn(missing_docs)]

pub mod agent;
pub mod app;
pub mod call;
pub mod config;
pub mod contact_center;
pub mod events;
pub mod http;
pub mod ids;
pub mod observability;
pub mod pipeline;
pub mod providers;
pub mod rtp;
pub mod simulate;
pub mod sip;
pub mod store;
pub mod transports;
#[cfg(test)]
mod test_clock;
