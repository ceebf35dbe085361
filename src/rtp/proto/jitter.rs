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
#[path = "tests/jitter.rs"]
mod tests;
