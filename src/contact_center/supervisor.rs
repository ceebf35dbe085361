//! A supervisor dialing in from a SIP phone: the keypad dialog (PIN, which
//! call to join, which mode) as a pure state machine. The call actor plays
//! what it says, feeds it the RFC 4733 digits, looks up the call it names
//! and carries out the mode changes (see `call::monitor`).
//!
//! ```text
//!  start ─▶ AskPin ──PIN#──▶ AskCall ──digits#──▶ Joined ──1/2/3/4──▶ mode
//!             │ wrong PIN (3 tries: hang up)   │ no such call: ask again
//! ```
//! The PIN is compared in constant time. Keys once joined: `1` listen,
//! `2` whisper (to the agent only), `3` barge (three-way), `4` take over,
//! `*` leave (hang up). A call is named by the last digits of its caller's
//! number; `#` alone picks the newest live call.

use crate::agent::context::constant_time_eq;
use std::time::Duration;

/// Wrong PINs before the call is ended.
pub const MAX_PIN_TRIES: u8 = 3;
/// Longest wait for a key before the prompt is repeated.
pub const DIGIT_TIMEOUT: Duration = Duration::from_secs(15);

/// What a supervisor does with the call they joined (keys `1`–`4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMode {
    /// Hear both sides, silently.
    Listen,
    /// Speak to the agent only.
    Whisper,
    /// Three-way.
    Barge,
    /// The AI leaves; the supervisor stays with the caller.
    Takeover,
}

/// What the dialog asks of the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialInAction {
    /// Say this to the supervisor.
    Say(String),
    /// Find the live call whose caller number ends in these digits (empty:
    /// the newest live call) and answer with [`SupervisorDialIn::call_found`].
    FindCall(String),
    /// Join the found call, or change mode on it.
    Mode(MonitorMode),
    /// End the supervisor's call with this reason.
    Hangup(String),
}

/// Where the dialog is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AskPin,
    AskCall,
    Finding,
    Joined,
    Done,
}

/// The keypad dialog of one supervisor's call.
#[derive(Debug, Clone)]
pub struct SupervisorDialIn {
    /// The configured PIN.
    pin: String,
    /// Digits typed since the last `#`.
    digits: String,
    /// Wrong PINs so far.
    wrong: u8,
    /// Where the dialog is.
    phase: Phase,
}

impl SupervisorDialIn {
    /// A dialog checking against `pin` (digits).
    pub fn new(pin: &str) -> Self {
        SupervisorDialIn { pin: pin.to_string(), digits: String::new(), wrong: 0, phase: Phase::AskPin }
    }

    /// The first prompt, when the supervisor's call is answered.
    pub fn start(&self) -> Vec<DialInAction> {
        vec![DialInAction::Say("Supervisor line. Enter your PIN, then press pound.".into())]
    }

    /// Whether the supervisor has joined a call.
    pub fn joined(&self) -> bool {
        self.phase == Phase::Joined
    }

    /// One key (`0-9`, `*`, `#`; others ignored).
    pub fn on_digit(&mut self, d: char) -> Vec<DialInAction> {
        match (self.phase, d) {
            (Phase::Done | Phase::Finding, _) => vec![],
            (Phase::Joined, '1') => vec![DialInAction::Mode(MonitorMode::Listen)],
            (Phase::Joined, '2') => vec![DialInAction::Mode(MonitorMode::Whisper)],
            (Phase::Joined, '3') => vec![DialInAction::Mode(MonitorMode::Barge)],
            (Phase::Joined, '4') => vec![DialInAction::Mode(MonitorMode::Takeover)],
            (Phase::Joined, '*') => {
                self.phase = Phase::Done;
                vec![DialInAction::Hangup("supervisor-left".into())]
            }
            (Phase::Joined, _) => vec![],
            (_, '#') => {
                let typed = std::mem::take(&mut self.digits);
                self.submit(typed)
            }
            (_, c) if c.is_ascii_digit() && self.digits.len() < 32 => {
                self.digits.push(c);
                vec![]
            }
            _ => vec![],
        }
    }

    fn submit(&mut self, typed: String) -> Vec<DialInAction> {
        match self.phase {
            Phase::AskPin if constant_time_eq(typed.as_bytes(), self.pin.as_bytes()) && !self.pin.is_empty() => {
                self.phase = Phase::AskCall;
                vec![DialInAction::Say(
                    "Enter the last digits of the caller's number, then pound. Press pound alone for the newest call.".into(),
                )]
            }
            Phase::AskPin => {
                self.wrong += 1;
                if self.wrong >= MAX_PIN_TRIES {
                    self.phase = Phase::Done;
                    vec![DialInAction::Say("Wrong PIN. Goodbye.".into()), DialInAction::Hangup("supervisor-pin-refused".into())]
                } else {
                    vec![DialInAction::Say("Wrong PIN. Enter your PIN, then press pound.".into())]
                }
            }
            Phase::AskCall => {
                self.phase = Phase::Finding;
                vec![DialInAction::FindCall(typed)]
            }
            Phase::Finding | Phase::Joined | Phase::Done => vec![],
        }
    }

    /// The answer to [`DialInAction::FindCall`]: join in listen mode, or
    /// ask again.
    pub fn call_found(&mut self, found: bool) -> Vec<DialInAction> {
        if self.phase != Phase::Finding {
            return vec![];
        }
        if found {
            self.phase = Phase::Joined;
            vec![
                DialInAction::Mode(MonitorMode::Listen),
                DialInAction::Say(
                    "Listening. Press 1 to listen, 2 to whisper, 3 to barge in, 4 to take over, star to leave.".into(),
                ),
            ]
        } else {
            self.phase = Phase::AskCall;
            vec![DialInAction::Say("No live call matches. Enter the last digits of the caller's number, then pound.".into())]
        }
    }

    /// The joined call ended (or refused the supervisor).
    pub fn call_ended(&mut self) -> Vec<DialInAction> {
        self.phase = Phase::Done;
        vec![DialInAction::Say("The call has ended. Goodbye.".into()), DialInAction::Hangup("monitored-call-ended".into())]
    }

    /// No key for [`DIGIT_TIMEOUT`] before joining: the prompt again.
    pub fn on_timeout(&mut self) -> Vec<DialInAction> {
        self.digits.clear();
        match self.phase {
            Phase::AskPin => self.start(),
            Phase::AskCall => vec![DialInAction::Say("Enter the last digits of the caller's number, then pound.".into())],
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(d: &mut SupervisorDialIn, s: &str) -> Vec<DialInAction> {
        s.chars().flat_map(|c| d.on_digit(c)).collect()
    }

    #[test]
    fn pin_then_call_then_modes() {
        let mut d = SupervisorDialIn::new("2468");
        assert!(matches!(d.start()[0], DialInAction::Say(_)));
        assert!(matches!(keys(&mut d, "2468#")[..], [DialInAction::Say(_)]));
        assert_eq!(keys(&mut d, "0123#"), [DialInAction::FindCall("0123".into())]);
        assert!(keys(&mut d, "1").is_empty(), "keys wait for the lookup");
        let joined = d.call_found(true);
        assert_eq!(joined[0], DialInAction::Mode(MonitorMode::Listen));
        assert!(d.joined());
        assert_eq!(keys(&mut d, "2"), [DialInAction::Mode(MonitorMode::Whisper)]);
        assert_eq!(keys(&mut d, "3"), [DialInAction::Mode(MonitorMode::Barge)]);
        assert_eq!(keys(&mut d, "4"), [DialInAction::Mode(MonitorMode::Takeover)]);
        assert_eq!(keys(&mut d, "*"), [DialInAction::Hangup("supervisor-left".into())]);
        assert!(keys(&mut d, "1").is_empty());
    }

    #[test]
    fn three_wrong_pins_end_the_call() {
        let mut d = SupervisorDialIn::new("2468");
        assert!(matches!(keys(&mut d, "1111#")[..], [DialInAction::Say(_)]));
        assert!(matches!(keys(&mut d, "246#")[..], [DialInAction::Say(_)]));
        let last = keys(&mut d, "24689#");
        assert_eq!(last.last(), Some(&DialInAction::Hangup("supervisor-pin-refused".into())));
        assert!(keys(&mut d, "2468#").is_empty(), "no more tries");
    }

    #[test]
    fn an_unknown_call_is_asked_again_and_an_empty_pin_never_matches() {
        let mut d = SupervisorDialIn::new("1357");
        keys(&mut d, "1357#");
        assert_eq!(keys(&mut d, "#"), [DialInAction::FindCall(String::new())]);
        assert!(matches!(d.call_found(false)[..], [DialInAction::Say(_)]));
        assert_eq!(keys(&mut d, "99#"), [DialInAction::FindCall("99".into())]);
        let mut e = SupervisorDialIn::new("");
        assert!(!matches!(keys(&mut e, "#")[..], [DialInAction::Say(ref s)] if s.starts_with("Enter the last")));
    }
}
