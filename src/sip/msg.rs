//! SIP messages (RFC 3261 §7, §20, §25): skald's own types, parser and
//! serializer.
//!
//! This is the only module allowed to know which parser sits underneath, so
//! it can be swapped without touching the rest of skald. rsip 0.4 was the
//! first choice, but measured against the RFC 4475 torture messages it rejects
//! valid requests (line folding in `wsinv`, unknown methods in `intmeth` and
//! `esc02`, long values in `longreq`, `;` in the user part of `semiuri`),
//! mis-parses `esc01`'s Request-URI, and cannot represent an unknown method at
//! all (so a UAS could not answer 501). The parser here is therefore skald's
//! own, written from the RFC 3261 §25 grammar with the liberal choices RFC
//! 4475 allows; the test `rsip_rejects_valid_torture_messages` keeps that
//! finding checked.
//!
//! Parsing happens in two steps:
//! 1. framing: start line, header fields (line folding undone, §7.3.1), body
//!    cut at `Content-Length`;
//! 2. validation of the headers the transaction and dialog layers rely on
//!    (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length, Contact,
//!    Route/Record-Route, Date), so that every typed accessor on a parsed
//!    message succeeds afterwards.
//!
//! Errors distinguish a datagram to drop ([`MsgError::Unparseable`]) from a
//! request whose start line parsed but whose headers are bad
//! ([`MsgError::Rejected`]): the core answers that one statelessly with the
//! status and reason it carries (400, or 505 for another SIP version).
//!
//! Network input never panics here: no indexing, only checked slicing at
//! ASCII delimiters.

use std::fmt;

/// Upper bound for a SIP message skald accepts (bytes); larger ones are
/// dropped (UDP) or close the connection (TCP).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// The RFC 3261 magic cookie that starts every §17 branch parameter.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Errors of the SIP message codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// Nothing but whitespace (a CRLF keep-alive, RFC 5626 §4.4.1).
    #[error("empty message")]
    Empty,
    /// The start line could not be parsed: the message must be dropped.
    #[error("unparseable message: {0}")]
    Unparseable(String),
    /// A response with a malformed status line or header: dropped (RFC 3261
    /// §18.1.2 and RFC 4475 `bigcode`, `scalarlg`).
    #[error("malformed response: {0}")]
    BadResponse(String),
    /// A request whose start line parsed but which is malformed: answer it
    /// statelessly with `status` (400, or 505 for another SIP version) and
    /// `reason` when it carries a Via, else drop it.
    #[error("{status} {reason}")]
    Rejected {
        /// What parsed of the request (headers as received).
        request: Box<Request>,
        /// Status code to answer.
        status: u16,
        /// Reason phrase saying what is wrong.
        reason: String,
    },
    /// A header value does not follow its grammar (typed accessors on
    /// messages built locally).
    #[error("bad {header} header: {reason}")]
    BadHeader {
        /// Header name.
        header: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// SIP request methods (RFC 3261 and extensions). Method names are
/// case-sensitive (§7.1): `invite` is an unknown method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// OPTIONS (RFC 3261).
    Options,
    /// REGISTER (RFC 3261).
    Register,
    /// REFER (RFC 3515).
    Refer,
    /// NOTIFY (RFC 6665).
    Notify,
    /// INFO (RFC 6086).
    Info,
    /// UPDATE (RFC 3311).
    Update,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other token.
    Other(String),
}

/// An ordered list of header fields as received: name as written (compact
/// forms kept), value with line folding replaced by one space and outer
/// whitespace trimmed. Lookups are case-insensitive and accept compact forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, String)>,
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method of the Request-Line.
    pub method: Method,
    /// Request-URI as written.
    pub uri: String,
    /// Header fields in order.
    pub headers: Headers,
    /// Body bytes (exactly `Content-Length` long once parsed).
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase (UTF-8, may be empty).
    pub reason: String,
    /// Header fields in order.
    pub headers: Headers,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipMessage {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// A URI parameter or header parameter: `name` or `name=value`.
pub type Param = (String, Option<String>);

/// A URI (RFC 3261 §19.1). SIP and SIPS URIs are split into parts; other
/// schemes (`tel:`, `soap.beep:` …) keep their text in `opaque`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// Scheme, lower case (`sip`, `sips`, `tel` …).
    pub scheme: String,
    /// User part (escaped as written), without password.
    pub user: Option<String>,
    /// Host (IPv6 references keep their brackets); empty for opaque URIs.
    pub host: String,
    /// Port, when written.
    pub port: Option<u16>,
    /// URI parameters in order.
    pub params: Vec<Param>,
    /// Escaped headers after `?`, as written.
    pub headers: Option<String>,
    /// The full text, as written.
    pub raw: String,
}

/// A `name-addr` or `addr-spec` with header parameters (From, To, Contact,
/// Route, Record-Route; RFC 3261 §20.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted (quoted-pair escapes kept as written).
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `lr` …) in order.
    pub params: Vec<Param>,
}

/// One Via value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token, upper case (`UDP`, `TCP` …).
    pub transport: String,
    /// sent-by host.
    pub host: String,
    /// sent-by port, when written.
    pub port: Option<u16>,
    /// Via parameters in order (`branch`, `received`, `rport` …).
    pub params: Vec<Param>,
}

/// A CSeq value (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, < 2**31 when skald generates it, any u32 accepted.
    pub seq: u32,
    /// Method.
    pub method: Method,
}

// ---------------------------------------------------------------- Method

impl Method {
    /// Maps a method token (case-sensitive) to a method.
    pub fn parse(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------- Headers

/// Expands a compact header name (RFC 3261 §7.3.3 and extensions).
pub fn canonical_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes().first().map(|b| b.to_ascii_lowercase()) {
        Some(b'i') => "Call-ID",
        Some(b'm') => "Contact",
        Some(b'e') => "Content-Encoding",
        Some(b'l') => "Content-Length",
        Some(b'c') => "Content-Type",
        Some(b'f') => "From",
        Some(b's') => "Subject",
        Some(b'k') => "Supported",
        Some(b't') => "To",
        Some(b'v') => "Via",
        Some(b'o') => "Event",
        Some(b'r') => "Refer-To",
        Some(b'b') => "Referred-By",
        Some(b'u') => "Allow-Events",
        Some(b'x') => "Session-Expires",
        _ => name,
    }
}

fn same_name(a: &str, b: &str) -> bool {
    canonical_name(a).eq_ignore_ascii_case(canonical_name(b))
}

impl Headers {
    /// An empty list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Inserts a field before all others (e.g. a new top Via).
    pub fn push_front(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.insert(0, (name.into(), value.into()));
    }

    /// Removes every field called `name` (compact forms included).
    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| !same_name(n, name));
    }

    /// Replaces every field called `name` by one field with `value`, kept at
    /// the position of the first one (or appended).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.fields.iter().position(|(n, _)| same_name(n, name)) {
            Some(pos) => {
                if let Some(slot) = self.fields.get_mut(pos) {
                    slot.1 = value;
                }
                let mut seen = false;
                self.fields.retain(|(n, _)| {
                    if !same_name(n, name) {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
            }
            None => self.push(name.to_string(), value),
        }
    }

    /// First value of `name` (case-insensitive, compact forms accepted).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// All field values of `name`, in order (one per header line).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// All comma-separated values of `name` across its header lines (Via,
    /// Route, Contact, Allow …), split outside quotes and angle brackets.
    pub fn list<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        self.get_all(name).flat_map(split_commas).collect()
    }

    /// Whether a field called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All fields (name as written, value) in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Call-ID value.
    pub fn call_id(&self) -> Option<&str> {
        self.get("Call-ID")
    }

    /// CSeq, parsed.
    pub fn cseq(&self) -> Result<CSeq, MsgError> {
        let v = self.get("CSeq").ok_or_else(|| missing("CSeq"))?;
        CSeq::parse(v)
    }

    /// The topmost Via value, parsed.
    pub fn top_via(&self) -> Result<Via, MsgError> {
        let v = self.list("Via").into_iter().next().ok_or_else(|| missing("Via"))?;
        Via::parse(v)
    }

    /// All Via values, parsed, topmost first.
    pub fn vias(&self) -> Result<Vec<Via>, MsgError> {
        self.list("Via").into_iter().map(Via::parse).collect()
    }

    /// From, parsed.
    pub fn from(&self) -> Result<NameAddr, MsgError> {
        NameAddr::parse(self.get("From").ok_or_else(|| missing("From"))?)
    }

    /// To, parsed.
    pub fn to(&self) -> Result<NameAddr, MsgError> {
        NameAddr::parse(self.get("To").ok_or_else(|| missing("To"))?)
    }

    /// First Contact, parsed (`None` when absent or `*`).
    pub fn contact(&self) -> Option<NameAddr> {
        self.list("Contact")
            .into_iter()
            .next()
            .and_then(|v| NameAddr::parse(v).ok())
    }

    /// Route values, parsed, in order.
    pub fn routes(&self) -> Result<Vec<NameAddr>, MsgError> {
        self.list("Route").into_iter().map(NameAddr::parse).collect()
    }

    /// Record-Route values, parsed, in order.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, MsgError> {
        self.list("Record-Route").into_iter().map(NameAddr::parse).collect()
    }

    /// Max-Forwards (0..=255), when present and valid.
    pub fn max_forwards(&self) -> Option<u8> {
        self.get("Max-Forwards").and_then(parse_digits).and_then(|n| u8::try_from(n).ok())
    }

    /// Content-Type value, when present.
    pub fn content_type(&self) -> Option<&str> {
        self.get("Content-Type")
    }

    /// Option tags of all `name` fields (Require, Supported …), trimmed.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.list(name)
            .into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    }
}

fn missing(header: &'static str) -> MsgError {
    MsgError::BadHeader { header, reason: "missing".into() }
}

// ---------------------------------------------------------------- Request / Response

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, uri: impl Into<String>) -> Request {
        Request { method, uri: uri.into(), headers: Headers::new(), body: Vec::new() }
    }

    /// Serializes with a correct Content-Length (any existing one replaced).
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("{} {} SIP/2.0", self.method, self.uri);
        serialize(&start, &self.headers, &self.body)
    }

    /// The Request-URI, parsed.
    pub fn parsed_uri(&self) -> Result<Uri, MsgError> {
        Uri::parse(&self.uri)
    }

    /// Body as UTF-8 text, if it is.
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

impl Response {
    /// A response with no headers and no body.
    pub fn new(status: u16, reason: impl Into<String>) -> Response {
        Response { status, reason: reason.into(), headers: Headers::new(), body: Vec::new() }
    }

    /// A response to `req` per RFC 3261 §8.2.6: Via (all, in order), From,
    /// To, Call-ID, CSeq copied, plus Timestamp for 100 (§8.2.6.1). Add the
    /// To tag with [`Response::set_to_tag`].
    pub fn for_request(req: &Request, status: u16, reason: &str) -> Response {
        let mut resp = Response::new(status, reason);
        for (name, value) in req.headers.iter() {
            let keep = ["Via", "From", "To", "Call-ID", "CSeq"]
                .iter()
                .any(|h| same_name(name, h))
                || (status == 100 && same_name(name, "Timestamp"));
            if keep {
                resp.headers.push(canonical_name(name).to_string(), value.to_string());
            }
        }
        resp
    }

    /// Adds `;tag=tag` to To unless it already has a tag (§8.2.6.2).
    pub fn set_to_tag(&mut self, tag: &str) {
        let Some(to) = self.headers.get("To") else { return };
        if NameAddr::parse(to).ok().and_then(|n| n.tag().map(str::to_string)).is_some() {
            return;
        }
        let value = format!("{to};tag={tag}");
        self.headers.set("To", value);
    }

    /// Serializes with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("SIP/2.0 {} {}", self.status, self.reason);
        serialize(&start, &self.headers, &self.body)
    }

    /// Body as UTF-8 text, if it is.
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

impl SipMessage {
    /// Header fields of either kind.
    pub fn headers(&self) -> &Headers {
        match self {
            SipMessage::Request(r) => &r.headers,
            SipMessage::Response(r) => &r.headers,
        }
    }

    /// Serializes either kind.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SipMessage::Request(r) => r.to_bytes(),
            SipMessage::Response(r) => r.to_bytes(),
        }
    }
}

fn serialize(start: &str, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(256 + headers.len() * 40);
    out.push_str(start);
    out.push_str("\r\n");
    for (name, value) in headers.iter() {
        if same_name(name, "Content-Length") {
            continue;
        }
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A cheap look at a message for metrics and logs: the request method, or
/// for a response its CSeq method and status. `None` when neither parses.
pub fn summary(bytes: &[u8]) -> Option<(String, Option<u16>)> {
    let line = first_line(bytes)?;
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let status: u16 = rest.get(..3)?.parse().ok()?;
        let head_end = find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
        let head = std::str::from_utf8(bytes.get(..head_end)?).ok()?;
        let method = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("CSeq"))
            .and_then(|(_, v)| v.split_whitespace().nth(1))
            .unwrap_or("?");
        return Some((method.to_string(), Some(status)));
    }
    let method = line.split(' ').next()?;
    (!method.is_empty() && method.chars().all(is_token_char)).then(|| (method.to_string(), None))
}

/// Default reason phrase for a status code (RFC 3261 §21).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        603 => "Decline",
        _ => match status / 100 {
            1 => "Session Progress",
            2 => "OK",
            3 => "Redirect",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

// ---------------------------------------------------------------- parsing

/// Parses one SIP message from a datagram or a framed stream message.
///
/// Leading CRLFs are skipped (§7.5). The body is cut at `Content-Length`;
/// bytes after it are ignored (a second message in one datagram, RFC 4475
/// `dblreq`). Errors: see [`MsgError`].
pub fn parse(bytes: &[u8]) -> Result<SipMessage, MsgError> {
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(MsgError::Unparseable("message too large".into()));
    }
    let start = bytes.iter().position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'));
    let Some(start) = start else { return Err(MsgError::Empty) };
    let bytes = bytes.get(start..).unwrap_or_default();
    let (head, body, has_blank_line) = match find(bytes, b"\r\n\r\n") {
        Some(pos) => (
            bytes.get(..pos).unwrap_or_default(),
            bytes.get(pos + 4..).unwrap_or_default(),
            true,
        ),
        None => (bytes, &[][..], false),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return match first_line(bytes) {
            Some(line) if !line.starts_with("SIP/") => {
                reject_or_drop(line, Headers::new(), "header is not UTF-8")
            }
            _ => Err(MsgError::Unparseable("header is not UTF-8".into())),
        };
    };
    let mut lines = head.split("\r\n");
    let start_line = lines.next().unwrap_or_default();
    let (headers, header_error) = parse_header_lines(lines);
    if start_line.starts_with("SIP/") {
        let (status, reason) = parse_status_line(start_line)?;
        if let Some(e) = header_error {
            return Err(MsgError::BadResponse(e));
        }
        let mut resp = Response { status, reason, headers, body: Vec::new() };
        resp.body = cut_body(&resp.headers, body).map_err(MsgError::BadResponse)?;
        validate_common(&resp.headers).map_err(MsgError::BadResponse)?;
        return Ok(SipMessage::Response(resp));
    }
    let (method, uri) = parse_request_line(start_line, &headers)?;
    let mut req = Request { method, uri, headers, body: Vec::new() };
    let reject = |req: Request, reason: String| MsgError::Rejected {
        request: Box::new(req),
        status: 400,
        reason,
    };
    if let Some(e) = header_error {
        return Err(reject(req, e));
    }
    if !has_blank_line {
        return Err(reject(req, "no empty line after the headers".into()));
    }
    match cut_body(&req.headers, body) {
        Ok(b) => req.body = b,
        Err(e) => return Err(reject(req, e)),
    }
    if let Err(e) = validate_request(&req) {
        return Err(reject(req, e));
    }
    Ok(SipMessage::Request(req))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn first_line(bytes: &[u8]) -> Option<&str> {
    let end = find(bytes, b"\r\n").unwrap_or(bytes.len());
    std::str::from_utf8(bytes.get(..end)?).ok()
}

/// Splits header lines, undoing line folding (§7.3.1). Returns the headers
/// and the first syntax error met, if any.
fn parse_header_lines<'a>(lines: impl Iterator<Item = &'a str>) -> (Headers, Option<String>) {
    let mut headers = Headers::new();
    let mut error = None;
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            match headers.fields.last_mut() {
                Some((_, value)) => {
                    let cont = line.trim();
                    if !cont.is_empty() {
                        if !value.is_empty() {
                            value.push(' ');
                        }
                        value.push_str(cont);
                    }
                }
                None => {
                    error.get_or_insert_with(|| "folded line before the first header".to_string());
                }
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            error.get_or_insert_with(|| format!("header line without colon: `{}`", clip(line)));
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.chars().all(is_token_char) {
            error.get_or_insert_with(|| format!("bad header name `{}`", clip(name)));
            continue;
        }
        headers.push(name.to_string(), value.trim().to_string());
    }
    (headers, error)
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

fn parse_status_line(line: &str) -> Result<(u16, String), MsgError> {
    let rest = line.strip_prefix("SIP/2.0 ").ok_or_else(|| {
        MsgError::BadResponse(format!("bad status line `{}`", clip(line)))
    })?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 {
        return Err(MsgError::BadResponse(format!("bad status code `{}`", clip(code))));
    }
    let status = parse_digits(code)
        .filter(|c| (100..=699).contains(c))
        .ok_or_else(|| MsgError::BadResponse(format!("bad status code `{code}`")))?;
    Ok((status as u16, reason.to_string()))
}

/// Parses `Method SP Request-URI SP SIP-Version`. A line that starts with a
/// method token but is otherwise malformed is `Rejected` with 400 (or 505
/// for another version); anything else is `Unparseable`.
fn parse_request_line(line: &str, headers: &Headers) -> Result<(Method, String), MsgError> {
    let method_token = line.split(' ').next().unwrap_or_default();
    if method_token.is_empty() || !method_token.chars().all(is_token_char) {
        return Err(MsgError::Unparseable(format!("bad start line `{}`", clip(line))));
    }
    let method = Method::parse(method_token);
    let rejected = |status: u16, reason: String, uri: &str| MsgError::Rejected {
        request: Box::new(Request {
            method: method.clone(),
            uri: uri.to_string(),
            headers: headers.clone(),
            body: Vec::new(),
        }),
        status,
        reason,
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let version = parts.last().copied().unwrap_or_default();
    let looks_like_sip = line.trim_end().ends_with("SIP/2.0")
        || version.get(..4).is_some_and(|v| v.eq_ignore_ascii_case("SIP/"));
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        if !looks_like_sip {
            return Err(MsgError::Unparseable(format!("bad start line `{}`", clip(line))));
        }
        let uri = parts.get(1).copied().unwrap_or_default();
        return Err(rejected(400, "Malformed Request-Line (extra whitespace)".into(), uri));
    }
    let uri = parts.get(1).copied().unwrap_or_default();
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        if version.get(..4).is_some_and(|v| v.eq_ignore_ascii_case("SIP/")) {
            return Err(rejected(505, "Version Not Supported".into(), uri));
        }
        return Err(MsgError::Unparseable(format!("bad SIP version `{}`", clip(version))));
    }
    match Uri::parse(uri) {
        Ok(u) if u.headers.is_some() => {
            Err(rejected(400, "Bad Request-URI: escaped headers".into(), uri))
        }
        Ok(_) => Ok((method, uri.to_string())),
        Err(e) => Err(rejected(400, format!("Bad Request-URI: {}", reason_of(&e)), uri)),
    }
}

fn reason_of(e: &MsgError) -> String {
    match e {
        MsgError::BadHeader { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

fn reject_or_drop(line: &str, headers: Headers, reason: &str) -> Result<SipMessage, MsgError> {
    match parse_request_line(line, &headers) {
        Ok((method, uri)) => Err(MsgError::Rejected {
            request: Box::new(Request { method, uri, headers, body: Vec::new() }),
            status: 400,
            reason: reason.to_string(),
        }),
        Err(e) => Err(e),
    }
}

/// Cuts the body at Content-Length (§18.3; §20.14).
fn cut_body(headers: &Headers, body: &[u8]) -> Result<Vec<u8>, String> {
    let values: Vec<&str> = headers.get_all("Content-Length").collect();
    match values.as_slice() {
        [] => Ok(body.to_vec()),
        [one] => {
            let len = parse_digits(one)
                .ok_or_else(|| format!("bad Content-Length `{}`", clip(one)))?;
            let len = usize::try_from(len).map_err(|_| "Content-Length too large".to_string())?;
            body.get(..len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "Content-Length larger than the body".to_string())
        }
        _ => Err("more than one Content-Length".into()),
    }
}

/// Checks shared by requests and responses.
fn validate_common(h: &Headers) -> Result<(), String> {
    for name in ["Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Type"] {
        if h.get_all(name).count() > 1 {
            return Err(format!("more than one {name}"));
        }
    }
    for name in ["Call-ID", "CSeq", "From", "To", "Via"] {
        if !h.contains(name) {
            return Err(format!("missing {name}"));
        }
    }
    let call_id = h.call_id().unwrap_or_default();
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err("bad Call-ID".into());
    }
    h.cseq().map_err(|e| format!("bad CSeq: {}", reason_of(&e)))?;
    h.vias().map_err(|e| format!("bad Via: {}", reason_of(&e)))?;
    h.from().map_err(|e| format!("bad From: {}", reason_of(&e)))?;
    h.to().map_err(|e| format!("bad To: {}", reason_of(&e)))?;
    Ok(())
}

/// Extra checks on requests (§8.2.2 syntax parts; RFC 4475 §3.1.2).
fn validate_request(req: &Request) -> Result<(), String> {
    let h = &req.headers;
    validate_common(h)?;
    let cseq = h.cseq().map_err(|e| reason_of(&e))?;
    // An unknown method with a mismatching CSeq (RFC 4475 `mismatch02`) is
    // left to the core, which answers 501 (preferred over 400).
    let unknown = matches!(req.method, Method::Other(_));
    if cseq.method != req.method && !unknown {
        return Err("CSeq method does not match the Request-Line".into());
    }
    if let Some(mf) = h.get("Max-Forwards")
        && parse_digits(mf).is_none_or(|n| n > 255) {
            return Err(format!("bad Max-Forwards `{}`", clip(mf)));
        }
    for v in h.list("Contact") {
        if v.trim() != "*" {
            NameAddr::parse(v).map_err(|e| format!("bad Contact: {}", reason_of(&e)))?;
        }
    }
    h.routes().map_err(|e| format!("bad Route: {}", reason_of(&e)))?;
    h.record_routes().map_err(|e| format!("bad Record-Route: {}", reason_of(&e)))?;
    if let Some(date) = h.get("Date")
        && !date.ends_with(" GMT") {
            return Err("Date not in GMT".into());
        }
    Ok(())
}

/// Parses an unsigned decimal of at most 10 digits (leading zeros allowed).
fn parse_digits(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// RFC 3261 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// Splits a header value at commas that are outside quoted strings and
/// angle brackets.
fn split_commas(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quotes, mut escaped, mut depth, mut start) = (false, false, 0i32, 0usize);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => depth += 1,
            '>' if !in_quotes => depth -= 1,
            ',' if !in_quotes && depth <= 0 => {
                out.push(value.get(start..i).unwrap_or_default().trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value.get(start..).unwrap_or_default().trim());
    out
}

/// Splits `;`-separated parameters outside quoted strings.
fn split_semis(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_quotes, mut escaped, mut start) = (false, false, 0usize);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => {
                out.push(value.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value.get(start..).unwrap_or_default());
    out
}

/// Parses `;name[=value]` header/Via parameters (LWS allowed around `;` and
/// `=`). `text` starts after the first `;`.
fn parse_params(text: &str, header: &'static str) -> Result<Vec<Param>, MsgError> {
    let bad = |reason: String| MsgError::BadHeader { header, reason };
    let mut params = Vec::new();
    for p in split_semis(text) {
        let p = p.trim();
        if p.is_empty() {
            return Err(bad("empty parameter".into()));
        }
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p, None),
        };
        if name.is_empty() || !name.chars().all(is_token_char) {
            return Err(bad(format!("bad parameter name `{}`", clip(name))));
        }
        if let Some(v) = value {
            let ok = if v.starts_with('"') {
                v.len() >= 2 && v.ends_with('"')
            } else {
                !v.is_empty() && v.chars().all(|c| is_token_char(c) || "[]:".contains(c))
            };
            if !ok {
                return Err(bad(format!("bad value for parameter `{}`", clip(name))));
            }
        }
        params.push((name.to_string(), value.map(str::to_string)));
    }
    Ok(params)
}

fn find_param<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

// ---------------------------------------------------------------- Uri

impl Uri {
    /// Parses a URI. SIP/SIPS URIs are split (§19.1.1); whitespace, `<`,
    /// `>` and `"` are rejected anywhere (RFC 4475 `ltgtruri`, `lwsruri`).
    pub fn parse(text: &str) -> Result<Uri, MsgError> {
        let bad = |reason: &str| MsgError::BadHeader { header: "URI", reason: reason.to_string() };
        if text.is_empty() {
            return Err(bad("empty URI"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c)) {
            return Err(bad("illegal character in URI"));
        }
        let (scheme, rest) = text.split_once(':').ok_or_else(|| bad("no scheme"))?;
        let mut sc = scheme.chars();
        let scheme_ok = sc.next().is_some_and(|c| c.is_ascii_alphabetic())
            && sc.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return Err(bad("bad scheme"));
        }
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" {
            if rest.is_empty() {
                return Err(bad("empty URI after scheme"));
            }
            return Ok(Uri {
                scheme,
                user: None,
                host: String::new(),
                port: None,
                params: Vec::new(),
                headers: None,
                raw: text.to_string(),
            });
        }
        let (userinfo, hostpart) = match rest.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let user = match userinfo {
            Some(u) => {
                let user = u.split_once(':').map_or(u, |(user, _password)| user);
                if user.is_empty() {
                    return Err(bad("empty user"));
                }
                Some(user.to_string())
            }
            None => None,
        };
        let (hostpart, headers) = match hostpart.split_once('?') {
            Some((h, hd)) => (h, Some(hd.to_string())),
            None => (hostpart, None),
        };
        let (hostport, params_text) = match hostpart.split_once(';') {
            Some((hp, p)) => (hp, Some(p)),
            None => (hostpart, None),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad("bad host or port"))?;
        let params = match params_text {
            Some(p) => parse_uri_params(p).ok_or_else(|| bad("bad URI parameter"))?,
            None => Vec::new(),
        };
        Ok(Uri { scheme, user, host, port, params, headers, raw: text.to_string() })
    }

    /// A URI parameter: `Some(None)` for a flag like `lr`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// `transport` parameter, lower case.
    pub fn transport(&self) -> Option<String> {
        self.param("transport").flatten().map(str::to_ascii_lowercase)
    }

    /// Whether this is a SIP or SIPS URI.
    pub fn is_sip(&self) -> bool {
        self.scheme == "sip" || self.scheme == "sips"
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

fn parse_uri_params(text: &str) -> Option<Vec<Param>> {
    let mut out = Vec::new();
    for p in text.split(';') {
        if p.is_empty() {
            return None;
        }
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (p, None),
        };
        if n.is_empty() {
            return None;
        }
        out.push((n.to_string(), v));
    }
    Some(out)
}

/// Splits `host[:port]`, with IPv6 references in brackets.
fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let text = text.trim();
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        let host = text.get(..=end)?;
        let rest = text.get(end + 1..)?;
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return None,
        };
        (host, port)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let host = host.trim();
    if host.is_empty()
        || !host.chars().all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c))
    {
        return None;
    }
    let port = match port {
        Some(p) => Some(parse_digits(p).and_then(|n| u16::try_from(n).ok())?),
        None => None,
    };
    Some((host.to_string(), port))
}

// ---------------------------------------------------------------- NameAddr

impl NameAddr {
    /// Parses one `name-addr` / `addr-spec` with parameters (RFC 3261 §25:
    /// `(name-addr / addr-spec) *(SEMI param)`). Rejects an unterminated
    /// quote (RFC 4475 `quotbal`), spaces inside `<>` (`badaspec`), unquoted
    /// non-token display names (`baddn`) and an addr-spec carrying `?`
    /// headers or `,` (`regbadct`).
    pub fn parse(text: &str) -> Result<NameAddr, MsgError> {
        let bad = |reason: &str| MsgError::BadHeader { header: "name-addr", reason: reason.into() };
        let text = text.trim();
        let (display, uri_text, after) = if let Some(rest) = text.strip_prefix('"') {
            let (display, rest) = take_quoted(rest).ok_or_else(|| bad("unterminated quote"))?;
            let rest = rest.trim_start();
            let inner = rest.strip_prefix('<').ok_or_else(|| bad("no <URI> after display name"))?;
            let (uri, after) = inner.split_once('>').ok_or_else(|| bad("no closing >"))?;
            (Some(display), uri, after)
        } else if let Some(lt) = text.find('<') {
            let display = text.get(..lt).unwrap_or_default().trim();
            if !display.split_whitespace().all(|w| w.chars().all(is_token_char)) {
                return Err(bad("unquoted display name with non-token characters"));
            }
            let inner = text.get(lt + 1..).unwrap_or_default();
            let (uri, after) = inner.split_once('>').ok_or_else(|| bad("no closing >"))?;
            let display = (!display.is_empty()).then(|| display.to_string());
            (display, uri, after)
        } else {
            let (uri, after) = match text.find(';') {
                Some(pos) => (text.get(..pos).unwrap_or_default().trim_end(), text.get(pos..).unwrap_or_default()),
                None => (text, ""),
            };
            if uri.contains('?') || uri.contains(',') {
                return Err(bad("addr-spec with headers must be in <>"));
            }
            (None, uri, after)
        };
        let uri = Uri::parse(uri_text)?;
        let after = after.trim();
        let params = if after.is_empty() {
            Vec::new()
        } else {
            let rest = after.strip_prefix(';').ok_or_else(|| bad("junk after URI"))?;
            parse_params(rest, "name-addr")?
        };
        Ok(NameAddr { display, uri, params })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        find_param(&self.params, "tag").flatten()
    }

    /// A header parameter (`Some(None)` for a flag).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{d}\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// Reads a quoted string body (after the opening quote); returns the inner
/// text (escapes kept) and the rest after the closing quote.
fn take_quoted(text: &str) -> Option<(String, &str)> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => return Some((text.get(..i)?.to_string(), text.get(i + 1..)?)),
            _ => {}
        }
    }
    None
}

// ---------------------------------------------------------------- Via

impl Via {
    /// Parses one Via value: `SIP / 2.0 / transport LWS sent-by *(;param)`
    /// with LWS allowed around `/` (RFC 4475 `wsinv`).
    pub fn parse(text: &str) -> Result<Via, MsgError> {
        let bad = |reason: &str| MsgError::BadHeader { header: "Via", reason: reason.into() };
        let (head, params_text) = match text.split_once(';') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        };
        let mut parts = head.splitn(3, '/');
        let name = parts.next().unwrap_or_default().trim();
        let version = parts.next().unwrap_or_default().trim();
        let rest = parts.next().ok_or_else(|| bad("no transport"))?.trim_start();
        if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(bad("not SIP/2.0"));
        }
        let split = rest.find(char::is_whitespace).ok_or_else(|| bad("no sent-by"))?;
        let transport = rest.get(..split).unwrap_or_default();
        let sent_by = rest.get(split..).unwrap_or_default().trim();
        if transport.is_empty() || !transport.chars().all(is_token_char) {
            return Err(bad("bad transport"));
        }
        let (host, port) = split_host_port(sent_by).ok_or_else(|| bad("bad sent-by"))?;
        let params = match params_text {
            Some(p) => parse_params(p, "Via")?,
            None => Vec::new(),
        };
        Ok(Via { transport: transport.to_ascii_uppercase(), host, port, params })
    }

    /// `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        find_param(&self.params, "branch").flatten()
    }

    /// `received` parameter.
    pub fn received(&self) -> Option<&str> {
        find_param(&self.params, "received").flatten()
    }

    /// `rport` (RFC 3581): `Some(None)` when present without value.
    pub fn rport(&self) -> Option<Option<u16>> {
        find_param(&self.params, "rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// `host[:port]` as written in sent-by, lower case (§17.2.3 matching).
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{}", self.host.to_ascii_lowercase(), p),
            None => self.host.to_ascii_lowercase(),
        }
    }
}

// ---------------------------------------------------------------- CSeq

impl CSeq {
    /// Parses `1*DIGIT LWS Method` (leading zeros allowed, ≤ 2**32−1).
    pub fn parse(text: &str) -> Result<CSeq, MsgError> {
        let bad = |reason: &str| MsgError::BadHeader { header: "CSeq", reason: reason.into() };
        let mut it = text.split_whitespace();
        let num = it.next().ok_or_else(|| bad("empty"))?;
        let method = it.next().ok_or_else(|| bad("no method"))?;
        if it.next().is_some() {
            return Err(bad("junk after method"));
        }
        let seq = parse_digits(num)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("sequence number out of range"))?;
        if !method.chars().all(is_token_char) {
            return Err(bad("bad method"));
        }
        Ok(CSeq { seq, method: Method::parse(method) })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKabc;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@192.0.2.1>;tag=a1\r\n\
To: <sip:bob@192.0.2.4>\r\n\
Call-ID: c1@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.1:5070>\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\r\nEXTRA";

    fn req(text: &str) -> Request {
        match parse(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn parses_typed_fields() {
        let r = req(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.body, b"v=0\r");
        let h = &r.headers;
        assert_eq!(h.call_id(), Some("c1@192.0.2.1"));
        assert_eq!(h.cseq().unwrap(), CSeq { seq: 1, method: Method::Invite });
        let via = h.top_via().unwrap();
        assert_eq!(via.branch(), Some("z9hG4bKabc"));
        assert_eq!(via.sent_by(), "192.0.2.1:5070");
        assert_eq!(via.rport(), Some(None));
        let from = h.from().unwrap();
        assert_eq!(from.display.as_deref(), Some("Alice"));
        assert_eq!(from.tag(), Some("a1"));
        assert_eq!(from.uri.user.as_deref(), Some("alice"));
        assert_eq!(h.to().unwrap().tag(), None);
        assert_eq!(h.contact().unwrap().uri.port, Some(5070));
        let rr = h.record_routes().unwrap();
        assert_eq!(rr.len(), 2);
        assert_eq!(rr[1].uri.host, "p2.example.com");
        assert_eq!(rr[0].uri.param("lr"), Some(None));
        assert_eq!(h.max_forwards(), Some(70));
        assert_eq!(h.content_type(), Some("application/sdp"));
    }

    #[test]
    fn compact_forms_and_folding() {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:x@y>;tag=1\r\n\
t: sip:a@b\r\ni: cid\r\nCSeq: 2\r\n  OPTIONS\r\nl: 0\r\n\r\n";
        let r = req(text);
        assert_eq!(r.headers.call_id(), Some("cid"));
        assert_eq!(r.headers.cseq().unwrap().seq, 2);
        assert_eq!(r.headers.get("via"), Some("SIP/2.0/UDP h;branch=z9hG4bK1"));
    }

    #[test]
    fn response_for_request_copies_and_tags() {
        let r = req(INVITE);
        let mut resp = Response::for_request(&r, 180, "Ringing");
        resp.set_to_tag("b2");
        resp.set_to_tag("ignored");
        let bytes = resp.to_bytes();
        let SipMessage::Response(back) = parse(&bytes).unwrap() else { panic!() };
        assert_eq!(back.status, 180);
        assert_eq!(back.headers.to().unwrap().tag(), Some("b2"));
        assert_eq!(back.headers.from().unwrap().tag(), Some("a1"));
        assert_eq!(back.headers.get("Content-Length"), Some("0"));
        assert!(back.headers.get("Contact").is_none());
        assert_eq!(back.headers.call_id(), Some("c1@192.0.2.1"));
    }

    #[test]
    fn serialize_recomputes_content_length() {
        let mut r = Request::new(Method::Options, "sip:x@192.0.2.9");
        r.headers.push("Content-Length", "999");
        r.body = b"hello".to_vec();
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.contains("Content-Length: 5\r\n\r\nhello"), "{text}");
        assert!(!text.contains("999"));
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(parse(b"\r\n\r\n"), Err(MsgError::Empty));
        assert!(matches!(parse(b"garbage here"), Err(MsgError::Unparseable(_))));
        let missing_cseq = "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\n\r\n";
        match parse(missing_cseq.as_bytes()) {
            Err(MsgError::Rejected { status: 400, reason, .. }) => assert!(reason.contains("CSeq"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let v = "INVITE sip:a@b SIP/7.0\r\nVia: SIP/2.0/UDP h\r\n\r\n";
        assert!(matches!(parse(v.as_bytes()), Err(MsgError::Rejected { status: 505, .. })));
        assert!(matches!(parse(b"SIP/2.0 1000 Big\r\n\r\n"), Err(MsgError::BadResponse(_))));
    }

    #[test]
    fn uri_forms() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
        let u = Uri::parse("sip:[2001:db8::10]:5070;transport=TCP").unwrap();
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert!(Uri::parse("<sip:a@b>").is_err());
        assert!(Uri::parse("sip:a@b:99999").is_err());
        assert_eq!(Uri::parse("tel:+15550100").unwrap().scheme, "tel");
    }

    #[test]
    fn name_addr_grammar() {
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse("\"Watson\" < sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a@b>").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:x%3E").is_err());
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        assert_eq!(n.tag(), Some("323"));
        let n = NameAddr::parse("sip:a@b;tag = x").unwrap();
        assert_eq!(n.tag(), Some("x"));
    }

    /// rsip 0.4 rejects valid RFC 4475 messages; this is why the parser
    /// above is skald's own (see the module doc).
    #[test]
    fn rsip_rejects_valid_torture_messages() {
        let wsinv = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rfc4475/wsinv.dat"))
            .expect("torture file");
        assert!(parse(&wsinv).is_ok(), "{:?}", parse(&wsinv));
        let unfolded = String::from_utf8_lossy(&wsinv).replace("\r\n ", " ");
        assert!(rsip::SipMessage::try_from(unfolded.as_bytes()).is_err());
        let unknown = "FOO sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        assert!(rsip::SipMessage::try_from(unknown.as_bytes()).is_err());
    }
}
