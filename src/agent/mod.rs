//! Agents: what skald says and does in a conversation.
//!
//! This module owns the offline default agent: a **flow agent** defined in
//! YAML (`sip-config/agents/*.yaml`, one agent per file; adding one needs no
//! code change). An agent is a graph of nodes; each node says something and
//! listens for intents matched on the caller's words; intents collect typed
//! slots over as many turns as needed, reply through templates and move to
//! the next node; re-prompts handle no-match and silence, with a limit.
//! Decisions are pure values ([`flow::AgentAction`]): no IO, no clock (today's
//! date comes in as an argument); the call actor carries them out.
//!
//! Beside flow agents, a file with `kind: llm` defines an **LLM agent**
//! ([`llm_agent::LlmAgent`]): a language model with instructions, tools and
//! a fallback list of providers, in a **graph** of agents ([`graph`]):
//! handoffs between LLM agents inside one call (the conversation kept) and
//! escalations to an agent, a queue, a SIP URI or a number through a trunk,
//! each triggered by a condition ([`escalation`]). Graph transitions are a
//! pure function ([`graph::next`]); the LLM agent is sans-IO too (events in,
//! [`llm_agent::AgentStep`]s out); the only IO is the HTTP tool executor in
//! [`tools`].
//!
//! Submodules: [`flow`] (the public API and the turn logic); [`context`]
//! (the call context handed between agents and its SIP header codec); private `config`
//! (schema, loading, validation with file:line errors), `slots` (typed slot
//! extraction and spoken rendering), `template` (`{slot}` templates), `text`
//! (transcript normalization and phrase matching).
//!
//! # The agent file
//! A full example (the shipped `sip-config/agents/dental-front-desk.yaml` is
//! a longer, realistic one):
//!
//! ```yaml
//! name: pizza-line                 # required; unique across the directory
//! language: en                     # default en
//! start: start                     # first node; default `start`
//! greeting: Thanks for calling Tony's Pizza.   # said once, before the start node's say
//! silence_timeout_s: 6             # seconds of caller silence before on_silence; default 6
//! max_reprompts: 2                 # consecutive re-prompts before giving up; default 2
//! earliest_hour: 8                 # bare hours below this are PM ("at two" = 14:00); default 8
//! fallback: Sorry, I didn't catch that.          # no-match re-prompt, followed by the current question
//! silence_prompt: Are you still there?           # silence re-prompt, followed by the current question
//! goodbye: Thanks for calling. Goodbye!          # said by a `hangup` intent without reply
//! give_up:
//!   no_input: I can't hear you. Goodbye.         # then Hangup{reason: no-input}
//!   no_match: Sorry I couldn't help. Goodbye.    # then Hangup{reason: no-match}
//! transfer:                        # for `action: transfer` intents
//!   target: sip:staff@pizza.example
//!   say: Let me connect you with someone.        # said before Transfer{target}
//!
//! slots:                           # typed values collected from the caller
//!   size:
//!     type: enum                   # date | time | number | yes_no | name | enum
//!     values:                      # enum only: canonical value: [synonyms]
//!       small: [little]
//!       large: [big, family size]
//!     ask: Small or large?         # asked when missing (a template)
//!     retry: Sorry, small or large?   # optional: asked after a turn that did not fill it
//!   day: { type: date, ask: For which day? }
//!   time: { type: time, ask: "What time on {day}?" }   # quote templates inside { } or starting with {
//!   count: { type: number, ask: How many pizzas? }
//!   name: { type: name, ask: What name is the order under? }
//!
//! global_intents:                  # tried first, in every node
//!   - name: bye
//!     phrases: [bye, goodbye, hang up]
//!     action: hangup               # hangup | transfer | repeat
//!   - name: human
//!     phrases: [person, someone, manager]
//!     action: transfer             # target: the top-level transfer.target, or `target:` here
//!   - name: repeat
//!     phrases: [repeat, say that again]
//!     action: repeat               # says the last agent turn again
//!   - name: hours
//!     phrases: [hours, when are you open]
//!     reply: We're open 11 AM to 10 PM every day.   # no next: stays, then asks the current question again
//!
//! nodes:
//!   start:
//!     say: How can I help?         # said on entry; also "the current question" for re-prompts
//!     intents:
//!       - name: order
//!         phrases: [order, pizza, i want a pizza]        # all words in order; most words wins
//!         patterns: ['\b(\d+) (small|large) pizzas?\b']  # regex on the normalized text
//!         slots: [count, size, day, time, name]          # collected in this order
//!         reuse: [name]            # keep a value collected earlier in the call (others start empty)
//!         ack: Sure.               # said when recognized
//!         reply: Got it.           # said once all slots are in
//!         next: confirm            # node entered on completion; none = stay
//!     on_no_match:
//!       say: I can take an order or tell you our hours. What would you like?
//!       next: staff                # optional: where to go once re-prompts are used up
//!     on_silence:
//!       say: Hello? How can I help?
//!   confirm:
//!     say: That's {count} {size} pizzas for {day} at {time}, under {name}. Right?
//!     intents:
//!       - { name: yes, confirm: yes, next: done }        # confirm: matches a yes/no answer
//!       - name: no
//!         confirm: no
//!         reset: [day, time]       # forget these slots when matched
//!         slots: [day, time]
//!         next: confirm
//!   more:
//!     say: Anything else?
//!     inherit: start               # also accepts start's intents (after its own)
//!     intents:
//!       - { name: no, confirm: no, next: done }
//!   done:
//!     say: Your order is in. Goodbye!
//!     end: true                    # hang up (reason `completed`) after say
//!   staff:
//!     say: Let me get someone to help.
//!     transfer: sip:staff@pizza.example   # transfer after say
//! ```
//!
//! ## Matching
//! Transcripts, phrases and synonyms are normalized alike: lowercase, no
//! punctuation, apostrophes dropped (`I'd` → `id`), number words as digits
//! (`twenty five` → `25`, `fifth` → `5th`, `two thirty` → `2 30`). A phrase
//! matches when all its words occur in order (words of 4+ letters also match
//! as prefixes: `book` ~ `booking`). Patterns are regexes over the normalized
//! text (write them lowercase, without punctuation). The intent with the most
//! matched words wins; ties go to the one written first.
//!
//! ## Slots
//! Normalized values: `date` → `YYYY-MM-DD` (today, tomorrow, the day after
//! tomorrow, in 3 days, Tuesday / next Tuesday, March 5th, the 5th of March,
//! the 5th, US `3/5`), `time` → `HH:MM` (10 am, 2:30 pm, ten thirty, half
//! past two, quarter to three, noon, 2 in the afternoon; a bare hour below
//! `earliest_hour` is PM), `number` → digits, `yes_no` → `yes`/`no` (yeah,
//! sure, correct, that's right / nope, not, that's wrong), `name` →
//! capitalized (after "my name is" / "this is", or a bare answer when asked),
//! `enum` → the canonical value. Bare answers (`2`, `the 5th`, `Anna Smith`,
//! `morning`) count only for the slot just asked.
//!
//! ## Templates
//! `{slot}` (= `{slot|spoken}`) says a value naturally: `Tuesday, December
//! 1st`, `2:30 PM`, `noon`; `{slot|raw}` gives the normalized value; `{{` and
//! `}}` are literal braces. A slot not collected yet renders as nothing.
//!
//! ## Validation
//! Load errors name the file, line and field: YAML syntax, unknown keys,
//! wrong types, an unknown slot `type`, a `next` / `inherit` /
//! `on_no_match.next` / `start` naming no node, an intent slot not defined
//! under `slots`, a pattern that is not a valid regex, a template naming an
//! unknown slot or filter, an intent that can never match, a transfer with no
//! target, a node with no way out (no intent with `next` or a hangup/transfer
//! action, no `on_no_match.next`, not `end`, no `transfer`).
//!
//! # LLM agent files
//! ```yaml
//! kind: llm                        # required for an LLM agent (flow files: none, or `kind: flow`)
//! name: support                    # required; unique across the directory (both kinds)
//! language: en                     # default en
//! greeting: Thanks for calling Acme. How can I help?
//! instructions: |                  # the system prompt; {caller}, {did}, {intent}, {summary},
//!   You are Acme's support agent. The caller is {caller}.   # {tier} and context slots
//! llm:                             # fallback list: tried in order (providers::llm::LlmConfig)
//!   - { kind: openai, name: ollama, base_url: "http://localhost:11434/v1", model: llama3.2 }
//!   - { kind: anthropic, model: claude-sonnet-4-5, api_key_env: ANTHROPIC_API_KEY }
//! stt: local                       # optional: local | deepgram
//! tts: local                       # optional: local | elevenlabs | openai
//! voice: en_US-joe-medium          # optional TTS voice
//! tools: [lookup_order, transfer, end_call]   # built-ins: transfer, warm_transfer, end_call,
//!                                  # send_dtmf, confirm_appointment, detect_voicemail
//! http_tools:                      # each must also be listed under `tools`
//!   lookup_order:
//!     method: GET                  # GET | POST | PUT | PATCH | DELETE
//!     url: "https://orders.example/api/{order_id}"   # {arg}: a property of `parameters`
//!     description: Look up an order by its number.
//!     parameters:                  # required: the JSON schema of the arguments
//!       type: object
//!       properties:
//!         order_id: { type: string }
//!       required: [order_id]
//!     timeout_ms: 3000             # default 5000
//! filler: One moment while I check that.   # said when a tool is slow
//! filler_after_ms: 1200            # default 1200
//! max_failures: 3                  # consecutive failures before hanging up (default 3)
//! fallback_phrase: Sorry, could you say that again?   # when the model cannot answer
//! escalation_say: Let me connect you with someone.    # before an escalation the agent decides
//! handoffs:                        # to another LLM agent; the conversation is kept
//!   - to: billing
//!     when: { intent: billing }    # the model reports intents with the `set_intent` tool
//! escalations:                     # tried before handoffs, in order; first match wins
//!   - to: { queue: support }       # or { agent: name } | { sip: "sip:…" } | { number: "+1…", trunk: main }
//!     when: { human_request: true }   # "can I talk to a person / agent / representative"
//!   - to: { sip: "sip:supervisor@acme.example" }
//!     when: { sentiment: negative }
//!   - to: { number: "+15550100", trunk: main }
//!     when: { failures: 2 }
//!   - to: { queue: retention }
//!     when: { keywords: [cancel my account, lawyer] }
//!   - to: { queue: support }
//!     when: { tool: transfer }     # the model called `transfer` (without a target)
//! ```
//!
//! [`graph::load_graph`] loads a directory of both kinds and refuses, with
//! file and line, an unknown agent in a handoff or escalation, a handoff to
//! a flow agent, an unknown tool, an HTTP tool without a `parameters`
//! schema, a bad `llm` entry, and an agent that no entry agent (those the
//! routes name) reaches. [`flow::load_agents`] skips `kind: llm` files.

pub mod context;
pub mod escalation;
pub mod flow;
pub mod graph;
pub mod llm_agent;
pub mod tools;

pub(crate) mod config;
mod slots;
mod template;
mod text;

#[cfg(test)]
mod tests;
