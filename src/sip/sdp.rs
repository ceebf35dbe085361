//! SDP (RFC 8866, formerly RFC 4566) parsing and offer/answer (RFC 3264)
//! for one audio stream.
//!
//! This module owns skald's whole SDP surface: a small parser for the lines
//! skald needs, and the three operations of the model:
//!
//! ```text
//!   peer offers ── answer(offer, local) ──► (answer SDP, Negotiated)
//!   skald offers ─ offer(local) ──► peer ── accept_answer(answer, local) ──► Negotiated
//! ```
//!
//! # Parser
//! Lines are `<type>=<value>`, ended by CRLF or a bare LF; blank lines are
//! skipped. The first line must be `v=0` and an `o=` line (6 fields) must be
//! present. Understood: `c=` (session or media level, `IN IP4`/`IN IP6`,
//! an optional `/ttl` suffix is dropped), `m=` (`<media> <port>[/<n>]
//! <proto> <fmt>…`), and the attributes `rtpmap`, `fmtp`, `ptime`,
//! `maxptime`, `sendrecv`, `sendonly`, `recvonly`, `inactive` (session or
//! media level; media level wins). Every other line and attribute is
//! ignored; an attribute whose value cannot be parsed is ignored too.
//! Structural errors (bad line shape, missing `v=`/`o=`, bad `c=`/`m=`
//! fields, payload types outside 0–127 on an RTP `m=` line) are
//! [`SdpError::Malformed`] (→ 400).
//!
//! # Answer rules (RFC 3264 §6)
//! * The first `m=audio` line with a non-zero port, an `RTP/AVP` or
//!   `RTP/AVPF` transport and a codec in common is accepted; every other
//!   `m=` line is answered with port 0 (rejected), so the answer has as
//!   many `m=` lines as the offer, in the same order.
//! * Codec: the first payload type in the OFFERER's order that maps to a
//!   codec in [`LocalMedia::codecs`]: static 0 = PCMU, 8 = PCMA (RFC 3551),
//!   or any payload type whose `a=rtpmap` is `PCMU/8000` / `PCMA/8000`
//!   (case-insensitive; an rtpmap overrides the static meaning). The answer
//!   lists only that codec (so the peer cannot switch codecs mid-call) plus
//!   `telephone-event/8000` with the offerer's payload type and `a=fmtp:<pt>
//!   0-16` (RFC 4733 §7.1.1: the events skald can receive), when both sides
//!   want DTMF.
//! * Direction (RFC 3264 §6.1), from skald's side: skald sends iff it wants
//!   to and the peer receives; skald receives iff it wants to and the peer
//!   sends. So offer `sendonly` → `recvonly`, `recvonly` → `sendonly`,
//!   `inactive` → `inactive`. A `c=` of `0.0.0.0` (or `::`) is the RFC 2543
//!   hold: the peer does not receive, so skald does not send; the address is
//!   still reported in [`Negotiated::remote_rtp`].
//! * Packetization: the offer's `a=ptime` when in 10–200 ms, else its
//!   `a=maxptime` if below skald's default, else [`LocalMedia::ptime_ms`];
//!   the answer carries the chosen value.
//! * No `m=audio`, only rejected (port 0) or non-RTP/AVP audio streams, or
//!   no codec in common → [`SdpError::NotAcceptable`] (→ 488).
//!
//! # Generated SDP
//! CRLF line ends; `v=0`, `o=skald <id> <version> IN IP4|IP6 <ip>`,
//! `s=skald`, `c=`, `t=0 0`, `m=audio <port> RTP/AVP <pts>`, `a=rtpmap`
//! lines, `a=fmtp` for telephone-event, `a=ptime`, the direction attribute.
//!
//! All functions are pure and total: any text returns a value or an error,
//! never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Payload type skald puts on telephone-event (RFC 4733) in its own offers.
pub const DTMF_PAYLOAD_TYPE: u8 = 101;

/// Audio codecs skald speaks on RTP (RFC 3551 static payload types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// G.711 µ-law, payload type 0, 8000 Hz.
    Pcmu,
    /// G.711 A-law, payload type 8, 8000 Hz.
    Pcma,
}

/// Media direction attribute (RFC 3264 §6.1), from skald's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (default).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

/// What skald offers or accepts for its side of the stream.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    /// IP for `c=` and `o=` (advertised address for NAT).
    pub ip: IpAddr,
    /// Local RTP port for `m=audio`.
    pub port: u16,
    /// Codecs in preference order (used in offers; answers follow the
    /// offerer's order among these). Should not be empty.
    pub codecs: Vec<AudioCodec>,
    /// Packetization time, ms (`a=ptime`), used when the peer states none.
    pub ptime_ms: u32,
    /// Offer/accept telephone-event/8000 (RFC 4733).
    pub dtmf: bool,
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` version; bump on every new offer/answer in the dialog.
    pub session_version: u64,
    /// Direction skald wants (SendRecv unless putting the peer on hold).
    pub direction: Direction,
}

/// Result of a successful negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Chosen codec.
    pub codec: AudioCodec,
    /// RTP payload type for the codec (the number the peer used).
    pub payload_type: u8,
    /// Payload type of telephone-event, when both sides support it.
    pub dtmf_payload_type: Option<u8>,
    /// Where to send RTP (c= address + m= port). `0.0.0.0` means hold (RFC 2543 style).
    pub remote_rtp: SocketAddr,
    /// Packetization time to send with, ms.
    pub ptime_ms: u32,
    /// skald's resulting direction (peer sendonly → skald recvonly, …).
    pub direction: Direction,
}

/// Why an SDP could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    /// Not parseable SDP (→ 400).
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No audio stream or no codec in common (→ 488 Not Acceptable Here).
    #[error("no acceptable media: {0}")]
    NotAcceptable(String),
}

impl AudioCodec {
    /// The RFC 3551 static payload type (0 PCMU, 8 PCMA).
    pub fn static_payload_type(self) -> u8 {
        match self {
            AudioCodec::Pcmu => 0,
            AudioCodec::Pcma => 8,
        }
    }

    /// The `a=rtpmap` encoding name (`PCMU`, `PCMA`).
    pub fn encoding_name(self) -> &'static str {
        match self {
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
        }
    }

    /// RTP clock rate, Hz (8000).
    pub fn clock_rate(self) -> u32 {
        8000
    }
}

impl Direction {
    /// Whether media flows out from this side.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether media flows in to this side.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The attribute name (`sendrecv`, `sendonly`, `recvonly`, `inactive`).
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    fn parse(name: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.attribute().eq_ignore_ascii_case(name))
    }
}

/// Builds an answer to a remote offer (rules in the module doc).
///
/// Errors: [`SdpError::Malformed`] when the offer does not parse or the
/// accepted stream has no `c=`; [`SdpError::NotAcceptable`] when no audio
/// stream can be accepted.
pub fn answer(offer: &str, local: &LocalMedia) -> Result<(String, Negotiated), SdpError> {
    let session = parse(offer)?;
    let mut reason = String::from("no m=audio line");
    let mut chosen = None;
    for (index, media) in session.media.iter().enumerate() {
        if !media.kind.eq_ignore_ascii_case("audio") {
            continue;
        }
        match accept_stream(&session, media, local) {
            Ok(negotiated) => {
                chosen = Some((index, negotiated));
                break;
            }
            Err(SdpError::NotAcceptable(why)) => reason = why,
            Err(e) => return Err(e),
        }
    }
    let Some((chosen_index, negotiated)) = chosen else {
        return Err(SdpError::NotAcceptable(reason));
    };

    let mut sdp = header(local);
    for (index, media) in session.media.iter().enumerate() {
        if index == chosen_index {
            push_audio(&mut sdp, local, &media.proto, &negotiated);
        } else {
            let fmts = if media.formats.is_empty() {
                "0".to_owned()
            } else {
                media.formats.join(" ")
            };
            sdp.push_str(&format!("m={} 0 {} {}\r\n", media.kind, media.proto, fmts));
        }
    }
    Ok((sdp, negotiated))
}

/// Builds an offer for skald's side: one `m=audio` line with
/// [`LocalMedia::codecs`] (static payload types, duplicates dropped) and,
/// when [`LocalMedia::dtmf`], telephone-event on [`DTMF_PAYLOAD_TYPE`].
pub fn offer(local: &LocalMedia) -> String {
    let mut codecs: Vec<AudioCodec> = Vec::with_capacity(local.codecs.len());
    for &codec in &local.codecs {
        if !codecs.contains(&codec) {
            codecs.push(codec);
        }
    }
    let mut pts: Vec<String> = codecs
        .iter()
        .map(|c| c.static_payload_type().to_string())
        .collect();
    if local.dtmf {
        pts.push(DTMF_PAYLOAD_TYPE.to_string());
    }
    let mut sdp = header(local);
    sdp.push_str(&format!(
        "m=audio {} RTP/AVP {}\r\n",
        local.port,
        pts.join(" ")
    ));
    for codec in &codecs {
        sdp.push_str(&format!(
            "a=rtpmap:{} {}/{}\r\n",
            codec.static_payload_type(),
            codec.encoding_name(),
            codec.clock_rate()
        ));
    }
    if local.dtmf {
        push_dtmf(&mut sdp, DTMF_PAYLOAD_TYPE);
    }
    sdp.push_str(&format!("a=ptime:{}\r\n", local.ptime_ms));
    sdp.push_str(&format!("a={}\r\n", local.direction.attribute()));
    sdp
}

/// Accepts the peer's answer to an offer made from `local` (by [`offer`]):
/// the answer's first `m=` line must be the accepted audio stream.
///
/// Errors: [`SdpError::Malformed`] when the answer does not parse or has no
/// `c=` for the stream; [`SdpError::NotAcceptable`] when the peer rejected
/// the stream (port 0), answered with another media type, or chose no codec
/// from `local.codecs`.
pub fn accept_answer(answer: &str, local: &LocalMedia) -> Result<Negotiated, SdpError> {
    let session = parse(answer)?;
    let Some(media) = session.media.first() else {
        return Err(SdpError::NotAcceptable("answer has no m= line".into()));
    };
    if !media.kind.eq_ignore_ascii_case("audio") {
        return Err(SdpError::NotAcceptable(format!(
            "answer's first m= line is `{}`, not audio",
            media.kind
        )));
    }
    accept_stream(&session, media, local)
}

// ---------------------------------------------------------------------------
// Negotiation and generation.

/// Negotiates one audio stream of a parsed offer or answer.
fn accept_stream(
    session: &Session,
    media: &Media,
    local: &LocalMedia,
) -> Result<Negotiated, SdpError> {
    if media.port == 0 {
        return Err(SdpError::NotAcceptable(
            "audio stream rejected (port 0)".into(),
        ));
    }
    let proto = media.proto.to_ascii_uppercase();
    if proto != "RTP/AVP" && proto != "RTP/AVPF" {
        return Err(SdpError::NotAcceptable(format!(
            "audio transport `{}` not supported (RTP/AVP only)",
            media.proto
        )));
    }
    let payload_types = media.payload_types()?;
    let Some((codec, payload_type)) = payload_types.iter().find_map(|&pt| {
        media
            .codec_of(pt)
            .filter(|c| local.codecs.contains(c))
            .map(|c| (c, pt))
    }) else {
        return Err(SdpError::NotAcceptable(format!(
            "no common codec (offered payload types: {})",
            media.formats.join(" ")
        )));
    };
    let dtmf_payload_type = if local.dtmf {
        media.telephone_event(&payload_types)
    } else {
        None
    };
    let ip = match media.connection.as_ref().or(session.connection.as_ref()) {
        None => {
            return Err(SdpError::Malformed(
                "no c= line for the audio stream".into(),
            ));
        }
        Some(Connection::Ip(ip)) => *ip,
        Some(Connection::Other(addr)) => {
            return Err(SdpError::NotAcceptable(format!(
                "c= address `{addr}` is not an IP literal"
            )));
        }
    };
    let peer = media
        .direction
        .or(session.direction)
        .unwrap_or(Direction::SendRecv);
    let peer_receives = peer.receives() && !ip.is_unspecified();
    let direction = Direction::from_flags(
        local.direction.sends() && peer_receives,
        local.direction.receives() && peer.sends(),
    );
    let ptime_ms = match (media.ptime, media.maxptime) {
        (Some(p), _) if (10..=200).contains(&p) => p,
        (_, Some(max)) if (10..local.ptime_ms).contains(&max) => max,
        _ => local.ptime_ms,
    };
    Ok(Negotiated {
        codec,
        payload_type,
        dtmf_payload_type,
        remote_rtp: SocketAddr::new(ip, media.port),
        ptime_ms,
        direction,
    })
}

/// `v=`, `o=`, `s=`, `c=`, `t=` lines for skald's side.
fn header(local: &LocalMedia) -> String {
    let addr_type = if local.ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=skald {id} {ver} IN {t} {ip}\r\ns=skald\r\nc=IN {t} {ip}\r\nt=0 0\r\n",
        id = local.session_id,
        ver = local.session_version,
        t = addr_type,
        ip = local.ip,
    )
}

/// The accepted audio `m=` section of an answer.
fn push_audio(sdp: &mut String, local: &LocalMedia, proto: &str, n: &Negotiated) {
    let mut m = format!("m=audio {} {} {}", local.port, proto, n.payload_type);
    if let Some(pt) = n.dtmf_payload_type {
        m.push_str(&format!(" {pt}"));
    }
    sdp.push_str(&m);
    sdp.push_str("\r\n");
    sdp.push_str(&format!(
        "a=rtpmap:{} {}/{}\r\n",
        n.payload_type,
        n.codec.encoding_name(),
        n.codec.clock_rate()
    ));
    if let Some(pt) = n.dtmf_payload_type {
        push_dtmf(sdp, pt);
    }
    sdp.push_str(&format!("a=ptime:{}\r\n", n.ptime_ms));
    sdp.push_str(&format!("a={}\r\n", n.direction.attribute()));
}

fn push_dtmf(sdp: &mut String, pt: u8) {
    sdp.push_str(&format!(
        "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"
    ));
}

// ---------------------------------------------------------------------------
// Parser.

/// The parts of a session description skald uses.
#[derive(Debug, Default)]
struct Session {
    /// Session-level `c=`.
    connection: Option<Connection>,
    /// Session-level direction attribute.
    direction: Option<Direction>,
    /// `m=` sections in order.
    media: Vec<Media>,
}

/// One `m=` section.
#[derive(Debug)]
struct Media {
    /// Media type (`audio`, `video`, …).
    kind: String,
    /// Transport port; 0 = rejected/disabled stream.
    port: u16,
    /// Transport protocol (`RTP/AVP`, …).
    proto: String,
    /// Format list as written (payload type numbers for RTP).
    formats: Vec<String>,
    /// Media-level `c=`.
    connection: Option<Connection>,
    /// `a=rtpmap` lines.
    rtpmaps: Vec<RtpMap>,
    /// `a=ptime`, ms.
    ptime: Option<u32>,
    /// `a=maxptime`, ms.
    maxptime: Option<u32>,
    /// Media-level direction attribute.
    direction: Option<Direction>,
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug)]
struct RtpMap {
    /// Payload type.
    pt: u8,
    /// Encoding name as written.
    encoding: String,
    /// Clock rate, Hz.
    clock_rate: u32,
    /// Channel count, when given.
    channels: Option<u32>,
}

/// A `c=` address.
#[derive(Debug, Clone)]
enum Connection {
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// Anything else (FQDN, unknown address type), kept for the error.
    Other(String),
}

impl Media {
    /// Payload type numbers of the format list.
    fn payload_types(&self) -> Result<Vec<u8>, SdpError> {
        self.formats
            .iter()
            .map(|f| {
                f.parse::<u8>()
                    .ok()
                    .filter(|pt| *pt <= 127)
                    .ok_or_else(|| SdpError::Malformed(format!("payload type `{f}` not in 0-127")))
            })
            .collect()
    }

    fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.pt == pt)
    }

    /// The codec a payload type stands for here, if skald knows it.
    fn codec_of(&self, pt: u8) -> Option<AudioCodec> {
        let Some(map) = self.rtpmap(pt) else {
            return match pt {
                0 => Some(AudioCodec::Pcmu),
                8 => Some(AudioCodec::Pcma),
                _ => None,
            };
        };
        if map.clock_rate != 8000 || map.channels.is_some_and(|c| c != 1) {
            return None;
        }
        [AudioCodec::Pcmu, AudioCodec::Pcma]
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(&map.encoding))
    }

    /// The first listed payload type mapped to `telephone-event/8000`.
    fn telephone_event(&self, payload_types: &[u8]) -> Option<u8> {
        payload_types.iter().copied().find(|&pt| {
            self.rtpmap(pt).is_some_and(|m| {
                m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
            })
        })
    }
}

/// Parses the SDP text (see the module doc for what is understood).
fn parse(text: &str) -> Result<Session, SdpError> {
    let mut session = Session::default();
    let mut seen_version = false;
    let mut seen_origin = false;
    for (number, raw) in text.split('\n').enumerate() {
        let line = raw.trim_end_matches(['\r', ' ', '\t']);
        if line.is_empty() {
            continue;
        }
        let bytes = line.as_bytes();
        let (Some(&kind), Some(b'=')) = (bytes.first(), bytes.get(1)) else {
            return Err(malformed(number, "not a `<type>=<value>` line"));
        };
        if !kind.is_ascii_lowercase() {
            return Err(malformed(number, "type is not a lowercase letter"));
        }
        // Both bytes are ASCII, so index 2 is a char boundary.
        let value = &line[2..];
        if !seen_version {
            if kind != b'v' || value != "0" {
                return Err(malformed(number, "SDP must start with v=0"));
            }
            seen_version = true;
            continue;
        }
        match kind {
            b'o' => {
                if value.split_ascii_whitespace().count() != 6 {
                    return Err(malformed(number, "o= needs 6 fields"));
                }
                seen_origin = true;
            }
            b'c' => {
                let connection = parse_connection(value).map_err(|why| malformed(number, why))?;
                match session.media.last_mut() {
                    Some(media) => media.connection = Some(connection),
                    None => session.connection = Some(connection),
                }
            }
            b'm' => {
                let media = parse_media(value).map_err(|why| malformed(number, why))?;
                session.media.push(media);
            }
            b'a' => parse_attribute(&mut session, value),
            _ => {}
        }
    }
    if !seen_version {
        return Err(SdpError::Malformed("empty SDP".into()));
    }
    if !seen_origin {
        return Err(SdpError::Malformed("no o= line".into()));
    }
    Ok(session)
}

fn malformed(line_index: usize, why: &str) -> SdpError {
    SdpError::Malformed(format!("line {}: {why}", line_index + 1))
}

/// `IN IP4 <addr>[/ttl[/n]]` or `IN IP6 <addr>[/n]`.
fn parse_connection(value: &str) -> Result<Connection, &'static str> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(net), Some(addr_type), Some(addr)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("c= needs 3 fields");
    };
    if !net.eq_ignore_ascii_case("IN") {
        return Err("c= network type is not IN");
    }
    let host = addr.split('/').next().unwrap_or(addr);
    let ip = if addr_type.eq_ignore_ascii_case("IP4") {
        host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else if addr_type.eq_ignore_ascii_case("IP6") {
        host.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        None
    };
    Ok(ip.map_or_else(|| Connection::Other(addr.to_owned()), Connection::Ip))
}

/// `<media> <port>[/<count>] <proto> <fmt> …`.
fn parse_media(value: &str) -> Result<Media, &'static str> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("m= needs media, port and proto");
    };
    let port = port
        .split('/')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or("m= port is not a number in 0-65535")?;
    Ok(Media {
        kind: kind.to_owned(),
        port,
        proto: proto.to_owned(),
        formats: fields.map(str::to_owned).collect(),
        connection: None,
        rtpmaps: Vec::new(),
        ptime: None,
        maxptime: None,
        direction: None,
    })
}

/// Applies one `a=` line to the current media section (or the session).
fn parse_attribute(session: &mut Session, value: &str) {
    let (name, arg) = match value.split_once(':') {
        Some((name, arg)) => (name, Some(arg.trim())),
        None => (value, None),
    };
    if let Some(direction) = Direction::parse(name) {
        match session.media.last_mut() {
            Some(media) => media.direction = Some(direction),
            None => session.direction = Some(direction),
        }
        return;
    }
    let (Some(media), Some(arg)) = (session.media.last_mut(), arg) else {
        return;
    };
    if name.eq_ignore_ascii_case("rtpmap") {
        if let Some(map) = parse_rtpmap(arg) {
            media.rtpmaps.push(map);
        }
    } else if name.eq_ignore_ascii_case("ptime") {
        media.ptime = parse_ms(arg);
    } else if name.eq_ignore_ascii_case("maxptime") {
        media.maxptime = parse_ms(arg);
    }
    // a=fmtp and everything else: nothing skald needs from the peer.
}

/// `<pt> <encoding>/<clock>[/<channels>]`.
fn parse_rtpmap(arg: &str) -> Option<RtpMap> {
    let (pt, rest) = arg.split_once(|c: char| c.is_ascii_whitespace())?;
    let pt = pt.parse::<u8>().ok().filter(|pt| *pt <= 127)?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.to_owned();
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    Some(RtpMap {
        pt,
        encoding,
        clock_rate,
        channels,
    })
}

/// A millisecond value; a fractional part (`20.0`) is dropped.
fn parse_ms(arg: &str) -> Option<u32> {
    arg.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn local() -> LocalMedia {
        LocalMedia {
            ip: "203.0.113.5".parse().unwrap(),
            port: 30_000,
            codecs: vec![AudioCodec::Pcmu, AudioCodec::Pcma],
            ptime_ms: 20,
            dtmf: true,
            session_id: 42,
            session_version: 1,
            direction: Direction::SendRecv,
        }
    }

    fn crlf(lines: &str) -> String {
        lines.lines().map(|l| format!("{}\r\n", l.trim())).collect()
    }

    const TWILIO_OFFER: &str = "v=0
        o=root 1041402047 1041402047 IN IP4 54.172.60.1
        s=Twilio Media Gateway
        c=IN IP4 54.172.60.1
        t=0 0
        m=audio 13450 RTP/AVP 0 8 101
        a=rtpmap:0 PCMU/8000
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-16
        a=ptime:20
        a=maxptime:150
        a=sendrecv";

    const TELNYX_OFFER: &str = "v=0
        o=- 3849264371 3849264371 IN IP4 192.76.120.10
        s=Telnyx
        c=IN IP4 192.76.120.10
        t=0 0
        m=audio 20766 RTP/AVP 8 0 101
        a=rtpmap:8 PCMA/8000
        a=rtpmap:0 PCMU/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-16
        a=ptime:20
        a=rtcp:20767 IN IP4 192.76.120.10
        a=ssrc:1737093123 cname:tnx
        a=sendrecv";

    const BARESIP_OFFER: &str = "v=0\n\
        o=- 1263466851 3063541862 IN IP4 192.168.1.23\n\
        s=-\n\
        c=IN IP4 192.168.1.23\n\
        t=0 0\n\
        a=tool:baresip 3.10.1\n\
        m=audio 10048 RTP/AVP 96 9 0 8 101\n\
        b=AS:128\n\
        a=rtpmap:96 opus/48000/2\n\
        a=fmtp:96 stereo=1;sprop-stereo=1\n\
        a=rtpmap:9 G722/8000\n\
        a=rtpmap:0 PCMU/8000\n\
        a=rtpmap:8 PCMA/8000\n\
        a=rtpmap:101 telephone-event/8000\n\
        a=fmtp:101 0-15\n\
        a=ptime:20\n\
        a=sendrecv\n\
        a=rtcp-mux\n\
        a=label:1\n";

    const SIPP_UAC_OFFER: &str = "v=0
        o=user1 53655765 2353687637 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 6000 RTP/AVP 0
        a=rtpmap:0 PCMU/8000";

    const SIPP_UAC_PCAP_OFFER: &str = "v=0
        o=user1 53655765 2353687637 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 6000 RTP/AVP 8 101
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-11,16";

    const G729_OFFER: &str = "v=0
        o=- 1 1 IN IP4 198.51.100.7
        s=-
        c=IN IP4 198.51.100.7
        t=0 0
        m=audio 4000 RTP/AVP 18
        a=rtpmap:18 G729/8000
        a=fmtp:18 annexb=no";

    fn audio_offer(m_line: &str, extra: &str) -> String {
        crlf(&format!(
            "v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\n{m_line}\n{extra}"
        ))
    }

    #[test]
    fn twilio_offer_exact_answer() {
        let (sdp, n) = answer(&crlf(TWILIO_OFFER), &local()).unwrap();
        assert_eq!(
            n,
            Negotiated {
                codec: AudioCodec::Pcmu,
                payload_type: 0,
                dtmf_payload_type: Some(101),
                remote_rtp: "54.172.60.1:13450".parse().unwrap(),
                ptime_ms: 20,
                direction: Direction::SendRecv,
            }
        );
        assert_eq!(
            sdp,
            "v=0\r\no=skald 42 1 IN IP4 203.0.113.5\r\ns=skald\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
             m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        );
    }

    #[test]
    fn telnyx_offer_keeps_offerer_order() {
        let (sdp, n) = answer(&crlf(TELNYX_OFFER), &local()).unwrap();
        assert_eq!(
            (n.codec, n.payload_type, n.dtmf_payload_type),
            (AudioCodec::Pcma, 8, Some(101))
        );
        assert!(
            sdp.contains("m=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"),
            "{sdp}"
        );
        assert!(!sdp.contains("PCMU"));
    }

    #[test]
    fn baresip_offer_with_lf_only_picks_pcmu() {
        let (sdp, n) = answer(BARESIP_OFFER, &local()).unwrap();
        assert_eq!(n.codec, AudioCodec::Pcmu);
        assert_eq!(n.payload_type, 0);
        assert_eq!(n.dtmf_payload_type, Some(101));
        assert_eq!(n.remote_rtp, "192.168.1.23:10048".parse().unwrap());
        assert!(sdp.contains("m=audio 30000 RTP/AVP 0 101\r\n"));
        assert!(!sdp.contains("opus") && !sdp.contains("G722"));
        assert!(sdp.lines().all(|l| !l.is_empty()) && sdp.ends_with("\r\n"));
    }

    #[test]
    fn sipp_uac_offer_without_dtmf() {
        let (sdp, n) = answer(&crlf(SIPP_UAC_OFFER), &local()).unwrap();
        assert_eq!(n.codec, AudioCodec::Pcmu);
        assert_eq!(n.dtmf_payload_type, None);
        assert_eq!(n.remote_rtp, "127.0.0.1:6000".parse().unwrap());
        assert!(sdp.contains("m=audio 30000 RTP/AVP 0\r\n"));
        assert!(!sdp.contains("telephone-event"));
    }

    #[test]
    fn sipp_uac_pcap_offer() {
        let (sdp, n) = answer(&crlf(SIPP_UAC_PCAP_OFFER), &local()).unwrap();
        assert_eq!(
            (n.codec, n.payload_type, n.dtmf_payload_type),
            (AudioCodec::Pcma, 8, Some(101))
        );
        assert!(sdp.contains("a=fmtp:101 0-16\r\n"));
    }

    #[test]
    fn g729_only_is_not_acceptable() {
        let err = answer(&crlf(G729_OFFER), &local()).unwrap_err();
        assert!(matches!(err, SdpError::NotAcceptable(_)), "{err}");
    }

    #[test]
    fn codec_choice_follows_offerer_among_local_codecs() {
        let offer = audio_offer("m=audio 4000 RTP/AVP 0 8", "");
        let mut l = local();
        l.codecs = vec![AudioCodec::Pcma];
        assert_eq!(answer(&offer, &l).unwrap().1.codec, AudioCodec::Pcma);
        l.codecs = vec![AudioCodec::Pcma, AudioCodec::Pcmu];
        assert_eq!(answer(&offer, &l).unwrap().1.codec, AudioCodec::Pcmu);
        l.codecs = vec![];
        assert!(matches!(
            answer(&offer, &l),
            Err(SdpError::NotAcceptable(_))
        ));
    }

    #[test]
    fn dynamic_rtpmap_payload_types() {
        let offer = audio_offer(
            "m=audio 4000 RTP/AVP 97 96 98",
            "a=rtpmap:97 PCMU/16000\na=rtpmap:96 pcma/8000\na=rtpmap:98 TELEPHONE-EVENT/8000",
        );
        let (sdp, n) = answer(&offer, &local()).unwrap();
        assert_eq!(
            (n.codec, n.payload_type, n.dtmf_payload_type),
            (AudioCodec::Pcma, 96, Some(98))
        );
        assert!(sdp.contains("m=audio 30000 RTP/AVP 96 98\r\na=rtpmap:96 PCMA/8000\r\n"));
        assert!(sdp.contains("a=rtpmap:98 telephone-event/8000\r\na=fmtp:98 0-16\r\n"));
        // An rtpmap overrides the static meaning of 0.
        let offer = audio_offer("m=audio 4000 RTP/AVP 0 8", "a=rtpmap:0 G729/8000");
        assert_eq!(answer(&offer, &local()).unwrap().1.codec, AudioCodec::Pcma);
        // telephone-event at 48 kHz is not RFC 4733 at 8 kHz.
        let offer = audio_offer(
            "m=audio 4000 RTP/AVP 0 100",
            "a=rtpmap:100 telephone-event/48000",
        );
        assert_eq!(answer(&offer, &local()).unwrap().1.dtmf_payload_type, None);
    }

    #[test]
    fn dtmf_disabled_locally() {
        let mut l = local();
        l.dtmf = false;
        let (sdp, n) = answer(&crlf(TWILIO_OFFER), &l).unwrap();
        assert_eq!(n.dtmf_payload_type, None);
        assert!(sdp.contains("m=audio 30000 RTP/AVP 0\r\n") && !sdp.contains("101"));
    }

    #[test]
    fn direction_mapping() {
        let cases = [
            ("sendrecv", Direction::SendRecv, Direction::SendRecv),
            ("sendonly", Direction::SendRecv, Direction::RecvOnly),
            ("recvonly", Direction::SendRecv, Direction::SendOnly),
            ("inactive", Direction::SendRecv, Direction::Inactive),
            ("sendrecv", Direction::SendOnly, Direction::SendOnly),
            ("sendonly", Direction::SendOnly, Direction::Inactive),
            ("recvonly", Direction::RecvOnly, Direction::Inactive),
            ("sendrecv", Direction::Inactive, Direction::Inactive),
        ];
        for (attr, ours, expected) in cases {
            let mut l = local();
            l.direction = ours;
            let (sdp, n) = answer(
                &audio_offer("m=audio 4000 RTP/AVP 0", &format!("a={attr}")),
                &l,
            )
            .unwrap();
            assert_eq!(n.direction, expected, "offer {attr}, local {ours:?}");
            assert!(sdp.ends_with(&format!("a={}\r\n", expected.attribute())));
        }
        // Session-level attribute applies; media level overrides it.
        let offer = crlf(
            "v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\na=sendonly\nm=audio 4000 RTP/AVP 0",
        );
        assert_eq!(
            answer(&offer, &local()).unwrap().1.direction,
            Direction::RecvOnly
        );
        let offer = format!("{offer}a=inactive\r\n");
        assert_eq!(
            answer(&offer, &local()).unwrap().1.direction,
            Direction::Inactive
        );
        // No attribute: sendrecv.
        let offer = audio_offer("m=audio 4000 RTP/AVP 0", "");
        assert_eq!(
            answer(&offer, &local()).unwrap().1.direction,
            Direction::SendRecv
        );
    }

    #[test]
    fn old_style_hold() {
        let offer = crlf(
            "v=0\no=- 1 2 IN IP4 198.51.100.7\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 4000 RTP/AVP 0",
        );
        let (sdp, n) = answer(&offer, &local()).unwrap();
        assert_eq!(n.remote_rtp, "0.0.0.0:4000".parse().unwrap());
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(sdp.contains("c=IN IP4 203.0.113.5\r\n") && sdp.ends_with("a=recvonly\r\n"));
    }

    #[test]
    fn ptime_rules() {
        let (sdp, n) = answer(
            &audio_offer("m=audio 4000 RTP/AVP 0", "a=ptime:30"),
            &local(),
        )
        .unwrap();
        assert_eq!(n.ptime_ms, 30);
        assert!(sdp.contains("a=ptime:30\r\n"));
        let n = answer(&audio_offer("m=audio 4000 RTP/AVP 0", ""), &local())
            .unwrap()
            .1;
        assert_eq!(n.ptime_ms, 20);
        let n = answer(
            &audio_offer("m=audio 4000 RTP/AVP 0", "a=maxptime:10"),
            &local(),
        )
        .unwrap()
        .1;
        assert_eq!(n.ptime_ms, 10);
        let n = answer(
            &audio_offer("m=audio 4000 RTP/AVP 0", "a=ptime:20.0"),
            &local(),
        )
        .unwrap()
        .1;
        assert_eq!(n.ptime_ms, 20);
        let n = answer(
            &audio_offer("m=audio 4000 RTP/AVP 0", "a=ptime:0"),
            &local(),
        )
        .unwrap()
        .1;
        assert_eq!(n.ptime_ms, 20);
    }

    #[test]
    fn rejected_or_missing_audio_is_not_acceptable() {
        let port0 = audio_offer("m=audio 0 RTP/AVP 0", "");
        assert!(matches!(
            answer(&port0, &local()),
            Err(SdpError::NotAcceptable(_))
        ));
        let video = audio_offer("m=video 5000 RTP/AVP 31", "");
        assert!(matches!(
            answer(&video, &local()),
            Err(SdpError::NotAcceptable(_))
        ));
        let no_media = crlf("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0");
        assert!(matches!(
            answer(&no_media, &local()),
            Err(SdpError::NotAcceptable(_))
        ));
        let srtp = audio_offer(
            "m=audio 4000 RTP/SAVP 0",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x",
        );
        assert!(matches!(
            answer(&srtp, &local()),
            Err(SdpError::NotAcceptable(_))
        ));
        let fqdn = crlf(
            "v=0\no=- 1 1 IN IP4 a\ns=-\nc=IN IP4 pbx.example.com\nt=0 0\nm=audio 4000 RTP/AVP 0",
        );
        assert!(matches!(
            answer(&fqdn, &local()),
            Err(SdpError::NotAcceptable(_))
        ));
    }

    #[test]
    fn other_streams_are_rejected_in_order() {
        let offer = audio_offer(
            "m=video 5000 RTP/AVP 31\nm=audio 0 RTP/AVP 8\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0",
            "",
        );
        let (sdp, n) = answer(&offer, &local()).unwrap();
        assert_eq!(n.remote_rtp.port(), 4000);
        let m_lines: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m_lines,
            [
                "m=video 0 RTP/AVP 31",
                "m=audio 0 RTP/AVP 8",
                "m=audio 30000 RTP/AVP 0",
                "m=audio 0 RTP/AVP 0"
            ]
        );
    }

    #[test]
    fn media_level_connection_and_ipv6() {
        let offer = crlf(
            "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\n\
             m=audio 4000 RTP/AVP 0\nc=IN IP6 2001:db8::2",
        );
        let mut l = local();
        l.ip = "2001:db8::5".parse().unwrap();
        let (sdp, n) = answer(&offer, &l).unwrap();
        assert_eq!(n.remote_rtp, "[2001:db8::2]:4000".parse().unwrap());
        assert!(sdp.contains("o=skald 42 1 IN IP6 2001:db8::5\r\n"));
        assert!(sdp.contains("c=IN IP6 2001:db8::5\r\n"));
        // Media-level c= without a session-level one, with a TTL suffix.
        let offer = crlf(
            "v=0\no=- 1 1 IN IP4 a\ns=-\nt=0 0\nm=audio 4000/2 RTP/AVP 0\nc=IN IP4 192.0.2.9/127",
        );
        assert_eq!(
            answer(&offer, &local()).unwrap().1.remote_rtp,
            "192.0.2.9:4000".parse().unwrap()
        );
    }

    #[test]
    fn malformed_offers() {
        let bad = [
            "",
            "\r\n\r\n",
            "o=- 1 1 IN IP4 1.2.3.4\r\n",
            "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
            "v=0\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\n",
            "v=0\r\no=- 1 IN IP4 1.2.3.4\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ngarbage\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nM=audio 4000 RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=ATM NSAP 1\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
            // No c= for the audio stream.
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
            // Payload type out of range.
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0 300\r\n",
        ];
        for text in bad {
            let err = answer(text, &local()).unwrap_err();
            assert!(matches!(err, SdpError::Malformed(_)), "{text:?}: {err}");
        }
    }

    #[test]
    fn offer_text_and_round_trip() {
        let l = local();
        let sdp = offer(&l);
        assert_eq!(
            sdp,
            "v=0\r\no=skald 42 1 IN IP4 203.0.113.5\r\ns=skald\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
             m=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        // A peer (another skald) answers it; skald accepts the answer.
        let mut peer = local();
        peer.ip = "198.51.100.20".parse().unwrap();
        peer.port = 40_000;
        peer.codecs = vec![AudioCodec::Pcma];
        peer.direction = Direction::RecvOnly;
        let (reply, theirs) = answer(&sdp, &peer).unwrap();
        assert_eq!(theirs.codec, AudioCodec::Pcma);
        assert_eq!(theirs.direction, Direction::RecvOnly);
        let ours = accept_answer(&reply, &l).unwrap();
        assert_eq!(
            ours,
            Negotiated {
                codec: AudioCodec::Pcma,
                payload_type: 8,
                dtmf_payload_type: Some(101),
                remote_rtp: "198.51.100.20:40000".parse().unwrap(),
                ptime_ms: 20,
                direction: Direction::SendOnly,
            }
        );
        // Hold offer: sendonly, no DTMF, one codec.
        let mut hold = local();
        hold.direction = Direction::SendOnly;
        hold.dtmf = false;
        hold.codecs = vec![AudioCodec::Pcmu, AudioCodec::Pcmu];
        hold.session_version = 2;
        let sdp = offer(&hold);
        assert!(sdp.contains("o=skald 42 2 IN IP4"));
        assert!(sdp.contains(
            "m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendonly\r\n"
        ));
    }

    #[test]
    fn accept_answer_errors() {
        let rejected = audio_offer("m=audio 0 RTP/AVP 0", "");
        assert!(matches!(
            accept_answer(&rejected, &local()),
            Err(SdpError::NotAcceptable(_))
        ));
        let g729 = audio_offer("m=audio 4000 RTP/AVP 18", "");
        assert!(matches!(
            accept_answer(&g729, &local()),
            Err(SdpError::NotAcceptable(_))
        ));
        let video = audio_offer("m=video 4000 RTP/AVP 31", "");
        assert!(matches!(
            accept_answer(&video, &local()),
            Err(SdpError::NotAcceptable(_))
        ));
        assert!(matches!(
            accept_answer("nonsense", &local()),
            Err(SdpError::Malformed(_))
        ));
        let mut l = local();
        l.codecs = vec![AudioCodec::Pcma];
        let pcmu = audio_offer("m=audio 4000 RTP/AVP 0", "");
        assert!(matches!(
            accept_answer(&pcmu, &l),
            Err(SdpError::NotAcceptable(_))
        ));
    }

    proptest! {
        #[test]
        fn random_text_never_panics(s in "\\PC{0,300}") {
            let _ = answer(&s, &local());
            let _ = accept_answer(&s, &local());
            let prefixed = format!("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n{s}");
            let _ = answer(&prefixed, &local());
            let _ = accept_answer(&prefixed, &local());
        }

        #[test]
        fn mutated_offers_never_panic(
            drop_line in 0usize..16,
            insert in "[a-z]=[ -~]{0,30}",
            at in 0usize..16,
        ) {
            let mut lines: Vec<&str> = TWILIO_OFFER.lines().map(str::trim).collect();
            if drop_line < lines.len() { lines.remove(drop_line); }
            let at = at.min(lines.len());
            lines.insert(at, insert.as_str());
            let text = lines.join("\r\n");
            if let Ok((sdp, _)) = answer(&text, &local()) {
                // Whatever skald answers, it can read back itself.
                prop_assert!(parse(&sdp).is_ok());
            }
        }
    }
}
