//! Contact-center costs on the media and signaling paths:
//!
//! * `mixer/3x20ms`: mixing three 20 ms frames (320 samples at 16 kHz:
//!   caller, agent side, one supervisor) with soft clipping, as a
//!   supervised call does for every frame;
//! * `queue/enqueue_offer_answer_end`: one call's whole life in a busy
//!   center (1,000 calls already waiting, 50 agents on calls): it joins the
//!   line, an agent frees up and is offered it, answers, the call ends;
//! * `queue/announce_tick_1000`: one timer tick that announces the
//!   position of each of 1,000 waiting calls.
//!
//! Run with `cargo bench --bench contact_center -- --quick`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skald::contact_center::routing::{ContactCenter, Prefer, Strategy};
use skald::contact_center::{AgentProfile, Member, QueueEvent, QueueSettings};
use skald::ids::{HumanAgentId, QueueId};
use skald::pipeline::mixer::{Input, mix};

fn settings(humans: &[HumanAgentId], announce: Option<Duration>) -> QueueSettings {
    QueueSettings {
        announce_every: announce,
        max_wait: None,
        overflow: None,
        strategy: Strategy::LongestIdle,
        prefer: Prefer::Human,
        skills: Default::default(),
        humans: humans.to_vec(),
        ai: Vec::new(),
    }
}

/// A center with `agents` online and `waiting` calls (ids 1..) in line
/// `q`; every agent is on one of the first calls (returned, oldest first).
fn busy_center(agents: usize, waiting: u32, announce: Option<Duration>, t0: Instant) -> (ContactCenter<u32>, VecDeque<u32>) {
    let ids: Vec<HumanAgentId> = (0..agents).map(|i| HumanAgentId::from(format!("a{i}").as_str())).collect();
    let mut cc = ContactCenter::new();
    for id in &ids {
        let p = AgentProfile { id: id.clone(), skills: Default::default(), wrap_up: Duration::ZERO, ring_timeout: Duration::from_secs(15) };
        cc.add_agent(p, true, t0).unwrap();
    }
    cc.add_queue(QueueId::from("q"), settings(&ids, announce)).unwrap();
    for call in 1..=waiting {
        cc.enqueue(&QueueId::from("q"), call, 0, t0).unwrap();
    }
    // Every agent rang for one of the first calls: answer them all.
    let mut on_call = VecDeque::new();
    answer_offers(&mut cc, t0, &mut on_call);
    (cc, on_call)
}

/// Answers every pending offer; the answered calls join `on_call`.
fn answer_offers(cc: &mut ContactCenter<u32>, now: Instant, on_call: &mut VecDeque<u32>) {
    while let Some(ev) = cc.poll_event() {
        if let QueueEvent::Offer { call, member: Member::Human(a) } = ev.event {
            cc.answered(&a, call, now).unwrap();
            on_call.push_back(call);
        }
    }
}

fn bench(c: &mut Criterion) {
    let frame: Vec<i16> = (0..320).map(|i| ((i as f32 * 0.2).sin() * 12_000.0) as i16).collect();
    let mut g = c.benchmark_group("mixer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("3x20ms", |b| {
        b.iter(|| black_box(mix(&[Input::new(&frame), Input::new(&frame), Input::with_gain(&frame, 0.8)])))
    });
    g.finish();

    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(1));
    let t0 = Instant::now();
    let (mut cc, mut on_call) = busy_center(50, 1_050, None, t0);
    let mut next = 10_000u32;
    g.bench_function("enqueue_offer_answer_end", |b| {
        b.iter(|| {
            let now = t0 + Duration::from_secs(1);
            next += 1;
            cc.enqueue(&QueueId::from("q"), next, 0, now).unwrap();
            // The oldest agent call ends: that agent takes the head of the line.
            cc.ended(on_call.pop_front().unwrap(), now).unwrap();
            answer_offers(&mut cc, now, &mut on_call);
        })
    });
    let (mut cc, _) = busy_center(50, 1_050, Some(Duration::from_secs(30)), t0);
    let mut tick = 0u64;
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("announce_tick_1000", |b| {
        b.iter(|| {
            tick += 1;
            cc.handle_timeout(t0 + Duration::from_secs(30 * tick));
            let mut n = 0;
            while cc.poll_event().is_some() {
                n += 1;
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
