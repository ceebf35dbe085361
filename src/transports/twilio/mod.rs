//! Twilio Programmable Voice: how a Twilio number's calls reach skald.
//!
//! - [`signature`]: `X-Twilio-Signature` validation of webhooks (HMAC-SHA1
//!   over the public URL and the sorted POST parameters).
//! - [`twiml`]: TwiML answers (`<Connect><Stream>`, `<Dial><Sip>`,
//!   `<Say>` + `<Hangup>`) written with an XML writer.
//! - [`media`]: the bidirectional Media Streams WebSocket protocol
//!   (sans-IO): `connected`/`start`/`media`/`dtmf`/`mark`/`stop` in,
//!   paced `media`, `mark` and `clear` out.
//! - [`leg`]: a Media Stream as a call leg (the core with its µ-law codec;
//!   transfers by REST "Update a Call").
//! - [`rest`]: the REST API client (numbers, calls) for `skald twilio …`
//!   and `skald call --via twilio`.
//!
//! Sources: Twilio docs "Webhooks security", "TwiML Voice: `<Connect>`,
//! `<Stream>`, `<Dial>`, `<Sip>`", "Media Streams - WebSocket Messages", and the
//! REST API reference (IncomingPhoneNumber, Call resources).

pub mod leg;
pub mod media;
pub mod rest;
pub mod signature;
pub mod twiml;
