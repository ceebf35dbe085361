//! The voice agent of one call: turn-taking around a flow or LLM agent.
//!
//! Owns, per call: the VAD stream, the turn detector and the end-of-turn
//! policy, the STT stream, the agent conversation, the TTS replies in flight
//! and the playout ledger (which agent audio has really gone out). The call
//! actor feeds it the caller's audio (16 kHz, one ptime per call) and polls
//! [`VoiceAgent::next_event`] in its `select!`; every decision comes back as
//! [`VoiceAction`]s that the actor carries out on its transport through
//! [`AudioOut`].
//!
//! Turn-taking (the rules live in [`crate::pipeline::endpointing`], sans-IO;
//! this module does their IO):
//! - Silero VAD finds the caller's speech; a pause (`turn.pause_ms`, 200 ms
//!   of silence) ends the STT utterance of the speech so far (its text is
//!   kept for the turn) and asks the end-of-turn model (smart-turn v3.2, on
//!   the last 8 s of the caller's audio, run off the actor's task). The turn
//!   ends when the model says complete and the text does not stop
//!   mid-clause, or after `turn.max_silence_ms`; with `turn.detector: vad`
//!   (or when the model fails: the record lists it) after
//!   `turn.min_silence_ms`. Speech after a pause continues the same turn.
//! - Preemptive replies: once the pause's transcript is in, a flow agent's
//!   reply is computed on a copy of the conversation and synthesized, but
//!   not played; the end of the turn commits it, more speech discards it.
//! - Continuations: speech that starts before the reply to the last turn
//!   has played `turn.continuation_ms` (or before it played at all) and
//!   turns out to be words continues that turn: the reply is dropped (not
//!   stored, not counted: the conversation is put back as it was before the
//!   turn), and the agent answers the whole utterance once.
//! - Barge-in: caller voicing for `barge_in_min_ms` (a speech run, before
//!   it is long enough to be a turn) while the agent is speaking pauses the
//!   agent's audio at once (unsent frames kept). A run that dies out before
//!   it becomes a turn (a cough, a click) resumes it at once. When
//!   the words arrive: only backchannels ("uh-huh", "okay"; `turn.backchannels`,
//!   `turn.min_interruption_words`, as LiveKit Agents) or no words resume
//!   the paused audio; real words drop the rest of the reply (by context
//!   id) and the agent's turn is stored as what the caller actually heard.
//! - A closing line (a reply followed by a hang-up or a transfer) is not
//!   interrupted: it is finished, then the call ends (unless the caller's
//!   speech continues the turn it answered).
//! - No dead air: the silence re-prompt counts from the last audio in either
//!   direction (a backchannel or noise re-arms it); the longest silence
//!   while the agent owed the caller an answer is kept for the call record
//!   ([`VoiceAgent::longest_dead_air_ms`]) and the `skald_dead_air_ms`
//!   histogram.
//! - A failing STT or TTS is survived: the caller hears a short spoken
//!   fallback (or the fallback WAV when TTS itself failed) and the call
//!   record lists what failed.

use crate::agent::flow::{AgentAction, AgentDef, FlowAgent};
use crate::ids::CallId;
use crate::observability::Metrics;
use crate::pipeline::aggregator::SentenceAggregator;
use crate::pipeline::endpointing::{
    Decision, Detector, EndReason, EndOfTurnModel, Endpointer, Interjection, InterruptionFilter, ending,
};
use crate::pipeline::turn::{TurnConfig, TurnDetector, TurnEvent, speech_tail};
use crate::pipeline::vad::silero::{SileroVad, VadStream, WINDOW};
use crate::providers::failover::FallbackLog;
use crate::providers::{ProviderError, SttEvent, SttProvider, SttStream, TtsAudio, TtsProvider};
use crate::transports::leg::AudioOut;
use crate::store::turns::{TurnLatency, TurnRecord};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Pre-roll of caller audio sent to STT before the detected start of speech.
const PRE_ROLL: Duration = Duration::from_millis(300);
/// Audio before the VAD's end of speech searched for the real end of the
/// voice ([`VoiceAgent::vad_lag`]).
const TAIL_SCAN: Duration = Duration::from_millis(400);
/// What the caller hears when recognition fails.
const STT_FALLBACK: &str = "Sorry, I didn't catch that. Could you say it again?";
/// Samples per second of the pipeline.
const RATE: usize = crate::pipeline::SAMPLE_RATE as usize;
/// Caller audio kept for the end-of-turn model: 8 s at 16 kHz.
const MODEL_WINDOW: usize = 8 * RATE;

/// Shared by every voice call: the loaded models and agent definitions.
pub struct VoiceServices {
    /// Silero VAD (one shared model).
    pub vad: Arc<SileroVad>,
    /// The end-of-turn model (smart-turn); `None`: the silence rule only.
    pub turn_model: Option<Arc<dyn EndOfTurnModel>>,
    /// Speech recognition.
    pub stt: Arc<dyn SttProvider>,
    /// Speech synthesis.
    pub tts: Arc<dyn TtsProvider>,
    /// Flow agent definitions by name.
    pub agents: BTreeMap<String, Arc<AgentDef>>,
    /// LLM agents by name, with their providers.
    pub llm_agents: Arc<super::llm_turns::LlmAgents>,
    /// Metrics (turn latency histograms).
    pub metrics: Metrics,
}
/// smart-turn v3.2 as the voice agent's end-of-turn model.
impl EndOfTurnModel for crate::providers::local::smart_turn::SmartTurn {
    fn predict(&self, pcm16k: &[i16]) -> Result<f32, String> {
        crate::providers::local::smart_turn::SmartTurn::predict(self, pcm16k).map_err(|e| e.to_string())
    }
}

/// Per-application settings of a voice agent.
#[derive(Debug, Clone)]
pub struct VoiceConfig {
    /// Agent name.
    pub agent: String,
    /// Turn detection.
    pub turn: TurnConfig,
    /// Caller speech needed to interrupt the agent.
    pub barge_in_min: Duration,
    /// Fallback prompt when TTS fails: 16 kHz mono samples.
    pub fallback_audio: Option<Arc<Vec<i16>>>,
    /// Cloud STT in front of the local model (None: local only).
    pub stt: Option<Box<crate::config::SttChoice>>,
    /// Cloud TTS in front of the local voice (None: local only).
    pub tts: Option<Box<crate::config::TtsChoice>>,
}

impl VoiceConfig {
    /// The voice settings of application `name` and whether to record it;
    /// `Ok(None)` when `name` is not a voice agent. Errors: the fallback
    /// prompt cannot be read.
    pub fn for_app(config: &crate::config::Config, name: &str) -> Result<Option<(VoiceConfig, bool)>, String> {
        let Some(crate::config::AppConfig::VoiceAgent { agent, record, turn, barge_in_min_ms, fallback_prompt, stt, tts, .. }) =
            config.applications.get(name)
        else {
            return Ok(None);
        };
        let fallback_audio = match fallback_prompt {
            Some(p) => Some(Arc::new(
                crate::pipeline::wav::load_prompt(&config.resolve(p)).map_err(|e| format!("fallback prompt: {e}"))?,
            )),
            None => None,
        };
        let cfg = VoiceConfig {
            agent: agent.clone(),
            turn: turn.as_ref().clone(),
            barge_in_min: Duration::from_millis(*barge_in_min_ms),
            fallback_audio,
            stt: stt.clone(),
            tts: tts.as_deref().map(|t| match t {
                // A stand-in's WAV is relative to the config directory.
                crate::config::TtsChoice::Wav(w) => {
                    Box::new(crate::config::TtsChoice::Wav(crate::providers::standin::WavConfig { file: config.resolve(&w.file) }))
                }
                other => Box::new(other.clone()),
            }),
        };
        Ok(Some((cfg, *record)))
    }
}

/// What the actor must do for the voice agent.
#[derive(Debug, Clone, PartialEq)]
pub enum VoiceAction {
    /// End the call (everything said has been played).
    Hangup(String),
    /// Hand the caller over, cold (REFER) or warm (bridged), with the call's
    /// context.
    Transfer(crate::agent::escalation::TransferRequest),
    /// Send these DTMF digits now (RFC 4733).
    SendDtmf(String),
    /// Store this transcript turn.
    Turn(TurnRecord),
    /// Record a failure on the call.
    Error(String),
}

/// What [`VoiceAgent::next_event`] woke up for.
#[derive(Debug)]
pub enum VoiceEvent {
    /// An STT result (or failure).
    Stt(Option<Result<SttEvent, ProviderError>>),
    /// Synthesized audio for a sentence of reply `ctx` (`None`: that
    /// sentence is complete).
    Tts(u64, Option<Result<TtsAudio, ProviderError>>),
    /// The caller stayed silent after the agent finished.
    Silence,
    /// The LLM agent's stream, a tool, or its filler deadline.
    Llm(super::llm_turns::LlmWake),
    /// The end-of-turn model answered request `id`: P(turn complete), or
    /// why it failed.
    TurnModel(u64, Result<f32, String>),
}

/// Agent audio taken off the wire by a barge-in: the encoded frames and
/// their 16 kHz audio (for the recording).
type Paused = (Vec<Vec<u8>>, VecDeque<Vec<i16>>);

/// One sentence of a reply being synthesized, or waiting its turn to be.
struct Pending {
    /// Reply (context id) it belongs to.
    ctx: u64,
    /// The sentence text.
    text: String,
    /// Audio stream from TTS; `None` until started (see
    /// [`VoiceAgent::start_ready`]).
    rx: Option<mpsc::Receiver<Result<TtsAudio, ProviderError>>>,
    /// It has produced audio (or ended): the next one may start.
    sounded: bool,
}

/// One agent reply: its text by sentence and how much audio each became.
struct Reply {
    /// Context id.
    ctx: u64,
    /// Still growing (an LLM reply being streamed): not finished even when
    /// everything queued so far has played.
    open: bool,
    /// A preemptive reply not yet committed: its audio is kept in
    /// `held_pcm`, not played.
    held: bool,
    /// Audio of a held reply (sentence, 16 kHz samples), in order.
    held_pcm: Vec<(String, Vec<i16>)>,
    /// (sentence, frames queued for it).
    sentences: Vec<(String, usize)>,
    /// Audio time (ms from answer) when its first frame was queued.
    start_ms: Option<i64>,
    /// Latency of this reply.
    latency: TurnLatency,
    /// When the caller's turn that caused it ended (for latency).
    eos: Option<Instant>,
    /// First RTP frame of this reply already sent.
    first_sent: bool,
    /// Index (in frames pushed) of its first frame, once queued.
    first_frame: Option<u64>,
}

/// The conversation as it was before a caller turn.
enum Snapshot {
    /// A flow agent's state.
    Flow(Box<FlowAgent>),
    /// An LLM agent's conversation.
    Llm(Box<crate::agent::llm_agent::LlmAgent>),
    /// Nothing to restore.
    None,
}

/// The caller's last answered turn, kept while its reply may still be
/// continued over.
struct LastTurn {
    /// What the caller said.
    text: String,
    /// Start of the turn, ms from answer.
    start_ms: i64,
    /// The conversation before the turn.
    snapshot: Snapshot,
    /// First reply context id of the answer.
    first_ctx: u64,
}

/// A reply prepared before the end of the turn was confirmed.
struct Preemption {
    /// The caller's words it answers.
    text: String,
    /// The conversation after answering them.
    agent: FlowAgent,
    /// First reply context id it spoke.
    first_ctx: u64,
    /// Hang-up or transfer after it.
    after: Option<VoiceAction>,
    /// End of speech → reply text, ms.
    agent_ms: Option<u32>,
}

/// The voice agent of one call.
pub struct VoiceAgent {
    /// Shared models.
    svc: Arc<VoiceServices>,
    /// Settings.
    cfg: VoiceConfig,
    /// The call (for transcript rows).
    call_id: CallId,
    /// VAD state.
    vad: VadStream,
    /// Speech / silence runs (ends speech after `turn.pause_ms`).
    turn: TurnDetector,
    /// The end-of-turn policy.
    endpointer: Endpointer,
    /// Backchannel or interruption.
    filter: InterruptionFilter,
    /// STT stream.
    stt: Box<dyn SttStream>,
    /// This call's STT provider (cloud with local failover, or local).
    stt_provider: Arc<dyn SttProvider>,
    /// This call's TTS provider (cloud with local failover, or local).
    tts: Arc<dyn TtsProvider>,
    /// Provider failovers during this call (for the call record).
    fallbacks: FallbackLog,
    /// The conversation, for a flow agent.
    agent: Option<FlowAgent>,
    /// The conversation, for an LLM agent.
    llm: Option<Box<super::llm_turns::LlmBrain>>,
    /// The LLM reply being spoken (context id), until it closes.
    llm_ctx: Option<u64>,
    /// Latency of the LLM reply to the caller's last turn, until it speaks.
    llm_latency: Option<TurnLatency>,
    /// Recent caller audio (pre-roll), 16 kHz.
    recent: VecDeque<i16>,
    /// The caller's last 8 s, 16 kHz, for the end-of-turn model.
    model_audio: VecDeque<i16>,
    /// Audio time: VAD windows consumed.
    vad_time: Duration,
    /// True while the caller's speech is streamed to STT.
    streaming: bool,
    /// Start of the current caller turn, ms from answer.
    turn_start_ms: i64,
    /// STT utterances ended and not yet transcribed.
    segments_pending: usize,
    /// Words of the open caller turn so far.
    turn_text: String,
    /// The open turn began while the agent was speaking.
    over_agent: bool,
    /// The open turn may continue the last one (it began early in its reply).
    cont_candidate: bool,
    /// The open turn continues this one (its reply was dropped).
    continuing: Option<LastTurn>,
    /// The last answered caller turn.
    last_turn: Option<LastTurn>,
    /// The last caller turn's row, stored once it can no longer be
    /// continued: (text, start ms, end ms).
    held_caller: Option<(String, i64, i64)>,
    /// A reply prepared before the end of the turn.
    preempt: Option<Preemption>,
    /// The end-of-turn model running: (request id, task).
    model_job: Option<(u64, tokio::task::JoinHandle<Result<f32, String>>)>,
    /// Model failures this call (the first is recorded).
    model_errors: u32,
    /// When the caller's last speech ended.
    eos: Option<Instant>,
    /// End of speech → final transcript, for the open turn.
    stt_ms: Option<u32>,
    /// Since when the agent owes the caller an answer (dead air runs).
    owed_since: Option<Instant>,
    /// Longest dead air so far.
    longest_dead_air: Duration,
    /// Next reply context id.
    next_ctx: u64,
    /// Sentences being synthesized, in play order.
    pending: VecDeque<Pending>,
    /// Replies queued or playing, oldest first.
    replies: VecDeque<Reply>,
    /// Frames queued per reply, in queue order: (ctx, frames).
    ledger: VecDeque<(u64, usize)>,
    /// Frames handed to `AudioOut::play` in all.
    frames_pushed: u64,
    /// Frames known to be sent.
    frames_sent: u64,
    /// Frames paused by an interruption, kept to resume a false one.
    paused: Option<Paused>,
    /// The pause came from a speech run not yet confirmed as a turn
    /// (`min_speech_ms`): if the run dies out, the agent resumes.
    unconfirmed_pause: bool,
    /// Context interrupted by the caller, awaiting their words.
    interrupted: Option<u64>,
    /// After the current audio: hang up / transfer.
    after_playout: Option<VoiceAction>,
    /// When to call `on_silence`.
    silence_at: Option<Instant>,
    /// Transcript rows written.
    seq: u32,
    /// Agent 16 kHz samples per frame sent, for the stereo recording.
    sent_audio: VecDeque<Vec<i16>>,
    /// Agent audio found sent outside `on_tick` (at a barge-in), reported
    /// by the next `on_tick`.
    unreported: Vec<i16>,
    /// ptime in 16 kHz samples.
    frame_16k: usize,
    /// Fallback sentence queued after a failure, to avoid loops.
    failures: u32,
}

impl VoiceAgent {
    /// Starts the voice agent of a call: opens the STT stream. Errors when
    /// the agent is unknown or STT cannot open (the actor then plays the
    /// fallback and ends the call).
    pub async fn start(
        svc: Arc<VoiceServices>,
        cfg: VoiceConfig,
        call_id: CallId,
        today: time::Date,
        ptime: Duration,
    ) -> Result<VoiceAgent, String> {
        let flow = svc.agents.get(&cfg.agent).cloned();
        let llm = super::llm_turns::LlmBrain::new(svc.llm_agents.clone(), &cfg.agent, None).map(Box::new);
        if flow.is_none() && llm.is_none() {
            return Err(format!("unknown agent `{}`", cfg.agent));
        }
        let fallbacks = FallbackLog::new();
        let stt_provider = call_stt(&svc, cfg.stt.as_deref(), &fallbacks);
        let tts = call_tts(&svc, cfg.tts.as_deref(), &fallbacks);
        let stt = stt_provider.open().await.map_err(|e| format!("stt: {e}"))?;
        let vad = svc.vad.stream();
        let mut policy = cfg.turn.endpointing();
        if svc.turn_model.is_none() {
            policy.detector = Detector::Vad;
        }
        let turn = TurnDetector::new(TurnConfig { min_silence_ms: policy.pause_ms, ..cfg.turn.clone() });
        let filter = cfg.turn.interruption_filter();
        Ok(VoiceAgent {
            agent: flow.map(|def| FlowAgent::new(def, today)),
            llm,
            llm_ctx: None,
            llm_latency: None,
            svc,
            turn,
            endpointer: Endpointer::new(policy),
            filter,
            cfg,
            call_id,
            vad,
            stt,
            stt_provider,
            tts,
            fallbacks,
            recent: VecDeque::new(),
            model_audio: VecDeque::with_capacity(MODEL_WINDOW),
            vad_time: Duration::ZERO,
            streaming: false,
            turn_start_ms: 0,
            segments_pending: 0,
            turn_text: String::new(),
            over_agent: false,
            cont_candidate: false,
            continuing: None,
            last_turn: None,
            held_caller: None,
            preempt: None,
            model_job: None,
            model_errors: 0,
            eos: None,
            stt_ms: None,
            owed_since: None,
            longest_dead_air: Duration::ZERO,
            next_ctx: 1,
            pending: VecDeque::new(),
            replies: VecDeque::new(),
            ledger: VecDeque::new(),
            frames_pushed: 0,
            frames_sent: 0,
            paused: None,
            unconfirmed_pause: false,
            interrupted: None,
            after_playout: None,
            silence_at: None,
            seq: 0,
            sent_audio: VecDeque::new(),
            unreported: Vec::new(),
            frame_16k: (RATE as u128 * ptime.as_millis() / 1000) as usize,
            failures: 0,
        })
    }
    /// The call was answered: the agent's greeting.
    pub async fn begin(&mut self) -> Vec<VoiceAction> {
        if let Some(b) = self.llm.as_mut() {
            let outs = b.greeting().await;
            return self.apply_llm(outs).await;
        }
        let actions = self.agent.as_mut().map(FlowAgent::start).unwrap_or_default();
        self.apply(actions, None).await
    }

    /// The call was answered and came with a context (a transfer): the
    /// greeting resumes the conversation where the last agent left it.
    pub async fn resume(&mut self, ctx: &crate::agent::context::CallContext) -> Vec<VoiceAction> {
        if let Some(b) = self.llm.as_mut() {
            b.set_context(ctx);
            let outs = b.greeting().await;
            return self.apply_llm(outs).await;
        }
        let actions = self.agent.as_mut().map(|a| a.resume(ctx.intent.as_deref(), &ctx.slots)).unwrap_or_default();
        self.apply(actions, None).await
    }

    /// The transfer the agent asked for failed: the caller is told and the
    /// conversation goes on.
    pub async fn transfer_failed(&mut self) -> Vec<VoiceAction> {
        if self.llm.is_some() {
            let outs = vec![
                super::llm_turns::LlmOut::Say("I'm sorry, I couldn't connect you right now.".into()),
                super::llm_turns::LlmOut::Say("Is there anything else I can help you with?".into()),
                super::llm_turns::LlmOut::Close,
            ];
            return self.apply_llm(outs).await;
        }
        let actions = self.agent.as_mut().map(FlowAgent::on_transfer_failed).unwrap_or_default();
        self.apply(actions, None).await
    }

    /// Whether an LLM agent runs the conversation (not a flow agent).
    pub fn is_llm(&self) -> bool {
        self.llm.is_some()
    }

    /// A supervisor's typed whisper: an instruction to the LLM agent for
    /// the rest of the call. Returns false for a flow agent (it has no model
    /// to instruct).
    pub fn add_instruction(&mut self, text: &str) -> bool {
        match self.llm.as_mut() {
            Some(b) => {
                b.add_instruction(text);
                true
            }
            None => false,
        }
    }

    /// An LLM agent's view of the call context (intent, summary, previous
    /// agents), for a transfer; `None` for a flow agent.
    pub fn llm_context(&self) -> Option<crate::agent::context::CallContext> {
        self.llm.as_ref().map(|b| b.context())
    }

    /// Cloud providers that failed during the call and what took over, in
    /// order (for the call record's `errors`).
    pub fn provider_failures(&self) -> Vec<String> {
        self.fallbacks.failures()
    }

    /// What the agent is working on (for the context handed on).
    pub fn goal(&self) -> Option<&str> {
        self.agent.as_ref().and_then(FlowAgent::goal)
    }

    /// The agent's name.
    pub fn agent_name(&self) -> &str {
        &self.cfg.agent
    }

    /// Waits for the next STT result, TTS audio, model verdict or silence
    /// timeout. Cancel-safe. Every event it returns must be handed to
    /// [`VoiceAgent::on_event`].
    pub async fn next_event(&mut self) -> VoiceEvent {
        // Sentences queued behind one that has sounded or gone start now.
        self.start_ready().await;
        let silence_at = self.silence_at;
        let head = self.pending.front_mut();
        tokio::select! {
            ev = self.stt.next_event() => VoiceEvent::Stt(ev),
            ev = recv_head(head) => {
                let ctx = self.pending.front().map(|p| p.ctx).unwrap_or(0);
                VoiceEvent::Tts(ctx, ev)
            }
            (id, res) = join_model(&mut self.model_job) => VoiceEvent::TurnModel(id, res),
            _ = sleep_opt(silence_at) => VoiceEvent::Silence,
            ev = next_llm(&mut self.llm) => VoiceEvent::Llm(ev),
        }
    }

    /// Handles what `next_event` returned.
    pub async fn on_event(&mut self, ev: VoiceEvent, out: &mut dyn AudioOut, now_ms: i64) -> Vec<VoiceAction> {
        match ev {
            VoiceEvent::Stt(Some(Ok(SttEvent::Final(t)))) => self.on_final(t.text, out, now_ms).await,
            VoiceEvent::Stt(Some(Ok(SttEvent::Interim(_)))) => Vec::new(),
            VoiceEvent::Stt(Some(Err(e))) => self.stt_failed(e, out).await,
            VoiceEvent::Stt(None) => self.stt_failed(ProviderError::Fatal("STT stream ended".into()), out).await,
            VoiceEvent::Tts(ctx, Some(Ok(audio))) => {
                self.queue_audio(ctx, &audio, out, now_ms);
                if let Some(p) = self.pending.front_mut() {
                    p.sounded = true;
                }
                Vec::new()
            }
            VoiceEvent::Tts(_, None) => {
                self.pending.pop_front();
                Vec::new()
            }
            VoiceEvent::Tts(ctx, Some(Err(e))) => self.tts_failed(ctx, e, out),
            VoiceEvent::TurnModel(id, res) => {
                self.model_job = None;
                let mut actions = Vec::new();
                let p = match res {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(error = %e, "end-of-turn model failed: silence rule for this turn");
                        if self.model_errors == 0 {
                            actions.push(VoiceAction::Error(format!("turn model: {e}; silence rule")));
                        }
                        self.model_errors += 1;
                        None
                    }
                };
                tracing::debug!(id, ?p, "end-of-turn verdict");
                let ds = self.endpointer.handle_verdict(id, p, self.vad_time);
                actions.extend(self.decide(ds, out, now_ms).await);
                actions
            }
            VoiceEvent::Llm(wake) => {
                let Some(b) = self.llm.as_mut() else { return Vec::new() };
                let outs = b.on_wake(wake).await;
                if let Some(t) = b.take_first_token_ms() {
                    let asked = self.llm_latency.as_ref().and_then(|l| l.agent_ms).unwrap_or(0);
                    let ttft = Some(asked + t);
                    match self.llm_latency.as_mut() {
                        Some(l) => l.llm_first_token_ms = ttft,
                        None => {
                            if let Some(r) = self.llm_ctx.and_then(|c| self.replies.iter_mut().find(|r| r.ctx == c)) {
                                r.latency.llm_first_token_ms = ttft;
                            }
                        }
                    }
                }
                self.apply_llm(outs).await
            }
            VoiceEvent::Silence => {
                self.silence_at = None;
                self.last_turn = None;
                tracing::info!("caller silent: agent re-prompts");
                if self.llm.is_some() {
                    let outs = vec![
                        super::llm_turns::LlmOut::Say("Are you still there?".into()),
                        super::llm_turns::LlmOut::Close,
                    ];
                    return self.apply_llm(outs).await;
                }
                let actions = self.agent.as_mut().map(FlowAgent::on_silence).unwrap_or_default();
                self.apply(actions, None).await
            }
        }
    }

    /// One ptime of caller audio (16 kHz). Runs VAD, the turn detector and
    /// the end-of-turn policy; streams the caller's speech to STT; may barge
    /// in.
    pub async fn on_audio(&mut self, frame: &[i16], out: &mut dyn AudioOut, now_ms: i64) -> Vec<VoiceAction> {
        let mut actions = Vec::new();
        self.recent.extend(frame.iter().copied());
        let keep = RATE * (PRE_ROLL.max(TAIL_SCAN) + Duration::from_millis(self.cfg.turn.pause_ms)).as_millis() as usize / 1000 + WINDOW;
        let excess = self.recent.len().saturating_sub(keep);
        self.recent.drain(..excess);
        if self.svc.turn_model.is_some() {
            self.model_audio.extend(frame.iter().copied());
            let excess = self.model_audio.len().saturating_sub(MODEL_WINDOW);
            self.model_audio.drain(..excess);
        }
        if self.streaming
            && let Err(e) = self.stt.send_audio(frame).await
        {
            actions.extend(self.stt_failed(e, out).await);
        }
        let probs = match self.vad.push(frame) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "VAD failed on a frame");
                return actions;
            }
        };
        let window = Duration::from_millis((WINDOW * 1000 / RATE) as u64);
        for p in probs {
            self.vad_time += window;
            let mut ds = Vec::new();
            let was_voiced = self.turn.voiced_for().is_some();
            let event = self.turn.push(p, window);
            if was_voiced && self.streaming && self.turn.speaking() && self.turn.voiced_for().is_none() {
                // The voice stopped inside the turn: STT may transcribe what
                // it has while the caller pauses or goes on.
                self.stt.word_gap().await;
            }
            match event {
                Some(TurnEvent::SpeechStarted { at }) => {
                    self.unconfirmed_pause = false;
                    actions.extend(self.speech_started(at, out, now_ms).await);
                    ds.extend(self.endpointer.handle_speech_started(at));
                }
                Some(TurnEvent::SpeechEnded { started, ended }) => {
                    self.streaming = false;
                    // The latency record starts where the voice really
                    // stopped, before the VAD's `ended` (its lag).
                    let lag = self.vad_lag(ended);
                    let silence = self.vad_time.saturating_sub(ended) + lag;
                    self.eos = Some(Instant::now().checked_sub(silence).unwrap_or_else(Instant::now));
                    tracing::debug!(ms = (ended - started).as_millis() as u64, vad_lag_ms = lag.as_millis() as u64, "caller paused");
                    ds.extend(self.endpointer.handle_speech_ended(ended, self.vad_time));
                }
                None => {}
            }
            ds.extend(self.endpointer.handle_time(self.vad_time));
            actions.extend(self.decide(ds, out, now_ms).await);
            // Barge-in: the caller has voiced over the agent long enough;
            // a run that died out before it was a turn was noise.
            let voiced = self.turn.voiced_for();
            if voiced.is_some_and(|t| t >= self.cfg.barge_in_min)
                && self.interrupted.is_none()
                && self.agent_speaking(out)
                && self.may_interrupt()
            {
                self.barge_in(out);
                self.unconfirmed_pause = !self.turn.speaking();
            } else if self.unconfirmed_pause && voiced.is_none() && !self.turn.speaking() {
                self.unconfirmed_pause = false;
                self.resume_paused(out);
            }
        }
        actions
    }

    /// How long before the VAD's end of speech `ended` (an offset in audio
    /// time) the caller's voice really stopped: [`speech_tail`] over the
    /// [`TAIL_SCAN`] of audio before `ended`, from the recent audio. Zero
    /// when that audio is no longer held or holds no voice.
    fn vad_lag(&self, ended: Duration) -> Duration {
        // `recent` ends at the newest sample; the VAD has consumed all but
        // the part of a window it still buffers.
        let after = self.vad_time.saturating_sub(ended).as_millis() as usize * RATE / 1000 + self.vad.buffered();
        let Some(upto) = self.recent.len().checked_sub(after) else { return Duration::ZERO };
        let from = upto.saturating_sub(TAIL_SCAN.as_millis() as usize * RATE / 1000);
        let scan: Vec<i16> = self.recent.range(from..upto).copied().collect();
        match speech_tail(&scan) {
            Some(end) => Duration::from_millis(((scan.len() - end) * 1000 / RATE) as u64),
            None => Duration::ZERO,
        }
    }

    /// The caller's speech began at audio offset `at`: stream it (with
    /// pre-roll) to STT; a new turn notes whether it began over the agent
    /// and whether it may continue the last one.
    async fn speech_started(&mut self, at: Duration, out: &mut dyn AudioOut, now_ms: i64) -> Vec<VoiceAction> {
        let mut actions = Vec::new();
        self.streaming = true;
        self.silence_at = None;
        self.close_owed();
        let pre = (self.vad_time.saturating_sub(at) + Duration::from_millis(100)).min(PRE_ROLL);
        if !self.endpointer.in_turn() {
            self.turn_start_ms = now_ms - pre.as_millis() as i64;
            self.turn_text.clear();
            self.stt_ms = None;
            self.over_agent = self.agent_speaking(out) || self.paused.is_some();
            self.cont_candidate = self.continuation_possible();
            if !self.cont_candidate {
                // The model sees this turn only (as Pipecat's analyzer
                // does): older audio goes, the pre-roll stays; the window
                // is zero-padded on the left.
                let keep = RATE * pre.as_millis() as usize / 1000 + RATE * (self.vad_time.saturating_sub(at).as_millis() as usize) / 1000;
                let excess = self.model_audio.len().saturating_sub(keep);
                self.model_audio.drain(..excess);
            }
        }
        let n = (RATE * pre.as_millis() as usize / 1000).min(self.recent.len());
        let pre_roll: Vec<i16> = self.recent.iter().skip(self.recent.len() - n).copied().collect();
        if let Err(e) = self.stt.send_audio(&pre_roll).await {
            actions.extend(self.stt_failed(e, out).await);
        }
        tracing::debug!(at_ms = at.as_millis() as u64, over_agent = self.over_agent, "caller speaking");
        actions
    }

    /// Carries out the end-of-turn policy's decisions.
    async fn decide(&mut self, ds: Vec<Decision>, out: &mut dyn AudioOut, now_ms: i64) -> Vec<VoiceAction> {
        let mut actions = Vec::new();
        for d in ds {
            match d {
                Decision::Started(_) => {}
                Decision::Transcribe => {
                    self.segments_pending += 1;
                    if let Err(e) = self.stt.end_utterance().await {
                        actions.extend(self.stt_failed(e, out).await);
                    }
                }
                Decision::AskModel(id) => self.ask_model(id),
                Decision::Preempt => self.preempt().await,
                Decision::Resumed => self.discard_preempt(),
                Decision::EndOfTurn { reason, .. } => actions.extend(self.end_turn(reason, out, now_ms).await),
            }
        }
        actions
    }

    /// Runs the end-of-turn model on the caller's last 8 s, off this task.
    fn ask_model(&mut self, id: u64) {
        let Some(model) = self.svc.turn_model.clone() else { return };
        let audio: Vec<i16> = self.model_audio.iter().copied().collect();
        let job = tokio::task::spawn_blocking(move || model.predict(&audio));
        if let Some((_, old)) = self.model_job.replace((id, job)) {
            old.abort();
        }
    }

    /// A final transcript of one utterance (the caller's speech up to a pause).
    async fn on_final(&mut self, text: String, out: &mut dyn AudioOut, now_ms: i64) -> Vec<VoiceAction> {
        self.segments_pending = self.segments_pending.saturating_sub(1);
        if !self.endpointer.in_turn() {
            tracing::debug!(transcript = %text, "transcript after its turn: ignored");
            return Vec::new();
        }
        if self.stt_ms.is_none() || self.segments_pending == 0 {
            self.stt_ms = self.eos.map(|e| e.elapsed().as_millis() as u32);
        }
        let text = text.trim();
        if !text.is_empty() {
            if !self.turn_text.is_empty() {
                self.turn_text.push(' ');
            }
            self.turn_text.push_str(text);
        }
        if self.segments_pending > 0 || self.endpointer.speaking() {
            return Vec::new();
        }
        let mut actions = self.resolve_interjection(out, now_ms);
        let ds = self.endpointer.handle_transcript(ending(&self.effective_text()), self.vad_time);
        actions.extend(self.decide(ds, out, now_ms).await);
        actions
    }

    /// Speech over the agent, now that its words are known: a backchannel
    /// or noise resumes the paused agent; real words early in the reply to
    /// the last turn continue that turn; other real words interrupt.
    fn resolve_interjection(&mut self, out: &mut dyn AudioOut, now_ms: i64) -> Vec<VoiceAction> {
        if !(self.over_agent || self.paused.is_some()) || self.continuing.is_some() {
            return Vec::new();
        }
        match self.filter.classify(&self.turn_text) {
            Interjection::NoWords => {
                self.resume_paused(out);
                Vec::new()
            }
            Interjection::Backchannel => {
                if self.resume_paused(out) {
                    tracing::info!(words = %self.turn_text, "backchannel: the agent goes on");
                }
                Vec::new()
            }
            Interjection::Interruption if self.cont_candidate && self.last_turn.is_some() => {
                self.continue_last_turn(out, now_ms)
            }
            Interjection::Interruption => {
                if self.interrupted.is_none() && self.agent_speaking(out) && self.may_interrupt() {
                    self.barge_in(out);
                }
                Vec::new()
            }
        }
    }

    /// The caller's words go on from their last turn: its reply is dropped
    /// without a trace, the conversation is put back as it was before that
    /// turn, and the open turn carries both parts.
    fn continue_last_turn(&mut self, out: &mut dyn AudioOut, now_ms: i64) -> Vec<VoiceAction> {
        let Some(last) = self.last_turn.take() else { return Vec::new() };
        tracing::info!(first = %last.text, "the caller went on: reply dropped, one turn");
        self.svc.metrics.continuation();
        self.discard_preempt();
        if self.interrupted.is_none() && out.queued() > 0 {
            self.barge_in(out);
        }
        let mut actions = Vec::new();
        self.paused = None;
        self.unconfirmed_pause = false;
        self.interrupted = None;
        self.after_playout = None;
        self.pending.clear();
        let replies: Vec<Reply> = self.replies.drain(..).collect();
        for r in replies.iter().filter(|r| r.ctx < last.first_ctx) {
            actions.extend(self.agent_turn(r, Some(self.heard_frames(r)), now_ms));
        }
        self.ledger.clear();
        self.frames_pushed = self.frames_sent;
        self.sent_audio.clear();
        let LastTurn { text, start_ms, snapshot, first_ctx } = last;
        match snapshot {
            Snapshot::Flow(a) => self.agent = Some(*a),
            Snapshot::Llm(a) => {
                if let Some(b) = self.llm.as_mut() {
                    b.restore(*a);
                }
                self.llm_ctx = None;
                self.llm_latency = None;
            }
            Snapshot::None => {}
        }
        self.held_caller = None;
        self.turn_start_ms = start_ms;
        self.over_agent = false;
        self.cont_candidate = false;
        self.continuing = Some(LastTurn { text, start_ms, snapshot: Snapshot::None, first_ctx });
        actions
    }

    /// The open turn's words, with the turn it continues.
    fn effective_text(&self) -> String {
        match &self.continuing {
            Some(l) if !self.turn_text.is_empty() => format!("{} {}", l.text, self.turn_text),
            Some(l) => l.text.clone(),
            None => self.turn_text.clone(),
        }
    }

    /// Whether speech starting now could continue the last turn: its reply
    /// is still to come, or began playing less than `continuation_ms` ago.
    fn continuation_possible(&self) -> bool {
        let Some(last) = &self.last_turn else { return false };
        if let Some(r) = self.replies.iter().find(|r| r.ctx >= last.first_ctx && !r.held) {
            // Heard so far, on the media clock: frames sent since its first.
            let Some(first) = r.first_frame else { return true };
            let heard_ms = self.frames_sent.saturating_sub(first) * (self.frame_16k as u64 * 1000 / RATE as u64);
            return heard_ms < self.cfg.turn.continuation_ms;
        }
        self.pending.iter().any(|p| p.ctx >= last.first_ctx)
    }

    /// Whether caller speech may pause the agent now: not during a closing
    /// line (goodbye, transfer notice), unless it may continue the turn that
    /// line answered.
    fn may_interrupt(&self) -> bool {
        self.after_playout.is_none() || self.cont_candidate
    }

    /// Puts paused agent audio back (a false interruption); true when there
    /// was some.
    fn resume_paused(&mut self, out: &mut dyn AudioOut) -> bool {
        self.interrupted = None;
        self.unconfirmed_pause = false;
        let Some((frames, audio)) = self.paused.take() else { return false };
        tracing::info!(frames = frames.len(), "false interruption: agent resumes");
        self.frames_pushed += frames.len() as u64;
        out.resume(frames);
        let mut audio = audio;
        audio.extend(self.sent_audio.drain(..));
        self.sent_audio = audio;
        true
    }

    /// Starts a reply to the words so far, held until the turn is confirmed
    /// (flow agents; an LLM agent answers at the end of the turn).
    async fn preempt(&mut self) {
        if !self.cfg.turn.preemptive || self.over_agent || self.paused.is_some() || self.after_playout.is_some() {
            return;
        }
        let Some(mut agent) = self.agent.clone() else { return };
        let text = self.effective_text();
        if self.filter.classify(&text) == Interjection::NoWords || self.preempt.as_ref().is_some_and(|p| p.text == text) {
            return;
        }
        self.discard_preempt();
        let actions = agent.on_user_turn(&text);
        let agent_ms = self.eos.map(|e| e.elapsed().as_millis() as u32);
        let first_ctx = self.next_ctx;
        let mut after = None;
        for a in actions {
            match a {
                AgentAction::Say(t) => {
                    let ctx = self.next_ctx;
                    self.next_ctx += 1;
                    self.say(ctx, &t, TurnLatency::default(), true).await;
                }
                AgentAction::Hangup { reason } => after = Some(VoiceAction::Hangup(reason)),
                AgentAction::Transfer(t) => after = Some(VoiceAction::Transfer(t)),
            }
        }
        tracing::debug!(%text, "preemptive reply started");
        self.preempt = Some(Preemption { text, agent, first_ctx, after, agent_ms });
    }

    /// Drops a preemptive reply (the caller went on).
    fn discard_preempt(&mut self) {
        let Some(p) = self.preempt.take() else { return };
        tracing::debug!(text = %p.text, "preemptive reply discarded");
        self.replies.retain(|r| !(r.held && r.ctx >= p.first_ctx));
        let replies = &self.replies;
        self.pending.retain(|x| replies.iter().any(|r| r.ctx == x.ctx));
    }

    /// The caller's turn is over: answer it, or let it go (noise, a
    /// backchannel over the agent).
    async fn end_turn(&mut self, reason: EndReason, out: &mut dyn AudioOut, now_ms: i64) -> Vec<VoiceAction> {
        let decision_ms = self.eos.map(|e| e.elapsed().as_millis() as u32);
        let new_words = std::mem::take(&mut self.turn_text);
        let over = std::mem::take(&mut self.over_agent) || self.paused.is_some();
        self.cont_candidate = false;
        let cont = self.continuing.take();
        let class = self.filter.classify(&new_words);
        if cont.is_none() && (class == Interjection::NoWords || (over && class == Interjection::Backchannel)) {
            tracing::debug!(words = %new_words, "no turn: noise or a backchannel");
            if class == Interjection::Backchannel {
                self.svc.metrics.backchannel();
            }
            self.resume_paused(out);
            self.discard_preempt();
            self.arm_silence();
            return Vec::new();
        }
        let (text, start_ms) = match &cont {
            Some(l) if new_words.is_empty() => (l.text.clone(), l.start_ms),
            Some(l) => (format!("{} {}", l.text, new_words), l.start_ms),
            None => (new_words, self.turn_start_ms),
        };
        let mut actions = self.flush_caller();
        if self.after_playout.is_some() && self.interrupted.is_none() {
            // The closing line plays to its end; the call ends after it.
            tracing::info!(transcript = %text, "caller spoke over the closing line");
            self.discard_preempt();
            self.held_caller = Some((text, start_ms, now_ms));
            actions.extend(self.flush_caller());
            return actions;
        }
        actions.extend(self.drop_interrupted(now_ms));
        tracing::info!(transcript = %text, ?reason, decision_ms, "caller said");
        self.held_caller = Some((text.clone(), start_ms, now_ms));
        let snapshot = match (&self.agent, &self.llm) {
            (Some(a), _) => Snapshot::Flow(Box::new(a.clone())),
            (None, Some(b)) => Snapshot::Llm(Box::new(b.snapshot())),
            (None, None) => Snapshot::None,
        };
        // The answer's first reply: the preemptive one's, or the next.
        let first_ctx = self.preempt.as_ref().filter(|p| p.text == text).map_or(self.next_ctx, |p| p.first_ctx);
        let mut latency = TurnLatency { stt_ms: self.stt_ms.take(), decision_ms, ..Default::default() };
        self.owed_since = self.eos;
        let preempted = self.preempt.as_ref().is_some_and(|p| p.text == text);
        if preempted {
            let p = self.preempt.take().expect("checked");
            latency.agent_ms = p.agent_ms;
            latency.preemptive = true;
            actions.extend(self.commit_preempt(p, latency, out, now_ms));
        } else {
            self.discard_preempt();
            if let Some(b) = self.llm.as_mut() {
                let outs = b.on_caller_turn(&text).await;
                latency.agent_ms = self.eos.map(|e| e.elapsed().as_millis() as u32);
                self.llm_latency = Some(latency);
                actions.extend(self.apply_llm(outs).await);
            } else {
                let replies = self.agent.as_mut().map(|a| a.on_user_turn(&text)).unwrap_or_default();
                latency.agent_ms = self.eos.map(|e| e.elapsed().as_millis() as u32);
                actions.extend(self.apply(replies, Some(latency)).await);
            }
        }
        self.last_turn = Some(LastTurn { text, start_ms, snapshot, first_ctx });
        if self.replies.is_empty() && self.pending.is_empty() && self.llm_latency.is_none() {
            // Nothing to say: the caller owes the next word.
            self.owed_since = None;
            self.arm_silence();
        }
        actions
    }

    /// Plays a preemptive reply: the turn it answered is confirmed.
    fn commit_preempt(
        &mut self,
        p: Preemption,
        latency: TurnLatency,
        out: &mut dyn AudioOut,
        now_ms: i64,
    ) -> Vec<VoiceAction> {
        self.agent = Some(p.agent);
        self.after_playout = p.after;
        let eos = self.eos;
        let mut held = Vec::new();
        let mut first = true;
        for r in self.replies.iter_mut().filter(|r| r.held) {
            r.held = false;
            r.eos = eos;
            r.latency = if first { latency } else { TurnLatency::default() };
            first = false;
            held.push((r.ctx, std::mem::take(&mut r.held_pcm)));
        }
        for (ctx, parts) in held {
            for (text, pcm) in parts {
                self.play_pcm(ctx, text, &pcm, out, now_ms);
            }
        }
        let mut actions = Vec::new();
        if self.replies.is_empty()
            && self.pending.is_empty()
            && let Some(a) = self.after_playout.take()
        {
            actions.push(a);
        }
        actions
    }

    /// Re-arms the silence re-prompt when nothing is playing or pending.
    fn arm_silence(&mut self) {
        if self.replies.is_empty()
            && self.pending.is_empty()
            && self.paused.is_none()
            && self.after_playout.is_none()
            && !self.endpointer.in_turn()
            && self.llm_ctx.is_none()
        {
            let wait = self.agent.as_ref().map_or(LLM_SILENCE, FlowAgent::silence_timeout);
            self.silence_at = Some(Instant::now() + wait);
        }
    }

    /// The agent no longer owes an answer (it spoke, or the caller did).
    fn close_owed(&mut self) {
        if let Some(since) = self.owed_since.take() {
            let d = since.elapsed();
            if d > self.longest_dead_air {
                self.longest_dead_air = d;
            }
        }
    }

    /// The longest dead air of the call so far, ms: silence on the open
    /// line from the end of the caller's speech to the agent's first audio
    /// on the wire (or to the caller speaking again, or to the end).
    pub fn longest_dead_air_ms(&self) -> u64 {
        let open = self.owed_since.map_or(Duration::ZERO, |s| s.elapsed());
        self.longest_dead_air.max(open).as_millis() as u64
    }

    /// The call is over: the caller row still held back, and the dead air
    /// is closed (and observed in `skald_dead_air_ms`).
    pub fn finish(&mut self) -> Vec<VoiceAction> {
        self.close_owed();
        self.svc.metrics.dead_air_ms(self.longest_dead_air.as_millis() as f64);
        self.flush_caller()
    }

    /// The held caller row, if any, now.
    fn flush_caller(&mut self) -> Vec<VoiceAction> {
        let Some((text, start_ms, end_ms)) = self.held_caller.take() else { return Vec::new() };
        vec![self.caller_turn(&text, start_ms, end_ms)]
    }

    /// A media-clock tick: account for frames the RTP session has sent since
    /// the last tick; returns the agent audio sent (16 kHz, for the stereo
    /// recording) and any actions due now that playout drained.
    pub fn on_tick(&mut self, out: &dyn AudioOut, now_ms: i64) -> (Vec<i16>, Vec<VoiceAction>) {
        let mut audio = std::mem::take(&mut self.unreported);
        audio.extend(self.account(out));
        let mut actions = Vec::new();
        if self.held_caller.is_some() && !self.continuation_possible() {
            actions.extend(self.flush_caller());
        }
        let mut finished = false;
        // A reply is finished when all its audio is sent and nothing of it is pending.
        while let Some(r) = self.replies.front() {
            let ctx = r.ctx;
            let done = !r.open
                && !r.held
                && !self.pending.iter().any(|p| p.ctx == ctx)
                && !self.ledger.iter().any(|(c, _)| *c == ctx)
                && self.interrupted != Some(ctx);
            if !done {
                break;
            }
            let r = self.replies.pop_front().expect("front exists");
            actions.extend(self.agent_turn(&r, None, now_ms));
            finished = true;
        }
        if self.replies.is_empty() && self.pending.is_empty() && self.llm_latency.is_none() && self.llm_ctx.is_none() {
            // The answer to the last turn has played out: what follows
            // (a re-prompt, the caller's next words) is a new exchange.
            self.last_turn = None;
        }
        if self.replies.is_empty() && self.pending.is_empty() && self.paused.is_none() {
            if let Some(a) = self.after_playout.take() {
                actions.push(a);
            } else if self.silence_at.is_none() && !self.endpointer.in_turn() && self.segments_pending == 0 && finished {
                self.arm_silence();
            }
        }
        (audio, actions)
    }

    /// Moves frames the RTP session has sent since the last call from the
    /// ledger to "sent"; returns their 16 kHz audio.
    fn account(&mut self, out: &dyn AudioOut) -> Vec<i16> {
        let on_wire = self.frames_pushed.saturating_sub(out.unsent() as u64);
        let mut spoke = false;
        for r in self.replies.iter_mut().filter(|r| !r.first_sent) {
            if r.first_frame.is_some_and(|f| on_wire > f) {
                r.first_sent = true;
                r.latency.first_packet_ms = r.eos.map(|e| e.elapsed().as_millis() as u32);
                spoke = true;
            }
        }
        if spoke {
            self.close_owed();
        }
        let sent_total = self.frames_pushed.saturating_sub(out.queued() as u64);
        let mut newly = sent_total.saturating_sub(self.frames_sent);
        self.frames_sent = self.frames_sent.max(sent_total);
        let mut audio = Vec::new();
        while newly > 0 {
            let Some((_, frames)) = self.ledger.front_mut() else { break };
            let take = (*frames as u64).min(newly) as usize;
            *frames -= take;
            newly -= take as u64;
            for _ in 0..take {
                if let Some(f) = self.sent_audio.pop_front() {
                    audio.extend_from_slice(&f);
                }
            }
            if self.ledger.front().is_some_and(|(_, f)| *f == 0) {
                self.ledger.pop_front();
            }
        }
        audio
    }

    /// True while any agent audio is queued, playing or being synthesized
    /// (a held preemptive reply is not speaking).
    fn agent_speaking(&self, out: &dyn AudioOut) -> bool {
        out.queued() > 0
            || self.pending.iter().any(|p| self.replies.iter().any(|r| r.ctx == p.ctx && !r.held))
    }

    /// Pauses the agent's audio: the caller is talking over it.
    fn barge_in(&mut self, out: &mut dyn AudioOut) {
        // Everything sent so far is accounted for; what remains is unsent.
        let sent = self.account(out);
        self.unreported.extend(sent);
        let ctx = self
            .ledger
            .front()
            .map(|(c, _)| *c)
            .or(self.replies.iter().find(|r| !r.held).map(|r| r.ctx))
            .unwrap_or(0);
        let frames = out.pause();
        self.frames_pushed = self.frames_pushed.saturating_sub(frames.len() as u64);
        let audio: VecDeque<Vec<i16>> = self.sent_audio.drain(..).collect();
        tracing::info!(ctx, unsent_frames = frames.len(), "barge-in: agent audio paused");
        self.interrupted = Some(ctx);
        self.paused = Some((frames, audio));
        self.silence_at = None;
    }

    /// A DTMF key from the caller: stops the agent at once if it is
    /// speaking (a key press is never a false interruption), is recorded as
    /// a caller turn `[DTMF 9]`, and goes to the agent.
    pub async fn on_dtmf(&mut self, digit: char, out: &mut dyn AudioOut, now_ms: i64) -> Vec<VoiceAction> {
        self.discard_preempt();
        self.last_turn = None;
        if self.interrupted.is_none() && self.agent_speaking(out) {
            self.barge_in(out);
        }
        let mut actions = self.flush_caller();
        actions.extend(self.drop_interrupted(now_ms));
        tracing::info!(%digit, "caller pressed a key");
        self.silence_at = None;
        actions.push(self.caller_turn(&format!("[DTMF {digit}]"), now_ms, now_ms));
        if let Some(b) = self.llm.as_mut() {
            let outs = b.on_caller_turn(&format!("(The caller pressed {digit} on the keypad.)")).await;
            actions.extend(self.apply_llm(outs).await);
            return actions;
        }
        let replies = self.agent.as_mut().map(|a| a.on_dtmf(digit)).unwrap_or_default();
        actions.extend(self.apply(replies, None).await);
        actions
    }

    /// After an interruption, once the caller's input is known: drops the
    /// rest of the interrupted reply and everything after it (the paused
    /// frames, what is still being synthesized) and records each reply as
    /// what the caller heard.
    fn drop_interrupted(&mut self, now_ms: i64) -> Vec<VoiceAction> {
        let mut actions = Vec::new();
        let Some(ctx) = self.interrupted.take() else { return actions };
        // Counted once the interruption is real (a false one resumed).
        self.svc.metrics.barge_in();
        self.paused = None;
        self.unconfirmed_pause = false;
        self.pending.clear();
        let replies: Vec<Reply> = self.replies.drain(..).collect();
        let mut heard_text = String::new();
        for r in replies.iter().filter(|r| !r.held) {
            let heard = (r.ctx >= ctx).then(|| self.heard_frames(r));
            for turn in self.agent_turn(r, heard, now_ms) {
                if let VoiceAction::Turn(t) = &turn
                    && t.speaker == "agent"
                {
                    heard_text = t.text.clone();
                }
                actions.push(turn);
            }
        }
        if let Some(b) = self.llm.as_mut() {
            b.interrupted(&heard_text);
            self.llm_ctx = None;
        }
        self.ledger.clear();
        self.frames_pushed = self.frames_sent;
        self.after_playout = None;
        actions
    }

    /// Frames of reply `r` that went out (queued minus still unsent).
    fn heard_frames(&self, r: &Reply) -> usize {
        let total: usize = r.sentences.iter().map(|(_, f)| f).sum();
        let unsent: usize = self.ledger.iter().filter(|(c, _)| *c == r.ctx).map(|(_, f)| f).sum();
        total.saturating_sub(unsent)
    }

    /// Carries out agent actions: say (synthesize), hang up / transfer after playout.
    async fn apply(&mut self, actions: Vec<AgentAction>, latency: Option<TurnLatency>) -> Vec<VoiceAction> {
        let mut out = Vec::new();
        let mut latency = latency;
        for a in actions {
            match a {
                AgentAction::Say(text) => {
                    let ctx = self.next_ctx;
                    self.next_ctx += 1;
                    self.say(ctx, &text, latency.take().unwrap_or_default(), false).await;
                }
                AgentAction::Hangup { reason } => self.after_playout = Some(VoiceAction::Hangup(reason)),
                AgentAction::Transfer(t) => self.after_playout = Some(VoiceAction::Transfer(t)),
            }
        }
        if self.replies.is_empty()
            && self.pending.is_empty()
            && let Some(a) = self.after_playout.take()
        {
            out.push(a);
        }
        out
    }

    /// Starts synthesizing every sentence of `text` as reply `ctx`; a
    /// `held` reply is not played until committed.
    async fn say(&mut self, ctx: u64, text: &str, latency: TurnLatency, held: bool) {
        let mut agg = SentenceAggregator::new();
        let mut sentences = agg.push(text);
        sentences.extend(agg.flush());
        let sentences: Vec<String> = sentences.into_iter().filter(|s| !s.trim().is_empty()).collect();
        tracing::info!(ctx, reply = %text, held, "agent says");
        self.replies.push_back(Reply {
            ctx,
            open: false,
            held,
            held_pcm: Vec::new(),
            sentences: Vec::new(),
            start_ms: None,
            latency,
            eos: self.eos,
            first_sent: false,
            first_frame: None,
        });
        // The first clause alone, then the rest in one stream: the caller
        // hears the agent as soon as a few words are synthesized, and the
        // rest does not compete with them for the CPU sentence by sentence.
        let mut rest = sentences.into_iter();
        if let Some(first) = rest.next() {
            let (head, tail) = first_clause(&first);
            let tail: Vec<String> = tail.into_iter().chain(rest).collect();
            self.synthesize(ctx, head).await;
            if !tail.is_empty() {
                self.synthesize(ctx, tail.join(" ")).await;
            }
        }
        if !held {
            self.silence_at = None;
        }
    }
    /// Queues one sentence of reply `ctx` for synthesis; it starts once the
    /// sentence before it has produced audio ([`Self::start_ready`]).
    async fn synthesize(&mut self, ctx: u64, sentence: String) {
        self.pending.push_back(Pending { ctx, text: sentence, rx: None, sounded: false });
        self.start_ready().await;
    }

    /// Starts the synthesis of each queued sentence whose predecessor has
    /// produced audio (the first at once). One synthesis at a time until it
    /// sounds: a local voice's runs share the CPU, so the first clause of a
    /// reply, synthesized alone, reaches the caller sooner than with the
    /// rest of the reply beside it (the rest is ready long before the first
    /// clause has played: Piper runs at a twentieth of real time); a
    /// streaming cloud voice sounds within its first chunk, so the next
    /// request still overlaps the playout.
    async fn start_ready(&mut self) {
        for i in 0..self.pending.len() {
            if i > 0 && !self.pending[i - 1].sounded {
                return;
            }
            if self.pending[i].rx.is_some() {
                continue;
            }
            let rx = match self.tts.synthesize(&self.pending[i].text).await {
                Ok(rx) => rx,
                Err(e) => {
                    tracing::warn!(error = %e, "TTS failed");
                    closed_channel()
                }
            };
            self.pending[i].rx = Some(rx);
        }
    }

    /// Carries out what the LLM agent asked for: sentences join the open
    /// reply (opened by the first), `Close` ends it, hang-up and transfer
    /// wait for the playout.
    async fn apply_llm(&mut self, outs: Vec<super::llm_turns::LlmOut>) -> Vec<VoiceAction> {
        use super::llm_turns::LlmOut;
        let mut actions = Vec::new();
        for o in outs {
            match o {
                LlmOut::Say(sentence) => {
                    let ctx = match self.llm_ctx {
                        Some(c) => c,
                        None => {
                            let c = self.next_ctx;
                            self.next_ctx += 1;
                            self.llm_ctx = Some(c);
                            self.replies.push_back(Reply {
                                ctx: c,
                                open: true,
                                held: false,
                                held_pcm: Vec::new(),
                                sentences: Vec::new(),
                                start_ms: None,
                                latency: self.llm_latency.take().unwrap_or_default(),
                                eos: self.eos,
                                first_sent: false,
                                first_frame: None,
                            });
                            c
                        }
                    };
                    tracing::info!(ctx, %sentence, "agent says");
                    self.synthesize(ctx, sentence).await;
                    self.silence_at = None;
                }
                LlmOut::Close => {
                    if let Some(c) = self.llm_ctx.take()
                        && let Some(r) = self.replies.iter_mut().find(|r| r.ctx == c)
                    {
                        r.open = false;
                    }
                }
                LlmOut::HangupAfter(reason) => self.after_playout = Some(VoiceAction::Hangup(reason)),
                LlmOut::TransferAfter(target) => self.after_playout = Some(VoiceAction::Transfer(target)),
                LlmOut::SendDtmf(d) => actions.push(VoiceAction::SendDtmf(d)),
                LlmOut::Error(e) => actions.push(VoiceAction::Error(e)),
            }
        }
        if self.replies.is_empty()
            && self.pending.is_empty()
            && let Some(a) = self.after_playout.take()
        {
            actions.push(a);
        }
        actions
    }

    /// Queues synthesized audio of reply `ctx` (dropped when stale; kept
    /// aside while the reply is held).
    fn queue_audio(&mut self, ctx: u64, audio: &TtsAudio, out: &mut dyn AudioOut, now_ms: i64) {
        if self.interrupted.is_some_and(|i| ctx >= i) || !self.replies.iter().any(|r| r.ctx == ctx) {
            tracing::debug!(ctx, "stale TTS audio dropped");
            return;
        }
        let pcm = if audio.sample_rate as usize == RATE {
            audio.pcm.clone()
        } else {
            match crate::pipeline::to_pipeline_rate(&audio.pcm, audio.sample_rate) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot resample TTS audio");
                    return;
                }
            }
        };
        let text = self.pending.front().map(|p| p.text.clone()).unwrap_or_default();
        if let Some(r) = self.replies.iter_mut().find(|r| r.ctx == ctx && r.held) {
            r.held_pcm.push((text, pcm));
            return;
        }
        self.play_pcm(ctx, text, &pcm, out, now_ms);
    }

    /// Queues 16 kHz audio of sentence `text` of reply `ctx` on the wire.
    fn play_pcm(&mut self, ctx: u64, text: String, pcm: &[i16], out: &mut dyn AudioOut, now_ms: i64) {
        let first_frame = self.frames_pushed;
        let frames = out.play(pcm);
        self.frames_pushed += frames as u64;
        for chunk in pcm.chunks(self.frame_16k.max(1)) {
            let mut f = chunk.to_vec();
            f.resize(self.frame_16k, 0);
            self.sent_audio.push_back(f);
        }
        while self.sent_audio.len() as u64 > self.frames_pushed - self.frames_sent {
            self.sent_audio.pop_back();
        }
        match self.ledger.back_mut() {
            Some((c, f)) if *c == ctx => *f += frames,
            _ => self.ledger.push_back((ctx, frames)),
        }
        if let Some(r) = self.replies.iter_mut().find(|r| r.ctx == ctx) {
            if r.start_ms.is_none() {
                r.start_ms = Some(now_ms);
                r.first_frame = Some(first_frame);
                r.latency.tts_ms = r.eos.map(|e| e.elapsed().as_millis() as u32);
            }
            match r.sentences.last_mut() {
                Some((t, f)) if *t == text => *f += frames,
                _ => r.sentences.push((text, frames)),
            }
        }
    }

    /// STT failed: say a short fallback and keep going.
    async fn stt_failed(&mut self, e: ProviderError, _out: &mut dyn AudioOut) -> Vec<VoiceAction> {
        tracing::warn!(error = %e, "speech recognition failed");
        self.segments_pending = 0;
        self.streaming = false;
        self.turn_text.clear();
        self.over_agent = false;
        self.continuing = None;
        self.endpointer.reset();
        self.discard_preempt();
        self.failures += 1;
        let mut actions = vec![VoiceAction::Error(format!("stt: {e}; spoke fallback"))];
        if self.failures > 3 {
            actions.push(VoiceAction::Hangup("stt-failed".into()));
            return actions;
        }
        if let Ok(s) = self.stt_provider.open().await {
            self.stt = s;
        }
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        self.say(ctx, STT_FALLBACK, TurnLatency::default(), false).await;
        actions
    }

    /// TTS failed for reply `ctx`: play the fallback prompt instead, once.
    fn tts_failed(&mut self, ctx: u64, e: ProviderError, out: &mut dyn AudioOut) -> Vec<VoiceAction> {
        tracing::warn!(error = %e, ctx, "speech synthesis failed");
        self.pending.retain(|p| p.ctx != ctx);
        let actions = vec![VoiceAction::Error(format!("tts: {e}; played fallback prompt"))];
        self.failures += 1;
        if let Some(audio) = self.cfg.fallback_audio.clone() {
            let frames = out.play(&audio);
            self.frames_pushed += frames as u64;
            for chunk in audio.chunks(self.frame_16k.max(1)) {
                let mut f = chunk.to_vec();
                f.resize(self.frame_16k, 0);
                self.sent_audio.push_back(f);
            }
            match self.ledger.back_mut() {
                Some((c, f)) if *c == ctx => *f += frames,
                _ => self.ledger.push_back((ctx, frames)),
            }
        }
        if self.failures > 3 {
            self.after_playout = Some(VoiceAction::Hangup("tts-failed".into()));
        }
        actions
    }

    /// Transcript rows for an agent reply (after the caller row still held
    /// back, if any); `heard` frames when interrupted.
    fn agent_turn(&mut self, r: &Reply, heard: Option<usize>, now_ms: i64) -> Vec<VoiceAction> {
        let mut actions = self.flush_caller();
        let full: Vec<&str> = r.sentences.iter().map(|(t, _)| t.as_str()).collect();
        let text = match heard {
            None => full.join(" "),
            Some(mut frames) => {
                let mut kept = Vec::new();
                for (t, f) in &r.sentences {
                    if frames >= *f {
                        kept.push(t.clone());
                        frames -= f;
                    } else {
                        let words: Vec<&str> = t.split_whitespace().collect();
                        let n = words.len() * frames / (*f).max(1);
                        if n > 0 {
                            kept.push(format!("{}…", words[..n].join(" ")));
                        }
                        break;
                    }
                }
                kept.join(" ")
            }
        };
        let m = &self.svc.metrics;
        for (stage, v) in [
            ("stt", r.latency.stt_ms),
            ("decision", r.latency.decision_ms),
            ("agent", r.latency.agent_ms),
            ("llm_first_token", r.latency.llm_first_token_ms),
            ("tts", r.latency.tts_ms),
            ("first_packet", r.latency.first_packet_ms),
        ] {
            if let Some(v) = v {
                m.turn_latency_ms(stage, v as f64);
            }
        }
        let rec = TurnRecord {
            call_id: self.call_id,
            seq: self.seq,
            speaker: "agent".into(),
            text,
            start_ms: r.start_ms.unwrap_or(now_ms),
            end_ms: now_ms,
            interrupted: heard.is_some(),
            latency: Some(r.latency),
        };
        self.seq += 1;
        actions.push(VoiceAction::Turn(rec));
        actions
    }

    /// A transcript row for the caller.
    fn caller_turn(&mut self, text: &str, start_ms: i64, end_ms: i64) -> VoiceAction {
        let rec = TurnRecord {
            call_id: self.call_id,
            seq: self.seq,
            speaker: "caller".into(),
            text: text.to_string(),
            start_ms,
            end_ms,
            interrupted: false,
            latency: None,
        };
        self.seq += 1;
        VoiceAction::Turn(rec)
    }

    /// Slots collected by the agent (for the call record).
    pub fn slots(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        self.agent.as_ref().map_or(&NONE, FlowAgent::slots)
    }
}

/// Splits a long first sentence at its first comma (after a few words):
/// `("We're open Monday to Friday from 8 AM to 6 PM,", Some("and Saturday…"))`.
/// A short sentence, or one without such a comma, stays whole.
fn first_clause(sentence: &str) -> (String, Option<String>) {
    const LONG: usize = 48;
    const MIN_HEAD: usize = 16;
    if sentence.len() <= LONG {
        return (sentence.to_string(), None);
    }
    let cut = sentence
        .match_indices(", ")
        .map(|(i, _)| i + 1)
        .find(|&i| i >= MIN_HEAD && sentence.len() - i >= MIN_HEAD);
    match cut {
        Some(i) => (sentence[..i].to_string(), Some(sentence[i..].trim_start().to_string())),
        None => (sentence.to_string(), None),
    }
}

/// Waits for the end-of-turn model's answer; pending forever when none is
/// running. Cancel-safe (the task handle stays in place until it is done).
async fn join_model(job: &mut Option<(u64, tokio::task::JoinHandle<Result<f32, String>>)>) -> (u64, Result<f32, String>) {
    match job {
        Some((id, h)) => {
            let res = h.await.unwrap_or_else(|e| Err(format!("model task failed: {e}")));
            (*id, res)
        }
        None => std::future::pending().await,
    }
}

/// The call's STT: the configured cloud provider in front of the local
/// model (failing over to it), or the local model.
fn call_stt(svc: &VoiceServices, cloud: Option<&crate::config::SttChoice>, log: &FallbackLog) -> Arc<dyn SttProvider> {
    use crate::providers::{deepgram::DeepgramStt, failover::FailoverStt};
    match cloud {
        Some(crate::config::SttChoice::Deepgram(c)) => {
            Arc::new(FailoverStt::new(Arc::new(DeepgramStt::new(c.clone())), svc.stt.clone()).with_log(log.clone()))
        }
        Some(crate::config::SttChoice::Fixed(c)) => Arc::new(crate::providers::standin::FixedStt { text: c.text.clone() }),
        None => svc.stt.clone(),
    }
}

/// The call's TTS: the configured cloud voice in front of the local one
/// (failing over to it), or the local voice.
fn call_tts(svc: &VoiceServices, cloud: Option<&crate::config::TtsChoice>, log: &FallbackLog) -> Arc<dyn TtsProvider> {
    use crate::providers::{elevenlabs::ElevenLabsTts, failover::FailoverTts, openai_tts::OpenAiTts, standin::CannedTts};
    let primary: Arc<dyn TtsProvider> = match cloud {
        Some(crate::config::TtsChoice::Tone(c)) => return Arc::new(CannedTts::tone(c)),
        Some(crate::config::TtsChoice::Wav(c)) => match CannedTts::wav(&c.file) {
            Ok(t) => return Arc::new(t),
            Err(e) => {
                tracing::warn!(error = %e, "stand-in WAV voice unusable: local voice");
                return svc.tts.clone();
            }
        },
        Some(crate::config::TtsChoice::Elevenlabs(c)) => Arc::new(ElevenLabsTts::new(c.clone())),
        Some(crate::config::TtsChoice::Openai(c)) => match OpenAiTts::new(c.clone()) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                tracing::warn!(error = %e, "OpenAI TTS unavailable: local voice");
                return svc.tts.clone();
            }
        },
        None => return svc.tts.clone(),
    };
    Arc::new(FailoverTts::new(primary, svc.tts.clone()).with_log(log.clone()))
}

/// How long an LLM agent waits for a silent caller before asking.
const LLM_SILENCE: Duration = Duration::from_secs(8);

async fn next_llm(llm: &mut Option<Box<super::llm_turns::LlmBrain>>) -> super::llm_turns::LlmWake {
    match llm {
        Some(b) => b.next_event().await,
        None => std::future::pending().await,
    }
}

async fn recv_head(head: Option<&mut Pending>) -> Option<Result<TtsAudio, ProviderError>> {
    match head.and_then(|p| p.rx.as_mut()) {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn closed_channel() -> mpsc::Receiver<Result<TtsAudio, ProviderError>> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Err(ProviderError::Fatal("synthesis could not start".into())));
    rx
}

#[cfg(test)]
mod tests {
    //! The voice agent's glue with stand-in providers that fail on purpose;
    //! real Silero VAD and the shipped dental agent.
    use super::*;
    use crate::call::fakes::{FakeStt, FakeTts};
    use crate::providers::local::{models::ModelPaths, onnx};
    use std::sync::Mutex;

    /// An end-of-turn model that says complete once STT has ended
    /// `complete_at` utterances (the n-th pause is the real end).
    struct FakeModel {
        ended: Arc<std::sync::atomic::AtomicUsize>,
        complete_at: usize,
        asked: std::sync::atomic::AtomicUsize,
    }
    impl EndOfTurnModel for FakeModel {
        fn predict(&self, pcm16k: &[i16]) -> Result<f32, String> {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(pcm16k.len() <= MODEL_WINDOW, "at most 8 s of audio");
            let n = self.ended.load(std::sync::atomic::Ordering::SeqCst);
            Ok(if n >= self.complete_at { 0.95 } else { 0.02 })
        }
    }

    /// A queue of frames standing in for the RTP session.
    #[derive(Default)]
    struct Out {
        queued: usize,
        played: Vec<usize>,
        /// Frames sent in all (one per `feed` frame while queued).
        sent: usize,
        /// Times paused.
        pauses: usize,
    }
    impl AudioOut for Out {
        fn play(&mut self, pcm16k: &[i16]) -> usize {
            let frames = pcm16k.len().div_ceil(320);
            self.queued += frames;
            self.played.push(pcm16k.len());
            frames
        }
        fn queued(&self) -> usize {
            self.queued
        }
        fn pause(&mut self) -> Vec<Vec<u8>> {
            self.pauses += 1;
            let n = std::mem::take(&mut self.queued);
            vec![vec![0xff; 160]; n]
        }
        fn resume(&mut self, frames: Vec<Vec<u8>>) {
            self.queued += frames.len();
        }
    }

    async fn agent(stt_fail: bool, tts_fail: bool, fallback: Option<Vec<i16>>) -> (VoiceAgent, Arc<FakeTts>) {
        let stt = FakeStt {
            fail: stt_fail,
            text: "what are your opening hours".into(),
            script: Default::default(),
            ended: Default::default(),
        };
        agent_with(stt, None, tts_fail, fallback).await
    }

    async fn agent_with(
        stt: FakeStt,
        model: Option<Arc<dyn EndOfTurnModel>>,
        tts_fail: bool,
        fallback: Option<Vec<i16>>,
    ) -> (VoiceAgent, Arc<FakeTts>) {
        let paths = ModelPaths::in_dir(&ModelPaths::default_dir());
        onnx::init_runtime(&paths.onnxruntime).expect("models (run `skald models fetch`)");
        let vad = SileroVad::load(&paths.silero_vad).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-config/agents");
        let agents = crate::agent::flow::load_agents(&dir).unwrap();
        let tts = Arc::new(FakeTts { fail: tts_fail, said: Mutex::new(Vec::new()) });
        let svc = Arc::new(VoiceServices {
            vad,
            turn_model: model,
            stt: Arc::new(stt),
            tts: tts.clone(),
            agents,
            llm_agents: Default::default(),
            metrics: Metrics::new(),
        });
        let cfg = VoiceConfig {
            agent: "dental-front-desk".into(),
            turn: TurnConfig::default(),
            barge_in_min: Duration::from_millis(80),
            fallback_audio: fallback.map(Arc::new),
            stt: None,
            tts: None,
        };
        let today = time::macros::date!(2026 - 11 - 23);
        let v = VoiceAgent::start(svc, cfg, CallId::new(), today, Duration::from_millis(20)).await.unwrap();
        (v, tts)
    }

    /// Real speech (then silence) through `on_audio`, as the actor feeds it.
    async fn speak(v: &mut VoiceAgent, out: &mut Out) -> Vec<VoiceAction> {
        let path = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav";
        let (pcm, _) = crate::pipeline::wav::read_wav_mono(std::path::Path::new(path)).expect("pocketsphinx-testdata");
        let mut actions = Vec::new();
        let silence = vec![0i16; 16_000];
        for (i, frame) in pcm.iter().chain(silence.iter()).copied().collect::<Vec<_>>().chunks(320).enumerate() {
            actions.extend(v.on_audio(frame, out, i as i64 * 20).await);
        }
        actions
    }

    /// Handles events until none comes for 500 ms; returns every action.
    async fn drain(v: &mut VoiceAgent, out: &mut Out) -> Vec<VoiceAction> {
        let mut actions = Vec::new();
        while let Ok(ev) = tokio::time::timeout(Duration::from_millis(500), v.next_event()).await {
            actions.extend(v.on_event(ev, out, 5000).await);
        }
        actions
    }

    #[test]
    fn a_long_first_sentence_is_split_at_its_first_comma() {
        let (head, tail) = first_clause("We're open Monday to Friday from 8 AM to 6 PM, and Saturday from 9 AM to 1 PM.");
        assert_eq!(head, "We're open Monday to Friday from 8 AM to 6 PM,");
        assert_eq!(tail.as_deref(), Some("and Saturday from 9 AM to 1 PM."));
        assert_eq!(first_clause("Sure, I can help you book that."), ("Sure, I can help you book that.".into(), None));
        let long = "Thanks for calling Bright Smile Dental and have a great day today.";
        assert_eq!(first_clause(long), (long.to_string(), None));
    }

    #[tokio::test]
    async fn stt_failure_is_spoken_around_and_recorded() {
        let (mut v, tts) = agent(true, false, None).await;
        let mut out = Out::default();
        v.begin().await;
        drain(&mut v, &mut out).await;
        out.queued = 0; // the greeting has been heard
        speak(&mut v, &mut out).await;
        let actions = drain(&mut v, &mut out).await;
        assert!(
            actions.iter().any(|a| matches!(a, VoiceAction::Error(e) if e.starts_with("stt:"))),
            "the failure is recorded: {actions:?}"
        );
        assert!(!actions.iter().any(|a| matches!(a, VoiceAction::Hangup(_))), "the call goes on");
        let said = tts.said.lock().unwrap().clone();
        assert!(said.iter().any(|s| s.contains("didn't catch")), "a spoken fallback: {said:?}");
    }

    #[tokio::test]
    async fn tts_failure_plays_the_fallback_prompt_and_is_recorded() {
        let (mut v, _tts) = agent(false, true, Some(vec![500; 8000])).await;
        let mut out = Out::default();
        v.begin().await;
        let actions = drain(&mut v, &mut out).await;
        assert!(
            actions.iter().any(|a| matches!(a, VoiceAction::Error(e) if e.starts_with("tts:"))),
            "the failure is recorded: {actions:?}"
        );
        assert_eq!(out.played, vec![8000], "the fallback WAV was played instead");
    }

    #[tokio::test]
    async fn a_caller_turn_reaches_the_agent_and_is_transcribed() {
        let (mut v, tts) = agent(false, false, None).await;
        let mut out = Out::default();
        v.begin().await;
        drain(&mut v, &mut out).await;
        out.queued = 0; // the greeting has been heard
        speak(&mut v, &mut out).await;
        let mut actions = drain(&mut v, &mut out).await;
        actions.extend(v.finish());
        let caller = actions.iter().find_map(|a| match a {
            VoiceAction::Turn(t) if t.speaker == "caller" => Some(t.text.clone()),
            _ => None,
        });
        assert_eq!(caller.as_deref(), Some("what are your opening hours"));
        let said = tts.said.lock().unwrap().join(" ").to_lowercase();
        assert!(said.contains("monday") || said.contains("open"), "the agent answered the hours: {said}");
    }

    /// Real speech of LibriVox recording `id` (16 kHz), the first `ms`.
    fn librivox(id: &str, ms: usize) -> Vec<i16> {
        let path = format!("/usr/share/pocketsphinx/test/data/librivox/{id}.wav");
        let (pcm, _) = crate::pipeline::wav::read_wav_mono(std::path::Path::new(&path)).expect("pocketsphinx-testdata");
        pcm[..(ms * 16).min(pcm.len())].to_vec()
    }

    /// Feeds `pcm` frame by frame as a call would: after each frame the
    /// events that are ready are handled, one queued agent frame is "sent",
    /// and the playout is accounted. `t_ms` is the call clock (advanced).
    async fn feed(v: &mut VoiceAgent, out: &mut Out, pcm: &[i16], t_ms: &mut i64) -> Vec<VoiceAction> {
        let mut actions = Vec::new();
        for frame in pcm.chunks(320) {
            let mut f = frame.to_vec();
            f.resize(320, 0);
            actions.extend(v.on_audio(&f, out, *t_ms).await);
            while let Ok(ev) = tokio::time::timeout(Duration::from_millis(3), v.next_event()).await {
                if matches!(ev, VoiceEvent::Silence) {
                    break;
                }
                actions.extend(v.on_event(ev, out, *t_ms).await);
            }
            if out.queued > 0 {
                out.queued -= 1;
                out.sent += 1;
            }
            actions.extend(v.on_tick(out, *t_ms).1);
            *t_ms += 20;
        }
        actions
    }

    fn silence(ms: usize) -> Vec<i16> {
        vec![0; ms * 16]
    }

    fn rows(actions: &[VoiceAction], speaker: &str) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                VoiceAction::Turn(t) if t.speaker == speaker => Some(t.text.clone()),
                _ => None,
            })
            .collect()
    }

    fn script(lines: &[&str]) -> (FakeStt, Arc<std::sync::atomic::AtomicUsize>) {
        let ended: Arc<std::sync::atomic::AtomicUsize> = Default::default();
        let stt = FakeStt {
            fail: false,
            text: String::new(),
            script: Arc::new(Mutex::new(lines.iter().map(|l| l.to_string()).collect())),
            ended: ended.clone(),
        };
        (stt, ended)
    }

    const A: &str = "sense_and_sensibility_01_austen_64kb-0880";
    const B: &str = "sense_and_sensibility_01_austen_64kb-0890";

    #[tokio::test]
    async fn a_sentence_said_in_three_phrases_is_one_turn_and_one_reply() {
        let (stt, ended) = script(&["I would like to book", "a cleaning", "next Tuesday please."]);
        let model = Arc::new(FakeModel { ended: ended.clone(), complete_at: 3, asked: Default::default() });
        let (mut v, tts) = agent_with(stt, Some(model.clone()), false, None).await;
        let mut out = Out::default();
        let mut t = 0;
        v.begin().await;
        let mut actions = feed(&mut v, &mut out, &silence(3000), &mut t).await;
        let greeting = tts.said.lock().unwrap().len();
        for (i, ms) in [(0, 1200), (1, 1000), (2, 900)] {
            actions.extend(feed(&mut v, &mut out, &librivox(if i == 1 { B } else { A }, ms), &mut t).await);
            let pause = [1200, 1400, 0][i];
            actions.extend(feed(&mut v, &mut out, &silence(pause), &mut t).await);
        }
        actions.extend(feed(&mut v, &mut out, &silence(8000), &mut t).await);
        actions.extend(v.finish());
        let caller = rows(&actions, "caller");
        assert_eq!(caller, vec!["I would like to book a cleaning next Tuesday please.".to_string()], "{actions:?}");
        let said = tts.said.lock().unwrap()[greeting..].to_vec();
        assert!(!said.is_empty(), "the agent answered");
        assert!(
            !said.iter().any(|s| s.contains("didn't catch") || s.contains("sorry")),
            "no reply to a fragment: {said:?}"
        );
        assert!(model.asked.load(std::sync::atomic::Ordering::SeqCst) >= 3, "the model decided");
        assert_eq!(rows(&actions, "agent").len(), 2, "greeting + one reply: {actions:?}");
    }

    #[tokio::test]
    async fn with_the_silence_rule_the_agent_talks_into_mid_sentence_pauses() {
        let (stt, _) = script(&["I would like to book", "a cleaning", "next Tuesday please."]);
        let (mut v, _tts) = agent_with(stt, None, false, None).await;
        let mut out = Out::default();
        let mut t = 0;
        v.begin().await;
        let mut actions = feed(&mut v, &mut out, &silence(3000), &mut t).await;
        let mut into_pauses = 0;
        for (i, ms) in [(0, 1200), (1, 1000), (2, 900)] {
            actions.extend(feed(&mut v, &mut out, &librivox(if i == 1 { B } else { A }, ms), &mut t).await);
            let before = out.sent;
            actions.extend(feed(&mut v, &mut out, &silence(1400), &mut t).await);
            if i < 2 {
                into_pauses += out.sent - before;
            }
        }
        actions.extend(feed(&mut v, &mut out, &silence(6000), &mut t).await);
        actions.extend(v.finish());
        // 500 ms of silence ends the turn: a reply starts in the caller's
        // pause (a continuation then drops it, but the caller heard it).
        assert!(into_pauses > 10, "the agent spoke into the pauses: {into_pauses} frames; {actions:?}");
    }

    #[tokio::test]
    async fn a_backchannel_over_the_agent_does_not_stop_its_reply() {
        let (stt, ended) = script(&["Uh-huh."]);
        let model = Arc::new(FakeModel { ended, complete_at: 1, asked: Default::default() });
        let (mut v, tts) = agent_with(stt, Some(model), false, None).await;
        let mut out = Out::default();
        let mut t = 0;
        v.begin().await;
        // The greeting is two sentences (4 s here): speak over its start.
        let mut actions = feed(&mut v, &mut out, &silence(100), &mut t).await;
        assert!(out.queued > 0, "the greeting plays");
        let before = tts.said.lock().unwrap().len();
        actions.extend(feed(&mut v, &mut out, &librivox(A, 600), &mut t).await);
        actions.extend(feed(&mut v, &mut out, &silence(8000), &mut t).await);
        actions.extend(v.finish());
        assert!(rows(&actions, "caller").is_empty(), "no caller turn: {actions:?}");
        let agent = rows(&actions, "agent");
        assert!(agent.iter().all(|a| !a.ends_with('…')), "nothing cut: {agent:?}");
        assert_eq!(tts.said.lock().unwrap().len(), before, "nothing new said");
        assert_eq!(out.queued, 0, "the whole greeting played");
        assert_eq!(out.pauses, 1, "the agent paused on speech, then resumed");
        assert_eq!(out.sent, 2 * 100, "every frame of the two-sentence greeting went out");
    }

    #[tokio::test]
    async fn a_sound_too_short_to_be_a_turn_pauses_the_agent_and_it_resumes_at_once() {
        let (stt, ended) = script(&[]);
        let (mut v, tts) = agent_with(stt, None, false, None).await;
        let mut out = Out::default();
        let mut t = 0;
        v.begin().await;
        let mut actions = feed(&mut v, &mut out, &silence(100), &mut t).await;
        assert!(out.queued > 0, "the greeting plays");
        let before = tts.said.lock().unwrap().len();
        // 130 ms out of a real word: voiced long enough to pause the agent
        // (barge_in_min 80 ms), too short for a turn (min_speech_ms 200).
        let blip = librivox(A, 1000)[16 * 450..16 * 580].to_vec();
        actions.extend(feed(&mut v, &mut out, &blip, &mut t).await);
        assert_eq!(out.pauses, 1, "the agent paused on the sound");
        actions.extend(feed(&mut v, &mut out, &silence(100), &mut t).await);
        assert!(out.queued > 0, "the agent resumed within 100 ms of the sound dying out");
        actions.extend(feed(&mut v, &mut out, &silence(6000), &mut t).await);
        actions.extend(v.finish());
        assert_eq!(out.pauses, 1);
        assert!(rows(&actions, "caller").is_empty(), "no caller turn: {actions:?}");
        assert!(rows(&actions, "agent").iter().all(|a| !a.ends_with('…')), "nothing cut: {actions:?}");
        assert_eq!(ended.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing went to STT as a turn");
        assert_eq!(tts.said.lock().unwrap().len(), before, "nothing new said");
        assert_eq!(out.sent, 2 * 100, "every frame of the two-sentence greeting went out");
    }

    /// A model whose every inference fails.
    struct BrokenModel;
    impl EndOfTurnModel for BrokenModel {
        fn predict(&self, _pcm16k: &[i16]) -> Result<f32, String> {
            Err("inference failed: bad tensor".into())
        }
    }

    #[tokio::test]
    async fn a_failing_model_falls_back_to_the_silence_rule_and_is_recorded() {
        let (stt, _) = script(&["What are your opening hours?"]);
        let (mut v, tts) = agent_with(stt, Some(Arc::new(BrokenModel)), false, None).await;
        let mut out = Out::default();
        let mut t = 0;
        v.begin().await;
        let mut actions = feed(&mut v, &mut out, &silence(5000), &mut t).await;
        let greeting = tts.said.lock().unwrap().len();
        actions.extend(feed(&mut v, &mut out, &librivox(A, 1500), &mut t).await);
        actions.extend(feed(&mut v, &mut out, &silence(6000), &mut t).await);
        actions.extend(v.finish());
        let errors: Vec<_> = actions.iter().filter(|a| matches!(a, VoiceAction::Error(e) if e.starts_with("turn model:"))).collect();
        assert_eq!(errors.len(), 1, "the failure is recorded once: {actions:?}");
        assert_eq!(rows(&actions, "caller"), vec!["What are your opening hours?".to_string()]);
        let said = tts.said.lock().unwrap()[greeting..].join(" ");
        assert!(said.contains("Monday"), "the call went on and the agent answered: {said}");
    }

    #[tokio::test]
    async fn a_closing_line_is_finished_then_the_call_ends() {
        let (stt, ended) = script(&["blah blah", "blah blah", "blah blah", "wait what"]);
        let model = Arc::new(FakeModel { ended, complete_at: 1, asked: Default::default() });
        let (mut v, _tts) = agent_with(stt, Some(model), false, None).await;
        let mut out = Out::default();
        let mut t = 0;
        v.begin().await;
        let mut actions = feed(&mut v, &mut out, &silence(7000), &mut t).await;
        for _ in 0..3 {
            actions.extend(feed(&mut v, &mut out, &librivox(A, 1000), &mut t).await);
            actions.extend(feed(&mut v, &mut out, &silence(600), &mut t).await);
            if actions.iter().any(|a| matches!(a, VoiceAction::Hangup(_))) {
                break;
            }
            actions.extend(feed(&mut v, &mut out, &silence(9000), &mut t).await);
        }
        // The goodbye plays; 2 s into it the caller talks over it.
        actions.extend(feed(&mut v, &mut out, &silence(2000), &mut t).await);
        let pauses = out.pauses;
        actions.extend(feed(&mut v, &mut out, &librivox(B, 1000), &mut t).await);
        actions.extend(feed(&mut v, &mut out, &silence(9000), &mut t).await);
        assert_eq!(out.pauses, pauses, "the goodbye was not paused");
        let hangup = actions.iter().position(|a| matches!(a, VoiceAction::Hangup(_)));
        assert!(hangup.is_some(), "the call ends: {actions:?}");
        let agent = rows(&actions, "agent");
        let last = agent.last().unwrap();
        assert!(last.contains("Goodbye") && !last.ends_with('…'), "the goodbye was heard whole: {agent:?}");
        assert!(v.longest_dead_air_ms() < 2000, "no dead air: {} ms", v.longest_dead_air_ms());
    }

    #[tokio::test]
    async fn speech_early_in_the_reply_continues_the_turn_and_is_answered_once() {
        let (stt, ended) = script(&["I would like to book.", "A cleaning please."]);
        let model = Arc::new(FakeModel { ended, complete_at: 1, asked: Default::default() });
        let (mut v, tts) = agent_with(stt, Some(model), false, None).await;
        let mut out = Out::default();
        let mut t = 0;
        v.begin().await;
        let mut actions = feed(&mut v, &mut out, &silence(3000), &mut t).await;
        let greeting = tts.said.lock().unwrap().len();
        actions.extend(feed(&mut v, &mut out, &librivox(A, 1200), &mut t).await);
        // The turn ends; the reply starts; the caller goes on 500 ms later.
        actions.extend(feed(&mut v, &mut out, &silence(700), &mut t).await);
        actions.extend(feed(&mut v, &mut out, &librivox(B, 1000), &mut t).await);
        actions.extend(feed(&mut v, &mut out, &silence(8000), &mut t).await);
        actions.extend(v.finish());
        assert_eq!(rows(&actions, "caller"), vec!["I would like to book. A cleaning please.".to_string()], "{actions:?}");
        let agent = rows(&actions, "agent");
        assert_eq!(agent.len(), 2, "greeting + one answer, the dropped reply not stored: {agent:?}");
        let said = tts.said.lock().unwrap()[greeting..].to_vec();
        assert!(said.len() >= 2, "a first reply was started, then the whole turn answered: {said:?}");
    }
}
