//! Dialog state (RFC 3261 §12): identification, sequence numbers, remote
//! target and route set, and construction/validation of in-dialog requests.
//!
//! ```text
//!   UAC: INVITE sent ──1xx with To tag──► Early ──2xx──► Confirmed ──BYE──► (gone)
//!   UAS: INVITE received, To tag chosen ──► Early ──2xx sent──► Confirmed
//!                                   └─ non-2xx final / CANCEL ──► (gone)
//! ```
//! A dialog is identified by Call-ID, local tag and remote tag (§12). The
//! route set comes from Record-Route: as received for the UAS (§12.1.1),
//! reversed for the UAC (§12.1.2). In-dialog requests use the remote target
//! (the peer's Contact) as Request-URI with the route set in Route when the
//! first route is a loose router (`lr`), or the strict-routing form
//! otherwise (§12.2.1.1). Incoming in-dialog requests must carry a CSeq
//! higher than the last one (§12.2.2), else 500.

use crate::sip::msg::{Method, NameAddr, Request, Response};

/// Errors creating a dialog or accepting an in-dialog request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// The message lacks a Contact (mandatory in INVITE and its 2xx, §8.1.1.8).
    #[error("missing Contact")]
    MissingContact,
    /// The response lacks the To tag that would identify the dialog.
    #[error("missing To tag")]
    MissingTag,
    /// A header needed for the dialog is malformed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The request's CSeq is not above the last remote CSeq (answer 500).
    #[error("CSeq {got} not above {last}")]
    CSeqOutOfOrder {
        /// CSeq of the request.
        got: u32,
        /// Highest CSeq seen from the peer.
        last: u32,
    },
}

/// Which side of the dialog skald is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// skald sent the INVITE.
    Uac,
    /// skald received the INVITE.
    Uas,
}

/// Dialog state per §12.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Which side skald is.
    pub role: Role,
    /// Call-ID.
    pub call_id: String,
    /// skald's tag.
    pub local_tag: String,
    /// The peer's tag (empty for an RFC 2543 peer without tags).
    pub remote_tag: String,
    /// skald's From/To header value, tag included.
    pub local_header: String,
    /// The peer's From/To header value, tag included.
    pub remote_header: String,
    /// CSeq of the last request skald sent in the dialog.
    pub local_seq: u32,
    /// Highest CSeq received from the peer.
    pub remote_seq: Option<u32>,
    /// The peer's Contact URI: Request-URI of in-dialog requests.
    pub remote_target: String,
    /// Route set (name-addr strings), in the order to put in Route.
    pub route_set: Vec<String>,
    /// Whether the dialog is confirmed (2xx sent/received).
    pub confirmed: bool,
}

impl Dialog {
    /// The UAS dialog for an incoming INVITE (§12.1.1); skald's To tag is
    /// `local_tag` and its first CSeq will be `local_seq + 1`.
    ///
    /// Errors: no Contact, malformed From/To/CSeq/Record-Route.
    pub fn uas(invite: &Request, local_tag: &str, local_seq: u32) -> Result<Dialog, DialogError> {
        let h = &invite.headers;
        let from = h.from().map_err(|_| DialogError::Malformed("From"))?;
        let to_value = h.get("To").ok_or(DialogError::Malformed("To"))?;
        let contact = h.contact().ok_or(DialogError::MissingContact)?;
        let cseq = h.cseq().map_err(|_| DialogError::Malformed("CSeq"))?;
        let route_set = h
            .record_routes()
            .map_err(|_| DialogError::Malformed("Record-Route"))?
            .iter()
            .map(|r| r.to_string())
            .collect();
        Ok(Dialog {
            role: Role::Uas,
            call_id: h.call_id().unwrap_or_default().to_string(),
            local_tag: local_tag.to_string(),
            remote_tag: from.tag().unwrap_or_default().to_string(),
            local_header: format!("{to_value};tag={local_tag}"),
            remote_header: h.get("From").unwrap_or_default().to_string(),
            local_seq,
            remote_seq: Some(cseq.seq),
            remote_target: contact.uri.raw,
            route_set,
            confirmed: false,
        })
    }

    /// The UAC dialog created by a response with a To tag to skald's INVITE
    /// (§12.1.2). A 1xx without Contact keeps the Request-URI as target.
    ///
    /// Errors: no To tag; a 2xx without Contact; malformed headers.
    pub fn uac(invite: &Request, resp: &Response) -> Result<Dialog, DialogError> {
        let h = &resp.headers;
        let to = h.to().map_err(|_| DialogError::Malformed("To"))?;
        let remote_tag = to.tag().ok_or(DialogError::MissingTag)?.to_string();
        let local_tag = invite
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_string))
            .ok_or(DialogError::Malformed("From"))?;
        let remote_target = match h.contact() {
            Some(c) => c.uri.raw,
            None if resp.status < 200 => invite.uri.clone(),
            None => return Err(DialogError::MissingContact),
        };
        let mut route_set: Vec<String> = h
            .record_routes()
            .map_err(|_| DialogError::Malformed("Record-Route"))?
            .iter()
            .map(|r| r.to_string())
            .collect();
        route_set.reverse();
        let local_seq = invite.headers.cseq().map(|c| c.seq).map_err(|_| DialogError::Malformed("CSeq"))?;
        Ok(Dialog {
            role: Role::Uac,
            call_id: invite.headers.call_id().unwrap_or_default().to_string(),
            local_tag,
            remote_tag,
            local_header: invite.headers.get("From").unwrap_or_default().to_string(),
            remote_header: h.get("To").unwrap_or_default().to_string(),
            local_seq,
            remote_seq: None,
            remote_target,
            route_set,
            confirmed: resp.status >= 200,
        })
    }

    /// A new in-dialog request (BYE, re-INVITE, INFO …) with `via` as its
    /// only Via value; the local CSeq is incremented (§12.2.1.1).
    pub fn new_request(&mut self, method: Method, via: &str, contact: Option<&str>) -> Request {
        self.local_seq = self.local_seq.saturating_add(1);
        let seq = self.local_seq;
        self.build(method, seq, via, contact)
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_seq` (§13.2.2.4):
    /// a new transaction (fresh branch in `via`), same CSeq number.
    pub fn ack(&self, invite_seq: u32, via: &str) -> Request {
        self.build(Method::Ack, invite_seq, via, None)
    }

    /// Validates an incoming in-dialog request (not ACK/CANCEL) and records
    /// its CSeq (§12.2.2). Errors: CSeq not above the last one → 500.
    pub fn check_remote_cseq(&mut self, req: &Request) -> Result<(), DialogError> {
        let seq = req.headers.cseq().map_err(|_| DialogError::Malformed("CSeq"))?.seq;
        if let Some(last) = self.remote_seq
            && seq <= last {
                return Err(DialogError::CSeqOutOfOrder { got: seq, last });
            }
        self.remote_seq = Some(seq);
        Ok(())
    }

    /// Target refresh (re-INVITE, §12.2.2): the new Contact becomes the
    /// remote target.
    pub fn refresh_target(&mut self, req: &Request) {
        if let Some(c) = req.headers.contact() {
            self.remote_target = c.uri.raw;
        }
    }

    /// The URI the next request is physically sent to: the first route when
    /// there is one, else the remote target.
    pub fn next_hop(&self) -> String {
        match self.route_set.first().and_then(|r| NameAddr::parse(r).ok()) {
            Some(first) => first.uri.raw,
            None => self.remote_target.clone(),
        }
    }

    fn build(&self, method: Method, seq: u32, via: &str, contact: Option<&str>) -> Request {
        let first_loose = self
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r).ok())
            .map(|r| (r.uri.param("lr").is_some(), r.uri.raw));
        let (ruri, routes): (String, Vec<String>) = match first_loose {
            None => (self.remote_target.clone(), Vec::new()),
            Some((true, _)) => (self.remote_target.clone(), self.route_set.clone()),
            Some((false, first_uri)) => {
                let mut rest: Vec<String> = self.route_set.iter().skip(1).cloned().collect();
                rest.push(format!("<{}>", self.remote_target));
                (first_uri, rest)
            }
        };
        let mut req = Request::new(method.clone(), ruri);
        req.headers.push("Via", via);
        req.headers.push("Max-Forwards", "70");
        for r in routes {
            req.headers.push("Route", r);
        }
        req.headers.push("From", self.local_header.clone());
        req.headers.push("To", self.remote_header.clone());
        req.headers.push("Call-ID", self.call_id.clone());
        req.headers.push("CSeq", format!("{seq} {method}"));
        if let Some(c) = contact {
            req.headers.push("Contact", c);
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::{SipMessage, parse};

    fn invite() -> Request {
        let t = "INVITE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
From: \"A\" <sip:alice@192.0.2.1>;tag=at\r\nTo: <sip:bob@192.0.2.4>\r\nCall-ID: cid\r\nCSeq: 10 INVITE\r\n\
Contact: <sip:alice@192.0.2.1:5070>\r\nRecord-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\r\n";
        let Ok(SipMessage::Request(r)) = parse(t.as_bytes()) else { panic!() };
        r
    }

    #[test]
    fn uas_dialog_and_bye() {
        let inv = invite();
        let mut d = Dialog::uas(&inv, "bt", 1).unwrap();
        assert_eq!(d.remote_tag, "at");
        assert_eq!(d.remote_target, "sip:alice@192.0.2.1:5070");
        assert_eq!(d.next_hop(), "sip:p1.example.com;lr");
        let bye = d.new_request(Method::Bye, "SIP/2.0/UDP me;branch=z9hG4bKb", None);
        assert_eq!(bye.uri, "sip:alice@192.0.2.1:5070");
        assert_eq!(bye.headers.cseq().unwrap().seq, 2);
        assert_eq!(bye.headers.to().unwrap().tag(), Some("at"));
        assert_eq!(bye.headers.from().unwrap().tag(), Some("bt"));
        let routes = bye.headers.routes().unwrap();
        assert_eq!(routes[0].uri.host, "p1.example.com");
        assert_eq!(routes[1].uri.host, "p2.example.com");
    }

    #[test]
    fn uac_route_set_is_reversed_and_ack_keeps_cseq() {
        let inv = invite();
        let mut ok = Response::for_request(&inv, 200, "OK");
        ok.set_to_tag("bt");
        ok.headers.push("Contact", "<sip:bob@192.0.2.4:5080>");
        ok.headers.push("Record-Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>");
        let d = Dialog::uac(&inv, &ok).unwrap();
        assert_eq!(d.route_set[0], "<sip:p2.example.com;lr>");
        let ack = d.ack(10, "SIP/2.0/UDP me;branch=z9hG4bKa");
        assert_eq!(ack.headers.cseq().unwrap().to_string(), "10 ACK");
        assert_eq!(ack.uri, "sip:bob@192.0.2.4:5080");
        ok.headers.remove("Contact");
        assert_eq!(Dialog::uac(&inv, &ok), Err(DialogError::MissingContact));
    }

    #[test]
    fn strict_route_puts_target_last() {
        let mut d = Dialog::uas(&invite(), "bt", 1).unwrap();
        d.route_set = vec!["<sip:strict.example.com>".into()];
        let bye = d.new_request(Method::Bye, "SIP/2.0/UDP me;branch=z9hG4bKc", None);
        assert_eq!(bye.uri, "sip:strict.example.com");
        assert_eq!(bye.headers.get("Route"), Some("<sip:alice@192.0.2.1:5070>"));
    }

    #[test]
    fn lower_cseq_is_rejected() {
        let mut d = Dialog::uas(&invite(), "bt", 1).unwrap();
        let mut bye = invite();
        bye.method = Method::Bye;
        bye.headers.set("CSeq", "9 BYE");
        assert_eq!(d.check_remote_cseq(&bye), Err(DialogError::CSeqOutOfOrder { got: 9, last: 10 }));
        bye.headers.set("CSeq", "11 BYE");
        assert_eq!(d.check_remote_cseq(&bye), Ok(()));
    }
}
