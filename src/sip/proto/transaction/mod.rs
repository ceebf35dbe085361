//! The four transaction state machines of RFC 3261 §17 (with the RFC 6026
//! "Accepted" state for INVITE 2xx), and transaction matching.
//!
//! Each machine is a plain struct without IO: inputs are messages and
//! `now`; outputs are [`TxOutput`] values the endpoint turns into
//! transmissions (to the address the transaction was bound to) and TU
//! notifications. `next_timeout()` says when to call `handle_timeout`.
//!
//! Matching:
//! * client side (§17.1.3): the branch of the response's top Via plus the
//!   CSeq method ([`ClientKey`]);
//! * server side (§17.2.3): the branch (with the `z9hG4bK` magic cookie),
//!   the sent-by of the top Via and the method, where ACK matches the INVITE
//!   it acknowledges ([`ServerKey`]). CANCEL forms its own transaction; the
//!   INVITE it cancels is found with [`ServerKey::cancelled_invite`].
//!   Requests without the magic cookie (RFC 2543) fall back to a key built
//!   from Request-URI, From tag, Call-ID, CSeq number and top Via.

mod client_invite;
mod client_non_invite;
mod server_invite;
mod server_non_invite;

pub use client_invite::{ClientInviteState, ClientInviteTx};
pub use client_non_invite::{ClientNonInviteState, ClientNonInviteTx};
pub use server_invite::{ServerInviteState, ServerInviteTx};
pub use server_non_invite::{ServerNonInviteState, ServerNonInviteTx};

use crate::sip::msg::{MAGIC_COOKIE, Method, MsgError, Request, Response};

/// What a transaction asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutput {
    /// Send these bytes to the transaction's peer (first send or a
    /// retransmission).
    Transmit(Vec<u8>),
    /// Client transactions: a response to hand to the TU.
    Response(Response),
    /// Timer B/F (client: no final response) or Timer H (server INVITE: no
    /// ACK for a non-2xx final response) fired.
    Timeout,
}

/// Server transaction key (§17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerKey {
    /// Top Via branch (or the RFC 2543 fallback identifier).
    pub branch: String,
    /// Top Via sent-by, lower case.
    pub sent_by: String,
    /// Method; ACK is stored as INVITE so it matches its INVITE.
    pub method: Method,
}

/// Client transaction key (§17.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// Branch skald put in its Via.
    pub branch: String,
    /// Method of the request (CSeq method of responses).
    pub method: Method,
}

impl ServerKey {
    /// The key of the server transaction `req` belongs to.
    ///
    /// Errors: the request has no parseable top Via.
    pub fn from_request(req: &Request) -> Result<ServerKey, MsgError> {
        let via = req.headers.top_via()?;
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        let branch = match via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) && b.len() > MAGIC_COOKIE.len() => b.to_string(),
            _ => {
                let from_tag = req.headers.from().ok().and_then(|f| f.tag().map(str::to_string));
                let seq = req.headers.cseq().map(|c| c.seq).unwrap_or_default();
                format!(
                    "rfc2543|{}|{}|{}|{}|{}",
                    req.uri,
                    from_tag.unwrap_or_default(),
                    req.headers.call_id().unwrap_or_default(),
                    seq,
                    via.branch().unwrap_or_default()
                )
            }
        };
        Ok(ServerKey { branch, sent_by: via.sent_by(), method })
    }

    /// For a CANCEL's key: the key of the INVITE it cancels (§9.2).
    pub fn cancelled_invite(&self) -> ServerKey {
        ServerKey { method: Method::Invite, ..self.clone() }
    }
}

impl ClientKey {
    /// The client transaction a response belongs to; `None` when its top
    /// Via has no branch or CSeq is unusable.
    pub fn from_response(resp: &Response) -> Option<ClientKey> {
        let via = resp.headers.top_via().ok()?;
        let branch = via.branch()?.to_string();
        let method = resp.headers.cseq().ok()?.method;
        Some(ClientKey { branch, method })
    }
}

/// The ACK a client INVITE transaction sends for a non-2xx final response
/// (§17.1.1.3): same Request-URI, top Via, From, Call-ID and CSeq number as
/// the INVITE, To from the response, the INVITE's Route set.
pub fn ack_for_non_2xx(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(via) = invite.headers.list("Via").first() {
        ack.headers.push("Via", via.to_string());
    }
    for route in invite.headers.get_all("Route") {
        ack.headers.push("Route", route.to_string());
    }
    ack.headers.push("Max-Forwards", "70");
    if let Some(from) = invite.headers.get("From") {
        ack.headers.push("From", from.to_string());
    }
    if let Some(to) = resp.headers.get("To") {
        ack.headers.push("To", to.to_string());
    }
    if let Some(cid) = invite.headers.call_id() {
        ack.headers.push("Call-ID", cid.to_string());
    }
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or_default();
    ack.headers.push("CSeq", format!("{seq} ACK"));
    ack
}

/// A retransmit timer: next deadline and the interval that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retransmit {
    pub(crate) at: std::time::Instant,
    pub(crate) interval: std::time::Duration,
}

/// Earliest of several optional deadlines.
pub(crate) fn earliest(items: &[Option<std::time::Instant>]) -> Option<std::time::Instant> {
    items.iter().flatten().min().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{SipMessage, parse};

    fn req(text: &str) -> Request {
        let Ok(SipMessage::Request(r)) = parse(text.as_bytes()) else { panic!("bad test request") };
        r
    }

    const HDRS: &str = "From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\n";

    #[test]
    fn ack_matches_its_invite_and_cancel_finds_it() {
        let invite = req(&format!("INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP Host:5060;branch=z9hG4bKx\r\n{HDRS}CSeq: 1 INVITE\r\n\r\n"));
        let ack = req(&format!("ACK sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP host:5060;branch=z9hG4bKx\r\n{HDRS}CSeq: 1 ACK\r\n\r\n"));
        let cancel = req(&format!("CANCEL sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP host:5060;branch=z9hG4bKx\r\n{HDRS}CSeq: 1 CANCEL\r\n\r\n"));
        let ki = ServerKey::from_request(&invite).unwrap();
        assert_eq!(ServerKey::from_request(&ack).unwrap(), ki);
        let kc = ServerKey::from_request(&cancel).unwrap();
        assert_ne!(kc, ki);
        assert_eq!(kc.cancelled_invite(), ki);
    }

    #[test]
    fn different_sent_by_is_a_different_transaction() {
        let a = req(&format!("OPTIONS sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bKx\r\n{HDRS}CSeq: 1 OPTIONS\r\n\r\n"));
        let b = req(&format!("OPTIONS sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h2;branch=z9hG4bKx\r\n{HDRS}CSeq: 1 OPTIONS\r\n\r\n"));
        assert_ne!(ServerKey::from_request(&a).unwrap(), ServerKey::from_request(&b).unwrap());
    }

    #[test]
    fn rfc2543_fallback_matches_ack() {
        let invite = req(&format!("INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n{HDRS}CSeq: 7 INVITE\r\n\r\n"));
        let ack = req("ACK sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=99\r\nCall-ID: c\r\nCSeq: 7 ACK\r\n\r\n");
        assert_eq!(ServerKey::from_request(&invite).unwrap(), ServerKey::from_request(&ack).unwrap());
    }
}
