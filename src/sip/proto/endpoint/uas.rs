//! UAS side of the endpoint: incoming requests (RFC 3261 §8.2, §9.2, §12.2.2,
//! §13.3, §14.2, §15.1.2) and the application's answers to them.

use super::{
    Call, DialogEvent, EndpointError, Event, InviteInfo, OkRetransmit, Phase, ServerTx,
    ServerTxKind, SipEndpoint, Transport, response_dest, sdp_body,
};
use crate::ids::DialogId;
use crate::sip::msg::{Method, Request, Response, reason_phrase};
use crate::sip::proto::dialog::{Dialog, Role};
use crate::sip::proto::transaction::{ServerInviteTx, ServerKey, ServerNonInviteTx, TxOutput};
use std::net::SocketAddr;
use std::time::Instant;

/// Option tags skald supports (Require processing, §8.2.2.3).
const SUPPORTED: &[&str] = &[];

impl SipEndpoint {
    /// Routes one parsed request.
    pub(super) fn handle_request(&mut self, req: Request, from: SocketAddr, transport: Transport, now: Instant) {
        let Ok(key) = ServerKey::from_request(&req) else {
            tracing::debug!(%from, "request without usable Via dropped");
            return;
        };
        if self.server_txs.contains_key(&key) {
            self.route_to_existing_tx(&key, &req, now);
            return;
        }
        if req.method == Method::Ack {
            self.handle_ack(&req, now);
            return;
        }
        let reliable = transport == Transport::Tcp;
        let kind = if req.method == Method::Invite {
            ServerTxKind::Invite(ServerInviteTx::new(reliable, self.cfg.timers))
        } else {
            ServerTxKind::NonInvite(ServerNonInviteTx::new(reliable, self.cfg.timers))
        };
        let to_tag = self.token();
        let dest = response_dest(&req, from, transport);
        let tx = ServerTx { kind, request: req, dest, transport, to_tag };
        self.server_txs.insert(key.clone(), tx);
        self.new_request(&key, from, transport, now);
    }

    /// A request for which a server transaction exists: retransmission, or
    /// ACK for a non-2xx final.
    fn route_to_existing_tx(&mut self, key: &ServerKey, req: &Request, now: Instant) {
        let Some(tx) = self.server_txs.get_mut(key) else { return };
        let (dest, transport) = (tx.dest, tx.transport);
        let outs = match (&mut tx.kind, &req.method) {
            (ServerTxKind::Invite(t), Method::Ack) => {
                if !t.handle_ack(now) {
                    // An ACK reusing the INVITE's branch: the 2xx ACK of an
                    // RFC 2543 peer.
                    self.handle_ack(req, now);
                }
                return;
            }
            (ServerTxKind::Invite(t), _) => t.handle_retransmission(),
            (ServerTxKind::NonInvite(t), _) => t.handle_retransmission(),
        };
        for o in outs {
            if let TxOutput::Transmit(b) = o {
                self.transmit(dest, transport, b);
            }
        }
    }

    /// A new server transaction: the UA core's checks (§8.2) and dispatch.
    fn new_request(&mut self, key: &ServerKey, from: SocketAddr, transport: Transport, now: Instant) {
        let Some(req) = self.server_txs.get(key).map(|t| t.request.clone()) else { return };
        if req.method == Method::Cancel {
            self.handle_cancel(key, now);
            return;
        }
        if req.headers.max_forwards() == Some(0) && req.method != Method::Options {
            self.respond(key, 483, "Too Many Hops", now, |_| {});
            return;
        }
        match &req.method {
            Method::Other(_) => {
                let allow = self.allow();
                self.respond(key, 501, "Not Implemented", now, |r| r.headers.push("Allow", allow));
                return;
            }
            Method::Invite | Method::Bye | Method::Options | Method::Notify => {}
            Method::Register if self.registrar.is_some() => {}
            Method::Refer => {
                // skald is no transferee: REFER is refused like any method
                // it does not take, but its dialog hears of it first.
                self.report_refer(&req);
                let allow = self.allow();
                self.respond(key, 405, "Method Not Allowed", now, |r| r.headers.push("Allow", allow));
                return;
            }
            _ => {
                let allow = self.allow();
                self.respond(key, 405, "Method Not Allowed", now, |r| r.headers.push("Allow", allow));
                return;
            }
        }
        let scheme_ok = req.parsed_uri().is_ok_and(|u| matches!(u.scheme.as_str(), "sip" | "sips" | "tel"));
        if !scheme_ok {
            self.respond(key, 416, "Unsupported URI Scheme", now, |_| {});
            return;
        }
        let unsupported: Vec<String> = req
            .headers
            .tokens("Require")
            .into_iter()
            .filter(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            self.respond(key, 420, "Bad Extension", now, |r| r.headers.push("Unsupported", list));
            return;
        }
        if !req.body.is_empty()
            && req.method == Method::Invite
            && sdp_body(req.headers.content_type(), &req.body).is_none()
        {
            self.respond(key, 415, "Unsupported Media Type", now, |r| {
                r.headers.push("Accept", "application/sdp")
            });
            return;
        }
        let to_tag = req.headers.to().ok().and_then(|t| t.tag().map(str::to_string));
        match to_tag {
            Some(tag) => self.in_dialog_request(key, &req, &tag, now),
            None => self.out_of_dialog_request(key, &req, from, transport, now),
        }
    }

    fn out_of_dialog_request(&mut self, key: &ServerKey, req: &Request, from: SocketAddr, transport: Transport, now: Instant) {
        match req.method {
            Method::Options => self.respond_options(key, now),
            Method::Register => self.handle_register(key, req, from, transport, now),
            Method::Invite => {
                if self.is_merged(req, key) {
                    self.respond(key, 482, "Loop Detected", now, |_| {});
                    return;
                }
                if let Some(retry) = self.draining {
                    let secs = retry.as_secs().to_string();
                    self.respond(key, 503, "Service Unavailable", now, |r| r.headers.push("Retry-After", secs));
                    return;
                }
                self.new_incoming_call(key, req, from, transport, now);
            }
            _ => self.respond(key, 481, "Call/Transaction Does Not Exist", now, |_| {}),
        }
    }

    /// §8.2.2.2: same From tag, Call-ID and CSeq as a call in progress but
    /// another branch: a request that forked and came back.
    fn is_merged(&self, req: &Request, key: &ServerKey) -> bool {
        let from_tag = req.headers.from().ok().and_then(|f| f.tag().map(str::to_string));
        let cid = req.headers.call_id();
        let seq = req.headers.cseq().ok().map(|c| c.seq);
        self.calls.values().any(|c| {
            c.role == Role::Uas
                && c.invite_key.as_ref() != Some(key)
                && c.invite.headers.call_id() == cid
                && c.invite.headers.cseq().ok().map(|c| c.seq) == seq
                && c.invite.headers.from().ok().and_then(|f| f.tag().map(str::to_string)) == from_tag
        })
    }

    fn new_incoming_call(&mut self, key: &ServerKey, req: &Request, from: SocketAddr, transport: Transport, now: Instant) {
        let id = self.new_dialog_id();
        let Some(local_tag) = self.server_txs.get(key).map(|t| t.to_tag.clone()) else { return };
        let dialog = match Dialog::uas(req, &local_tag, 1) {
            Ok(d) => d,
            Err(e) => {
                let reason = format!("Bad Request ({e})");
                self.respond(key, 400, &reason, now, |_| {});
                return;
            }
        };
        self.respond(key, 100, "Trying", now, |_| {});
        let resp_dest = self.server_txs.get(key).map_or(from, |t| t.dest);
        let call_id = dialog.call_id.clone();
        let info = invite_info(req, from, transport);
        tracing::info!(call_id = %call_id, dialog = %id, "incoming INVITE");
        self.by_tag.insert((call_id, local_tag.clone()), id);
        self.calls.insert(
            id,
            Call {
                role: Role::Uas,
                phase: Phase::Incoming,
                dialog: Some(dialog),
                invite: req.clone(),
                peer: from,
                transport,
                local_tag,
                invite_key: Some(key.clone()),
                resp_dest,
                ok: None,
                reinvite: None,
                bye_after_ack: false,
                ring_deadline: None,
                credentials: None,
                auth_tried: false,
                cancel: None,
                cancel_sent: false,
                provisional: false,
                ack: None,
            },
        );
        self.emit(Event::IncomingCall { dialog: id, info });
    }

    fn in_dialog_request(&mut self, key: &ServerKey, req: &Request, to_tag: &str, now: Instant) {
        let cid = req.headers.call_id().unwrap_or_default().to_string();
        let Some(id) = self.by_tag.get(&(cid, to_tag.to_string())).copied() else {
            self.respond(key, 481, "Call/Transaction Does Not Exist", now, |_| {});
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(dialog) = call.dialog.as_mut() else { return };
        if let Err(e) = dialog.check_remote_cseq(req) {
            let reason = format!("Server Internal Error ({e})");
            self.respond(key, 500, &reason, now, |_| {});
            return;
        }
        self.set_tx_tag(key, id);
        match req.method {
            Method::Bye => self.handle_bye(key, id, now),
            Method::Invite => self.handle_reinvite(key, id, req, now),
            Method::Notify => self.handle_notify(key, id, req, now),
            _ => self.respond_options(key, now),
        }
    }

    /// An in-dialog REFER: its dialog gets [`DialogEvent::ReferRequested`]
    /// with the Refer-To URI (without its angle brackets). A REFER outside a
    /// known dialog is only refused.
    fn report_refer(&mut self, req: &Request) {
        let Some(tag) = req.headers.to().ok().and_then(|t| t.tag().map(str::to_string)) else { return };
        let cid = req.headers.call_id().unwrap_or_default().to_string();
        let Some(id) = self.by_tag.get(&(cid, tag)).copied() else { return };
        let raw = req.headers.get("Refer-To").unwrap_or_default().trim();
        let refer_to = match (raw.find('<'), raw.find('>')) {
            (Some(a), Some(b)) if a < b => &raw[a + 1..b],
            _ => raw,
        };
        self.emit_dialog(id, DialogEvent::ReferRequested { refer_to: refer_to.to_string() });
    }

    /// Responses in this transaction carry the dialog's tag.
    fn set_tx_tag(&mut self, key: &ServerKey, id: DialogId) {
        let tag = self.calls.get(&id).map(|c| c.local_tag.clone());
        if let (Some(tx), Some(tag)) = (self.server_txs.get_mut(key), tag) {
            tx.to_tag = tag;
        }
    }

    fn handle_bye(&mut self, key: &ServerKey, id: DialogId, now: Instant) {
        self.respond(key, 200, "OK", now, |_| {});
        let Some(call) = self.calls.get(&id) else { return };
        // BYE on an early UAS dialog also ends the INVITE (§15.1.2).
        if call.role == Role::Uas && call.phase == Phase::Incoming
            && let Some(ik) = call.invite_key.clone() {
                self.respond(&ik, 487, "Request Terminated", now, |_| {});
            }
        if let Some(rk) = self.calls.get(&id).and_then(|c| c.reinvite.clone()) {
            self.respond(&rk, 487, "Request Terminated", now, |_| {});
        }
        tracing::info!(dialog = %id, "BYE received");
        self.end_call(id, DialogEvent::Bye);
    }

    fn handle_reinvite(&mut self, key: &ServerKey, id: DialogId, req: &Request, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.reinvite.is_some() || call.phase == Phase::Incoming {
            // §14.2: an INVITE while another one awaits its final response.
            let secs = (self.rng_secs() % 10).to_string();
            self.respond(key, 500, "Server Internal Error", now, |r| r.headers.push("Retry-After", secs));
            return;
        }
        if call.phase == Phase::ByeSent {
            self.respond(key, 481, "Call/Transaction Does Not Exist", now, |_| {});
            return;
        }
        if let Some(d) = call.dialog.as_mut() {
            d.refresh_target(req);
        }
        call.reinvite = Some(key.clone());
        self.respond(key, 100, "Trying", now, |_| {});
        let sdp_offer = sdp_body(req.headers.content_type(), &req.body);
        self.emit_dialog(id, DialogEvent::ReInvite { sdp_offer });
    }

    fn rng_secs(&mut self) -> u64 {
        use rand::Rng;
        self.rng.random::<u64>()
    }

    /// §9.2: CANCEL finds its INVITE; 200 to the CANCEL, 487 to the INVITE
    /// if still unanswered; 481 when there is no such INVITE.
    fn handle_cancel(&mut self, key: &ServerKey, now: Instant) {
        let invite_key = key.cancelled_invite();
        let Some(invite_tx) = self.server_txs.get(&invite_key) else {
            self.respond(key, 481, "Call/Transaction Does Not Exist", now, |_| {});
            return;
        };
        let tag = invite_tx.to_tag.clone();
        let unanswered = matches!(&invite_tx.kind, ServerTxKind::Invite(t) if !t.is_final());
        if let Some(tx) = self.server_txs.get_mut(key) {
            tx.to_tag = tag;
        }
        self.respond(key, 200, "OK", now, |_| {});
        if !unanswered {
            return;
        }
        self.respond(&invite_key, 487, "Request Terminated", now, |_| {});
        let id = self
            .calls
            .iter()
            .find(|(_, c)| c.invite_key.as_ref() == Some(&invite_key))
            .map(|(id, _)| *id);
        if let Some(id) = id {
            tracing::info!(dialog = %id, "INVITE cancelled by the caller");
            self.end_call(id, DialogEvent::Cancelled);
        }
    }

    /// ACK without a server transaction: the ACK for a 2xx (§13.3.1.4).
    pub(super) fn handle_ack(&mut self, req: &Request, now: Instant) {
        let cid = req.headers.call_id().unwrap_or_default().to_string();
        let Some(tag) = req.headers.to().ok().and_then(|t| t.tag().map(str::to_string)) else { return };
        let Some(id) = self.by_tag.get(&(cid, tag)).copied() else { return };
        let seq = req.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(ok) = call.ok.as_ref() else { return };
        if ok.seq != seq {
            return;
        }
        let initial = ok.initial;
        call.ok = None;
        call.phase = Phase::Confirmed;
        if let Some(d) = call.dialog.as_mut() {
            d.confirmed = true;
        }
        let bye = call.bye_after_ack;
        if initial {
            self.emit_dialog(id, DialogEvent::Acked);
        }
        if bye {
            self.send_bye(id, true, now);
        }
    }

    /// REGISTER (RFC 3261 §10.3): the registrar decides, the response goes
    /// out in this non-INVITE server transaction (retransmissions of the
    /// REGISTER get the same response from it).
    fn handle_register(&mut self, key: &ServerKey, req: &Request, from: SocketAddr, transport: Transport, now: Instant) {
        let Some(registrar) = self.registrar.as_mut() else {
            let allow = self.allow();
            self.respond(key, 405, "Method Not Allowed", now, |r| r.headers.push("Allow", allow));
            return;
        };
        let reply = registrar.handle_register(req, from, transport, now);
        self.respond(key, reply.status, &reply.reason, now, |r| {
            for (name, value) in reply.headers {
                r.headers.push(name, value);
            }
        });
        self.drain_registrar();
    }

    fn respond_options(&mut self, key: &ServerKey, now: Instant) {
        let allow = self.allow();
        self.respond(key, 200, "OK", now, |r| {
            r.headers.push("Allow", allow);
            r.headers.push("Accept", "application/sdp");
            r.headers.push("Supported", "");
        });
    }

    /// Sends a response in the server transaction `key`: §8.2.6 copy, To
    /// tag (not on 100), Server header, then `extra`.
    pub(super) fn respond(
        &mut self,
        key: &ServerKey,
        status: u16,
        reason: &str,
        now: Instant,
        extra: impl FnOnce(&mut Response),
    ) {
        let server = self.cfg.user_agent.clone();
        let Some(tx) = self.server_txs.get_mut(key) else { return };
        let mut resp = Response::for_request(&tx.request, status, reason);
        if status > 100 {
            resp.set_to_tag(&tx.to_tag);
        }
        resp.headers.push("Server", server);
        extra(&mut resp);
        let outs = match &mut tx.kind {
            ServerTxKind::Invite(t) => t.send_response(&resp, now),
            ServerTxKind::NonInvite(t) => t.send_response(&resp, now),
        };
        let (dest, transport) = (tx.dest, tx.transport);
        for o in outs {
            if let TxOutput::Transmit(b) = o {
                self.transmit(dest, transport, b);
            }
        }
    }

    /// Stateless answer to a request the parser rejected (400/505), when it
    /// has a Via to answer to; ACKs are never answered.
    pub(super) fn stateless_reject(&mut self, req: &Request, from: SocketAddr, transport: Transport, status: u16, reason: &str) {
        if req.method == Method::Ack || req.headers.list("Via").is_empty() {
            tracing::debug!(%from, %reason, "dropping malformed request");
            return;
        }
        let mut resp = Response::for_request(req, status, reason);
        let tag = self.token();
        if req.headers.to().is_ok() {
            resp.set_to_tag(&tag);
        }
        resp.headers.push("Server", self.cfg.user_agent.clone());
        let dest = response_dest(req, from, transport);
        tracing::debug!(%from, status, %reason, "rejecting malformed request");
        self.transmit(dest, transport, resp.to_bytes());
    }

    // ------------------------------------------------------------ commands

    fn uas_call(&mut self, id: DialogId, what: &'static str) -> Result<(&mut Call, ServerKey), EndpointError> {
        let call = self.calls.get_mut(&id).ok_or(EndpointError::UnknownDialog(id))?;
        if call.role != Role::Uas || call.phase != Phase::Incoming {
            return Err(EndpointError::InvalidState(what));
        }
        let key = call.invite_key.clone().ok_or(EndpointError::InvalidState(what))?;
        Ok((call, key))
    }

    pub(super) fn uas_ring(&mut self, id: DialogId, now: Instant) -> Result<(), EndpointError> {
        let (call, key) = self.uas_call(id, "ring")?;
        let transport = call.transport;
        let contact = self.contact("skald", transport);
        self.respond(&key, 180, "Ringing", now, |r| r.headers.push("Contact", contact));
        Ok(())
    }

    pub(super) fn uas_answer(&mut self, id: DialogId, sdp: &str, now: Instant) -> Result<(), EndpointError> {
        let (call, key) = self.uas_call(id, "answer")?;
        let transport = call.transport;
        let seq = call.invite.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let bytes = self.send_2xx(&key, transport, sdp, now);
        let t1 = self.cfg.timers.t1;
        let give_up = now + self.cfg.timers.t1x64();
        let Some(call) = self.calls.get_mut(&id) else { return Ok(()) };
        call.phase = Phase::Answered;
        call.ok = Some(OkRetransmit {
            bytes,
            next: (transport == Transport::Udp).then_some(now + t1),
            interval: t1,
            give_up,
            seq,
            initial: true,
        });
        tracing::info!(dialog = %id, "answered");
        Ok(())
    }

    /// 200 OK with SDP and Contact in server transaction `key`; returns the
    /// bytes for §13.3.1.4 retransmission.
    fn send_2xx(&mut self, key: &ServerKey, transport: Transport, sdp: &str, now: Instant) -> Vec<u8> {
        let contact = self.contact("skald", transport);
        let allow = self.allow();
        let mut sent = Vec::new();
        self.respond(key, 200, "OK", now, |r| {
            r.headers.push("Contact", contact);
            r.headers.push("Allow", allow);
            r.headers.push("Supported", "");
            if !sdp.is_empty() {
                r.headers.push("Content-Type", "application/sdp");
                r.body = sdp.as_bytes().to_vec();
            }
            sent = r.to_bytes();
        });
        sent
    }

    pub(super) fn uas_reject(&mut self, id: DialogId, status: u16, reason: &str, now: Instant) -> Result<(), EndpointError> {
        if !(300..=699).contains(&status) {
            return Err(EndpointError::BadStatus(status));
        }
        let (_, key) = self.uas_call(id, "reject")?;
        let reason = if reason.is_empty() { reason_phrase(status) } else { reason };
        self.respond(&key, status, reason, now, |_| {});
        self.forget_call(id);
        Ok(())
    }

    pub(super) fn uas_accept_reinvite(&mut self, id: DialogId, sdp: &str, now: Instant) -> Result<(), EndpointError> {
        let call = self.calls.get_mut(&id).ok_or(EndpointError::UnknownDialog(id))?;
        let key = call.reinvite.take().ok_or(EndpointError::InvalidState("accept_reinvite"))?;
        let transport = call.transport;
        let seq = self
            .server_txs
            .get(&key)
            .and_then(|t| t.request.headers.cseq().ok())
            .map(|c| c.seq)
            .unwrap_or_default();
        let bytes = self.send_2xx(&key, transport, sdp, now);
        let (t1, give_up) = (self.cfg.timers.t1, now + self.cfg.timers.t1x64());
        let resp_dest = self.server_txs.get(&key).map(|t| t.dest);
        if let Some(call) = self.calls.get_mut(&id) {
            if let Some(d) = resp_dest {
                call.resp_dest = d;
            }
            call.ok = Some(OkRetransmit {
                bytes,
                next: (transport == Transport::Udp).then_some(now + t1),
                interval: t1,
                give_up,
                seq,
                initial: false,
            });
        }
        Ok(())
    }

    pub(super) fn uas_reject_reinvite(&mut self, id: DialogId, status: u16, now: Instant) -> Result<(), EndpointError> {
        if !(300..=699).contains(&status) {
            return Err(EndpointError::BadStatus(status));
        }
        let call = self.calls.get_mut(&id).ok_or(EndpointError::UnknownDialog(id))?;
        let key = call.reinvite.take().ok_or(EndpointError::InvalidState("reject_reinvite"))?;
        self.respond(&key, status, reason_phrase(status), now, |_| {});
        Ok(())
    }

    /// Application hangup, whatever the phase.
    pub(super) fn do_hangup(&mut self, id: DialogId, now: Instant) -> Result<(), EndpointError> {
        let call = self.calls.get_mut(&id).ok_or(EndpointError::UnknownDialog(id))?;
        match (call.role, call.phase) {
            (_, Phase::Incoming) => {
                let key = call.invite_key.clone();
                if let Some(key) = key {
                    self.respond(&key, 480, "Temporarily Unavailable", now, |_| {});
                }
                self.end_call(id, DialogEvent::Terminated { reason: "hung up before answer".into() });
            }
            (_, Phase::Answered) => call.bye_after_ack = true,
            (_, Phase::Confirmed) => self.send_bye(id, true, now),
            (_, Phase::Outgoing) => {
                call.cancel = Some(super::CancelReason::Hangup);
                self.try_cancel(id, now);
            }
            (_, Phase::ByeSent) => {}
        }
        Ok(())
    }
}

fn invite_info(req: &Request, from: SocketAddr, transport: Transport) -> InviteInfo {
    let h = &req.headers;
    let from_na = h.from().ok();
    let to_na = h.to().ok();
    let ruri_user = req.parsed_uri().ok().and_then(|u| u.user);
    let did = ruri_user
        .or_else(|| to_na.as_ref().and_then(|t| t.uri.user.clone()))
        .unwrap_or_default();
    InviteInfo {
        sip_call_id: h.call_id().unwrap_or_default().to_string(),
        from_uri: from_na.as_ref().map(|f| f.uri.raw.clone()).unwrap_or_default(),
        from_user: from_na.as_ref().and_then(|f| f.uri.user.clone()).unwrap_or_default(),
        from_display: from_na.and_then(|f| f.display),
        to_uri: to_na.map(|t| t.uri.raw).unwrap_or_default(),
        did,
        remote_addr: from,
        transport,
        sdp_offer: sdp_body(h.content_type(), &req.body),
        headers: h.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
    }
}
