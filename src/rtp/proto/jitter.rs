//! Receive-side sequence tracking (RFC 3550 A.1) and the audio jitter buffer.
//!
//! [`SequenceTracker`] turns 16-bit sequence numbers into 64-bit *extended*
//! ones across wrap-around (65535 → 0), and applies A.1's dropout and
//! misorder limits: a jump of more than [`MAX_DROPOUT`] ahead (or more than
//! [`MAX_MISORDER`] behind) is held on probation and only accepted as a
//! restart of the sequence when the very next packet follows it.
//!
//! [`JitterBuffer`] orders audio frames by extended sequence number and
//! releases one frame per call to [`JitterBuffer::pop`], which the session
//! calls once per ptime on its playout clock. States:
//!
//! ```text
//!            insert (first packet / new SSRC / confirmed seq jump)
//!   Empty ──────────────────────────────────────────────────► Priming
//!     ▲                                                          │ now ≥ first arrival + target
//!     │ reset                                                    ▼
//!     └──────────────────────────────────────────────────────  Playing
//!                                     pop: Frame | Missing (gap → conceal)
//! ```
//!
//! Rules while playing:
//! - a packet whose sequence was already played (or skipped) is *late*:
//!   dropped and counted; a second copy of a buffered packet is a
//!   *duplicate*: dropped and counted;
//! - a missing frame with later frames buffered is a loss: `pop` returns
//!   [`Playout::Missing`] and moves on; when nothing at all is buffered
//!   (underrun) `pop` returns `Missing` *without* moving on, so a packet that
//!   is merely late still plays (the buffer grows by one frame);
//! - the span from the next frame to the newest is bounded by `max_depth`:
//!   a packet beyond it drops the oldest frames (counted as overflow);
//! - when the depth stays more than two frames above the target for a
//!   second (50 pops at 20 ms), one frame is dropped to give the latency
//!   back (counted as trimmed) — the next frame that `JitterConfig::quiet`
//!   calls quiet, so speech is never cut;
//! - a new SSRC or a confirmed sequence jump resets the buffer and primes
//!   again (a new talker, a re-INVITE to another media server).
//!
//! Time enters only as `now` arguments; the 32-bit RTP timestamp is stored
//! but never used for ordering, so its wrap-around is harmless.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A.1: largest forward jump still taken as the same sequence (packets).
pub const MAX_DROPOUT: u16 = 3000;
/// A.1: largest backward distance still taken as reordering (packets).
pub const MAX_MISORDER: u16 = 100;

const SEQ_MOD: u64 = 1 << 16;
/// Pops in a row with excess depth before one frame is trimmed.
const TRIM_AFTER_POPS: u32 = 50;
/// Frames above the target tolerated before trimming starts counting.
const TRIM_SLACK_FRAMES: usize = 2;

/// Extends 16-bit sequence numbers (RFC 3550 A.1).
#[derive(Debug, Clone)]
pub struct SequenceTracker {
    /// Highest sequence number seen in the current cycle.
    max_seq: u16,
    /// Count of wraps × 65536, starting at one wrap so that packets from
    /// before the first one stay representable.
    cycles: u64,
    /// After a big jump: the sequence that would confirm it as a restart.
    bad_seq: Option<u16>,
}

/// What [`SequenceTracker::update`] made of a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqUpdate {
    /// Part of the current sequence; the extended number (may be below the
    /// highest seen: reordering or duplicate).
    Valid(u64),
    /// A big jump confirmed by the following packet: the sequence restarted
    /// here (extended number of this packet).
    Restarted(u64),
    /// A big jump not (yet) confirmed: drop this packet.
    Probation,
}

/// Settings of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy)]
pub struct JitterConfig {
    /// Duration of one frame (ptime).
    pub ptime: Duration,
    /// Target depth: how long the first packet waits before playout.
    pub target: Duration,
    /// Largest span held, oldest dropped beyond it (≥ target + ptime).
    pub max_depth: Duration,
    /// Which frames a latency trim may drop: those this predicate calls
    /// quiet (so a trim never cuts a word out of the caller's speech).
    /// `None`: any frame.
    pub quiet: Option<fn(&[u8]) -> bool>,
}

/// Outcome of [`JitterBuffer::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Buffered.
    Queued,
    /// The buffer was reset for a new source or sequence and this packet
    /// starts it.
    Resynced,
    /// Already played or skipped: dropped.
    Late,
    /// A copy of a buffered frame: dropped.
    Duplicate,
    /// A sequence jump on probation: dropped.
    Probation,
}

/// Outcome of [`JitterBuffer::pop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The next frame's payload.
    Frame(Vec<u8>),
    /// The frame is lost (or not here yet): conceal it.
    Missing,
    /// Not started, or priming after a reset: nothing to play yet.
    Waiting,
}

/// Counters of a [`JitterBuffer`] (cumulative since creation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames played.
    pub played: u64,
    /// Pops that returned `Missing`.
    pub missing: u64,
    /// Packets dropped because their slot had been played or skipped.
    pub late: u64,
    /// Packets dropped as duplicates.
    pub duplicate: u64,
    /// Frames dropped because the buffer was overfull.
    pub overflow: u64,
    /// Frames dropped to shrink a buffer that stayed too deep.
    pub trimmed: u64,
    /// Resets for a new SSRC or sequence.
    pub resyncs: u64,
}

/// Audio jitter buffer keyed by extended sequence number.
#[derive(Debug)]
pub struct JitterBuffer {
    /// Settings.
    cfg: JitterConfig,
    /// Target depth in frames (≥ 1).
    target_frames: usize,
    /// Max span in frames (> target_frames).
    capacity: usize,
    /// Current source; `None` when empty.
    ssrc: Option<u32>,
    /// Sequence extension for the current source.
    seq: Option<SequenceTracker>,
    /// Extended sequence number of `slots[0]`.
    next: u64,
    /// Frames from `next` on; `None` = not (yet) received. The last slot,
    /// if any, is always `Some`.
    slots: VecDeque<Option<Vec<u8>>>,
    /// Number of `Some` in `slots`.
    buffered: usize,
    /// Playout may start at this instant (priming ends).
    primed_at: Option<Instant>,
    /// Whether a frame has been popped since the last reset.
    playing: bool,
    /// Pops in a row with too much depth.
    excess_run: u32,
    /// Counters.
    stats: JitterStats,
}

impl SequenceTracker {
    /// Starts tracking at `seq`.
    pub fn new(seq: u16) -> Self {
        Self {
            max_seq: seq,
            cycles: SEQ_MOD,
            bad_seq: None,
        }
    }

    /// Classifies the next sequence number (A.1 `update_seq`).
    pub fn update(&mut self, seq: u16) -> SeqUpdate {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += SEQ_MOD;
            }
            self.max_seq = seq;
            self.bad_seq = None;
            SeqUpdate::Valid(self.cycles + u64::from(seq))
        } else if udelta <= u16::MAX - MAX_MISORDER + 1 {
            // A very large jump: accept only if the next packet follows it.
            if self.bad_seq == Some(seq) {
                self.cycles += SEQ_MOD;
                self.max_seq = seq;
                self.bad_seq = None;
                SeqUpdate::Restarted(self.cycles + u64::from(seq))
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                SeqUpdate::Probation
            }
        } else if seq > self.max_seq {
            // Reordered from before the last wrap.
            SeqUpdate::Valid(self.cycles - SEQ_MOD + u64::from(seq))
        } else {
            SeqUpdate::Valid(self.cycles + u64::from(seq))
        }
    }

    /// Extended highest sequence number seen.
    pub fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(cfg: JitterConfig) -> Self {
        let ptime = cfg.ptime.max(Duration::from_millis(1));
        let target_frames = (cfg.target.as_nanos().div_ceil(ptime.as_nanos()) as usize).max(1);
        let capacity =
            ((cfg.max_depth.as_nanos() / ptime.as_nanos()) as usize).max(target_frames + 2);
        Self {
            cfg,
            target_frames,
            capacity,
            ssrc: None,
            seq: None,
            next: 0,
            slots: VecDeque::with_capacity(capacity),
            buffered: 0,
            primed_at: None,
            playing: false,
            excess_run: 0,
            stats: JitterStats::default(),
        }
    }

    /// Offers one received audio packet (`seq`, `ssrc` from its header)
    /// arriving at `now`. The payload is copied only when buffered.
    pub fn insert(&mut self, seq: u16, ssrc: u32, payload: &[u8], now: Instant) -> Insert {
        let (Some(tracker), true) = (self.seq.as_mut(), self.ssrc == Some(ssrc)) else {
            self.restart(ssrc, seq, now);
            return self.start_with(payload);
        };
        match tracker.update(seq) {
            SeqUpdate::Probation => Insert::Probation,
            SeqUpdate::Restarted(_) => {
                self.restart(ssrc, seq, now);
                self.start_with(payload)
            }
            SeqUpdate::Valid(ext) => self.place(ext, payload),
        }
    }

    /// Releases the frame for the next ptime (call once per ptime).
    pub fn pop(&mut self, now: Instant) -> Playout {
        match self.primed_at {
            Some(t) if now >= t => {}
            _ => return Playout::Waiting,
        }
        if self.buffered == 0 {
            // Underrun: hold the position so a late packet still plays.
            self.stats.missing += 1;
            return Playout::Missing;
        }
        self.playing = true;
        self.track_excess();
        let out = self.take_front();
        match out {
            Some(frame) => {
                self.stats.played += 1;
                Playout::Frame(frame)
            }
            None => {
                self.stats.missing += 1;
                Playout::Missing
            }
        }
    }

    /// Drops everything; the next packet primes again.
    pub fn reset(&mut self) {
        self.ssrc = None;
        self.seq = None;
        self.slots.clear();
        self.buffered = 0;
        self.primed_at = None;
        self.playing = false;
        self.excess_run = 0;
    }

    /// Frames currently buffered.
    pub fn len(&self) -> usize {
        self.buffered
    }

    /// Whether no frame is buffered.
    pub fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Target depth in frames.
    pub fn target_frames(&self) -> usize {
        self.target_frames
    }

    fn restart(&mut self, ssrc: u32, seq: u16, now: Instant) {
        if self.ssrc.is_some() {
            self.stats.resyncs += 1;
        }
        self.reset();
        let tracker = SequenceTracker::new(seq);
        self.next = tracker.extended_max();
        self.seq = Some(tracker);
        self.ssrc = Some(ssrc);
        self.primed_at = Some(now + self.cfg.target);
    }

    fn start_with(&mut self, payload: &[u8]) -> Insert {
        self.slots.push_back(Some(payload.to_vec()));
        self.buffered = 1;
        Insert::Resynced
    }

    fn place(&mut self, ext: u64, payload: &[u8]) -> Insert {
        if ext < self.next {
            // Before playout starts, an earlier packet can still go in front.
            let room = self.capacity.saturating_sub(self.slots.len()) as u64;
            if self.playing || self.next - ext > room {
                self.stats.late += 1;
                return Insert::Late;
            }
            for _ in ext..self.next {
                self.slots.push_front(None);
            }
            self.next = ext;
        }
        let mut idx = (ext - self.next) as usize;
        if idx >= self.capacity {
            // Overfull: drop the oldest until the packet fits.
            let drop = idx + 1 - self.capacity;
            for _ in 0..drop {
                if self.take_front().is_some() {
                    self.stats.overflow += 1;
                }
            }
            idx = (ext - self.next) as usize;
        }
        if idx < self.slots.len() {
            let slot = &mut self.slots[idx];
            if slot.is_some() {
                self.stats.duplicate += 1;
                return Insert::Duplicate;
            }
            *slot = Some(payload.to_vec());
        } else {
            self.slots.resize(idx, None);
            self.slots.push_back(Some(payload.to_vec()));
        }
        self.buffered += 1;
        Insert::Queued
    }

    /// Removes the front slot (advancing `next`) whether or not it holds a frame.
    /// Whether the next frame may be trimmed (quiet, or no predicate).
    fn front_is_quiet(&self) -> bool {
        match (self.cfg.quiet, self.slots.front()) {
            (Some(quiet), Some(Some(frame))) => quiet(frame),
            _ => true,
        }
    }

    /// Sets which frames a latency trim may drop (see [`JitterConfig::quiet`]).
    pub fn set_quiet(&mut self, quiet: Option<fn(&[u8]) -> bool>) {
        self.cfg.quiet = quiet;
    }

    fn take_front(&mut self) -> Option<Vec<u8>> {
        self.next += 1;
        let frame = self.slots.pop_front().flatten();
        if frame.is_some() {
            self.buffered -= 1;
        }
        frame
    }

    /// Trims one frame when the depth stayed above target + slack too long.
    fn track_excess(&mut self) {
        if self.slots.len() > self.target_frames + TRIM_SLACK_FRAMES {
            self.excess_run += 1;
            if self.excess_run >= TRIM_AFTER_POPS && self.front_is_quiet() {
                self.excess_run = 0;
                if self.take_front().is_some() {
                    self.stats.trimmed += 1;
                }
            }
        } else {
            self.excess_run = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTIME: Duration = Duration::from_millis(20);

    fn buffer(target_ms: u64) -> JitterBuffer {
        JitterBuffer::new(JitterConfig {
            ptime: PTIME,
            target: Duration::from_millis(target_ms),
            max_depth: Duration::from_millis(200),
            quiet: None,
        })
    }

    fn frame(seq: u16) -> Vec<u8> {
        seq.to_be_bytes().to_vec()
    }

    /// Pops `n` frames at 20 ms spacing starting at `t`; returns the seqs
    /// played (`None` for missing) and the next tick.
    fn pop_n(jb: &mut JitterBuffer, t: Instant, n: usize) -> (Vec<Option<u16>>, Instant) {
        let mut out = Vec::new();
        let mut t = t;
        for _ in 0..n {
            out.push(match jb.pop(t) {
                Playout::Frame(f) => Some(u16::from_be_bytes([f[0], f[1]])),
                Playout::Missing => None,
                Playout::Waiting => panic!("waiting at a tick"),
            });
            t += PTIME;
        }
        (out, t)
    }

    #[test]
    fn tracker_extends_across_wrap_and_reorder() {
        let mut t = SequenceTracker::new(65534);
        let base = t.extended_max();
        assert_eq!(t.update(65535), SeqUpdate::Valid(base + 1));
        assert_eq!(t.update(0), SeqUpdate::Valid(base + 2));
        assert_eq!(t.update(65533), SeqUpdate::Valid(base - 1)); // reordered from before the wrap
        assert_eq!(t.update(2), SeqUpdate::Valid(base + 4));
        assert_eq!(t.update(1), SeqUpdate::Valid(base + 3));
        assert_eq!(t.extended_max(), base + 4);
    }

    #[test]
    fn tracker_big_jump_needs_confirmation() {
        let mut t = SequenceTracker::new(100);
        assert_eq!(t.update(20_000), SeqUpdate::Probation);
        assert_eq!(t.update(101), SeqUpdate::Valid(SEQ_MOD + 101)); // old stream goes on
        assert_eq!(t.update(20_000), SeqUpdate::Probation);
        assert!(matches!(t.update(20_001), SeqUpdate::Restarted(_)));
        assert!(matches!(t.update(20_002), SeqUpdate::Valid(_)));
    }

    #[test]
    fn waits_for_target_then_plays_in_order() {
        let t0 = Instant::now();
        let mut jb = buffer(40);
        assert_eq!(jb.pop(t0), Playout::Waiting);
        assert_eq!(jb.insert(10, 1, &frame(10), t0), Insert::Resynced);
        assert_eq!(jb.insert(11, 1, &frame(11), t0 + PTIME), Insert::Queued);
        assert_eq!(jb.pop(t0 + PTIME), Playout::Waiting);
        assert_eq!(jb.insert(12, 1, &frame(12), t0 + 2 * PTIME), Insert::Queued);
        let (played, _) = pop_n(&mut jb, t0 + 2 * PTIME, 3);
        assert_eq!(played, vec![Some(10), Some(11), Some(12)]);
    }

    #[test]
    fn reorder_is_repaired() {
        let t0 = Instant::now();
        let mut jb = buffer(40);
        for s in [1u16, 3, 2, 5, 4] {
            jb.insert(s, 1, &frame(s), t0);
        }
        let (played, _) = pop_n(&mut jb, t0 + 2 * PTIME, 5);
        assert_eq!(played, vec![Some(1), Some(2), Some(3), Some(4), Some(5)]);
    }

    #[test]
    fn earlier_packet_before_playout_goes_in_front() {
        let t0 = Instant::now();
        let mut jb = buffer(40);
        jb.insert(5, 1, &frame(5), t0);
        assert_eq!(jb.insert(4, 1, &frame(4), t0), Insert::Queued);
        let (played, _) = pop_n(&mut jb, t0 + 2 * PTIME, 2);
        assert_eq!(played, vec![Some(4), Some(5)]);
    }

    #[test]
    fn loss_gives_missing_then_continues() {
        let t0 = Instant::now();
        let mut jb = buffer(40);
        for s in [1u16, 2, 4, 5] {
            jb.insert(s, 1, &frame(s), t0);
        }
        let (played, _) = pop_n(&mut jb, t0 + 2 * PTIME, 4);
        assert_eq!(played, vec![Some(1), Some(2), None, Some(4)]);
        assert_eq!(jb.stats().missing, 1);
    }

    #[test]
    fn duplicates_dropped() {
        let t0 = Instant::now();
        let mut jb = buffer(40);
        jb.insert(1, 1, &frame(1), t0);
        jb.insert(2, 1, &frame(2), t0);
        assert_eq!(jb.insert(2, 1, &frame(2), t0), Insert::Duplicate);
        let (played, t) = pop_n(&mut jb, t0 + 2 * PTIME, 2);
        assert_eq!(played, vec![Some(1), Some(2)]);
        assert_eq!(jb.stats().duplicate, 1);
        // A copy of a played packet is late, not replayed.
        assert_eq!(jb.insert(2, 1, &frame(2), t), Insert::Late);
    }

    #[test]
    fn late_packet_after_its_slot_is_dropped() {
        let t0 = Instant::now();
        let mut jb = buffer(20);
        jb.insert(1, 1, &frame(1), t0);
        jb.insert(3, 1, &frame(3), t0 + 2 * PTIME);
        let (played, t) = pop_n(&mut jb, t0 + 2 * PTIME, 2);
        assert_eq!(played, vec![Some(1), None]);
        assert_eq!(jb.insert(2, 1, &frame(2), t), Insert::Late);
        let (played, _) = pop_n(&mut jb, t, 1);
        assert_eq!(played, vec![Some(3)]);
        assert_eq!(jb.stats().late, 1);
    }

    #[test]
    fn underrun_holds_position_so_a_slow_packet_still_plays() {
        let t0 = Instant::now();
        let mut jb = buffer(20);
        jb.insert(1, 1, &frame(1), t0);
        let (played, t) = pop_n(&mut jb, t0 + PTIME, 2);
        assert_eq!(played, vec![Some(1), None]); // 2 is not here: underrun
        jb.insert(2, 1, &frame(2), t);
        let (played, _) = pop_n(&mut jb, t, 1);
        assert_eq!(played, vec![Some(2)]);
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn sequence_wrap_65535_to_0() {
        let t0 = Instant::now();
        let mut jb = buffer(40);
        let seqs = [65533u16, 65534, 65535, 0, 1, 2];
        // Deliver around the wrap slightly out of order.
        for s in [65533u16, 65534, 0, 65535, 2, 1] {
            assert_ne!(jb.insert(s, 1, &frame(s), t0), Insert::Late);
        }
        let (played, _) = pop_n(&mut jb, t0 + 2 * PTIME, 6);
        assert_eq!(played, seqs.iter().map(|&s| Some(s)).collect::<Vec<_>>());
        assert_eq!(jb.stats().resyncs, 0);
    }

    #[test]
    fn timestamp_wrap_is_irrelevant_to_ordering() {
        // Steady stream whose RTP timestamps wrap mid-way: the buffer is
        // keyed by sequence, so it plays on without a resync or a gap.
        let t0 = Instant::now();
        let mut jb = buffer(40);
        let mut ts = u32::MAX - 3 * 160;
        let mut t = t0;
        let mut played = Vec::new();
        for s in 0u16..10 {
            jb.insert(s, 1, &[ts as u8, s as u8], t);
            ts = ts.wrapping_add(160);
            if t >= t0 + 2 * PTIME
                && let Playout::Frame(f) = jb.pop(t)
            {
                played.push(f[1]);
            }
            t += PTIME;
        }
        assert_eq!(played, (0u8..8).collect::<Vec<_>>());
        assert_eq!(jb.stats().resyncs, 0);
        assert_eq!(jb.stats().missing, 0);
    }

    #[test]
    fn ssrc_change_resyncs_and_primes_again() {
        let t0 = Instant::now();
        let mut jb = buffer(40);
        jb.insert(1, 1, &frame(1), t0);
        let (_, t) = pop_n(&mut jb, t0 + 2 * PTIME, 1);
        assert_eq!(jb.insert(9000, 2, &frame(9000), t), Insert::Resynced);
        assert_eq!(jb.pop(t), Playout::Waiting);
        assert_eq!(jb.pop(t + 2 * PTIME), Playout::Frame(frame(9000)));
        assert_eq!(jb.stats().resyncs, 1);
    }

    #[test]
    fn big_seq_jump_resyncs_after_confirmation() {
        let t0 = Instant::now();
        let mut jb = buffer(20);
        jb.insert(1, 1, &frame(1), t0);
        assert_eq!(jb.insert(40_000, 1, &frame(40_000), t0), Insert::Probation);
        assert_eq!(jb.insert(40_001, 1, &frame(40_001), t0), Insert::Resynced);
        assert_eq!(jb.pop(t0 + PTIME), Playout::Frame(frame(40_001)));
    }

    #[test]
    fn overfull_drops_oldest() {
        let t0 = Instant::now();
        let mut jb = buffer(40); // capacity 10 frames (200 ms)
        for s in 0u16..15 {
            jb.insert(s, 1, &frame(s), t0);
        }
        assert_eq!(jb.len(), 10);
        assert_eq!(jb.stats().overflow, 5);
        let (played, _) = pop_n(&mut jb, t0 + 2 * PTIME, 1);
        assert_eq!(played, vec![Some(5)]);
    }

    #[test]
    fn excess_depth_is_trimmed_after_a_second() {
        let t0 = Instant::now();
        let mut jb = buffer(20); // target 1 frame
        // Arrive 6 frames deep, then steady one in / one out.
        for s in 0u16..6 {
            jb.insert(s, 1, &frame(s), t0);
        }
        let mut t = t0 + PTIME;
        for s in 6u16..126 {
            jb.insert(s, 1, &frame(s), t);
            let _ = jb.pop(t);
            t += PTIME;
        }
        assert!(jb.stats().trimmed >= 2, "{:?}", jb.stats());
        assert!(jb.len() <= 1 + 1 + TRIM_SLACK_FRAMES, "depth {}", jb.len());
    }

    #[test]
    fn trims_fall_in_pauses_never_in_speech() {
        // Frames of seq 0..60 are "speech" (first byte 1), later ones quiet.
        fn quiet(f: &[u8]) -> bool {
            f[0] == 0
        }
        let mut jb = JitterBuffer::new(JitterConfig {
            ptime: PTIME,
            target: Duration::from_millis(20),
            max_depth: Duration::from_millis(200),
            quiet: Some(quiet),
        });
        let payload = |s: u16| vec![u8::from(s < 60), 0];
        let t0 = Instant::now();
        for s in 0u16..6 {
            jb.insert(s, 1, &payload(s), t0);
        }
        let mut t = t0 + PTIME;
        let mut played_speech = 0;
        for s in 6u16..160 {
            jb.insert(s, 1, &payload(s), t);
            if let Playout::Frame(f) = jb.pop(t) {
                played_speech += usize::from(f[0] == 1);
            }
            t += PTIME;
        }
        assert_eq!(played_speech, 60, "every speech frame played: {:?}", jb.stats());
        assert!(jb.stats().trimmed >= 1, "the excess went in the pause: {:?}", jb.stats());
    }
}
