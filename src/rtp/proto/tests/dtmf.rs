//! Tests of `dtmf` in virtual time (the only place this core meets a clock:
//! the tests pick their starting instant).

use super::*;

const MS20: Duration = Duration::from_millis(20);

fn pkt(code: u8, end: bool, duration: u16) -> [u8; 4] {
    encode(code, end, duration)
}

/// Feeds a full RFC 4733 event: start, updates, 3 end packets.
fn feed_event(rx: &mut DtmfReceiver, ts: u32, code: u8, updates: u16, t: &mut Instant) {
    for i in 1..=updates {
        rx.handle_packet(ts, &pkt(code, false, i * 160), *t)
            .unwrap();
        *t += MS20;
    }
    for _ in 0..3 {
        rx.handle_packet(ts, &pkt(code, true, (updates + 1) * 160), *t)
            .unwrap();
    }
    *t += MS20;
}

fn digits(rx: &mut DtmfReceiver) -> String {
    std::iter::from_fn(|| rx.poll_digit())
        .map(|d| d.digit)
        .collect()
}

#[test]
fn codes_map_to_digits() {
    let all: String = (0..16).map(|c| event_digit(c).unwrap()).collect();
    assert_eq!(all, "0123456789*#ABCD");
    assert_eq!(event_digit(16), None);
    for (i, c) in all.chars().enumerate() {
        assert_eq!(event_code(c), Some(i as u8));
    }
    assert_eq!(event_code('b'), Some(13));
    assert_eq!(event_code('x'), None);
}

#[test]
fn one_digit_per_event_despite_redundant_end_packets() {
    let mut rx = DtmfReceiver::new(8000);
    let mut t = crate::test_clock::epoch();
    feed_event(&mut rx, 1000, 5, 5, &mut t);
    let d = rx.poll_digit().unwrap();
    assert_eq!(
        d,
        DtmfDigit {
            digit: '5',
            duration_ms: 120
        }
    );
    assert_eq!(rx.poll_digit(), None);
    // A late duplicate update after the end is ignored too.
    rx.handle_packet(1000, &pkt(5, false, 320), t).unwrap();
    rx.handle_timeout(t + DTMF_END_TIMEOUT * 2);
    assert_eq!(rx.poll_digit(), None);
}

#[test]
fn repeated_digit_with_new_timestamp_is_two_digits() {
    let mut rx = DtmfReceiver::new(8000);
    let mut t = crate::test_clock::epoch();
    feed_event(&mut rx, 1000, 1, 4, &mut t);
    feed_event(&mut rx, 2600, 1, 4, &mut t);
    feed_event(&mut rx, 4200, 2, 4, &mut t);
    assert_eq!(digits(&mut rx), "112");
}

#[test]
fn lost_end_packets_reported_when_next_event_starts() {
    let mut rx = DtmfReceiver::new(8000);
    let t = crate::test_clock::epoch();
    rx.handle_packet(100, &pkt(11, false, 160), t).unwrap();
    rx.handle_packet(100, &pkt(11, false, 320), t + MS20)
        .unwrap();
    assert_eq!(rx.poll_digit(), None);
    rx.handle_packet(2000, &pkt(10, false, 160), t + MS20 * 5)
        .unwrap();
    assert_eq!(
        rx.poll_digit(),
        Some(DtmfDigit {
            digit: '#',
            duration_ms: 40
        })
    );
    feed_event(&mut rx, 2000, 10, 0, &mut (t + MS20 * 6));
    assert_eq!(digits(&mut rx), "*");
}

#[test]
fn lost_end_packets_reported_after_timeout() {
    let mut rx = DtmfReceiver::new(8000);
    let t = crate::test_clock::epoch();
    rx.handle_packet(100, &pkt(0, false, 160), t).unwrap();
    assert_eq!(rx.poll_timeout(), Some(t + DTMF_END_TIMEOUT));
    rx.handle_timeout(t + DTMF_END_TIMEOUT - Duration::from_millis(1));
    assert_eq!(rx.poll_digit(), None);
    rx.handle_timeout(t + DTMF_END_TIMEOUT);
    assert_eq!(digits(&mut rx), "0");
    assert_eq!(rx.poll_timeout(), None);
    // The end packets arriving after all do not repeat it.
    rx.handle_packet(100, &pkt(0, true, 800), t + DTMF_END_TIMEOUT)
        .unwrap();
    assert_eq!(rx.poll_digit(), None);
}

#[test]
fn only_end_packet_received_still_reports_once() {
    let mut rx = DtmfReceiver::new(8000);
    let t = crate::test_clock::epoch();
    for _ in 0..3 {
        rx.handle_packet(500, &pkt(9, true, 800), t).unwrap();
    }
    assert_eq!(digits(&mut rx), "9");
}

#[test]
fn stale_packet_of_older_event_ignored_across_ts_wrap() {
    let mut rx = DtmfReceiver::new(8000);
    let mut t = crate::test_clock::epoch();
    feed_event(&mut rx, u32::MAX - 100, 3, 2, &mut t);
    feed_event(&mut rx, 500, 4, 2, &mut t); // timestamp wrapped
    rx.handle_packet(u32::MAX - 100, &pkt(3, true, 480), t)
        .unwrap(); // reordered straggler
    assert_eq!(digits(&mut rx), "34");
}

#[test]
fn non_digit_events_and_short_payloads() {
    let mut rx = DtmfReceiver::new(8000);
    let t = crate::test_clock::epoch();
    rx.handle_packet(1, &pkt(16, true, 160), t).unwrap(); // flash: not reported
    assert_eq!(rx.poll_digit(), None);
    assert_eq!(
        rx.handle_packet(2, &[1, 2, 3], t),
        Err(RtpError::Malformed(
            "telephone-event payload shorter than 4 bytes"
        ))
    );
}

#[test]
fn sender_follows_rfc4733_packet_pattern() {
    let mut tx = DtmfSender::new(8000, MS20);
    tx.queue('7', Duration::from_millis(100)).unwrap();
    assert_eq!(tx.queue('x', MS20), Err(DtmfError::InvalidDigit('x')));
    let mut ts = 10_000u32;
    let mut packets = Vec::new();
    while let Some(p) = tx.next_packet(ts) {
        packets.push(p);
        ts = ts.wrapping_add(160);
    }
    // 100 ms: updates at 160, 320, 480, 640, then 3 × end at 800.
    let durations: Vec<u16> = packets
        .iter()
        .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
        .collect();
    assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800]);
    let ends: Vec<bool> = packets.iter().map(|p| p.payload[1] & 0x80 != 0).collect();
    assert_eq!(ends, vec![false, false, false, false, true, true, true]);
    let markers: Vec<bool> = packets.iter().map(|p| p.marker).collect();
    assert_eq!(
        markers,
        vec![true, false, false, false, false, false, false]
    );
    assert!(
        packets
            .iter()
            .all(|p| p.timestamp == 10_000 && p.payload[0] == 7)
    );
    assert!(tx.is_idle());
}

#[test]
fn sender_separates_events_and_round_trips_through_receiver() {
    let mut tx = DtmfSender::new(8000, MS20);
    for d in "1123#".chars() {
        tx.queue(d, Duration::from_millis(60)).unwrap();
    }
    let mut rx = DtmfReceiver::new(8000);
    let mut ts = u32::MAX - 5000; // wraps during the run
    let mut t = crate::test_clock::epoch();
    let mut audio_slots = 0;
    for _ in 0..200 {
        match tx.next_packet(ts) {
            Some(p) => rx.handle_packet(p.timestamp, &p.payload, t).unwrap(),
            None => audio_slots += 1,
        }
        ts = ts.wrapping_add(160);
        t += MS20;
    }
    assert_eq!(digits(&mut rx), "1123#");
    assert!(audio_slots >= 4 * GAP_SLOTS as usize);
}
