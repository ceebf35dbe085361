//! The contact center in virtual time: a fixed epoch plus offsets, no clock.

use super::config::{self, AgentEndpoint, QueueConfigError};
use super::*;
use crate::ids::{HumanAgentId, QueueId};
use crate::test_clock::epoch;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ------------------------------------------------------------ helpers

fn at(ms: u64) -> Instant {
    epoch() + Duration::from_millis(ms)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn id(s: &str) -> HumanAgentId {
    HumanAgentId::from(s)
}

fn qid(s: &str) -> QueueId {
    QueueId::from(s)
}

fn human(s: &str) -> Member {
    Member::Human(id(s))
}

fn ai(s: &str) -> Member {
    Member::Ai(s.to_string())
}

/// An agent with 15 s ring timeout and `wrap_up_s` of wrap-up.
fn profile(name: &str, skills: &[&str], wrap_up_s: u64) -> AgentProfile {
    AgentProfile {
        id: id(name),
        skills: skills.iter().map(|s| s.to_string()).collect(),
        wrap_up: secs(wrap_up_s),
        ring_timeout: secs(15),
    }
}

/// Longest-idle, prefer humans, no skills, no announcements, no overflow.
fn settings(humans: &[&str], ai: &[(&str, usize)]) -> QueueSettings {
    QueueSettings {
        announce_every: None,
        max_wait: None,
        overflow: None,
        strategy: Strategy::LongestIdle,
        prefer: Prefer::Human,
        skills: Default::default(),
        humans: humans.iter().map(|h| id(h)).collect(),
        ai: ai.iter().map(|(n, c)| queue::AiMember { name: n.to_string(), capacity: *c }).collect(),
    }
}

/// A center with `agents` online since t=0 (wrap-up 0 s) and one queue `q`.
fn center(agents: &[&str], s: QueueSettings) -> ContactCenter<u32> {
    let agents: Vec<_> = agents.iter().map(|a| (profile(a, &[], 0), 0)).collect();
    center_with(&agents, s)
}

/// A center with each agent online since its time (ms) and one queue `q`.
fn center_with(agents: &[(AgentProfile, u64)], s: QueueSettings) -> ContactCenter<u32> {
    let mut cc = ContactCenter::new();
    for (p, since) in agents {
        cc.add_agent(p.clone(), true, at(*since)).unwrap();
    }
    cc.add_queue(qid("q"), s).unwrap();
    cc
}

fn drain(cc: &mut ContactCenter<u32>) -> Vec<QueueEvent<u32>> {
    std::iter::from_fn(|| cc.poll_event()).map(|e| e.event).collect()
}

fn drain_q(q: &mut Queue<u32>) -> Vec<QueueEvent<u32>> {
    std::iter::from_fn(|| q.poll_event()).collect()
}

/// Calls 1..=n arrive 10 s apart into `q`; each is answered 1 s after its
/// offer and ends 1 s later. Returns who took each.
fn serve_one_by_one(cc: &mut ContactCenter<u32>, n: u32) -> Vec<String> {
    let mut picks = Vec::new();
    for call in 1..=n {
        let t = 10_000 * u64::from(call);
        cc.enqueue(&qid("q"), call, 0, at(t)).unwrap();
        let events = drain(cc);
        let Some(QueueEvent::Offer { member: Member::Human(a), .. }) = events.first() else { panic!("{events:?}") };
        picks.push(a.0.clone());
        cc.answered(a, call, at(t + 1_000)).unwrap();
        cc.ended(call, at(t + 2_000)).unwrap();
    }
    picks
}

fn offer(call: u32, member: Member) -> QueueEvent<u32> {
    QueueEvent::Offer { call, member }
}

fn retract(call: u32, agent: &str, reason: RetractReason) -> QueueEvent<u32> {
    QueueEvent::Retract { call, agent: id(agent), reason }
}

// ------------------------------------------------------------ queue

#[test]
fn positions_follow_priority_then_arrival() {
    let mut q: Queue<u32> = Queue::new(qid("q"), settings(&[], &[]));
    q.enqueue(1, 0, at(0)).unwrap();
    q.enqueue(2, 0, at(10)).unwrap();
    q.enqueue(3, 5, at(20)).unwrap();
    q.enqueue(4, 5, at(30)).unwrap();
    q.enqueue(5, 1, at(40)).unwrap();
    let order: Vec<_> = [3, 4, 5, 1, 2].iter().map(|c| q.position(*c).unwrap()).collect();
    assert_eq!(order, [1, 2, 3, 4, 5]);
    assert_eq!(q.enqueue(1, 9, at(50)), Err(queue::QueueError::AlreadyQueued("1".into())));
    q.leave(4).unwrap();
    assert_eq!((q.position(3), q.position(5), q.position(2)), (Some(1), Some(2), Some(4)));
    assert_eq!(q.position(4), None);
    assert_eq!(q.len(), 4);
}

#[test]
fn announcements_come_every_interval_with_positions_moving_up() {
    let mut s = settings(&["x"], &[]);
    s.announce_every = Some(secs(30));
    let mut q: Queue<u32> = Queue::new(qid("q"), s);
    for call in 1..=3 {
        q.enqueue(call, 0, at(0)).unwrap();
    }
    assert_eq!(q.poll_timeout(), Some(at(30_000)));
    q.handle_timeout(at(29_999));
    assert!(drain_q(&mut q).is_empty());
    q.handle_timeout(at(30_000));
    let announce = |call, position, expected_wait| QueueEvent::Announce { call, position, expected_wait };
    // No history yet: position only.
    assert_eq!(drain_q(&mut q), [announce(1, 1, None), announce(2, 2, None), announce(3, 3, None)]);
    assert_eq!(q.poll_timeout(), Some(at(60_000)));
    // Call 1 is answered at 40 s: the line moved once in 40 s, so D̄ = 40 s.
    q.offer(1, human("x"), at(39_000)).unwrap();
    q.answered(1, at(40_000)).unwrap();
    assert_eq!(q.service_interval(), Some(secs(40)));
    q.handle_timeout(at(60_000));
    // 20 s of the current interval have passed: 1·40 − 20 and 2·40 − 20.
    let events = drain_q(&mut q);
    assert_eq!(events[0], offer(1, human("x")));
    assert_eq!(events[1..], [announce(2, 1, Some(secs(20))), announce(3, 2, Some(secs(60)))]);
    assert_eq!(q.expected_wait(3, at(100_000)), Some(secs(40)), "never below (p − 1)·D̄");
}

#[test]
fn announcement_due_while_ringing_is_skipped() {
    let mut s = settings(&["x"], &[]);
    s.announce_every = Some(secs(30));
    let mut q: Queue<u32> = Queue::new(qid("q"), s);
    q.enqueue(1, 0, at(0)).unwrap();
    q.offer(1, human("x"), at(25_000)).unwrap();
    q.handle_timeout(at(30_000));
    assert_eq!(drain_q(&mut q), [offer(1, human("x"))]);
    q.retract(1, RetractReason::RingTimeout).unwrap();
    assert_eq!(q.poll_timeout(), Some(at(60_000)));
}

#[test]
fn expected_wait_is_an_ewma_of_service_intervals() {
    let mut q: Queue<u32> = Queue::new(qid("q"), settings(&[], &[("bot", 10)]));
    q.enqueue(1, 0, at(0)).unwrap();
    q.enqueue(2, 0, at(0)).unwrap();
    q.enqueue(3, 0, at(0)).unwrap();
    q.offer(1, ai("bot"), at(40_000)).unwrap(); // sample 40 s
    q.offer(2, ai("bot"), at(60_000)).unwrap(); // sample 20 s: 40 + (20 − 40)/4 = 35 s
    assert_eq!(q.service_interval(), Some(secs(35)));
    assert_eq!(q.expected_wait(3, at(60_000)), Some(secs(35)));
    assert_eq!(q.expected_wait(3, at(70_000)), Some(secs(25)));
    assert_eq!(q.expected_wait(9, at(70_000)), None);
    assert_eq!(q.ai_load("bot"), 2);
}

#[test]
fn overflow_fires_exactly_at_max_wait() {
    let mut s = settings(&[], &[]);
    s.max_wait = Some(secs(60));
    s.overflow = Some(OverflowTarget::Voicemail);
    let mut q: Queue<u32> = Queue::new(qid("q"), s);
    q.enqueue(1, 3, at(1_000)).unwrap();
    assert_eq!(q.poll_timeout(), Some(at(61_000)));
    q.handle_timeout(at(60_999));
    assert!(drain_q(&mut q).is_empty());
    assert_eq!(q.position(1), Some(1));
    q.handle_timeout(at(61_000));
    let overflow = QueueEvent::Overflow { call: 1, target: OverflowTarget::Voicemail, priority: 3, waited: secs(60) };
    assert_eq!(drain_q(&mut q), [overflow]);
    assert!(q.is_empty());
    assert_eq!(q.poll_timeout(), None);
}

// ------------------------------------------------------------ routing

#[test]
fn a_free_agent_is_offered_a_call_at_once_and_answers() {
    let mut cc = center(&["x"], settings(&["x"], &[]));
    cc.enqueue(&qid("q"), 1, 0, at(0)).unwrap();
    assert_eq!(drain(&mut cc), [offer(1, human("x"))]);
    assert_eq!(cc.pool().presence(&id("x")), Some(Presence::Ringing { call: 1, until: at(15_000) }));
    assert_eq!(cc.answered(&id("y"), 1, at(1)), Err(agents::AgentError::UnknownAgent(id("y")).into()));
    cc.answered(&id("x"), 1, at(3_000)).unwrap();
    assert_eq!(cc.pool().presence(&id("x")), Some(Presence::OnCall { call: 1 }));
    assert_eq!(cc.position(1), None);
    assert_eq!(cc.poll_timeout(), None);
}

#[test]
fn wrap_up_ends_then_the_next_call_is_offered() {
    let mut cc = ContactCenter::new();
    cc.add_agent(profile("x", &[], 10), true, at(0)).unwrap();
    cc.add_queue(qid("q"), settings(&["x"], &[])).unwrap();
    cc.enqueue(&qid("q"), 1, 0, at(0)).unwrap();
    cc.answered(&id("x"), 1, at(2_000)).unwrap();
    cc.enqueue(&qid("q"), 2, 0, at(5_000)).unwrap();
    cc.ended(1, at(20_000)).unwrap();
    assert_eq!(cc.pool().presence(&id("x")), Some(Presence::WrapUp { until: at(30_000) }));
    drain(&mut cc);
    assert_eq!(cc.poll_timeout(), Some(at(30_000)));
    cc.handle_timeout(at(29_999));
    assert!(drain(&mut cc).is_empty());
    cc.handle_timeout(at(30_000));
    assert_eq!(drain(&mut cc), [offer(2, human("x"))]);
    assert_eq!(cc.pool().idle_since(&id("x")), Some(at(30_000)));
    assert_eq!(cc.ended(7, at(31_000)), Err(RoutingError::UnknownCall("7".into())));
}

#[test]
fn ring_timeout_moves_the_offer_to_the_next_agent() {
    let mut cc = center_with(&[(profile("x", &[], 0), 0), (profile("y", &[], 0), 1_000)], settings(&["x", "y"], &[]));
    cc.enqueue(&qid("q"), 1, 0, at(2_000)).unwrap();
    assert_eq!(drain(&mut cc), [offer(1, human("x"))]);
    assert_eq!(cc.poll_timeout(), Some(at(17_000)));
    cc.handle_timeout(at(16_999));
    assert!(drain(&mut cc).is_empty());
    cc.handle_timeout(at(17_000));
    assert_eq!(drain(&mut cc), [retract(1, "x", RetractReason::RingTimeout), offer(1, human("y"))]);
    // x rests before the next offer (redirect on no answer).
    assert_eq!(cc.pool().presence(&id("x")), Some(Presence::WrapUp { until: at(27_000) }));
    // y rings out too: everyone was tried, so x is rung again, now rested.
    cc.handle_timeout(at(32_000));
    assert_eq!(drain(&mut cc), [retract(1, "y", RetractReason::RingTimeout), offer(1, human("x"))]);
    assert_eq!(cc.position(1), Some(1), "the call kept its place throughout");
}

#[test]
fn a_declined_offer_goes_to_the_next_agent() {
    let mut cc = center(&["x", "y"], settings(&["x", "y"], &[]));
    cc.enqueue(&qid("q"), 1, 0, at(0)).unwrap();
    assert_eq!(drain(&mut cc), [offer(1, human("x"))]);
    assert!(cc.declined(&id("y"), 1, at(1_000)).is_err());
    cc.declined(&id("x"), 1, at(1_000)).unwrap();
    assert_eq!(drain(&mut cc), [retract(1, "x", RetractReason::Declined), offer(1, human("y"))]);
    // A busy agent is not rung again at once.
    assert_eq!(cc.pool().presence(&id("x")), Some(Presence::WrapUp { until: at(11_000) }));
}

#[test]
fn longest_idle_picks_the_agent_free_longest() {
    let mut cc = center_with(&[(profile("x", &[], 0), 3_000), (profile("y", &[], 0), 1_000), (profile("z", &[], 0), 2_000)], settings(&["x", "y", "z"], &[]));
    let picks = serve_one_by_one(&mut cc, 4);
    // y (idle since 1 s), z (2 s), x (3 s), then y again (free since 12 s).
    assert_eq!(picks, ["y", "z", "x", "y"]);
}

#[test]
fn round_robin_rotates_through_members_in_order() {
    let mut s = settings(&["x", "y", "z"], &[]);
    s.strategy = Strategy::RoundRobin;
    let mut cc = center_with(&[(profile("x", &[], 0), 3_000), (profile("y", &[], 0), 1_000), (profile("z", &[], 0), 2_000)], s);
    let picks = serve_one_by_one(&mut cc, 4);
    assert_eq!(picks, ["x", "y", "z", "x"]);
    // The pointer skips a busy member without losing its turn order.
    cc.enqueue(&qid("q"), 5, 0, at(60_000)).unwrap();
    cc.enqueue(&qid("q"), 6, 0, at(60_000)).unwrap();
    assert_eq!(drain(&mut cc), [offer(5, human("y")), offer(6, human("z"))]);
}

#[test]
fn skills_filter_offers_only_agents_with_every_required_skill() {
    let mut s = settings(&["x", "y", "z"], &[]);
    s.skills = ["billing", "french"].iter().map(|s| s.to_string()).collect();
    let mut cc = center_with(&[(profile("x", &["billing"], 0), 0), (profile("y", &["french"], 0), 0), (profile("z", &["french", "billing", "dental"], 0), 5_000)], s);
    cc.enqueue(&qid("q"), 1, 0, at(6_000)).unwrap();
    cc.enqueue(&qid("q"), 2, 0, at(6_000)).unwrap();
    assert_eq!(drain(&mut cc), [offer(1, human("z"))]);
    assert_eq!(cc.position(2), Some(2));
}

#[test]
fn mixed_queue_prefers_humans_and_fills_ai_capacity() {
    let mut cc = center(&["x"], settings(&["x"], &[("bot", 2)]));
    for call in 1..=4 {
        cc.enqueue(&qid("q"), call, 0, at(1_000)).unwrap();
    }
    // x takes the first; the AI member takes two more; the fourth waits.
    assert_eq!(drain(&mut cc), [offer(1, human("x")), offer(2, ai("bot")), offer(3, ai("bot"))]);
    assert_eq!(cc.position(4), Some(2), "call 1 is still ringing ahead of it");
    assert_eq!(cc.queue(&qid("q")).unwrap().ai_load("bot"), 2);
    cc.ended(2, at(5_000)).unwrap();
    assert_eq!(drain(&mut cc), [offer(4, ai("bot"))]);
    assert_eq!(cc.queue(&qid("q")).unwrap().ai_load("bot"), 2);
}

#[test]
fn mixed_queue_preferring_ai_uses_humans_when_ai_is_full() {
    let mut s = settings(&["x"], &[("bot", 1)]);
    s.prefer = Prefer::Ai;
    let mut cc = center(&["x"], s);
    cc.enqueue(&qid("q"), 1, 0, at(0)).unwrap();
    cc.enqueue(&qid("q"), 2, 0, at(0)).unwrap();
    cc.enqueue(&qid("q"), 3, 0, at(0)).unwrap();
    assert_eq!(drain(&mut cc), [offer(1, ai("bot")), offer(2, human("x"))]);
}

#[test]
fn agent_going_offline_while_ringing_moves_the_offer() {
    let mut cc = center(&["x", "y"], settings(&["x", "y"], &[]));
    cc.enqueue(&qid("q"), 1, 0, at(0)).unwrap();
    assert_eq!(drain(&mut cc), [offer(1, human("x"))]);
    cc.agent_offline(&id("x"), at(4_000)).unwrap();
    assert_eq!(drain(&mut cc), [retract(1, "x", RetractReason::AgentOffline), offer(1, human("y"))]);
    assert_eq!(cc.pool().presence(&id("x")), Some(Presence::Offline));
    // y rings out; x is offline, so y (the only one left) is rung again
    // once rested: a missed offer is not rung again at once.
    cc.handle_timeout(at(19_000));
    assert_eq!(drain(&mut cc), [retract(1, "y", RetractReason::RingTimeout)]);
    assert_eq!(cc.poll_timeout(), Some(at(29_000)));
    cc.handle_timeout(at(29_000));
    assert_eq!(drain(&mut cc), [offer(1, human("y"))]);
    cc.agent_online(&id("x"), at(20_000)).unwrap();
    assert_eq!(cc.pool().presence(&id("x")), Some(Presence::Available));
    assert_eq!(cc.pool().idle_since(&id("x")), Some(at(20_000)));
}

#[test]
fn agent_going_offline_during_a_call_is_offline_when_it_ends() {
    let mut cc = center(&["x"], settings(&["x"], &[]));
    cc.enqueue(&qid("q"), 1, 0, at(0)).unwrap();
    cc.answered(&id("x"), 1, at(1_000)).unwrap();
    cc.agent_offline(&id("x"), at(2_000)).unwrap();
    assert_eq!(cc.pool().presence(&id("x")), Some(Presence::OnCall { call: 1 }), "the call goes on");
    cc.enqueue(&qid("q"), 2, 0, at(3_000)).unwrap();
    cc.ended(1, at(4_000)).unwrap();
    assert_eq!(cc.pool().presence(&id("x")), Some(Presence::Offline));
    drain(&mut cc);
    cc.agent_online(&id("x"), at(5_000)).unwrap();
    assert_eq!(drain(&mut cc), [offer(2, human("x"))]);
}

#[test]
fn caller_abandoning_while_ringing_frees_the_agent() {
    let mut cc = center(&["x"], settings(&["x"], &[]));
    cc.enqueue(&qid("q"), 1, 0, at(0)).unwrap();
    cc.enqueue(&qid("q"), 2, 0, at(1_000)).unwrap();
    assert_eq!(drain(&mut cc), [offer(1, human("x"))]);
    cc.leave(1, at(5_000)).unwrap();
    assert_eq!(drain(&mut cc), [retract(1, "x", RetractReason::CallerLeft), offer(2, human("x"))]);
    assert_eq!(cc.pool().presence(&id("x")), Some(Presence::Ringing { call: 2, until: at(20_000) }));
    assert!(cc.leave(1, at(6_000)).is_err());
}

#[test]
fn overflow_while_ringing_retracts_and_moves_to_the_next_queue() {
    let mut a = settings(&["x"], &[]);
    a.max_wait = Some(secs(10));
    a.overflow = Some(OverflowTarget::Queue(qid("b")));
    let mut cc = center(&["x"], a);
    cc.add_queue(qid("b"), settings(&[], &[("bot", 1)])).unwrap();
    cc.enqueue(&qid("q"), 1, 7, at(0)).unwrap();
    assert_eq!(drain(&mut cc), [offer(1, human("x"))]);
    cc.handle_timeout(at(10_000));
    let overflow = QueueEvent::Overflow { call: 1, target: OverflowTarget::Queue(qid("b")), priority: 7, waited: secs(10) };
    let events: Vec<_> = std::iter::from_fn(|| cc.poll_event()).collect();
    let got: Vec<_> = events.iter().map(|e| (e.queue.0.as_str(), e.event.clone())).collect();
    assert_eq!(got, [("q", retract(1, "x", RetractReason::Overflow)), ("q", overflow), ("b", offer(1, ai("bot")))]);
    assert_eq!(cc.pool().presence(&id("x")), Some(Presence::Available));
}

#[test]
fn an_agent_in_two_queues_takes_the_more_urgent_then_older_call() {
    let mut cc = ContactCenter::new();
    cc.add_agent(profile("x", &[], 0), false, at(0)).unwrap();
    cc.add_queue(qid("q"), settings(&["x"], &[])).unwrap();
    cc.add_queue(qid("r"), settings(&["x"], &[])).unwrap();
    cc.enqueue(&qid("q"), 1, 0, at(0)).unwrap();
    cc.enqueue(&qid("r"), 2, 0, at(1_000)).unwrap();
    cc.enqueue(&qid("r"), 3, 2, at(2_000)).unwrap();
    assert_eq!(cc.queue_of(3), Some(&qid("r")));
    assert!(drain(&mut cc).is_empty(), "x is offline");
    cc.agent_online(&id("x"), at(3_000)).unwrap();
    assert_eq!(drain(&mut cc), [offer(3, human("x"))]);
    cc.answered(&id("x"), 3, at(4_000)).unwrap();
    cc.ended(3, at(5_000)).unwrap();
    assert_eq!(drain(&mut cc), [offer(1, human("x"))]);
    assert_eq!(cc.enqueue(&qid("r"), 1, 0, at(6_000)), Err(RoutingError::AlreadyQueued("1".into())));
}

// ------------------------------------------------------------ config

const AI: [&str; 3] = ["dental-front-desk", "tier1-llm", "tier2-billing"];

fn ai_names() -> Vec<String> {
    AI.iter().map(|s| s.to_string()).collect()
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-config/queues.yaml")
}

/// The error message for `yaml`, read as `/cfg/queues.yaml`.
fn err(yaml: &str) -> String {
    config::parse(yaml, Path::new("/cfg/queues.yaml"), &ai_names(), None).unwrap_err().to_string()
}

#[test]
fn example_names_the_ai_agents_of_the_example_agent_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-config/agents");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
            v["name"].as_str().unwrap().to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, AI);
}

#[test]
fn example_config_loads_and_builds_a_center() {
    let cfg = config::load(&example_path(), &ai_names(), None).unwrap();
    assert_eq!(cfg.agents.len(), 3);
    assert_eq!(cfg.agents[2].endpoint, AgentEndpoint::Uri("sip:carol@192.0.2.40:5060".into()));
    assert_eq!(cfg.agents[0].profile.wrap_up, secs(10));
    assert_eq!(cfg.agents[0].profile.ring_timeout, secs(15));
    let billing = &cfg.queues[&qid("billing")];
    let hold = billing.hold_music.as_ref().unwrap();
    assert!(hold.ends_with("prompts/hold.wav"));
    let wav = hound::WavReader::open(hold).unwrap();
    let spec = wav.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
    let seconds = wav.duration() as f64 / f64::from(spec.sample_rate);
    assert!((3.0..=6.0).contains(&seconds), "{seconds} s");
    assert!(std::fs::metadata(hold).unwrap().len() < 200_000);
    let s = &billing.settings;
    assert_eq!(s.announce_every, Some(secs(30)));
    assert_eq!(s.max_wait, Some(secs(240)));
    assert_eq!(s.overflow, Some(OverflowTarget::Agent("tier2-billing".into())));
    assert_eq!(s.humans, [id("alice"), id("bob")]);
    assert_eq!(s.ai, [queue::AiMember { name: "tier2-billing".into(), capacity: 4 }]);
    let support = &cfg.queues[&qid("support")].settings;
    assert_eq!((support.strategy, support.prefer), (Strategy::RoundRobin, Prefer::Ai));
    assert_eq!(support.overflow, Some(OverflowTarget::Queue(qid("billing"))));
    assert_eq!(cfg.queues[&qid("dental")].settings.overflow, Some(OverflowTarget::Voicemail));

    let mut cc: ContactCenter<u32> = ContactCenter::from_config(&cfg, at(0)).unwrap();
    assert_eq!(cc.pool().presence(&id("alice")), Some(Presence::Offline), "until registered");
    assert_eq!(cc.pool().presence(&id("carol")), Some(Presence::Available), "fixed URI");
    cc.enqueue(&qid("dental"), 1, 0, at(0)).unwrap();
    assert_eq!(drain(&mut cc), [offer(1, human("carol"))]);
}

#[test]
fn example_config_checks_sip_users_when_given() {
    let users = ["alice".to_string()];
    let e = config::load(&example_path(), &ai_names(), Some(&users)).unwrap_err().to_string();
    assert!(e.ends_with("queues.yaml:17: agent \"bob\": sip_user \"bob\" is not a known SIP user (alice)"), "{e}");
}

const AGENTS: &str = "\
agents:
  - id: alice
    sip_user: alice
    skills: [billing]
  - id: bob
    uri: sip:bob@192.0.2.1
";

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let e = err(&format!("{AGENTS}queues:\n  billing:\n    members: [alice]\n    max_wiat_secs: 3\n"));
    assert!(e.starts_with("/cfg/queues.yaml:10: queues.billing: unknown field `max_wiat_secs`"), "{e}");
    let e = err(&format!("{AGENTS}queues:\n  billing:\n    members:\n      - alice\n      - ai: tier1-llm\n        capacty: 3\n"));
    assert_eq!(e, "/cfg/queues.yaml:12: queues.billing.members[1]: unknown field `capacty`, expected `ai` or `capacity`");
    let e = err("queues:\n  a:\n    members:\n      - [x]\n");
    assert_eq!(
        e,
        "/cfg/queues.yaml:4: queues.a.members[0]: invalid type: sequence, expected a human agent id or {ai: <AI agent>, capacity: <n>}"
    );
    let e = err("queues:\n  a:\n    strategy: random\n    members: [x]\n");
    assert_eq!(e, "/cfg/queues.yaml:3: queues.a.strategy: unknown variant `random`, expected `longest-idle` or `round-robin`");
}

#[test]
fn agent_errors_name_the_agent_and_line() {
    let e = err("agents:\n  - id: alice\n    sip_user: alice\n  - id: alice\n    uri: sip:a@b\n");
    assert_eq!(e, "/cfg/queues.yaml:4: agent \"alice\" is defined twice");
    let e = err("agents:\n  - id: alice\n    name: Alice\n");
    assert_eq!(e, "/cfg/queues.yaml:2: agent \"alice\": needs sip_user or uri");
    let e = err("agents:\n  - id: alice\n    uri: alice@example.com\n");
    assert_eq!(e, "/cfg/queues.yaml:3: agent \"alice\": uri \"alice@example.com\" must start with sip: or sips:");
    let e = err("agents:\n  - id: alice\n    sip_user: a\n    ring_timeout_secs: 0\n");
    assert_eq!(e, "/cfg/queues.yaml:4: agent \"alice\": ring_timeout_secs must be at least 1");
}

#[test]
fn member_errors_name_the_queue_and_line() {
    let e = err(&format!("{AGENTS}queues:\n  billing:\n    members:\n      - alice\n      - nosuch\n"));
    assert_eq!(e, "/cfg/queues.yaml:11: queue \"billing\": member \"nosuch\" is not an agent under agents:");
    let e = err(&format!("{AGENTS}queues:\n  billing:\n    members:\n      - ai: gpt\n"));
    assert_eq!(
        e,
        "/cfg/queues.yaml:10: queue \"billing\": AI member \"gpt\" is not a known AI agent (dental-front-desk, tier1-llm, tier2-billing)"
    );
    let e = err(&format!("{AGENTS}queues:\n  billing:\n    skills: [billing]\n    members:\n      - alice\n      - bob\n"));
    assert_eq!(e, "/cfg/queues.yaml:12: queue \"billing\": member \"bob\" lacks the required skill \"billing\"");
    let e = err(&format!("{AGENTS}queues:\n  billing:\n    members:\n      - bob\n      - bob\n"));
    assert_eq!(e, "/cfg/queues.yaml:11: queue \"billing\": member \"bob\" is listed twice");
    let e = err(&format!("{AGENTS}queues:\n  billing:\n    hold_music: prompts/hold.wav\n"));
    assert_eq!(e, "/cfg/queues.yaml:8: queue \"billing\": has no members");
    let e = err(&format!("{AGENTS}queues:\n  billing:\n    members:\n      - ai: tier1-llm\n        capacity: 0\n"));
    assert_eq!(e, "/cfg/queues.yaml:10: queue \"billing\": AI member \"tier1-llm\" needs capacity ≥ 1");
}

#[test]
fn overflow_errors_name_the_queue_and_line() {
    let q = |name: &str, overflow: &str| format!("  {name}:\n    max_wait_secs: 60\n    overflow: {overflow}\n    members: [bob]\n");
    let e = err(&format!("{AGENTS}queues:\n{}", q("billing", "{ queue: nosuch }")));
    assert_eq!(e, "/cfg/queues.yaml:10: queue \"billing\": overflow queue \"nosuch\" is not defined");
    let e = err(&format!("{AGENTS}queues:\n{}", q("billing", "{ agent: nosuch }")));
    assert!(e.starts_with("/cfg/queues.yaml:10: queue \"billing\": overflow agent \"nosuch\" is not a known AI agent"), "{e}");
    let e = err(&format!("{AGENTS}queues:\n{}{}", q("a", "{ queue: b }"), q("b", "{ queue: a }")));
    assert_eq!(e, "/cfg/queues.yaml:10: queue \"a\": overflow cycle a → b → a");
    let e = err(&format!("{AGENTS}queues:\n{}{}{}", q("a", "{ queue: b }"), q("b", "{ queue: c }"), q("c", "{ queue: b }")));
    assert_eq!(e, "/cfg/queues.yaml:14: queue \"b\": overflow cycle b → c → b");
    let e = err(&format!("{AGENTS}queues:\n{}", q("billing", "{ voicemail: false }")));
    assert_eq!(e, "/cfg/queues.yaml:10: queue \"billing\": overflow must be true when given (or remove it)");
    let e = err(&format!("{AGENTS}queues:\n  billing:\n    max_wait_secs: 60\n    members: [bob]\n"));
    assert_eq!(e, "/cfg/queues.yaml:9: queue \"billing\": max_wait_secs needs an overflow target");
    let e = err(&format!("{AGENTS}queues:\n  billing:\n    overflow: {{ callback: true }}\n    members: [bob]\n"));
    assert_eq!(e, "/cfg/queues.yaml:9: queue \"billing\": overflow needs max_wait_secs");
    let e = err(&format!("{AGENTS}queues:\n{}", q("billing", "{ fax: true }")));
    assert!(e.starts_with("/cfg/queues.yaml:10:"), "{e}");
    let e = err(&format!("{AGENTS}queues:\n{}", q("billing", "{ voicemail: true, callback: true }")));
    assert_eq!(e, "/cfg/queues.yaml:10: queue \"billing\": overflow needs exactly one of queue, agent, voicemail, callback");
    let cfg = config::parse(
        &format!("{AGENTS}queues:\n{}{}", q("a", "{ queue: b }"), q("b", "{ callback: true }")),
        Path::new("/cfg/queues.yaml"),
        &ai_names(),
        None,
    )
    .unwrap();
    assert_eq!(cfg.queues[&qid("b")].settings.overflow, Some(OverflowTarget::Callback));
}

#[test]
fn missing_hold_music_is_refused_with_its_resolved_path() {
    let e = err(&format!("{AGENTS}queues:\n  billing:\n    hold_music: prompts/none.wav\n    members: [bob]\n"));
    assert_eq!(e, "/cfg/queues.yaml:9: queue \"billing\": hold_music /cfg/prompts/none.wav does not exist");
}

#[test]
fn unreadable_file_is_an_io_error() {
    let e = config::load(Path::new("/nonexistent/queues.yaml"), &[], None).unwrap_err();
    assert!(matches!(e, QueueConfigError::Io { .. }), "{e}");
}

