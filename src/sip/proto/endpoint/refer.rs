//! Call transfer by REFER (RFC 3515), skald as the transferor: a REFER in
//! the INVITE dialog asks the peer (the transferee) to call the target; the
//! peer answers 202 and reports the new call's progress in NOTIFYs whose
//! body is a `message/sipfrag` status line (RFC 3515 §2.4.5, RFC 3420),
//! within the implicit `refer` subscription (RFC 6665). Headers embedded in
//! the Refer-To URI (`?X-Skald-Context=…`) are to be copied by the
//! transferee into its INVITE (RFC 3515 §2.1): that is how the call's
//! context reaches the target.

use super::{DialogEvent, EndpointError, Phase, Purpose, SipEndpoint};
use crate::ids::DialogId;
use crate::sip::msg::{Method, Request};
use crate::sip::proto::transaction::ServerKey;
use std::time::Instant;

impl SipEndpoint {
    /// Sends REFER in the confirmed dialog `id`: `Refer-To: <refer_to>`
    /// (a SIP URI, possibly with `?header=value` parts, percent-encoded) and
    /// `Referred-By` skald's own URI. The outcome arrives as
    /// [`DialogEvent::ReferAccepted`] / [`DialogEvent::ReferFailed`], then
    /// [`DialogEvent::ReferProgress`] per NOTIFY. Errors: unknown dialog, or
    /// the dialog is not confirmed.
    pub(super) fn do_refer(&mut self, id: DialogId, refer_to: &str, now: Instant) -> Result<(), EndpointError> {
        let call = self.calls.get(&id).ok_or(EndpointError::UnknownDialog(id))?;
        if call.phase != Phase::Confirmed || call.dialog.is_none() {
            return Err(EndpointError::InvalidState("REFER"));
        }
        if !(refer_to.starts_with("sip:") || refer_to.starts_with("sips:") || refer_to.starts_with("tel:")) {
            return Err(EndpointError::BadUri(refer_to.to_string()));
        }
        let (dest, transport) = self.dialog_dest(call);
        let branch = self.new_branch();
        let via = self.via(transport, &branch);
        let contact = self.contact("skald", transport);
        let referred_by = format!("<sip:skald@{}:{}>", self.cfg.host, self.cfg.port);
        let Some(call) = self.calls.get_mut(&id) else { return Err(EndpointError::UnknownDialog(id)) };
        let Some(d) = call.dialog.as_mut() else { return Err(EndpointError::InvalidState("REFER")) };
        let mut refer = d.new_request(Method::Refer, &via, Some(&contact));
        refer.headers.push("Refer-To", format!("<{refer_to}>"));
        refer.headers.push("Referred-By", referred_by);
        tracing::info!(dialog = %id, "sending REFER");
        self.start_client_tx(refer, dest, transport, Purpose::Refer(id), now);
        Ok(())
    }

    /// A final response to skald's REFER.
    pub(super) fn refer_response(&mut self, id: DialogId, status: u16) {
        if status < 200 || !self.calls.contains_key(&id) {
            return;
        }
        if (200..300).contains(&status) {
            self.emit_dialog(id, DialogEvent::ReferAccepted);
        } else {
            self.emit_dialog(id, DialogEvent::ReferFailed { status });
        }
    }

    /// An in-dialog NOTIFY: 200 OK, and for the `refer` event package the
    /// sipfrag status as progress; other packages get 489 Bad Event.
    pub(super) fn handle_notify(&mut self, key: &ServerKey, id: DialogId, req: &Request, now: Instant) {
        let event = req.headers.get("Event").unwrap_or_default();
        let package = event.split(';').next().unwrap_or_default().trim();
        if !package.eq_ignore_ascii_case("refer") {
            self.respond(key, 489, "Bad Event", now, |r| r.headers.push("Allow-Events", "refer"));
            return;
        }
        self.respond(key, 200, "OK", now, |_| {});
        let terminated = req
            .headers
            .get("Subscription-State")
            .is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("terminated"));
        let Some(status) = sipfrag_status(&req.body) else {
            tracing::debug!(dialog = %id, "NOTIFY without a sipfrag status line");
            return;
        };
        let done = terminated || status >= 200;
        self.emit_dialog(id, DialogEvent::ReferProgress { status, done });
    }
}

/// The status code of a `message/sipfrag` body's first line
/// (`SIP/2.0 200 OK`).
pub(crate) fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let code: u16 = rest.split_whitespace().next()?.parse().ok()?;
    (100..700).contains(&code).then_some(code)
}
