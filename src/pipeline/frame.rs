//! Pipeline frames: the values that travel between a call's transport, VAD,
//! STT, agent and TTS stages.
//!
//! Follows Pipecat's `frames/frames.py`: every frame has a kind.
//! * **System** frames ([`FrameKind::System`]) carry decisions that must act
//!   now (the caller started talking, barge-in, end of call): they jump ahead
//!   of queued frames and are never dropped by an interruption.
//! * **Data** frames ([`FrameKind::Data`]) carry audio and text in order.
//! * **Control** frames ([`FrameKind::Control`]) mark boundaries inside the
//!   ordered stream (TTS of a context started / stopped, the agent's turn is
//!   done).
//!
//! Data and control frames are flushed by an interruption unless they are
//! wrapped as [`Frame::Uninterruptible`] (Pipecat's `UninterruptibleFrame`
//! mixin), e.g. the goodbye that must be heard before a hang-up.
//!
//! Agent output carries the [`ContextId`] of the turn that produced it, so
//! that after a barge-in, audio still arriving for an old turn is recognised
//! as stale and dropped (see [`crate::pipeline::processor::FrameQueue`]).
//!
//! Audio payloads are `Arc<[i16]>`: cloning a frame never copies samples.

#![deny(missing_docs)]

use std::fmt;
use std::sync::Arc;

/// Identifies one agent turn (one reply: its text, TTS audio and control
/// frames). Increases over a call: a larger id is a later turn.
/// Serializes as the bare number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ContextId(pub u64);

impl ContextId {
    /// The id after this one (saturating).
    pub fn next(self) -> ContextId {
        ContextId(self.0.saturating_add(1))
    }
}

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ctx-{}", self.0)
    }
}

/// How a frame is queued and whether an interruption may drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Jumps the queue; never dropped.
    System,
    /// Ordered payload (audio, text); dropped by an interruption unless
    /// uninterruptible.
    Data,
    /// Ordered marker; dropped by an interruption unless uninterruptible.
    Control,
}

/// One pipeline frame. Match on [`Frame::inner`] to see through the
/// [`Frame::Uninterruptible`] wrapper.
#[derive(Clone, PartialEq)]
pub enum Frame {
    /// System: VAD/turn detection says the caller began speaking.
    UserStartedSpeaking,
    /// System: the caller's turn ended.
    UserStoppedSpeaking,
    /// System: barge-in; queued interruptible output is flushed and every
    /// transport stops playing what it has buffered.
    Interruption,
    /// System: the call is to end.
    EndCall {
        /// Why (for the call record), e.g. "caller said goodbye".
        reason: String,
    },
    /// Data: caller audio, mono PCM16 at 16 kHz (any length; usually one
    /// 20 ms frame of 320 samples).
    InputAudio(Arc<[i16]>),
    /// Data: speech-to-text result.
    Transcript {
        /// Recognised text.
        text: String,
        /// True for a final result, false for an interim one.
        is_final: bool,
    },
    /// Data: agent reply text (a sentence or a token run) for turn `ctx`.
    AgentText {
        /// The turn that produced it.
        ctx: ContextId,
        /// The text.
        text: String,
    },
    /// Data: synthesized agent audio for turn `ctx`, mono PCM16.
    OutputAudio {
        /// The turn that produced it.
        ctx: ContextId,
        /// Samples.
        pcm: Arc<[i16]>,
        /// Rate of `pcm`, Hz (the TTS's own rate, e.g. 22 050 for Piper).
        sample_rate: u32,
    },
    /// Control: TTS of turn `ctx` started producing audio.
    TtsStarted {
        /// The turn.
        ctx: ContextId,
    },
    /// Control: TTS of turn `ctx` finished.
    TtsStopped {
        /// The turn.
        ctx: ContextId,
    },
    /// Control: the agent has produced everything for turn `ctx`.
    AgentTurnDone {
        /// The turn.
        ctx: ContextId,
    },
    /// A data or control frame that an interruption must not drop and that
    /// is delivered even when its context is stale. Build it with
    /// [`Frame::uninterruptible`] (which never nests wrappers and leaves
    /// system frames as they are).
    Uninterruptible(Box<Frame>),
}

impl Frame {
    /// The frame's kind (of the wrapped frame for
    /// [`Frame::Uninterruptible`]).
    pub fn kind(&self) -> FrameKind {
        match self.inner() {
            Frame::UserStartedSpeaking | Frame::UserStoppedSpeaking | Frame::Interruption | Frame::EndCall { .. } => {
                FrameKind::System
            }
            Frame::InputAudio(_)
            | Frame::Transcript { .. }
            | Frame::AgentText { .. }
            | Frame::OutputAudio { .. }
            | Frame::Uninterruptible(_) => FrameKind::Data,
            Frame::TtsStarted { .. } | Frame::TtsStopped { .. } | Frame::AgentTurnDone { .. } => FrameKind::Control,
        }
    }

    /// Marks a data or control frame uninterruptible; system frames (never
    /// interrupted anyway) and already wrapped frames are returned unchanged.
    pub fn uninterruptible(self) -> Frame {
        match self.kind() {
            FrameKind::System => self,
            _ if self.is_uninterruptible() => self,
            _ => Frame::Uninterruptible(Box::new(self)),
        }
    }

    /// True for a [`Frame::Uninterruptible`] wrapper.
    pub fn is_uninterruptible(&self) -> bool {
        matches!(self, Frame::Uninterruptible(_))
    }

    /// The frame itself, seen through any [`Frame::Uninterruptible`] wrappers.
    pub fn inner(&self) -> &Frame {
        let mut f = self;
        while let Frame::Uninterruptible(inner) = f {
            f = inner;
        }
        f
    }

    /// Unwraps [`Frame::Uninterruptible`] wrappers.
    pub fn into_inner(self) -> Frame {
        let mut f = self;
        while let Frame::Uninterruptible(inner) = f {
            f = *inner;
        }
        f
    }

    /// The agent turn this frame belongs to, if it carries one.
    pub fn ctx(&self) -> Option<ContextId> {
        match self.inner() {
            Frame::AgentText { ctx, .. }
            | Frame::OutputAudio { ctx, .. }
            | Frame::TtsStarted { ctx }
            | Frame::TtsStopped { ctx }
            | Frame::AgentTurnDone { ctx } => Some(*ctx),
            _ => None,
        }
    }

    /// The variant's name (of the wrapped frame), for logs and for
    /// frames-in/frames-out assertions.
    pub fn name(&self) -> &'static str {
        match self.inner() {
            Frame::UserStartedSpeaking => "UserStartedSpeaking",
            Frame::UserStoppedSpeaking => "UserStoppedSpeaking",
            Frame::Interruption => "Interruption",
            Frame::EndCall { .. } => "EndCall",
            Frame::InputAudio(_) => "InputAudio",
            Frame::Transcript { .. } => "Transcript",
            Frame::AgentText { .. } => "AgentText",
            Frame::OutputAudio { .. } => "OutputAudio",
            Frame::TtsStarted { .. } => "TtsStarted",
            Frame::TtsStopped { .. } => "TtsStopped",
            Frame::AgentTurnDone { .. } => "AgentTurnDone",
            Frame::Uninterruptible(_) => "Uninterruptible",
        }
    }
}

/// Audio is shown by length, not sample by sample.
impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::InputAudio(pcm) => write!(f, "InputAudio({} samples)", pcm.len()),
            Frame::OutputAudio { ctx, pcm, sample_rate } => {
                write!(f, "OutputAudio {{ ctx: {ctx}, {} samples @ {sample_rate} Hz }}", pcm.len())
            }
            Frame::EndCall { reason } => write!(f, "EndCall {{ reason: {reason:?} }}"),
            Frame::Transcript { text, is_final } => write!(f, "Transcript {{ text: {text:?}, is_final: {is_final} }}"),
            Frame::AgentText { ctx, text } => write!(f, "AgentText {{ ctx: {ctx}, text: {text:?} }}"),
            Frame::TtsStarted { ctx } | Frame::TtsStopped { ctx } | Frame::AgentTurnDone { ctx } => {
                write!(f, "{} {{ ctx: {ctx} }}", self.name())
            }
            Frame::Uninterruptible(inner) => write!(f, "Uninterruptible({inner:?})"),
            Frame::UserStartedSpeaking | Frame::UserStoppedSpeaking | Frame::Interruption => f.write_str(self.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(ctx: u64) -> Frame {
        Frame::OutputAudio { ctx: ContextId(ctx), pcm: Arc::from(vec![1i16; 480]), sample_rate: 22_050 }
    }

    #[test]
    fn kinds() {
        assert_eq!(Frame::Interruption.kind(), FrameKind::System);
        assert_eq!(Frame::EndCall { reason: "bye".into() }.kind(), FrameKind::System);
        assert_eq!(Frame::InputAudio(Arc::from(vec![0i16; 320])).kind(), FrameKind::Data);
        assert_eq!(Frame::Transcript { text: "hi".into(), is_final: true }.kind(), FrameKind::Data);
        assert_eq!(audio(1).kind(), FrameKind::Data);
        assert_eq!(Frame::TtsStopped { ctx: ContextId(1) }.kind(), FrameKind::Control);
        assert_eq!(Frame::AgentTurnDone { ctx: ContextId(1) }.uninterruptible().kind(), FrameKind::Control);
    }

    #[test]
    fn uninterruptible_wrapper() {
        let f = audio(3).uninterruptible();
        assert!(f.is_uninterruptible());
        assert_eq!(f.clone().uninterruptible(), f, "no nesting");
        assert_eq!(f.ctx(), Some(ContextId(3)));
        assert_eq!(f.name(), "OutputAudio");
        assert_eq!(f.inner(), &audio(3));
        assert_eq!(f.clone().into_inner(), audio(3));
        assert_eq!(Frame::Interruption.uninterruptible(), Frame::Interruption);
        // Hand-built nesting is seen through too.
        let nested = Frame::Uninterruptible(Box::new(f));
        assert_eq!(nested.inner(), &audio(3));
        assert_eq!(nested.kind(), FrameKind::Data);
        assert_eq!(format!("{:?}", audio(2)), "OutputAudio { ctx: ctx-2, 480 samples @ 22050 Hz }");
    }

    #[test]
    fn context_id_orders_displays_and_serializes_as_a_number() {
        assert!(ContextId(2) > ContextId(1));
        assert_eq!(ContextId(1).next(), ContextId(2));
        assert_eq!(ContextId(u64::MAX).next(), ContextId(u64::MAX));
        assert_eq!(ContextId(7).to_string(), "ctx-7");
        assert_eq!(serde_json::to_string(&ContextId(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<ContextId>("9").unwrap(), ContextId(9));
    }
}
