//! Scripted text dialogues through [`FlowAgent`] with the shipped dental
//! agent, and agent-file validation errors. `today` is fixed to Monday
//! 2026-11-23.

use super::escalation::TransferRequest;
use super::flow::{AgentAction, AgentConfigError, AgentDef, FlowAgent, load_agents};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::macros::date;

const TODAY: time::Date = date!(2026 - 11 - 23);

fn dental_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-config/agents/dental-front-desk.yaml")
}

fn dental() -> FlowAgent {
    let def = AgentDef::load(&dental_path()).unwrap_or_else(|e| panic!("{e}"));
    FlowAgent::new(Arc::new(def), TODAY)
}

/// The text of the one `Say` in `actions` (panics when there is none).
fn said(actions: &[AgentAction]) -> &str {
    let says: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            AgentAction::Say(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(says.len(), 1, "exactly one Say expected in {actions:?}");
    says[0]
}

fn hangup(reason: &str) -> AgentAction {
    AgentAction::Hangup { reason: reason.into() }
}

/// Says `text` and checks the reply contains `expect`; returns the reply.
fn turn(agent: &mut FlowAgent, text: &str, expect: &str) -> String {
    let out = agent.on_user_turn(text);
    let s = said(&out).to_string();
    assert!(s.contains(expect), "after {text:?} expected {expect:?} in {s:?}");
    assert_eq!(out.len(), 1, "no hangup/transfer expected after {text:?}: {out:?}");
    s
}

fn slot<'a>(agent: &'a FlowAgent, name: &str) -> Option<&'a str> {
    agent.slots().get(name).map(String::as_str)
}

// ------------------------------------------------------------------ dialogues

/// A transferred call resumes the booking where the first agent left it.
#[test]
fn a_transferred_call_resumes_the_intent_with_its_slots() {
    let mut a = dental();
    a.start();
    turn(&mut a, "I'd like to book a cleaning next Tuesday", "what time");
    let out = a.on_user_turn("Can I talk to a person please?");
    assert!(out.iter().any(|x| matches!(x, AgentAction::Transfer(_))), "{out:?}");
    assert_eq!(a.goal(), Some("book"), "the goal is the booking, not the request for a person");
    let mut b = dental();
    let hello = b.resume(a.goal(), a.slots());
    let s = said(&hello);
    assert!(s.starts_with("Thanks for calling Bright Smile Dental."), "{s}");
    assert!(s.contains("I see you were booking a cleaning for Tuesday"), "{s}");
    assert!(s.contains("what time on Tuesday"), "asks the next missing slot: {s}");
    turn(&mut b, "At two thirty", "name");
    // An unknown intent or no context: a normal start.
    let mut c = dental();
    let s = said(&c.resume(Some("unknown"), &Default::default())).to_string();
    assert_eq!(s, "Thanks for calling Bright Smile Dental. How can I help you today?");
}

/// A failed transfer gives the conversation back to the agent.
#[test]
fn a_failed_transfer_continues_the_conversation() {
    let mut a = dental();
    a.start();
    let out = a.on_user_turn("I want to speak to someone");
    assert!(a.finished(), "{out:?}");
    let s = said(&a.on_transfer_failed()).to_string();
    assert!(s.contains("nobody at the front desk could take your call"), "{s}");
    assert!(!a.finished());
    turn(&mut a, "What are your opening hours?", "Monday to Friday");
}

/// A keyed intent runs on its DTMF key; other keys are read as digits.
#[test]
fn dtmf_keys_select_intents() {
    let mut a = dental();
    a.start();
    let out = a.on_dtmf('9');
    assert!(said(&out).contains("Monday to Friday"), "{out:?}");
    let out = a.on_dtmf('0');
    assert!(
        out.iter().any(|x| matches!(x, AgentAction::Transfer(_))),
        "0 asks for a person: {out:?}"
    );
    let mut b = dental();
    b.start();
    let out = b.on_dtmf('5');
    assert!(said(&out).contains("Sorry"), "an unkeyed digit is no match here: {out:?}");
}

#[test]
fn complete_booking_dialogue() {
    let mut a = dental();
    let hello = a.start();
    assert_eq!(
        hello,
        vec![AgentAction::Say("Thanks for calling Bright Smile Dental. How can I help you today?".into())]
    );
    assert_eq!(a.node(), "start");

    turn(&mut a, "Hi, I'd like to book a cleaning", "What day would you like to come in?");
    assert_eq!(slot(&a, "visit_type"), Some("cleaning"));
    assert_eq!(a.last_intent(), Some("book"));

    turn(&mut a, "next tuesday", "what time on Tuesday, December 1st works for you?");
    assert_eq!(slot(&a, "date"), Some("2026-12-01"));

    turn(&mut a, "two thirty in the afternoon", "Can I have your first and last name, please?");
    assert_eq!(slot(&a, "time"), Some("14:30"));

    let confirm = turn(&mut a, "my name is Anna Smith", "Shall I book it?");
    assert!(confirm.contains("A cleaning on Tuesday, December 1st at 2:30 PM, for Anna Smith."), "{confirm}");
    assert_eq!(slot(&a, "name"), Some("Anna Smith"));
    assert_eq!(a.node(), "confirm_booking");

    let booked = turn(&mut a, "yes", "Is there anything else I can help you with?");
    assert!(
        booked.contains("You're all set, Anna Smith. We'll see you on Tuesday, December 1st at 2:30 PM."),
        "{booked}"
    );
    assert_eq!(a.node(), "booked");

    let bye = a.on_user_turn("no thanks, bye");
    assert_eq!(
        bye,
        vec![AgentAction::Say("Thanks for calling Bright Smile Dental. Have a great day!".into()), hangup("goodbye")]
    );
    assert!(a.finished());
    assert!(a.on_user_turn("hello?").is_empty(), "nothing after the hangup");
    assert!(a.on_silence().is_empty());
}

#[test]
fn booking_with_bare_stt_style_answers() {
    let mut a = dental();
    a.start();
    turn(&mut a, "uh yeah i wanted to make an appointment", "What kind of visit do you need?");
    turn(&mut a, "just a regular check up", "What day would you like to come in?");
    turn(&mut a, "the twenty fifth", "what time on Wednesday, November 25th");
    turn(&mut a, "two thirty", "your first and last name");
    assert_eq!(slot(&a, "time"), Some("14:30"));
    let s = turn(&mut a, "anna smith", "Shall I book it?");
    assert!(s.contains("A checkup on Wednesday, November 25th at 2:30 PM, for Anna Smith."), "{s}");
    turn(&mut a, "yep", "You're all set");
    assert_eq!(a.on_user_turn("nope that's it").last(), Some(&hangup("goodbye")));
}

#[test]
fn all_slots_in_one_utterance() {
    let mut a = dental();
    a.start();
    let s = turn(
        &mut a,
        "Hi, I'd like to book a checkup next Tuesday at 2:30 p.m. My name is Anna Smith.",
        "Shall I book it?",
    );
    assert!(s.starts_with("Sure, I can help you book that. Let me confirm. A checkup on Tuesday, December 1st at 2:30 PM, for Anna Smith."), "{s}");

    // STT style: lowercase, no punctuation, number words
    let mut a = dental();
    a.start();
    let s = turn(&mut a, "hi i need a filling tomorrow at ten thirty this is john baker", "Shall I book it?");
    assert!(s.contains("A filling on Tuesday, November 24th at 10:30 AM, for John Baker."), "{s}");
    assert_eq!(a.last_intent(), Some("book"));
}

#[test]
fn declined_confirmation_changes_one_detail() {
    let mut a = dental();
    a.start();
    turn(&mut a, "book a whitening for friday at 9 am, my name is lee chen", "Shall I book it?");
    turn(&mut a, "no", "What would you like to change");
    assert_eq!(a.node(), "fix_booking");
    turn(&mut a, "the time", "And what time on Friday, November 27th works for you?");
    let s = turn(&mut a, "4 pm", "Shall I book it?");
    assert!(s.contains("A whitening on Friday, November 27th at 4 PM, for Lee Chen."), "{s}");
    turn(&mut a, "yeah that's right", "You're all set, Lee Chen.");
    let end = a.on_user_turn("no");
    assert_eq!(end.last(), Some(&hangup("completed")));
    assert_eq!(a.node(), "bye");
}

#[test]
fn move_dialogue() {
    let mut a = dental();
    a.start();
    turn(&mut a, "I need to reschedule my appointment", "Can I have your first and last name");
    assert_eq!(a.last_intent(), Some("move"));
    turn(&mut a, "anna smith", "What day is your current appointment?");
    turn(&mut a, "this friday", "What day would you like to move it to?");
    assert_eq!(slot(&a, "appt_date"), Some("2026-11-27"));
    turn(&mut a, "next wednesday", "And what time on Wednesday, December 2nd?");
    let s = turn(&mut a, "ten am", "Is that right?");
    assert!(s.contains("move your appointment on Friday, November 27th to Wednesday, December 2nd at 10 AM"), "{s}");
    // a correction in the same breath as the "no"
    let s = turn(&mut a, "no, make it thursday at 3", "Is that right?");
    assert!(s.contains("to Thursday, November 26th at 3 PM"), "{s}");
    turn(&mut a, "yes", "Your appointment is now on Thursday, November 26th at 3 PM.");
    assert_eq!(a.node(), "moved");
}

#[test]
fn cancel_dialogue_reuses_the_name() {
    let mut a = dental();
    a.start();
    turn(&mut a, "i cant make it on friday please cancel", "Can I have your first and last name");
    assert_eq!(slot(&a, "appt_date"), Some("2026-11-27"));
    let s = turn(&mut a, "it's maria lopez", "cancel the appointment for Maria Lopez on Friday, November 27th?");
    assert!(s.starts_with("Just to confirm"), "{s}");
    turn(&mut a, "correct", "Your appointment on Friday, November 27th is cancelled.");
    // a second request keeps the name, asks the rest again
    turn(&mut a, "I'd also like to book a cleaning", "What day would you like to come in?");
    turn(&mut a, "december 3rd", "what time on Thursday, December 3rd");
    let s = turn(&mut a, "noon", "Shall I book it?");
    assert!(s.contains("A cleaning on Thursday, December 3rd at noon, for Maria Lopez."), "{s}");
    let bye = a.on_user_turn("that's all, thanks");
    assert_eq!(bye.last(), Some(&hangup("goodbye")));
}

#[test]
fn declined_cancel_keeps_the_appointment() {
    let mut a = dental();
    a.start();
    turn(
        &mut a,
        "cancel my appointment on the 30th, this is tom baker",
        "cancel the appointment for Tom Baker on Monday, November 30th?",
    );
    let s = turn(&mut a, "no, not that one", "I'll leave your appointment as it is.");
    assert!(s.ends_with("Is there anything else I can help you with?"), "{s}");
    assert_eq!(a.node(), "anything_else");
}

#[test]
fn opening_hours_from_any_node() {
    let mut a = dental();
    a.start();
    let s = turn(&mut a, "what are your opening hours", "Monday to Friday from 8 AM to 6 PM");
    assert!(s.ends_with("How can I help you today?"), "{s}");

    // while collecting a slot: answer, then ask the same slot again
    turn(&mut a, "i want to book a cleaning", "What day would you like to come in?");
    let s = turn(&mut a, "are you open on saturdays", "Saturday from 9 AM to 1 PM");
    assert!(s.contains("closed on Sundays"), "{s}");
    assert!(s.ends_with("What day would you like to come in?"), "{s}");
    turn(&mut a, "saturday then", "what time on Saturday, November 28th");
    assert_eq!(a.last_intent(), Some("hours"), "filling a slot is not a new intent");

    // in a confirmation node
    turn(&mut a, "at 10, my name is kim park", "Shall I book it?");
    let s = turn(&mut a, "when do you close", "We're open");
    assert!(s.ends_with("Shall I book it?"), "{s}");
    assert_eq!(a.node(), "confirm_booking");
}

#[test]
fn silence_reprompts_twice_then_hangs_up() {
    let mut a = dental();
    a.start();
    assert_eq!(a.silence_timeout(), std::time::Duration::from_secs(6));
    for _ in 0..2 {
        let out = a.on_silence();
        assert_eq!(out, vec![AgentAction::Say("Are you still there? How can I help you today?".into())]);
    }
    let out = a.on_silence();
    assert_eq!(out.len(), 2);
    assert!(said(&out).contains("I can't hear you"), "{out:?}");
    assert_eq!(out[1], hangup("no-input"));
    assert!(a.finished());
}

#[test]
fn speech_resets_the_silence_count_and_silence_repeats_the_slot_question() {
    let mut a = dental();
    a.start();
    a.on_silence();
    a.on_silence();
    turn(&mut a, "book a checkup", "What day");
    let out = a.on_silence();
    assert_eq!(said(&out), "Are you still there? What day would you like to come in?");
    assert_eq!(out.len(), 1);
}

#[test]
fn no_match_reprompts_then_gives_up() {
    let mut a = dental();
    a.start();
    for _ in 0..2 {
        turn(&mut a, "purple elephants dancing", "I can book, move or cancel an appointment");
    }
    let out = a.on_user_turn("purple elephants dancing");
    assert!(said(&out).contains("I'm having trouble understanding"), "{out:?}");
    assert_eq!(out.last(), Some(&hangup("no-match")));
}

#[test]
fn no_match_while_collecting_uses_the_slot_retry() {
    let mut a = dental();
    a.start();
    turn(&mut a, "I'd like to make an appointment", "What kind of visit do you need?");
    turn(&mut a, "hmm let me think", "Sorry, was that a cleaning, a checkup");
    turn(&mut a, "an exam please", "What day");
    assert_eq!(slot(&a, "visit_type"), Some("checkup"));
    turn(&mut a, "whenever is fine", "Sorry, which day?");
    turn(&mut a, "the fifth", "Saturday, December 5th");
}

#[test]
fn empty_or_noise_transcripts_are_ignored() {
    let mut a = dental();
    a.start();
    assert!(a.on_user_turn("").is_empty());
    assert!(a.on_user_turn(" ... ").is_empty());
    assert_eq!(a.node(), "start");
    assert!(!a.finished());
}

#[test]
fn talk_to_a_person_transfers() {
    let mut a = dental();
    a.start();
    turn(&mut a, "book a cleaning", "What day");
    let out = a.on_user_turn("can I just talk to a real person");
    assert_eq!(
        out,
        vec![
            AgentAction::Say("Sure, let me connect you with someone at the front desk. One moment please.".into()),
            AgentAction::Transfer(TransferRequest::cold("sip:frontdesk@clinic.example")),
        ]
    );
    assert!(a.finished());
}

#[test]
fn emergency_goes_to_a_transfer_node() {
    let mut a = dental();
    a.start();
    let out = a.on_user_turn("I have a terrible toothache and it's swelling");
    assert!(said(&out).contains("I'm sorry you're in pain"), "{out:?}");
    assert_eq!(out.last(), Some(&AgentAction::Transfer(TransferRequest::cold("sip:frontdesk@clinic.example"))));
}

#[test]
fn repeat_says_the_last_turn_again() {
    let mut a = dental();
    a.start();
    let asked = turn(&mut a, "book a filling", "What day");
    let again = turn(&mut a, "sorry, could you repeat that?", "What day");
    assert_eq!(asked, again);
    turn(&mut a, "tomorrow", "what time on Tuesday, November 24th");
}

#[test]
fn changing_the_request_mid_collection() {
    let mut a = dental();
    a.start();
    turn(&mut a, "book a cleaning", "What day");
    turn(&mut a, "actually I want to cancel my appointment instead", "Can I have your first and last name");
    assert_eq!(a.last_intent(), Some("cancel"));
    turn(&mut a, "sam lee", "What day is your current appointment?");
}

#[test]
fn shipped_dental_agent_loads() {
    let def = AgentDef::load(&dental_path()).unwrap();
    assert_eq!(def.name(), "dental-front-desk");
    assert_eq!(def.language(), "en");
    let agents = load_agents(dental_path().parent().unwrap()).unwrap_or_else(|e| panic!("{e}"));
    assert!(agents.contains_key("dental-front-desk"));
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(200))]
    /// Any transcripts and silences: no panic, and nothing after the end.
    #[test]
    fn arbitrary_turns_never_panic(turns in proptest::collection::vec(
        proptest::option::of("[a-z0-9 ,.:/'?-]{0,40}|\\PC{0,20}"), 0..12)) {
        let mut a = dental();
        a.start();
        for t in turns {
            let was_finished = a.finished();
            let out = match t {
                Some(text) => a.on_user_turn(&text),
                None => a.on_silence(),
            };
            if was_finished {
                proptest::prop_assert!(out.is_empty());
            }
            // an ending action is always last
            for (i, act) in out.iter().enumerate() {
                if !matches!(act, AgentAction::Say(_)) {
                    proptest::prop_assert_eq!(i, out.len() - 1);
                }
            }
        }
    }
}

// ------------------------------------------------------------------ validation

const BASE: &str = "\
name: t
greeting: Hi.
slots:
  day: {type: date, ask: Which day?}
nodes:
  start:
    say: How can I help?
    intents:
      - name: book
        phrases: [book]
        slots: [day]
        next: done
  done:
    say: Booked for {day}.
    end: true
";

fn parse(y: &str) -> Result<AgentDef, AgentConfigError> {
    AgentDef::from_yaml(y, Path::new("agents/t.yaml"))
}

fn err(y: &str) -> AgentConfigError {
    match parse(y) {
        Ok(_) => panic!("expected an error for:\n{y}"),
        Err(e) => e,
    }
}

#[test]
fn base_file_is_valid_and_works() {
    let def = Arc::new(parse(BASE).unwrap());
    let mut a = FlowAgent::new(def, TODAY);
    assert_eq!(said(&a.start()), "Hi. How can I help?");
    let out = a.on_user_turn("book tomorrow");
    assert_eq!(out, vec![AgentAction::Say("Booked for Tuesday, November 24th.".into()), hangup("completed")]);
}

#[test]
fn error_unknown_node_in_transition() {
    let e = err(&BASE.replace("next: done", "next: dnoe"));
    assert_eq!((e.line, e.file.as_path()), (12, Path::new("agents/t.yaml")));
    assert!(e.message.contains("nodes.start.intents[0].next: unknown node `dnoe`"), "{}", e.message);
    assert!(e.to_string().starts_with("agents/t.yaml:12: "), "{e}");
}

#[test]
fn error_unknown_slot_type() {
    let e = err(&BASE.replace("type: date", "type: colour"));
    assert_eq!(e.line, 4, "{e}");
    assert!(e.message.contains("slots.day.type") && e.message.contains("unknown variant `colour`"), "{}", e.message);
}

#[test]
fn error_unknown_slot_in_intent() {
    let e = err(&BASE.replace("slots: [day]", "slots: [day, hour]"));
    assert_eq!(e.line, 11, "{e}");
    assert!(e.message.contains("nodes.start.intents[0].slots[1]: unknown slot `hour`"), "{}", e.message);
}

#[test]
fn error_bad_regex() {
    let y = BASE.replace("phrases: [book]", "phrases: [book]\n        patterns: ['(unclosed']");
    let e = err(&y);
    assert_eq!(e.line, 11, "{e}");
    assert!(e.message.contains("nodes.start.intents[0].patterns[0]: bad regex `(unclosed`"), "{}", e.message);
}

#[test]
fn error_template_unknown_slot_and_filter() {
    let e = err(&BASE.replace("Booked for {day}.", "Booked for {date}."));
    assert_eq!(e.line, 14, "{e}");
    assert!(e.message.contains("nodes.done.say: unknown slot `date`"), "{}", e.message);
    let e = err(&BASE.replace("Booked for {day}.", "Booked for {day|shouted}."));
    assert_eq!(e.line, 14, "{e}");
    assert!(e.message.contains("unknown filter `shouted`"), "{}", e.message);
    let e = err(&BASE.replace("greeting: Hi.", "greeting: Hi {nobody}."));
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn error_node_with_no_way_out() {
    let y = format!("{BASE}  limbo:\n    say: Hmm.\n    intents:\n      - name: x\n        phrases: [x]\n");
    let e = err(&y);
    assert_eq!(e.line, 16, "{e}");
    assert!(e.message.contains("nodes.limbo: node has no way out"), "{}", e.message);
}

#[test]
fn error_unknown_field_and_syntax() {
    let e = err(&BASE.replace("        next: done", "        nxt: done"));
    assert_eq!(e.line, 12, "{e}");
    assert!(e.message.contains("unknown field `nxt`"), "{}", e.message);
    let e = err(&BASE.replace("  done:\n", "  done\n"));
    assert!(e.line > 0, "{e}");
}

#[test]
fn error_other_rules() {
    // inheritance from an unknown node
    let e = err(&BASE.replace("    say: How can I help?\n", "    say: How can I help?\n    inherit: nowhere\n"));
    assert_eq!(e.line, 8, "{e}");
    // an intent that can never match
    let e = err(&BASE.replace("        phrases: [book]\n", ""));
    assert!(e.message.contains("never matches"), "{}", e.message);
    // a transfer with no target
    let e = err(&BASE.replace("        slots: [day]\n        next: done\n", "        action: transfer\n"));
    assert!(e.message.contains("nodes.start.intents[0].action: transfer needs a `target`"), "{}", e.message);
    // an end node with intents
    let e =
        err(&BASE
            .replace("    end: true\n", "    end: true\n    intents:\n      - {name: a, phrases: [a], next: start}\n"));
    assert!(e.message.contains("nodes.done.intents"), "{}", e.message);
    // a missing start node
    let e = err(&BASE.replace("name: t\n", "name: t\nstart: begin\n"));
    assert_eq!(e.line, 2, "{e}");
    // an enum slot without values
    let e = err(&BASE.replace("type: date", "type: enum"));
    assert!(e.message.contains("slots.day: an enum slot needs `values`"), "{}", e.message);
    // bad numbers
    let e = err(&BASE.replace("name: t\n", "name: t\nsilence_timeout_s: -1\n"));
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn load_agents_rejects_duplicate_names_and_reads_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), BASE).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not an agent").unwrap();
    let agents = load_agents(dir.path()).unwrap();
    assert_eq!(agents.keys().collect::<Vec<_>>(), vec!["t"]);
    std::fs::write(dir.path().join("b.yml"), BASE).unwrap();
    let e = load_agents(dir.path()).unwrap_err();
    assert!(e.file.ends_with("b.yml") && e.line == 1 && e.message.contains("already defined"), "{e}");
    let e = load_agents(&dir.path().join("missing")).unwrap_err();
    assert_eq!(e.line, 0);
}

#[test]
fn module_doc_example_is_a_valid_agent() {
    let src = include_str!("mod.rs");
    let yaml: String = src
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .skip_while(|l| *l != "```yaml")
        .skip(1)
        .take_while(|l| *l != "```")
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(yaml.contains("nodes:"), "example not found");
    let def = Arc::new(parse(&yaml).unwrap_or_else(|e| panic!("{e}")));
    let mut a = FlowAgent::new(def, TODAY);
    a.start();
    let s = said(&a.on_user_turn("I want 2 large pizzas for tomorrow at 7, my name is bob")).to_string();
    assert!(s.contains("That's 2 large pizzas for Tuesday, November 24th at 7 PM, under Bob. Right?"), "{s}");
}
