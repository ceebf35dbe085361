//! The call actor driven by a scripted leg in virtual time: a whole
//! voice-agent call with no sockets. The leg is a test double of the
//! [`Leg`] interface: it plays the caller's audio (real recorded speech)
//! one 20 ms frame per tick, "hears" one queued agent frame per tick as an
//! RTP leg would send it, and answers a transfer the way a SIP peer does
//! (REFER accepted, then a NOTIFY with 200).
//!
//! The leg is the clock: tokio's clock is paused and only the leg moves it,
//! 20 ms per frame ([`tokio::time::advance`]); auto-advance is held off for
//! the whole test ([`hold_clock`]), so waiting on the SQLite worker costs
//! no virtual time and every run sees the same timeline.
//!
//! The voice agent is the real one (Silero VAD, turn-taking, the shipped
//! dental flow agent, playout accounting); STT and TTS are stand-ins
//! ([`crate::call::fakes`]).

use super::*;
use crate::call::fakes::{FakeStt, FakeTts};
use crate::call::actor::supervise::SuperviseAction;
use crate::call::command::Reply;
use crate::call::voice::VoiceServices;
use crate::config::Config;
use crate::ids::CallId;
use crate::observability::Metrics;
use crate::providers::local::{models::ModelPaths, onnx};
use crate::store::Store;
use crate::transports::leg::{AudioOut, LegFacts, LegFuture, TransferTo};
use std::collections::VecDeque;
use std::sync::Mutex;

/// One tick of the leg's media clock.
const TICK: Duration = Duration::from_millis(20);
/// Samples per tick at 16 kHz.
const FRAME: usize = 320;
/// The TTS stand-in's audio: every sample is this value.
const AGENT_LEVEL: i16 = 1000;

/// What the scripted caller heard and what was done to its leg.
#[derive(Default)]
struct Heard {
    /// Per tick since the answer: the frame the caller heard, if any.
    frames: Vec<Option<Vec<i16>>>,
    /// Transfers asked of the leg, with the tick they were asked at.
    transfers: Vec<(usize, TransferTo)>,
    /// Tick at which the actor hung the leg up.
    hung_up_at: Option<usize>,
}

/// The scripted caller's leg.
struct ScriptedLeg {
    facts: LegFacts,
    /// The caller's audio from the first tick on (16 kHz); silence after.
    caller: Vec<i16>,
    /// Ticks done.
    tick: usize,
    /// Virtual time of tick 0 (the first poll).
    t0: Option<Instant>,
    /// Agent frames queued, not yet heard.
    out: VecDeque<Vec<i16>>,
    /// Transfer answers due: (tick, event).
    answers: VecDeque<(usize, TransferEvent)>,
    /// Shared with the test.
    heard: Arc<Mutex<Heard>>,
}

impl AudioOut for ScriptedLeg {
    fn play(&mut self, pcm16k: &[i16]) -> usize {
        let mut n = 0;
        for chunk in pcm16k.chunks(FRAME) {
            let mut f = chunk.to_vec();
            f.resize(FRAME, 0);
            self.out.push_back(f);
            n += 1;
        }
        n
    }
    fn queued(&self) -> usize {
        self.out.len()
    }
    fn pause(&mut self) -> Vec<Vec<u8>> {
        self.out.drain(..).map(|f| f.iter().flat_map(|s| s.to_le_bytes()).collect()).collect()
    }
    fn resume(&mut self, frames: Vec<Vec<u8>>) {
        for f in frames.into_iter().rev() {
            self.out.push_front(f.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect());
        }
    }
}

impl ScriptedLeg {
    async fn event(&mut self, pcm16k: &mut Vec<i16>) -> LegEvent {
        if self.answers.front().is_some_and(|(at, _)| *at <= self.tick) {
            let (_, ev) = self.answers.pop_front().expect("checked");
            return LegEvent::Transfer(ev);
        }
        // The media clock: one frame of virtual time per tick, to an
        // absolute time so a cancelled poll (the actor's `select!`) neither
        // loses nor repeats a step.
        let t0 = *self.t0.get_or_insert_with(Instant::now);
        let due = t0 + TICK * (self.tick as u32 + 1);
        let now = Instant::now();
        if now < due {
            tokio::time::advance(due - now).await;
        }
        // One frame out (as an RTP session sends it), one frame in.
        let sent = self.out.pop_front();
        self.heard.lock().unwrap().frames.push(sent);
        let start = self.tick * FRAME;
        pcm16k.clear();
        pcm16k.extend((start..start + FRAME).map(|i| self.caller.get(i).copied().unwrap_or(0)));
        self.tick += 1;
        LegEvent::Audio
    }
}

impl Leg for ScriptedLeg {
    fn facts(&self) -> &LegFacts {
        &self.facts
    }
    fn next_event<'a>(&'a mut self, pcm16k: &'a mut Vec<i16>) -> LegFuture<'a, LegEvent> {
        Box::pin(self.event(pcm16k))
    }
    fn transfer(&mut self, to: TransferTo) -> Result<(), String> {
        self.heard.lock().unwrap().transfers.push((self.tick, to));
        // As a SIP peer: 202 to the REFER, then the target answers.
        self.answers.push_back((self.tick + 5, TransferEvent::Accepted));
        self.answers.push_back((self.tick + 25, TransferEvent::Progress { status: 200, done: true }));
        Ok(())
    }
    fn hangup(&mut self) -> LegFuture<'_, ()> {
        self.heard.lock().unwrap().hung_up_at = Some(self.tick);
        Box::pin(async {})
    }
}

/// Real recorded speech (LibriVox), 16 kHz.
fn speech() -> Vec<i16> {
    let path = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav";
    let (pcm, rate) = crate::pipeline::wav::read_wav_mono(std::path::Path::new(path)).expect("pocketsphinx-testdata");
    crate::pipeline::to_pipeline_rate(&pcm, rate).unwrap()
}

/// Whether a heard frame is the agent's voice (the TTS stand-in's level).
fn is_agent(f: &Option<Vec<i16>>) -> bool {
    f.as_ref().is_some_and(|f| f.iter().all(|s| *s == AGENT_LEVEL))
}

/// Whether a heard frame is the supervisor's tone.
fn is_supervisor(f: &Option<Vec<i16>>) -> bool {
    f.as_ref().is_some_and(|f| f.iter().any(|s| *s != AGENT_LEVEL && *s != 0))
}

/// Ticks of `ms` milliseconds.
fn ticks(ms: usize) -> usize {
    ms / 20
}

/// Services for one call: the dental voice agent on stand-in STT/TTS,
/// stores in `dir`, no SIP stack.
async fn services(dir: &std::path::Path, stt: FakeStt) -> Arc<CallServices> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml = "routes:\n  default: desk\napplications:\n  desk:\n    type: voice-agent\n    agent: dental-front-desk\n    \
                record: true\n    barge_in_min_ms: 80\n    turn:\n      detector: vad\n      min_silence_ms: 500\n";
    let path = repo.join("sip-config/scripted-leg-test.yaml");
    let mut config = Config::parse(yaml, &path).unwrap();
    config.base_dir = repo.join("sip-config");
    config.data_dir = dir.to_path_buf();
    config.context_key = Some("scripted-leg-test-context-key-01".into());
    let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
    onnx::init_runtime(&paths.onnxruntime).expect("models (run `skald models fetch`)");
    let voice = VoiceServices {
        vad: crate::pipeline::vad::silero::SileroVad::load(&paths.silero_vad).unwrap(),
        turn_model: None,
        stt: Arc::new(stt),
        tts: Arc::new(FakeTts { fail: false, said: Mutex::new(Vec::new()) }),
        agents: crate::agent::flow::load_agents(&repo.join("sip-config/agents")).unwrap(),
        llm_agents: Default::default(),
        metrics: Metrics::new(),
    };
    let store = Store::open(&format!("sqlite://{}/calls.db", dir.display())).await.unwrap();
    Arc::new(CallServices {
        config: Arc::new(config),
        store,
        metrics: Metrics::new(),
        sip: None,
        registry: super::super::registry::CallRegistry::new(),
        media_ip: "127.0.0.1".parse().unwrap(),
        shutdown: Default::default(),
        tracker: Default::default(),
        voice: Some(Arc::new(voice)),
        contexts: crate::agent::context::ContextStore::new(),
        events: crate::events::EventBus::new(),
        contact: None,
    })
}

/// Holds tokio's auto-advance off until dropped: a blocking task in flight
/// inhibits it (tokio `test-util`), so the paused clock moves only when the
/// leg advances it, never while the actor waits on another thread.
struct ClockHold(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

fn hold_clock() -> ClockHold {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    ClockHold(tx)
}

/// Sleeps until `tick` of the leg's clock (20 ms each from `t0`).
async fn at_tick(t0: Instant, tick: usize) {
    tokio::time::sleep_until(t0 + TICK * tick as u32).await;
}

#[tokio::test(start_paused = true)]
async fn a_scripted_leg_drives_a_whole_voice_agent_call_without_sockets() {
    let _hold = hold_clock();
    let dir = tempfile::tempdir().unwrap();
    let stt = FakeStt {
        fail: false,
        text: "uh".into(),
        script: Arc::new(Mutex::new(VecDeque::from(["I'd like to book a cleaning".to_string()]))),
        ended: Default::default(),
    };
    let svc = services(dir.path(), stt).await;

    // The caller: 1.5 s of silence, then real speech over the greeting (a
    // barge-in), then silence to the end.
    let speech = speech();
    let barge_at = ticks(1500);
    let mut caller = vec![0i16; barge_at * FRAME];
    caller.extend_from_slice(&speech[..speech.len().min(3 * 16_000)]);
    let speech_end = caller.len() / FRAME;
    let heard = Arc::new(Mutex::new(Heard::default()));
    let leg = ScriptedLeg {
        facts: LegFacts { transport: "scripted", codec: Some("L16/16000".into()), ptime_ms: 20, transfer: Some("refer"), ..Default::default() },
        caller,
        tick: 0,
        t0: None,
        out: VecDeque::new(),
        answers: VecDeque::new(),
        heard: heard.clone(),
    };
    let record = CallRecord {
        id: CallId::new(),
        direction: "inbound".into(),
        did: "+15550100".into(),
        app: Some("desk".into()),
        transport: Some("scripted".into()),
        ..Default::default()
    };
    let id = record.id;
    let (commands, rx) = mpsc::channel(8);
    let actor = CallActor::new(svc.clone(), record, rx, Arrival::Stream { leg: Box::new(leg), context: None }, Some("desk".into()));
    let t0 = Instant::now();
    let call = tokio::spawn(actor.run());

    // A supervisor barges in while the agent answers the caller's turn,
    // talks for a second, and leaves.
    let barge_tick = speech_end + ticks(2500);
    at_tick(t0, barge_tick).await;
    let (reply, answer) = Reply::new();
    let cmd = CallCommand::Supervise { session: None, mode: SuperviseAction::Barge, text: None, by: "ana".into(), reply };
    commands.send(cmd).await.unwrap();
    let session = answer.await.unwrap().expect("barge accepted").session;
    let (reply, answer) = Reply::new();
    commands.send(CallCommand::SuperviseAttach { session: session.clone(), reply }).await.unwrap();
    let link = answer.await.unwrap().expect("attached");
    for i in 0..ticks(1000) {
        let tone: Vec<i16> = (0..FRAME).map(|n| (((i * FRAME + n) as f32 * 0.2).sin() * 4000.0) as i16 + 1).collect();
        link.mic.send(tone).await.unwrap();
        at_tick(t0, barge_tick + 1 + i).await;
    }
    let (reply, answer) = Reply::new();
    let cmd = CallCommand::Supervise { session: Some(session), mode: SuperviseAction::Leave, text: None, by: "ana".into(), reply };
    commands.send(cmd).await.unwrap();
    answer.await.unwrap().expect("left");
    let left_tick = barge_tick + ticks(1000);

    // Then the caller is transferred (cold): REFER, NOTIFY 200, hang-up.
    let transfer_tick = left_tick + ticks(1000);
    at_tick(t0, transfer_tick).await;
    commands.send(CallCommand::Transfer { target: "sip:desk@pbx.example.com".into(), mode: TransferMode::Cold }).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), call).await.expect("the call ends after the transfer").unwrap();

    let heard = std::mem::take(&mut *heard.lock().unwrap());
    let frames = &heard.frames;
    // The greeting was heard from the start.
    assert!(frames[..barge_at].iter().filter(|f| is_agent(f)).count() > ticks(1000), "greeting heard");
    // Barge-in: the greeting stops within 200 ms of the caller's first
    // speech frame (speech onset in this recording is at its start).
    let onset = barge_at + caller_onset(&speech);
    let stop = (onset..speech_end).find(|&t| !is_agent(&frames[t])).expect("the agent stopped");
    assert!((stop - onset) * 20 <= 200, "agent audio stopped {} ms after the caller started", (stop - onset) * 20);
    assert!(frames[stop..speech_end].iter().all(|f| !is_agent(f)), "no agent audio over the caller's turn");
    // One answer to the turn, heard within 1.5 s of the end of speech.
    let reply = (speech_end..barge_tick).find(|&t| is_agent(&frames[t])).expect("the agent answered");
    assert!((reply - speech_end) * 20 <= 1500, "reply heard {} ms after the end of speech", (reply - speech_end) * 20);
    // During the barge the caller hears the supervisor, never the agent.
    let barge = &frames[barge_tick + 5..left_tick];
    assert!(barge.iter().any(is_supervisor), "the supervisor is heard");
    assert!(barge.iter().all(|f| !is_agent(f)), "the agent is on hold during the barge");
    // The transfer carries the call's context, and the actor hangs up once
    // the target answered.
    assert_eq!(heard.transfers.len(), 1);
    let (asked_at, to) = &heard.transfers[0];
    assert!(to.uri.starts_with("sip:desk@pbx.example.com"), "{to:?}");
    assert!(to.uri.contains('?'), "context in the Refer-To headers: {}", to.uri);
    let hung_up = heard.hung_up_at.expect("the actor hung up");
    assert!(hung_up >= asked_at + 25, "hung up at tick {hung_up}, before the NOTIFY 200 (REFER at {asked_at})");
    eprintln!("barge-in stop {} ms; reply {} ms after the end of speech", (stop - onset) * 20, (reply - speech_end) * 20);

    let rec = svc.store.get_call(id).await.unwrap().expect("record");
    assert_eq!(rec.end_reason.as_deref(), Some("transferred"), "{rec:?}");
    assert_eq!(rec.state, "ended");
    assert!(rec.recording_path.is_some(), "stereo recording");
    let turns = svc.store.list_turns(id).await.unwrap();
    let said: Vec<(&str, &str)> = turns.iter().map(|t| (t.speaker.as_str(), t.text.as_str())).collect();
    assert!(said.iter().any(|(s, t)| *s == "caller" && t.contains("book a cleaning")), "{said:?}");
    assert_eq!(said.iter().filter(|(s, _)| *s == "caller").count(), 1, "one caller turn: {said:?}");
    let events = svc.store.events_for_call(Some(id), None).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for k in ["transfer.started", "transfer.accepted", "transfer.completed"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
}

/// Frames from the start of `speech` to its first voiced frame (level
/// above −30 dBFS).
fn caller_onset(speech: &[i16]) -> usize {
    speech.chunks(FRAME).position(|f| f.iter().any(|s| s.unsigned_abs() > 1000)).unwrap_or(0)
}
