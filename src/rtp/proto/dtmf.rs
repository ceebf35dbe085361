//! RFC 4733 telephone-events (DTMF digits 0–15) over RTP.
//!
//! Payload (§2.3), 4 bytes, one per RTP packet:
//! ```text
//!  0                   1                   2                   3
//! |     event     |E|R| volume    |          duration             |
//! ```
//! `event` 0–9 are digits, 10 `*`, 11 `#`, 12–15 `A`–`D`; `duration` is in
//! RTP clock units since the event's start, which is the packet's RTP
//! timestamp (the same in every packet of one event).
//!
//! **Receive** ([`DtmfReceiver`]): a sender emits many packets per event
//! (first with the marker bit, updates every ptime with growing duration,
//! then the end packet with the E bit, sent three times). Exactly one digit
//! is reported per event:
//! - an event is identified by its RTP timestamp, so a new timestamp is a
//!   new event even when the digit repeats ("11" is two events);
//! - the digit is reported when the first E packet arrives; the redundant
//!   E packets and any reordered update after it are ignored;
//! - if every end packet is lost, the digit is reported when the next event
//!   starts or after [`DTMF_END_TIMEOUT`] without a packet of that event;
//! - packets of an event older (by serial timestamp comparison, wrap-safe)
//!   than the latest one are stale and ignored.
//!
//! **Send** ([`DtmfSender`], §2.5): one event per queued digit, started on a
//! media-clock slot; the first packet carries the marker bit, every packet
//! carries the event start timestamp, the duration grows by one ptime per
//! slot, and the end packet (E bit, final duration) is sent three times.
//! Two silent slots separate consecutive events.

use super::packet::RtpError;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// An event whose end packets were all lost is reported after this long
/// without any packet of it.
pub const DTMF_END_TIMEOUT: Duration = Duration::from_millis(500);

/// Shortest digit sent (ITU-T Q.24 minimum tone).
pub const MIN_DIGIT: Duration = Duration::from_millis(40);
/// Longest digit sent (keeps the 16-bit duration field far from overflow).
pub const MAX_DIGIT: Duration = Duration::from_secs(5);

/// Volume field of sent events: −10 dBm0.
const SEND_VOLUME: u8 = 10;
/// How many times the end packet is sent (§2.5.1.4).
const END_PACKETS: u8 = 3;
/// Slots of audio between two sent events.
const GAP_SLOTS: u32 = 2;

/// Errors of the DTMF sender.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DtmfError {
    /// Not one of `0-9*#A-D`.
    #[error("not a DTMF digit: {0:?}")]
    InvalidDigit(char),
}

/// A received digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    /// `0-9`, `*`, `#`, `A-D`.
    pub digit: char,
    /// Duration, ms (from the last duration field seen).
    pub duration_ms: u32,
}

/// One telephone-event packet to send: the RTP header bits that differ from
/// audio plus the 4-byte payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// Marker bit (first packet of the event).
    pub marker: bool,
    /// RTP timestamp: the event's start slot.
    pub timestamp: u32,
    /// Event payload (§2.3).
    pub payload: [u8; 4],
}

/// RFC 4733 receiver: one digit per event.
#[derive(Debug)]
pub struct DtmfReceiver {
    /// RTP clock rate of telephone-event, Hz.
    clock_rate: u32,
    /// The latest event seen (kept after reporting to absorb its redundancy).
    latest: Option<RxEvent>,
    /// Digits ready for [`DtmfReceiver::poll_digit`].
    ready: VecDeque<DtmfDigit>,
}

#[derive(Debug, Clone, Copy)]
struct RxEvent {
    /// RTP timestamp identifying the event.
    timestamp: u32,
    /// Event code (0–255; only 0–15 are reported).
    code: u8,
    /// Largest duration seen, clock units.
    duration: u16,
    /// Last packet of this event.
    last_seen: Instant,
    /// Already reported (or not reportable).
    done: bool,
}

/// RFC 4733 sender: paced by the caller, one packet per media-clock slot.
#[derive(Debug)]
pub struct DtmfSender {
    /// Clock units per ptime.
    ptime_units: u32,
    /// Clock rate, Hz.
    clock_rate: u32,
    /// Digits waiting: (event code, total duration in clock units).
    queue: VecDeque<(u8, u32)>,
    /// The event being sent.
    active: Option<TxEvent>,
    /// Silent slots left before the next event may start.
    gap: u32,
}

#[derive(Debug, Clone, Copy)]
struct TxEvent {
    code: u8,
    start_ts: u32,
    total: u32,
    /// End packets sent so far (0 = still in progress).
    ends_sent: u8,
}

/// Event code for a digit character (`0-9*#A-D`, case-insensitive letters).
pub fn event_code(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// Digit character for an event code 0–15.
pub fn event_digit(code: u8) -> Option<char> {
    const DIGITS: &[u8; 16] = b"0123456789*#ABCD";
    DIGITS.get(usize::from(code)).map(|&b| b as char)
}

impl DtmfReceiver {
    /// A receiver for telephone-event at `clock_rate` Hz (8000 usually).
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            latest: None,
            ready: VecDeque::new(),
        }
    }

    /// A telephone-event packet with RTP `timestamp` and `payload` arrived.
    ///
    /// # Errors
    /// [`RtpError::Malformed`] when the payload is shorter than 4 bytes.
    pub fn handle_packet(
        &mut self,
        timestamp: u32,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), RtpError> {
        let Some(&[code, flags, d0, d1]) = payload.first_chunk::<4>() else {
            return Err(RtpError::Malformed(
                "telephone-event payload shorter than 4 bytes",
            ));
        };
        let end = flags & 0x80 != 0;
        let duration = u16::from_be_bytes([d0, d1]);
        if let Some(ev) = self.latest.as_mut() {
            let age = timestamp.wrapping_sub(ev.timestamp) as i32;
            if age == 0 {
                if !ev.done {
                    ev.duration = ev.duration.max(duration);
                    ev.last_seen = now;
                    if end {
                        self.report_latest();
                    }
                }
                return Ok(());
            }
            if age < 0 {
                return Ok(()); // stale packet of an older event
            }
            // A new event: the previous one ended even if its end was lost.
            self.report_latest();
        }
        self.latest = Some(RxEvent {
            timestamp,
            code,
            duration,
            last_seen: now,
            done: false,
        });
        if end {
            self.report_latest();
        }
        Ok(())
    }

    /// Time advanced: reports an event whose end packets never came.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.poll_timeout()
            && now >= deadline
        {
            self.report_latest();
        }
    }

    /// When [`DtmfReceiver::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.latest
            .filter(|e| !e.done)
            .map(|e| e.last_seen + DTMF_END_TIMEOUT)
    }

    /// The next reported digit.
    pub fn poll_digit(&mut self) -> Option<DtmfDigit> {
        self.ready.pop_front()
    }

    /// Forgets the current event (new source); pending digits stay.
    pub fn reset(&mut self) {
        self.report_latest();
        self.latest = None;
    }

    fn report_latest(&mut self) {
        let Some(ev) = self.latest.as_mut() else {
            return;
        };
        if ev.done {
            return;
        }
        ev.done = true;
        if let Some(digit) = event_digit(ev.code) {
            let duration_ms = (u64::from(ev.duration) * 1000 / u64::from(self.clock_rate)) as u32;
            self.ready.push_back(DtmfDigit { digit, duration_ms });
        }
    }
}

impl DtmfSender {
    /// A sender for `clock_rate` Hz and packets every `ptime`.
    pub fn new(clock_rate: u32, ptime: Duration) -> Self {
        let ptime_units =
            (u64::from(clock_rate) * ptime.as_micros() as u64 / 1_000_000).max(1) as u32;
        Self {
            ptime_units,
            clock_rate,
            queue: VecDeque::new(),
            active: None,
            gap: 0,
        }
    }

    /// Queues one digit lasting `duration` (clamped to 40 ms – 5 s).
    ///
    /// # Errors
    /// [`DtmfError::InvalidDigit`] for a character outside `0-9*#A-D`.
    pub fn queue(&mut self, digit: char, duration: Duration) -> Result<(), DtmfError> {
        let code = event_code(digit).ok_or(DtmfError::InvalidDigit(digit))?;
        let d = duration.clamp(MIN_DIGIT, MAX_DIGIT);
        let total = (u64::from(self.clock_rate) * d.as_micros() as u64 / 1_000_000)
            .min(u64::from(u16::MAX)) as u32;
        self.queue.push_back((code, total.max(1)));
        Ok(())
    }

    /// Whether nothing is being or waiting to be sent.
    pub fn is_idle(&self) -> bool {
        self.active.is_none() && self.queue.is_empty()
    }

    /// The packet for the media-clock slot whose RTP timestamp is `slot_ts`,
    /// or `None` to send audio in this slot. Call once per sent slot.
    pub fn next_packet(&mut self, slot_ts: u32) -> Option<DtmfPacket> {
        if self.active.is_none() {
            if self.gap > 0 {
                self.gap -= 1;
                return None;
            }
            let (code, total) = self.queue.pop_front()?;
            self.active = Some(TxEvent {
                code,
                start_ts: slot_ts,
                total,
                ends_sent: 0,
            });
        }
        let ev = self.active.as_mut()?;
        let first = slot_ts == ev.start_ts && ev.ends_sent == 0;
        let elapsed = slot_ts
            .wrapping_sub(ev.start_ts)
            .saturating_add(self.ptime_units);
        let (duration, end) = if ev.ends_sent > 0 || elapsed >= ev.total {
            ev.ends_sent += 1;
            (ev.total, true)
        } else {
            (elapsed, false)
        };
        let pkt = DtmfPacket {
            marker: first,
            timestamp: ev.start_ts,
            payload: encode(ev.code, end, duration as u16),
        };
        if ev.ends_sent >= END_PACKETS {
            self.active = None;
            self.gap = GAP_SLOTS;
        }
        Some(pkt)
    }
}

fn encode(code: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [code, (u8::from(end) << 7) | SEND_VOLUME, d[0], d[1]]
}

#[cfg(test)]
#[path = "tests/dtmf.rs"]
mod tests;
