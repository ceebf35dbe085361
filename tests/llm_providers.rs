//! The cloud LLM providers against local servers that speak each provider's
//! documented wire protocol: OpenAI chat completions (SSE `data:` chunks of
//! `chat.completion.chunk` objects, tool-call deltas keyed by `index`,
//! `data: [DONE]`) and Anthropic Messages (named SSE events `message_start` …
//! `message_stop`, `ping`, `error`). The servers record every request so the
//! tests can check what was sent, and can answer with error statuses, stall,
//! trickle tokens slowly or drop the connection mid-stream.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use skald::providers::llm::{
    FallbackEntry, FallbackLlm, LlmConfig, LlmKind, is_malformed_tool_call,
    malformed_tool_call_reask,
};
use skald::providers::{ChatMessage, LlmEvent, LlmProvider, ProviderError, ToolCallMsg, ToolSpec};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------
// The fake server
// ---------------------------------------------------------------------------

/// How the fake answers one request.
#[derive(Clone)]
enum Reply {
    /// 200 `text/event-stream`; each chunk written after its delay; with
    /// `abort`, the connection is dropped after the last chunk instead of
    /// ending the body.
    Sse {
        chunks: Vec<(Duration, String)>,
        abort: bool,
    },
    /// An error status with headers and a JSON body.
    Status {
        code: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: String,
    },
}

impl Reply {
    /// The whole body at once.
    fn sse(body: &str) -> Reply {
        Reply::Sse {
            chunks: vec![(Duration::ZERO, body.to_owned())],
            abort: false,
        }
    }
    /// One chunk per event (split at blank lines), each after `gap`.
    fn trickle(body: &str, first: Duration, gap: Duration) -> Reply {
        let chunks = body
            .split_inclusive("\n\n")
            .enumerate()
            .map(|(i, c)| (if i == 0 { first } else { gap }, c.to_owned()))
            .collect();
        Reply::Sse {
            chunks,
            abort: false,
        }
    }
    fn status(code: u16, body: &str) -> Reply {
        Reply::Status {
            code,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: HeaderMap,
    body: Value,
}

struct Fake {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// For each SSE body the server stopped sending (finished or dropped
    /// because the client went away): how many chunks it had sent.
    bodies_ended: Arc<Mutex<Vec<usize>>>,
}

#[derive(Clone)]
struct Shared {
    replies: Arc<Vec<Reply>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    bodies_ended: Arc<Mutex<Vec<usize>>>,
}

/// Records how many chunks a body sent when hyper drops it.
struct BodyGuard {
    sent: usize,
    log: Arc<Mutex<Vec<usize>>>,
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        self.log.lock().unwrap().push(self.sent);
    }
}

impl Fake {
    /// Serves `replies` in order, one per request; the last one repeats.
    async fn start(replies: Vec<Reply>) -> Fake {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let bodies_ended = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            replies: Arc::new(replies),
            requests: requests.clone(),
            bodies_ended: bodies_ended.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake {
            addr,
            requests,
            bodies_ended,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn openai(&self, name: &str) -> LlmConfig {
        LlmConfig {
            kind: LlmKind::Openai,
            name: Some(name.into()),
            base_url: Some(format!("http://{}/v1", self.addr)),
            model: "gpt-test".into(),
            api_key_env: Some("LLM_TEST_KEY".into()),
            timeout_ms: 5_000,
            first_token_timeout_ms: 2_000,
            max_tokens: 256,
            temperature: Some(0.3),
        }
    }

    fn anthropic(&self, name: &str) -> LlmConfig {
        LlmConfig {
            kind: LlmKind::Anthropic,
            base_url: Some(format!("http://{}", self.addr)),
            model: "claude-test".into(),
            ..self.openai(name)
        }
    }
}

async fn handle(State(s): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let n = {
        let mut requests = s.requests.lock().unwrap();
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        requests.push(Recorded {
            path: uri.path().to_owned(),
            headers,
            body,
        });
        requests.len() - 1
    };
    match s.replies[n.min(s.replies.len() - 1)].clone() {
        Reply::Status {
            code,
            headers,
            body,
        } => {
            let mut r = Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header("content-type", "application/json");
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.body(Body::from(body)).unwrap()
        }
        Reply::Sse { chunks, abort } => {
            let items = chunks.into_iter().map(Some).chain(abort.then_some(None));
            let guard = BodyGuard {
                sent: 0,
                log: s.bodies_ended.clone(),
            };
            let stream =
                futures_util::stream::unfold((items, guard), |(mut items, mut guard)| async move {
                    match items.next()? {
                        Some((delay, chunk)) => {
                            tokio::time::sleep(delay).await;
                            guard.sent += 1;
                            Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), (items, guard)))
                        }
                        None => {
                            // Let hyper flush what was sent, then break the connection.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Some((
                                Err(std::io::Error::other("connection dropped")),
                                (items, guard),
                            ))
                        }
                    }
                });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type Events = Vec<Result<LlmEvent, ProviderError>>;

async fn collect(mut rx: mpsc::Receiver<Result<LlmEvent, ProviderError>>) -> Events {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(item)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        out.push(item);
    }
    out
}

fn ok(events: Events) -> Vec<LlmEvent> {
    events
        .into_iter()
        .map(|e| e.expect("stream error"))
        .collect()
}

fn text(s: &str) -> LlmEvent {
    LlmEvent::Text(s.into())
}

fn call(id: &str, name: &str, arguments: &str) -> LlmEvent {
    LlmEvent::ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    }
}

fn user(s: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You are a phone agent."),
        ChatMessage::user(s),
    ]
}

fn order_tool() -> ToolSpec {
    ToolSpec {
        name: "lookup_order".into(),
        description: "Find an order by number".into(),
        parameters: json!({"type":"object","properties":{"order":{"type":"integer"}},"required":["order"]}),
    }
}

fn build(cfg: &LlmConfig) -> Arc<dyn LlmProvider> {
    cfg.build(|_| Some("sk-test-key".into())).unwrap()
}

fn entry(cfg: &LlmConfig) -> FallbackEntry {
    FallbackEntry::new(build(cfg), cfg.first_token_timeout(), cfg.timeout())
}

// ---------------------------------------------------------------------------
// OpenAI-compatible bodies, written after the API reference's streaming examples
// ---------------------------------------------------------------------------

const OPENAI_TEXT: &str = r#"data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-test","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-test","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Your order"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-test","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":" shipped"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-test","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":" today."},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-test","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: {"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-test","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":4,"total_tokens":24}}

data: [DONE]

"#;

const OPENAI_TOOL_FRAGMENTS: &str = r#"data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_abc123","type":"function","function":{"name":"lookup_order","arguments":""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"order"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\":"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"4217}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}

data: [DONE]

"#;

const OPENAI_PARALLEL_TOOLS: &str = r#"data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_weather","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": \"Par"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_time","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\": \"Europe/Paris\"}"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"is\"}"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: [DONE]

"#;

const OPENAI_MALFORMED_TOOL: &str = r#"data: {"id":"chatcmpl-8","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_bad","type":"function","function":{"name":"lookup_order","arguments":"{\"order\": 42"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-8","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":", \"note\": }"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-8","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: [DONE]

"#;

fn openai_reply(content: &str) -> String {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-test","choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
        )
    };
    let mut body = chunk(json!({"role":"assistant","content":""}), Value::Null);
    for word in content.split_inclusive(' ') {
        body += &chunk(json!({ "content": word }), Value::Null);
    }
    body + &chunk(json!({}), json!("stop")) + "data: [DONE]\n\n"
}

// ---------------------------------------------------------------------------
// OpenAI-compatible tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn openai_text_streams_in_order() {
    let fake = Fake::start(vec![Reply::trickle(
        OPENAI_TEXT,
        Duration::ZERO,
        Duration::from_millis(5),
    )])
    .await;
    let llm = build(&fake.openai("openai"));
    let events = collect(llm.stream(&user("Where is my order?"), &[]).await.unwrap()).await;
    assert_eq!(
        ok(events),
        vec![
            text("Your order"),
            text(" shipped"),
            text(" today."),
            LlmEvent::Done
        ]
    );
    assert_eq!(fake.requests()[0].path, "/v1/chat/completions");
}

#[tokio::test]
async fn openai_request_carries_model_conversation_tool_round_trip_tools_and_key() {
    let fake = Fake::start(vec![Reply::sse(&openai_reply("Done."))]).await;
    let llm = build(&fake.openai("openai"));
    let messages = vec![
        ChatMessage::system("You are a phone agent."),
        ChatMessage::user("Where is order 4217?"),
        ChatMessage::assistant_tool_calls(
            "",
            vec![ToolCallMsg {
                id: "call_abc123".into(),
                name: "lookup_order".into(),
                arguments: r#"{"order":4217}"#.into(),
            }],
        ),
        ChatMessage::tool_result("call_abc123", r#"{"status":"shipped"}"#),
    ];
    let events = collect(llm.stream(&messages, &[order_tool()]).await.unwrap()).await;
    assert_eq!(ok(events), vec![text("Done."), LlmEvent::Done]);

    let req = &fake.requests()[0];
    assert_eq!(req.headers["authorization"], "Bearer sk-test-key");
    assert_eq!(req.headers["content-type"], "application/json");
    let body = &req.body;
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["stream"], true);
    assert_eq!(body["max_tokens"], 256);
    assert!((body["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    assert_eq!(
        body["messages"],
        json!([
            {"role":"system","content":"You are a phone agent."},
            {"role":"user","content":"Where is order 4217?"},
            {"role":"assistant","content":null,"tool_calls":[
                {"id":"call_abc123","type":"function","function":{"name":"lookup_order","arguments":"{\"order\":4217}"}}]},
            {"role":"tool","tool_call_id":"call_abc123","content":"{\"status\":\"shipped\"}"},
        ])
    );
    assert_eq!(
        body["tools"],
        json!([{"type":"function","function":{
            "name":"lookup_order",
            "description":"Find an order by number",
            "parameters":{"type":"object","properties":{"order":{"type":"integer"}},"required":["order"]}}}])
    );
}

#[tokio::test]
async fn openai_without_key_sends_no_authorization_and_no_tools() {
    let fake = Fake::start(vec![Reply::sse(&openai_reply("Hi."))]).await;
    let mut cfg = fake.openai("ollama");
    cfg.api_key_env = None;
    let llm = cfg.build(|_| None).unwrap();
    assert_eq!(llm.name(), "ollama");
    collect(llm.stream(&user("hi"), &[]).await.unwrap()).await;
    let req = &fake.requests()[0];
    assert!(!req.headers.contains_key("authorization"));
    assert!(req.body.get("tools").is_none());
}

#[tokio::test]
async fn openai_tool_call_arguments_arrive_in_fragments() {
    let fake = Fake::start(vec![Reply::trickle(
        OPENAI_TOOL_FRAGMENTS,
        Duration::ZERO,
        Duration::from_millis(2),
    )])
    .await;
    let llm = build(&fake.openai("openai"));
    let events = collect(
        llm.stream(&user("Where is order 4217?"), &[order_tool()])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        ok(events),
        vec![
            call("call_abc123", "lookup_order", r#"{"order":4217}"#),
            LlmEvent::Done
        ]
    );
}

#[tokio::test]
async fn openai_parallel_tool_calls_are_assembled_by_index() {
    let fake = Fake::start(vec![Reply::sse(OPENAI_PARALLEL_TOOLS)]).await;
    let llm = build(&fake.openai("openai"));
    let events = collect(
        llm.stream(&user("Weather and time in Paris?"), &[])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        ok(events),
        vec![
            call("call_weather", "get_weather", r#"{"city": "Paris"}"#),
            call("call_time", "get_time", r#"{"tz": "Europe/Paris"}"#),
            LlmEvent::Done,
        ]
    );
}

#[tokio::test]
async fn openai_malformed_tool_call_is_fatal_on_the_channel() {
    let fake = Fake::start(vec![Reply::sse(OPENAI_MALFORMED_TOOL)]).await;
    let llm = build(&fake.openai("openai"));
    let events = collect(
        llm.stream(&user("Order 42?"), &[order_tool()])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    let Err(ProviderError::Fatal(message)) = &events[0] else {
        panic!("{events:?}")
    };
    assert!(
        message.contains("malformed tool call call_bad"),
        "{message}"
    );
}

#[tokio::test]
async fn malformed_tool_call_then_a_reask_gets_a_valid_one() {
    let fake = Fake::start(vec![
        Reply::sse(OPENAI_MALFORMED_TOOL),
        Reply::sse(OPENAI_TOOL_FRAGMENTS),
    ])
    .await;
    let llm = FallbackLlm::new(vec![entry(&fake.openai("openai"))]);
    let mut messages = user("Order 42?");
    let failure = llm
        .stream_with_report(&messages, &[order_tool()])
        .await
        .unwrap_err();
    assert!(is_malformed_tool_call(&failure.error), "{failure:?}");
    assert_eq!(
        fake.requests().len(),
        1,
        "a malformed call is not blindly resent"
    );

    messages.push(malformed_tool_call_reask(&failure.error).unwrap());
    let (rx, _) = llm
        .stream_with_report(&messages, &[order_tool()])
        .await
        .unwrap();
    assert_eq!(
        ok(collect(rx).await),
        vec![
            call("call_abc123", "lookup_order", r#"{"order":4217}"#),
            LlmEvent::Done
        ]
    );
    let sent = &fake.requests()[1].body["messages"];
    assert_eq!(sent.as_array().unwrap().len(), 3);
    assert!(
        sent[2]["content"].as_str().unwrap().contains("call_bad"),
        "{sent}"
    );
}

#[tokio::test]
async fn openai_401_is_auth_with_the_providers_message() {
    let fake = Fake::start(vec![Reply::status(
        401,
        r#"{"error":{"message":"Incorrect API key provided: sk-test***.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
    )])
    .await;
    let llm = build(&fake.openai("openai"));
    let Err(ProviderError::Auth(message)) = llm.stream(&user("hi"), &[]).await else {
        panic!("not Auth")
    };
    assert!(message.contains("Incorrect API key"), "{message}");
}

#[tokio::test]
async fn openai_404_model_is_fatal() {
    let fake = Fake::start(vec![Reply::status(
        404,
        r#"{"error":"model \"llama9\" not found, try pulling it first"}"#,
    )])
    .await;
    let llm = build(&fake.openai("ollama"));
    let Err(ProviderError::Fatal(message)) = llm.stream(&user("hi"), &[]).await else {
        panic!("not Fatal")
    };
    assert!(message.contains("llama9"), "{message}");
}

#[tokio::test]
async fn rate_limit_is_retried_once_after_retry_after_then_falls_back() {
    let limited = Reply::Status {
        code: 429,
        headers: vec![("retry-after", "1")],
        body: r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#.into(),
    };
    let primary = Fake::start(vec![limited]).await;
    let backup = Fake::start(vec![Reply::sse(&openai_reply("Backup here."))]).await;

    let direct = build(&primary.openai("primary"))
        .stream(&user("hi"), &[])
        .await;
    assert_eq!(
        direct.err(),
        Some(ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(1))
        })
    );

    let llm = FallbackLlm::new(vec![
        entry(&primary.openai("primary")),
        entry(&backup.openai("backup")),
    ])
    .with_max_retry_wait(Duration::from_secs(2));
    let start = Instant::now();
    let (rx, report) = llm.stream_with_report(&user("hi"), &[]).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "did not wait Retry-After: {:?}",
        start.elapsed()
    );
    assert_eq!(
        ok(collect(rx).await),
        vec![text("Backup "), text("here."), LlmEvent::Done]
    );
    assert_eq!(report.provider, "backup");
    assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.starts_with("primary: rate limited")),
        "{:?}",
        report.failures
    );
    assert_eq!(
        primary.requests().len(),
        1 + 2,
        "one direct request, then the first try and one retry"
    );
    assert_eq!(backup.requests().len(), 1);
}

#[tokio::test]
async fn rate_limit_longer_than_the_caller_can_wait_moves_on_at_once() {
    let limited = Reply::Status {
        code: 429,
        headers: vec![("retry-after", "30")],
        body: "{}".into(),
    };
    let primary = Fake::start(vec![limited]).await;
    let backup = Fake::start(vec![Reply::sse(&openai_reply("Backup."))]).await;
    let llm = FallbackLlm::new(vec![
        entry(&primary.openai("primary")),
        entry(&backup.openai("backup")),
    ]);
    let start = Instant::now();
    let (_rx, report) = llm.stream_with_report(&user("hi"), &[]).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(report.provider, "backup");
    assert_eq!(primary.requests().len(), 1);
}

#[tokio::test]
async fn server_error_then_success_one_retry_succeeds() {
    let fake = Fake::start(vec![
        Reply::status(500, r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error"}}"#),
        Reply::sse(&openai_reply("Second time lucky.")),
    ])
    .await;
    let llm = FallbackLlm::new(vec![entry(&fake.openai("openai"))])
        .with_backoff(Duration::from_millis(20));
    let (rx, report) = llm.stream_with_report(&user("hi"), &[]).await.unwrap();
    assert_eq!(
        ok(collect(rx).await),
        vec![
            text("Second "),
            text("time "),
            text("lucky."),
            LlmEvent::Done
        ]
    );
    assert_eq!(report.provider, "openai");
    assert_eq!(report.failures.len(), 1);
    assert!(
        report.failures[0].contains("HTTP 500"),
        "{:?}",
        report.failures
    );
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_only_once() {
    let fake = Fake::start(vec![Reply::status(503, r#"{"error":{"message":"busy"}}"#)]).await;
    let llm = FallbackLlm::new(vec![entry(&fake.openai("openai"))])
        .with_backoff(Duration::from_millis(10));
    let failure = llm.stream_with_report(&user("hi"), &[]).await.unwrap_err();
    assert!(
        matches!(failure.error, ProviderError::Retryable(_)),
        "{failure:?}"
    );
    assert_eq!(failure.failures.len(), 2);
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn stall_before_first_token_times_out_and_the_fallback_answers() {
    let stalled = Fake::start(vec![Reply::trickle(
        OPENAI_TEXT,
        Duration::from_secs(5),
        Duration::ZERO,
    )])
    .await;
    let backup = Fake::start(vec![Reply::sse(&openai_reply("I can help."))]).await;
    let mut slow = stalled.openai("stalled");
    slow.first_token_timeout_ms = 300;
    let llm = FallbackLlm::new(vec![entry(&slow), entry(&backup.openai("backup"))]);
    let start = Instant::now();
    let (rx, report) = llm.stream_with_report(&user("hi"), &[]).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(
        ok(collect(rx).await),
        vec![text("I "), text("can "), text("help."), LlmEvent::Done]
    );
    assert_eq!(report.provider, "backup");
    assert_eq!(
        report.failures,
        vec!["stalled: timeout: no first token within 300 ms".to_owned()]
    );
    assert_eq!(
        stalled.requests().len(),
        1,
        "a stalled provider is not retried"
    );
}

#[tokio::test]
async fn slow_tokens_within_the_timeout_arrive_and_past_it_end_in_an_error() {
    let fake = Fake::start(vec![Reply::trickle(
        OPENAI_TEXT,
        Duration::from_millis(50),
        Duration::from_millis(150),
    )])
    .await;
    let cfg = fake.openai("openai");
    let llm = FallbackLlm::new(vec![entry(&cfg)]);
    let (rx, _) = llm.stream_with_report(&user("hi"), &[]).await.unwrap();
    assert_eq!(
        ok(collect(rx).await),
        vec![
            text("Your order"),
            text(" shipped"),
            text(" today."),
            LlmEvent::Done
        ]
    );

    // FallbackLlm's overall timeout (the provider itself would wait 5 s).
    let tight = FallbackEntry::new(
        build(&cfg),
        Duration::from_secs(2),
        Duration::from_millis(400),
    );
    let llm = FallbackLlm::new(vec![tight]);
    let (rx, report) = llm.stream_with_report(&user("hi"), &[]).await.unwrap();
    assert!(report.failures.is_empty());
    let events = collect(rx).await;
    let (last, first) = events.split_last().unwrap();
    assert!(
        !first.is_empty() && first.iter().all(|e| matches!(e, Ok(LlmEvent::Text(_)))),
        "{events:?}"
    );
    assert_eq!(
        last,
        &Err(ProviderError::Retryable(
            "reply not complete within 400 ms".into()
        ))
    );

    // The provider's own request timeout (`timeout_ms`).
    let mut tight = cfg.clone();
    tight.timeout_ms = 400;
    let events = collect(build(&tight).stream(&user("hi"), &[]).await.unwrap()).await;
    assert!(events.len() >= 2 && events.len() < 5, "{events:?}");
    assert!(
        matches!(events.last(), Some(Err(ProviderError::Retryable(m))) if m.starts_with("timed out")),
        "{events:?}"
    );
}

#[tokio::test]
async fn openai_disconnect_mid_stream_is_a_retryable_error_on_the_channel() {
    let first_half: String = OPENAI_TEXT.split_inclusive("\n\n").take(3).collect();
    let fake = Fake::start(vec![Reply::Sse {
        chunks: vec![(Duration::ZERO, first_half)],
        abort: true,
    }])
    .await;
    let llm = build(&fake.openai("openai"));
    let events = collect(llm.stream(&user("hi"), &[]).await.unwrap()).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], Ok(text("Your order")));
    assert_eq!(events[1], Ok(text(" shipped")));
    let Err(ProviderError::Retryable(m)) = &events[2] else {
        panic!("{events:?}")
    };
    assert!(m.contains("mid-stream"), "{m}");
}

#[tokio::test]
async fn openai_stream_closed_cleanly_before_done_is_retryable() {
    let first_half: String = OPENAI_TEXT.split_inclusive("\n\n").take(2).collect();
    let fake = Fake::start(vec![Reply::sse(&first_half)]).await;
    let llm = build(&fake.openai("openai"));
    let events = collect(llm.stream(&user("hi"), &[]).await.unwrap()).await;
    assert_eq!(events[0], Ok(text("Your order")));
    assert!(
        matches!(events.last(), Some(Err(ProviderError::Retryable(_)))),
        "{events:?}"
    );
}

#[tokio::test]
async fn auth_failure_falls_back_without_retry_and_the_report_says_why() {
    let bad = Fake::start(vec![Reply::status(
        401,
        r#"{"error":{"message":"Invalid key"}}"#,
    )])
    .await;
    let claude = Fake::start(vec![Reply::sse(ANTHROPIC_TEXT)]).await;
    let llm =
        FallbackLlm::from_configs(&[bad.openai("openai"), claude.anthropic("claude")], |_| {
            Some("k".into())
        })
        .unwrap();
    assert_eq!(llm.provider_names(), vec!["openai", "claude"]);
    let (rx, report) = llm.stream_with_report(&user("hi"), &[]).await.unwrap();
    assert_eq!(
        ok(collect(rx).await),
        vec![text("Hello"), text("!"), LlmEvent::Done]
    );
    assert_eq!(report.provider, "claude");
    assert_eq!(
        report.failures,
        vec!["openai: authentication: HTTP 401: Invalid key".to_owned()]
    );
    assert_eq!(bad.requests().len(), 1);
}

#[tokio::test]
async fn dropping_the_receiver_closes_the_connection() {
    let chunks = OPENAI_TEXT.split_inclusive("\n\n").count();
    let fake = Fake::start(vec![Reply::trickle(
        OPENAI_TEXT,
        Duration::ZERO,
        Duration::from_millis(100),
    )])
    .await;
    let llm = build(&fake.openai("openai"));
    let mut rx = llm.stream(&user("hi"), &[]).await.unwrap();
    assert_eq!(rx.recv().await, Some(Ok(text("Your order"))));
    drop(rx);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let ended = fake.bodies_ended.lock().unwrap().clone();
    assert_eq!(ended.len(), 1, "the server still streams to nobody");
    assert!(ended[0] < chunks, "sent {} of {chunks} chunks", ended[0]);
}

// ---------------------------------------------------------------------------
// Anthropic Messages, bodies after the "Streaming Messages" examples
// ---------------------------------------------------------------------------

const ANTHROPIC_TEXT: &str = r#"event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-test", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

"#;

const ANTHROPIC_TOOL_USE: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-test","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" that order."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"lookup_order","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"order\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":": 42"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"17}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

#[tokio::test]
async fn anthropic_text_streams_in_order() {
    let fake = Fake::start(vec![Reply::trickle(
        ANTHROPIC_TEXT,
        Duration::ZERO,
        Duration::from_millis(5),
    )])
    .await;
    let llm = build(&fake.anthropic("anthropic"));
    let events = collect(llm.stream(&user("hi"), &[]).await.unwrap()).await;
    assert_eq!(ok(events), vec![text("Hello"), text("!"), LlmEvent::Done]);
    assert_eq!(fake.requests()[0].path, "/v1/messages");
}

#[tokio::test]
async fn anthropic_tool_use_input_arrives_in_fragments() {
    let fake = Fake::start(vec![Reply::trickle(
        ANTHROPIC_TOOL_USE,
        Duration::ZERO,
        Duration::from_millis(2),
    )])
    .await;
    let llm = build(&fake.anthropic("anthropic"));
    let events = collect(
        llm.stream(&user("Order 4217?"), &[order_tool()])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        ok(events),
        vec![
            text("Let me check"),
            text(" that order."),
            call(
                "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "lookup_order",
                r#"{"order": 4217}"#
            ),
            LlmEvent::Done,
        ]
    );
}

#[tokio::test]
async fn anthropic_request_separates_system_and_round_trips_tool_use() {
    let fake = Fake::start(vec![Reply::sse(ANTHROPIC_TEXT)]).await;
    let llm = build(&fake.anthropic("anthropic"));
    let messages = vec![
        ChatMessage::system("You are a phone agent."),
        ChatMessage::user("Where is order 4217?"),
        ChatMessage::assistant_tool_calls(
            "Let me check.",
            vec![ToolCallMsg {
                id: "toolu_01".into(),
                name: "lookup_order".into(),
                arguments: r#"{"order":4217}"#.into(),
            }],
        ),
        ChatMessage::tool_result("toolu_01", r#"{"status":"shipped"}"#),
    ];
    collect(llm.stream(&messages, &[order_tool()]).await.unwrap()).await;
    let req = &fake.requests()[0];
    assert_eq!(req.headers["x-api-key"], "sk-test-key");
    assert_eq!(req.headers["anthropic-version"], "2023-06-01");
    assert!(!req.headers.contains_key("authorization"));
    let body = &req.body;
    assert_eq!(body["model"], "claude-test");
    assert_eq!(body["max_tokens"], 256);
    assert_eq!(body["stream"], true);
    assert_eq!(body["system"], "You are a phone agent.");
    assert_eq!(
        body["messages"],
        json!([
            {"role":"user","content":[{"type":"text","text":"Where is order 4217?"}]},
            {"role":"assistant","content":[
                {"type":"text","text":"Let me check."},
                {"type":"tool_use","id":"toolu_01","name":"lookup_order","input":{"order":4217}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":"{\"status\":\"shipped\"}"}]},
        ])
    );
    assert_eq!(
        body["tools"],
        json!([{"name":"lookup_order","description":"Find an order by number",
                "input_schema":{"type":"object","properties":{"order":{"type":"integer"}},"required":["order"]}}])
    );
}

#[tokio::test]
async fn anthropic_error_event_mid_stream_is_mapped() {
    let body = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-test","stop_reason":null,"usage":{"input_tokens":1,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"One"}}

event: error
data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

"#;
    let fake = Fake::start(vec![Reply::sse(body)]).await;
    let llm = build(&fake.anthropic("anthropic"));
    let events = collect(llm.stream(&user("hi"), &[]).await.unwrap()).await;
    assert_eq!(
        events,
        vec![
            Ok(text("One")),
            Err(ProviderError::Retryable(
                "overloaded_error: Overloaded".into()
            ))
        ]
    );
}

#[tokio::test]
async fn anthropic_http_errors_map_to_auth_rate_limit_and_retryable() {
    let fake = Fake::start(vec![
        Reply::status(401, r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#),
        Reply::Status {
            code: 429,
            headers: vec![("retry-after", "7")],
            body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#.into(),
        },
        Reply::status(529, r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
        Reply::status(400, r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}}"#),
    ])
    .await;
    let llm = build(&fake.anthropic("anthropic"));
    assert_eq!(
        llm.stream(&user("hi"), &[]).await.err(),
        Some(ProviderError::Auth("HTTP 401: invalid x-api-key".into()))
    );
    assert_eq!(
        llm.stream(&user("hi"), &[]).await.err(),
        Some(ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        })
    );
    assert_eq!(
        llm.stream(&user("hi"), &[]).await.err(),
        Some(ProviderError::Retryable("HTTP 529: Overloaded".into()))
    );
    assert_eq!(
        llm.stream(&user("hi"), &[]).await.err(),
        Some(ProviderError::Fatal(
            "HTTP 400: max_tokens: too large".into()
        ))
    );
}

#[tokio::test]
async fn anthropic_disconnect_mid_tool_use_is_a_retryable_error() {
    let cut: String = ANTHROPIC_TOOL_USE
        .split_inclusive("\n\n")
        .take(10)
        .collect();
    assert!(
        cut.contains("partial_json\":\"{\\\"order\\\"\""),
        "cut inside the tool input"
    );
    let fake = Fake::start(vec![Reply::Sse {
        chunks: vec![(Duration::ZERO, cut)],
        abort: true,
    }])
    .await;
    let llm = build(&fake.anthropic("anthropic"));
    let events = collect(llm.stream(&user("hi"), &[]).await.unwrap()).await;
    assert_eq!(
        events[..2],
        [Ok(text("Let me check")), Ok(text(" that order."))]
    );
    assert_eq!(
        events.len(),
        3,
        "no tool call from a cut stream: {events:?}"
    );
    assert!(
        matches!(&events[2], Err(ProviderError::Retryable(m)) if m.contains("mid-stream")),
        "{events:?}"
    );
}

#[tokio::test]
async fn anthropic_malformed_tool_input_is_fatal() {
    let broken = ANTHROPIC_TOOL_USE.replace(r#""partial_json":"17}""#, r#""partial_json":"17,""#);
    assert_ne!(broken, ANTHROPIC_TOOL_USE);
    let fake = Fake::start(vec![Reply::sse(&broken)]).await;
    let llm = build(&fake.anthropic("anthropic"));
    let events = collect(llm.stream(&user("hi"), &[]).await.unwrap()).await;
    let Some(Err(ProviderError::Fatal(m))) = events.last() else {
        panic!("{events:?}")
    };
    assert!(
        m.contains("malformed tool call toolu_01T1x1fJ34qAmk2tNTrN7Up6"),
        "{m}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Ok(LlmEvent::ToolCall { .. })))
    );
}
