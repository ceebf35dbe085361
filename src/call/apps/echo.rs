//! `echo`: sends back what it hears, one frame later (media testing).

use super::{AppAction, AppInput, Application};
use std::sync::Arc;
use std::time::Instant;

/// The echo application.
#[derive(Debug)]
pub struct Echo {
    name: String,
}

impl Echo {
    /// A new echo app with its configured name.
    pub fn new(name: &str) -> Self {
        Echo { name: name.to_string() }
    }
}

impl Application for Echo {
    fn handle(&mut self, input: AppInput<'_>, _now: Instant) -> Vec<AppAction> {
        match input {
            AppInput::Audio(frame) => vec![AppAction::Play(Arc::new(frame.to_vec()))],
            _ => Vec::new(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_each_frame_and_ignores_dtmf() {
        let mut e = Echo::new("echo");
        let now = Instant::now();
        let frame = vec![7i16; 320];
        assert_eq!(e.handle(AppInput::Audio(&frame), now), vec![AppAction::Play(Arc::new(frame.clone()))]);
        assert!(e.handle(AppInput::Dtmf('5'), now).is_empty());
    }
}
