//! `greeting`: plays a prompt, then records the caller until hangup, `#` or
//! the maximum recording time.

use super::{AppAction, AppInput, Application};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the greeting is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prompt,
    Recording { until: Instant },
    Done,
}

/// The greeting application.
#[derive(Debug)]
pub struct Greeting {
    /// Configured name.
    name: String,
    /// Prompt audio, 16 kHz mono.
    prompt: Arc<Vec<i16>>,
    /// Recording file.
    path: PathBuf,
    /// Longest recording.
    max_record: Duration,
    /// Current phase.
    phase: Phase,
}

impl Greeting {
    /// A greeting playing `prompt` (16 kHz mono) and recording to `path`.
    pub fn new(name: &str, prompt: Arc<Vec<i16>>, path: PathBuf, max_record: Duration) -> Self {
        Greeting { name: name.to_string(), prompt, path, max_record, phase: Phase::Prompt }
    }

    fn start_recording(&mut self, now: Instant) -> Vec<AppAction> {
        self.phase = Phase::Recording { until: now + self.max_record };
        vec![AppAction::StartRecording(self.path.clone())]
    }

    fn finish(&mut self, reason: &str) -> Vec<AppAction> {
        self.phase = Phase::Done;
        vec![AppAction::StopRecording, AppAction::Hangup(reason.to_string())]
    }
}

impl Application for Greeting {
    fn handle(&mut self, input: AppInput<'_>, now: Instant) -> Vec<AppAction> {
        match (input, self.phase) {
            (AppInput::Started, Phase::Prompt) => vec![AppAction::Play(self.prompt.clone())],
            (AppInput::PlayoutDone, Phase::Prompt) => self.start_recording(now),
            // `#` during the prompt skips it; during recording it ends the message.
            (AppInput::Dtmf('#'), Phase::Prompt) => {
                let mut a = vec![AppAction::StopPlayback];
                a.extend(self.start_recording(now));
                a
            }
            (AppInput::Dtmf('#'), Phase::Recording { .. }) => self.finish("recording-complete"),
            (AppInput::Timeout, Phase::Recording { until }) if now >= until => self.finish("recording-max-length"),
            _ => Vec::new(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Recording { until } => Some(until),
            _ => None,
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> Greeting {
        Greeting::new("greeting", Arc::new(vec![1; 3200]), "/tmp/x.wav".into(), Duration::from_secs(10))
    }

    #[test]
    fn plays_then_records_then_hash_hangs_up() {
        let mut g = app();
        let t0 = Instant::now();
        assert!(matches!(g.handle(AppInput::Started, t0)[..], [AppAction::Play(_)]));
        assert_eq!(g.handle(AppInput::PlayoutDone, t0), vec![AppAction::StartRecording("/tmp/x.wav".into())]);
        assert_eq!(g.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(
            g.handle(AppInput::Dtmf('#'), t0),
            vec![AppAction::StopRecording, AppAction::Hangup("recording-complete".into())]
        );
        assert_eq!(g.poll_timeout(), None);
    }

    #[test]
    fn hash_during_prompt_skips_to_recording() {
        let mut g = app();
        let t0 = Instant::now();
        g.handle(AppInput::Started, t0);
        let a = g.handle(AppInput::Dtmf('#'), t0);
        assert_eq!(a, vec![AppAction::StopPlayback, AppAction::StartRecording("/tmp/x.wav".into())]);
        // The prompt's PlayoutDone after the skip must not restart recording.
        assert!(g.handle(AppInput::PlayoutDone, t0).is_empty());
    }

    #[test]
    fn max_length_ends_recording() {
        let mut g = app();
        let t0 = Instant::now();
        g.handle(AppInput::Started, t0);
        g.handle(AppInput::PlayoutDone, t0);
        assert!(g.handle(AppInput::Timeout, t0 + Duration::from_secs(9)).is_empty());
        let a = g.handle(AppInput::Timeout, t0 + Duration::from_secs(10));
        assert_eq!(a, vec![AppAction::StopRecording, AppAction::Hangup("recording-max-length".into())]);
    }
}
