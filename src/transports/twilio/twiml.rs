//! TwiML answers to Twilio's voice webhooks, written with `quick-xml`'s
//! writer (attributes and text escaped by the writer, never by hand).
//!
//! Source: Twilio docs "TwiML for Programmable Voice": `<Connect><Stream>`
//! (bidirectional Media Streams; `<Start><Stream>` is one-way and never used
//! for an agent), `<Parameter name value>` (custom parameters, delivered in
//! the Media Streams `start` message's `customParameters`).

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, Event};
use std::io::Cursor;

/// `<Response><Connect><Stream url=…><Parameter …/>…</Stream></Connect></Response>`.
///
/// `stream_url`: the `wss://…/api/v1/twilio/media-stream` URL; `params`:
/// (name, value) pairs passed to the stream as custom parameters (Twilio
/// limits names+values to about 500 characters in all; callers keep them
/// short). Returns the XML document as a string.
pub fn connect_stream(stream_url: &str, params: &[(&str, &str)]) -> String {
    let mut w = Writer::new(Cursor::new(Vec::new()));
    write_or_unreachable(w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None))));
    start(&mut w, BytesStart::new("Response"));
    start(&mut w, BytesStart::new("Connect"));
    start(&mut w, BytesStart::new("Stream").with_attributes([("url", stream_url)]));
    for (name, value) in params {
        let p = BytesStart::new("Parameter").with_attributes([("name", *name), ("value", *value)]);
        write_or_unreachable(w.write_event(Event::Empty(p)));
    }
    end(&mut w, "Stream");
    end(&mut w, "Connect");
    end(&mut w, "Response");
    into_string(w)
}

/// Opens an element.
pub(crate) fn start(w: &mut Writer<Cursor<Vec<u8>>>, el: BytesStart<'_>) {
    write_or_unreachable(w.write_event(Event::Start(el)));
}

/// Closes an element.
pub(crate) fn end(w: &mut Writer<Cursor<Vec<u8>>>, name: &str) {
    write_or_unreachable(w.write_event(Event::End(BytesEnd::new(name))));
}

/// The finished document.
pub(crate) fn into_string(w: Writer<Cursor<Vec<u8>>>) -> String {
    // The writer only ever received UTF-8 text.
    String::from_utf8(w.into_inner().into_inner()).unwrap_or_default()
}

/// Writing into a `Vec` cannot fail; an error here is a bug in this module.
fn write_or_unreachable(r: std::io::Result<()>) {
    debug_assert!(r.is_ok(), "writing TwiML into memory failed: {r:?}");
}
