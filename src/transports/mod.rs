//! Transports: each one a **leg** of a call ([`leg::Leg`]), an adapter
//! that turns its protocol into the pipeline's audio frames (16 kHz mono,
//! one ptime), DTMF and control events, and the call's output (audio,
//! flush, DTMF, hang-up, transfer) into its own wire actions.
//!
//! - [`sip_rtp`]: a SIP dialog and its RTP session (SDP offer/answer,
//!   re-INVITE and hold, jitter buffer, G.711, RFC 4733, REFER). The only
//!   way from the call layer to `sip` and `rtp`.
//! - [`livekit`]: the LiveKit server API (tokens, rooms, SIP trunks and
//!   dispatch rules, transfers, agent dispatch, webhooks).
//! - [`ws`]: the WebSocket edge shared by [`twilio`] Media Streams
//!   ([`twilio::leg`]) and the control page's microphone ([`browser`]).
//!
//! Each adapter's protocol core is sans-IO (messages in, messages out,
//! time as an argument); its leg is the IO edge that owns the sockets.
//! Transports never import `call` (DESIGN.md "Layout"): the call actor
//! drives legs, legs never drive calls.

pub mod browser;
pub mod leg;
pub mod livekit;
pub mod sip_rtp;
pub mod twilio;
pub mod ws;
