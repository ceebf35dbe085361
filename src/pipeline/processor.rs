//! Frame processors and the interruption-aware frame queue (sans-IO).
//!
//! Owns the ordering and dropping rules of [`Frame`]s between pipeline
//! stages, after Pipecat's `processors/frame_processor.py` (its input queue
//! with a priority lane for system frames, `_start_interruption` cancelling
//! queued non-system frames) and its TTS context ids (audio of an
//! interrupted turn is discarded).
//!
//! # Rules of [`FrameQueue`]
//! 1. System frames go to a priority lane: [`FrameQueue::poll_frame`] returns
//!    every queued system frame (FIFO) before any data or control frame. They
//!    are never dropped.
//! 2. Data and control frames are delivered FIFO.
//! 3. An interruption ([`FrameQueue::interrupt`] or a pushed
//!    [`Frame::Interruption`]) drops every queued data and control frame
//!    except [`Frame::Uninterruptible`] ones, marks every context older than
//!    the new one stale, and queues a [`Frame::Interruption`] (system) so
//!    the next stage flushes too (a transport: stop playout, Twilio `clear`).
//! 4. [`Frame::OutputAudio`] and [`Frame::AgentText`] of a stale context
//!    pushed later are dropped and counted; uninterruptible ones pass.
//!    Control frames of a stale context pass (a stage may need `TtsStopped`
//!    to close what it opened).
//!
//! Run loop: push with [`FrameProcessor::handle_frame`], then drain
//! [`FrameProcessor::poll_frame`] until `None`. Nothing here blocks, spawns
//! or reads a clock; the queue is unbounded and the owner (one call actor)
//! applies its own bound.

#![deny(missing_docs)]

use std::collections::VecDeque;

use super::frame::{ContextId, Frame, FrameKind};

/// A sans-IO pipeline stage: frames in, frames out.
pub trait FrameProcessor {
    /// Takes one frame from upstream.
    fn handle_frame(&mut self, frame: Frame);
    /// The next frame for downstream, or `None` when there is nothing to send
    /// until more input arrives.
    fn poll_frame(&mut self) -> Option<Frame>;
}

/// What a [`FrameQueue`] dropped, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Queued data/control frames flushed by interruptions.
    pub flushed: u64,
    /// `OutputAudio`/`AgentText` frames dropped on arrival because their
    /// context was stale.
    pub stale: u64,
}

/// The interruption-aware queue between two stages (see the module rules).
#[derive(Debug, Default)]
pub struct FrameQueue {
    /// Priority lane: system frames, FIFO.
    system: VecDeque<Frame>,
    /// Data and control frames, FIFO.
    ordered: VecDeque<Frame>,
    /// Contexts below this are stale.
    stale_below: ContextId,
    /// The newest context seen in any pushed frame.
    newest: Option<ContextId>,
    /// Drop counters.
    dropped: DropCounts,
}

impl FrameQueue {
    /// An empty queue; no context is stale.
    pub fn new() -> Self {
        Self::default()
    }

    /// Barge-in: drops queued interruptible data/control frames, marks every
    /// context older than `new_ctx` stale (never un-marks one), and queues a
    /// [`Frame::Interruption`]. Returns how many frames were dropped.
    pub fn interrupt(&mut self, new_ctx: ContextId) -> usize {
        self.stale_below = self.stale_below.max(new_ctx);
        let before = self.ordered.len();
        self.ordered.retain(Frame::is_uninterruptible);
        let dropped = before - self.ordered.len();
        self.dropped.flushed += dropped as u64;
        self.system.push_back(Frame::Interruption);
        dropped
    }

    /// True if frames of `ctx` are stale (an interruption came after it).
    pub fn is_stale(&self, ctx: ContextId) -> bool {
        ctx < self.stale_below
    }

    /// Frames queued (both lanes).
    pub fn len(&self) -> usize {
        self.system.len() + self.ordered.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What has been dropped so far.
    pub fn dropped(&self) -> DropCounts {
        self.dropped
    }
}

impl FrameProcessor for FrameQueue {
    /// Queues `frame` by the module rules. A pushed [`Frame::Interruption`]
    /// interrupts as [`FrameQueue::interrupt`] with the context after the
    /// newest one seen (so everything produced so far becomes stale).
    fn handle_frame(&mut self, frame: Frame) {
        if let Frame::Interruption = frame {
            let next = self.newest.map_or(self.stale_below, ContextId::next);
            self.interrupt(next);
            return;
        }
        if frame.kind() == FrameKind::System {
            self.system.push_back(frame);
            return;
        }
        if let Some(ctx) = frame.ctx() {
            // `frame` itself, not `inner()`: an uninterruptible wrapper is never dropped.
            let droppable = matches!(frame, Frame::OutputAudio { .. } | Frame::AgentText { .. });
            if droppable && self.is_stale(ctx) {
                self.dropped.stale += 1;
                return;
            }
            self.newest = Some(self.newest.map_or(ctx, |n| n.max(ctx)));
        }
        self.ordered.push_back(frame);
    }

    fn poll_frame(&mut self) -> Option<Frame> {
        self.system.pop_front().or_else(|| self.ordered.pop_front())
    }
}

/// Frames in, frames out (Pipecat `tests/utils.py::run_test`): hands every
/// frame of `input` to `processor` in order, then drains it. For tests of
/// any [`FrameProcessor`]; pair with [`names`] to assert what came out.
pub fn run_test<P: FrameProcessor>(processor: &mut P, input: impl IntoIterator<Item = Frame>) -> Vec<Frame> {
    for frame in input {
        processor.handle_frame(frame);
    }
    std::iter::from_fn(|| processor.poll_frame()).collect()
}

/// The variant names of `frames` ([`Frame::name`]), for assertions.
pub fn names(frames: &[Frame]) -> Vec<&'static str> {
    frames.iter().map(Frame::name).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn audio(ctx: u64) -> Frame {
        Frame::OutputAudio { ctx: ContextId(ctx), pcm: Arc::from(vec![0i16; 441]), sample_rate: 22_050 }
    }

    fn text(ctx: u64, t: &str) -> Frame {
        Frame::AgentText { ctx: ContextId(ctx), text: t.into() }
    }

    fn mic() -> Frame {
        Frame::InputAudio(Arc::from(vec![0i16; 320]))
    }

    #[test]
    fn data_and_control_are_fifo() {
        let out = run_test(
            &mut FrameQueue::new(),
            [
                mic(),
                Frame::Transcript { text: "hi".into(), is_final: true },
                Frame::TtsStarted { ctx: ContextId(1) },
                text(1, "Hello."),
                audio(1),
                Frame::TtsStopped { ctx: ContextId(1) },
                Frame::AgentTurnDone { ctx: ContextId(1) },
            ],
        );
        assert_eq!(
            names(&out),
            ["InputAudio", "Transcript", "TtsStarted", "AgentText", "OutputAudio", "TtsStopped", "AgentTurnDone"]
        );
    }

    #[test]
    fn system_frames_jump_ahead_and_survive_interruptions() {
        let out = run_test(
            &mut FrameQueue::new(),
            [
                audio(1),
                Frame::UserStartedSpeaking,
                audio(1),
                Frame::Interruption,
                Frame::EndCall { reason: "done".into() },
                Frame::UserStoppedSpeaking,
            ],
        );
        assert_eq!(names(&out), ["UserStartedSpeaking", "Interruption", "EndCall", "UserStoppedSpeaking"]);
        assert_eq!(out[2], Frame::EndCall { reason: "done".into() });
    }

    #[test]
    fn interruption_flushes_data_and_control_frames() {
        let mut q = FrameQueue::new();
        for f in [Frame::TtsStarted { ctx: ContextId(1) }, text(1, "A long answer."), audio(1), audio(1), mic()] {
            q.handle_frame(f);
        }
        assert_eq!(q.interrupt(ContextId(2)), 5);
        assert_eq!(q.dropped(), DropCounts { flushed: 5, stale: 0 });
        assert_eq!(names(&run_test(&mut q, [])), ["Interruption"]);
        assert!(q.is_empty());
        // The new turn flows normally.
        let out = run_test(&mut q, [Frame::TtsStarted { ctx: ContextId(2) }, audio(2)]);
        assert_eq!(names(&out), ["TtsStarted", "OutputAudio"]);
    }

    #[test]
    fn uninterruptible_frames_survive_in_order() {
        let goodbye = |f: Frame| f.uninterruptible();
        let out = run_test(
            &mut FrameQueue::new(),
            [
                goodbye(text(1, "Goodbye!")),
                audio(1),
                goodbye(audio(1)),
                goodbye(Frame::TtsStopped { ctx: ContextId(1) }),
                mic(),
                Frame::Interruption,
                // Late goodbye audio of the now stale turn still passes.
                goodbye(audio(1)),
                audio(1),
            ],
        );
        assert_eq!(names(&out), ["Interruption", "AgentText", "OutputAudio", "TtsStopped", "OutputAudio"]);
        assert!(out[1..].iter().all(Frame::is_uninterruptible));
    }

    #[test]
    fn stale_tts_audio_is_dropped_by_context_id() {
        let mut q = FrameQueue::new();
        let out = run_test(&mut q, [Frame::TtsStarted { ctx: ContextId(4) }, audio(4)]);
        assert_eq!(out.len(), 2);
        // Barge-in while TTS of ctx 4 is still streaming.
        assert_eq!(q.interrupt(ContextId(5)), 0);
        assert!(q.is_stale(ContextId(4)) && !q.is_stale(ContextId(5)));
        let out = run_test(
            &mut q,
            [
                audio(4),
                text(4, "…rest of the old reply."),
                audio(3),
                Frame::TtsStopped { ctx: ContextId(4) },
                audio(5),
                text(5, "Sure."),
            ],
        );
        assert_eq!(names(&out), ["Interruption", "TtsStopped", "OutputAudio", "AgentText"]);
        assert_eq!(out[2].ctx(), Some(ContextId(5)));
        assert_eq!(q.dropped(), DropCounts { flushed: 0, stale: 3 });
    }

    #[test]
    fn pushed_interruption_makes_every_seen_context_stale() {
        let mut q = FrameQueue::new();
        run_test(&mut q, [audio(7), Frame::Interruption]);
        assert!(q.is_stale(ContextId(7)));
        assert!(!q.is_stale(ContextId(8)));
        // Never goes back: a lower explicit context keeps 7 stale.
        q.interrupt(ContextId(2));
        assert!(q.is_stale(ContextId(7)));
        let out = run_test(&mut q, [audio(7), audio(8)]);
        assert_eq!(names(&out), ["Interruption", "OutputAudio"]);
        // Interruption before any context: nothing stale, nothing to drop.
        let mut fresh = FrameQueue::new();
        assert_eq!(names(&run_test(&mut fresh, [Frame::Interruption, audio(0)])), ["Interruption", "OutputAudio"]);
    }
}
