//! Tests of `session` in virtual time (the only place this core meets a clock:
//! the tests pick their starting instant).

use super::*;
use crate::rtp::proto::rtcp::{PT_RR, PT_SR};

const MS: Duration = Duration::from_millis(1);
const PTIME: Duration = Duration::from_millis(20);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn cfg(ssrc: u32, remote: Option<SocketAddr>) -> SessionConfig {
    SessionConfig {
        ssrc,
        payload_type: 0,
        dtmf_payload_type: Some(101),
        clock_rate: 8000,
        ptime: PTIME,
        remote,
        symmetric: true,
        jitter_target: Duration::from_millis(40),
        inactivity_timeout: Duration::from_secs(30),
        silence_payload: vec![0xff; 160],
    }
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    RtpHeader {
        marker: false,
        payload_type: pt,
        sequence: seq,
        timestamp: ts,
        ssrc,
    }
    .to_packet(payload)
}

fn header(bytes: &[u8]) -> RtpHeader {
    RtpPacket::parse(bytes).unwrap().header
}

/// One session driven on its own deadlines, with a log of what it did.
struct Solo {
    s: RtpSession,
    now: Instant,
    timeout: Instant,
    sent: Vec<(Instant, Transmit)>,
    events: Vec<(Instant, RtpEvent)>,
}

impl Solo {
    fn new(cfg: SessionConfig) -> Self {
        let now = crate::test_clock::epoch();
        let mut solo = Self {
            s: RtpSession::with_seed(cfg, now, 7),
            now,
            timeout: now,
            sent: vec![],
            events: vec![],
        };
        solo.drain();
        solo
    }
    fn drain(&mut self) {
        loop {
            match self.s.poll_output() {
                Output::Transmit(t) => self.sent.push((self.now, t)),
                Output::Event(e) => self.events.push((self.now, e)),
                Output::Timeout(t) => {
                    self.timeout = t;
                    return;
                }
            }
        }
    }
    /// Follows the session's own deadlines up to `end`.
    fn run_until(&mut self, end: Instant) {
        while self.timeout <= end {
            self.now = self.timeout.max(self.now);
            self.s.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }
    /// A driver that wakes up at `t` (late or not).
    fn wake_at(&mut self, t: Instant) {
        self.now = t;
        self.s.handle_timeout(t);
        self.drain();
    }
    fn recv(&mut self, from: SocketAddr, bytes: &[u8]) -> Result<(), RtpError> {
        let r = self.s.handle_rtp(from, bytes, self.now);
        self.drain();
        r
    }
    fn rtp_sent(&self) -> Vec<(Instant, RtpHeader)> {
        self.sent
            .iter()
            .filter(|(_, t)| !t.rtcp && classify(&t.payload) == PacketKind::Rtp)
            .map(|(at, t)| (*at, header(&t.payload)))
            .collect()
    }
    fn count(&self, pred: impl Fn(&RtpEvent) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| pred(e)).count()
    }
}

struct Flight {
    at: Instant,
    to: usize,
    from: SocketAddr,
    dest: SocketAddr,
    bytes: Vec<u8>,
}

struct Peer {
    s: RtpSession,
    addr: SocketAddr,
    timeout: Instant,
    sent: Vec<(Instant, Transmit)>,
    events: Vec<(Instant, RtpEvent)>,
}

/// Two sessions on a virtual network with latency, random extra delay
/// (reordering) and loss; time jumps from one deadline or delivery to
/// the next (str0m's `progress`, quinn's `Pair::drive`).
struct RtpPair {
    now: Instant,
    peers: [Peer; 2],
    in_flight: Vec<Flight>,
    latency: Duration,
    /// Extra delay, uniform in [0, jitter).
    jitter: Duration,
    /// RTP loss probability (RTCP is never lost).
    loss: f64,
    rng: u64,
    undeliverable: usize,
}

impl RtpPair {
    fn new(seed: u64) -> Self {
        let now = crate::test_clock::epoch();
        let a = addr("10.0.0.1:20000");
        let b = addr("10.0.0.2:30000");
        Self::with_configs(cfg(0xa, Some(b)), cfg(0xb, Some(a)), now, seed)
    }
    fn with_configs(ca: SessionConfig, cb: SessionConfig, now: Instant, seed: u64) -> Self {
        let peer = |cfg, addr: &str, s| Peer {
            s: RtpSession::with_seed(cfg, now, s),
            addr: addr.parse().unwrap(),
            timeout: now,
            sent: vec![],
            events: vec![],
        };
        let mut pair = Self {
            now,
            peers: [
                peer(ca, "10.0.0.1:20000", seed),
                peer(cb, "10.0.0.2:30000", seed ^ 0x55),
            ],
            in_flight: vec![],
            latency: Duration::from_millis(30),
            jitter: Duration::ZERO,
            loss: 0.0,
            rng: seed,
            undeliverable: 0,
        };
        pair.drain(0);
        pair.drain(1);
        pair
    }
    fn rand(&mut self) -> f64 {
        (splitmix(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn drain(&mut self, i: usize) {
        loop {
            match self.peers[i].s.poll_output() {
                Output::Transmit(t) => {
                    let p = &self.peers[i];
                    let from = if t.rtcp { rtcp_of(p.addr) } else { p.addr };
                    let is_rtp = !t.rtcp && classify(&t.payload) == PacketKind::Rtp;
                    let lost = is_rtp && self.rand() < self.loss;
                    let extra = self.jitter.mul_f64(self.rand());
                    let to = self.peers.iter().position(|p| {
                        p.addr.ip() == t.dest.ip()
                            && (p.addr.port() == t.dest.port()
                                || rtcp_of(p.addr).port() == t.dest.port())
                    });
                    match to {
                        Some(to) if !lost => self.in_flight.push(Flight {
                            at: self.now + self.latency + extra,
                            to,
                            from,
                            dest: t.dest,
                            bytes: t.payload.clone(),
                        }),
                        None => self.undeliverable += 1,
                        _ => {}
                    }
                    self.peers[i].sent.push((self.now, t));
                }
                Output::Event(e) => self.peers[i].events.push((self.now, e)),
                Output::Timeout(t) => {
                    self.peers[i].timeout = t;
                    return;
                }
            }
        }
    }
    /// Delivers a datagram from an arbitrary address (injection, new talker).
    fn inject(&mut self, to: usize, from: SocketAddr, bytes: Vec<u8>) {
        let dest = self.peers[to].addr;
        self.in_flight.push(Flight {
            at: self.now,
            to,
            from,
            dest,
            bytes,
        });
    }
    fn run_until(&mut self, end: Instant) {
        loop {
            let t_peer = self.peers[0].timeout.min(self.peers[1].timeout);
            let t = self
                .in_flight
                .iter()
                .map(|f| f.at)
                .min()
                .map_or(t_peer, |f| f.min(t_peer));
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            let mut due: Vec<Flight> = Vec::new();
            let mut i = 0;
            while i < self.in_flight.len() {
                if self.in_flight[i].at <= self.now {
                    due.push(self.in_flight.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            due.sort_by_key(|f| f.at);
            for f in due {
                let p = &mut self.peers[f.to];
                let _ = if f.dest.port() == p.addr.port() {
                    p.s.handle_rtp(f.from, &f.bytes, self.now)
                } else {
                    p.s.handle_rtcp(f.from, &f.bytes, self.now)
                };
                self.drain(f.to);
            }
            for i in 0..2 {
                if self.peers[i].timeout <= self.now {
                    self.peers[i].s.handle_timeout(self.now);
                    self.drain(i);
                }
            }
        }
        self.now = end;
    }
    fn rtp_sent(&self, i: usize) -> Vec<(Instant, RtpHeader)> {
        self.peers[i]
            .sent
            .iter()
            .filter(|(_, t)| !t.rtcp && classify(&t.payload) == PacketKind::Rtp)
            .map(|(at, t)| (*at, header(&t.payload)))
            .collect()
    }
    fn audio(&self, i: usize) -> Vec<(Instant, Option<Vec<u8>>)> {
        self.peers[i]
            .events
            .iter()
            .filter_map(|(at, e)| match e {
                RtpEvent::Audio(a) => Some((*at, a.clone())),
                _ => None,
            })
            .collect()
    }
    fn digits(&self, i: usize) -> String {
        self.peers[i]
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                RtpEvent::Dtmf { digit, .. } => Some(*digit),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn sends_exactly_one_packet_per_ptime_for_10_s() {
    let mut pair = RtpPair::new(1);
    let start = pair.now;
    pair.run_until(start + Duration::from_secs(10));
    let sent = pair.rtp_sent(0);
    assert_eq!(sent.len(), 501, "slots at 0, 20 ms, …, 10 s");
    assert_eq!(sent[0].0, start);
    assert!(sent[0].1.marker);
    for w in sent.windows(2) {
        assert_eq!(w[1].0 - w[0].0, PTIME, "never two in one slot, never a gap");
        assert_eq!(w[1].1.sequence, w[0].1.sequence.wrapping_add(1));
        assert_eq!(w[1].1.timestamp, w[0].1.timestamp.wrapping_add(160));
        assert!(!w[1].1.marker);
    }
    assert_eq!(pair.peers[0].s.stats().packets_sent, 501);
    assert_eq!(pair.peers[1].s.stats().packets_received, 500 - 1); // the last one still in flight
    assert_eq!(pair.peers[0].s.counters().skipped_slots, 0);
}

#[test]
fn late_driver_skips_slots_instead_of_bursting() {
    let mut solo = Solo::new(cfg(1, Some(addr("10.0.0.2:30000"))));
    let t0 = solo.now;
    for i in 0..50 {
        solo.s.queue_audio(vec![i; 160]);
    }
    solo.run_until(t0 + Duration::from_millis(200)); // slots 0..=10 on time
    // The driver oversleeps: next wake-up 100 ms after the 220 ms slot.
    solo.wake_at(t0 + Duration::from_millis(320));
    // And once a little late (15 ms): that slot is still sent, once.
    solo.wake_at(t0 + Duration::from_millis(355));
    solo.run_until(t0 + Duration::from_millis(500));
    let sent = solo.rtp_sent();
    let times: Vec<u64> = sent
        .iter()
        .map(|(t, _)| (*t - t0).as_millis() as u64)
        .collect();
    let mut expected: Vec<u64> = (0..=10).map(|k| k * 20).collect();
    expected.push(320); // one packet for slots 220..=320
    expected.push(355); // slot 340, 15 ms late
    expected.extend((18..=25).map(|k| k * 20)); // back on the clock
    assert_eq!(times, expected);
    let late = &sent[11].1;
    let before = &sent[10].1;
    assert_eq!(
        late.sequence,
        before.sequence.wrapping_add(1),
        "seq counts packets"
    );
    assert_eq!(
        late.timestamp,
        before.timestamp.wrapping_add(6 * 160),
        "ts counts slots"
    );
    assert!(late.marker, "discontinuity is marked");
    assert_eq!(solo.s.counters().skipped_slots, 5);
    // Audio was not thrown away: frames go out in order, none lost.
    let payloads: Vec<u8> = solo
        .sent
        .iter()
        .filter(|(_, t)| !t.rtcp)
        .map(|(_, t)| t.payload[12])
        .collect();
    assert_eq!(payloads, (0..payloads.len() as u8).collect::<Vec<_>>());
}

#[test]
fn far_behind_driver_skips_in_one_step() {
    let mut solo = Solo::new(cfg(1, Some(addr("10.0.0.2:30000"))));
    let t0 = solo.now;
    solo.wake_at(t0);
    solo.wake_at(t0 + Duration::from_secs(3600));
    let sent = solo.rtp_sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].1.timestamp.wrapping_sub(sent[0].1.timestamp),
        (180_000u32 * 160)
    );
}

#[test]
fn sequence_and_timestamp_wrap_without_loss() {
    let mut pair = RtpPair::new(2);
    pair.peers[0].s.seq = 65_500;
    pair.peers[0].s.slot_ts = u32::MAX - 160 * 40;
    let frames: Vec<Vec<u8>> = (0..150u8).map(|i| vec![i; 160]).collect();
    for f in &frames {
        pair.peers[0].s.queue_audio(f.clone());
    }
    let start = pair.now;
    pair.run_until(start + Duration::from_secs(4));
    let sent = pair.rtp_sent(0);
    assert!(
        sent.iter().any(|(_, h)| h.sequence == 0)
            && sent.iter().any(|(_, h)| h.timestamp < 160)
    );
    let b = &pair.peers[1].s;
    assert_eq!(b.stats().packets_lost, 0);
    assert_eq!(b.jitter_stats().resyncs, 0);
    assert_eq!(b.jitter_stats().missing, 0);
    let heard: Vec<Vec<u8>> = pair
        .audio(1)
        .into_iter()
        .filter_map(|(_, a)| a)
        .take(150)
        .collect();
    assert_eq!(heard, frames);
}

#[test]
fn playout_is_one_audio_event_per_ptime_after_target() {
    let mut pair = RtpPair::new(3);
    pair.jitter = Duration::from_millis(15);
    let start = pair.now;
    pair.run_until(start + Duration::from_secs(3));
    let audio = pair.audio(1);
    let first_arrival = start + pair.latency; // first packet at t0, latency 30 + extra ≥ 0
    assert!(audio[0].0 >= first_arrival + Duration::from_millis(40));
    assert!(audio[0].0 < first_arrival + Duration::from_millis(40) + Duration::from_millis(15));
    for w in audio.windows(2) {
        assert_eq!(w[1].0 - w[0].0, PTIME);
    }
    assert!(
        audio.iter().all(|(_, a)| a.is_some()),
        "15 ms jitter fits in a 40 ms buffer"
    );
}

#[test]
fn five_percent_loss_shows_in_stats_and_receiver_reports() {
    let mut pair = RtpPair::new(4);
    pair.loss = 0.05;
    let start = pair.now;
    pair.run_until(start + Duration::from_secs(30));
    let b = pair.peers[1].s.stats();
    let rate = b.packets_lost as f64 / (b.packets_lost + b.packets_received) as f64;
    assert!((0.03..0.07).contains(&rate), "loss rate {rate}");
    let report = pair.peers[0]
        .s
        .remote_report()
        .copied()
        .expect("B sent RR/SR about A");
    assert_eq!(report.ssrc, 0xa);
    assert!(
        (4..=28).contains(&report.fraction_lost),
        "fraction {}",
        report.fraction_lost
    );
    assert!(report.cumulative_lost > 0 && report.cumulative_lost as u64 <= b.packets_lost);
    let audio = pair.audio(1);
    let concealed = audio.iter().filter(|(_, a)| a.is_none()).count();
    assert!(
        concealed as u64 >= b.packets_lost * 8 / 10,
        "losses reach the caller as None"
    );
}

#[test]
fn jitter_estimate_grows_with_random_delay() {
    let calm = {
        let mut pair = RtpPair::new(5);
        let start = pair.now;
        pair.run_until(start + Duration::from_secs(5));
        pair.peers[1].s.stats().jitter_ms
    };
    let rough = {
        let mut pair = RtpPair::new(5);
        pair.jitter = Duration::from_millis(40);
        let start = pair.now;
        pair.run_until(start + Duration::from_secs(5));
        pair.peers[1].s.stats().jitter_ms
    };
    assert!(calm < 0.5, "calm {calm}");
    assert!(rough > 5.0 && rough < 40.0, "rough {rough}");
}

#[test]
fn dtmf_end_to_end_each_digit_once_even_with_loss_and_reorder() {
    for (seed, loss) in [(6, 0.0), (7, 0.05), (8, 0.10)] {
        let mut pair = RtpPair::new(seed);
        pair.loss = loss;
        pair.jitter = Duration::from_millis(30);
        for d in "1123#9*".chars() {
            pair.peers[0].s.queue_dtmf(d, Duration::from_millis(100));
        }
        let start = pair.now;
        pair.run_until(start + Duration::from_secs(4));
        assert_eq!(pair.digits(1), "1123#9*", "seed {seed} loss {loss}");
        let dtmf_packets = pair
            .rtp_sent(0)
            .iter()
            .filter(|(_, h)| h.payload_type == 101)
            .count();
        assert_eq!(dtmf_packets, 7 * 7, "7 digits × (4 updates + 3 ends)");
    }
}

#[test]
fn dtmf_digit_reported_once_to_app() {
    let mut pair = RtpPair::new(9);
    pair.peers[0].s.queue_dtmf('5', Duration::from_millis(200));
    let start = pair.now;
    pair.run_until(start + Duration::from_secs(2));
    let digits: Vec<_> = pair.peers[1]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, RtpEvent::Dtmf { .. }))
        .collect();
    assert_eq!(digits.len(), 1);
    assert_eq!(
        digits[0].1,
        RtpEvent::Dtmf {
            digit: '5',
            duration_ms: 200
        }
    );
}

#[test]
fn latches_to_the_real_source_not_the_sdp_address() {
    let now = crate::test_clock::epoch();
    let sdp_said = addr("192.0.2.50:6000"); // behind NAT; nothing listens there
    let b_addr = addr("10.0.0.2:30000");
    let mut pair =
        RtpPair::with_configs(cfg(0xa, Some(b_addr)), cfg(0xb, Some(sdp_said)), now, 10);
    pair.run_until(now + Duration::from_secs(1));
    let b = &pair.peers[1];
    let a_addr = pair.peers[0].addr;
    assert_eq!(b.s.remote(), Some(a_addr));
    assert_eq!(
        b.events
            .iter()
            .filter(|(_, e)| *e == RtpEvent::Latched(a_addr))
            .count(),
        1
    );
    let dests: Vec<SocketAddr> = b
        .sent
        .iter()
        .filter(|(_, t)| !t.rtcp)
        .map(|(_, t)| t.dest)
        .collect();
    assert_eq!(dests[0], sdp_said);
    let switch = dests.iter().position(|d| *d == a_addr).unwrap();
    assert!(dests[switch..].iter().all(|d| *d == a_addr));
    assert!(
        pair.peers[0].s.stats().packets_received > 30,
        "A hears B after latching"
    );
}

#[test]
fn injected_packets_from_a_third_address_are_dropped() {
    let mut pair = RtpPair::new(11);
    let start = pair.now;
    pair.run_until(start + Duration::from_millis(500));
    let a_addr = pair.peers[0].addr;
    let attacker = addr("10.0.0.66:7777");
    for i in 0..20u16 {
        pair.inject(1, attacker, rtp(0, 1000 + i, 5000, 0xbad, &[0xee; 160]));
        pair.inject(1, attacker, rtp(0, 2000 + i, 6000, 0xa, &[0xee; 160])); // spoofed SSRC
    }
    pair.run_until(start + Duration::from_secs(2));
    let b = &pair.peers[1].s;
    assert_eq!(b.counters().foreign_source, 40);
    assert_eq!(b.remote(), Some(a_addr));
    assert_eq!(b.latched(), Some(a_addr));
    assert!(
        pair.audio(1)
            .iter()
            .all(|(_, a)| a.as_ref().is_none_or(|p| p[0] != 0xee))
    );
    assert_eq!(b.stats().packets_lost, 0);
}

#[test]
fn relatches_to_a_new_ssrc_from_a_new_address_only_after_silence() {
    let mut solo = Solo::new(cfg(1, Some(addr("10.0.0.1:20000"))));
    let old = addr("10.0.0.1:20000");
    let new = addr("10.0.0.9:40000");
    solo.recv(old, &rtp(0, 1, 0, 0xa, &[1; 160])).unwrap();
    assert_eq!(solo.events.last().unwrap().1, RtpEvent::Latched(old));
    solo.now += Duration::from_millis(500);
    solo.recv(new, &rtp(0, 9000, 0, 0xc, &[2; 160])).unwrap(); // old source silent 0.5 s only
    assert_eq!(solo.s.latched(), Some(old));
    solo.now += Duration::from_millis(600);
    solo.recv(new, &rtp(0, 1, 0, 0xa, &[2; 160])).unwrap(); // same SSRC from elsewhere: no
    assert_eq!(solo.s.latched(), Some(old));
    solo.recv(new, &rtp(0, 9001, 160, 0xc, &[2; 160])).unwrap(); // silent 1.1 s, new SSRC
    assert_eq!(solo.s.latched(), Some(new));
    assert_eq!(solo.s.remote(), Some(new));
    assert_eq!(solo.events.last().unwrap().1, RtpEvent::Latched(new));
    assert_eq!(solo.s.counters().foreign_source, 2);
}

#[test]
fn rtcp_bye_allows_immediate_relatch() {
    let mut solo = Solo::new(cfg(1, None));
    let old = addr("10.0.0.1:20000");
    let new = addr("10.0.0.9:40000");
    solo.recv(old, &rtp(0, 1, 0, 0xa, &[1; 160])).unwrap();
    solo.s
        .handle_rtcp(rtcp_of(old), &build_bye(0xa, None), solo.now)
        .unwrap();
    solo.recv(new, &rtp(0, 50, 0, 0xc, &[2; 160])).unwrap();
    assert_eq!(solo.s.latched(), Some(new));
}

#[test]
fn set_remote_clears_the_lock() {
    let mut solo = Solo::new(cfg(1, None));
    solo.recv(addr("10.0.0.1:20000"), &rtp(0, 1, 0, 0xa, &[1; 160]))
        .unwrap();
    solo.s.set_remote(addr("10.0.0.5:5000"));
    assert_eq!(solo.s.latched(), None);
    assert_eq!(solo.s.remote(), Some(addr("10.0.0.5:5000")));
    solo.recv(addr("10.0.0.5:5002"), &rtp(0, 7, 0, 0xd, &[1; 160]))
        .unwrap();
    assert_eq!(solo.s.remote(), Some(addr("10.0.0.5:5002")));
}

#[test]
fn inactivity_fires_once_at_the_timeout_and_rearms() {
    let mut c = cfg(1, None);
    c.inactivity_timeout = Duration::from_secs(3);
    let mut solo = Solo::new(c);
    let t0 = solo.now;
    solo.run_until(t0 + Duration::from_secs(5));
    let fired: Vec<Instant> = solo
        .events
        .iter()
        .filter(|(_, e)| *e == RtpEvent::Inactive)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(fired, vec![t0 + Duration::from_secs(3)]);
    solo.recv(addr("10.0.0.1:20000"), &rtp(0, 1, 0, 0xa, &[1; 160]))
        .unwrap();
    solo.run_until(t0 + Duration::from_secs(20));
    let fired: Vec<Instant> = solo
        .events
        .iter()
        .filter(|(_, e)| *e == RtpEvent::Inactive)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        fired,
        vec![t0 + Duration::from_secs(3), t0 + Duration::from_secs(8)]
    );
}

#[test]
fn huge_inactivity_timeout_never_fires_nor_panics() {
    let mut c = cfg(1, None);
    c.inactivity_timeout = Duration::MAX;
    let mut solo = Solo::new(c);
    let t0 = solo.now;
    solo.run_until(t0 + Duration::from_secs(2));
    assert_eq!(solo.count(|e| *e == RtpEvent::Inactive), 0);
}

#[test]
fn inactivity_paused_while_not_receiving() {
    let mut c = cfg(1, None);
    c.inactivity_timeout = Duration::from_secs(3);
    let mut solo = Solo::new(c);
    let t0 = solo.now;
    solo.s.set_direction(true, false);
    solo.drain();
    solo.run_until(t0 + Duration::from_secs(10));
    assert_eq!(solo.count(|e| *e == RtpEvent::Inactive), 0);
    solo.s.set_direction(true, true);
    solo.drain();
    solo.run_until(t0 + Duration::from_secs(14));
    assert_eq!(solo.count(|e| *e == RtpEvent::Inactive), 1);
}

#[test]
fn hold_stops_sending_and_resume_marks_the_first_packet() {
    let mut pair = RtpPair::new(12);
    let start = pair.now;
    pair.run_until(start + Duration::from_secs(2));
    pair.peers[0].s.set_direction(false, true);
    pair.drain(0);
    let hold_at = pair.now;
    pair.run_until(start + Duration::from_secs(4));
    pair.peers[0].s.set_direction(true, true);
    pair.drain(0);
    pair.run_until(start + Duration::from_secs(5));
    let sent = pair.rtp_sent(0);
    assert!(
        sent.iter()
            .all(|(t, _)| *t <= hold_at || *t >= start + Duration::from_secs(4))
    );
    let resumed = sent
        .iter()
        .find(|(t, _)| *t >= start + Duration::from_secs(4))
        .unwrap();
    assert!(resumed.1.marker);
    // B's playout conceals the silence and stays on the clock.
    let b_audio = pair.audio(1);
    for w in b_audio.windows(2) {
        assert_eq!(w[1].0 - w[0].0, PTIME);
    }
    assert!(b_audio.iter().filter(|(_, a)| a.is_none()).count() >= 90);
}

#[test]
fn rtcp_continues_on_hold() {
    let mut solo = Solo::new(cfg(1, Some(addr("10.0.0.2:30000"))));
    solo.s.set_direction(false, false);
    let t0 = solo.now;
    solo.run_until(t0 + Duration::from_secs(20));
    assert!(solo.rtp_sent().is_empty());
    let rtcp: Vec<_> = solo.sent.iter().filter(|(_, t)| t.rtcp).collect();
    assert!(rtcp.len() >= 3, "{}", rtcp.len());
    assert_eq!(rtcp[0].1.payload[1], PT_RR, "nothing sent: RR, not SR");
}

#[test]
fn receive_off_ignores_incoming_audio() {
    let mut solo = Solo::new(cfg(1, None));
    solo.s.set_direction(true, false);
    solo.recv(addr("10.0.0.1:20000"), &rtp(0, 1, 0, 0xa, &[1; 160]))
        .unwrap();
    let t0 = solo.now;
    solo.run_until(t0 + Duration::from_secs(1));
    assert_eq!(solo.count(|e| matches!(e, RtpEvent::Audio(_))), 0);
}

#[test]
fn no_remote_sends_nothing_but_the_clock_runs() {
    let mut solo = Solo::new(cfg(1, None));
    let t0 = solo.now;
    let ts0 = solo.s.slot_ts;
    solo.run_until(t0 + Duration::from_millis(990));
    assert!(solo.sent.is_empty());
    solo.s.set_remote(addr("10.0.0.2:30000"));
    solo.run_until(t0 + Duration::from_millis(1000));
    let sent = solo.rtp_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.timestamp, ts0.wrapping_add(50 * 160));
    assert!(sent[0].1.marker);
    assert_eq!(solo.s.counters().skipped_slots, 0);
}

#[test]
fn take_and_requeue_keep_order() {
    let now = crate::test_clock::epoch();
    let mut s = RtpSession::with_seed(cfg(1, None), now, 3);
    for i in 0..3u8 {
        s.queue_audio(vec![i; 160]);
    }
    let taken = s.take_outbound();
    assert_eq!(s.outbound_len(), 0);
    s.queue_audio(vec![9; 160]);
    s.requeue_front(taken);
    let order: Vec<u8> = s.outbound.iter().map(|f| f[0]).collect();
    assert_eq!(order, [0, 1, 2, 9]);
}

#[test]
fn clear_outbound_drops_queued_audio() {
    let mut solo = Solo::new(cfg(1, Some(addr("10.0.0.2:30000"))));
    for _ in 0..10 {
        solo.s.queue_audio(vec![7; 160]);
    }
    assert_eq!(solo.s.outbound_len(), 10);
    solo.s.clear_outbound();
    assert_eq!(solo.s.outbound_len(), 0);
    let t0 = solo.now;
    solo.run_until(t0);
    assert_eq!(solo.sent[0].1.payload[12..], [0xff; 160]);
}

#[test]
fn poll_output_gives_transmits_then_events_then_timeout() {
    let now = crate::test_clock::epoch();
    let mut s = RtpSession::with_seed(cfg(1, Some(addr("10.0.0.2:30000"))), now, 1);
    s.handle_rtp(addr("10.0.0.2:30000"), &rtp(0, 1, 0, 0xa, &[1; 160]), now)
        .unwrap();
    s.handle_timeout(now);
    assert!(matches!(s.poll_output(), Output::Transmit(_)));
    assert!(matches!(
        s.poll_output(),
        Output::Event(RtpEvent::Latched(_))
    ));
    match s.poll_output() {
        Output::Timeout(t) => assert_eq!(t, now + PTIME),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rtcp_reports_are_randomized_around_5_s_and_give_rtt() {
    let mut pair = RtpPair::new(13);
    let start = pair.now;
    pair.run_until(start + Duration::from_secs(60));
    let reports: Vec<(Instant, &Transmit)> = pair.peers[0]
        .sent
        .iter()
        .filter(|(_, t)| t.rtcp)
        .map(|(at, t)| (*at, t))
        .collect();
    assert!(
        reports[0].0 - start >= Duration::from_millis(1250)
            && reports[0].0 - start < Duration::from_millis(3750)
    );
    for w in reports.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(
            gap >= Duration::from_millis(2500) && gap < Duration::from_millis(7500),
            "{gap:?}"
        );
    }
    assert!((8..=23).contains(&reports.len()), "{}", reports.len());
    for (_, t) in &reports {
        assert_eq!(t.dest, addr("10.0.0.2:30001"));
        let packets = parse_compound(&t.payload).unwrap();
        assert!(matches!(
            packets[0],
            RtcpPacket::SenderReport { ssrc: 0xa, .. }
        ));
        assert!(
            matches!(&packets[1], RtcpPacket::SourceDescription { chunks } if chunks[0].1.as_deref() == Some("0000000a@skald"))
        );
    }
    assert_eq!(
        pair.peers[1].s.counters().rtcp_received,
        reports.len() as u64
    );
    let rtt = pair.peers[0].s.rtt().expect("RTT from LSR/DLSR");
    assert!(rtt.abs_diff(Duration::from_millis(60)) < MS, "{rtt:?}");
}

#[test]
fn rtcp_muxed_on_the_rtp_port_is_handled_and_answered_there() {
    let mut solo = Solo::new(cfg(1, None));
    let a = addr("10.0.0.1:20000");
    solo.recv(a, &rtp(0, 1, 0, 0xa, &[1; 160])).unwrap();
    solo.recv(a, &build_report(0xa, None, &[], "a")).unwrap();
    assert_eq!(solo.s.counters().rtcp_received, 1);
    solo.run_until(solo.now + Duration::from_secs(8));
    let rtcp: Vec<&Transmit> = solo
        .sent
        .iter()
        .map(|(_, t)| t)
        .filter(|t| classify(&t.payload) == PacketKind::Rtcp)
        .collect();
    assert!(!rtcp.is_empty());
    assert!(rtcp.iter().all(|t| t.dest == a && !t.rtcp));
    assert_eq!(rtcp[0].payload[1], PT_SR);
}

#[test]
fn send_bye_queues_report_and_bye() {
    let mut solo = Solo::new(cfg(1, Some(addr("10.0.0.2:30000"))));
    solo.s.send_bye();
    solo.drain();
    let (_, t) = solo.sent.last().unwrap();
    assert!(t.rtcp);
    let packets = parse_compound(&t.payload).unwrap();
    assert!(matches!(packets.last(), Some(RtcpPacket::Bye { ssrcs, .. }) if ssrcs == &[1]));
}

#[test]
fn malformed_and_unknown_payload_types_are_counted() {
    let mut solo = Solo::new(cfg(1, None));
    let a = addr("10.0.0.1:20000");
    assert_eq!(
        solo.recv(a, &[0x80, 0, 1]),
        Err(RtpError::Malformed("shorter than the RTP header"))
    );
    assert!(
        solo.s
            .handle_rtcp(a, &[0x80, PT_RR, 0, 9], solo.now)
            .is_err()
    );
    assert_eq!(
        solo.recv(a, &rtp(101, 1, 0, 0xa, &[1])),
        Err(RtpError::Malformed(
            "telephone-event payload shorter than 4 bytes"
        ))
    );
    solo.recv(a, &rtp(13, 2, 0, 0xa, &[0x40])).unwrap(); // comfort noise: not negotiated
    let c = solo.s.counters();
    assert_eq!((c.malformed, c.wrong_payload_type), (3, 1));
    assert_eq!(solo.s.stats().packets_received, 2);
    solo.run_until(solo.now + Duration::from_secs(1));
    assert_eq!(
        solo.count(|e| matches!(e, RtpEvent::Audio(_))),
        0,
        "no audio packet: no playout"
    );
}

#[test]
fn new_ssrc_from_the_same_address_resyncs_playout() {
    let mut solo = Solo::new(cfg(1, None));
    let a = addr("10.0.0.1:20000");
    let t0 = solo.now;
    for i in 0..10u16 {
        solo.now = t0 + PTIME * u32::from(i);
        solo.recv(a, &rtp(0, 100 + i, u32::from(i) * 160, 0xa, &[1; 160]))
            .unwrap();
        solo.run_until(solo.now);
    }
    for i in 0..10u16 {
        solo.now = t0 + PTIME * u32::from(10 + i);
        solo.recv(
            a,
            &rtp(0, 5000 + i, 99 + u32::from(i) * 160, 0xe, &[2; 160]),
        )
        .unwrap();
        solo.run_until(solo.now);
    }
    solo.run_until(t0 + Duration::from_secs(1));
    let heard: Vec<u8> = solo
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            RtpEvent::Audio(Some(p)) => Some(p[0]),
            _ => None,
        })
        .collect();
    assert_eq!(
        heard.iter().filter(|&&b| b == 2).count(),
        10,
        "the new talker is heard in full"
    );
    assert_eq!(solo.s.jitter_stats().resyncs, 1);
    assert_eq!(solo.s.stats().packets_received, 20);
}

proptest::proptest! {
    #[test]
    fn network_input_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), rtcp in proptest::bool::ANY) {
        let now = crate::test_clock::epoch();
        let mut s = RtpSession::with_seed(cfg(1, None), now, 3);
        let mut b = bytes;
        if let Some(first) = b.first_mut() {
            *first = (*first & 0x3f) | 0x80; // mostly version 2, to get past the first check
        }
        let from = addr("10.0.0.1:20000");
        let _ = if rtcp { s.handle_rtcp(from, &b, now) } else { s.handle_rtp(from, &b, now) };
        s.handle_timeout(now + Duration::from_secs(1));
        while !matches!(s.poll_output(), Output::Timeout(_)) {}
    }
}
