//! Tests of the agent graph: loading and validation (file:line errors),
//! the transition table, and the LLM agent driven by scripted LLM events.

use super::*;
use crate::agent::context::CallContext;
use crate::agent::escalation::EscalationTarget;
use crate::agent::flow::load_agents;
use crate::agent::llm_agent::{AgentStep, LlmAgent};
use crate::providers::llm::MALFORMED_TOOL_CALL;
use crate::providers::{ChatMessage, LlmEvent, ProviderError, Role};
use serde_json::json;

fn repo_agents() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-config/agents")
}

const TIER1: &str = "\
kind: llm
name: tier1
greeting: Hello, this is support.
instructions: You help {caller}, who dialed {did}. Plan {plan}.
llm:
  - kind: openai
    model: m
tools: [lookup, transfer, end_call, send_dtmf, confirm_appointment, warm_transfer]
http_tools:
  lookup:
    method: GET
    url: http://localhost:1/orders/{id}
    description: Look up an order.
    parameters:
      type: object
      properties:
        id: { type: string }
      required: [id]
handoffs:
  - to: tier2
    when: { intent: billing }
escalations:
  - to: { queue: support }
    when: { human_request: true }
  - to: { number: '+15550100', trunk: main }
    when: { failures: 2 }
  - to: { sip: 'sip:boss@x.example' }
    when: { sentiment: negative }
  - to: { agent: desk }
    when: { keywords: [dentist] }
  - to: { queue: orders }
    when: { tool: lookup }
max_failures: 3
fallback_phrase: Sorry, say that again?
";

const TIER2: &str = "\
kind: llm
name: tier2
greeting: Billing here.
instructions: You do billing.
llm:
  - kind: anthropic
    model: c
";

const FLOW: &str = "\
name: desk
greeting: Hi.
nodes:
  start:
    say: Bye.
    end: true
";

fn sources(tier1: &str) -> Vec<(PathBuf, String)> {
    vec![
        (PathBuf::from("a/tier1.yaml"), tier1.to_string()),
        (PathBuf::from("a/tier2.yaml"), TIER2.to_string()),
        (PathBuf::from("a/desk.yaml"), FLOW.to_string()),
    ]
}

fn entry() -> Vec<String> {
    vec!["tier1".into()]
}

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or_else(|| panic!("no `{needle}`"))
}

/// Loads the graph with `tier1` replaced by `bad`; the error must name
/// `file` at the line of `at` (in `bad`) and mention `words`.
fn rejects(bad: &str, at: &str, words: &str) {
    let e = graph_from_sources(Path::new("a"), &sources(bad), &entry()).unwrap_err();
    assert_eq!(e.file, PathBuf::from("a/tier1.yaml"), "{e}");
    assert_eq!(e.line, line_of(bad, at), "{e}");
    assert!(e.message.contains(words), "{e}");
}

#[test]
fn example_files_load_as_a_graph_and_flow_loading_is_unchanged() {
    let entry = vec!["dental-front-desk".to_string(), "tier1-llm".to_string()];
    let g = load_graph(&repo_agents(), &entry).unwrap_or_else(|e| panic!("{e}"));
    assert!(g.flow_agent("dental-front-desk").is_some());
    let t1 = g.llm_agent("tier1-llm").unwrap();
    assert!(g.llm_agent("tier2-billing").is_some(), "reached by a handoff");
    assert_eq!(t1.llm.len(), 2);
    assert!(t1.has_tool("lookup_order") && t1.has_tool("set_intent"));
    assert_eq!(t1.filler_after, Duration::from_millis(1200));
    // the flow loader skips LLM files and still loads the flow agent alone
    let flows = load_agents(&repo_agents()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(flows.keys().collect::<Vec<_>>(), vec!["dental-front-desk"]);
    // without the flow agent as an entry it is unreachable
    let e = load_graph(&repo_agents(), &["tier1-llm".to_string()]).unwrap_err();
    assert!(e.file.ends_with("dental-front-desk.yaml") && e.message.contains("unreachable"), "{e}");
    assert_eq!(e.line, 5, "the `name:` line: {e}");
}

#[test]
fn graph_from_sources_accepts_the_fixture() {
    let g = graph_from_sources(Path::new("a"), &sources(TIER1), &entry()).unwrap_or_else(|e| panic!("{e}"));
    assert!(g.contains("tier1") && g.contains("tier2") && g.contains("desk"));
}

#[test]
fn unknown_agent_in_handoff_names_file_and_line() {
    let bad = TIER1.replace("  - to: tier2\n", "  - to: tier3\n");
    rejects(&bad, "- to: tier3", "unknown agent `tier3`");
}

#[test]
fn unknown_agent_in_escalation_names_file_and_line() {
    let bad = TIER1.replace("{ agent: desk }", "{ agent: nobody }");
    rejects(&bad, "agent: nobody", "unknown agent `nobody`");
}

#[test]
fn handoff_to_a_flow_agent_is_refused() {
    let bad = TIER1.replace("  - to: tier2\n", "  - to: desk\n");
    rejects(&bad, "- to: desk", "flow agent");
}

#[test]
fn unknown_tool_names_file_and_line() {
    let bad = TIER1.replace("tools: [lookup,", "tools: [lookup, teleport,");
    rejects(&bad, "tools:", "unknown tool `teleport`");
}

#[test]
fn http_tool_without_schema_names_file_and_line() {
    let start = TIER1.find("    parameters:").unwrap();
    let end = TIER1.find("handoffs:").unwrap();
    let bad = format!("{}{}", &TIER1[..start], &TIER1[end..]);
    rejects(&bad, "  lookup:", "no `parameters` JSON schema");
}

#[test]
fn http_tool_url_placeholder_must_be_a_parameter() {
    let bad = TIER1.replace("orders/{id}", "orders/{order}");
    rejects(&bad, "url:", "`{order}` is not a property");
}

#[test]
fn unreachable_agent_names_its_file_and_name_line() {
    let e = graph_from_sources(Path::new("a"), &sources(TIER1), &["tier2".to_string(), "desk".to_string()]).unwrap_err();
    assert!(e.message.contains("unreachable"), "{e}");
    assert_eq!((e.file.to_str().unwrap(), e.line), ("a/tier1.yaml", 2), "{e}");
    // an agent nobody reaches, next to a reachable graph
    let mut s = sources(TIER1);
    s.push((PathBuf::from("a/lonely.yaml"), TIER2.replace("name: tier2", "name: lonely")));
    let e = graph_from_sources(Path::new("a"), &s, &entry()).unwrap_err();
    assert_eq!((e.file.to_str().unwrap(), e.line), ("a/lonely.yaml", 2), "{e}");
    // unknown entry
    let e = graph_from_sources(Path::new("a"), &sources(TIER1), &["ghost".to_string()]).unwrap_err();
    assert_eq!((e.file.to_str().unwrap(), e.line), ("a", 0), "{e}");
}

#[test]
fn bad_llm_kind_and_config_name_the_line() {
    let bad = TIER1.replace("  - kind: openai", "  - kind: gpt");
    rejects(&bad, "kind: gpt", "unknown variant `gpt`");
    let bad = TIER1.replace("    model: m", "    model: ''");
    rejects(&bad, "- kind: openai", "model is empty");
    let bad = TIER1.replace("    model: m\n", "    model: m\n    base_url: ftp://x\n");
    rejects(&bad, "- kind: openai", "base_url");
}

#[test]
fn other_llm_agent_mistakes_name_the_line() {
    rejects(&TIER1.replace("{ tool: lookup }", "{ tool: end_calls }"), "tool: end_calls", "not one of this agent's");
    rejects(&TIER1.replace("{ failures: 2 }", "{ failures: 0 }"), "failures: 0", "at least 1");
    rejects(&TIER1.replace("greeting:", "stt: elevenlabs\ngreeting:"), "stt:", "no STT");
    rejects(&TIER1.replace("greeting:", "colour: red\ngreeting:"), "colour:", "unknown field `colour`");
    rejects(&TIER1.replace("{ queue: support }", "{ queue: support, sip: 'sip:a@b' }"), "queue: support", "exactly one");
    let dup = vec![
        (PathBuf::from("a/tier1.yaml"), TIER1.to_string()),
        (PathBuf::from("a/tier2.yaml"), TIER2.to_string()),
        (PathBuf::from("a/x.yaml"), TIER2.to_string()),
    ];
    let e = graph_from_sources(Path::new("a"), &dup, &entry()).unwrap_err();
    assert_eq!((e.file.to_str().unwrap(), e.line), ("a/x.yaml", 2), "{e}");
    assert!(e.message.contains("already defined"), "{e}");
}

// ------------------------------------------------------------ transitions

fn tier1() -> Arc<LlmAgentDef> {
    Arc::new(LlmAgentDef::from_yaml(TIER1, Path::new("tier1.yaml")).unwrap_or_else(|e| panic!("{e}")))
}

fn tier2() -> Arc<LlmAgentDef> {
    Arc::new(LlmAgentDef::from_yaml(TIER2, Path::new("tier2.yaml")).unwrap_or_else(|e| panic!("{e}")))
}

fn esc(target: EscalationTarget, reason: &str) -> Transition {
    Transition::Escalate { target, reason: reason.into() }
}

#[test]
fn transition_table() {
    let state = |failures| GraphState { agent: tier1(), failures };
    let utter = |t: &str| GraphEvent::Utterance(t.into());
    let support = EscalationTarget::Queue("support".into());
    let number = EscalationTarget::Number { number: "+15550100".into(), trunk: Some("main".into()) };
    let table: Vec<(GraphState, GraphEvent, Transition)> = vec![
        (state(0), GraphEvent::IntentRecognized("billing".into()), Transition::Handoff { to_agent: "tier2".into() }),
        (state(0), GraphEvent::IntentRecognized("sales".into()), Transition::Stay),
        (state(0), GraphEvent::HumanRequested, esc(support.clone(), "human-request")),
        (state(0), utter("can I talk to a human please"), esc(support.clone(), "human-request")),
        (state(0), utter("my order is late"), Transition::Stay),
        (state(1), GraphEvent::Failure, Transition::Stay),
        (state(2), GraphEvent::Failure, esc(number.clone(), "failures:2")),
        (state(5), GraphEvent::Failure, esc(number, "failures:2")),
        (state(0), utter("this is ridiculous, terrible service"), esc(EscalationTarget::SipUri("sip:boss@x.example".into()), "sentiment:negative")),
        (state(0), utter("that's not bad"), Transition::Stay),
        (state(0), utter("I need my dentist"), esc(EscalationTarget::Agent("desk".into()), "keyword:dentist")),
        (
            state(0),
            GraphEvent::ToolCalled { name: "lookup".into(), args: json!({"id": "1"}) },
            esc(EscalationTarget::Queue("orders".into()), "tool:lookup"),
        ),
        (state(0), GraphEvent::ToolCalled { name: "end_call".into(), args: json!({}) }, Transition::Stay),
        // the failure count alone does not fire on other events
        (state(9), utter("my order is late"), Transition::Stay),
    ];
    for (s, ev, want) in table {
        assert_eq!(next(&s, &ev), want, "{ev:?} with {} failures", s.failures);
    }
    // escalations are tried before handoffs, in file order
    let s = GraphState { agent: tier2(), failures: 10 };
    assert_eq!(next(&s, &GraphEvent::HumanRequested), Transition::Stay, "no edges");
}

// ------------------------------------------------------------ the LLM agent

fn text(t: &str) -> Result<LlmEvent, ProviderError> {
    Ok(LlmEvent::Text(t.into()))
}

fn call(id: &str, name: &str, args: serde_json::Value) -> Result<LlmEvent, ProviderError> {
    Ok(LlmEvent::ToolCall { id: id.into(), name: name.into(), arguments: args.to_string() })
}

fn done() -> Result<LlmEvent, ProviderError> {
    Ok(LlmEvent::Done)
}

fn feed(agent: &mut LlmAgent, events: Vec<Result<LlmEvent, ProviderError>>) -> Vec<AgentStep> {
    events.into_iter().flat_map(|e| agent.on_llm_event(e)).collect()
}

fn says(steps: &[AgentStep]) -> Vec<&str> {
    steps.iter().filter_map(|s| if let AgentStep::Say(t) = s { Some(t.as_str()) } else { None }).collect()
}

fn started() -> LlmAgent {
    let ctx = CallContext { caller: Some("+15551234".into()), did: Some("+15559999".into()), ..Default::default() };
    let mut a = LlmAgent::new(tier1(), Some(&ctx));
    let g = a.greeting();
    assert_eq!(g, vec![AgentStep::Say("Hello, this is support.".into()), AgentStep::Done]);
    a
}

#[test]
fn text_streams_as_one_say_per_sentence() {
    let mut a = started();
    let steps = a.on_caller_turn("Where is my order?");
    let [AgentStep::Request(req)] = steps.as_slice() else { panic!("{steps:?}") };
    assert_eq!(req.messages[0].role, Role::System);
    assert!(req.messages[0].content.starts_with("You help +15551234, who dialed +15559999. Plan ."));
    assert_eq!(req.messages.last().unwrap(), &ChatMessage::user("Where is my order?"));
    assert!(req.tools.iter().any(|t| t.name == "set_intent") && req.tools.iter().any(|t| t.name == "lookup"));
    assert_eq!(a.on_llm_event(text("Sure")), vec![]);
    assert_eq!(a.on_llm_event(text(", I can help. What")), vec![AgentStep::Say("Sure, I can help.".into())]);
    assert_eq!(a.on_llm_event(text(" is the number?")), vec![]);
    assert_eq!(a.on_llm_event(done()), vec![AgentStep::Say("What is the number?".into()), AgentStep::Done]);
    assert_eq!(a.messages().last().unwrap(), &ChatMessage::assistant("Sure, I can help. What is the number?"));
}

#[test]
fn a_tool_call_runs_then_its_result_asks_again() {
    let mut a = started();
    a.on_caller_turn("Order 42 please");
    let steps = feed(&mut a, vec![text("Let me look. "), call("c1", "lookup", json!({"id": "42"})), done()]);
    // `lookup` is also a `tool:` escalation edge in the fixture: use a copy without it
    assert!(matches!(steps.last(), Some(AgentStep::Escalate { .. })), "{steps:?}");

    let def = Arc::new(
        LlmAgentDef::from_yaml(&TIER1.replace("{ tool: lookup }", "{ tool: warm_transfer }"), Path::new("t.yaml")).unwrap(),
    );
    let mut a = LlmAgent::new(def, None);
    a.on_caller_turn("Order 42 please");
    let steps = feed(&mut a, vec![text("Let me look. "), call("c1", "lookup", json!({"id": "42"})), done()]);
    assert_eq!(
        steps,
        vec![
            AgentStep::Say("Let me look.".into()),
            AgentStep::RunTool { id: "c1".into(), name: "lookup".into(), arguments: json!({"id": "42"}) }
        ]
    );
    assert_eq!(a.on_tool_slow(), vec![AgentStep::Filler("One moment while I check that.".into())]);
    assert_eq!(a.on_tool_slow(), vec![], "one filler per turn");
    assert_eq!(a.filler_after(), Duration::from_millis(1200));
    assert_eq!(a.on_tool_result("other", Ok(json!({}))), vec![], "unknown id");
    let steps = a.on_tool_result("c1", Ok(json!({"status": "shipped"})));
    let [AgentStep::Request(req)] = steps.as_slice() else { panic!("{steps:?}") };
    let n = req.messages.len();
    let assistant = &req.messages[n - 2];
    assert_eq!(assistant.role, Role::Assistant);
    assert_eq!(assistant.content, "Let me look.");
    assert_eq!(assistant.tool_calls[0].id, "c1");
    assert_eq!(req.messages[n - 1], ChatMessage::tool_result("c1", r#"{"status":"shipped"}"#));
}

#[test]
fn bad_tool_arguments_go_back_to_the_model() {
    let mut a = started();
    a.on_caller_turn("press 5");
    let steps = feed(&mut a, vec![call("d1", "send_dtmf", json!({"digits": "5x"})), done()]);
    let [AgentStep::Request(req)] = steps.as_slice() else { panic!("{steps:?}") };
    let last = req.messages.last().unwrap();
    assert_eq!(last.tool_call_id.as_deref(), Some("d1"));
    assert!(last.content.contains("does not match"), "{}", last.content);
    let steps = feed(&mut a, vec![call("d2", "send_dtmf", json!({"digits": "5"})), done()]);
    assert!(matches!(steps.as_slice(), [AgentStep::SendDtmf(d), AgentStep::Request(_)] if d == "5"), "{steps:?}");
}

#[test]
fn end_call_hangs_up_and_ignores_the_rest() {
    let mut a = started();
    a.on_caller_turn("that's all, bye");
    let steps = feed(&mut a, vec![text("Goodbye!"), call("e1", "end_call", json!({"reason": "caller done"})), done()]);
    assert_eq!(steps, vec![AgentStep::Say("Goodbye!".into()), AgentStep::Hangup { reason: "caller done".into() }]);
    assert!(a.finished());
    assert_eq!(a.on_caller_turn("wait"), vec![]);
}

#[test]
fn transfer_tool_transfers_with_a_summary_or_follows_the_graph() {
    let mut a = started();
    a.on_caller_turn("My router keeps rebooting.");
    feed(&mut a, vec![text("Have you tried unplugging it?"), done()]);
    a.on_caller_turn("Yes, twice.");
    let steps =
        feed(&mut a, vec![call("t1", "transfer", json!({"target": "sip:tech@x.example", "reason": "hardware"})), done()]);
    let [AgentStep::Transfer { target, warm: false, summary }] = steps.as_slice() else { panic!("{steps:?}") };
    assert_eq!(target, "sip:tech@x.example");
    assert!(summary.contains("Caller: My router keeps rebooting.") && summary.ends_with("Caller: Yes, twice."), "{summary}");
    assert_eq!(a.context().escalation_reason.as_deref(), Some("hardware"));

    // no target: the graph's human_request edge decides
    let mut a = started();
    a.on_caller_turn("Transfer me.");
    let steps = feed(&mut a, vec![call("t2", "transfer", json!({"reason": "asked"})), done()]);
    assert_eq!(steps.last(), Some(&AgentStep::Escalate { target: EscalationTarget::Queue("support".into()), reason: "human-request".into() }));
    assert_eq!(says(&steps), vec!["Let me connect you with someone who can help.", "One moment please."]);

    // warm transfer carries the model's summary
    let mut a = started();
    a.on_caller_turn("Get me sales.");
    let steps = feed(&mut a, vec![call("w", "warm_transfer", json!({"target": "+15550111", "summary": "wants sales"})), done()]);
    assert_eq!(steps, vec![AgentStep::Transfer { target: "+15550111".into(), warm: true, summary: "wants sales".into() }]);
}

#[test]
fn malformed_tool_call_is_reasked_once_then_the_fallback_phrase() {
    let mut a = started();
    a.on_caller_turn("Check order 7");
    let bad = || Err(ProviderError::Fatal(format!("{MALFORMED_TOOL_CALL} c9 (lookup): arguments are not valid JSON")));
    let steps = a.on_llm_event(bad());
    let [AgentStep::Request(req)] = steps.as_slice() else { panic!("{steps:?}") };
    let last = req.messages.last().unwrap();
    assert_eq!(last.role, Role::User);
    assert!(last.content.contains("could not be run"), "{}", last.content);
    let steps = a.on_llm_event(bad());
    assert_eq!(steps, vec![AgentStep::Say("Sorry, say that again?".into()), AgentStep::Done]);
    assert_eq!(a.failures(), 1);
    // a new turn may re-ask again
    a.on_caller_turn("Order 7");
    assert!(matches!(a.on_llm_event(bad()).as_slice(), [AgentStep::Request(_)]));
}

#[test]
fn provider_errors_say_the_fallback_and_escalate_after_n_failures() {
    let mut a = started();
    a.on_caller_turn("Hello?");
    let steps = feed(&mut a, vec![text("Let me "), Err(ProviderError::Retryable("reset".into()))]);
    assert_eq!(steps, vec![AgentStep::Say("Let me".into()), AgentStep::Say("Sorry, say that again?".into()), AgentStep::Done]);
    assert_eq!(a.failures(), 1);
    a.on_caller_turn("Hello??");
    let steps = a.on_llm_event(Err(ProviderError::Auth("401".into())));
    assert_eq!(
        steps.last(),
        Some(&AgentStep::Escalate {
            target: EscalationTarget::Number { number: "+15550100".into(), trunk: Some("main".into()) },
            reason: "failures:2".into()
        })
    );
    assert_eq!(a.context().escalation_reason.as_deref(), Some("failures:2"));
    // a barge-in cancellation is not a failure; a good reply resets the count
    let mut a = started();
    a.on_caller_turn("Hi");
    assert_eq!(a.on_llm_event(Err(ProviderError::Cancelled)), vec![]);
    assert_eq!(a.failures(), 0);
    a.on_llm_event(Err(ProviderError::Fatal("boom".into())));
    a.on_caller_turn("Hi");
    feed(&mut a, vec![text("Hello."), done()]);
    assert_eq!(a.failures(), 0);
    // without a failures edge, max_failures hangs up
    let mut b = LlmAgent::new(tier2(), None);
    for i in 1..=3 {
        b.on_caller_turn("hi");
        let steps = b.on_llm_event(Err(ProviderError::Fatal("x".into())));
        let want_hangup = i == 3;
        assert_eq!(steps.last() == Some(&AgentStep::Hangup { reason: "llm-failures".into() }), want_hangup, "{steps:?}");
    }
}

#[test]
fn caller_words_escalate_before_the_model() {
    let mut a = started();
    let steps = a.on_caller_turn("I want to speak to a representative");
    assert_eq!(steps.last(), Some(&AgentStep::Escalate { target: EscalationTarget::Queue("support".into()), reason: "human-request".into() }));
    assert!(a.finished());
    assert_eq!(a.context().escalation_reason.as_deref(), Some("human-request"));
    assert_eq!(a.on_caller_turn("   "), vec![]);
}

#[test]
fn handoff_keeps_the_conversation() {
    let mut a = started();
    a.on_caller_turn("I was charged twice on my bill.");
    let steps = feed(&mut a, vec![call("i1", "set_intent", json!({"intent": "billing"})), done()]);
    assert_eq!(steps, vec![AgentStep::Handoff { to: "tier2".into() }]);
    let before: Vec<ChatMessage> = a.messages().to_vec();
    let mut b = a.handoff(tier2());
    assert_eq!(b.messages(), before.as_slice(), "messages kept");
    assert!(b.system_prompt().starts_with("You do billing."));
    assert!(b.system_prompt().contains("handled by the agent `tier1`"));
    let steps = b.greeting();
    let [AgentStep::Say(hi), AgentStep::Request(req)] = steps.as_slice() else { panic!("{steps:?}") };
    assert_eq!(hi, "Billing here.");
    assert_eq!(req.messages[0].content, b.system_prompt());
    assert!(req.messages.iter().any(|m| m.content == "I was charged twice on my bill."));
    assert_eq!(req.messages.last().unwrap().tool_call_id.as_deref(), Some("i1"), "the set_intent call is answered");
    let ctx = b.context();
    assert_eq!(ctx.intent.as_deref(), Some("billing"));
    assert_eq!(ctx.previous_agents, vec!["tier1".to_string(), "tier2".to_string()]);
    assert_eq!(ctx.caller.as_deref(), Some("+15551234"));
}

#[test]
fn on_heard_trims_the_last_assistant_message() {
    let mut a = started();
    a.on_caller_turn("What are your plans?");
    feed(&mut a, vec![text("We have three plans. Basic is ten dollars. Pro is twenty."), done()]);
    a.on_heard("We have three plans. Basic is");
    assert_eq!(a.messages().last().unwrap(), &ChatMessage::assistant("We have three plans. Basic is"));
    // interrupted while streaming: only what was heard is recorded
    a.on_caller_turn("And pro?");
    feed(&mut a, vec![text("Pro is twenty dollars. It includes")]);
    a.on_heard("Pro is twenty");
    assert_eq!(a.messages().last().unwrap(), &ChatMessage::assistant("Pro is twenty"));
    // heard nothing: the message goes
    a.on_caller_turn("Thanks");
    feed(&mut a, vec![text("You're welcome."), done()]);
    a.on_heard("");
    assert_eq!(a.messages().last().unwrap(), &ChatMessage::user("Thanks"));
}

#[test]
fn a_call_with_context_resumes_in_greeting_and_prompt() {
    let ctx = CallContext {
        caller: Some("+15551234".into()),
        intent: Some("book_visit".into()),
        slots: [("plan".to_string(), "gold".to_string())].into(),
        summary: Some("Caller wants a visit on Tuesday.".into()),
        previous_agents: vec!["desk".into()],
        ..Default::default()
    };
    let mut a = LlmAgent::new(tier1(), Some(&ctx));
    let steps = a.greeting();
    assert_eq!(
        says(&steps),
        vec!["Hello, this is support.", "I see you were calling about book visit.", "Let's pick up where you left off."]
    );
    let p = a.system_prompt();
    assert!(p.contains("Plan gold."), "{p}");
    assert!(p.contains("the caller wants: book_visit") && p.contains("Caller wants a visit on Tuesday."), "{p}");
    assert_eq!(a.context().previous_agents, vec!["desk".to_string(), "tier1".to_string()]);
}

#[test]
fn confirm_appointment_runs_as_a_tool_and_fills_slots() {
    let mut a = started();
    a.on_caller_turn("Book me Tuesday at 2, Anna");
    let args = json!({"date": "2025-03-04", "time": "14:00", "name": "Anna"});
    let steps = feed(&mut a, vec![call("a1", "confirm_appointment", args.clone()), done()]);
    assert_eq!(steps, vec![AgentStep::RunTool { id: "a1".into(), name: "confirm_appointment".into(), arguments: args.clone() }]);
    let result = crate::agent::tools::confirm_appointment(&args);
    assert!(matches!(a.on_tool_result("a1", result).as_slice(), [AgentStep::Request(_)]));
    assert_eq!(a.context().slots.get("time").map(String::as_str), Some("14:00"));
    // a caller who speaks while a tool runs cancels it
    a.on_caller_turn("again");
    feed(&mut a, vec![call("a2", "confirm_appointment", args), done()]);
    let req = a.on_user_turn("never mind");
    let cancelled = &req.messages[req.messages.len() - 2];
    assert_eq!(cancelled.tool_call_id.as_deref(), Some("a2"));
    assert_eq!(a.on_tool_result("a2", Ok(json!({}))), vec![], "stale");
}

#[test]
fn module_doc_llm_example_is_a_valid_agent() {
    let src = include_str!("mod.rs");
    let doc: Vec<&str> =
        src.lines().filter_map(|l| l.strip_prefix("//!")).map(|l| l.strip_prefix(' ').unwrap_or(l)).collect();
    let start = doc.iter().position(|l| *l == "kind: llm                        # required for an LLM agent (flow files: none, or `kind: flow`)");
    let yaml: String =
        doc[start.expect("example not found")..].iter().take_while(|l| **l != "```").map(|l| format!("{l}\n")).collect();
    let billing = TIER2.replace("name: tier2", "name: billing");
    let s = vec![(PathBuf::from("d/support.yaml"), yaml), (PathBuf::from("d/billing.yaml"), billing)];
    let g = graph_from_sources(Path::new("d"), &s, &["support".to_string()]).unwrap_or_else(|e| panic!("{e}"));
    let def = g.llm_agent("support").unwrap();
    assert_eq!(def.escalations.len(), 5);
    assert_eq!(def.http_tool("lookup_order").unwrap().timeout, Duration::from_millis(3000));
}

#[test]
fn a_whispered_instruction_stays_in_the_system_prompt_for_the_rest_of_the_call() {
    let mut a = LlmAgent::new(tier1(), None);
    a.add_instruction("  Offer the caller a 10% discount.  ");
    a.add_instruction(" ");
    assert_eq!(a.instructions(), ["Offer the caller a 10% discount."]);
    let req = a.on_user_turn("hello");
    assert_eq!(req.messages[0].role, Role::System);
    assert!(req.messages[0].content.ends_with("\n\nSupervisor instruction: Offer the caller a 10% discount."), "{:?}", req.messages[0]);
    assert!(!a.messages().iter().any(|m| m.content.contains("Supervisor")), "not a message of the conversation");
    let mut b = a.handoff(tier2());
    let req = b.on_user_turn("still there?");
    assert!(req.messages[0].content.contains("Supervisor instruction: Offer the caller a 10% discount."), "kept across a handoff");
}
