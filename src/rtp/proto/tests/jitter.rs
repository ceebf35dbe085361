//! Tests of `jitter` in virtual time (the only place this core meets a clock:
//! the tests pick their starting instant).

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
    let t0 = crate::test_clock::epoch();
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
    let t0 = crate::test_clock::epoch();
    let mut jb = buffer(40);
    for s in [1u16, 3, 2, 5, 4] {
        jb.insert(s, 1, &frame(s), t0);
    }
    let (played, _) = pop_n(&mut jb, t0 + 2 * PTIME, 5);
    assert_eq!(played, vec![Some(1), Some(2), Some(3), Some(4), Some(5)]);
}

#[test]
fn earlier_packet_before_playout_goes_in_front() {
    let t0 = crate::test_clock::epoch();
    let mut jb = buffer(40);
    jb.insert(5, 1, &frame(5), t0);
    assert_eq!(jb.insert(4, 1, &frame(4), t0), Insert::Queued);
    let (played, _) = pop_n(&mut jb, t0 + 2 * PTIME, 2);
    assert_eq!(played, vec![Some(4), Some(5)]);
}

#[test]
fn loss_gives_missing_then_continues() {
    let t0 = crate::test_clock::epoch();
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
    let t0 = crate::test_clock::epoch();
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
    let t0 = crate::test_clock::epoch();
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
    let t0 = crate::test_clock::epoch();
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
    let t0 = crate::test_clock::epoch();
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
    let t0 = crate::test_clock::epoch();
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
    let t0 = crate::test_clock::epoch();
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
    let t0 = crate::test_clock::epoch();
    let mut jb = buffer(20);
    jb.insert(1, 1, &frame(1), t0);
    assert_eq!(jb.insert(40_000, 1, &frame(40_000), t0), Insert::Probation);
    assert_eq!(jb.insert(40_001, 1, &frame(40_001), t0), Insert::Resynced);
    assert_eq!(jb.pop(t0 + PTIME), Playout::Frame(frame(40_001)));
}

#[test]
fn overfull_drops_oldest() {
    let t0 = crate::test_clock::epoch();
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
    let t0 = crate::test_clock::epoch();
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
    let t0 = crate::test_clock::epoch();
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
