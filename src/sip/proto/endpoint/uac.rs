//! UAC side of the endpoint: outbound INVITE (§8.1, §13.2), CANCEL (§9.1),
//! digest retry (§22.2), BYE (§15.1.1), OPTIONS (§11), and responses to
//! them.

use super::{
    Call, CancelReason, ClientTx, ClientTxKind, DialogEvent, EndpointError, Event,
    InviteParams, Phase, Purpose, SipEndpoint, Transport, response_sdp,
};
use crate::ids::DialogId;
use crate::sip::msg::{Method, Request, Response, Uri};
use crate::sip::proto::auth;
use crate::sip::proto::dialog::{Dialog, Role};
use crate::sip::proto::transaction::{ClientInviteTx, ClientKey, ClientNonInviteTx, TxOutput};
use std::net::SocketAddr;
use std::time::Instant;

impl SipEndpoint {
    pub(super) fn uac_invite(&mut self, p: InviteParams, now: Instant) -> Result<(DialogId, String), EndpointError> {
        let target = Uri::parse(&p.target).map_err(|_| EndpointError::BadUri(p.target.clone()))?;
        if !target.is_sip() {
            return Err(EndpointError::BadUri(p.target.clone()));
        }
        let id = self.new_dialog_id();
        let local_tag = self.token();
        let call_id = format!("{}{}@{}", self.token(), self.token(), self.cfg.host);
        let branch = self.new_branch();
        let mut req = Request::new(Method::Invite, target.raw.clone());
        req.headers.push("Via", self.via(p.transport, &branch));
        req.headers.push("Max-Forwards", "70");
        let from_uri = format!("sip:{}@{}", p.from_user, self.cfg.host);
        let from = match &p.from_display {
            Some(d) => format!("\"{}\" <{from_uri}>;tag={local_tag}", quote(d)),
            None => format!("<{from_uri}>;tag={local_tag}"),
        };
        req.headers.push("From", from);
        req.headers.push("To", format!("<{}>", target.raw));
        req.headers.push("Call-ID", call_id.clone());
        req.headers.push("CSeq", "1 INVITE");
        req.headers.push("Contact", self.contact(&p.from_user, p.transport));
        req.headers.push("User-Agent", self.cfg.user_agent.clone());
        req.headers.push("Allow", self.allow());
        for (n, v) in &p.extra_headers {
            req.headers.push(n.clone(), v.clone());
        }
        if !p.sdp_offer.is_empty() {
            req.headers.push("Content-Type", "application/sdp");
            req.body = p.sdp_offer.as_bytes().to_vec();
        }
        tracing::info!(call_id = %call_id, dialog = %id, "sending INVITE");
        self.start_client_tx(req.clone(), p.dest, p.transport, Purpose::Invite(id), now);
        self.by_tag.insert((call_id.clone(), local_tag.clone()), id);
        self.calls.insert(
            id,
            Call {
                role: Role::Uac,
                phase: Phase::Outgoing,
                dialog: None,
                invite: req,
                peer: p.dest,
                transport: p.transport,
                local_tag,
                invite_key: None,
                resp_dest: p.dest,
                ok: None,
                reinvite: None,
                bye_after_ack: false,
                ring_deadline: p.ring_timeout.map(|d| now + d),
                credentials: p.credentials,
                auth_tried: false,
                cancel: None,
                cancel_sent: false,
                provisional: false,
                ack: None,
            },
        );
        Ok((id, call_id))
    }

    pub(super) fn uac_options(&mut self, target: &str, dest: SocketAddr, transport: Transport, now: Instant) -> Result<u64, EndpointError> {
        let uri = Uri::parse(target).map_err(|_| EndpointError::BadUri(target.to_string()))?;
        if !uri.is_sip() {
            return Err(EndpointError::BadUri(target.to_string()));
        }
        let n = self.next_request;
        self.next_request += 1;
        let branch = self.new_branch();
        let tag = self.token();
        let call_id = format!("{}@{}", self.token(), self.cfg.host);
        let mut req = Request::new(Method::Options, uri.raw.clone());
        req.headers.push("Via", self.via(transport, &branch));
        req.headers.push("Max-Forwards", "70");
        req.headers.push("From", format!("<sip:skald@{}>;tag={tag}", self.cfg.host));
        req.headers.push("To", format!("<{}>", uri.raw));
        req.headers.push("Call-ID", call_id);
        req.headers.push("CSeq", "1 OPTIONS");
        req.headers.push("Contact", self.contact("skald", transport));
        req.headers.push("Accept", "application/sdp");
        req.headers.push("User-Agent", self.cfg.user_agent.clone());
        self.start_client_tx(req, dest, transport, Purpose::Options(n), now);
        Ok(n)
    }

    /// Creates and starts a client transaction for `req` (branch taken from
    /// its top Via).
    pub(super) fn start_client_tx(&mut self, req: Request, dest: SocketAddr, transport: Transport, purpose: Purpose, now: Instant) {
        let branch = req.headers.top_via().ok().and_then(|v| v.branch().map(str::to_string)).unwrap_or_default();
        let key = ClientKey { branch, method: req.method.clone() };
        let reliable = transport == Transport::Tcp;
        let (kind, outs) = if req.method == Method::Invite {
            let (tx, outs) = ClientInviteTx::new(req, reliable, self.cfg.timers, now);
            (ClientTxKind::Invite(tx), outs)
        } else {
            let (tx, outs) = ClientNonInviteTx::new(req, reliable, self.cfg.timers, now);
            (ClientTxKind::NonInvite(tx), outs)
        };
        self.client_txs.insert(key, ClientTx { kind, dest, transport, purpose });
        for o in outs {
            if let TxOutput::Transmit(b) = o {
                self.transmit(dest, transport, b);
            }
        }
    }

    /// A response: to its client transaction (§17.1.3), else dropped.
    pub(super) fn handle_response(&mut self, resp: Response, now: Instant) {
        let Some(key) = ClientKey::from_response(&resp) else { return };
        let Some(tx) = self.client_txs.get_mut(&key) else {
            tracing::debug!(status = resp.status, "response without transaction dropped");
            return;
        };
        let outs = match &mut tx.kind {
            ClientTxKind::Invite(t) => t.handle_response(resp, now),
            ClientTxKind::NonInvite(t) => t.handle_response(resp, now),
        };
        let (dest, transport, purpose) = (tx.dest, tx.transport, tx.purpose);
        for o in outs {
            match o {
                TxOutput::Transmit(b) => self.transmit(dest, transport, b),
                TxOutput::Response(r) => self.client_response(purpose, r, now),
                TxOutput::Timeout => {}
            }
        }
    }

    fn client_response(&mut self, purpose: Purpose, resp: Response, now: Instant) {
        match purpose {
            Purpose::Invite(id) => self.invite_response(id, resp, now),
            Purpose::Cancel => {}
            Purpose::Bye { dialog, notify } => {
                if resp.status >= 200 && self.calls.contains_key(&dialog) {
                    let reason = format!("local hangup (BYE answered {})", resp.status);
                    if notify {
                        self.end_call(dialog, DialogEvent::Terminated { reason });
                    } else {
                        self.forget_call(dialog);
                    }
                }
            }
            Purpose::Options(request) => {
                if resp.status >= 200 {
                    self.emit(Event::OptionsResult { request, status: resp.status });
                }
            }
            Purpose::Refer(dialog) => self.refer_response(dialog, resp.status),
        }
    }

    /// Timer B/F of a client transaction.
    pub(super) fn client_timed_out(&mut self, purpose: Purpose, _now: Instant) {
        match purpose {
            Purpose::Invite(id) => {
                let hangup = self.calls.get(&id).is_some_and(|c| c.cancel == Some(CancelReason::Hangup));
                if !self.calls.get(&id).is_some_and(|c| c.phase == Phase::Outgoing) {
                    return;
                }
                if hangup {
                    self.end_call(id, DialogEvent::Terminated { reason: "cancelled (no final response)".into() });
                } else {
                    self.end_call(id, DialogEvent::Rejected { status: 408, reason: "Request Timeout".into() });
                }
            }
            Purpose::Bye { dialog, notify } => {
                if notify && self.calls.contains_key(&dialog) {
                    self.end_call(dialog, DialogEvent::Terminated { reason: "local hangup (BYE timed out)".into() });
                } else {
                    self.forget_call(dialog);
                }
            }
            Purpose::Options(request) => self.emit(Event::OptionsResult { request, status: 408 }),
            Purpose::Refer(dialog) => self.refer_response(dialog, 408),
            Purpose::Cancel => {}
        }
    }

    fn invite_response(&mut self, id: DialogId, resp: Response, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else {
            if (200..300).contains(&resp.status) {
                tracing::debug!("2xx for a forgotten call");
            }
            return;
        };
        match resp.status {
            100..=199 => {
                call.provisional = true;
                if call.dialog.is_none() {
                    call.dialog = Dialog::uac(&call.invite, &resp).ok();
                }
                if resp.status > 100 {
                    let sdp = response_sdp(&resp);
                    self.emit_dialog(id, DialogEvent::Provisional { status: resp.status, sdp });
                }
                self.try_cancel(id, now);
            }
            200..=299 => self.invite_2xx(id, resp, now),
            _ => {
                if matches!(resp.status, 401 | 407) && self.retry_with_auth(id, &resp, now) {
                    return;
                }
                let cancel = self.calls.get(&id).and_then(|c| c.cancel);
                let event = match cancel {
                    Some(CancelReason::Hangup) => DialogEvent::Terminated { reason: "cancelled by local hangup".into() },
                    Some(CancelReason::RingTimeout) => DialogEvent::Rejected { status: 408, reason: "Ring Timeout".into() },
                    None => DialogEvent::Rejected { status: resp.status, reason: resp.reason.clone() },
                };
                self.end_call(id, event);
            }
        }
    }

    /// 2xx to skald's INVITE: ACK it (§13.2.2.4) from the dialog; resend the
    /// same ACK for retransmissions; BYE at once when the application hung
    /// up meanwhile.
    fn invite_2xx(&mut self, id: DialogId, resp: Response, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let remote_tag = resp.headers.to().ok().and_then(|t| t.tag().map(str::to_string)).unwrap_or_default();
        if let Some((tag, ack)) = &call.ack {
            // A retransmitted 2xx (same tag) gets the same ACK again. A 2xx
            // from another fork is not handled (no forking proxy in front).
            if *tag == remote_tag {
                let ack = ack.clone();
                let Some(call) = self.calls.get(&id) else { return };
                let (dest, transport) = self.dialog_dest(call);
                self.transmit(dest, transport, ack);
            }
            return;
        }
        let dialog = match Dialog::uac(&call.invite, &resp) {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "2xx without Contact; using the Request-URI as target");
                let mut fixed = resp.clone();
                fixed.headers.push("Contact", format!("<{}>", call.invite.uri));
                match Dialog::uac(&call.invite, &fixed) {
                    Ok(d) => d,
                    Err(_) => return,
                }
            }
        };
        let seq = call.invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
        let transport = call.transport;
        call.dialog = Some(dialog);
        call.phase = Phase::Confirmed;
        call.ring_deadline = None;
        let branch = self.new_branch();
        let via = self.via(transport, &branch);
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(d) = call.dialog.as_ref() else { return };
        let ack = d.ack(seq, &via).to_bytes();
        call.ack = Some((remote_tag, ack.clone()));
        let cancel = call.cancel;
        let Some(call) = self.calls.get(&id) else { return };
        let (dest, transport) = self.dialog_dest(call);
        self.transmit(dest, transport, ack);
        match cancel {
            Some(CancelReason::Hangup) => self.send_bye(id, true, now),
            Some(CancelReason::RingTimeout) => {
                self.send_bye(id, false, now);
                self.emit_dialog(id, DialogEvent::Rejected { status: 408, reason: "Ring Timeout".into() });
            }
            None => {
                let sdp_answer = response_sdp(&resp);
                self.emit_dialog(id, DialogEvent::Answered { sdp_answer });
            }
        }
    }

    /// 401/407: resend the INVITE once with credentials (§22.2): same
    /// Call-ID and From tag, CSeq + 1, new branch. Returns whether it did.
    fn retry_with_auth(&mut self, id: DialogId, resp: &Response, now: Instant) -> bool {
        let Some(call) = self.calls.get_mut(&id) else { return false };
        if call.auth_tried || call.cancel.is_some() {
            return false;
        }
        let Some((user, pass)) = call.credentials.clone() else { return false };
        let (challenge_header, answer_header) = if resp.status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let Some(challenge) = resp.headers.get(challenge_header).and_then(|v| auth::Challenge::parse(v).ok()) else {
            return false;
        };
        call.auth_tried = true;
        let mut req = call.invite.clone();
        let (dest, transport) = (call.peer, call.transport);
        let seq = req.headers.cseq().map(|c| c.seq).unwrap_or(1).saturating_add(1);
        let cnonce = self.token();
        let value = auth::authorization(&challenge, &user, &pass, "INVITE", &req.uri, &cnonce, 1);
        let branch = self.new_branch();
        req.headers.set("Via", self.via(transport, &branch));
        req.headers.set("CSeq", format!("{seq} INVITE"));
        req.headers.set(answer_header, value);
        if let Some(call) = self.calls.get_mut(&id) {
            call.invite = req.clone();
            call.provisional = false;
        }
        self.start_client_tx(req, dest, transport, Purpose::Invite(id), now);
        true
    }

    /// Sends the CANCEL a call wants, once a provisional response arrived
    /// (§9.1).
    pub(super) fn try_cancel(&mut self, id: DialogId, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.cancel.is_none() || call.cancel_sent || !call.provisional || call.phase != Phase::Outgoing {
            return;
        }
        call.cancel_sent = true;
        let inv = &call.invite;
        let mut cancel = Request::new(Method::Cancel, inv.uri.clone());
        if let Some(via) = inv.headers.list("Via").first() {
            cancel.headers.push("Via", via.to_string());
        }
        for r in inv.headers.get_all("Route") {
            cancel.headers.push("Route", r.to_string());
        }
        cancel.headers.push("Max-Forwards", "70");
        for h in ["From", "To", "Call-ID"] {
            if let Some(v) = inv.headers.get(h) {
                cancel.headers.push(h, v.to_string());
            }
        }
        let seq = inv.headers.cseq().map(|c| c.seq).unwrap_or(1);
        cancel.headers.push("CSeq", format!("{seq} CANCEL"));
        let (dest, transport) = (call.peer, call.transport);
        tracing::info!(dialog = %id, "sending CANCEL");
        self.start_client_tx(cancel, dest, transport, Purpose::Cancel, now);
    }

    /// Sends BYE in a confirmed dialog (§15.1.1); `notify`: report
    /// `Terminated` when it completes.
    pub(super) fn send_bye(&mut self, id: DialogId, notify: bool, now: Instant) {
        let Some(call) = self.calls.get(&id) else { return };
        let (dest, transport) = self.dialog_dest(call);
        let branch = self.new_branch();
        let via = self.via(transport, &branch);
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(d) = call.dialog.as_mut() else { return };
        let bye = d.new_request(Method::Bye, &via, None);
        call.phase = Phase::ByeSent;
        call.ok = None;
        tracing::info!(dialog = %id, "sending BYE");
        self.start_client_tx(bye, dest, transport, Purpose::Bye { dialog: id, notify }, now);
    }
}

/// Escapes `"` and `\` for a quoted display name.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
