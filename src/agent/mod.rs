//! Agents: what skald says and does in a conversation. The offline default
//! is a flow agent defined in YAML (`sip-config/agents/*.yaml`): nodes with
//! prompts, intents matched on the caller's words, slots, templated replies,
//! transitions, re-prompts. Transitions are pure functions (no IO, no clock:
//! today's date comes in as an argument). CONTRACT STUB.

pub mod flow;
