//! LiveKit: the server API client (access tokens, Twirp services, webhook
//! verification) that bridges phone calls into LiveKit rooms, in cloud mode
//! (LiveKit Cloud) or on-prem (livekit-server with livekit-sip).
//!
//! - [`api`]: [`api::LiveKit`], one project (URL, API key and secret):
//!   access tokens with video, SIP and agent grants and participant
//!   attributes; RoomService (rooms, participants, attributes), SIP (inbound
//!   trunks, dispatch rules, `CreateSIPParticipant`,
//!   `TransferSIPParticipant` with headers) and AgentDispatch, as Twirp
//!   (`POST /twirp/livekit.<Service>/<Method>`, protobuf) through the
//!   official `livekit-api` crate; the idempotent SIP setup behind
//!   `skald livekit sip setup`.
//! - [`webhook`]: LiveKit's signed webhooks (a JWT whose `sha256` claim is
//!   the base64 SHA-256 of the body).
//!
//! Credentials come from the environment only (`LIVEKIT_API_KEY`,
//! `LIVEKIT_API_SECRET`), as LiveKit's own SDKs and `lk` read them; the URL
//! from `livekit.url` in the config or `LIVEKIT_URL`.
//!
//! Sources: LiveKit docs "Server APIs" (Twirp endpoints, authorization),
//! "Access tokens" (grants), "Webhooks", "SIP: dispatch rules, inbound
//! trunks, transfers".

pub mod api;
pub mod webhook;
