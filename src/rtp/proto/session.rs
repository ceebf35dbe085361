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
mod tests {
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
            let now = Instant::now();
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
            let now = Instant::now();
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
        let now = Instant::now();
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
        let now = Instant::now();
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
        let now = Instant::now();
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
            let now = Instant::now();
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
}
