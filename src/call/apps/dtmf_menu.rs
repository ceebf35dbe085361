//! `dtmf-menu`: plays a prompt, collects digits, routes to the application
//! configured for them. A key press interrupts the prompt. Input that matches
//! no option, or no input before the timeout, replays the prompt; after
//! `max_tries` prompts the call ends politely.

use super::{AppAction, AppInput, Application};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The menu application.
#[derive(Debug)]
pub struct DtmfMenu {
    /// Configured name.
    name: String,
    /// Prompt audio, 16 kHz mono.
    prompt: Arc<Vec<i16>>,
    /// Digit string → application name.
    options: BTreeMap<String, String>,
    /// First-digit / inter-digit timeout.
    timeout: Duration,
    /// Prompts allowed in all.
    max_tries: u32,
    /// Prompts played so far.
    tries: u32,
    /// Digits collected in this try.
    digits: String,
    /// When the current wait for a digit ends (None while the prompt plays).
    deadline: Option<Instant>,
    /// True while the prompt is queued/playing.
    prompting: bool,
}

impl DtmfMenu {
    /// A menu; `options` maps digit strings to application names.
    pub fn new(
        name: &str,
        prompt: Arc<Vec<i16>>,
        options: BTreeMap<String, String>,
        timeout: Duration,
        max_tries: u32,
    ) -> Self {
        DtmfMenu {
            name: name.to_string(),
            prompt,
            options,
            timeout,
            max_tries: max_tries.max(1),
            tries: 0,
            digits: String::new(),
            deadline: None,
            prompting: false,
        }
    }

    fn prompt(&mut self) -> Vec<AppAction> {
        if self.tries >= self.max_tries {
            self.deadline = None;
            return vec![AppAction::Hangup("menu-no-valid-input".into())];
        }
        self.tries += 1;
        self.digits.clear();
        self.deadline = None;
        self.prompting = true;
        vec![AppAction::Play(self.prompt.clone())]
    }

    fn digit(&mut self, d: char, now: Instant) -> Vec<AppAction> {
        let mut actions = Vec::new();
        if self.prompting {
            self.prompting = false;
            actions.push(AppAction::StopPlayback);
        }
        self.digits.push(d);
        if let Some(app) = self.options.get(&self.digits) {
            // Unambiguous when no longer option starts with these digits.
            let longer = self.options.keys().any(|k| k.len() > self.digits.len() && k.starts_with(&self.digits));
            if !longer {
                self.deadline = None;
                actions.push(AppAction::Switch(app.clone()));
                return actions;
            }
        }
        if !self.options.keys().any(|k| k.starts_with(&self.digits)) {
            actions.extend(self.prompt());
            return actions;
        }
        self.deadline = Some(now + self.timeout);
        actions
    }
}

impl Application for DtmfMenu {
    fn handle(&mut self, input: AppInput<'_>, now: Instant) -> Vec<AppAction> {
        match input {
            AppInput::Started => self.prompt(),
            AppInput::PlayoutDone if self.prompting => {
                self.prompting = false;
                self.deadline = Some(now + self.timeout);
                Vec::new()
            }
            AppInput::Dtmf(d) => self.digit(d, now),
            AppInput::Timeout if self.deadline.is_some_and(|d| now >= d) => {
                self.deadline = None;
                match self.options.get(&self.digits) {
                    Some(app) => vec![AppAction::Switch(app.clone())],
                    None => self.prompt(),
                }
            }
            _ => Vec::new(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu() -> DtmfMenu {
        let mut o = BTreeMap::new();
        o.insert("1".to_string(), "echo".to_string());
        o.insert("2".to_string(), "greeting".to_string());
        o.insert("21".to_string(), "sales".to_string());
        DtmfMenu::new("menu", Arc::new(vec![0; 320]), o, Duration::from_secs(5), 2)
    }

    #[test]
    fn single_digit_routes_at_once_and_stops_prompt() {
        let mut m = menu();
        let t = Instant::now();
        assert!(matches!(m.handle(AppInput::Started, t)[..], [AppAction::Play(_)]));
        assert_eq!(m.handle(AppInput::Dtmf('1'), t), vec![AppAction::StopPlayback, AppAction::Switch("echo".into())]);
    }

    #[test]
    fn ambiguous_prefix_waits_for_timeout_or_next_digit() {
        let mut m = menu();
        let t = Instant::now();
        m.handle(AppInput::Started, t);
        m.handle(AppInput::PlayoutDone, t);
        assert!(m.handle(AppInput::Dtmf('2'), t).is_empty());
        assert_eq!(m.poll_timeout(), Some(t + Duration::from_secs(5)));
        assert_eq!(m.handle(AppInput::Dtmf('1'), t), vec![AppAction::Switch("sales".into())]);

        let mut m = menu();
        m.handle(AppInput::Started, t);
        m.handle(AppInput::PlayoutDone, t);
        m.handle(AppInput::Dtmf('2'), t);
        let later = t + Duration::from_secs(5);
        assert_eq!(m.handle(AppInput::Timeout, later), vec![AppAction::Switch("greeting".into())]);
    }

    #[test]
    fn invalid_digit_reprompts_then_hangs_up() {
        let mut m = menu();
        let t = Instant::now();
        m.handle(AppInput::Started, t);
        m.handle(AppInput::PlayoutDone, t);
        let a = m.handle(AppInput::Dtmf('9'), t);
        assert!(matches!(a[..], [AppAction::Play(_)]), "{a:?}");
        m.handle(AppInput::PlayoutDone, t);
        let a = m.handle(AppInput::Timeout, t + Duration::from_secs(5));
        assert_eq!(a, vec![AppAction::Hangup("menu-no-valid-input".into())]);
    }
}
