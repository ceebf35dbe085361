//! Tracing, metrics and PII redaction.
//!
//! This module owns three process-wide concerns:
//!
//! - **Logs**: [`init_tracing`] installs a `tracing-subscriber` fmt subscriber
//!   (human text or one JSON object per line), filtered by `RUST_LOG` when set,
//!   else by the configured level.
//! - **Metrics**: [`Metrics`] is skald's Prometheus registry
//!   (`prometheus-client`), rendered in the OpenMetrics text format by
//!   [`Metrics::render`] for `GET /metrics`. Every update is an atomic
//!   operation on a pre-created handle, except the first use of a new label set
//!   (SIP method/status, call result), which takes the family's lock once, and
//!   the jitter histogram, which takes a short mutex per sample.
//! - **PII**: [`Pii`] wraps caller numbers, URIs and IP addresses in log lines
//!   and shows them redacted while [`redaction`] is on (the default). The rule
//!   is documented on [`Pii`].
//!
//! Exposed metrics:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `skald_active_calls` | gauge | |
//! | `skald_calls_total` | counter | `result` |
//! | `skald_sip_messages_total` | counter | `direction` (`in`/`out`), `method`, `status` |
//! | `skald_rtp_packets_total` | counter | `direction` (`in`/`out`) |
//! | `skald_rtp_packets_lost_total` | counter | |
//! | `skald_rtp_jitter_ms` | histogram | buckets 1, 2, 5, 10, 20, 50, 100, 200 ms |
//! | `skald_rtp_send_lateness_ms` | histogram | media-clock wake-up lateness, buckets 0.1 … 100 ms |

use crate::config::{LogFormat, LoggingConfig};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Direction of a SIP message or RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Received.
    In,
    /// Sent.
    Out,
}

/// Prometheus metrics registry shared by all subsystems (cheap to clone: one
/// `Arc`; `Send + Sync`).
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

/// The registered metric handles. Every handle shares its value with the copy
/// inside `registry`, so updating a handle updates what `render` prints.
#[derive(Debug)]
struct MetricsInner {
    /// Owns the metric descriptions; only read after construction.
    registry: Registry,
    /// `skald_active_calls`: calls started and not yet ended.
    active_calls: Gauge,
    /// `skald_calls_total{result}`: ended calls by result.
    calls_total: Family<ResultLabels, Counter>,
    /// `skald_sip_messages_total{direction,method,status}`.
    sip_messages: Family<SipLabels, Counter>,
    /// `skald_rtp_packets_total{direction="in"}`, pre-created so the audio
    /// path never takes the family lock.
    rtp_in: Counter,
    /// `skald_rtp_packets_total{direction="out"}`, pre-created likewise.
    rtp_out: Counter,
    /// `skald_rtp_packets_lost_total`.
    rtp_lost: Counter,
    /// `skald_rtp_jitter_ms`.
    rtp_jitter: Histogram,
    /// `skald_rtp_send_lateness_ms`.
    rtp_lateness: Histogram,
    /// `skald_turn_latency_ms{stage}`: end of the caller's speech → stage.
    turn_latency: Family<StageLabels, Histogram, fn() -> Histogram>,
    /// `skald_barge_ins_total`.
    barge_ins: Counter,
    /// `skald_dead_air_ms`: per voice-agent call, its longest dead air.
    dead_air: Histogram,
    /// `skald_backchannels_total`: caller acknowledgements that did not
    /// interrupt the agent.
    backchannels: Counter,
    /// `skald_turn_continuations_total`: caller turns continued after the
    /// agent's reply had started (the reply was dropped).
    continuations: Counter,
    /// `skald_tts_cache_total{result}`: sentences the TTS cache replayed
    /// (`hit`) or sent to the voice (`miss`).
    tts_cache: Family<TtsCacheLabels, Counter>,
}

/// Labels of `skald_tts_cache_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TtsCacheLabels {
    /// `hit` or `miss`.
    result: &'static str,
}

/// Labels of `skald_turn_latency_ms`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    /// `stt`, `agent`, `tts` or `first_packet`.
    stage: &'static str,
}

/// Bucket upper bounds of `skald_turn_latency_ms`, ms.
fn turn_latency_histogram() -> Histogram {
    Histogram::new([5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 500.0, 700.0, 1000.0, 2000.0, 5000.0])
}

/// Labels of `skald_calls_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    /// `completed`, `rejected`, `failed`, …
    result: String,
}

/// Labels of `skald_sip_messages_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SipLabels {
    /// `in` or `out`.
    direction: &'static str,
    /// A known SIP method, or `OTHER`.
    method: &'static str,
    /// Status code of a response; empty for a request.
    status: String,
}

/// Labels of `skald_rtp_packets_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirLabels {
    /// `in` or `out`.
    direction: &'static str,
}

/// Wraps personal data (phone numbers, SIP URIs, IPs) so logs show it
/// redacted unless redaction is off ([`set_redaction`]).
///
/// The redaction rule, applied to the wrapped value's `Display` text `s`:
///
/// 1. `s` is an IP address → `ip:<tag>`; a socket address → `ip:<tag>:<port>`,
///    where `<tag>` is the first 8 hex digits of SHA-256 over a per-process
///    random key and the IP's text. The same IP gets the same tag for the life
///    of the process (lines stay correlatable), but a tag cannot be reversed by
///    hashing all IPv4 addresses, and tags differ across restarts.
/// 2. `s` looks like a phone number (only digits, `+`, `-`, `.`, `(`, `)` and
///    spaces, at least one digit) → every digit except the last two becomes
///    `*`: `+4915112345642` → `+***********42`.
/// 3. Anything else (SIP URIs, names) → `pii:<tag>`, the tag computed as in 1.
///
/// With redaction off the value is shown as is. `Debug` prints the same text
/// as `Display`, so `?field` in a `tracing` macro is redacted too.
pub struct Pii<T>(pub T);

/// Global PII redaction switch; on by default.
static REDACT: AtomicBool = AtomicBool::new(true);

/// Bucket upper bounds of `skald_rtp_jitter_ms`, ms.
const JITTER_BUCKETS_MS: [f64; 8] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0];

/// Bucket upper bounds of `skald_rtp_send_lateness_ms`, ms.
const LATENESS_BUCKETS_MS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0];

/// SIP methods counted under their own name; anything else is `OTHER`, so a
/// peer cannot grow the label set without bound.
const SIP_METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
];

impl Metrics {
    /// HTTP `Content-Type` of [`Metrics::render`]'s output.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// A fresh registry with all skald metrics registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();

        let active_calls = Gauge::default();
        registry.register(
            "skald_active_calls",
            "Calls in progress",
            active_calls.clone(),
        );

        let calls_total = Family::<ResultLabels, Counter>::default();
        // The counter type appends `_total` to the registered name.
        registry.register("skald_calls", "Calls ended, by result", calls_total.clone());

        let sip_messages = Family::<SipLabels, Counter>::default();
        registry.register(
            "skald_sip_messages",
            "SIP messages by direction; requests by method, responses by status code",
            sip_messages.clone(),
        );

        let rtp_packets = Family::<DirLabels, Counter>::default();
        let rtp_in = rtp_packets.get_or_create_owned(&DirLabels { direction: "in" });
        let rtp_out = rtp_packets.get_or_create_owned(&DirLabels { direction: "out" });
        registry.register("skald_rtp_packets", "RTP packets by direction", rtp_packets);

        let rtp_lost = Counter::default();
        registry.register(
            "skald_rtp_packets_lost",
            "RTP packets lost (RFC 3550 A.3)",
            rtp_lost.clone(),
        );

        let rtp_jitter = Histogram::new(JITTER_BUCKETS_MS);
        registry.register(
            "skald_rtp_jitter_ms",
            "RTP interarrival jitter samples, ms (RFC 3550 6.4.1)",
            rtp_jitter.clone(),
        );

        let rtp_lateness = Histogram::new(LATENESS_BUCKETS_MS);
        registry.register(
            "skald_rtp_send_lateness_ms",
            "How late the media clock woke up for a due RTP deadline, ms (send jitter)",
            rtp_lateness.clone(),
        );

        let turn_latency = Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            turn_latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "skald_turn_latency_ms",
            "Agent reply timing: end of the caller's speech to STT final, agent reply, first TTS audio, first RTP packet, ms",
            turn_latency.clone(),
        );
        let barge_ins = Counter::default();
        registry.register("skald_barge_ins", "Times a caller interrupted the agent", barge_ins.clone());
        let dead_air = turn_latency_histogram();
        registry.register(
            "skald_dead_air_ms",
            "Per voice-agent call: longest silence on the open line while the agent owed the caller an answer, ms",
            dead_air.clone(),
        );
        let backchannels = Counter::default();
        registry.register(
            "skald_backchannels",
            "Caller acknowledgements (uh-huh, okay) over the agent that did not interrupt it",
            backchannels.clone(),
        );
        let continuations = Counter::default();
        registry.register(
            "skald_turn_continuations",
            "Caller turns that went on after the agent's reply began (the reply was dropped, the whole turn answered once)",
            continuations.clone(),
        );
        let tts_cache = Family::<TtsCacheLabels, Counter>::default();
        registry.register(
            "skald_tts_cache",
            "Sentences the TTS cache replayed (result=hit) or sent to the voice (result=miss)",
            tts_cache.clone(),
        );

        Metrics {
            inner: Arc::new(MetricsInner {
                registry,
                active_calls,
                calls_total,
                sip_messages,
                rtp_in,
                rtp_out,
                rtp_lost,
                rtp_jitter,
                rtp_lateness,
                turn_latency,
                barge_ins,
                dead_air,
                backchannels,
                continuations,
                tts_cache,
            }),
        }
    }

    /// OpenMetrics text exposition (serve it as
    /// [`Metrics::CONTENT_TYPE`]), ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would mean a
        // bug in a label encoder, and a partial page is better than none.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }

    /// A call started (active +1).
    pub fn call_started(&self) {
        self.inner.active_calls.inc();
    }

    /// A call ended with `result` (e.g. `completed`, `rejected`, `failed`); active −1.
    /// `result` must come from skald's code, not from the network (each value
    /// is a new time series).
    pub fn call_ended(&self, result: &str) {
        self.inner.active_calls.dec();
        self.inner
            .calls_total
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// A SIP message went in/out. A request passes its method and
    /// `status: None` (label `status=""`); a response passes its status code
    /// and the method of its CSeq. Methods outside the RFC 3261/3262/3265/
    /// 3311/3428/3515/3903/6086 set are counted as `OTHER`, and status codes
    /// outside 100–699 as `invalid`, so the label set stays bounded.
    pub fn sip_message(&self, dir: Dir, method: &str, status: Option<u16>) {
        let method = SIP_METHODS
            .iter()
            .find(|m| m.eq_ignore_ascii_case(method))
            .copied()
            .unwrap_or("OTHER");
        let status = match status {
            None => String::new(),
            Some(s @ 100..=699) => s.to_string(),
            Some(_) => "invalid".to_owned(),
        };
        let labels = SipLabels {
            direction: dir.as_str(),
            method,
            status,
        };
        self.inner.sip_messages.get_or_create(&labels).inc();
    }

    /// `n` RTP packets sent/received. Lock-free (one atomic add).
    pub fn rtp_packets(&self, dir: Dir, n: u64) {
        match dir {
            Dir::In => self.inner.rtp_in.inc_by(n),
            Dir::Out => self.inner.rtp_out.inc_by(n),
        };
    }

    /// `n` RTP packets lost (RFC 3550 A.3). Lock-free.
    pub fn rtp_lost(&self, n: u64) {
        self.inner.rtp_lost.inc_by(n);
    }

    /// One interarrival-jitter sample, ms. Takes a short mutex inside the
    /// histogram: call it once per report interval or per call, not per packet.
    pub fn rtp_jitter_ms(&self, ms: f64) {
        self.inner.rtp_jitter.observe(ms);
    }

    /// One agent reply's latency at `stage` (`stt`, `agent`, `tts`,
    /// `first_packet`), ms from the end of the caller's speech.
    pub fn turn_latency_ms(&self, stage: &'static str, ms: f64) {
        self.inner.turn_latency.get_or_create(&StageLabels { stage }).observe(ms);
    }

    /// A voice-agent call ended with this longest dead air, ms.
    pub fn dead_air_ms(&self, ms: f64) {
        self.inner.dead_air.observe(ms);
    }

    /// The caller said a backchannel over the agent (the agent went on).
    pub fn backchannel(&self) {
        self.inner.backchannels.inc();
    }

    /// A caller turn continued after the agent's reply began.
    pub fn continuation(&self) {
        self.inner.continuations.inc();
    }

    /// A sentence looked up in the TTS cache: replayed (`hit`) or not.
    pub fn tts_cache(&self, hit: bool) {
        self.inner.tts_cache.get_or_create(&TtsCacheLabels { result: if hit { "hit" } else { "miss" } }).inc();
    }

    /// The caller interrupted the agent (barge-in).
    pub fn barge_in(&self) {
        self.inner.barge_ins.inc();
    }

    /// How late (ms) a call's media clock woke up past a due deadline; the
    /// RTP send jitter skald adds. Observed on every media-clock wake-up.
    pub fn rtp_send_lateness_ms(&self, ms: f64) {
        self.inner.rtp_lateness.observe(ms);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Dir {
    /// The label value: `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// Installs the global tracing subscriber per config (text or JSON) and sets
/// the PII redaction switch from `cfg.redact_pii`. The filter is `RUST_LOG`
/// when set and valid, else `cfg.level`, else `info`. Safe to call more than
/// once: later calls only update the redaction switch.
pub fn init_tracing(cfg: &LoggingConfig) {
    use tracing_subscriber::EnvFilter;

    set_redaction(cfg.redact_pii);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // `try_init` fails only when a global subscriber is already set.
    let _ = match cfg.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Turns PII redaction in logs on or off, process-wide.
pub fn set_redaction(on: bool) {
    REDACT.store(on, Ordering::Relaxed);
}

/// Whether PII redaction is on (default: on).
pub fn redaction() -> bool {
    REDACT.load(Ordering::Relaxed)
}

impl<T: fmt::Display> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if redaction() {
            f.write_str(&redact(&self.0.to_string()))
        } else {
            self.0.fmt(f)
        }
    }
}

impl<T: fmt::Display> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Applies the redaction rule documented on [`Pii`] to `s`.
fn redact(s: &str) -> String {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return format!("ip:{}", tag(&ip.to_string()));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return format!("ip:{}:{}", tag(&sa.ip().to_string()), sa.port());
    }
    let phone_like = s
        .chars()
        .all(|c| c.is_ascii_digit() || "+-.() ".contains(c));
    let digits = s.chars().filter(char::is_ascii_digit).count();
    if phone_like && digits > 0 {
        let mut seen = 0;
        return s
            .chars()
            .map(|c| {
                if !c.is_ascii_digit() {
                    return c;
                }
                seen += 1;
                if seen + 2 > digits { c } else { '*' }
            })
            .collect();
    }
    format!("pii:{}", tag(s))
}

/// First 8 hex digits of SHA-256(process key ‖ `s`).
fn tag(s: &str) -> String {
    static KEY: OnceLock<[u8; 16]> = OnceLock::new();
    let key = KEY.get_or_init(rand::random);
    let mut h = Sha256::new();
    h.update(key);
    h.update(s.as_bytes());
    hex::encode(&h.finalize()[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_metric_after_updates() {
        let m = Metrics::new();
        m.call_started();
        m.call_started();
        m.call_ended("completed");
        m.sip_message(Dir::In, "INVITE", None);
        m.sip_message(Dir::Out, "INVITE", Some(200));
        m.rtp_packets(Dir::In, 3);
        m.rtp_packets(Dir::Out, 5);
        m.rtp_lost(2);
        m.rtp_jitter_ms(4.0);
        let text = m.clone().render();
        for line in [
            "skald_active_calls 1",
            "skald_calls_total{result=\"completed\"} 1",
            "skald_sip_messages_total{direction=\"in\",method=\"INVITE\",status=\"\"} 1",
            "skald_sip_messages_total{direction=\"out\",method=\"INVITE\",status=\"200\"} 1",
            "skald_rtp_packets_total{direction=\"in\"} 3",
            "skald_rtp_packets_total{direction=\"out\"} 5",
            "skald_rtp_packets_lost_total 2",
            "skald_rtp_jitter_ms_bucket{le=\"5.0\"} 1",
            "skald_rtp_jitter_ms_bucket{le=\"2.0\"} 0",
            "skald_rtp_jitter_ms_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn clones_share_values() {
        let a = Metrics::new();
        let b = a.clone();
        b.rtp_packets(Dir::In, 7);
        assert!(
            a.render()
                .contains("skald_rtp_packets_total{direction=\"in\"} 7")
        );
    }

    #[test]
    fn sip_labels_stay_bounded() {
        let m = Metrics::new();
        m.sip_message(Dir::In, "bye", None);
        m.sip_message(Dir::In, "X-EVIL-1", None);
        m.sip_message(Dir::In, "X-EVIL-2", None);
        m.sip_message(Dir::Out, "INVITE", Some(42));
        let text = m.render();
        assert!(text.contains("method=\"BYE\""));
        assert!(text.contains("{direction=\"in\",method=\"OTHER\",status=\"\"} 2"));
        assert!(text.contains("status=\"invalid\""));
        assert!(!text.contains("EVIL"));
    }

    #[test]
    fn redact_phone_numbers_keeps_last_two_digits() {
        assert_eq!(redact("+4915112345642"), "+***********42");
        assert_eq!(redact("(030) 1234-56"), "(***) ****-56");
        assert_eq!(redact("7"), "7");
    }

    #[test]
    fn redact_ips_to_stable_tags() {
        let a = redact("192.0.2.7");
        assert!(a.starts_with("ip:") && a.len() == 11, "{a}");
        assert!(!a.contains("192.0.2"), "{a}");
        assert_eq!(a, redact("192.0.2.7"));
        assert_ne!(a, redact("192.0.2.8"));
        let sa = redact("192.0.2.7:5060");
        assert_eq!(sa, format!("{a}:5060"));
        assert!(redact("2001:db8::1").starts_with("ip:"));
    }

    #[test]
    fn redact_other_text_to_tag() {
        let r = redact("sip:alice@example.com");
        assert!(r.starts_with("pii:") && r.len() == 12, "{r}");
        assert!(!r.contains("alice"), "{r}");
    }

    /// The only test that touches the global switch (tests run in parallel);
    /// it also checks that `init_tracing` may run twice.
    #[test]
    fn pii_display_follows_global_switch() {
        let cfg = LoggingConfig {
            format: LogFormat::Json,
            level: "warn".into(),
            redact_pii: false,
        };
        init_tracing(&cfg);
        init_tracing(&LoggingConfig {
            format: LogFormat::Text,
            ..cfg
        });
        assert!(!redaction());
        assert_eq!(Pii("+4915112345642").to_string(), "+4915112345642");
        assert_eq!(format!("{:?}", Pii("10.0.0.1")), "10.0.0.1");
        set_redaction(true);
        assert_eq!(Pii("+4915112345642").to_string(), "+***********42");
        assert!(format!("{:?}", Pii("10.0.0.1")).starts_with("ip:"));
    }
}
