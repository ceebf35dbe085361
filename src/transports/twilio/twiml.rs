//! TwiML answers to Twilio's voice webhooks, written with `quick-xml`'s
//! writer (attributes and text escaped by the writer, never by hand).
//!
//! Source: Twilio docs "TwiML for Programmable Voice": `<Connect><Stream>`
//! (bidirectional Media Streams; `<Start><Stream>` is one-way and never used
//! for an agent), `<Parameter name value>` (custom parameters, delivered in
//! the Media Streams `start` message's `customParameters`), `<Dial><Sip>`
//! (the URI may carry custom SIP headers after `?`, `&`-separated; the
//! writer escapes `&` to `&amp;`), `<Say>` and `<Hangup/>`.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use std::io::Cursor;

/// `<Response><Connect><Stream url=…><Parameter …/>…</Stream></Connect></Response>`.
///
/// `stream_url`: the `wss://…/api/v1/twilio/media-stream` URL; `params`:
/// (name, value) pairs passed to the stream as custom parameters (Twilio
/// limits names+values to about 500 characters in all; callers keep them
/// short). Returns the XML document as a string.
pub fn connect_stream(stream_url: &str, params: &[(&str, &str)]) -> String {
    let mut w = document();
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

/// `<Response><Dial><Sip>URI</Sip></Dial></Response>`: bridges the call to
/// a SIP URI. `uri_with_headers` is the URI as Twilio should dial it,
/// custom headers already appended and percent-encoded
/// (`crate::agent::context::sip_uri_with_headers`); XML escaping is done here.
pub fn dial_sip(uri_with_headers: &str) -> String {
    dial_sip_auth(uri_with_headers, None)
}

/// [`dial_sip`] with digest credentials for the SIP peer's challenge
/// (`<Sip username="…" password="…">`, Twilio docs "TwiML `<Sip>`").
pub fn dial_sip_auth(uri_with_headers: &str, credentials: Option<(&str, &str)>) -> String {
    let mut w = document();
    start(&mut w, BytesStart::new("Response"));
    start(&mut w, BytesStart::new("Dial"));
    let mut sip = BytesStart::new("Sip");
    if let Some((user, password)) = credentials {
        sip.push_attribute(("username", user));
        sip.push_attribute(("password", password));
    }
    start(&mut w, sip);
    write_or_unreachable(w.write_event(Event::Text(BytesText::new(uri_with_headers))));
    end(&mut w, "Sip");
    end(&mut w, "Dial");
    end(&mut w, "Response");
    into_string(w)
}

/// `<Response><Dial callerId="…"><Number>+E164</Number></Dial></Response>`:
/// transfers the call to a phone number; `caller_id` (a number of this
/// account, e.g. the DID called) is what the person sees, when given.
pub fn dial_number(number: &str, caller_id: Option<&str>) -> String {
    let mut w = document();
    start(&mut w, BytesStart::new("Response"));
    let mut dial = BytesStart::new("Dial");
    if let Some(id) = caller_id {
        dial.push_attribute(("callerId", id));
    }
    start(&mut w, dial);
    start(&mut w, BytesStart::new("Number"));
    write_or_unreachable(w.write_event(Event::Text(BytesText::new(number))));
    end(&mut w, "Number");
    end(&mut w, "Dial");
    end(&mut w, "Response");
    into_string(w)
}

/// `<Response><Say>text</Say><Hangup/></Response>`: a sentence, then the end
/// of the call (unknown numbers).
pub fn say_hangup(text: &str) -> String {
    let mut w = document();
    start(&mut w, BytesStart::new("Response"));
    start(&mut w, BytesStart::new("Say"));
    write_or_unreachable(w.write_event(Event::Text(BytesText::new(text))));
    end(&mut w, "Say");
    write_or_unreachable(w.write_event(Event::Empty(BytesStart::new("Hangup"))));
    end(&mut w, "Response");
    into_string(w)
}

/// A writer with the XML declaration written.
fn document() -> Writer<Cursor<Vec<u8>>> {
    let mut w = Writer::new(Cursor::new(Vec::new()));
    write_or_unreachable(w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None))));
    w
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

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::Reader;

    /// One parsed element: name, attributes (unescaped), direct text.
    #[derive(Debug, PartialEq)]
    struct El {
        path: String,
        attrs: Vec<(String, String)>,
        text: String,
    }

    /// Every element of `xml` in document order, with its `/`-joined path.
    fn parse(xml: &str) -> Vec<El> {
        let mut r = Reader::from_str(xml);
        let mut stack: Vec<String> = Vec::new();
        let mut out: Vec<El> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        loop {
            match r.read_event().unwrap() {
                Event::Start(e) => {
                    stack.push(String::from_utf8(e.name().as_ref().to_vec()).unwrap());
                    out.push(el(&stack, &e));
                    open.push(out.len() - 1);
                }
                Event::Empty(e) => {
                    stack.push(String::from_utf8(e.name().as_ref().to_vec()).unwrap());
                    out.push(el(&stack, &e));
                    stack.pop();
                }
                Event::End(_) => {
                    stack.pop();
                    open.pop();
                }
                Event::Text(t) => {
                    let i = *open.last().unwrap();
                    out[i].text.push_str(&t.decode().unwrap());
                }
                Event::GeneralRef(g) => {
                    let i = *open.last().unwrap();
                    let name = g.decode().unwrap();
                    let s = quick_xml::escape::resolve_predefined_entity(&name).unwrap();
                    out[i].text.push_str(s);
                }
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    fn el(stack: &[String], e: &BytesStart<'_>) -> El {
        let attrs = e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.unescape_value().unwrap().into_owned(),
                )
            })
            .collect();
        El { path: stack.join("/"), attrs, text: String::new() }
    }

    fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn connect_stream_carries_url_and_parameters() {
        let url = "wss://voice.example.com/api/v1/twilio/media-stream?a=1&b=2";
        let xml = connect_stream(url, &[("app", "front-desk"), ("from", "+1555<0100>"), ("context", "e30.x\"y")]);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{xml}");
        assert!(xml.contains("a=1&amp;b=2"), "{xml}");
        let els = parse(&xml);
        assert_eq!(
            els,
            vec![
                El { path: "Response".into(), attrs: vec![], text: String::new() },
                El { path: "Response/Connect".into(), attrs: vec![], text: String::new() },
                El { path: "Response/Connect/Stream".into(), attrs: attrs(&[("url", url)]), text: String::new() },
                El {
                    path: "Response/Connect/Stream/Parameter".into(),
                    attrs: attrs(&[("name", "app"), ("value", "front-desk")]),
                    text: String::new()
                },
                El {
                    path: "Response/Connect/Stream/Parameter".into(),
                    attrs: attrs(&[("name", "from"), ("value", "+1555<0100>")]),
                    text: String::new()
                },
                El {
                    path: "Response/Connect/Stream/Parameter".into(),
                    attrs: attrs(&[("name", "context"), ("value", "e30.x\"y")]),
                    text: String::new()
                },
            ]
        );
    }

    #[test]
    fn dial_sip_escapes_header_separator() {
        let uri = "sip:agent@sip.example.com?X-Skald-Context=eyJ2IjoxfQ.c2ln&User-to-User=7b7d%3Bencoding%3Dhex";
        let xml = dial_sip(uri);
        assert!(xml.contains("eyJ2IjoxfQ.c2ln&amp;User-to-User="), "{xml}");
        assert!(!xml.contains("c2ln&User"), "{xml}");
        let els = parse(&xml);
        let paths: Vec<&str> = els.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["Response", "Response/Dial", "Response/Dial/Sip"]);
        assert_eq!(els[2].text, uri);
        assert!(els.iter().all(|e| e.attrs.is_empty()));
    }

    #[test]
    fn dial_number_shows_the_caller_id() {
        let els = parse(&dial_number("+15550100", Some("+15550123")));
        let paths: Vec<&str> = els.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["Response", "Response/Dial", "Response/Dial/Number"]);
        assert_eq!(els[1].attrs, attrs(&[("callerId", "+15550123")]));
        assert_eq!(els[2].text, "+15550100");
        assert!(parse(&dial_number("+15550100", None))[1].attrs.is_empty());
    }

    #[test]
    fn say_then_hangup() {
        let xml = say_hangup("Sorry & goodbye.");
        let els = parse(&xml);
        let paths: Vec<&str> = els.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["Response", "Response/Say", "Response/Hangup"]);
        assert_eq!(els[1].text, "Sorry & goodbye.");
        assert!(xml.contains("<Hangup/>"), "{xml}");
    }
}
