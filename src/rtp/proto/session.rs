//! One RTP session (RFC 3550, RFC 3551 audio profile, RFC 4733 events):
//! one SSRC sending on a media clock, one remote source received through a
//! jitter buffer, RTCP reports both ways.
//!
//! # Run loop
//! [`RtpSession`] is sans-IO: it never reads the clock and never touches a
//! socket. Time is an argument of every input.
//!
//! 1. Create it with [`RtpSession::new`] at `now`; the media clock starts there.
//! 2. Feed input: [`RtpSession::handle_rtp`] / [`RtpSession::handle_rtcp`] for
//!    each datagram (with its source address and arrival time), and
//!    [`RtpSession::handle_timeout`] when the last returned deadline has come.
//!    Application commands ([`RtpSession::queue_audio`], `queue_dtmf`,
//!    `set_remote`, `set_direction`, …) are plain method calls.
//! 3. After *every* input or command, drain [`RtpSession::poll_output`] until
//!    it returns [`Output::Timeout`]: first every [`Output::Transmit`] (send
//!    them now, in order, without awaiting), then every [`Output::Event`],
//!    then the `Timeout` with the earliest instant at which the session needs
//!    `handle_timeout`: the next send slot, the next playout tick, the
//!    inactivity deadline, the RTCP deadline, or a DTMF end timeout.
//! 4. Sleep until that instant or the next datagram, whichever comes first.
//!
//! Malformed input returns [`RtpError`] and changes nothing but a counter;
//! network input never panics.
//!
//! # Sending: the media clock
//! Slot *k* is due at `start + k·ptime` and carries RTP timestamp
//! `ts₀ + k·clock_rate·ptime` (random `ts₀` and initial sequence number,
//! RFC 3550 §5.1). In each slot exactly one packet goes out: a pending RFC
//! 4733 event packet, else the next queued audio frame, else
//! `silence_payload`; the sequence number grows by one per packet sent.
//! **No bursts:** when `handle_timeout` is called late, every slot that is a
//! whole ptime or more overdue is *skipped* (its timestamp is consumed, no
//! packet is sent, queued audio is kept for later, the next packet carries
//! the marker bit as after silence, RFC 3551 §4.1) and only the latest due
//! slot is sent. So a driver that oversleeps by 100 ms sends one packet, not
//! six. Nothing is sent while no remote address is known or while sending is
//! off ([`RtpSession::set_direction`], hold); the clock still runs. The first
//! packet, and the first after a pause, has the marker bit.
//!
//! # Receiving
//! A datagram is parsed and validated ([`RtpPacket::parse`]); RTCP arriving
//! on the RTP port (RFC 5761 demux) is handled as RTCP. Then:
//! - **Source filter / symmetric RTP.** The first valid packet locks the
//!   session to its source address. With `symmetric: true` that address also
//!   becomes the send destination (whatever SDP said) and
//!   [`RtpEvent::Latched`] is emitted. Packets from any other address are
//!   dropped and counted (RTP injection), *except* that the session re-locks
//!   to a new address when the packet carries a new SSRC and the locked
//!   source has been silent for [`RELATCH_SILENCE`] (1 s) or has sent an
//!   RTCP BYE (a media server switch after a transfer). [`RtpSession::set_remote`]
//!   (re-INVITE) clears the lock, so the next packet locks again.
//! - **Statistics** (RFC 3550 A.1, A.3, A.8) cover every packet of the
//!   source whatever its payload type (they share one sequence space);
//!   interarrival jitter is measured on audio packets only (event packets
//!   repeat one timestamp).
//! - **Payload type**: audio → jitter buffer; telephone-event → DTMF
//!   receiver ([`RtpEvent::Dtmf`] once per digit); anything else is dropped
//!   and counted. With receiving off nothing is buffered.
//! - **Playout**: from the first audio packet on, one [`RtpEvent::Audio`] per
//!   ptime, `jitter_target` after that packet's arrival, from the jitter buffer
//!   (`None` = lost: conceal). A caller late by more than a second does not
//!   get the backlog: the playout clock jumps and the buffer trims itself.
//!   The buffer holds at most `2 × jitter_target + 200 ms`, oldest dropped.
//! - **Inactivity**: [`RtpEvent::Inactive`] is emitted once when no accepted
//!   RTP arrived for `inactivity_timeout` since `new` or the last packet; a
//!   new packet re-arms it. The timer is paused while receiving is off (hold
//!   with `a=inactive` may legitimately carry no RTP).
//!
//! # RTCP
//! A compound SR (if we sent RTP since the last report) or RR, plus SDES
//! CNAME, goes to the remote RTCP address: RTP port + 1 of the remote, or the
//! address the remote's RTCP really comes from (symmetric), or the RTP
//! address when the remote multiplexes RTCP on the RTP port. The interval is
//! RFC 3550 §6.3 simplified for two parties: [`RTCP_INTERVAL`] (5 s) times a
//! random factor in [0.5, 1.5), the first one after half of that. Received
//! SR/RR feed [`RtpSession::remote_report`] and [`RtpSession::rtt`].
//! SR NTP timestamps use the wall clock given to
//! [`RtpSession::set_wallclock`] (else seconds since `new`, which still
//! gives the peer a correct round-trip time).

use super::dtmf::{DtmfReceiver, DtmfSender};
use super::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, SeqUpdate, SequenceTracker};
pub use super::packet::RtpError;
use super::packet::{PacketKind, RtpHeader, RtpPacket, classify};
use super::rtcp::{
    ReportBlock, RtcpPacket, SenderInfo, build_bye, build_report, ntp_middle, parse_compound,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Nominal RTCP report interval (RFC 3550 §6.2 minimum).
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// A locked source silent this long may be replaced by a new SSRC from a
/// new address.
pub const RELATCH_SILENCE: Duration = Duration::from_secs(1);
/// A playout clock further behind than this jumps instead of catching up.
const MAX_PLAYOUT_BACKLOG: Duration = Duration::from_secs(1);
/// Seconds from 1900 (NTP era 0) to 1970 (UNIX epoch).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Static settings of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our SSRC.
    pub ssrc: u32,
    /// Payload type of the audio codec.
    pub payload_type: u8,
    /// Payload type of telephone-event (RFC 4733), if negotiated.
    pub dtmf_payload_type: Option<u8>,
    /// RTP clock rate, Hz (8000 for G.711).
    pub clock_rate: u32,
    /// Packetization time (20 ms).
    pub ptime: Duration,
    /// Where to send, from SDP; `None` until latched.
    pub remote: Option<SocketAddr>,
    /// Symmetric RTP: latch the send address to where media really comes from.
    pub symmetric: bool,
    /// Jitter buffer target depth.
    pub jitter_target: Duration,
    /// No RTP for this long → `RtpEvent::Inactive`.
    pub inactivity_timeout: Duration,
    /// One ptime of encoded silence, sent when nothing is queued.
    pub silence_payload: Vec<u8>,
}

/// Something the session wants done or reported.
#[derive(Debug)]
pub enum Output {
    /// Send a datagram.
    Transmit(Transmit),
    /// Report to the application.
    Event(RtpEvent),
    /// Nothing more until this instant (or new input).
    Timeout(Instant),
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// Destination.
    pub dest: SocketAddr,
    /// Bytes.
    pub payload: Vec<u8>,
    /// True for RTCP (send from the RTCP socket). RTCP multiplexed on the
    /// RTP port (RFC 5761) has `false`: it leaves from the RTP socket.
    pub rtcp: bool,
}

/// Events for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum RtpEvent {
    /// One ptime of received audio, played out of the jitter buffer on the
    /// media clock; `None` when the packet was lost (conceal it).
    Audio(Option<Vec<u8>>),
    /// A DTMF digit (RFC 4733), reported once at its end.
    Dtmf {
        /// `0-9`, `*`, `#`, `A-D`.
        digit: char,
        /// Duration, ms.
        duration_ms: u32,
    },
    /// Media has been latched to this source.
    Latched(SocketAddr),
    /// No RTP for the inactivity timeout.
    Inactive,
}

/// Counters for metrics and records.
#[derive(Debug, Clone, Default)]
pub struct RtpStats {
    /// Packets received (valid).
    pub packets_received: u64,
    /// Packets sent.
    pub packets_sent: u64,
    /// Packets lost (RFC 3550 A.3).
    pub packets_lost: u64,
    /// Interarrival jitter, ms (RFC 3550 A.8).
    pub jitter_ms: f64,
}

/// Drop and event counters beyond [`RtpStats`] (cumulative since `new`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Datagrams that failed to parse (RTP or RTCP).
    pub malformed: u64,
    /// Datagrams dropped because they came from an address other than the
    /// locked source (possible injection).
    pub foreign_source: u64,
    /// RTP packets of the source with a payload type we did not negotiate.
    pub wrong_payload_type: u64,
    /// Send slots skipped because `handle_timeout` came a ptime or more late.
    pub skipped_slots: u64,
    /// RTCP compound packets received and accepted.
    pub rtcp_received: u64,
    /// RTCP compound packets sent.
    pub rtcp_sent: u64,
}

/// The session.
#[derive(Debug)]
pub struct RtpSession {
    /// Settings from `new`.
    cfg: SessionConfig,
    /// Clock units per ptime.
    ptime_units: u32,
    /// Instant of `new`: origin of arrival times (A.8) and SR NTP time.
    start: Instant,
    /// Latest instant seen in any input.
    now: Instant,
    /// Wall clock (since the UNIX epoch) at `start`.
    wallclock_at_start: Duration,
    /// splitmix64 state: initial seq/ts, RTCP interval randomization.
    rng: u64,
    /// CNAME in our SDES.
    cname: String,

    /// Send destination for RTP.
    remote: Option<SocketAddr>,
    /// Send destination for RTCP.
    remote_rtcp: Option<SocketAddr>,
    /// The remote's RTCP comes from where it really is (symmetric RTCP).
    rtcp_latched: bool,
    /// The remote multiplexes RTCP on its RTP port (RFC 5761).
    rtcp_mux: bool,
    /// Sending on (off = hold).
    send_enabled: bool,
    /// Receiving on.
    recv_enabled: bool,
    /// When the next send slot is due.
    next_slot: Instant,
    /// RTP timestamp of that slot.
    slot_ts: u32,
    /// Sequence number of the next packet sent.
    seq: u16,
    /// The next audio packet carries the marker bit.
    marker_pending: bool,
    /// Encoded audio frames waiting for their slot, one ptime each.
    outbound: VecDeque<Vec<u8>>,
    /// RFC 4733 sender.
    dtmf_tx: DtmfSender,
    /// RTP packets sent.
    packets_sent: u64,
    /// RTP payload octets sent.
    octets_sent: u64,
    /// RTP sent since the last RTCP report (SR rather than RR).
    sent_since_report: bool,

    /// The source address we accept RTP from.
    latched: Option<SocketAddr>,
    /// Reception state of the current source.
    source: Option<Source>,
    /// Cumulative loss of earlier sources (A.3), packets.
    lost_prior: i64,
    /// Valid RTP packets received from accepted sources.
    packets_received: u64,
    /// Last accepted RTP packet (or `new`, or re-enabling receive).
    last_rx: Instant,
    /// `Inactive` was emitted and no packet came since.
    inactive_fired: bool,
    /// Audio jitter buffer.
    jitter: JitterBuffer,
    /// Next playout tick; `None` until the first audio packet.
    playout_next: Option<Instant>,
    /// RFC 4733 receiver.
    dtmf_rx: DtmfReceiver,

    /// When the next RTCP report is due.
    next_rtcp: Instant,
    /// The latest report block about us from the remote.
    remote_report: Option<ReportBlock>,
    /// Round-trip time from the latest report with LSR (§6.4.1).
    rtt: Option<Duration>,

    /// Drop and event counters.
    counters: SessionCounters,
    /// Datagrams to send, in order.
    transmits: VecDeque<Transmit>,
    /// Events to report, in order.
    events: VecDeque<RtpEvent>,
}

/// Reception state of one remote SSRC (RFC 3550 A.1, A.3, A.8).
#[derive(Debug)]
struct Source {
    /// Its SSRC.
    ssrc: u32,
    /// Sequence extension.
    seq: SequenceTracker,
    /// Extended sequence number of its first packet.
    base_ext: u64,
    /// Packets received (duplicates included, as A.3 counts).
    received: u64,
    /// `expected` at the previous report.
    expected_prior: u64,
    /// `received` at the previous report.
    received_prior: u64,
    /// Previous relative transit time, timestamp units.
    last_transit: Option<i32>,
    /// Interarrival jitter estimate, timestamp units.
    jitter: f64,
    /// Its latest packet.
    last_rx: Instant,
    /// Middle NTP bits of its latest SR and when it arrived.
    last_sr: Option<(u32, Instant)>,
    /// It sent RTCP BYE.
    gone: bool,
}

impl RtpSession {
    /// New session starting at `now`: the media clock's first slot is `now`.
    pub fn new(cfg: SessionConfig, now: Instant) -> Self {
        Self::with_seed(cfg, now, rand::random())
    }

    /// An RTP datagram arrived on the RTP port from `from` at `now`.
    ///
    /// # Errors
    /// [`RtpError::Malformed`] when it is neither valid RTP nor valid RTCP
    /// (or a telephone-event payload is too short); counted, nothing else
    /// changes.
    pub fn handle_rtp(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> Result<(), RtpError> {
        self.advance_now(now);
        match classify(datagram) {
            PacketKind::Rtcp => return self.ingest_rtcp(from, datagram, now, true),
            PacketKind::Other | PacketKind::Rtp => {}
        }
        let pkt = RtpPacket::parse(datagram).inspect_err(|_| self.counters.malformed += 1)?;
        let h = pkt.header;
        if !self.accept_source(from, h.ssrc, now) {
            self.counters.foreign_source += 1;
            return Ok(());
        }
        let audio = h.payload_type == self.cfg.payload_type;
        self.update_source(&h, audio, now);
        self.last_rx = now;
        self.inactive_fired = false;
        if !self.recv_enabled {
            return Ok(());
        }
        if audio {
            self.jitter.insert(h.sequence, h.ssrc, pkt.payload, now);
            if self.playout_next.is_none() {
                self.playout_next = Some(now + self.cfg.jitter_target);
            }
        } else if Some(h.payload_type) == self.cfg.dtmf_payload_type {
            let res = self.dtmf_rx.handle_packet(h.timestamp, pkt.payload, now);
            self.drain_digits();
            res.inspect_err(|_| self.counters.malformed += 1)?;
        } else {
            self.counters.wrong_payload_type += 1;
        }
        Ok(())
    }

    /// An RTCP datagram arrived on the RTCP port from `from` at `now`.
    ///
    /// # Errors
    /// [`RtpError::Malformed`] when the compound packet does not parse;
    /// counted, nothing else changes.
    pub fn handle_rtcp(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> Result<(), RtpError> {
        self.advance_now(now);
        self.ingest_rtcp(from, datagram, now, false)
    }

    /// Time advanced to `now`: sends the due slot, plays out due frames,
    /// fires inactivity, DTMF end and RTCP timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_now(now);
        self.run_send_clock(now);
        self.run_playout(now);
        self.dtmf_rx.handle_timeout(now);
        self.drain_digits();
        if self.inactivity_deadline().is_some_and(|d| now >= d) {
            self.inactive_fired = true;
            self.events.push_back(RtpEvent::Inactive);
        }
        if now >= self.next_rtcp {
            self.send_report(now, false);
            let interval = self.rtcp_interval();
            self.next_rtcp = now + interval;
        }
    }

    /// Queues one ptime of encoded audio to send on the media clock. The
    /// queue is not bounded here: the caller paces itself with
    /// [`RtpSession::outbound_len`] (a whole prompt may be queued at once).
    pub fn queue_audio(&mut self, payload: Vec<u8>) {
        self.outbound.push_back(payload);
    }

    /// Queues an RFC 4733 digit (`0-9*#A-D`) to send; `duration` is clamped
    /// to 40 ms – 5 s. Ignored (with a log line) when telephone-event was not
    /// negotiated or the digit is invalid.
    pub fn queue_dtmf(&mut self, digit: char, duration: Duration) {
        if self.cfg.dtmf_payload_type.is_none() {
            tracing::warn!(%digit, "telephone-event not negotiated; DTMF not sent");
            return;
        }
        if let Err(e) = self.dtmf_tx.queue(digit, duration) {
            tracing::warn!(error = %e, "DTMF not sent");
        }
    }

    /// Drops queued outbound audio (barge-in). Queued DTMF is kept.
    pub fn clear_outbound(&mut self) {
        self.outbound.clear();
    }

    /// Removes and returns the queued outbound audio frames, oldest first
    /// (barge-in that may turn out false: see [`RtpSession::requeue_front`]).
    pub fn take_outbound(&mut self) -> Vec<Vec<u8>> {
        self.outbound.drain(..).collect()
    }

    /// Puts frames back at the head of the outbound queue, in order (resume
    /// after a false interruption).
    pub fn requeue_front(&mut self, frames: Vec<Vec<u8>>) {
        for f in frames.into_iter().rev() {
            self.outbound.push_front(f);
        }
    }

    /// Queued outbound frames.
    pub fn outbound_len(&self) -> usize {
        self.outbound.len()
    }

    /// New remote address (re-INVITE): RTP goes there, RTCP to its port + 1,
    /// and the source lock is cleared so the next packet locks again.
    pub fn set_remote(&mut self, addr: SocketAddr) {
        self.remote = Some(addr);
        self.remote_rtcp = Some(rtcp_of(addr));
        self.rtcp_latched = false;
        self.rtcp_mux = false;
        self.latched = None;
        self.marker_pending = true;
    }

    /// Whether to send and/or receive (hold: RFC 3264 §8.4 directions).
    /// `send = false` stops RTP (the clock runs on; RTCP continues);
    /// `recv = false` ignores incoming media, stops playout and pauses the
    /// inactivity timer.
    pub fn set_direction(&mut self, send: bool, recv: bool) {
        if send && !self.send_enabled {
            self.marker_pending = true;
        }
        self.send_enabled = send;
        if !recv && self.recv_enabled {
            self.jitter.reset();
            self.playout_next = None;
            self.dtmf_rx.reset();
            self.drain_digits();
        }
        if recv && !self.recv_enabled {
            self.last_rx = self.now;
            self.inactive_fired = false;
        }
        self.recv_enabled = recv;
    }

    /// Changes the audio payload type and the silence frame sent when nothing
    /// is queued (a codec change by re-INVITE, RFC 3264 §8.3.2). Queued
    /// outbound audio, encoded for the old codec, is dropped; the jitter
    /// buffer resyncs on the new stream as on a new SSRC.
    pub fn set_payload_type(&mut self, pt: u8, silence_payload: Vec<u8>) {
        if pt == self.cfg.payload_type {
            return;
        }
        self.cfg.payload_type = pt;
        self.cfg.silence_payload = silence_payload;
        self.jitter.set_quiet(quiet_predicate(pt));
        self.clear_outbound();
    }

    /// Next output; drain until `Timeout` (Transmits first, then Events).
    pub fn poll_output(&mut self) -> Output {
        if let Some(t) = self.transmits.pop_front() {
            return Output::Transmit(t);
        }
        if let Some(e) = self.events.pop_front() {
            return Output::Event(e);
        }
        Output::Timeout(self.next_deadline())
    }

    /// Current counters.
    pub fn stats(&self) -> RtpStats {
        let lost = self.lost_prior + self.source.as_ref().map_or(0, Source::lost);
        RtpStats {
            packets_received: self.packets_received,
            packets_sent: self.packets_sent,
            packets_lost: lost.max(0) as u64,
            jitter_ms: self
                .source
                .as_ref()
                .map_or(0.0, |s| s.jitter * 1000.0 / f64::from(self.cfg.clock_rate)),
        }
    }

    /// Drop and event counters beyond [`RtpSession::stats`].
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// Jitter buffer counters (late, duplicate, overflow …).
    pub fn jitter_stats(&self) -> JitterStats {
        self.jitter.stats()
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.cfg.ssrc
    }

    /// Where RTP is sent now.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// The source address RTP is accepted from, once locked.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// The latest reception report about our stream from the remote.
    pub fn remote_report(&self) -> Option<&ReportBlock> {
        self.remote_report.as_ref()
    }

    /// Round-trip time from the latest remote report that echoed one of
    /// our SRs (RFC 3550 §6.4.1).
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Anchors SR NTP timestamps to the wall clock: `since_unix_epoch` was
    /// the wall-clock time at `at`. The driver calls this once.
    pub fn set_wallclock(&mut self, since_unix_epoch: Duration, at: Instant) {
        self.wallclock_at_start = if at >= self.start {
            since_unix_epoch.saturating_sub(at - self.start)
        } else {
            since_unix_epoch + (self.start - at)
        };
    }

    /// Queues a final report followed by RTCP BYE (RFC 3550 §6.6), for the
    /// end of the call.
    pub fn send_bye(&mut self) {
        let now = self.now;
        self.send_report(now, true);
    }

    fn with_seed(cfg: SessionConfig, now: Instant, seed: u64) -> Self {
        let mut rng = seed;
        let seq = splitmix(&mut rng) as u16;
        let ts = splitmix(&mut rng) as u32;
        let ptime = cfg.ptime.max(Duration::from_millis(1));
        let ptime_units = units(cfg.clock_rate, ptime).max(1);
        let jitter = JitterBuffer::new(JitterConfig {
            ptime,
            target: cfg.jitter_target,
            max_depth: cfg.jitter_target * 2 + Duration::from_millis(200),
            quiet: quiet_predicate(cfg.payload_type),
        });
        let mut s = Self {
            ptime_units,
            start: now,
            now,
            wallclock_at_start: Duration::ZERO,
            rng,
            cname: format!("{:08x}@skald", cfg.ssrc),
            remote: cfg.remote,
            remote_rtcp: cfg.remote.map(rtcp_of),
            rtcp_latched: false,
            rtcp_mux: false,
            send_enabled: true,
            recv_enabled: true,
            next_slot: now,
            slot_ts: ts,
            seq,
            marker_pending: true,
            outbound: VecDeque::new(),
            dtmf_tx: DtmfSender::new(cfg.clock_rate, ptime),
            packets_sent: 0,
            octets_sent: 0,
            sent_since_report: false,
            latched: None,
            source: None,
            lost_prior: 0,
            packets_received: 0,
            last_rx: now,
            inactive_fired: false,
            jitter,
            playout_next: None,
            dtmf_rx: DtmfReceiver::new(cfg.clock_rate),
            next_rtcp: now,
            remote_report: None,
            rtt: None,
            counters: SessionCounters::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            cfg: SessionConfig { ptime, ..cfg },
        };
        s.next_rtcp = now + s.rtcp_interval() / 2;
        s
    }

    fn advance_now(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.next_slot.min(self.next_rtcp);
        if let Some(p) = self.playout_next {
            t = t.min(p);
        }
        if let Some(d) = self.inactivity_deadline() {
            t = t.min(d);
        }
        if let Some(d) = self.dtmf_rx.poll_timeout() {
            t = t.min(d);
        }
        t
    }

    /// When `Inactive` is due; `None` when already fired, paused, or the
    /// timeout is too large to represent.
    fn inactivity_deadline(&self) -> Option<Instant> {
        if !self.recv_enabled || self.inactive_fired {
            return None;
        }
        self.last_rx.checked_add(self.cfg.inactivity_timeout)
    }

    fn can_send(&self) -> bool {
        self.send_enabled && self.remote.is_some()
    }

    /// Sends the latest due slot; slots a whole ptime overdue are skipped.
    fn run_send_clock(&mut self, now: Instant) {
        if self.next_slot > now {
            return;
        }
        let ptime = self.cfg.ptime;
        let stale = ((now - self.next_slot).as_nanos() / ptime.as_nanos()) as u64;
        if stale > 0 {
            self.next_slot += ptime * stale as u32;
            self.slot_ts = self
                .slot_ts
                .wrapping_add(self.ptime_units.wrapping_mul(stale as u32));
            if self.can_send() {
                self.counters.skipped_slots += stale;
                self.marker_pending = true;
            }
        }
        // Exactly one slot (the one due within the last ptime) remains due.
        let ts = self.slot_ts;
        self.next_slot += ptime;
        self.slot_ts = ts.wrapping_add(self.ptime_units);
        self.send_slot(ts);
    }

    fn send_slot(&mut self, ts: u32) {
        let Some(dest) = self.remote.filter(|_| self.send_enabled) else {
            self.marker_pending = true;
            return;
        };
        let mut out = Vec::with_capacity(12 + self.cfg.silence_payload.len().max(4));
        let dtmf = self
            .cfg
            .dtmf_payload_type
            .and_then(|pt| self.dtmf_tx.next_packet(ts).map(|p| (pt, p)));
        let payload_len = if let Some((pt, p)) = dtmf {
            let h = RtpHeader {
                marker: p.marker,
                payload_type: pt,
                sequence: self.seq,
                timestamp: p.timestamp,
                ssrc: self.cfg.ssrc,
            };
            h.write(&p.payload, &mut out);
            p.payload.len()
        } else {
            let h = RtpHeader {
                marker: std::mem::take(&mut self.marker_pending),
                payload_type: self.cfg.payload_type,
                sequence: self.seq,
                timestamp: ts,
                ssrc: self.cfg.ssrc,
            };
            match self.outbound.pop_front() {
                Some(frame) => {
                    h.write(&frame, &mut out);
                    frame.len()
                }
                None => {
                    h.write(&self.cfg.silence_payload, &mut out);
                    self.cfg.silence_payload.len()
                }
            }
        };
        self.seq = self.seq.wrapping_add(1);
        self.packets_sent += 1;
        self.octets_sent += payload_len as u64;
        self.sent_since_report = true;
        self.transmits.push_back(Transmit {
            dest,
            payload: out,
            rtcp: false,
        });
    }

    fn run_playout(&mut self, now: Instant) {
        let Some(mut tick) = self.playout_next else {
            return;
        };
        let ptime = self.cfg.ptime;
        if tick + MAX_PLAYOUT_BACKLOG < now {
            let behind = ((now - tick).as_nanos() / ptime.as_nanos()) as u32;
            tick += ptime * behind;
        }
        while tick <= now {
            let audio = match self.jitter.pop(tick) {
                Playout::Frame(f) => Some(f),
                Playout::Missing | Playout::Waiting => None,
            };
            self.events.push_back(RtpEvent::Audio(audio));
            tick += ptime;
        }
        self.playout_next = Some(tick);
    }

    /// Applies the source lock; returns whether the packet is accepted.
    fn accept_source(&mut self, from: SocketAddr, ssrc: u32, now: Instant) -> bool {
        match self.latched {
            Some(addr) if addr == from => true,
            Some(_) => {
                let replaceable = self.source.as_ref().is_none_or(|s| {
                    s.ssrc != ssrc
                        && (s.gone || now.saturating_duration_since(s.last_rx) >= RELATCH_SILENCE)
                });
                if replaceable {
                    self.latch(from);
                }
                replaceable
            }
            None => {
                self.latch(from);
                true
            }
        }
    }

    fn latch(&mut self, from: SocketAddr) {
        self.latched = Some(from);
        if !self.cfg.symmetric {
            return;
        }
        if self.remote != Some(from) {
            self.marker_pending = true;
        }
        self.remote = Some(from);
        self.remote_rtcp = Some(if self.rtcp_mux { from } else { rtcp_of(from) });
        self.rtcp_latched = false;
        self.events.push_back(RtpEvent::Latched(from));
    }

    fn update_source(&mut self, h: &RtpHeader, audio: bool, now: Instant) {
        self.packets_received += 1;
        let arrival = units(self.cfg.clock_rate, now - self.start);
        if self.source.as_ref().is_none_or(|s| s.ssrc != h.ssrc) {
            if let Some(old) = self.source.take() {
                self.lost_prior += old.lost();
                self.dtmf_rx.reset();
                self.drain_digits();
            }
            self.source = Some(Source::new(h.ssrc, h.sequence, now));
        }
        let Some(source) = self.source.as_mut() else {
            return;
        };
        source.last_rx = now;
        match source.seq.update(h.sequence) {
            SeqUpdate::Valid(_) => source.received += 1,
            SeqUpdate::Probation => {}
            SeqUpdate::Restarted(ext) => {
                self.lost_prior += source.lost();
                source.restart(ext);
            }
        }
        if audio {
            let transit = arrival.wrapping_sub(h.timestamp) as i32;
            if let Some(last) = source.last_transit {
                let d = f64::from(transit.wrapping_sub(last).unsigned_abs());
                source.jitter += (d - source.jitter) / 16.0;
            }
            source.last_transit = Some(transit);
        }
    }

    fn ingest_rtcp(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        on_rtp_port: bool,
    ) -> Result<(), RtpError> {
        let packets = parse_compound(datagram).inspect_err(|_| self.counters.malformed += 1)?;
        if let Some(l) = self.latched {
            if l.ip() != from.ip() {
                self.counters.foreign_source += 1;
                return Ok(());
            }
            if self.cfg.symmetric {
                self.remote_rtcp = Some(from);
                self.rtcp_latched = true;
            }
        }
        if on_rtp_port {
            self.rtcp_mux = true;
            if !self.rtcp_latched {
                self.remote_rtcp = self.remote;
            }
        }
        self.counters.rtcp_received += 1;
        for p in packets {
            match p {
                RtcpPacket::SenderReport {
                    ssrc,
                    info,
                    reports,
                } => {
                    if let Some(s) = self.source.as_mut().filter(|s| s.ssrc == ssrc) {
                        s.last_sr = Some((ntp_middle(info.ntp), now));
                    }
                    self.take_reports(&reports, now);
                }
                RtcpPacket::ReceiverReport { reports, .. } => self.take_reports(&reports, now),
                RtcpPacket::Bye { ssrcs, .. } => {
                    if let Some(s) = self.source.as_mut().filter(|s| ssrcs.contains(&s.ssrc)) {
                        s.gone = true;
                    }
                }
                RtcpPacket::SourceDescription { .. } | RtcpPacket::Other { .. } => {}
            }
        }
        Ok(())
    }

    fn take_reports(&mut self, reports: &[ReportBlock], now: Instant) {
        let Some(block) = reports.iter().find(|b| b.ssrc == self.cfg.ssrc) else {
            return;
        };
        self.remote_report = Some(*block);
        if block.lsr != 0 {
            let a = ntp_middle(self.ntp(now));
            let rtt = a.wrapping_sub(block.lsr).wrapping_sub(block.dlsr);
            if (rtt as i32) >= 0 {
                self.rtt = Some(Duration::from_secs_f64(f64::from(rtt) / 65536.0));
            }
        }
    }

    /// Queues SR/RR + SDES (+ BYE) to the remote RTCP address, if known.
    fn send_report(&mut self, now: Instant, bye: bool) {
        let Some(dest) = self.remote_rtcp else { return };
        let sender = self.sent_since_report.then(|| SenderInfo {
            ntp: self.ntp(now),
            rtp_timestamp: self.rtp_ts_at(now),
            packet_count: self.packets_sent as u32,
            octet_count: self.octets_sent as u32,
        });
        let block = self.source.as_mut().map(|s| s.report_block(now));
        let mut payload = build_report(self.cfg.ssrc, sender, block.as_slice(), &self.cname);
        if bye {
            payload.extend(build_bye(self.cfg.ssrc, None));
        }
        self.sent_since_report = false;
        self.counters.rtcp_sent += 1;
        self.transmits.push_back(Transmit {
            dest,
            payload,
            rtcp: !self.rtcp_mux,
        });
    }

    /// 64-bit NTP time of `now`.
    fn ntp(&self, now: Instant) -> u64 {
        let t = self.wallclock_at_start + now.saturating_duration_since(self.start);
        let secs = t.as_secs() + NTP_UNIX_OFFSET;
        let frac = (u64::from(t.subsec_nanos()) << 32) / 1_000_000_000;
        (secs << 32) | frac
    }

    /// Our media clock's RTP timestamp at `now`.
    fn rtp_ts_at(&self, now: Instant) -> u32 {
        if now <= self.next_slot {
            self.slot_ts
                .wrapping_sub(units(self.cfg.clock_rate, self.next_slot - now))
        } else {
            self.slot_ts
                .wrapping_add(units(self.cfg.clock_rate, now - self.next_slot))
        }
    }

    /// RFC 3550 §6.3 simplified: 5 s × uniform [0.5, 1.5).
    fn rtcp_interval(&mut self) -> Duration {
        let u = (splitmix(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
        RTCP_INTERVAL.mul_f64(0.5 + u)
    }

    fn drain_digits(&mut self) {
        while let Some(d) = self.dtmf_rx.poll_digit() {
            self.events.push_back(RtpEvent::Dtmf {
                digit: d.digit,
                duration_ms: d.duration_ms,
            });
        }
    }
}

impl Source {
    fn new(ssrc: u32, seq: u16, now: Instant) -> Self {
        // The first packet then goes through `update` like every other one:
        // the same sequence as `max_seq` is `Valid` and counts as received.
        let tracker = SequenceTracker::new(seq);
        Self {
            ssrc,
            base_ext: tracker.extended_max(),
            seq: tracker,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            last_transit: None,
            jitter: 0.0,
            last_rx: now,
            last_sr: None,
            gone: false,
        }
    }

    fn restart(&mut self, ext: u64) {
        self.base_ext = ext;
        self.received = 1;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.last_transit = None;
    }

    fn expected(&self) -> u64 {
        (self.seq.extended_max() + 1).saturating_sub(self.base_ext)
    }

    /// Cumulative loss (A.3); negative with duplicates.
    fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    fn report_block(&mut self, now: Instant) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        let (lsr, dlsr) = self.last_sr.map_or((0, 0), |(lsr, at)| {
            (
                lsr,
                (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32,
            )
        });
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: self.seq.extended_max().wrapping_sub(1 << 16) as u32,
            jitter: self.jitter as u32,
            lsr,
            dlsr,
        }
    }
}

/// RTCP address by the RFC 3550 §11 convention: RTP port + 1.
fn rtcp_of(rtp: SocketAddr) -> SocketAddr {
    SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
}

/// Clock-rate units in `d` (truncated, wrapping in 32 bits).
fn units(clock_rate: u32, d: Duration) -> u32 {
    (d.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as u32
}

/// splitmix64 step.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// For the static G.711 payload types (RFC 3551: 0 PCMU, 8 PCMA), the
/// predicate that tells a quiet frame, so jitter-buffer trims fall in pauses.
fn quiet_predicate(pt: u8) -> Option<fn(&[u8]) -> bool> {
    match pt {
        0 => Some(crate::rtp::codec::g711::is_quiet_mu),
        8 => Some(crate::rtp::codec::g711::is_quiet_a),
        _ => None,
    }
}

#[cfg(test)]
#[path = "tests/session.rs"]
mod tests;
