//! RFC 4475 torture messages (bit-exact files from the RFC's archive, under
//! tests/data/rfc4475/) through the parser and a `SipEndpoint`, plus a
//! property test feeding random and mutated bytes to the endpoint.

use proptest::prelude::*;
use skald::sip::msg::{self, MsgError, SipMessage};
use skald::sip::proto::{EndpointConfig, Output, SipEndpoint, Timers, Transport};
use std::net::SocketAddr;
use std::time::Instant;

/// §3.1.1 valid messages (requests and responses).
const VALID: &[&str] = &[
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq", "semiuri",
    "transports", "mpart01", "unreason", "noreason",
];

/// §3.1.2 invalid messages and §3.3 messages an element should reject:
/// each must get a 400 (or 505) or be dropped.
const INVALID: &[&str] = &[
    "badinv01", "clerr", "ncl", "scalar02", "quotbal", "ltgtruri", "lwsruri", "lwsstart",
    "regbadct", "badaspec", "baddate", "insuf", "trws", "mismatch01", "multi01", "mcl01",
    "escruri", "baddn", "badvers",
];

/// Invalid responses: dropped.
const INVALID_RESPONSES: &[&str] = &["bigcode", "scalarlg"];

/// Messages with a semantic answer: (file, expected status).
const SEMANTIC: &[(&str, u16)] = &[
    ("mismatch02", 501), // unknown method, mismatching CSeq: 501 preferred
    ("unkscm", 416),     // unknown Request-URI scheme
    ("novelsc", 416),
    ("bext01", 420),     // Require: unknown extension
    ("intmeth", 501),    // unknown method
    ("esc02", 501),
    ("dblreq", 405),     // REGISTER (only the first message counts)
    ("zeromf", 200),     // OPTIONS with Max-Forwards 0 is answered by a UAS
];

fn read(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn endpoint() -> SipEndpoint {
    let cfg = EndpointConfig {
        host: "127.0.0.1".into(),
        port: 5060,
        user_agent: "skald-test".into(),
        timers: Timers::default(),
    };
    SipEndpoint::new(cfg, 1, std::time::Instant::now())
}

/// Status codes of everything the endpoint sends back.
fn answers(bytes: &[u8]) -> Vec<u16> {
    let mut ep = endpoint();
    let from: SocketAddr = "192.0.2.1:5060".parse().expect("addr");
    ep.handle_datagram(from, Transport::Udp, bytes, Instant::now());
    let mut out = Vec::new();
    loop {
        match ep.poll_output() {
            Output::Transmit(t) => {
                let line = String::from_utf8_lossy(&t.bytes).lines().next().unwrap_or_default().to_string();
                let status = line.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0);
                out.push(status);
            }
            Output::Event(_) => {}
            Output::Timeout(_) => return out,
        }
    }
}

#[test]
fn valid_torture_messages_parse_and_get_no_400() {
    for name in VALID {
        let bytes = read(name);
        let parsed = msg::parse(&bytes);
        assert!(parsed.is_ok(), "{name}: {parsed:?}");
        let statuses = answers(&bytes);
        assert!(!statuses.contains(&400), "{name}: answered {statuses:?}");
    }
}

#[test]
fn valid_messages_keep_their_fields() {
    let Ok(SipMessage::Request(wsinv)) = msg::parse(&read("wsinv")) else { panic!("wsinv") };
    let h = &wsinv.headers;
    assert_eq!(h.cseq().unwrap().seq, 9);
    assert_eq!(h.max_forwards(), Some(68));
    assert_eq!(h.vias().unwrap().len(), 3);
    assert_eq!(h.vias().unwrap()[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(h.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(h.from().unwrap().tag(), Some("98asjd8"));
    assert_eq!(h.get("NewFangledHeader"), Some("newfangled value continued newfangled value"));
    assert_eq!(h.contact().unwrap().param("q"), Some(Some("0.33")));
    assert_eq!(wsinv.body.len(), 150);
    let Ok(SipMessage::Request(esc01)) = msg::parse(&read("esc01")) else { panic!("esc01") };
    let uri = esc01.parsed_uri().unwrap();
    assert_eq!(uri.user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(uri.host, "example.net");
    let Ok(SipMessage::Response(unreason)) = msg::parse(&read("unreason")) else { panic!("unreason") };
    assert_eq!(unreason.status, 200);
    assert!(unreason.reason.contains("простое"));
}

#[test]
fn invalid_torture_messages_get_400_or_are_dropped() {
    for name in INVALID {
        let bytes = read(name);
        let parsed = msg::parse(&bytes);
        assert!(
            matches!(parsed, Err(MsgError::Rejected { .. }) | Err(MsgError::Unparseable(_))),
            "{name}: {parsed:?}"
        );
        let statuses = answers(&bytes);
        assert!(
            statuses.is_empty() || statuses == [400] || statuses == [505],
            "{name}: answered {statuses:?}"
        );
    }
    let statuses = answers(&read("badvers"));
    assert_eq!(statuses, [505]);
    for name in INVALID_RESPONSES {
        assert!(matches!(msg::parse(&read(name)), Err(MsgError::BadResponse(_))), "{name}");
        assert!(answers(&read(name)).is_empty(), "{name}");
    }
}

#[test]
fn semantic_torture_messages_get_their_status() {
    for (name, status) in SEMANTIC {
        let statuses = answers(&read(name));
        assert_eq!(statuses, [*status], "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = answers(&bytes);
    }

    #[test]
    fn mutated_torture_messages_never_panic(
        idx in 0usize..VALID.len(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12),
        cut in any::<usize>(),
    ) {
        let mut bytes = read(VALID[idx]);
        for (pos, b) in edits {
            let len = bytes.len();
            if len > 0 {
                bytes[pos % len] = b;
            }
        }
        let len = bytes.len();
        bytes.truncate(cut % (len + 1));
        let _ = answers(&bytes);
    }
}
